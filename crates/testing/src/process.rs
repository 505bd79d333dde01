//! Finding programs, running server processes in their own process group, running helper
//! commands with a deadline, and reading log tails.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use crate::error::{HarnessError, Result};

/// How long a server may take to become ready.
pub(crate) const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM before the group gets SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often readiness and exit are polled.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How many times a server is started again on a new port after "Address already in use".
pub(crate) const PORT_ATTEMPTS: usize = 5;

/// Finds `name` in `preferred` (absolute paths, checked first) or on `PATH`.
pub(crate) fn find_binary(name: &str, preferred: &[&str], why: &str) -> Result<PathBuf> {
    for p in preferred {
        let p = Path::new(p);
        if is_executable(p) {
            return Ok(p.to_path_buf());
        }
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path_var) {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    let mut searched: Vec<String> = preferred.iter().map(|p| (*p).to_owned()).collect();
    searched.push("$PATH".to_owned());
    Err(HarnessError::MissingBinary {
        binary: name.to_owned(),
        searched: format!("looked in {}", searched.join(", ")),
        why: if why.is_empty() {
            String::new()
        } else {
            format!("{why}; ")
        },
    })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A server process started in its own process group (`process_group(0)`), so the server and
/// every process it forks (nginx workers, the varnishd child) can be signalled at once.
///
/// Stopping sends SIGTERM to the group, waits up to [`STOP_GRACE`] for the started process to
/// exit, then sends SIGKILL to the group. The started process is always reaped (no zombie), and
/// when it has exited, whatever is left of its group gets SIGKILL before it is reaped (while
/// the group ID cannot be reused). Dropping the value stops the process too.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    name: &'static str,
    child: Child,
    pid: u32,
    status: Option<ExitStatus>,
}

impl ServerProcess {
    /// Spawns `program args` in `dir`, stdin from /dev/null, stdout and stderr appended to the
    /// given files (files, not pipes: a chatty server can never block on a full pipe).
    pub(crate) fn spawn(
        name: &'static str,
        program: &Path,
        args: &[&OsStr],
        dir: &Path,
        stdout: &Path,
        stderr: &Path,
    ) -> Result<ServerProcess> {
        let open = |path: &Path| {
            File::options()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| HarnessError::io(format!("creating {}", path.display()), e))
        };
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(open(stdout)?)
            .stderr(open(stderr)?)
            .process_group(0)
            .spawn()
            .map_err(|e| HarnessError::io(format!("starting {}", program.display()), e))?;
        let pid = child.id();
        tracing::debug!(server = name, pid, "started");
        Ok(ServerProcess {
            name,
            child,
            pid,
            status: None,
        })
    }

    /// The PID of the started process (also its process group ID).
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    fn pgid(&self) -> Pid {
        // A PID always fits in pid_t; fall back to an impossible group rather than panicking.
        Pid::from_raw(i32::try_from(self.pid).unwrap_or(i32::MAX))
    }

    /// The exit status if the process has exited (then it has been reaped), `None` while it
    /// runs.
    pub(crate) fn poll_exit(&mut self) -> Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        // Look without reaping: while the process is an unreaped zombie its PID and group ID
        // stay reserved, so the group can safely be cleared of stragglers first.
        match waitid(
            Id::Pid(self.pgid()),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        ) {
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(_) | Err(Errno::ECHILD) => {}
            Err(e) => {
                return Err(self.stop_error(format!("waitid failed: {e}")));
            }
        }
        let _ = killpg(self.pgid(), Signal::SIGKILL);
        let status = self
            .child
            .wait()
            .map_err(|e| self.stop_error(format!("reaping it failed: {e}")))?;
        tracing::debug!(server = self.name, pid = self.pid, %status, "exited");
        self.status = Some(status);
        Ok(Some(status))
    }

    /// Stops the process group: SIGTERM, up to `grace` to exit, then SIGKILL; reaps the
    /// process. Returns quickly if it already exited.
    pub(crate) fn terminate(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.poll_exit()? {
            return Ok(status);
        }
        self.signal_group(Signal::SIGTERM)?;
        if let Some(status) = self.wait_exit(grace)? {
            return Ok(status);
        }
        tracing::warn!(
            server = self.name,
            pid = self.pid,
            "did not exit within {grace:?} of SIGTERM; sending SIGKILL to its process group"
        );
        self.signal_group(Signal::SIGKILL)?;
        match self.wait_exit(STOP_GRACE)? {
            Some(status) => Ok(status),
            None => Err(self.stop_error(format!(
                "still running {STOP_GRACE:?} after SIGKILL to its process group"
            ))),
        }
    }

    fn signal_group(&self, signal: Signal) -> Result<()> {
        match killpg(self.pgid(), signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(self.stop_error(format!("killpg({}, {signal}) failed: {e}", self.pid))),
        }
    }

    fn wait_exit(&mut self, within: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.poll_exit()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn stop_error(&self, reason: String) -> HarnessError {
        HarnessError::StopFailed {
            server: self.name,
            pid: self.pid,
            reason,
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.terminate(STOP_GRACE);
        }
    }
}

