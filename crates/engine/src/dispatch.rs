//! The engine: one worker task per backend, so a slow or failing backend never delays
//! another. Each worker deduplicates what is waiting, cuts it into batches of the backend's
//! size, sends them with the backend's concurrency, and settles every target of every batch in
//! one place ([`Worker::settle`]), with one retry decision ([`RetryPolicy::decide`]):
//!
//! - targets of the in-memory queue ([`Command::Purge`]) are scheduled for a retry or, once
//!   given up on, moved to the backend's dead-letter list;
//! - targets of an attempt ([`Command::Attempt`], what the outbox worker and other delivery
//!   agents send) are tried once, and the agent learns per target whether it was delivered,
//!   and if not, the error and the policy's verdict: it keeps its own retry schedule (the
//!   outbox's `available_at`), decided by the same function.
//!
//! A target both queued and attempted is sent once and settles both.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use futures::StreamExt;
use indexmap::{IndexMap, IndexSet};
use tokio::sync::{mpsc, oneshot};

use crate::attempt::{AttemptReport, FailedAttempt, History};
use crate::backend::{Backend, Capabilities, PurgeError};
use crate::retry::{DeadLetter, RetryPolicy, Verdict};
use crate::spill::Spill;
use crate::target::Target;

/// Targets handed to one worker: shared between the workers of all backends, or the worker's
/// own (one backend, or what it reads back from its spill file), which it takes without
/// cloning them.
pub(crate) enum Batch {
    Shared(Arc<[Target]>),
    Owned(Vec<Target>),
}

impl Batch {
    pub(crate) fn as_slice(&self) -> &[Target] {
        match self {
            Batch::Shared(targets) => targets,
            Batch::Owned(targets) => targets,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// The targets as a shared slice (copied into one if owned).
    pub(crate) fn into_shared(self) -> Arc<[Target]> {
        match self {
            Batch::Shared(targets) => targets,
            Batch::Owned(targets) => targets.into(),
        }
    }
}

/// What a worker is asked to do.
pub(crate) enum Command {
    /// Purge these targets.
    Purge(Batch),
    /// Purge these targets, and tell the attempt once each was attempted (read-your-writes).
    PurgeWatched(Arc<[Target]>, Arc<AttemptState>),
    /// Try these targets once and report each one's outcome.
    Attempt(Arc<AttemptState>, Vec<Target>),
    /// Targets were spilled: read them back when there is room.
    Spilled,
    /// Answer once everything received before this has been attempted at least once
    /// (delivered, or failed and waiting for a retry, or dead).
    Flush(oneshot::Sender<()>),
}

/// Counters of one backend, shared by its worker and the [`Purger`](crate::Purger).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Targets not yet delivered nor given up on (waiting, in flight, or waiting to retry).
    pub(crate) queued: AtomicU64,
    /// Of `queued`, those waiting for a retry.
    pub(crate) retrying: AtomicU64,
    pub(crate) purged: AtomicU64,
    /// Failed attempts (a target failing three times counts three).
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead: AtomicU64,
    pub(crate) dead_evicted: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) dropped: AtomicU64,
    /// Targets written to the spill file (since the start).
    pub(crate) spilled: AtomicU64,
    /// The most targets held in memory at once (queued and not in the spill file).
    pub(crate) peak_in_memory: AtomicU64,
    /// Of `queued`, the delayed second purges not due yet.
    pub(crate) repurging: AtomicU64,
    /// Delayed second purges sent.
    pub(crate) repurged: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) unsupported: AtomicU64,
    pub(crate) deduplicated: AtomicU64,
    pub(crate) busy_micros: AtomicU64,
    /// Purged URLs the cache no longer served from its store (`verify`).
    pub(crate) verified: AtomicU64,
    /// Purged URLs the cache still served after a second purge.
    pub(crate) verify_failed: AtomicU64,
    /// Checks the cache did not answer.
    pub(crate) verify_unanswered: AtomicU64,
    /// Purged URLs requested again to warm the cache (`refresh`).
    pub(crate) refreshed: AtomicU64,
    /// Purged URLs not verified nor refreshed because the checks of earlier purges were still
    /// running ([`MAX_CHECK_BACKLOG`]).
    pub(crate) verify_skipped: AtomicU64,
}

impl Counters {
    /// Records the targets now in memory (queued, less `in_spill`) for the high-water mark.
    pub(crate) fn note_in_memory(&self, in_spill: u64) {
        let in_memory = self.queued.load(Ordering::Relaxed).saturating_sub(in_spill);
        self.peak_in_memory.fetch_max(in_memory, Ordering::Relaxed);
    }
}

/// The backend's `metrics` instruments (feature `metrics`), labelled `backend = NAME`:
/// counters `cache_purge_purged_total`, `cache_purge_failed_total`,
/// `cache_purge_retried_total`, `cache_purge_dead_total`, `cache_purge_batches_total`, and the
/// ones that count work lost, widened or set aside: `cache_purge_dropped_total`,
/// `cache_purge_coalesced_total`, `cache_purge_spilled_total`,
/// `cache_purge_dead_evicted_total`, `cache_purge_unsupported_total`; with `verify`,
/// `cache_purge_verified_total`, `cache_purge_verify_failed_total` and
/// `cache_purge_verify_skipped_total`; the gauges
/// `cache_purge_queued` and `cache_purge_in_spill`, and the histogram
/// `cache_purge_batch_seconds`.
#[cfg(feature = "metrics")]
pub(crate) struct Meters {
    purged: metrics::Counter,
    failed: metrics::Counter,
    retried: metrics::Counter,
    dead: metrics::Counter,
    batches: metrics::Counter,
    pub(crate) dropped: metrics::Counter,
    pub(crate) coalesced: metrics::Counter,
    pub(crate) spilled: metrics::Counter,
    dead_evicted: metrics::Counter,
    unsupported: metrics::Counter,
    verified: metrics::Counter,
    verify_failed: metrics::Counter,
    verify_skipped: metrics::Counter,
    queued: metrics::Gauge,
    in_spill: metrics::Gauge,
    latency: metrics::Histogram,
}

