//! Read-your-writes: waiting until the purges a piece of work made have been attempted.
//!
//! A browser that posts an edit and follows the `303` to the page it changed asks the cache
//! for that page right away — usually before a background purge has reached the cache, so the
//! editor sees the old page. [`Watch::run`] runs a future (the handling of one request) while
//! noting every purge it makes on its task; [`Watch::attempted`] then waits, at most a
//! timeout, until each of those purges has been attempted once on every backend (purged, or
//! failed and left to the retries). Purges made by other requests never delay it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use cache_purge_hooks_engine::{backend::MemoryBackend, watch::Watch, Purger, Target};
//!
//! let memory = MemoryBackend::new();
//! let purger = Purger::builder().backend("memory", memory.clone()).build().unwrap();
//!
//! let (response, watch) = Watch::run(async {
//!     purger.purge([Target::url("/posts/a").unwrap()]).await; // what the save's hook does
//!     "303 See Other"
//! })
//! .await;
//! let watched = watch.attempted(Duration::from_secs(3)).await;
//! assert!(watched.in_time());
//! assert!(memory.was_purged("/posts/a")); // before the response goes out
//! # let _ = response;
//! # }
//! ```
//!
//! In an after-commit transaction the purges are noted when the transaction commits (inside
//! the watched future, as a request handler awaits its transaction). With
//! `delivery = "outbox"` the watch waits for the process's outbox worker to have delivered
//! the rows written meanwhile ([`Purger::outbox_written`](crate::Purger::outbox_written) notes
//! them). Purges made by tasks spawned from the watched future are not noted (the scope is
//! task-local, like [`AfterCommit`](crate::AfterCommit)'s), nor are those of one purge larger
//! than [`MAX_WATCHED`] targets (a bulk write: those may spill, and are not waited for).
//!
//! For tower and axum apps, the `ReadYourWritesLayer` of `cache-purge-hooks-tower` does this
//! for every unsafe request (POST, PUT, PATCH, DELETE).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch as tokio_watch};

use crate::attempt::AttemptReport;

/// One purge of more targets than this is not waited for (it may spill to disk).
pub const MAX_WATCHED: usize = 1_000;

tokio::task_local! {
    static SCOPE: Arc<Mutex<Noted>>;
}

#[derive(Default)]
struct Noted {
    attempts: Vec<oneshot::Receiver<AttemptReport>>,
    /// Outbox rounds to wait for: (the worker's round counter, the round to reach).
    outbox: Vec<(tokio_watch::Receiver<u64>, u64)>,
    targets: usize,
}

fn lock(noted: &Mutex<Noted>) -> std::sync::MutexGuard<'_, Noted> {
    noted.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether the running task is watched.
pub(crate) fn is_watched() -> bool {
    SCOPE.try_with(|_| ()).is_ok()
}

/// Notes an attempt of `targets` targets, if the running task is watched.
pub(crate) fn note_attempt(targets: usize, reply: oneshot::Receiver<AttemptReport>) {
    let _ = SCOPE.try_with(|noted| {
        let mut noted = lock(noted);
        noted.attempts.push(reply);
        noted.targets += targets;
    });
}

/// Notes outbox rows written now, if the running task is watched: delivered once `rounds`
/// reaches `until`.
pub(crate) fn note_outbox(rounds: tokio_watch::Receiver<u64>, until: u64) {
    let _ = SCOPE.try_with(|noted| lock(noted).outbox.push((rounds, until)));
}

/// The purges a watched future made, to wait for.
#[must_use = "call attempted(timeout).await to wait for the purges"]
pub struct Watch {
    noted: Arc<Mutex<Noted>>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let noted = lock(&self.noted);
        f.debug_struct("Watch")
            .field("targets", &noted.targets)
            .field("outbox_writes", &noted.outbox.len())
            .finish()
    }
}

impl Watch {
    /// Runs `fut`, noting every purge it makes on this task.
    pub async fn run<F: Future>(fut: F) -> (F::Output, Watch) {
        let noted: Arc<Mutex<Noted>> = Arc::default();
        let output = SCOPE.scope(noted.clone(), fut).await;
        (output, Watch { noted })
    }

    /// Whether the future made no purge.
    pub fn is_empty(&self) -> bool {
        let noted = lock(&self.noted);
        noted.attempts.is_empty() && noted.outbox.is_empty()
    }

    /// Waits until every noted purge has been attempted on every backend, at most `timeout`
    /// (a cache that is down must not hold a response for long: the purge goes on being
    /// retried in the background).
    pub async fn attempted(self, timeout: Duration) -> Watched {
        let (attempts, outbox, targets) = {
            let mut noted = lock(&self.noted);
            (
                std::mem::take(&mut noted.attempts),
                std::mem::take(&mut noted.outbox),
                noted.targets,
            )
        };
        let started = tokio::time::Instant::now();
        let all = async {
            let mut failed = 0;
            // A dropped reply (an error here): the engine stopped; nothing more will be
            // attempted.
            for report in futures::future::join_all(attempts)
                .await
                .into_iter()
                .flatten()
            {
                failed += report.failed.len();
            }
            for (mut rounds, until) in outbox {
                let _ = rounds.wait_for(|round| *round >= until).await;
            }
            failed
        };
        match tokio::time::timeout(timeout, all).await {
            Ok(failed) => Watched {
                targets,
                failed,
                waited: started.elapsed(),
                timed_out: false,
            },
            Err(_) => Watched {
                targets,
                failed: 0,
                waited: started.elapsed(),
                timed_out: true,
            },
        }
    }
}

/// What [`Watch::attempted`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Watched {
    /// Targets noted (summed over backends' purges, before deduplication).
    pub targets: usize,
    /// Of those attempted in time, the ones whose attempt failed (they are being retried).
    pub failed: usize,
    /// How long it waited.
    pub waited: Duration,
    /// Whether the timeout passed first.
    pub timed_out: bool,
}

impl Watched {
    /// Whether every purge was attempted before the timeout.
    pub fn in_time(&self) -> bool {
        !self.timed_out
    }
}
