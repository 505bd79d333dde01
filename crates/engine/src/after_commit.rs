//! Holding purges back until a transaction commits.
//!
//! A purge sent before COMMIT lets a concurrent request re-cache the old page from the old
//! row (the seed's first weakness). [`AfterCommit::run`] runs a future (the body of a
//! transaction) while collecting every purge it makes; the caller then
//! [`commit`](AfterCommit::commit)s them after the database COMMIT succeeded, or
//! [`discard`](AfterCommit::discard)s them after a rollback. The ORM crates wrap this in their
//! transaction helpers (`cache_purge_hooks::sea_orm::transaction`), so apps rarely use it
//! directly.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use cache_purge_hooks_engine::{backend::MemoryBackend, AfterCommit, Purger, Target};
//!
//! let memory = MemoryBackend::new();
//! let purger = Purger::builder().backend("memory", memory.clone()).build().unwrap();
//!
//! let (committed, pending) = AfterCommit::run(async {
//!     purger.purge([Target::url("/posts/a").unwrap()]).await;
//!     true // pretend the transaction committed
//! })
//! .await;
//! purger.flush().await;
//! assert!(memory.urls().is_empty()); // nothing sent before the commit
//!
//! if committed { pending.commit() } else { pending.discard(); }
//! purger.flush().await;
//! assert_eq!(memory.urls(), ["/posts/a"]);
//! # }
//! ```
//!
//! The scope is task-local: purges made by tasks spawned from inside it are not held back.
//! Scopes nest: committing an inner scope hands its purges to the outer one.

use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::queue::Queue;
use crate::target::Target;

#[derive(Default)]
struct Buffer {
    entries: Vec<(Arc<Queue>, Vec<Target>)>,
}

type Shared = Arc<Mutex<Buffer>>;

tokio::task_local! {
    static SCOPE: Shared;
}

/// Puts targets into the running task's scope. Gives them back when there is no scope.
pub(crate) fn buffer(queue: &Arc<Queue>, targets: Vec<Target>) -> Option<Vec<Target>> {
    let mut targets = Some(targets);
    let _ = SCOPE.try_with(|scope| {
        if let Some(t) = targets.take() {
            lock(scope).entries.push((Arc::clone(queue), t));
        }
    });
    targets
}

fn lock(scope: &Shared) -> std::sync::MutexGuard<'_, Buffer> {
    scope.lock().unwrap_or_else(|p| p.into_inner())
}

/// The purges collected by [`AfterCommit::run`], waiting for a decision.
///
/// Dropping it without [`commit`](Self::commit) discards them (a transaction that was not
/// known to commit must not purge), with a debug event.
#[must_use = "call commit() after the transaction commits, or discard() after a rollback"]
pub struct AfterCommit {
    own: Shared,
    parent: Option<Shared>,
    decided: bool,
}

impl std::fmt::Debug for AfterCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfterCommit")
            .field("targets", &self.len())
            .finish()
    }
}

impl AfterCommit {
    /// Runs `fut`, holding back every purge it makes (on this task) until
    /// [`commit`](Self::commit).
    pub async fn run<F: Future>(fut: F) -> (F::Output, AfterCommit) {
        let parent = SCOPE.try_with(Arc::clone).ok();
        let own: Shared = Arc::default();
        let output = SCOPE.scope(own.clone(), fut).await;
        (
            output,
            AfterCommit {
                own,
                parent,
                decided: false,
            },
        )
    }

    /// How many targets are held.
    pub fn len(&self) -> usize {
        lock(&self.own).entries.iter().map(|(_, t)| t.len()).sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The held targets, in order.
    pub fn targets(&self) -> Vec<Target> {
        lock(&self.own)
            .entries
            .iter()
            .flat_map(|(_, t)| t.iter().cloned())
            .collect()
    }

    /// The transaction committed: send what was held (to the enclosing scope, if this one is
    /// nested in another).
    pub fn commit(mut self) {
        self.decided = true;
        let entries = std::mem::take(&mut lock(&self.own).entries);
        match &self.parent {
            Some(parent) => lock(parent).entries.extend(entries),
            None => {
                for (queue, targets) in entries {
                    queue.send(targets);
                }
            }
        }
    }

    /// The transaction rolled back: forget what was held. Returns how many targets that was.
    pub fn discard(mut self) -> usize {
        self.decided = true;
        let n = self.len();
        lock(&self.own).entries.clear();
        if n > 0 {
            tracing::debug!(target: "cache_purge_hooks", targets = n, "rolled back: purges discarded");
        }
        n
    }
}

impl Drop for AfterCommit {
    fn drop(&mut self) {
        if !self.decided {
            let n = self.len();
            if n > 0 {
                tracing::debug!(
                    target: "cache_purge_hooks",
                    targets = n,
                    "AfterCommit dropped without commit(): purges discarded"
                );
            }
        }
    }
}