/// What a helper command printed.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) stdout: String,
}

/// Runs `program args` (no shell) and returns its stdout; an error with status, stdout and
/// stderr if it fails. It runs in its own process group, which gets SIGKILL if it runs longer
/// than `timeout`; output still held open by a leftover process is not waited for beyond
/// that.
pub(crate) fn run_command(program: &Path, args: &[&OsStr], timeout: Duration) -> Result<Output> {
    let command_line = command_line(program, args);
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| HarnessError::io(format!("running `{command_line}`"), e))?;
    // Drain both pipes on threads so a large output cannot block the child.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let kill_group = |child: &mut Child| {
        let pgid = i32::try_from(child.id()).map(Pid::from_raw);
        if let Ok(pgid) = pgid {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                kill_group(&mut child);
                break Err(format!("timed out after {timeout:?} (killed)"));
            }
            Ok(None) => std::thread::sleep(POLL_INTERVAL),
            Err(e) => {
                kill_group(&mut child);
                break Err(format!("waiting for it failed: {e}"));
            }
        }
    };
    let output_deadline = Instant::now().max(deadline) + Duration::from_secs(1);
    let stdout = collect(&stdout, output_deadline);
    let stderr = collect(&stderr, output_deadline);
    match status {
        Ok(status) if status.success() => Ok(Output { stdout }),
        Ok(status) => Err(HarnessError::Command {
            command: command_line,
            status: status.to_string(),
            stdout: stdout.trim().to_owned(),
            stderr: stderr.trim().to_owned(),
        }),
        Err(status) => Err(HarnessError::Command {
            command: command_line,
            status,
            stdout: stdout.trim().to_owned(),
            stderr: stderr.trim().to_owned(),
        }),
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}

fn collect(output: &mpsc::Receiver<String>, deadline: Instant) -> String {
    output
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .unwrap_or_else(|_| "(output still open: a process it started holds it)".to_owned())
}

/// A command line for messages (arguments with spaces quoted).
pub(crate) fn command_line(program: &Path, args: &[&OsStr]) -> String {
    let mut line = program.display().to_string();
    for arg in args {
        let arg = arg.to_string_lossy();
        if arg.is_empty() || arg.contains(char::is_whitespace) {
            let _ = write!(line, " {arg:?}");
        } else {
            let _ = write!(line, " {arg}");
        }
    }
    line
}

/// The last `max_lines` lines of a text file (lossy UTF-8), or a note that it is missing or
/// empty.
pub(crate) fn tail(path: &Path, max_lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) if bytes.is_empty() => "(empty)".to_owned(),
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(max_lines);
            let mut out = String::new();
            if start > 0 {
                let _ = writeln!(out, "[... {start} earlier lines]");
            }
            out.push_str(&lines[start..].join("\n"));
            out
        }
        Err(e) => format!("(could not read: {e})"),
    }
}

/// The tails of several log files, each under a heading naming it.
pub(crate) fn log_tails(files: &[&Path]) -> String {
    let mut out = String::new();
    for path in files {
        let _ = writeln!(out, "  --- {} ---", path.display());
        for line in tail(path, 40).lines() {
            let _ = writeln!(out, "  | {line}");
        }
    }
    out
}

/// A file's text with line numbers, under a heading naming it.
pub(crate) fn numbered(path: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "  --- {} (as written) ---", path.display());
    match std::fs::read_to_string(path) {
        Ok(text) => {
            for (i, line) in text.lines().enumerate() {
                let _ = writeln!(out, "  {:>3} {line}", i + 1);
            }
        }
        Err(e) => {
            let _ = writeln!(out, "  (could not read: {e})");
        }
    }
    out
}

