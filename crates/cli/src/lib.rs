//! `cache-purge`, the command-line tool of
//! [cache-purge-hooks](https://docs.rs/cache-purge-hooks): purge URLs, prefixes or a whole
//! cache by hand with the backends of your settings file, diagnose a purge setup (is Varnish's
//! admin port reachable, is the secret right, does nginx's purge location answer?), and look
//! after the outbox table (counts, dead rows, revive, delete, drain).
//!
//! ```text
//! cache-purge purge /posts/hello /           # purge two URLs on every configured backend
//! cache-purge purge --prefix /blog/          # everything under /blog/ (Varnish bans)
//! find-changed-urls | cache-purge purge      # URLs from standard input, one per line
//! cache-purge check                          # diagnose every backend
//! cache-purge outbox status --database-url sqlite://app.db
//! cache-purge settings                       # the effective settings (file + environment)
//! cache-purge agent --node edge-1             # beside a cache node: purge what the fleet says
//! cache-purge fleet status                   # every node's health and lag
//! ```
//!
//! The binary is the whole interface; this library exists so that the binary stays a
//! one-line `main`. Its [exit codes](exit): 0 all good, 1 something failed, 2 usage error or
//! invalid settings. docs/cli.md is the guide.
#![warn(missing_docs)]

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

mod args;
mod check;
mod describe;
mod error;
mod fleet;
mod logging;
mod outbox;
mod output;
mod purge;
mod settings;
mod show_settings;
mod verify;

use args::Cli;
use error::CliError;
use output::Output;

/// The exit codes of `cache-purge`.
pub mod exit {
    /// Everything worked: every target purged, every check passed.
    pub const SUCCESS: u8 = 0;
    /// Something failed: a target was not purged, a check failed, the database could not be
    /// used.
    pub const FAILURE: u8 = 1;
    /// The command line, the input or the settings are wrong (nothing was done).
    pub const USAGE: u8 = 2;
}

/// Parses the process's arguments, runs the command and returns its exit code: the command's
/// report is on stdout, errors on stderr (and, with `--json`, as a JSON document on stdout as
/// well). Usage errors exit with 2 (clap's own code), `--help` and `--version` with 0.
pub fn main() -> ExitCode {
    run(Cli::parse())
}

fn run(cli: Cli) -> ExitCode {
    let out = Output::new(cli.global.json);
    logging::init(cli.global.verbose);
    let result = match cli.command {
        args::Command::Purge(a) => purge::run(&cli.global, a, &out),
        args::Command::Check(a) => check::run(&cli.global, a, &out),
        args::Command::Verify(a) => verify::run(&cli.global, a, &out),
        args::Command::Outbox(a) => outbox::run(&cli.global, a, &out),
        args::Command::Agent(a) => fleet::run_agent(&cli.global, a, &out),
        args::Command::Fleet(a) => fleet::run_fleet(&cli.global, a, &out),
        args::Command::Settings => show_settings::run(&cli.global, &out),
        args::Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "cache-purge", &mut std::io::stdout());
            Ok(exit::SUCCESS)
        }
        args::Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command)
                .render(&mut std::io::stdout())
                .map(|()| exit::SUCCESS)
                .map_err(|e| CliError::failed(format!("cannot write the manual page: {e}")))
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report_error(&e, &out);
            ExitCode::from(e.code)
        }
    }
}

/// Writes a fatal error on stderr, and as `{"error": {...}}` on stdout with `--json`.
fn report_error(e: &CliError, out: &Output) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "cache-purge: error: {}", e.message);
    for line in &e.details {
        let _ = writeln!(stderr, "  {line}");
    }
    if let Some(hint) = &e.hint {
        let _ = writeln!(stderr, "hint: {hint}");
    }
    if out.json {
        out.json(&serde_json::json!({
            "error": {
                "message": e.message,
                "key": e.key,
                "details": e.details,
                "exit_code": e.code,
            }
        }));
    }
}

/// Builds the tokio runtime the commands run on.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the async runtime: {e}")))
}
