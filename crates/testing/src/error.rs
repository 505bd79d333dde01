//! The one error type of the harness.

use std::path::PathBuf;

/// The command that installs every server the harness starts (Debian/Ubuntu packages).
///
/// `varnish` pulls in `gcc`, which varnishd needs at run time to compile VCL.
/// `varnish-modules` holds the xkey vmod of [`Varnish::start_xkey`](crate::Varnish::start_xkey).
pub const INSTALL_COMMAND: &str =
    "apt-get install -y nginx libnginx-mod-http-cache-purge varnish varnish-modules";

/// Everything that can go wrong while starting, using or stopping a harness server.
///
/// Every message is meant to be read in a failing test's output: it names the server, the
/// file or the command involved, and, for a server that did not start, quotes the end of its
/// logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// A program the harness runs is not installed.
    #[error(
        "`{binary}` was not found ({searched}); {why}install the servers with: {INSTALL_COMMAND}"
    )]
    MissingBinary {
        /// The program's name, like `nginx` or `varnishd`.
        binary: String,
        /// Where the harness looked.
        searched: String,
        /// Why it is needed, when that is not obvious (ends with "; " when not empty).
        why: String,
    },

    /// A file that an installed package should provide is missing, like Debian's
    /// `ngx_cache_purge` module.
    #[error("{what} is missing: {path} does not exist; install it with: {INSTALL_COMMAND}")]
    MissingFile {
        /// What the file is.
        what: String,
        /// The path that was checked.
        path: PathBuf,
    },

    /// A server process did not start or did not become ready before its deadline.
    #[error("{server} failed to start: {reason}\n  config: {}\n{logs}", config.display())]
    StartFailed {
        /// `nginx` or `varnishd`.
        server: &'static str,
        /// What went wrong (exit status, timeout, ...).
        reason: String,
        /// The configuration file the server was started with (nginx.conf, or the VCL). The
        /// temp dir holding it is removed with the failed server, so for nginx the message
        /// also quotes the config, with line numbers; varnishd quotes VCL errors itself.
        config: PathBuf,
        /// The end of the server's stderr and log files.
        logs: String,
    },

    /// A server process could not be stopped, or its temp dir could not be removed.
    #[error("{server} (pid {pid}) could not be stopped cleanly: {reason}")]
    StopFailed {
        /// `nginx` or `varnishd`.
        server: &'static str,
        /// The PID of the process that was started.
        pid: u32,
        /// What went wrong.
        reason: String,
    },

    /// An I/O operation of the harness itself failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An HTTP request sent by the harness failed (no response: refused, closed, timed out).
    #[error("{method} {url} failed: {source}")]
    Http {
        /// The request method.
        method: String,
        /// The request URL.
        url: String,
        /// The underlying error (a `reqwest::Error`).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// A helper command (`varnishadm`, `varnishstat`) failed or timed out.
    #[error("`{command}` failed: {status}\n  stdout: {stdout}\n  stderr: {stderr}")]
    Command {
        /// The command line, for reading (it was run without a shell).
        command: String,
        /// The exit status, or "timed out after ...".
        status: String,
        /// What it wrote to stdout (trimmed).
        stdout: String,
        /// What it wrote to stderr (trimmed).
        stderr: String,
    },

    /// A helper command succeeded but its output was not what the harness expected.
    #[error("unexpected output from `{command}`: {detail}\n  output: {output}")]
    UnexpectedOutput {
        /// The command line.
        command: String,
        /// What was expected.
        detail: String,
        /// The output.
        output: String,
    },

    /// `ban.list` was cut at varnishd's `cli_limit` (48 KB by default), so the list would be
    /// incomplete.
    #[error(
        "varnishd truncated ban.list at cli_limit ({bytes} bytes shown); count bans with \
         Varnish::ban_count(), or raise the limit with \
         varnishadm(&[\"param.set\", \"cli_limit\", \"1m\"])"
    )]
    BanListTruncated {
        /// How many bytes of output varnishadm printed.
        bytes: usize,
    },

    /// An argument or configuration value the harness cannot use.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },

    /// A background thread of the harness failed (it could not start its runtime, or it
    /// panicked).
    #[error("harness thread `{thread}` failed: {reason}")]
    Thread {
        /// The thread's name.
        thread: String,
        /// What happened.
        reason: String,
    },
}

impl HarnessError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        HarnessError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        HarnessError::InvalidArgument {
            what,
            reason: reason.into(),
        }
    }
}

/// `Result` with [`HarnessError`].
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