/// What nginx and varnishd print when a port is taken: nginx `bind() to ... failed (98:
/// Address already in use)`, varnishd `Could not get socket ...: Address already in use` for
/// `-a` and `-T ... could not be listened on.` (without a reason) for `-T`.
const PORT_TAKEN: [&str; 2] = ["Address already in use", "could not be listened on"];

/// Whether any of the files says a port was already taken.
pub(crate) fn mentions_port_taken(files: &[&Path]) -> bool {
    files.iter().any(|path| {
        std::fs::read(path)
            .map(|b| {
                let text = String::from_utf8_lossy(&b);
                PORT_TAKEN.iter().any(|p| text.contains(p))
            })
            .unwrap_or(false)
    })
}

/// A new temp dir `<tmp>/<prefix>XXXXXX`, absolute, mode 0755 so that the unprivileged users
/// the servers switch to (nobody, varnish, vcache) can reach the files inside.
pub(crate) fn server_temp_dir(prefix: &str) -> Result<tempfile::TempDir> {
    let base = std::path::absolute(std::env::temp_dir())
        .map_err(|e| HarnessError::io("resolving the temp directory", e))?;
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&base)
        .map_err(|e| HarnessError::io(format!("creating a temp dir in {}", base.display()), e))?;
    set_mode(dir.path(), 0o755)?;
    Ok(dir)
}

/// `chmod mode path`.
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| HarnessError::io(format!("chmod {mode:o} {}", path.display()), e))
}

/// Writes `contents` to `path` with `mode`.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| HarnessError::io(format!("creating {}", path.display()), e))?;
    file.write_all(contents)
        .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))?;
    // The mode given to open() is filtered by the umask; set it exactly.
    set_mode(path, mode)
}

/// Stops a server's process and removes its temp dir, attempting both. An error if the
/// process had already exited on its own (it died while in use; the tails of `logs` are
/// quoted), could not be stopped, or the dir could not be removed.
pub(crate) fn shut_down(
    server: &'static str,
    pid: u32,
    process: Option<ServerProcess>,
    dir: Option<tempfile::TempDir>,
    logs: &[&Path],
) -> Result<()> {
    let stopped = match process {
        Some(mut process) => match process.poll_exit() {
            Ok(Some(status)) => Err(HarnessError::StopFailed {
                server,
                pid,
                reason: format!(
                    "it had already exited on its own ({status}), so it died while in use\n{}",
                    log_tails(logs)
                ),
            }),
            Ok(None) => process.terminate(STOP_GRACE).map(|_| ()),
            Err(e) => Err(e),
        },
        None => Ok(()),
    };
    let removed = match dir {
        Some(dir) => {
            let path = dir.path().to_path_buf();
            dir.close().map_err(|e| HarnessError::StopFailed {
                server,
                pid,
                reason: format!("removing its temp dir {} failed: {e}", path.display()),
            })
        }
        None => Ok(()),
    };
    stopped.and(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_names_it_and_the_install_command() {
        let err =
            find_binary("cph-no-such-program", &["/nonexistent/cph"], "needed for X").unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("`cph-no-such-program` was not found"),
            "{message}"
        );
        assert!(message.contains("/nonexistent/cph"), "{message}");
        assert!(message.contains("needed for X; "), "{message}");
        assert!(message.ends_with(crate::INSTALL_COMMAND), "{message}");
    }

    #[test]
    fn run_command_reports_failure_and_timeout() {
        let sh = Path::new("/bin/sh");
        let ok = run_command(
            sh,
            &[OsStr::new("-c"), OsStr::new("echo hi")],
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(ok.stdout, "hi\n");
        let err = run_command(
            sh,
            &[
                OsStr::new("-c"),
                OsStr::new("echo out; echo err >&2; exit 3"),
            ],
            Duration::from_secs(5),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("exit status: 3") && err.contains("out") && err.contains("err"),
            "{err}"
        );
        let started = Instant::now();
        let err = run_command(
            sh,
            &[OsStr::new("-c"), OsStr::new("sleep 10")],
            Duration::from_millis(200),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
