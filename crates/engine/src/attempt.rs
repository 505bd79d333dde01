//! Attempts: how a delivery agent with its own durable schedule (the outbox worker, a fleet
//! agent) hands purges to the engine and learns, per target, what became of them.
//!
//! The in-memory queue ([`Purger::purge`](crate::Purger::purge)) owns its retries. An agent
//! that keeps purges somewhere durable (the outbox table) owns them instead: it asks for one
//! attempt ([`Purger::attempt`](crate::Purger::attempt)), with what it knows of the purge's past
//! ([`History`]), and gets an [`AttemptReport`]: which targets were delivered, which were not,
//! with the error and the retry policy's [`Verdict`] (retry after a wait, or give up). The
//! verdict comes from [`RetryPolicy::decide`](crate::RetryPolicy::decide), the one function
//! the in-memory queue uses too, so both treat a failure alike. Batching, deduplication with
//! the in-memory queue, concurrency, statistics and the last error are the engine's, as for
//! any purge.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use cache_purge_hooks_engine::attempt::History;
//! use cache_purge_hooks_engine::backend::{Cause, MemoryBackend, PurgeError};
//! use cache_purge_hooks_engine::retry::{GiveUp, Verdict};
//! use cache_purge_hooks_engine::{Purger, Target};
//!
//! let memory = MemoryBackend::new();
//! let purger = Purger::builder().backend("edge", memory.clone()).build().unwrap();
//! let targets = vec![Target::url("/posts/a").unwrap()];
//!
//! let report = purger.attempt("edge", targets.clone(), History::new()).await.unwrap();
//! assert!(report.is_delivered());
//!
//! memory.fail_with(Some(PurgeError::new(Cause::Authentication, "wrong secret")));
//! let report = purger.attempt("edge", targets, History::new()).await.unwrap();
//! assert_eq!(report.verdict(), Some(Verdict::GiveUp(GiveUp::Permanent)));
//! # }
//! ```

use std::time::{Duration, SystemTime};

use crate::backend::PurgeError;
use crate::retry::Verdict;
use crate::target::Target;

/// What an agent knows of a purge's past, for the retry policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct History {
    /// Attempts already made and failed (0 for a first attempt).
    pub attempts: u32,
    /// When the purge was first requested (its age decides `retry.max_age`).
    pub since: SystemTime,
}

impl History {
    /// A purge never tried, requested now.
    pub fn new() -> Self {
        Self {
            attempts: 0,
            since: SystemTime::now(),
        }
    }

    /// A purge requested at `since` whose `attempts` earlier attempts failed.
    pub fn after(attempts: u32, since: SystemTime) -> Self {
        Self { attempts, since }
    }
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

/// One target of an attempt that was not purged.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailedAttempt {
    /// The target.
    pub target: Target,
    /// Why it failed.
    pub error: PurgeError,
    /// What the retry policy says to do next.
    pub verdict: Verdict,
}

/// What became of every target of an attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptReport {
    /// Purged.
    pub delivered: Vec<Target>,
    /// Not purged.
    pub failed: Vec<FailedAttempt>,
    /// Of a kind the backend cannot purge: skipped, never widened (nothing to retry).
    pub unsupported: Vec<Target>,
    /// Not for this backend: its route does not take them ([`crate::routing`]); nothing to
    /// retry.
    pub not_routed: Vec<Target>,
}

impl AttemptReport {
    /// Whether nothing failed (unsupported targets are not failures: no retry can help).
    pub fn is_delivered(&self) -> bool {
        self.failed.is_empty()
    }

    /// The verdict for the whole attempt: retry (after the longest wait any failed target
    /// asks for) if any failed target may be retried, else give up (the first target's
    /// reason); `None` when nothing failed.
    pub fn verdict(&self) -> Option<Verdict> {
        let longest_retry = self
            .failed
            .iter()
            .filter_map(|f| match f.verdict {
                Verdict::Retry { after } => Some(after),
                _ => None,
            })
            .max();
        match longest_retry {
            Some(after) => Some(Verdict::Retry { after }),
            None => self.failed.first().map(|f| f.verdict),
        }
    }

    /// The error that decided [`verdict`](Self::verdict): a retryable one if any.
    pub fn error(&self) -> Option<&PurgeError> {
        self.failed
            .iter()
            .find(|f| matches!(f.verdict, Verdict::Retry { .. }))
            .or_else(|| self.failed.first())
            .map(|f| &f.error)
    }

    /// The wait before retrying, when the verdict is to retry.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.verdict() {
            Some(Verdict::Retry { after }) => Some(after),
            _ => None,
        }
    }
}

/// An attempt could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttemptError {
    /// No backend has this name.
    #[error("no backend is named `{0}`")]
    UnknownBackend(String),
    /// The engine has stopped ([`Purger::shutdown`](crate::Purger::shutdown)).
    #[error("the purge engine has stopped")]
    Stopped,
}