#[cfg(feature = "metrics")]
impl Meters {
    pub(crate) fn new(backend: &str) -> Self {
        let label = [("backend", backend.to_owned())];
        Self {
            purged: metrics::counter!("cache_purge_purged_total", &label),
            failed: metrics::counter!("cache_purge_failed_total", &label),
            retried: metrics::counter!("cache_purge_retried_total", &label),
            dead: metrics::counter!("cache_purge_dead_total", &label),
            batches: metrics::counter!("cache_purge_batches_total", &label),
            dropped: metrics::counter!("cache_purge_dropped_total", &label),
            coalesced: metrics::counter!("cache_purge_coalesced_total", &label),
            spilled: metrics::counter!("cache_purge_spilled_total", &label),
            dead_evicted: metrics::counter!("cache_purge_dead_evicted_total", &label),
            unsupported: metrics::counter!("cache_purge_unsupported_total", &label),
            verified: metrics::counter!("cache_purge_verified_total", &label),
            verify_failed: metrics::counter!("cache_purge_verify_failed_total", &label),
            verify_skipped: metrics::counter!("cache_purge_verify_skipped_total", &label),
            queued: metrics::gauge!("cache_purge_queued", &label),
            in_spill: metrics::gauge!("cache_purge_in_spill", &label),
            latency: metrics::histogram!("cache_purge_batch_seconds", &label),
        }
    }
}

/// The sending side of one backend's worker.
pub(crate) struct WorkerHandle {
    pub(crate) name: String,
    pub(crate) capabilities: Capabilities,
    pub(crate) tx: mpsc::UnboundedSender<Command>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) dead: Arc<Mutex<VecDeque<DeadLetter>>>,
    /// The last failure, for [`BackendStats::last_error`](crate::BackendStats::last_error).
    pub(crate) last_error: Arc<Mutex<Option<PurgeError>>>,
    /// The last purge that verification found had not taken.
    pub(crate) last_verify_failure: Arc<Mutex<Option<crate::verify::VerifyFailure>>>,
    /// Where targets go when the queue is full.
    pub(crate) spill: Arc<Spill>,
    #[cfg(feature = "metrics")]
    pub(crate) meters: Arc<Meters>,
}

/// How a worker refills its queue from its spill file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Refill {
    /// Refill when fewer targets than this are in memory.
    pub(crate) below: u64,
    /// Targets read back at a time.
    pub(crate) chunk: usize,
}

impl Refill {
    /// For a queue of `capacity` targets: refill below half of it, half of it at a time (at
    /// most 50,000), so that memory never holds more than `capacity`.
    pub(crate) fn for_capacity(capacity: u64) -> Self {
        let half = (capacity / 2).max(1);
        Self {
            below: half,
            chunk: half.min(50_000) as usize,
        }
    }
}

/// How a worker runs, apart from its backend.
pub(crate) struct WorkerConfig {
    pub(crate) retry: RetryPolicy,
    /// Told when targets leave the queue, for senders waiting for room.
    pub(crate) room: Arc<tokio::sync::Notify>,
    pub(crate) spill: Spill,
    pub(crate) refill: Refill,
    pub(crate) repurge_after: Option<std::time::Duration>,
    /// Checks purged URLs through the cache (`verify`).
    #[cfg(feature = "verify")]
    pub(crate) verifier: Option<Arc<crate::verify::Verifier>>,
    /// The index this backend purges tags through (nginx `tags = "index"`): where the
    /// checker finds the URLs of a purged tag.
    #[cfg(feature = "verify")]
    pub(crate) tag_index: Option<Arc<dyn crate::tag_index::TagIndex>>,
}

/// Starts the worker of one backend on the current tokio runtime.
pub(crate) fn spawn_worker(
    name: String,
    backend: Arc<dyn Backend>,
    config: WorkerConfig,
    runtime: &tokio::runtime::Handle,
) -> (WorkerHandle, tokio::task::JoinHandle<()>) {
    let WorkerConfig {
        retry,
        room,
        spill,
        refill,
        repurge_after,
        #[cfg(feature = "verify")]
        verifier,
        #[cfg(feature = "verify")]
        tag_index,
    } = config;
    let (tx, rx) = mpsc::unbounded_channel();
    let counters = Arc::new(Counters::default());
    let dead = Arc::new(Mutex::new(VecDeque::new()));
    let last_error = Arc::new(Mutex::new(None));
    let last_verify_failure = Arc::new(Mutex::new(None));
    let span = tracing::info_span!(target: "cache_purge_hooks", "cache_purge", backend = %name);
    let spill = Arc::new(spill);
    #[cfg(feature = "metrics")]
    let meters = Arc::new(Meters::new(&name));
    let handle = WorkerHandle {
        name: name.clone(),
        capabilities: backend.capabilities(),
        tx,
        counters: counters.clone(),
        dead: dead.clone(),
        last_error: last_error.clone(),
        last_verify_failure: last_verify_failure.clone(),
        spill: spill.clone(),
        #[cfg(feature = "metrics")]
        meters: meters.clone(),
    };
    let worker = Worker {
        name,
        last_error,
        spill,
        refill,
        spill_backoff: None,
        repurge_after,
        repurges: HashMap::default(),
        repurge_schedule: BinaryHeap::new(),
        capabilities: backend.capabilities(),
        max_batch: backend.max_batch().max(1),
        concurrency: backend.max_concurrency().max(1),
        backend,
        retry,
        room,
        #[cfg(feature = "metrics")]
        meters,
        counters,
        dead,
        pending: IndexMap::default(),
        direct: None,
        failures: HashMap::default(),
        schedule: BinaryHeap::new(),
        sequence: 0,
        #[cfg(feature = "verify")]
        checks: None,
        #[cfg(feature = "verify")]
        to_verify: Vec::new(),
        #[cfg(feature = "verify")]
        to_refresh: Vec::new(),
        #[cfg(feature = "verify")]
        tag_index: None,
        #[cfg(feature = "verify")]
        tag_urls: HashMap::new(),
    };
    #[cfg(feature = "verify")]
    let worker = {
        let mut worker = worker;
        worker.tag_index = tag_index.filter(|_| verifier.is_some());
        worker.checks = verifier.map(|verifier| {
            Checks::spawn(
                CheckContext {
                    name: worker.name.clone(),
                    backend: Arc::clone(&worker.backend),
                    verifier,
                    counters: Arc::clone(&worker.counters),
                    #[cfg(feature = "metrics")]
                    meters: Arc::clone(&worker.meters),
                    last_verify_failure: last_verify_failure.clone(),
                },
                runtime,
                span.clone(),
            )
        });
        worker
    };
    let join = runtime.spawn(tracing::Instrument::instrument(worker.run(rx), span));
    (handle, join)
}

