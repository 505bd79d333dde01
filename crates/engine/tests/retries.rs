//! Retries, backoff, `Retry-After`, the dead-letter list and the bounded queue, with a
//! scripted backend whose answers each test chooses (real caches are in tests/varnish.rs and
//! tests/nginx.rs; a cache that goes away and comes back, under SeaORM saves, in the root
//! crate's tests/nginx.rs).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_purge_hooks_engine::backend::{Backend, Capabilities, Cause, PurgeError};
use cache_purge_hooks_engine::{Delivery, Purger, QueueFull, RetryPolicy, Settings, Target};
use tokio::sync::Semaphore;

fn urls(list: &[&str]) -> Vec<Target> {
    list.iter().map(|u| Target::url(u).unwrap()).collect()
}

/// The permits of a backend's gate: holding them all makes its calls wait.
const GATE: u32 = 1000;

/// One recorded call: when, and which targets.
type Call = (Instant, Vec<Target>);

/// A backend that answers from a script (then succeeds), records each call, and can be held
/// shut so that calls wait.
#[derive(Clone)]
struct Scripted {
    capabilities: Capabilities,
    script: Arc<Mutex<VecDeque<Result<(), PurgeError>>>>,
    calls: Arc<Mutex<Vec<Call>>>,
    gate: Arc<Semaphore>,
}

impl Scripted {
    fn new(script: Vec<Result<(), PurgeError>>) -> Self {
        Self {
            capabilities: Capabilities::ALL,
            script: Arc::new(Mutex::new(script.into())),
            calls: Arc::default(),
            gate: Arc::new(Semaphore::new(GATE as usize)),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

#[cache_purge_hooks_engine::async_trait]
impl Backend for Scripted {
    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }
    fn max_batch(&self) -> usize {
        100
    }
    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
        let _permit = self.gate.acquire().await;
        self.calls
            .lock()
            .unwrap()
            .push((Instant::now(), batch.to_vec()));
        self.script.lock().unwrap().pop_front().unwrap_or(Ok(()))
    }
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy::default().with_backoff(Duration::from_millis(20), Duration::from_millis(100))
}

fn pipeline(backend: &Scripted, retry: RetryPolicy) -> Purger {
    Purger::builder()
        .delivery(Delivery::Immediate)
        .retry(retry)
        .backend("scripted", backend.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn transient_failures_are_retried_until_delivered() {
    let backend = Scripted::new(vec![
        Err(PurgeError::new(Cause::Unreachable, "connection refused").on_server("cache:80")),
        Err(PurgeError::new(Cause::Unreachable, "connection refused").on_server("cache:80")),
    ]);
    let purger = pipeline(&backend, quick_retries());
    purger.purge(urls(&["/a", "/b"])).await;
    purger.flush().await;
    // The first attempt failed; the targets wait for a retry, still counted as queued.
    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.failed, stats.retrying, stats.queued),
        (2, 2, 2),
        "{stats:?}"
    );

    purger.shutdown(Duration::from_secs(5)).await.unwrap();
    let stats = &purger.stats()[0];
    assert_eq!(
        (
            stats.purged,
            stats.failed,
            stats.retried,
            stats.dead,
            stats.queued
        ),
        (2, 4, 4, 0, 0),
        "{stats:?}"
    );
    let calls = backend.calls();
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|(_, batch)| batch.len() == 2));
    // Exponential backoff with jitter: at least half of 20 ms, then of 40 ms.
    assert!(calls[1].0 - calls[0].0 >= Duration::from_millis(10));
    assert!(calls[2].0 - calls[1].0 >= Duration::from_millis(20));
}

