//! The [`Purger`]: where purge requests enter the pipeline.
//!
//! Asking a `Purger` to purge never blocks and never fails: the targets are queued for one
//! worker task per backend, which deduplicates, batches and sends them. [`Purger::flush`]
//! waits until everything queued so far has been handled; [`Purger::shutdown`] does the same
//! with a deadline and then stops the workers.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use cache_purge_hooks_engine::{backend::MemoryBackend, Purger, Target};
//!
//! let memory = MemoryBackend::new();
//! let purger = Purger::builder().backend("memory", memory.clone()).build().unwrap();
//! purger.purge(["/a", "/b", "/a"].map(|u| Target::url(u).unwrap()));
//! purger.flush().await;
//! assert_eq!(memory.urls(), ["/a", "/b"]); // deduplicated
//! purger.shutdown(Duration::from_secs(5)).await.unwrap();
//! # }
//! ```
//!
//! ORM hooks find their purger with [`Purger::current`]: the one set for the running task by
//! [`Purger::scope`], else the one installed process-wide by [`Purger::install`].

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::after_commit;
use crate::backend::Backend;
use crate::dispatch::{Command, WorkerHandle, spawn_worker};
use crate::retry::{DeadLetter, RetryPolicy};
use crate::settings::{Delivery, QueueFull};
use crate::target::{Target, Targets};

/// A handle on a purge pipeline. Cheap to clone; every clone feeds the same workers.
#[derive(Clone)]
pub struct Purger {
    inner: Arc<Inner>,
}

struct Inner {
    delivery: Delivery,
    queue_capacity: u64,
    retry: RetryPolicy,
    when_full: QueueFull,
    /// Signalled by the workers as targets leave their queues.
    room: Arc<tokio::sync::Notify>,
    backends: Vec<(String, Arc<dyn Backend>)>,
    outbox_wake: Arc<tokio::sync::Notify>,
    workers: Vec<WorkerHandle>,
    joins: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    closed: AtomicBool,
    #[cfg(feature = "memory")]
    memory: std::collections::HashMap<String, crate::backend::MemoryBackend>,
}

