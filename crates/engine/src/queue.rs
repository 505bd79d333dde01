//! The sending side of the engine: the queues of the backends' workers, their capacity and
//! what a full queue does (spill to disk, wait, or, opted in, coalesce; see [`crate::spill`]). Both the [`Purger`](crate::Purger) and the after-commit buffer
//! hand their targets here, so neither needs the other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::attempt::History;
use crate::dispatch::{AttemptState, Batch, Command, WorkerHandle};
use crate::routing::Router;
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
    /// The directory of this pipeline's spill files.
    pub(crate) spill_dir: std::path::PathBuf,
    /// Which targets each worker takes (by position in `workers`).
    pub(crate) router: Router,
    /// Targets no backend takes (an absolute URL of a host no backend serves).
    pub(crate) unrouted: AtomicU64,
}

impl Queue {
    /// Sends to the workers now, bypassing any after-commit scope.
    ///
    /// A backend whose in-memory queue has no room for the targets (or is still reading back
    /// what it spilled: order is kept) gets them in its spill file instead, unless the policy
    /// is `coalesce` and it can purge everything (the opt-in widening). Nothing is dropped:
    /// if the spill file cannot be written, the targets stay in memory, beyond the capacity,
    /// with an error logged.
    pub(crate) fn send(&self, targets: Vec<Target>) {
        if self.closed.load(Ordering::Acquire) {
            for w in &self.workers {
                w.counters
                    .dropped
                    .fetch_add(targets.len() as u64, Ordering::Relaxed);
                #[cfg(feature = "metrics")]
                w.meters.dropped.increment(targets.len() as u64);
            }
            tracing::error!(
                target: "cache_purge_hooks",
                targets = targets.len(),
                first = targets.first().map(tracing::field::display),
                "purge requested after Purger::shutdown; not sent (counted as dropped)"
            );
            return;
        }
        // A request's own purges, waited for by read-your-writes: small, so kept in memory.
        let watched = crate::watch::is_watched() && targets.len() <= crate::watch::MAX_WATCHED;
        self.count_unrouted(&targets);
        // One backend taking everything gets the targets themselves; several share one copy.
        // (No shared copy at all in the first case: even an empty `Arc<[_]>` is an allocation
        // per save.)
        let (mut own, all): (Option<Vec<Target>>, Option<Arc<[Target]>>) =
            if self.workers.len() == 1 && self.router.is_open() {
                (Some(targets), None)
            } else {
                (None, Some(targets.into()))
            };
        let mut everything: Option<Arc<[Target]>> = None;
        for (index, w) in self.workers.iter().enumerate() {
            let mut batch = if let Some(targets) = own.take() {
                Batch::Owned(targets)
            } else if let Some(all) = all.as_ref().filter(|_| self.router.is_open()) {
                Batch::Shared(all.clone())
            } else {
                // `all` is there whenever `own` is not (one worker takes `own`, and it is
                // the only one).
                let all = all.as_deref().unwrap_or_default();
                let mine: Vec<Target> = all
                    .iter()
                    .filter(|t| self.router.serves(index, t))
                    .cloned()
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                Batch::Owned(mine)
            };
            let n = batch.len() as u64;
            if watched {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let state = AttemptState::new(History::new(), tx);
                w.counters.queued.fetch_add(n, Ordering::Relaxed);
                w.counters.note_in_memory(w.spill.count());
                if w.tx
                    .send(Command::PurgeWatched(batch.into_shared(), state))
                    .is_err()
                {
                    w.counters.queued.fetch_sub(n, Ordering::Relaxed);
                } else {
                    crate::watch::note_attempt(n as usize, rx);
                }
                continue;
            }
            let queued = w.counters.queued.load(Ordering::Relaxed);
            let in_spill = w.spill.count();
            let in_memory = queued.saturating_sub(in_spill);
            if in_spill > 0 || in_memory + n > self.capacity {
                if self.when_full == QueueFull::Coalesce
                    && w.capabilities.supports(crate::TargetKind::Everything)
                {
                    // Widening, as the user opted in to: bounded, never lost, but wider.
                    w.counters.coalesced.fetch_add(n, Ordering::Relaxed);
                    #[cfg(feature = "metrics")]
                    w.meters.coalesced.increment(n);
                    tracing::warn!(
                        target: "cache_purge_hooks",
                        backend = %w.name,
                        queued,
                        targets = n,
                        "purge queue full; coalesced into one purge of everything (when_full = \"coalesce\")"
                    );
                    batch = Batch::Shared(
                        everything
                            .get_or_insert_with(|| Arc::from(vec![Target::Everything]))
                            .clone(),
                    );
                } else if self.spill(w, batch.as_slice(), in_spill) {
                    continue;
                }
            }
            let sent = batch.len() as u64;
            w.counters.queued.fetch_add(sent, Ordering::Relaxed);
            w.counters.note_in_memory(in_spill);
            if w.tx.send(Command::Purge(batch)).is_err() {
                w.counters.queued.fetch_sub(sent, Ordering::Relaxed);
                tracing::error!(
                    target: "cache_purge_hooks",
                    backend = %w.name,
                    targets = sent,
                    "backend worker has stopped; purge not sent"
                );
            }
        }
    }