#[tokio::test]
async fn only_the_failed_part_of_a_batch_is_retried() {
    let backend = Scripted::new(vec![Err(PurgeError::new(Cause::Status(503), "503")
        .on_server("cache:80")
        .only(urls(&["/b"])))]);
    let purger = pipeline(&backend, quick_retries());
    purger.purge(urls(&["/a", "/b", "/c"])).await;
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
    let calls = backend.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].1, urls(&["/b"]));
    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.failed, stats.dead), (3, 1, 0));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let backend = Scripted::new(vec![Err(PurgeError::new(
        Cause::RateLimited {
            retry_after: Some(Duration::from_millis(300)),
        },
        "429 Too Many Requests",
    )
    .on_server("cdn"))]);
    let purger = pipeline(&backend, quick_retries());
    purger.purge(urls(&["/a"])).await;
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
    let calls = backend.calls();
    assert_eq!(calls.len(), 2);
    // The backoff alone would be 10-20 ms.
    assert!(
        calls[1].0 - calls[0].0 >= Duration::from_millis(300),
        "retried after {:?}",
        calls[1].0 - calls[0].0
    );
}

#[tokio::test]
async fn permanent_failures_and_exhausted_attempts_go_to_the_dead_letter_list() {
    let backend = Scripted::new(vec![
        Err(
            PurgeError::new(Cause::Authentication, "authentication failed")
                .on_server("varnish:6082"),
        ),
        Err(PurgeError::new(Cause::Timeout, "timed out")),
        Err(PurgeError::new(Cause::Timeout, "timed out")),
        Err(PurgeError::new(Cause::Timeout, "timed out")),
    ]);
    let purger = pipeline(&backend, quick_retries().with_max_attempts(3));
    // A permanent failure is not retried at all.
    purger.purge(urls(&["/auth"])).await;
    purger.flush().await;
    // Three attempts, then given up.
    purger.purge(urls(&["/timeout"])).await;
    for _ in 0..200 {
        if purger.stats()[0].dead == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.dead, stats.queued, stats.failed),
        (2, 0, 4),
        "{stats:?}"
    );
    let dead = purger.dead_letters();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].target, Target::url("/auth").unwrap());
    assert_eq!(dead[0].attempts, 1);
    assert_eq!(
        dead[0].error.to_string(),
        "varnish:6082: authentication failed (permanent)"
    );
    assert_eq!(dead[0].error.cause(), &Cause::Authentication);
    assert_eq!(dead[1].attempts, 3);
    assert_eq!(dead[1].backend, "scripted");

    // Fixed: retrying the dead letters delivers them.
    assert_eq!(purger.retry_dead(), 2);
    assert!(purger.dead_letters().is_empty());
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
    let last = backend.calls().pop().unwrap().1;
    assert_eq!(last, urls(&["/auth", "/timeout"]));
    assert_eq!(purger.stats()[0].purged, 2);
}

#[tokio::test]
async fn shutdown_reports_what_retries_could_not_deliver_in_time() {
    let backend = Scripted::new(
        (0..100)
            .map(|_| Err(PurgeError::new(Cause::Unavailable, "down")))
            .collect(),
    );
    let purger = pipeline(&backend, quick_retries());
    purger.purge(urls(&["/a"])).await;
    let err = purger
        .shutdown(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(err.undelivered, 1);
}

#[tokio::test]
async fn a_full_queue_coalesces_into_one_purge_of_everything_when_opted_in() {
    let backend = Scripted::new(vec![]);
    let held = backend.gate.clone();
    let _all = held.acquire_many(GATE).await.unwrap();
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .queue_capacity(3)
        .when_full(QueueFull::Coalesce)
        .backend("scripted", backend.clone())
        .build()
        .unwrap();
    purger.purge(urls(&["/1", "/2", "/3"])).await;
    purger.purge(urls(&["/4", "/5"])).await;
    purger.purge(urls(&["/6"])).await;
    let stats = &purger.stats()[0];
    // Bounded: 3 targets and one "everything", whatever more comes.
    assert_eq!(
        (stats.coalesced, stats.queued, stats.dropped),
        (3, 5, 0),
        "{stats:?}"
    );
    drop(_all);
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
    let delivered: Vec<Target> = backend.calls().into_iter().flat_map(|(_, b)| b).collect();
    assert!(delivered.contains(&Target::Everything), "{delivered:?}");
}

#[tokio::test]
async fn a_full_queue_spills_to_disk_and_delivers_everything_in_order() {
    let mut backend = Scripted::new(vec![]);
    backend.capabilities = Capabilities::URL;
    let held = backend.gate.clone();
    let all = held.acquire_many(GATE).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let purger = Purger::builder()
        .queue_capacity(2)
        .spill_dir(dir.path())
        .backend("scripted", backend.clone())
        .build()
        .unwrap();
    let sent: Vec<Target> = (0..50)
        .map(|i| Target::url(&format!("/p/{i}")).unwrap())
        .collect();
    for chunk in sent.chunks(7) {
        // Never waits, never widens, never drops: what does not fit goes to the spill file.
        purger.try_purge(chunk.to_vec());
    }
    let stats = &purger.stats()[0];
    assert_eq!((stats.dropped, stats.coalesced), (0, 0), "{stats:?}");
    assert_eq!(stats.queued, 50, "{stats:?}");
    assert!(stats.in_spill >= 48 && stats.spilled >= 48, "{stats:?}");
    let files: Vec<_> = walk(dir.path());
    assert_eq!(files.len(), 1, "one spill file: {files:?}");
    // The cache answers again: every target is delivered, once, in the order it was sent.
    drop(all);
    purger.shutdown(Duration::from_secs(10)).await.unwrap();
    let delivered: Vec<Target> = backend.calls().into_iter().flat_map(|(_, b)| b).collect();
    assert_eq!(delivered, sent);
    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.purged, stats.queued, stats.in_spill, stats.dropped),
        (50, 0, 0, 0),
        "{stats:?}"
    );
    assert!(
        walk(dir.path()).is_empty(),
        "the spill file is removed at shutdown"
    );
}

