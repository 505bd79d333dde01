//! The outbox worker: claims the rows of each backend, hands each row to the [`Purger`]'s
//! engine for one attempt ([`Purger::attempt`]), and settles it by the engine's report
//! (deleted when delivered; retried after the retry policy's wait, or dead-lettered when the
//! policy gives up). The worker never talks to a backend itself: batching, concurrency,
//! statistics and the retry decision are the engine's, as for the in-memory queue.
//!
//! One task per backend, so a slow or failing backend never holds back another. Each task is
//! woken at once by saves of this process ([`Purger::outbox_wake`]) and polls for rows written
//! by other processes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_purge_hooks_engine::Purger;
use cache_purge_hooks_engine::attempt::{AttemptError, History};
use cache_purge_hooks_engine::retry::Verdict;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{OutboxRow, claim, complete, fail, now_ms, release};

/// Builds an [`OutboxWorker`].
#[derive(Debug)]
#[must_use]
pub struct OutboxWorkerBuilder {
    db: DatabaseConnection,
    purger: Purger,
    worker_id: String,
    poll_interval: Duration,
    lease: Duration,
    claim_limit: u64,
}

impl OutboxWorkerBuilder {
    /// This worker's id, unique across processes (default `<host>:<pid>:<n>`).
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = id.into();
        self
    }

    /// How often to look for rows written by other processes (default 1 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long a claimed row stays this worker's (default 60 s): longer than the longest
    /// delivery, since another worker may take the row when it runs out.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Rows claimed at once per backend (default 500).
    pub fn claim_limit(mut self, limit: u64) -> Self {
        self.claim_limit = limit.max(1);
        self
    }

    /// Checks that the outbox table exists (an error naming the migration otherwise: better
    /// at start-up than at the first save), then starts one task per backend of the purger.
    pub async fn start(self) -> Result<OutboxWorker, DbErr> {
        super::entity::Entity::find()
            .count(&self.db)
            .await
            .map_err(|e| {
                DbErr::Custom(format!(
                    "cache purge outbox: cannot read table `cache_purge_outbox` ({e}); add cache_purge_hooks::sea_orm::outbox::Migration to your Migrator, or run docs/outbox.sql"
                ))
            })?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let counters = Arc::new(WorkerCounters::default());
        let mut tasks = Vec::new();
        for name in self.purger.backend_names() {
            let task = BackendTask {
                db: self.db.clone(),
                name: name.to_owned(),
                purger: self.purger.clone(),
                worker_id: self.worker_id.clone(),
                poll_interval: self.poll_interval,
                lease: self.lease,
                claim_limit: self.claim_limit,
                counters: counters.clone(),
            };
            tasks.push(tokio::spawn(task.run(stop_rx.clone())));
        }
        tracing::info!(
            target: "cache_purge_hooks",
            worker = %self.worker_id,
            backends = tasks.len(),
            "outbox worker started"
        );
        Ok(OutboxWorker {
            worker_id: self.worker_id,
            stop: stop_tx,
            tasks,
            counters,
        })
    }
}

/// Delivers the outbox. Start it with [`OutboxWorker::builder`]; stop it with
/// [`OutboxWorker::stop`] (rows not yet delivered stay in the table for the next start).
///
/// ```no_run
/// # async fn demo(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
/// use cache_purge_hooks_engine::{Purger, Settings};
/// use cache_purge_hooks_sea_orm::outbox::OutboxWorker;
///
/// let purger = Purger::from_settings(&Settings::load()?)?; // delivery = "outbox"
/// purger.install();
/// let worker = OutboxWorker::builder(db, purger.clone()).start().await?;
/// // ... the app runs; every save writes its purge to the outbox, the worker delivers it ...
/// worker.stop(std::time::Duration::from_secs(10)).await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct OutboxWorker {
    worker_id: String,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    counters: Arc<WorkerCounters>,
}

/// What an [`OutboxWorker`] did since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxWorkerStats {
    /// Rows delivered and deleted.
    pub delivered: u64,
    /// Row deliveries that failed (each will be retried, or is dead).
    pub failed: u64,
    /// Rows dead-lettered.
    pub dead: u64,
    /// Rows this worker delivered but could not settle because its lease had run out and
    /// another worker had claimed them: their purge is sent twice (harmless, counted).
    pub lease_lost: u64,
}

#[derive(Debug, Default)]
struct WorkerCounters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dead: AtomicU64,
    lease_lost: AtomicU64,
}

impl WorkerCounters {
    fn snapshot(&self) -> OutboxWorkerStats {
        OutboxWorkerStats {
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dead: self.dead.load(Ordering::Relaxed),
            lease_lost: self.lease_lost.load(Ordering::Relaxed),
        }
    }
}

static WORKERS: AtomicU64 = AtomicU64::new(0);

impl OutboxWorker {
    /// A builder delivering the rows of `purger`'s backends from `db`.
    pub fn builder(db: DatabaseConnection, purger: Purger) -> OutboxWorkerBuilder {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".to_owned());
        OutboxWorkerBuilder {
            db,
            purger,
            worker_id: format!(
                "{host}:{}:{}",
                std::process::id(),
                WORKERS.fetch_add(1, Ordering::Relaxed)
            ),
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            claim_limit: 500,
        }
    }

    /// This worker's id (the `locked_by` of the rows it holds).
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// What the worker did so far.
    pub fn stats(&self) -> OutboxWorkerStats {
        self.counters.snapshot()
    }

