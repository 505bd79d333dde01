//! `mode = "varnishadm"`: forks the configured `varnishadm` (argv, never a shell) once per
//! ban, for setups that require it. The native `cli` mode does the same without a process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::Ban;
use crate::backend::{Cause, PurgeError, SetupError};

/// Checks at start-up that the binary exists and is executable.
pub(super) fn check_binary(bin: &Path) -> Result<(), SetupError> {
    use std::os::unix::fs::PermissionsExt;
    let problem = match std::fs::metadata(bin) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => return Ok(()),
        Ok(_) => "not an executable file".to_owned(),
        Err(e) => e.to_string(),
    };
    Err(SetupError::Program {
        setting: "varnishadm_bin",
        path: bin.to_path_buf(),
        problem,
        hint: "install varnish, or use mode = \"cli\", which needs no binary",
    })
}

pub(super) struct Varnishadm {
    pub(super) bin: PathBuf,
    pub(super) secret_file: PathBuf,
    pub(super) server: String,
    pub(super) timeout: Duration,
}

impl Varnishadm {
    pub(super) async fn ban_all(&self, bans: &[Ban]) -> Vec<PurgeError> {
        let mut failures = Vec::new();
        for ban in bans {
            if let Err(error) = self.run(ban).await {
                failures.push(error.only(ban.targets.clone()));
            }
        }
        failures
    }

    async fn run(&self, ban: &Ban) -> Result<(), PurgeError> {
        let secs = self.timeout.as_secs().max(1).to_string();
        let mut command = tokio::process::Command::new(&self.bin);
        command
            .arg("-S")
            .arg(&self.secret_file)
            .arg("-T")
            .arg(&self.server)
            .arg("-t")
            .arg(&secs)
            // Each argument is already CLI-quoted: varnishadm joins them with spaces as is.
            .args(ban.cli_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = tokio::time::timeout(self.timeout + Duration::from_secs(1), command.output())
            .await
            .map_err(|_| {
                PurgeError::new(
                    Cause::Timeout,
                    format!("varnishadm did not finish within {:?}", self.timeout),
                )
                .on_server(&self.server)
            })?
            .map_err(|e| {
                PurgeError::new(
                    Cause::Misconfigured,
                    format!("cannot run `{}`: {e}", self.bin.display()),
                )
                .on_server(&self.server)
                .with_source(e)
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        tracing::debug!(
            target: "cache_purge_hooks",
            server = %self.server,
            status = ?output.status.code(),
            stdout = %stdout.trim(),
            stderr = %stderr.trim(),
            "varnishadm ran"
        );
        if output.status.success() {
            return Ok(());
        }
        let said = format!("{} {}", stdout.trim(), stderr.trim());
        let said = said.trim();
        // varnishadm exits 1 for a refused command (its output says why: a bad ban is
        // permanent) and 2 when it cannot reach or authenticate (worth retrying unless the
        // secret is wrong).
        // varnishadm prints "Rejected NNN" when varnishd refuses the secret.
        let auth_failed = said.contains("Authentication required") || said.contains("Rejected");
        let cause = if auth_failed {
            Cause::Authentication
        } else if output.status.code() == Some(1) {
            Cause::Refused
        } else {
            Cause::Unreachable
        };
        let hint = if auth_failed {
            " (authentication failed: the secret file does not match varnishd's -S file)"
        } else {
            ""
        };
        Err(PurgeError::new(
            cause,
            format!(
                "varnishadm exited with {} on `{}`: {said}{hint}",
                output.status,
                ban.expression()
            ),
        )
        .on_server(&self.server))
    }
}
