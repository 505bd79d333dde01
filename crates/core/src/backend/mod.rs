//! Backends: what actually purges a cache.
//!
//! A [`Backend`] receives batches of [`Target`]s from the dispatcher and says how each batch
//! went. It declares what it can purge ([`Capabilities`]) and how many targets one call may
//! carry ([`Backend::max_batch`]); the dispatcher never hands it more, and never hands it a
//! kind of target it cannot purge (those are reported, not widened into a bigger purge).
//!
//! Writing a backend:
//!
//! ```
//! use cache_purge_hooks_core::backend::{Backend, Capabilities, PurgeError};
//! use cache_purge_hooks_core::Target;
//!
//! struct Stdout;
//!
//! #[cache_purge_hooks_core::async_trait]
//! impl Backend for Stdout {
//!     fn name(&self) -> &str { "stdout" }
//!     fn capabilities(&self) -> Capabilities { Capabilities::URL }
//!     fn max_batch(&self) -> usize { 100 }
//!     async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
//!         for t in batch { println!("purge {t}"); }
//!         Ok(())
//!     }
//! }
//! ```

use std::fmt;
use std::time::Duration;

use crate::target::{Target, TargetKind};

#[cfg(feature = "dummy")]
mod dummy;
#[cfg(any(feature = "varnish", feature = "nginx"))]
mod http_client;
#[cfg(feature = "log")]
mod log;
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "nginx")]
pub mod nginx;
#[cfg(feature = "varnish")]
pub mod varnish;

#[cfg(feature = "dummy")]
pub use dummy::DummyBackend;
#[cfg(feature = "log")]
pub use log::LogBackend;
#[cfg(feature = "memory")]
pub use memory::{MemoryBackend, PurgeRecord};
#[cfg(feature = "nginx")]
pub use nginx::NginxBackend;
#[cfg(feature = "varnish")]
pub use varnish::VarnishBackend;

/// What kinds of target a backend can purge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Capabilities {
    /// Exact URLs.
    pub url: bool,
    /// Every URL under a prefix.
    pub prefix: bool,
    /// Every object carrying a tag.
    pub tag: bool,
    /// The whole cache.
    pub everything: bool,
}

impl Capabilities {
    /// Exact URLs only.
    pub const URL: Self = Self {
        url: true,
        prefix: false,
        tag: false,
        everything: false,
    };
    /// Every kind of target.
    pub const ALL: Self = Self {
        url: true,
        prefix: true,
        tag: true,
        everything: true,
    };

    /// Whether a target of this kind can be purged.
    pub fn supports(&self, kind: TargetKind) -> bool {
        match kind {
            TargetKind::Url => self.url,
            TargetKind::Prefix => self.prefix,
            TargetKind::Tag => self.tag,
            TargetKind::Everything => self.everything,
        }
    }
}

/// How a failed purge should be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// Might work later (connection refused, timeout, 5xx): worth retrying.
    Transient,
    /// The server asked to slow down; retry no sooner than `retry_after` when given.
    RateLimited {
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// Will not work without a change of settings or server (authentication failed, the
    /// purge endpoint does not exist): retrying as-is is pointless.
    Permanent,
}

/// A batch (or part of it) could not be purged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PurgeError {
    /// Whether it is worth retrying.
    pub kind: FailureKind,
    /// The server concerned, when a backend has several (`host:port`).
    pub server: Option<String>,
    /// What went wrong, for people.
    pub message: String,
    /// The targets that were not purged; empty means "the whole batch".
    pub failed: Vec<Target>,
}

impl PurgeError {
    /// A transient failure of the whole batch.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Transient,
            server: None,
            message: message.into(),
            failed: Vec::new(),
        }
    }

    /// A permanent failure of the whole batch.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Permanent,
            ..Self::transient(message)
        }
    }

    /// Names the server concerned.
    pub fn on_server(mut self, server: impl Into<String>) -> Self {
        self.server = Some(server.into());
        self
    }

    /// Narrows the failure to these targets (the rest of the batch was purged).
    pub fn only(mut self, failed: Vec<Target>) -> Self {
        self.failed = failed;
        self
    }
}

impl fmt::Display for PurgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(server) = &self.server {
            write!(f, "{server}: ")?;
        }
        f.write_str(&self.message)?;
        match self.kind {
            FailureKind::Permanent => f.write_str(" (permanent)")?,
            FailureKind::RateLimited { retry_after } => {
                f.write_str(" (rate limited")?;
                if let Some(d) = retry_after {
                    write!(f, ", retry after {}s", d.as_secs_f64())?;
                }
                f.write_str(")")?;
            }
            FailureKind::Transient => {}
        }
        if !self.failed.is_empty() {
            write!(f, " [{} target(s) not purged]", self.failed.len())?;
        }
        Ok(())
    }
}

/// A cache purging backend.
///
/// Implementations must be cheap to call concurrently: the dispatcher may run up to
/// [`max_concurrency`](Self::max_concurrency) calls of [`purge`](Self::purge) at once.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The backend's name, as in the settings file (used in logs and stats).
    fn name(&self) -> &str;

    /// What it can purge.
    fn capabilities(&self) -> Capabilities;

    /// The most targets one [`purge`](Self::purge) call may carry. Default 1.
    fn max_batch(&self) -> usize {
        1
    }

    /// How many [`purge`](Self::purge) calls may run at once. Default 1.
    fn max_concurrency(&self) -> usize {
        1
    }

    /// Purges a batch of targets, each of a kind the backend supports, at most
    /// [`max_batch`](Self::max_batch) of them, without duplicates.
    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError>;
}