    /// Stops claiming; waits up to `deadline` for deliveries under way to settle. Rows not
    /// delivered stay in the table (released, so another worker can take them at once).
    pub async fn stop(self, deadline: Duration) -> OutboxWorkerStats {
        let _ = self.stop.send(true);
        let all = futures::future::join_all(self.tasks);
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::warn!(
                target: "cache_purge_hooks",
                worker = %self.worker_id,
                "outbox worker stop deadline passed; rows in flight return to the table when their lease runs out"
            );
        }
        // Counted once the deliveries under way have settled, so that they are included.
        self.counters.snapshot()
    }
}

struct BackendTask {
    db: DatabaseConnection,
    name: String,
    purger: Purger,
    worker_id: String,
    poll_interval: Duration,
    lease: Duration,
    claim_limit: u64,
    counters: Arc<WorkerCounters>,
}

impl BackendTask {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let wake = self.purger.outbox_wake();
        // Read-your-writes waits for the cycles after a write.
        let rounds = self.purger.outbox_rounds();
        loop {
            if *stop.borrow() {
                break;
            }
            // Registered before claiming, so a wake-up during the claim is not missed.
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let rows = match claim(
                &self.db,
                &self.name,
                &self.worker_id,
                self.claim_limit,
                self.lease,
                now_ms(),
            )
            .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(
                        target: "cache_purge_hooks",
                        backend = &self.name,
                        error = %e,
                        "outbox claim failed; retrying at the next poll"
                    );
                    Vec::new()
                }
            };
            if rows.is_empty() {
                rounds.completed();
                tokio::select! {
                    () = &mut woken => {}
                    () = tokio::time::sleep(self.poll_interval) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            if *stop.borrow() {
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                let _ = release(&self.db, &self.worker_id, &ids).await;
                break;
            }
            self.deliver(rows).await;
            rounds.completed();
        }
    }

    /// Hands every row to the engine for one attempt, then settles each row by its report:
    /// delivered (deleted), retried at the verdict's time, or dead.
    async fn deliver(&self, rows: Vec<OutboxRow>) {
        let attempts: Vec<_> = rows
            .iter()
            .map(|row| {
                let since =
                    UNIX_EPOCH + Duration::from_millis(u64::try_from(row.created_at).unwrap_or(0));
                self.purger.attempt(
                    &self.name,
                    row.targets.clone(),
                    History::after(row.attempts, since.min(SystemTime::now())),
                )
            })
            .collect();
        let reports = futures::future::join_all(attempts).await;
        let now = now_ms();
        let mut good = Vec::new();
        let mut dead: Vec<(i64, String)> = Vec::new();
        let mut retry: Vec<(i64, i64, String)> = Vec::new();
        let mut untouched = Vec::new();
        for (row, report) in rows.iter().zip(reports) {
            let report = match report {
                Ok(report) => report,
                // The engine stopped under the worker (shutdown): the row goes back as it was.
                Err(AttemptError::Stopped) | Err(_) => {
                    untouched.push(row.id);
                    continue;
                }
            };
            let (Some(verdict), Some(error)) = (report.verdict(), report.error()) else {
                good.push(row.id);
                continue;
            };
            let message = error.to_string();
            match verdict {
                Verdict::Retry { after } => retry.push((
                    row.id,
                    now + i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
                    message,
                )),
                _ => dead.push((row.id, message)),
            }
        }
        if !untouched.is_empty() {
            let _ = release(&self.db, &self.worker_id, &untouched).await;
        }
        if !good.is_empty() {
            match complete(&self.db, &self.worker_id, &good).await {
                Ok(n) => {
                    self.counters.delivered.fetch_add(n, Ordering::Relaxed);
                    let lost = good.len() as u64 - n.min(good.len() as u64);
                    if lost > 0 {
                        self.counters.lease_lost.fetch_add(lost, Ordering::Relaxed);
                        tracing::warn!(
                            target: "cache_purge_hooks",
                            backend = %self.name,
                            rows = lost,
                            "outbox lease ran out during delivery; another worker sends these purges again"
                        );
                    }
                }
                Err(e) => tracing::error!(
                    target: "cache_purge_hooks",
                    backend = %self.name,
                    error = %e,
                    "delivered outbox rows could not be deleted; they will be sent again"
                ),
            }
        }
        if dead.is_empty() && retry.is_empty() {
            return;
        }
        self.counters
            .failed
            .fetch_add((dead.len() + retry.len()) as u64, Ordering::Relaxed);
        tracing::error!(
            target: "cache_purge_hooks",
            backend = %self.name,
            error = %dead.first().map(|d| d.1.as_str()).or(retry.first().map(|r| r.2.as_str())).unwrap_or_default(),
            retry = retry.len(),
            dead = dead.len(),
            "outbox delivery failed"
        );
        // One statement per distinct error.
        let mut by_error: Vec<(String, Vec<i64>)> = Vec::new();
        for (id, message) in dead {
            match by_error.iter_mut().find(|(m, _)| *m == message) {
                Some((_, ids)) => ids.push(id),
                None => by_error.push((message, vec![id])),
            }
        }
        for (message, ids) in by_error {
            match fail(&self.db, &self.worker_id, &ids, &message, None, now).await {
                Ok(n) => {
                    self.counters.dead.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => log_settle_error(&self.name, &e),
            }
        }
        for (id, at, message) in retry {
            if let Err(e) = fail(&self.db, &self.worker_id, &[id], &message, Some(at), now).await {
                log_settle_error(&self.name, &e);
            }
        }
    }
}

fn log_settle_error(backend: &str, e: &DbErr) {
    tracing::error!(
        target: "cache_purge_hooks",
        backend,
        error = %e,
        "could not record an outbox failure; the row returns when its lease runs out"
    );
}

/// Whether this connection's outbox table exists (for health checks).
pub async fn table_exists<C: ConnectionTrait>(db: &C) -> bool {
    super::entity::Entity::find().count(db).await.is_ok()
}