/// The hasher of the worker's maps of targets. SipHash (std's default) was the largest single
/// cost of a save's targets in the worker (about 1,900 instructions a save, 4c's callgrind);
/// foldhash is seeded at random per map, as hashbrown's default hasher is.
type TargetHasher = foldhash::fast::RandomState;

/// How many targets a worker takes off its queue before it starts sending: bounds the work
/// done between two flush acknowledgements and the size of one dedupe set.
const MAX_DRAIN: usize = 100_000;

/// The most targets a round sends as they came, without the dedupe map (see
/// `Worker::takes_directly`): they are checked for duplicates pairwise.
const DIRECT_MAX: usize = 16;

/// An attempt in progress: the targets not settled yet, and what became of the others.
pub(crate) struct AttemptState {
    history: History,
    inner: Mutex<AttemptInner>,
}

struct AttemptInner {
    remaining: usize,
    report: AttemptReport,
    reply: Option<oneshot::Sender<AttemptReport>>,
}

/// What became of one target of an attempt.
enum Settled {
    Delivered,
    Failed(PurgeError, Verdict),
}

impl AttemptState {
    pub(crate) fn new(history: History, reply: oneshot::Sender<AttemptReport>) -> Arc<Self> {
        Arc::new(Self {
            history,
            inner: Mutex::new(AttemptInner {
                remaining: 0,
                report: AttemptReport::default(),
                reply: Some(reply),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AttemptInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the report once nothing is left to settle.
    fn finish_if_done(inner: &mut AttemptInner) {
        if inner.remaining == 0
            && let Some(reply) = inner.reply.take()
        {
            // The agent may have stopped waiting; nothing to do then.
            let _ = reply.send(std::mem::take(&mut inner.report));
        }
    }

    fn settle(&self, target: Target, settled: Settled) {
        let mut inner = self.lock();
        match settled {
            Settled::Delivered => inner.report.delivered.push(target),
            Settled::Failed(error, verdict) => inner.report.failed.push(FailedAttempt {
                target,
                error,
                verdict,
            }),
        }
        inner.remaining = inner.remaining.saturating_sub(1);
        Self::finish_if_done(&mut inner);
    }
}

/// A target waiting to be sent: whether the in-memory queue owns it (counted in `queued`,
/// retried and buried by this worker), and the attempts waiting for its outcome.
#[derive(Default)]
struct Waiting {
    queued: bool,
    /// A delayed second purge (`repurge_after`): its delivery schedules no other.
    repurge: bool,
    attempts: Vec<Arc<AttemptState>>,
}

impl Waiting {
    /// Each target of a batch with its `Waiting`; where `waiting` has none (it is empty for a
    /// `direct` batch), the target is queued and no attempt waits for it.
    fn each(batch: Vec<Target>, waiting: Vec<Waiting>) -> impl Iterator<Item = (Target, Waiting)> {
        let mut waiting = waiting.into_iter();
        batch.into_iter().map(move |target| {
            let w = waiting.next().unwrap_or(Waiting {
                queued: true,
                ..Waiting::default()
            });
            (target, w)
        })
    }
}

/// What is known of a target that has failed at least once.
struct Failing {
    attempts: u32,
    since: Instant,
    since_wall: SystemTime,
}

struct Worker {
    /// The name the backend was registered under.
    name: String,
    last_error: Arc<Mutex<Option<PurgeError>>>,
    spill: Arc<Spill>,
    refill: Refill,
    /// Set when reading the spill file failed: not again before then.
    spill_backoff: Option<Instant>,
    /// Delay of the second purge of every delivered target, when set.
    repurge_after: Option<std::time::Duration>,
    /// Targets waiting for their second purge, with its due time (the latest asked for).
    repurges: HashMap<Target, Instant, TargetHasher>,
    /// The same by due time (an entry whose target was pushed back is moved when due).
    repurge_schedule: BinaryHeap<Reverse<(Instant, u64, Target)>>,
    backend: Arc<dyn Backend>,
    capabilities: Capabilities,
    max_batch: usize,
    concurrency: usize,
    retry: RetryPolicy,
    /// Told when targets leave the queue, for senders waiting for room.
    room: Arc<tokio::sync::Notify>,
    #[cfg(feature = "metrics")]
    meters: Arc<Meters>,
    counters: Arc<Counters>,
    dead: Arc<Mutex<VecDeque<DeadLetter>>>,
    pending: IndexMap<Target, Waiting, TargetHasher>,
    /// The round's one batch of queued targets, when it is all the round has (one save's
    /// targets, most often): sent as it came, without going through `pending`, whose hashing
    /// was the largest part of the worker's cost per save. Anything else the round takes
    /// moves it into `pending` first (`merge_direct`), so it is deduplicated as before.
    direct: Option<Vec<Target>>,
    /// Targets whose last attempt failed, until they are delivered or dead.
    failures: HashMap<Target, Failing, TargetHasher>,
    /// Retries by due time (the sequence number keeps equal times in order).
    schedule: BinaryHeap<Reverse<(Instant, u64, Target)>>,
    sequence: u64,
    /// The checker of this backend's purges (`verify`, `refresh`), when on.
    #[cfg(feature = "verify")]
    checks: Option<Checks>,
    /// URLs delivered this round, to verify once the round is done.
    #[cfg(feature = "verify")]
    to_verify: Vec<Target>,
    /// URLs delivered this round, to refresh (`refresh`) once the round is done.
    #[cfg(feature = "verify")]
    to_refresh: Vec<Target>,
    /// With checks on, the index this backend purges tags through, if any.
    #[cfg(feature = "verify")]
    tag_index: Option<Arc<dyn crate::tag_index::TagIndex>>,
    /// The URLs of this round's tags, looked up before the purge (which forgets them from
    /// the index): checked once the tag is delivered. (Whether the tag is verified or only
    /// refreshed, its URLs.)
    #[cfg(feature = "verify")]
    tag_urls: HashMap<crate::target::Tag, (bool, Vec<crate::target::PurgeUrl>)>,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
        loop {
            let next_retry = self.schedule.peek().map(|Reverse((due, _, _))| *due);
            let next_repurge = self
                .repurge_schedule
                .peek()
                .map(|Reverse((due, _, _))| *due);
            let next_due = match (next_retry, next_repurge) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // With targets in the spill file, there is work without a command (unless reading
            // it failed a moment ago).
            let spill_due = self.spill_backoff.filter(|at| *at > Instant::now());
            let first = if self.spilled() > 0 && spill_due.is_none() {
                match rx.try_recv() {
                    Ok(cmd) => Some(cmd),
                    Err(mpsc::error::TryRecvError::Empty) => None,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            } else {
                let wake = match (next_due, spill_due) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                tokio::select! {
                    // In order, not at random: the timer only wakes an idle worker (the due
                    // retries are taken every round anyway), and no random number is drawn
                    // per round.
                    biased;
                    cmd = rx.recv() => match cmd {
                        Some(cmd) => Some(cmd),
                        None => break,
                    },
                    () = sleep_until(wake), if wake.is_some() => None,
                }
            };
            let mut next = first;
            while let Some(cmd) = next.take() {
                self.merge_direct();
                match cmd {
                    Command::Purge(targets) => self.accept(targets),
                    Command::PurgeWatched(targets, state) => self.accept_watched(&targets, state),
                    Command::Attempt(state, targets) => self.accept_attempt(state, targets),
                    Command::Spilled => {}
                    Command::Flush(ack) => waiters.push(ack),
                }
                if self.pending.len() < MAX_DRAIN {
                    next = rx.try_recv().ok();
                }
            }
            if !self.schedule.is_empty() || !self.repurge_schedule.is_empty() || self.spilled() > 0
            {
                self.merge_direct();
            }
            self.take_due_retries();
            self.take_due_repurges();
            self.take_spilled();
            if let Some(direct) = self.direct.take() {
                self.deliver_one(direct, Vec::new()).await;
                #[cfg(feature = "verify")]
                self.hand_checks();
            } else if !self.pending.is_empty() {
                let mut batches = Vec::with_capacity(self.pending.len().div_ceil(self.max_batch));
                let mut drain = self.pending.drain(..);
                loop {
                    let (batch, waiting): (Vec<Target>, Vec<Waiting>) =
                        drain.by_ref().take(self.max_batch).unzip();
                    if batch.is_empty() {
                        break;
                    }
                    batches.push((batch, waiting));
                }
                drop(drain);
                self.deliver(batches).await;
                #[cfg(feature = "verify")]
                self.hand_checks();
            }
            self.room.notify_waiters();
            #[cfg(feature = "metrics")]
            {
                self.meters
                    .queued
                    .set(self.counters.queued.load(Ordering::Relaxed) as f64);
                self.meters.in_spill.set(self.spilled() as f64);
            }
            // A flush waits for what was spilled before it too.
            if self.spilled() == 0 {
                // ... and for the checks of what was delivered before it.
                #[cfg(feature = "verify")]
                if !waiters.is_empty()
                    && let Some(checks) = &self.checks
                {
                    checks.idle().await;
                }
                for ack in waiters.drain(..) {
                    // The flusher may have given up waiting (a deadline); nothing to do then.
                    let _ = ack.send(());
                }
            }
        }
    }

    fn accept(&mut self, targets: Batch) {
        match targets {
            Batch::Owned(targets) if self.takes_directly(&targets) => self.direct = Some(targets),
            Batch::Owned(targets) => targets.into_iter().for_each(|t| self.accept_one(t)),
            Batch::Shared(targets) => targets.iter().for_each(|t| self.accept_one(t.clone())),
        }
    }

    /// Whether `targets` can be the round's `direct` batch: `pending` would leave them as
    /// they are (nothing else waiting, one batch's worth at most, all distinct, every kind one
    /// this backend purges).
    fn takes_directly(&self, targets: &[Target]) -> bool {
        self.direct.is_none()
            && self.pending.is_empty()
            && !targets.is_empty()
            && targets.len() <= self.max_batch.min(DIRECT_MAX)
            && targets
                .iter()
                .enumerate()
                .all(|(i, t)| self.capabilities.supports(t.kind()) && !targets[..i].contains(t))
    }

    /// Moves the `direct` batch, if any, into `pending`, before anything else is queued
    /// beside it.
    fn merge_direct(&mut self) {
        if let Some(direct) = self.direct.take() {
            for target in direct {
                self.queue(target);
            }
        }
    }

    /// Queues a target of the in-memory queue, or counts it out if this backend cannot purge
    /// its kind.
    fn accept_one(&mut self, target: Target) {
        if self.capabilities.supports(target.kind()) {
            self.queue(target);
        } else {
            self.unsupported(&target);
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Puts a target of the in-memory queue (already counted in `queued`) in `pending`, or
    /// counts it as a duplicate.
    fn queue(&mut self, target: Target) -> &mut Waiting {
        let waiting = self.pending.entry(target).or_default();
        if waiting.queued {
            self.counters.deduplicated.fetch_add(1, Ordering::Relaxed);
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
        } else {
            waiting.queued = true;
        }
        waiting
    }

    /// Targets in the spill file now.
    fn spilled(&self) -> u64 {
        self.spill.count()
    }

    /// Reads spilled targets back into the queue while it has room, oldest first.
    fn take_spilled(&mut self) {
        if self.spilled() == 0
            || self.pending.len() as u64 >= self.refill.below
            || self.spill_backoff.is_some_and(|at| at > Instant::now())
        {
            return;
        }
        match self.spill.take(self.refill.chunk) {
            Ok(taken) => {
                if taken.lost > 0 {
                    // Counted as queued when spilled; they will never be delivered.
                    let _ = self.counters.queued.fetch_update(
                        Ordering::AcqRel,
                        Ordering::Acquire,
                        |q| Some(q.saturating_sub(taken.lost)),
                    );
                    self.counters
                        .dropped
                        .fetch_add(taken.lost, Ordering::Relaxed);
                    #[cfg(feature = "metrics")]
                    self.meters.dropped.increment(taken.lost);
                    tracing::error!(
                        target: "cache_purge_hooks",
                        backend = %self.name,
                        file = %self.spill.path().display(),
                        targets = taken.lost,
                        "spilled targets could not be read back (a damaged spill file); dropped"
                    );
                }
                self.accept(Batch::Owned(taken.targets));
                self.counters.note_in_memory(self.spill.count());
            }
            Err(e) => {
                self.spill_backoff = Some(Instant::now() + std::time::Duration::from_secs(1));
                tracing::error!(
                    target: "cache_purge_hooks",
                    backend = %self.name,
                    file = %self.spill.path().display(),
                    error = %e,
                    "cannot read the spill file; trying again in 1s"
                );
            }
        }
    }

    fn unsupported(&self, t: &Target) {
        self.counters.unsupported.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.meters.unsupported.increment(1);
        tracing::warn!(
            target: "cache_purge_hooks",
            backend = %self.name,
            %t,
            "backend cannot purge a target of this kind; skipped (never widened)"
        );
    }

    /// Queued targets (counted in `queued`) that an attempt waits for as well.
    fn accept_watched(&mut self, targets: &[Target], state: Arc<AttemptState>) {
        let mut inner = state.lock();
        for t in targets {
            if !self.capabilities.supports(t.kind()) {
                self.unsupported(t);
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                inner.report.unsupported.push(t.clone());
                continue;
            }
            let waiting = self.queue(t.clone());
            if !waiting.attempts.iter().any(|a| Arc::ptr_eq(a, &state)) {
                inner.remaining += 1;
                waiting.attempts.push(Arc::clone(&state));
            }
        }
        AttemptState::finish_if_done(&mut inner);
    }

    fn accept_attempt(&mut self, state: Arc<AttemptState>, targets: Vec<Target>) {
        let distinct: IndexSet<Target, TargetHasher> = targets.into_iter().collect();
        let mut inner = state.lock();
        for t in distinct {
            if !self.capabilities.supports(t.kind()) {
                self.unsupported(&t);
                inner.report.unsupported.push(t);
            } else {
                inner.remaining += 1;
                self.pending
                    .entry(t)
                    .or_default()
                    .attempts
                    .push(Arc::clone(&state));
            }
        }
        AttemptState::finish_if_done(&mut inner);
    }

    /// Moves the retries that are due into `pending`.
    fn take_due_retries(&mut self) {
        // Nothing scheduled, the common round: no clock read.
        if self.schedule.is_empty() {
            return;
        }
        let now = Instant::now();
        while let Some(Reverse((due, _, _))) = self.schedule.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((_, _, target))) = self.schedule.pop() else {
                break;
            };
            self.counters.retrying.fetch_sub(1, Ordering::Relaxed);
            // Delivered meanwhile (purged again and succeeded), or already waiting: one
            // attempt is enough.
            let waiting = if self.failures.contains_key(&target) {
                Some(self.pending.entry(target).or_default())
            } else {
                None
            };
            match waiting {
                Some(w) if !w.queued => {
                    w.queued = true;
                    self.counters.retried.fetch_add(1, Ordering::Relaxed);
                    #[cfg(feature = "metrics")]
                    self.meters.retried.increment(1);
                }
                _ => {
                    self.counters.deduplicated.fetch_add(1, Ordering::Relaxed);
                    self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Moves the second purges that are due into `pending`.
    fn take_due_repurges(&mut self) {
        if self.repurge_schedule.is_empty() {
            return;
        }
        let now = Instant::now();
        while let Some(Reverse((due, _, _))) = self.repurge_schedule.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((_, _, target))) = self.repurge_schedule.pop() else {
                break;
            };
            match self.repurges.get(&target) {
                // Purged again since: its second purge was pushed back.
                Some(later) if *later > now => {
                    let later = *later;
                    self.sequence += 1;
                    self.repurge_schedule
                        .push(Reverse((later, self.sequence, target)));
                    continue;
                }
                Some(_) => {
                    self.repurges.remove(&target);
                }
                None => continue,
            }
            self.counters.repurging.fetch_sub(1, Ordering::Relaxed);
            let waiting = self.pending.entry(target).or_default();
            if waiting.queued {
                // A purge of it is waiting anyway (and will have a second purge of its own).
                self.counters.deduplicated.fetch_add(1, Ordering::Relaxed);
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            } else {
                waiting.queued = true;
                waiting.repurge = true;
                self.counters.repurged.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Schedules the second purge of a target just delivered (see `repurge_after`).
    fn schedule_repurge(&mut self, target: Target) {
        let Some(after) = self.repurge_after else {
            return;
        };
        let due = Instant::now() + after;
        if let Some(scheduled) = self.repurges.get_mut(&target) {
            // Already waiting for one: push it back, so it comes after this purge too.
            *scheduled = due;
            return;
        }
        self.repurges.insert(target.clone(), due);
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        self.counters.repurging.fetch_add(1, Ordering::Relaxed);
        self.sequence += 1;
        self.repurge_schedule
            .push(Reverse((due, self.sequence, target)));
    }

    async fn deliver(&mut self, batches: Vec<(Vec<Target>, Vec<Waiting>)>) {
        if batches.len() == 1 {
            for (batch, waiting) in batches {
                self.deliver_one(batch, waiting).await;
            }
            return;
        }
        #[cfg(feature = "verify")]
        self.look_up_tag_urls(batches.iter().flat_map(|(batch, _)| batch))
            .await;
        let backend = Arc::clone(&self.backend);
        let mut results = futures::stream::iter(batches)
            .map(|(batch, waiting)| {
                let backend = Arc::clone(&backend);
                async move {
                    let started = Instant::now();
                    let result = backend.purge(&batch).await;
                    ((batch, waiting), result, started.elapsed())
                }
            })
            .buffer_unordered(self.concurrency);

        let mut outcomes = Vec::new();
        while let Some((batch, result, took)) = results.next().await {
            outcomes.push((batch, result, took));
        }
        drop(results);
        for (batch, result, took) in outcomes {
            self.count_batch(took);
            self.settle(batch, result, took);
        }
    }

    /// A round of one batch (one save's targets, most often): sent directly, without a stream
    /// of futures to set up and tear down.
    async fn deliver_one(&mut self, batch: Vec<Target>, waiting: Vec<Waiting>) {
        #[cfg(feature = "verify")]
        self.look_up_tag_urls(batch.iter()).await;
        let backend = Arc::clone(&self.backend);
        let started = Instant::now();
        let result = backend.purge(&batch).await;
        let took = started.elapsed();
        self.count_batch(took);
        self.settle((batch, waiting), result, took);
    }

    /// Counts a batch sent, and the time it took.
    fn count_batch(&self, took: std::time::Duration) {
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.counters
            .busy_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        {
            self.meters.batches.increment(1);
            self.meters.latency.record(took.as_secs_f64());
        }
    }

    /// Settles every target of a batch: the one place where a purge's outcome is counted and
    /// decided. Delivered targets leave the queue and tell their attempts; failed ones get the
    /// policy's verdict, which schedules or buries the queued ones and is reported to the
    /// attempts.
    ///
    /// An empty `waiting` (the `direct` batch's) means that every target is queued and no
    /// attempt waits for it: no list to build for the common round.
    fn settle(
        &mut self,
        (batch, waiting): (Vec<Target>, Vec<Waiting>),
        result: Result<(), PurgeError>,
        took: std::time::Duration,
    ) {
        let error = match result {
            Ok(()) => {
                tracing::debug!(
                    target: "cache_purge_hooks",
                    backend = %self.name,
                    targets = batch.len(),
                    micros = took.as_micros() as u64,
                    "batch purged"
                );
                for (target, waiting) in Waiting::each(batch, waiting) {
                    self.delivered(target, waiting);
                }
                return;
            }
            Err(e) => e,
        };
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.clone());
        let now = Instant::now();
        let wall_now = SystemTime::now();
        let mut failed = 0usize;
        let mut buried = 0usize;
        let mut reported = 0usize;
        let mut first: Option<Target> = None;
        // The queued targets to retry, and the wait of the most-tried one.
        let mut retry: Vec<Target> = Vec::new();
        let mut retry_in: Option<(u32, std::time::Duration)> = None;
        for (target, waiting) in Waiting::each(batch, waiting) {
            if !error.failed().contains(&target) {
                self.delivered(target, waiting);
                continue;
            }
            failed += 1;
            first.get_or_insert_with(|| target.clone());
            for attempt in waiting.attempts {
                let tried = attempt.history.attempts.saturating_add(1);
                let failing_for = wall_now
                    .duration_since(attempt.history.since)
                    .unwrap_or_default();
                let verdict = self.retry.decide(&error, tried, failing_for);
                attempt.settle(target.clone(), Settled::Failed(error.clone(), verdict));
                reported += 1;
            }
            if !waiting.queued {
                continue;
            }
            let state = self
                .failures
                .entry(target.clone())
                .or_insert_with(|| Failing {
                    attempts: 0,
                    since: now,
                    since_wall: wall_now,
                });
            state.attempts += 1;
            let attempts = state.attempts;
            match self
                .retry
                .decide(&error, attempts, now.duration_since(state.since))
            {
                Verdict::Retry { after } => {
                    if retry_in.is_none_or(|(most, _)| attempts > most) {
                        retry_in = Some((attempts, after));
                    }
                    retry.push(target);
                }
                _ => {
                    buried += 1;
                    self.bury(target, &error);
                }
            }
        }
        self.counters
            .failed
            .fetch_add(failed as u64, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.meters.failed.increment(failed as u64);
        // One wait for the whole failed part of the batch (the most-tried target's), so that
        // it is retried as one batch again.
        let retry_in = retry_in.map(|(_, wait)| wait);
        if let Some(wait) = retry_in {
            for target in retry {
                self.sequence += 1;
                self.schedule
                    .push(Reverse((now + wait, self.sequence, target)));
                self.counters.retrying.fetch_add(1, Ordering::Relaxed);
            }
        }
        let first = first.as_ref().map(tracing::field::display);
        if buried > 0 {
            tracing::error!(
                target: "cache_purge_hooks",
                backend = %self.name,
                error = %error,
                failed,
                dead = buried,
                first,
                "purge failed; given up (see Purger::dead_letters)"
            );
        } else if retry_in.is_some() {
            tracing::error!(
                target: "cache_purge_hooks",
                backend = %self.name,
                error = %error,
                failed,
                first,
                retry_in_ms = retry_in.map(|d| d.as_millis() as u64),
                "purge failed; will retry"
            );
        } else {
            tracing::error!(
                target: "cache_purge_hooks",
                backend = %self.name,
                error = %error,
                failed,
                reported,
                first,
                "purge failed; reported to its delivery agent (the outbox retries it)"
            );
        }
    }

    /// A target was purged: it leaves the queue (if queued) and its attempts hear of it.
    fn delivered(&mut self, target: Target, waiting: Waiting) {
        if waiting.queued {
            // Hashing the target is most of a removal: skipped while nothing has failed.
            if !self.failures.is_empty() {
                self.failures.remove(&target);
            }
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            // (Checked here so that the target is not cloned for nothing.)
            if !waiting.repurge && self.repurge_after.is_some() {
                self.schedule_repurge(target.clone());
            }
        }
        self.counters.purged.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.meters.purged.increment(1);
        #[cfg(feature = "verify")]
        if let Some(verifier) = self.checks.as_ref().map(|c| &c.verifier) {
            if let Target::Tag(tag) = &target {
                if let Some((verified, urls)) = self.tag_urls.remove(tag) {
                    let (verify, refresh) = verifier.split_tag_urls(verified, urls);
                    self.to_verify.extend(verify.into_iter().map(Target::Url));
                    self.to_refresh.extend(refresh.into_iter().map(Target::Url));
                }
            } else if verifier.picks(&target) {
                self.to_verify.push(target.clone());
            } else if verifier.refreshes(&target) {
                self.to_refresh.push(target.clone());
            }
        }
        for attempt in waiting.attempts {
            attempt.settle(target.clone(), Settled::Delivered);
        }
    }

    /// With checks on and a tag index, looks up the URLs of this round's tags before they are
    /// purged (the purge forgets them from the index), so that the checker can request them
    /// once the tag is delivered. A lookup that fails leaves the tags unchecked (logged); the
    /// purge itself does its own lookup and is not affected.
    #[cfg(feature = "verify")]
    async fn look_up_tag_urls<'a>(&mut self, targets: impl Iterator<Item = &'a Target>) {
        self.tag_urls.clear();
        let (Some(index), Some(checks)) = (&self.tag_index, &self.checks) else {
            return;
        };
        let (tags, verified): (Vec<crate::target::Tag>, Vec<bool>) = targets
            .filter_map(|t| match t {
                Target::Tag(tag) => Some((tag.clone(), checks.verifier.checks_tag()?)),
                _ => None,
            })
            .unzip();
        if tags.is_empty() {
            return;
        }
        match index.urls_of_each(&tags).await {
            Ok(lists) => self
                .tag_urls
                .extend(tags.into_iter().zip(verified.into_iter().zip(lists))),
            Err(error) => tracing::warn!(
                target: "cache_purge_hooks",
                backend = %self.name,
                tags = tags.len(),
                %error,
                "the purged tags' URLs are not checked: the tag index lookup failed"
            ),
        }
    }

    /// Hands the URLs delivered this round to the checker (`verify`, `refresh`), which
    /// requests them beside this worker so that slow answers never delay the next purges. What
    /// would take the checker's backlog above [`MAX_CHECK_BACKLOG`] is not checked (counted
    /// `verify_skipped`): memory stays bounded, and no purge waits for a check.
    #[cfg(feature = "verify")]
    fn hand_checks(&mut self) {
        let Some(checks) = &self.checks else {
            return;
        };
        let mut verify = std::mem::take(&mut self.to_verify);
        let mut refresh = std::mem::take(&mut self.to_refresh);
        let wanted = verify.len() + refresh.len();
        if wanted == 0 {
            return;
        }
        let room = MAX_CHECK_BACKLOG.saturating_sub(*checks.backlog.borrow());
        if wanted > room {
            // Verification first: it is what tells a broken purge.
            let keep_verify = verify.len().min(room);
            verify.truncate(keep_verify);
            refresh.truncate(room - keep_verify);
            let skipped = (wanted - verify.len() - refresh.len()) as u64;
            self.counters
                .verify_skipped
                .fetch_add(skipped, Ordering::Relaxed);
            #[cfg(feature = "metrics")]
            self.meters.verify_skipped.increment(skipped);
            tracing::warn!(
                target: "cache_purge_hooks",
                backend = %self.name,
                skipped,
                backlog = MAX_CHECK_BACKLOG,
                "purged URLs not verified or refreshed: the checks of earlier purges are still running (counted as verify_skipped)"
            );
        }
        checks.send(CheckRound { verify, refresh });
    }

    /// Moves a target to the dead-letter list.
    fn bury(&mut self, target: Target, error: &PurgeError) {
        let state = self.failures.remove(&target);
        self.counters.queued.fetch_sub(1, Ordering::Relaxed);
        self.counters.dead.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.meters.dead.increment(1);
        let (attempts, since) = match state {
            Some(s) => (s.attempts, s.since_wall),
            None => (1, SystemTime::now()),
        };
        let error = error.clone();
        let letter = DeadLetter {
            backend: self.name.clone(),
            target,
            attempts,
            error,
            first_failure: since,
            died: SystemTime::now(),
        };
        let mut dead = self.dead.lock().unwrap_or_else(|p| p.into_inner());
        if dead.len() >= self.retry.dead_letter_capacity.max(1)
            && let Some(old) = dead.pop_front()
        {
            self.counters.dead_evicted.fetch_add(1, Ordering::Relaxed);
            #[cfg(feature = "metrics")]
            self.meters.dead_evicted.increment(1);
            tracing::error!(
                target: "cache_purge_hooks",
                backend = %self.name,
                target = %old.target,
                "dead-letter list full; forgetting its oldest entry"
            );
        }
        dead.push_back(letter);
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(all(test, feature = "metrics", feature = "memory"))]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use crate::backend::MemoryBackend;
    use crate::{Delivery, Purger, Target};

    #[test]
    fn counters_reach_the_metrics_recorder() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let memory = MemoryBackend::new();
                let purger = Purger::builder()
                    .delivery(Delivery::Immediate)
                    .backend("mem", memory)
                    .build()
                    .unwrap();
                purger
                    .purge(["/a", "/b"].map(|u| Target::url(u).unwrap()))
                    .await;
                purger.flush().await;
            });
        });
        let snapshot = snapshotter.snapshot().into_vec();
        let value = |name: &str| {
            snapshot
                .iter()
                .find(|(key, ..)| {
                    key.key().name() == name
                        && key
                            .key()
                            .labels()
                            .any(|l| l.key() == "backend" && l.value() == "mem")
                })
                .map(|(_, _, _, v)| v)
        };
        assert_eq!(
            value("cache_purge_purged_total"),
            Some(&DebugValue::Counter(2))
        );
        assert_eq!(
            value("cache_purge_batches_total"),
            Some(&DebugValue::Counter(1))
        );
        assert!(
            matches!(value("cache_purge_queued"), Some(DebugValue::Gauge(g)) if g.into_inner() == 0.0)
        );
    }
}

/// At most this many purged URLs wait for their check (`verify`, `refresh`) at a time, per
/// backend; more are counted `verify_skipped`.
#[cfg(feature = "verify")]
pub(crate) const MAX_CHECK_BACKLOG: usize = 10_000;

/// The URLs of one round of purges to check.
#[cfg(feature = "verify")]
struct CheckRound {
    verify: Vec<Target>,
    refresh: Vec<Target>,
}

/// The worker's side of its checker: a task of its own that verifies and refreshes purged
/// URLs one round after another, so that requests through the cache (a miss goes to the
/// origin, which may be slow) never hold up the next purges.
#[cfg(feature = "verify")]
struct Checks {
    verifier: Arc<crate::verify::Verifier>,
    tx: mpsc::UnboundedSender<CheckRound>,
    /// URLs handed over and not checked yet (bounded by the worker: [`MAX_CHECK_BACKLOG`]).
    backlog: Arc<tokio::sync::watch::Sender<usize>>,
}

#[cfg(feature = "verify")]
impl Checks {
    fn spawn(context: CheckContext, runtime: &tokio::runtime::Handle, span: tracing::Span) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<CheckRound>();
        let backlog = Arc::new(tokio::sync::watch::Sender::new(0usize));
        let verifier = Arc::clone(&context.verifier);
        let done = Arc::clone(&backlog);
        runtime.spawn(tracing::Instrument::instrument(
            async move {
                while let Some(round) = rx.recv().await {
                    let n = round.verify.len() + round.refresh.len();
                    context.refresh(round.refresh).await;
                    context.verify(round.verify).await;
                    done.send_modify(|b| *b = b.saturating_sub(n));
                }
            },
            span,
        ));
        Self {
            verifier,
            tx,
            backlog,
        }
    }

    fn send(&self, round: CheckRound) {
        let n = round.verify.len() + round.refresh.len();
        self.backlog.send_modify(|b| *b += n);
        if self.tx.send(round).is_err() {
            // The checker is gone (the runtime is shutting down): nothing will check them.
            self.backlog.send_modify(|b| *b = b.saturating_sub(n));
        }
    }

    /// Waits until every URL handed over so far was checked.
    async fn idle(&self) {
        let mut rx = self.backlog.subscribe();
        let _ = rx.wait_for(|b| *b == 0).await;
    }
}

/// What the checker needs of its backend's worker.
#[cfg(feature = "verify")]
struct CheckContext {
    name: String,
    backend: Arc<dyn Backend>,
    verifier: Arc<crate::verify::Verifier>,
    counters: Arc<Counters>,
    #[cfg(feature = "metrics")]
    meters: Arc<Meters>,
    last_verify_failure: Arc<Mutex<Option<crate::verify::VerifyFailure>>>,
}

#[cfg(feature = "verify")]
impl CheckContext {
    /// Asks the cache about the URLs delivered this round (see [`crate::verify`]): a URL
    /// still served from the cache is purged once more and asked about again.
    async fn verify(&self, targets: Vec<Target>) {
        use crate::verify::Seen;
        if targets.is_empty() {
            return;
        }
        let verifier = &self.verifier;
        let backend = Arc::clone(&self.backend);
        let name = self.name.clone();
        let outcomes: Vec<(Target, Seen)> = futures::stream::iter(targets)
            .map(|target| {
                let verifier = Arc::clone(verifier);
                let backend = Arc::clone(&backend);
                let name = name.clone();
                let counters = Arc::clone(&self.counters);
                async move {
                    let Some(url) = target.as_url().cloned() else {
                        return (target, Seen::Miss);
                    };
                    match verifier.look(&url).await {
                        Seen::Hit => {
                            tracing::warn!(
                                target: "cache_purge_hooks",
                                backend = %name,
                                url = %url,
                                "purged, but the cache still serves it from its store; purging it once more"
                            );
                            let started = Instant::now();
                            let result = backend.purge(std::slice::from_ref(&target)).await;
                            // A batch of the backend's like any other (not a second `purged`).
                            counters.batches.fetch_add(1, Ordering::Relaxed);
                            counters
                                .busy_micros
                                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                            if let Err(e) = result {
                                tracing::warn!(target: "cache_purge_hooks", backend = %name, url = %url, error = %e, "the second purge failed");
                            }
                            let seen = verifier.look(&url).await;
                            (target, seen)
                        }
                        seen => (target, seen),
                    }
                }
            })
            .buffer_unordered(verifier.concurrency)
            .collect()
            .await;
        for (target, seen) in outcomes {
            match seen {
                Seen::Miss => {
                    self.counters.verified.fetch_add(1, Ordering::Relaxed);
                    #[cfg(feature = "metrics")]
                    self.meters.verified.increment(1);
                }
                Seen::Hit => {
                    self.counters.verify_failed.fetch_add(1, Ordering::Relaxed);
                    #[cfg(feature = "metrics")]
                    self.meters.verify_failed.increment(1);
                    let Some(url) = target.as_url().cloned() else {
                        continue;
                    };
                    tracing::error!(
                        target: "cache_purge_hooks",
                        backend = %self.name,
                        url = %url,
                        hint = verifier.hint(),
                        "purge did not take: the cache still serves the page after two purges"
                    );
                    *self
                        .last_verify_failure
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(crate::verify::VerifyFailure {
                        url,
                        hint: verifier.hint(),
                    });
                }
                Seen::Unknown(why) => {
                    self.counters
                        .verify_unanswered
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        target: "cache_purge_hooks",
                        backend = %self.name,
                        %target,
                        error = %why,
                        "could not verify the purge: the cache did not answer"
                    );
                }
            }
        }
    }

    /// Requests the URLs delivered this round through the cache once (`refresh`), at most
    /// `verify_concurrency` at a time and `refresh_rate` started per second.
    async fn refresh(&self, targets: Vec<Target>) {
        use crate::verify::Seen;
        let verifier = &self.verifier;
        if targets.is_empty() {
            return;
        }
        let start = tokio::time::Instant::now();
        let every = verifier.refresh_every();
        let seen: Vec<(Target, Seen)> = futures::stream::iter(targets.into_iter().enumerate())
            .map(|(i, target)| {
                let verifier = Arc::clone(verifier);
                async move {
                    if let Some(every) = every {
                        tokio::time::sleep_until(start + every * i as u32).await;
                    }
                    let Some(url) = target.as_url().cloned() else {
                        return (target, Seen::Miss);
                    };
                    let seen = verifier.look(&url).await;
                    (target, seen)
                }
            })
            .buffer_unordered(verifier.concurrency)
            .collect()
            .await;
        for (target, seen) in seen {
            match seen {
                Seen::Unknown(why) => tracing::warn!(
                    target: "cache_purge_hooks",
                    backend = %self.name,
                    %target,
                    error = %why,
                    "could not refresh the purged page: the cache did not answer"
                ),
                _ => {
                    self.counters.refreshed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
