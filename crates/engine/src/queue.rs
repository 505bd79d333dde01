//! The sending side of the engine: the queues of the backends' workers, their capacity and
//! what a full queue does. Both the [`Purger`](crate::Purger) and the after-commit buffer
//! hand their targets here, so neither needs the other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::dispatch::{Command, WorkerHandle};
use crate::settings::QueueFull;
use crate::target::Target;

/// The workers of one pipeline, as the senders see them.
pub(crate) struct Queue {
    pub(crate) workers: Vec<WorkerHandle>,
    pub(crate) capacity: u64,
    pub(crate) when_full: QueueFull,
    /// Signalled by the workers as targets leave their queues.
    pub(crate) room: Arc<tokio::sync::Notify>,
    pub(crate) closed: AtomicBool,
}

impl Queue {
    /// Sends to the workers now, bypassing any after-commit scope.
    pub(crate) fn send(&self, targets: Vec<Target>) {
        if self.closed.load(Ordering::Acquire) {
            tracing::error!(
                target: "cache_purge_hooks",
                targets = targets.len(),
                "purge requested after Purger::shutdown; not sent"
            );
            return;
        }
        let n = targets.len() as u64;
        let shared: Arc<[Target]> = targets.into();
        let mut everything: Option<Arc<[Target]>> = None;
        for w in &self.workers {
            let queued = w.counters.queued.load(Ordering::Relaxed);
            let mut batch = shared.clone();
            if queued + n > self.capacity {
                // Full: never unbounded memory, never a silent drop. Widen to one "purge
                // everything" where the backend can; otherwise drop, counted and logged.
                if w.capabilities.supports(crate::TargetKind::Everything) {
                    w.counters.coalesced.fetch_add(n, Ordering::Relaxed);
                    tracing::warn!(
                        target: "cache_purge_hooks",
                        backend = %w.name,
                        queued,
                        targets = n,
                        "purge queue full; coalesced into one purge of everything"
                    );
                    batch = everything
                        .get_or_insert_with(|| Arc::from(vec![Target::Everything]))
                        .clone();
                } else {
                    w.counters.dropped.fetch_add(n, Ordering::Relaxed);
                    tracing::error!(
                        target: "cache_purge_hooks",
                        backend = %w.name,
                        queued,
                        targets = n,
                        first = %shared[0],
                        "purge queue full and the backend cannot purge everything; targets dropped"
                    );
                    continue;
                }
            }
            w.counters
                .queued
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            if w.tx.send(Command::Purge(batch.clone())).is_err() {
                w.counters
                    .queued
                    .fetch_sub(batch.len() as u64, Ordering::Relaxed);
                tracing::error!(
                    target: "cache_purge_hooks",
                    backend = %w.name,
                    targets = batch.len(),
                    "backend worker has stopped; purge not sent"
                );
            }
        }
    }

    pub(crate) async fn wait_for_room(&self, n: u64) {
        let capacity = self.capacity;
        let mut waited = false;
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let full = self.workers.iter().any(|w| {
                let queued = w.counters.queued.load(Ordering::Relaxed);
                queued > 0 && queued + n > capacity
            });
            if !full || self.closed.load(Ordering::Acquire) {
                return;
            }
            if !waited {
                waited = true;
                tracing::debug!(target: "cache_purge_hooks", targets = n, "purge queue full; waiting for room");
            }
            // A periodic re-check as well: room also frees when targets are deduplicated.
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
    }
}