/// The files under `dir`, recursively.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn retry_and_queue_settings_are_read_and_checked() {
    let s = Settings::from_toml_str(
        "queue_capacity = 50\nwhen_full = \"wait\"\n[retry]\nmax_attempts = 3\ninitial_backoff = \"1s\"\nmax_backoff = \"1m\"\nmax_age = \"10m\"\n",
    )
    .unwrap();
    assert_eq!(s.queue_capacity, 50);
    assert_eq!(s.when_full, QueueFull::Wait);
    assert_eq!(s.retry.max_attempts, 3);
    assert_eq!(s.retry.max_backoff, Duration::from_secs(60));
    let err = |toml: &str| Settings::from_toml_str(toml).unwrap_err().to_string();
    assert_eq!(
        err("[retry]\nmax_attempts = 0\n"),
        "invalid cache purge setting `retry.max_attempts` (from settings text): expected at least 1 (1 = no retries)"
    );
    assert_eq!(
        err("[retry]\ninitial_backoff = \"10s\"\nmax_backoff = \"1s\"\n"),
        "invalid cache purge setting `retry.max_backoff` (from settings text): must not be shorter than retry.initial_backoff"
    );
    assert!(err("[retry]\nmax_attempt = 3\n").contains("unknown key `max_attempt`"));
    assert_eq!(
        err("when_full = \"block\"\n"),
        "invalid cache purge setting `when_full` (from settings text): unknown queue policy `block`; expected one of `spill`, `wait`, `coalesce`"
    );
}

#[tokio::test]
async fn with_the_wait_policy_hooks_wait_for_room_instead_of_widening() {
    let backend = Scripted::new(vec![]);
    let held = backend.gate.clone();
    let all = held.acquire_many(GATE).await.unwrap();
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .queue_capacity(3)
        .when_full(QueueFull::Wait)
        .backend("scripted", backend.clone())
        .build()
        .unwrap();
    purger.purge(urls(&["/1", "/2", "/3"])).await;
    let waiting = tokio::spawn({
        let purger = purger.clone();
        async move { purger.purge(urls(&["/4", "/5"])).await }
    });
    // The cache is stuck, so the second call waits (the queue stays bounded).
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    assert_eq!(purger.stats()[0].queued, 3);
    // The cache answers again: room frees, the call returns, nothing was widened or lost.
    drop(all);
    waiting.await.unwrap();
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.purged, stats.coalesced, stats.dropped),
        (5, 0, 0),
        "{stats:?}"
    );
}