impl fmt::Debug for Purger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Purger")
            .field("delivery", &self.inner.delivery)
            .field(
                "backends",
                &self
                    .inner
                    .workers
                    .iter()
                    .map(|w| w.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Builds a [`Purger`] from backends.
#[derive(Default)]
#[must_use]
pub struct PurgerBuilder {
    delivery: Delivery,
    retry: RetryPolicy,
    queue_capacity: Option<usize>,
    when_full: QueueFull,
    backends: Vec<(String, Arc<dyn Backend>)>,
    #[cfg(feature = "memory")]
    memory: std::collections::HashMap<String, crate::backend::MemoryBackend>,
}

impl fmt::Debug for PurgerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PurgerBuilder")
            .field("delivery", &self.delivery)
            .field(
                "backends",
                &self.backends.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A [`Purger`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `build` was called outside a tokio runtime, where the workers cannot run.
    #[error("a Purger must be built inside a tokio runtime (its workers are tokio tasks)")]
    NoRuntime,
    /// Two backends have the same name.
    #[error("two backends are named `{0}`; backend names must be unique")]
    DuplicateName(String),
    /// A backend could not be set up from its settings (a secret file that cannot be read,
    /// for example).
    #[error("backend `{name}`: {error}")]
    Backend {
        /// The backend's name.
        name: String,
        /// What is wrong and what to do about it.
        #[source]
        error: crate::backend::SetupError,
    },
    /// The settings name a backend kind this build cannot construct.
    #[error(
        "backend `{name}`: kind `{kind}` is not available in this build of cache-purge-hooks{hint}"
    )]
    Unavailable {
        /// The backend's name in the settings.
        name: String,
        /// Its kind.
        kind: &'static str,
        /// What to do about it.
        hint: &'static str,
    },
}

impl PurgerBuilder {
    /// Adds a backend under this name (used in logs, statistics, the outbox's rows and the
    /// settings file's `[backends.NAME]`). Every purge goes to every backend that can purge its
    /// kind of target.
    pub fn backend<B: Backend>(mut self, name: impl Into<String>, backend: B) -> Self {
        let name = name.into();
        #[cfg(feature = "memory")]
        if let Some(m) =
            (&backend as &dyn std::any::Any).downcast_ref::<crate::backend::MemoryBackend>()
        {
            self.memory.insert(name.clone(), m.clone());
        }
        self.backends.push((name, Arc::new(backend)));
        self
    }

    /// Adds an already shared backend under this name.
    pub fn shared_backend(mut self, name: impl Into<String>, backend: Arc<dyn Backend>) -> Self {
        self.backends.push((name.into(), backend));
        self
    }

    /// Sets the delivery mode (default [`Delivery::AfterCommit`]).
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// Sets when failed purges are retried and given up on (default
    /// [`RetryPolicy::default`]: 8 attempts, 200 ms doubling to 30 s, 1 hour at most).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets how many targets may wait per backend (default 100000) before the
    /// [`when_full`](Self::when_full) policy applies (see [`Purger::purge`]).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = Some(capacity.max(1));
        self
    }

    /// Sets what a full queue does (default [`QueueFull::Coalesce`]).
    pub fn when_full(mut self, policy: QueueFull) -> Self {
        self.when_full = policy;
        self
    }

    /// A builder with the backends and delivery mode of these settings, to which more
    /// backends can be added.
    pub fn from_settings(settings: &crate::Settings) -> Result<PurgerBuilder, BuildError> {
        let mut builder = Purger::builder()
            .delivery(settings.delivery)
            .retry(settings.retry.clone())
            .queue_capacity(settings.queue_capacity)
            .when_full(settings.when_full);
        for (name, backend) in &settings.backends {
            builder = builder.settings_backend(name, backend)?;
        }
        Ok(builder)
    }

    /// Adds the backend one `[backends.NAME]` table describes.
    fn settings_backend(
        self,
        name: &str,
        backend: &crate::settings::BackendSettings,
    ) -> Result<Self, BuildError> {
        #[cfg(any(
            feature = "log",
            feature = "dummy",
            feature = "memory",
            feature = "varnish",
            feature = "nginx"
        ))]
        use crate::settings::BackendSettings;
        #[cfg(any(feature = "varnish", feature = "nginx"))]
        let named = |error| BuildError::Backend {
            name: name.to_owned(),
            error,
        };
        match backend {
            #[cfg(feature = "log")]
            BackendSettings::Log(_) => Ok(self.backend(name, crate::backend::LogBackend::new())),
            #[cfg(feature = "dummy")]
            BackendSettings::Dummy(_) => {
                Ok(self.backend(name, crate::backend::DummyBackend::new()))
            }
            #[cfg(feature = "memory")]
            BackendSettings::Memory(m) => Ok(self.backend(
                name,
                crate::backend::MemoryBackend::new().with_max_batch(m.max_batch),
            )),
            #[cfg(feature = "varnish")]
            BackendSettings::Varnish(v) => {
                Ok(self.backend(name, crate::backend::VarnishBackend::new(v).map_err(named)?))
            }
            #[cfg(feature = "nginx")]
            BackendSettings::Nginx(n) => {
                Ok(self.backend(name, crate::backend::NginxBackend::new(n).map_err(named)?))
            }
            #[allow(unreachable_patterns)]
            other => Err(BuildError::Unavailable {
                name: name.to_owned(),
                kind: other.kind(),
                hint: " (enable the cargo feature of the same name)",
            }),
        }
    }

    /// Starts one worker per backend on the current tokio runtime.
    ///
    /// With no backend at all, purges are accepted and dropped with a warning: say so
    /// explicitly with a `dummy` backend instead.
    pub fn build(self) -> Result<Purger, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let mut names = std::collections::HashSet::new();
        for (name, _) in &self.backends {
            if !names.insert(name.as_str()) {
                return Err(BuildError::DuplicateName(name.clone()));
            }
        }
        if self.backends.is_empty() {
            tracing::warn!(target: "cache_purge_hooks", "Purger built without any backend");
        }
        let mut workers = Vec::new();
        let mut joins = Vec::new();
        let backends = self.backends.clone();
        let room = Arc::new(tokio::sync::Notify::new());
        for (name, backend) in self.backends {
            let (handle, join) =
                spawn_worker(name, backend, self.retry.clone(), room.clone(), &runtime);
            workers.push(handle);
            joins.push(join);
        }
        Ok(Purger {
            inner: Arc::new(Inner {
                delivery: self.delivery,
                queue_capacity: self.queue_capacity.unwrap_or(100_000) as u64,
                retry: self.retry,
                when_full: self.when_full,
                room,
                backends,
                outbox_wake: Arc::new(tokio::sync::Notify::new()),
                workers,
                joins: Mutex::new(joins),
                closed: AtomicBool::new(false),
                #[cfg(feature = "memory")]
                memory: self.memory,
            }),
        })
    }
}

