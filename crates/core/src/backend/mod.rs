//! The contract between the engine and a backend: what actually purges a cache.
//!
//! A [`Backend`] receives batches of [`Target`]s and says how each batch went. It declares
//! what it can purge ([`Capabilities`]) and how many targets one call may carry
//! ([`Backend::max_batch`]); the engine never hands it more, never hands it a kind of target it
//! cannot purge (those are counted and logged, never widened into a bigger purge), and never
//! the same target twice in one batch. Batching, deduplication, retries with backoff, the
//! dead-letter list, statistics and fan-out to several backends are the engine's: a backend
//! only sends.
//!
//! A backend has no name of its own: it gets one where it is registered
//! (`Purger::builder().backend("edge", backend)`), and the engine's logs and statistics use it.
//!
//! Writing a backend, here one that purges by calling a (pretend) CDN:
//!
//! ```
//! use std::time::Duration;
//!
//! use cache_purge_hooks_core::backend::{Backend, Capabilities, Cause, PurgeError};
//! use cache_purge_hooks_core::Target;
//!
//! /// Purges URLs at a CDN that takes 30 of them per call.
//! struct MyCdn {
//!     calls: std::sync::Mutex<Vec<Vec<String>>>,
//! }
//!
//! #[cache_purge_hooks_core::async_trait]
//! impl Backend for MyCdn {
//!     fn capabilities(&self) -> Capabilities {
//!         Capabilities::URL | Capabilities::EVERYTHING
//!     }
//!     fn max_batch(&self) -> usize {
//!         30
//!     }
//!     async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
//!         let urls: Vec<String> = batch.iter().map(|t| t.to_string()).collect();
//!         if urls.iter().any(|u| u.contains("/slow-down")) {
//!             // Say why with a cause the engine understands: it waits at least this long.
//!             let cause = Cause::RateLimited { retry_after: Some(Duration::from_secs(2)) };
//!             return Err(PurgeError::new(cause, "answered 429 Too Many Requests"));
//!         }
//!         self.calls.lock().unwrap().push(urls);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let cdn = MyCdn { calls: Default::default() };
//! let batch = [Target::url("/posts/a").unwrap(), Target::Everything];
//! cdn.purge(&batch).await.unwrap();
//! assert_eq!(cdn.calls.lock().unwrap()[0], ["url /posts/a", "everything"]);
//!
//! let err = cdn.purge(&[Target::url("/slow-down").unwrap()]).await.unwrap_err();
//! assert!(err.is_transient());
//! assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
//! # }
//! ```
//!
//! Register it with the engine like any built-in backend:
//! `Purger::builder().backend("my-cdn", MyCdn { .. })` (crate `cache-purge-hooks-engine`, or
//! `cache_purge_hooks::Purger`).

mod error;

use std::ops::BitOr;
use std::sync::Arc;

pub use self::error::{Cause, FailedTargets, Failures, PurgeError};
use crate::target::{Target, TargetKind};

/// What kinds of target a backend can purge. Combine with `|`:
/// `Capabilities::URL | Capabilities::PREFIX`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u8);

impl Capabilities {
    /// Nothing.
    pub const NONE: Self = Self(0);
    /// Exact URLs ([`Target::Url`]).
    pub const URL: Self = Self(1);
    /// Every URL under a prefix ([`Target::Prefix`]).
    pub const PREFIX: Self = Self(2);
    /// Every object carrying a tag ([`Target::Tag`]).
    pub const TAG: Self = Self(4);
    /// The whole cache ([`Target::Everything`]).
    pub const EVERYTHING: Self = Self(8);
    /// Every kind of target.
    pub const ALL: Self = Self(15);

    /// Whether a target of this kind can be purged.
    pub fn supports(&self, kind: TargetKind) -> bool {
        let bit = match kind {
            TargetKind::Url => Self::URL,
            TargetKind::Prefix => Self::PREFIX,
            TargetKind::Tag => Self::TAG,
            TargetKind::Everything => Self::EVERYTHING,
        };
        self.contains(bit)
    }

    /// Whether every capability of `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The kinds supported, in the order URL, prefix, tag, everything.
    pub fn kinds(self) -> impl Iterator<Item = TargetKind> {
        [
            TargetKind::Url,
            TargetKind::Prefix,
            TargetKind::Tag,
            TargetKind::Everything,
        ]
        .into_iter()
        .filter(move |k| self.supports(*k))
    }
}

impl BitOr for Capabilities {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.kinds()).finish()
    }
}

/// A cache purging backend.
///
/// Implementations must be cheap to call concurrently: the engine may run up to
/// [`max_concurrency`](Self::max_concurrency) calls of [`purge`](Self::purge) at once.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
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
    ///
    /// On failure, say which targets were not purged ([`PurgeError::only`], else all of
    /// them) and why ([`Cause`]); combine the failures of several servers with [`Failures`].
    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError>;
}

#[async_trait::async_trait]
impl<B: Backend + ?Sized> Backend for Arc<B> {
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    fn max_batch(&self) -> usize {
        (**self).max_batch()
    }
    fn max_concurrency(&self) -> usize {
        (**self).max_concurrency()
    }
    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
        (**self).purge(batch).await
    }
}

#[async_trait::async_trait]
impl<B: Backend + ?Sized> Backend for Box<B> {
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    fn max_batch(&self) -> usize {
        (**self).max_batch()
    }
    fn max_concurrency(&self) -> usize {
        (**self).max_concurrency()
    }
    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
        (**self).purge(batch).await
    }
}
