//! Logging: `-v` shows the library's events on stderr. Reports learn why a backend failed from
//! its statistics ([`BackendStats::last_error`](cache_purge_hooks_engine::BackendStats)), never
//! from the log.

use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::{Layer, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

/// The library's tracing target.
const TARGET: &str = "cache_purge_hooks";

/// Installs the subscriber: the fmt layer on stderr (RUST_LOG if set, else `cache_purge_hooks`
/// at warn / info / debug / trace by verbosity, where 0 shows nothing).
pub(crate) fn init(verbose: u8) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::new(spec),
        _ => {
            let level = match verbose {
                0 => LevelFilter::OFF,
                1 => LevelFilter::INFO,
                2 => LevelFilter::DEBUG,
                _ => LevelFilter::TRACE,
            };
            let mut directives = format!("off,{TARGET}={level}");
            if verbose >= 3 {
                directives = format!("warn,{TARGET}={level}");
            }
            EnvFilter::new(directives)
        }
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_filter(filter);
    // Only the first call in a process installs (unit tests may call it more than once).
    let _ = tracing_subscriber::registry().with(fmt).try_init();
}