fn global() -> &'static RwLock<Option<Purger>> {
    static GLOBAL: RwLock<Option<Purger>> = RwLock::new(None);
    &GLOBAL
}

tokio::task_local! {
    static CURRENT: Purger;
}

/// [`Purger::shutdown`] ran out of time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cache purge shutdown timed out with {undelivered} target(s) still queued")]
pub struct ShutdownTimeout {
    /// How many targets (summed over backends) were still waiting.
    pub undelivered: u64,
}

impl Purger {
    /// Builds a purger with the backends and delivery mode of these settings.
    pub fn from_settings(settings: &crate::Settings) -> Result<Purger, BuildError> {
        PurgerBuilder::from_settings(settings)?.build()
    }

    /// A builder with no backend and [`Delivery::AfterCommit`].
    pub fn builder() -> PurgerBuilder {
        PurgerBuilder::default()
    }

    /// An identity of the pipeline, equal for every clone of this purger and different for
    /// every other purger alive (ORM crates use it to keep per-pipeline state apart).
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// The delivery mode.
    pub fn delivery(&self) -> Delivery {
        self.inner.delivery
    }

    /// The backend of this name, to call directly (what an outbox worker does).
    pub fn backend(&self, name: &str) -> Option<Arc<dyn Backend>> {
        self.inner
            .backends
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.clone())
    }

    /// The retry policy of this pipeline.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// Signalled when purges were written to the outbox by this process, so that its outbox
    /// worker delivers them at once instead of at its next poll.
    pub fn outbox_wake(&self) -> Arc<tokio::sync::Notify> {
        self.inner.outbox_wake.clone()
    }

    /// The backends' names, in the order they were added.
    pub fn backend_names(&self) -> Vec<&str> {
        self.inner.workers.iter().map(|w| w.name.as_str()).collect()
    }

    /// The [`MemoryBackend`](crate::backend::MemoryBackend) of this name, if the purger has one
    /// (from the settings file or the builder): what tests assert on.
    #[cfg(feature = "memory")]
    pub fn memory_backend(&self, name: &str) -> Option<crate::backend::MemoryBackend> {
        self.inner.memory.get(name).cloned()
    }

    /// Makes this the process-wide purger that ORM hooks use (replacing any earlier one).
    pub fn install(&self) {
        *global().write().unwrap_or_else(|p| p.into_inner()) = Some(self.clone());
    }

    /// Removes the process-wide purger, returning it.
    pub fn uninstall() -> Option<Purger> {
        global().write().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The purger for the running task: the one set by [`Purger::scope`] if any, else the one
    /// installed by [`Purger::install`].
    pub fn current() -> Option<Purger> {
        CURRENT
            .try_with(Purger::clone)
            .ok()
            .or_else(|| global().read().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Runs `fut` with this purger as [`Purger::current`], whatever is installed globally:
    /// lets tests (or apps with several pipelines) run side by side.
    pub async fn scope<F: Future>(&self, fut: F) -> F::Output {
        CURRENT.scope(self.clone(), fut).await
    }

    /// Queues targets for purging. Never blocks.
    ///
    /// Each backend holds at most `queue_capacity` undelivered targets (settings key
    /// `queue_capacity`, [`PurgerBuilder::queue_capacity`]). Past that, targets for a backend
    /// that can purge everything are coalesced into one purge of everything (wider, never
    /// lost); for one that cannot, they are dropped. Both are counted in
    /// [`BackendStats`] (`coalesced`, `dropped`) and logged. With `when_full = "wait"`,
    /// [`Purger::purge_async`] (which the ORM hooks use) waits for room instead.
    ///
    /// With [`Delivery::AfterCommit`] inside an [`AfterCommit`](crate::AfterCommit) scope (a
    /// transaction), the targets wait for the scope to be committed and are dropped if it is
    /// not.
    pub fn purge(&self, targets: impl IntoIterator<Item = Target>) {
        if let Some(targets) = self.not_held_back(targets) {
            self.send(targets);
        }
    }

    /// The targets to send now: none when empty, or when an after-commit scope holds them.
    fn not_held_back(&self, targets: impl IntoIterator<Item = Target>) -> Option<Vec<Target>> {
        let targets: Vec<Target> = targets.into_iter().collect();
        if targets.is_empty() {
            return None;
        }
        match self.inner.delivery {
            Delivery::AfterCommit => after_commit::buffer(self, targets),
            // The ORM crate writes outbox rows itself, through the save's connection; a
            // purge reaching the Purger directly (by hand, or from code that has no
            // connection) is sent at once.
            Delivery::Immediate | Delivery::Outbox => Some(targets),
        }
    }

    /// [`Purger::purge`], but with `when_full = "wait"` it first waits until every backend's
    /// queue has room for the targets (never while it is empty, so a batch larger than the
    /// capacity still goes through). What the ORM hooks call.
    pub async fn purge_async(&self, targets: impl IntoIterator<Item = Target>) {
        let Some(targets) = self.not_held_back(targets) else {
            return;
        };
        if self.inner.when_full == QueueFull::Wait {
            self.wait_for_room(targets.len() as u64).await;
        }
        self.send(targets);
    }

    async fn wait_for_room(&self, n: u64) {
        let capacity = self.inner.queue_capacity;
        let mut waited = false;
        loop {
            let notified = self.inner.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let full = self.inner.workers.iter().any(|w| {
                let queued = w.counters.queued.load(Ordering::Relaxed);
                queued > 0 && queued + n > capacity
            });
            if !full || self.inner.closed.load(Ordering::Acquire) {
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

    /// [`Purger::purge_resolved`] through [`Purger::purge_async`].
    pub async fn purge_resolved_async(&self, source: &str, targets: Targets) {
        self.purge_async(targets.into_valid(source)).await;
    }

    /// Queues what a resolver produced, logging (with `source`, for example the entity's type
    /// name) every target it rejected.
    pub fn purge_resolved(&self, source: &str, targets: Targets) {
        self.purge(targets.into_valid(source));
    }

    /// Sends to the workers now, bypassing any after-commit scope.
    pub(crate) fn send(&self, targets: Vec<Target>) {
        if self.inner.closed.load(Ordering::Acquire) {
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
        for w in &self.inner.workers {
            let queued = w.counters.queued.load(Ordering::Relaxed);
            let mut batch = shared.clone();
            if queued + n > self.inner.queue_capacity {
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

    /// Waits until every target queued before this call has been attempted: delivered, or
    /// failed (and then waiting for a retry, or dead). Use [`Purger::shutdown`] to wait for
    /// retries too.
    pub async fn flush(&self) {
        let mut acks = Vec::with_capacity(self.inner.workers.len());
        for w in &self.inner.workers {
            let (tx, rx) = oneshot::channel();
            if w.tx.send(Command::Flush(tx)).is_ok() {
                acks.push(rx);
            }
        }
        for ack in acks {
            // An error means the worker stopped: nothing more will be delivered by it.
            let _ = ack.await;
        }
    }

    /// Flushes with a deadline, keeps retrying what failed until nothing is left or the
    /// deadline passes, then stops the workers. Purges requested afterwards are logged as
    /// errors and dropped.
    pub async fn shutdown(&self, deadline: Duration) -> Result<(), ShutdownTimeout> {
        let started = tokio::time::Instant::now();
        let mut flushed = tokio::time::timeout(deadline, self.flush()).await.is_ok();
        // Then give the retries what is left of the deadline.
        while flushed && self.undelivered() > 0 {
            if started.elapsed() >= deadline {
                flushed = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.inner.closed.store(true, Ordering::Release);
        let undelivered: u64 = self
            .inner
            .workers
            .iter()
            .map(|w| w.counters.queued.load(Ordering::Relaxed))
            .sum();
        let joins: Vec<_> =
            std::mem::take(&mut *self.inner.joins.lock().unwrap_or_else(|p| p.into_inner()));
        for j in joins {
            j.abort();
        }
        if flushed && undelivered == 0 {
            Ok(())
        } else {
            tracing::error!(target: "cache_purge_hooks", undelivered, "shutdown deadline passed");
            Err(ShutdownTimeout { undelivered })
        }
    }

    /// Targets not yet delivered nor given up on, over all backends.
    pub fn undelivered(&self) -> u64 {
        self.inner
            .workers
            .iter()
            .map(|w| w.counters.queued.load(Ordering::Relaxed))
            .sum()
    }

    /// The purges given up on, oldest first, over all backends (each backend keeps the last
    /// `retry.dead_letter_capacity`).
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        let mut all = Vec::new();
        for w in &self.inner.workers {
            all.extend(
                w.dead
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .cloned(),
            );
        }
        all.sort_by_key(|d| d.died);
        all
    }

    /// Queues every dead letter again (each to its own backend, with fresh attempts) and
    /// empties the list. Returns how many were queued.
    pub fn retry_dead(&self) -> usize {
        let mut total = 0;
        for w in &self.inner.workers {
            let letters: Vec<Target> = w
                .dead
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain(..)
                .map(|d| d.target)
                .collect();
            if letters.is_empty() {
                continue;
            }
            total += letters.len();
            w.counters
                .queued
                .fetch_add(letters.len() as u64, Ordering::Relaxed);
            if w.tx.send(Command::Purge(letters.into())).is_err() {
                tracing::error!(target: "cache_purge_hooks", backend = %w.name, "backend worker has stopped; dead letters not retried");
            }
        }
        total
    }

    /// A snapshot of every backend's counters.
    pub fn stats(&self) -> Vec<BackendStats> {
        self.inner
            .workers
            .iter()
            .map(|w| {
                let c = &w.counters;
                let batches = c.batches.load(Ordering::Relaxed);
                let busy = Duration::from_micros(c.busy_micros.load(Ordering::Relaxed));
                BackendStats {
                    backend: w.name.clone(),
                    queued: c.queued.load(Ordering::Relaxed),
                    retrying: c.retrying.load(Ordering::Relaxed),
                    purged: c.purged.load(Ordering::Relaxed),
                    failed: c.failed.load(Ordering::Relaxed),
                    retried: c.retried.load(Ordering::Relaxed),
                    dead: c.dead.load(Ordering::Relaxed),
                    dead_evicted: c.dead_evicted.load(Ordering::Relaxed),
                    coalesced: c.coalesced.load(Ordering::Relaxed),
                    dropped: c.dropped.load(Ordering::Relaxed),
                    mean_latency: if batches == 0 {
                        Duration::ZERO
                    } else {
                        busy / batches as u32
                    },
                    batches: c.batches.load(Ordering::Relaxed),
                    unsupported: c.unsupported.load(Ordering::Relaxed),
                    deduplicated: c.deduplicated.load(Ordering::Relaxed),
                    busy,
                    last_error: w
                        .last_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
                }
            })
            .collect()
    }
}

/// Counters of one backend since the purger started.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendStats {
    /// The backend's name.
    pub backend: String,
    /// Targets not yet delivered nor given up on: waiting, in flight or waiting for a retry
    /// (the queue depth).
    pub queued: u64,
    /// Of `queued`, the targets waiting for a retry.
    pub retrying: u64,
    /// Targets purged.
    pub purged: u64,
    /// Failed attempts (a target that fails three times counts three).
    pub failed: u64,
    /// Retries made.
    pub retried: u64,
    /// Targets given up on (see [`Purger::dead_letters`]).
    pub dead: u64,
    /// Dead letters forgotten because the list was full.
    pub dead_evicted: u64,
    /// Targets replaced by one "purge everything" because the queue was full.
    pub coalesced: u64,
    /// Targets dropped because the queue was full and the backend cannot purge everything.
    pub dropped: u64,
    /// Mean time of one purge call.
    pub mean_latency: Duration,
    /// Purge calls made.
    pub batches: u64,
    /// Targets skipped because the backend cannot purge their kind.
    pub unsupported: u64,
    /// Targets dropped because the same target was already waiting.
    pub deduplicated: u64,
    /// Time spent in purge calls (summed over concurrent calls).
    pub busy: Duration,
    /// The last failure of a purge call, if any failed: match its
    /// [`cause`](crate::backend::PurgeError::cause) to tell why targets are still queued.
    pub last_error: Option<crate::backend::PurgeError>,
}

/// Queues targets on [`Purger::current`]; with none installed, logs an error naming the
/// targets (so the loss is visible) and drops them.
pub fn purge_current(source: &str, targets: Targets) {
    match Purger::current() {
        Some(p) => p.purge_resolved(source, targets),
        None => no_purger(source, &targets),
    }
}

/// [`purge_current`] through [`Purger::purge_async`] (waits for room with
/// `when_full = "wait"`): what the ORM hooks call.
pub async fn purge_current_async(source: &str, targets: Targets) {
    match Purger::current() {
        Some(p) => p.purge_resolved_async(source, targets).await,
        None => no_purger(source, &targets),
    }
}

fn no_purger(source: &str, targets: &Targets) {
    if !targets.is_empty() || !targets.rejected().is_empty() {
        tracing::error!(
            target: "cache_purge_hooks",
            source,
            targets = ?targets.urls(),
            "no Purger installed: call cache_purge_hooks::init() (or Purger::install) at start-up; purge dropped"
        );
    }
}