    /// Counts (and logs at WARN) the targets no backend takes: never dropped silently.
    pub(crate) fn count_unrouted(&self, targets: &[Target]) {
        if self.router.is_open() {
            return;
        }
        let unrouted: Vec<&Target> = targets.iter().filter(|t| !self.router.routed(t)).collect();
        if unrouted.is_empty() {
            return;
        }
        let n = unrouted.len() as u64;
        self.unrouted.fetch_add(n, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("cache_purge_unrouted_total").increment(n);
        tracing::warn!(
            target: "cache_purge_hooks",
            targets = n,
            first = %unrouted[0],
            "no backend serves the host of these targets (see each backend's `hosts`); not sent (counted as unrouted)"
        );
    }

    /// Writes targets to a backend's spill file and tells its worker. False when the file
    /// cannot be written (the caller then keeps them in memory).
    fn spill(&self, w: &WorkerHandle, targets: &[Target], in_spill: u64) -> bool {
        let n = targets.len() as u64;
        // Counted before the file holds them, so that the worker never reads more than is
        // counted as queued.
        w.counters.queued.fetch_add(n, Ordering::Relaxed);
        match w.spill.append(targets) {
            Ok(()) => {
                w.counters.spilled.fetch_add(n, Ordering::Relaxed);
                #[cfg(feature = "metrics")]
                w.meters.spilled.increment(n);
                if in_spill == 0 {
                    tracing::warn!(
                        target: "cache_purge_hooks",
                        backend = %w.name,
                        targets = n,
                        capacity = self.capacity,
                        file = %w.spill.path().display(),
                        "purge queue full; spilling to disk (delivered in order, nothing widened or dropped)"
                    );
                }
                // The worker may be idle with nothing in memory: wake it.
                let _ = w.tx.send(Command::Spilled);
                true
            }
            Err(e) => {
                w.counters.queued.fetch_sub(n, Ordering::Relaxed);
                tracing::error!(
                    target: "cache_purge_hooks",
                    backend = %w.name,
                    targets = n,
                    file = %w.spill.path().display(),
                    error = %e,
                    "purge queue full and the spill file cannot be written; kept in memory beyond queue_capacity (set spill_dir to a writable directory)"
                );
                false
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
                let in_spill = w.spill.count();
                let in_memory = w
                    .counters
                    .queued
                    .load(Ordering::Relaxed)
                    .saturating_sub(in_spill);
                in_spill > 0 || (in_memory > 0 && in_memory + n > capacity)
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

impl Drop for Queue {
    /// A pipeline dropped without [`Purger::shutdown`](crate::Purger::shutdown) leaves no spill
    /// file behind either.
    fn drop(&mut self) {
        for w in &self.workers {
            w.spill.remove();
        }
        let _ = std::fs::remove_dir(&self.spill_dir);
    }
}
