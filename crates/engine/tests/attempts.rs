//! Attempts: what the outbox worker and other delivery agents hand the engine, and the report
//! they get back. The engine tries each target once, batched with everything else queued for
//! the backend, and reports the retry policy's verdict instead of retrying itself.

use std::time::{Duration, SystemTime};

use cache_purge_hooks_engine::attempt::{AttemptError, History};
use cache_purge_hooks_engine::backend::{Backend, Capabilities, Cause, MemoryBackend, PurgeError};
use cache_purge_hooks_engine::retry::{GiveUp, Verdict};
use cache_purge_hooks_engine::{Delivery, Purger, RetryPolicy, Target};

fn urls(list: &[&str]) -> Vec<Target> {
    list.iter().map(|u| Target::url(u).unwrap()).collect()
}

fn purger(memory: &MemoryBackend) -> Purger {
    Purger::builder()
        .delivery(Delivery::Immediate)
        .retry(
            RetryPolicy::default().with_backoff(Duration::from_millis(50), Duration::from_secs(1)),
        )
        .backend("edge", memory.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_delivered_attempt_is_reported_and_counted_like_any_purge() {
    let memory = MemoryBackend::new();
    let purger = purger(&memory);
    let report = purger
        .attempt("edge", urls(&["/a", "/b", "/a"]), History::new())
        .await
        .unwrap();
    assert!(report.is_delivered());
    assert_eq!(report.delivered, urls(&["/a", "/b"]), "each target once");
    assert_eq!(report.verdict(), None);
    assert_eq!(memory.urls(), ["/a", "/b"]);
    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.batches, stats.queued), (2, 1, 0));
}

#[tokio::test]
async fn a_target_both_queued_and_attempted_is_sent_once_and_settles_both() {
    let memory = MemoryBackend::new();
    let purger = purger(&memory);
    // Both reach the worker before it sends: the queued purge, then the attempt.
    purger.purge(urls(&["/shared", "/queued"])).await;
    let attempt = purger.attempt("edge", urls(&["/shared", "/attempted"]), History::new());
    let report = attempt.await.unwrap();
    purger.flush().await;
    assert_eq!(report.delivered, urls(&["/shared", "/attempted"]));
    let mut sent = memory.urls();
    sent.sort();
    assert_eq!(
        sent,
        ["/attempted", "/queued", "/shared"],
        "/shared sent once"
    );
    assert_eq!(purger.stats()[0].queued, 0);
}

#[tokio::test]
async fn a_failed_attempt_gets_the_verdict_and_is_left_to_its_agent() {
    let memory = MemoryBackend::new();
    let purger = purger(&memory);
    memory.fail_with(Some(
        PurgeError::new(Cause::Timeout, "timed out").on_server("c:80"),
    ));
    let report = purger
        .attempt("edge", urls(&["/a"]), History::new())
        .await
        .unwrap();
    assert!(!report.is_delivered());
    let failed = &report.failed[0];
    assert_eq!(failed.target, urls(&["/a"])[0]);
    assert_eq!(failed.error.cause(), &Cause::Timeout);
    let Some(Verdict::Retry { after }) = report.verdict() else {
        panic!("{report:?}");
    };
    // The first backoff of 50 ms, with jitter in its upper half.
    assert!(after >= Duration::from_millis(25) && after <= Duration::from_millis(50));
    // The engine does not retry it nor bury it: the agent owns its schedule.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(memory.records().len(), 1);
    assert!(purger.dead_letters().is_empty());
    let stats = &purger.stats()[0];
    assert_eq!((stats.failed, stats.queued, stats.retrying), (1, 0, 0));
    assert_eq!(
        stats.last_error.as_ref().map(|e| e.cause()),
        Some(&Cause::Timeout)
    );
}

#[tokio::test]
async fn the_history_decides_with_the_same_policy_as_the_queue() {
    let memory = MemoryBackend::new();
    let purger = purger(&memory);
    memory.fail_with(Some(PurgeError::new(Cause::Timeout, "timed out")));
    // Seven failed attempts before: this eighth is the last of the default policy.
    let tired = History::after(7, SystemTime::now());
    let report = purger.attempt("edge", urls(&["/a"]), tired).await.unwrap();
    assert_eq!(report.verdict(), Some(Verdict::GiveUp(GiveUp::Attempts)));
    // Failing for longer than max_age (1 h).
    let old = History::after(1, SystemTime::now() - Duration::from_secs(7200));
    let report = purger.attempt("edge", urls(&["/a"]), old).await.unwrap();
    assert_eq!(report.verdict(), Some(Verdict::GiveUp(GiveUp::Age)));
    // A rate limit's wait wins over a shorter backoff.
    memory.fail_with(Some(PurgeError::new(
        Cause::RateLimited {
            retry_after: Some(Duration::from_secs(9)),
        },
        "answered 429",
    )));
    let report = purger
        .attempt("edge", urls(&["/a"]), History::new())
        .await
        .unwrap();
    assert_eq!(report.retry_after(), Some(Duration::from_secs(9)));
}

/// Purges URLs only, and fails `/bad` alone.
struct Picky;

#[cache_purge_hooks_engine::async_trait]
impl Backend for Picky {
    fn capabilities(&self) -> Capabilities {
        Capabilities::URL
    }
    fn max_batch(&self) -> usize {
        100
    }
    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
        let bad: Vec<Target> = batch
            .iter()
            .filter(|t| t.to_string().ends_with("/bad"))
            .cloned()
            .collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(PurgeError::new(Cause::Status(403), "answered 403").only(bad))
        }
    }
}

#[tokio::test]
async fn partial_failures_and_unsupported_targets_are_reported_per_target() {
    let purger = Purger::builder().backend("picky", Picky).build().unwrap();
    let mut targets = urls(&["/ok", "/bad"]);
    targets.push(Target::tag("post-1").unwrap());
    let report = purger
        .attempt("picky", targets, History::new())
        .await
        .unwrap();
    assert_eq!(report.delivered, urls(&["/ok"]));
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].target, urls(&["/bad"])[0]);
    assert_eq!(report.failed[0].verdict, Verdict::GiveUp(GiveUp::Permanent));
    assert_eq!(report.unsupported, [Target::tag("post-1").unwrap()]);
    assert_eq!(purger.stats()[0].unsupported, 1);
}

#[tokio::test]
async fn an_unknown_backend_or_a_stopped_engine_is_an_error() {
    let memory = MemoryBackend::new();
    let purger = purger(&memory);
    assert_eq!(
        purger.attempt("nope", urls(&["/a"]), History::new()).await,
        Err(AttemptError::UnknownBackend("nope".into()))
    );
    purger.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        purger.attempt("edge", urls(&["/a"]), History::new()).await,
        Err(AttemptError::Stopped)
    );
}
