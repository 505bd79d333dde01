//! Capturing what `tracing` writes, to assert on log lines.
//!
//! [`capture`] installs a plain-text `fmt` subscriber (no colours, INFO and above) as the
//! default of the current thread and returns what it has written so far as a [`Captured`]:
//!
//! ```
//! use cache_purge_hooks_testing::logs;
//!
//! let (captured, _guard) = logs::capture();
//! tracing::warn!(backend = "edge", "purge failed");
//! tracing::debug!("not captured: below INFO");
//! let text = captured.text();
//! assert!(text.contains("WARN") && text.contains("backend=\"edge\""), "{text}");
//! assert!(!text.contains("not captured"));
//! ```
//!
//! The subscriber is the thread's default, not the global one, so tests running in parallel
//! do not see each other's events. Use a `current_thread` runtime
//! (`#[tokio::test(flavor = "current_thread")]`) so that tasks spawned by the code under test
//! (a purger's workers, say) run on that thread too and their events are captured.

use std::sync::{Arc, Mutex, PoisonError};

/// The text a capturing subscriber has written so far (a cheap handle: clones share it).
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far, one event per line (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures INFO and above on this thread until the guard is dropped. Use a
/// `current_thread` runtime so the purger's worker tasks run on this thread too.
pub fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}
