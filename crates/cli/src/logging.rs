//! Logging: `-v` shows the library's events on stderr; whatever the verbosity, the last error
//! each backend logged is kept, so that a report can say why targets were still undelivered
//! when the deadline passed (the dead-letter list only holds those given up on).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

/// The library's tracing target.
const TARGET: &str = "cache_purge_hooks";

/// The last error each backend logged (`backend` and `error` fields of an ERROR event of
/// target `cache_purge_hooks`).
#[derive(Clone, Debug, Default)]
pub(crate) struct LastErrors(Arc<Mutex<HashMap<String, String>>>);

impl LastErrors {
    /// The last error logged for this backend.
    pub(crate) fn get(&self, backend: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(backend)
            .cloned()
    }
}

#[derive(Default)]
struct Fields {
    backend: Option<String>,
    error: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "backend" => self.backend = Some(value.to_owned()),
            "error" => self.error = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            // `%value` fields arrive here with their Display form.
            "backend" => self.backend = Some(format!("{value:?}")),
            "error" => self.error = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for LastErrors {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let (Some(backend), Some(error)) = (fields.backend, fields.error) {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(backend, error);
        }
    }
}

/// Installs the subscriber: the fmt layer on stderr (RUST_LOG if set, else `cache_purge_hooks`
/// at warn / info / debug / trace by verbosity, where 0 shows nothing) and the error keeper.
pub(crate) fn init(verbose: u8) -> LastErrors {
    let errors = LastErrors::default();
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
    let keeper = errors
        .clone()
        .with_filter(Targets::new().with_target(TARGET, Level::ERROR));
    // Only the first call in a process installs (unit tests may call it more than once).
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(keeper)
        .try_init();
    errors
}
