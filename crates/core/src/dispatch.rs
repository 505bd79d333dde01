//! The dispatcher: one worker task per backend, so a slow or failing backend never delays
//! another. Each worker deduplicates what is waiting, cuts it into batches of the backend's
//! size and sends them with the backend's concurrency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::StreamExt;
use indexmap::IndexSet;
use tokio::sync::{mpsc, oneshot};

use crate::backend::Backend;
use crate::target::Target;

/// What a worker is asked to do.
pub(crate) enum Command {
    /// Purge these targets (shared between the workers of all backends).
    Purge(Arc<[Target]>),
    /// Answer once everything received before this is delivered (or has failed).
    Flush(oneshot::Sender<()>),
}

/// Counters of one backend, shared by its worker and the [`Purger`](crate::Purger).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) queued: AtomicU64,
    pub(crate) purged: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) unsupported: AtomicU64,
    pub(crate) deduplicated: AtomicU64,
    pub(crate) busy_micros: AtomicU64,
}

/// The sending side of one backend's worker.
pub(crate) struct WorkerHandle {
    pub(crate) name: String,
    pub(crate) tx: mpsc::UnboundedSender<Command>,
    pub(crate) counters: Arc<Counters>,
}

/// Starts the worker of one backend on the current tokio runtime.
pub(crate) fn spawn_worker(
    backend: Arc<dyn Backend>,
    runtime: &tokio::runtime::Handle,
) -> (WorkerHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let counters = Arc::new(Counters::default());
    let handle = WorkerHandle {
        name: backend.name().to_owned(),
        tx,
        counters: counters.clone(),
    };
    let join = runtime.spawn(run_worker(backend, rx, counters));
    (handle, join)
}

/// How many targets a worker takes off its queue before it starts sending: bounds the work
/// done between two flush acknowledgements and the size of one dedupe set.
const MAX_DRAIN: usize = 100_000;

async fn run_worker(
    backend: Arc<dyn Backend>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    counters: Arc<Counters>,
) {
    let capabilities = backend.capabilities();
    let max_batch = backend.max_batch().max(1);
    let concurrency = backend.max_concurrency().max(1);
    let mut pending: IndexSet<Target> = IndexSet::new();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();

    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Purge(targets) => {
                    for t in targets.iter() {
                        if !capabilities.supports(t.kind()) {
                            counters.unsupported.fetch_add(1, Ordering::Relaxed);
                            counters.queued.fetch_sub(1, Ordering::Relaxed);
                            tracing::warn!(
                                target: "cache_purge_hooks",
                                backend = backend.name(),
                                %t,
                                "backend cannot purge a target of this kind; skipped (never widened)"
                            );
                        } else if !pending.insert(t.clone()) {
                            counters.deduplicated.fetch_add(1, Ordering::Relaxed);
                            counters.queued.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                }
                Command::Flush(ack) => waiters.push(ack),
            }
            if pending.len() < MAX_DRAIN {
                next = rx.try_recv().ok();
            }
        }

        if !pending.is_empty() {
            let mut batches = Vec::with_capacity(pending.len().div_ceil(max_batch));
            let mut drain = pending.drain(..);
            loop {
                let batch: Vec<Target> = drain.by_ref().take(max_batch).collect();
                if batch.is_empty() {
                    break;
                }
                batches.push(batch);
            }
            drop(drain);
            deliver(&backend, batches, concurrency, &counters).await;
        }
        for ack in waiters.drain(..) {
            // The flusher may have given up waiting (a deadline); nothing to do then.
            let _ = ack.send(());
        }
    }
}

async fn deliver(
    backend: &Arc<dyn Backend>,
    batches: Vec<Vec<Target>>,
    concurrency: usize,
    counters: &Counters,
) {
    let mut results = futures::stream::iter(batches)
        .map(|batch| {
            let backend = Arc::clone(backend);
            async move {
                let started = Instant::now();
                let result = backend.purge(&batch).await;
                (batch, result, started.elapsed())
            }
        })
        .buffer_unordered(concurrency);

    while let Some((batch, result, took)) = results.next().await {
        let n = batch.len() as u64;
        counters.queued.fetch_sub(n, Ordering::Relaxed);
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters
            .busy_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        match result {
            Ok(()) => {
                counters.purged.fetch_add(n, Ordering::Relaxed);
                tracing::debug!(
                    target: "cache_purge_hooks",
                    backend = backend.name(),
                    targets = n,
                    micros = took.as_micros() as u64,
                    "batch purged"
                );
            }
            Err(e) => {
                let failed = if e.failed.is_empty() {
                    n
                } else {
                    e.failed.len() as u64
                };
                counters.failed.fetch_add(failed, Ordering::Relaxed);
                counters
                    .purged
                    .fetch_add(n - failed.min(n), Ordering::Relaxed);
                let first = e.failed.first().or(batch.first());
                tracing::error!(
                    target: "cache_purge_hooks",
                    backend = backend.name(),
                    error = %e,
                    failed,
                    first = first.map(tracing::field::display),
                    "purge failed"
                );
            }
        }
    }
}
