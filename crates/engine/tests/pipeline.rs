//! The Purger and its dispatcher: dedupe, batching, capabilities, isolation, flush, shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_purge_hooks_engine::backend::{Backend, Capabilities, MemoryBackend, PurgeError};
use cache_purge_hooks_engine::{AfterCommit, Delivery, Purger, Target};

fn urls(list: &[&str]) -> Vec<Target> {
    list.iter().map(|u| Target::url(u).unwrap()).collect()
}

#[tokio::test]
async fn batches_respect_the_backends_size_and_duplicates_are_dropped() {
    let memory = MemoryBackend::new().with_max_batch(3);
    let purger = Purger::builder()
        .backend("m", memory.clone())
        .build()
        .unwrap();
    let many: Vec<String> = (0..10).map(|i| format!("/p/{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    purger.purge(urls(&refs)).await;
    purger.purge(urls(&refs[..4])).await; // queued while the first are waiting: deduplicated or re-sent, never lost
    purger.flush().await;
    let records = memory.records();
    assert!(records.iter().all(|r| r.targets.len() <= 3), "{records:?}");
    let mut got = memory.urls();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 10);
    let stats = &purger.stats()[0];
    assert_eq!(stats.queued, 0);
    assert_eq!(stats.purged + stats.deduplicated, 14, "{stats:?}");
}

/// The URLs of each batch the backend was sent, in order.
fn batches(memory: &MemoryBackend) -> Vec<Vec<String>> {
    memory
        .records()
        .iter()
        .map(|r| {
            r.targets
                .iter()
                .filter_map(|t| t.as_url().map(|u| u.as_str().to_owned()))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn purges_queued_in_one_round_go_out_as_one_batch_without_duplicates() {
    let memory = MemoryBackend::new();
    let purger = Purger::builder()
        .backend("m", memory.clone())
        .build()
        .unwrap();
    // Both are queued before the worker runs (this test's runtime has one thread and
    // neither call waits for the worker): its next round takes both.
    purger.purge(urls(&["/a", "/b"])).await;
    purger.purge(urls(&["/b", "/c"])).await;
    purger.flush().await;
    assert_eq!(batches(&memory), [["/a", "/b", "/c"]]);
    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.deduplicated, stats.batches), (3, 1, 1));

    // Alone in its round, a purge goes out as it came.
    purger.purge(urls(&["/d", "/e"])).await;
    purger.flush().await;
    assert_eq!(batches(&memory)[1], ["/d", "/e"]);
    assert_eq!(purger.stats()[0].queued, 0);
}

#[tokio::test]
async fn a_purge_naming_a_target_twice_sends_it_once() {
    let memory = MemoryBackend::new();
    let purger = Purger::builder()
        .backend("m", memory.clone())
        .build()
        .unwrap();
    purger.purge(urls(&["/a", "/b", "/a"])).await;
    purger.flush().await;
    assert_eq!(batches(&memory), [["/a", "/b"]]);
    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.deduplicated, stats.queued), (2, 1, 0));
}

struct UrlOnly(MemoryBackend);

#[tokio::test]
async fn a_single_backend_skips_the_targets_it_cannot_purge_and_sends_the_rest() {
    let inner = MemoryBackend::new();
    let purger = Purger::builder()
        .backend("url-only", UrlOnly(inner.clone()))
        .build()
        .unwrap();
    purger
        .purge([Target::url("/a").unwrap(), Target::tag("post:1").unwrap()])
        .await;
    purger.flush().await;
    assert_eq!(batches(&inner), [["/a"]]);
    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.unsupported, stats.queued), (1, 1, 0));
}

#[cache_purge_hooks_engine::async_trait]
impl Backend for UrlOnly {
    fn capabilities(&self) -> Capabilities {
        Capabilities::URL
    }
    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
        self.0.purge(batch).await
    }
}

#[tokio::test]
async fn a_target_a_backend_cannot_purge_is_skipped_and_counted_never_widened() {
    let inner = MemoryBackend::new();
    let all = MemoryBackend::new();
    let purger = Purger::builder()
        .backend("url-only", UrlOnly(inner.clone()))
        .backend("all", all.clone())
        .build()
        .unwrap();
    purger
        .purge([
            Target::url("/a").unwrap(),
            Target::tag("post-1").unwrap(),
            Target::Everything,
        ])
        .await;
    purger.flush().await;
    assert_eq!(inner.purged(), [Target::url("/a").unwrap()]);
    assert_eq!(all.purged().len(), 3);
    let stats = purger.stats();
    assert_eq!(stats[0].unsupported, 2);
    assert_eq!(stats[0].purged, 1);
}

/// Sleeps on every purge: a slow cache.
struct Slow {
    calls: Arc<AtomicUsize>,
    delay: Duration,
}

#[cache_purge_hooks_engine::async_trait]
impl Backend for Slow {
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }
    async fn purge(&self, _batch: &[Target]) -> Result<(), PurgeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        Ok(())
    }
}

#[tokio::test]
async fn purging_never_blocks_and_a_slow_backend_does_not_hold_back_another() {
    let fast = MemoryBackend::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let purger = Purger::builder()
        .backend(
            "slow",
            Slow {
                calls: calls.clone(),
                delay: Duration::from_secs(30),
            },
        )
        .backend("fast", fast.clone())
        .build()
        .unwrap();
    purger.purge(urls(&["/a"])).await;
    // The fast backend gets it while the slow one is still busy.
    for _ in 0..200 {
        if fast.was_purged("/a") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(fast.was_purged("/a"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(purger.stats()[0].queued, 1);

    // Shutdown gives up at its deadline and says how much was left.
    let started = Instant::now();
    let err = purger
        .shutdown(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(err.undelivered, 1);
    assert!(started.elapsed() < Duration::from_secs(10));
    // After shutdown, purges are refused (and logged), not queued.
    purger.purge(urls(&["/late"])).await;
    purger.flush().await;
    assert!(!fast.was_purged("/late"));
}

#[tokio::test]
async fn after_commit_scopes_hold_purges_until_commit_and_nest() {
    let memory = MemoryBackend::new();
    let purger = Purger::builder()
        .backend("m", memory.clone())
        .build()
        .unwrap();
    let (_, outer) = AfterCommit::run(async {
        purger.purge(urls(&["/outer"])).await;
        let (_, inner) = AfterCommit::run(async { purger.purge(urls(&["/inner"])).await }).await;
        inner.commit(); // into the outer scope, not out
        let (_, dropped) =
            AfterCommit::run(async { purger.purge(urls(&["/rolled-back"])).await }).await;
        assert_eq!(dropped.discard(), 1);
    })
    .await;
    purger.flush().await;
    assert!(memory.urls().is_empty());
    assert_eq!(outer.len(), 2);
    outer.commit();
    purger.flush().await;
    assert_eq!(memory.url_set(), ["/inner", "/outer"]);

    // Dropping a scope without a decision discards.
    let (_, forgotten) =
        AfterCommit::run(async { purger.purge(urls(&["/forgotten"])).await }).await;
    drop(forgotten);
    purger.flush().await;
    assert!(!memory.was_purged("/forgotten"));

    // Immediate delivery ignores scopes.
    let now = MemoryBackend::new();
    let immediate = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("now", now.clone())
        .build()
        .unwrap();
    let (_, scope) = AfterCommit::run(async { immediate.purge(urls(&["/now"])).await }).await;
    assert!(scope.is_empty());
    immediate.flush().await;
    assert!(now.was_purged("/now"));
}

#[tokio::test]
async fn the_current_purger_is_the_scoped_one_then_the_installed_one() {
    let a = MemoryBackend::new();
    let b = MemoryBackend::new();
    let pa = Purger::builder().backend("a", a.clone()).build().unwrap();
    let pb = Purger::builder().backend("b", b.clone()).build().unwrap();
    pa.install();
    assert_eq!(Purger::current().unwrap().id(), pa.id());
    pb.scope(async { assert_eq!(Purger::current().unwrap().id(), pb.id()) })
        .await;
    assert!(Purger::uninstall().is_some());
    assert!(Purger::current().is_none());
    assert_ne!(pa.id(), pb.id());
    assert_eq!(pa.id(), pa.clone().id());
}

#[tokio::test(flavor = "current_thread")]
async fn the_default_log_backend_writes_one_event_per_target() {
    let (captured, _guard) = cache_purge_hooks_testing::logs::capture();

    let settings = cache_purge_hooks_engine::Settings::from_toml_str("").unwrap();
    let purger = Purger::from_settings(&settings).unwrap();
    assert_eq!(purger.backend_names(), ["log"]);
    purger.purge(urls(&["/posts/a", "/"])).await;
    purger.flush().await;

    let text = captured.text();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("purge")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("cache_purge_hooks") && lines[0].contains("target=url /posts/a"),
        "{text}"
    );
    assert!(lines[1].contains("target=url /"), "{text}");
}

/// Records the name of the thread each purge call ran on.
struct ThreadNames(Arc<std::sync::Mutex<Vec<Option<String>>>>);

#[cache_purge_hooks_engine::async_trait]
impl Backend for ThreadNames {
    fn capabilities(&self) -> Capabilities {
        Capabilities::URL
    }
    async fn purge(&self, _batch: &[Target]) -> Result<(), PurgeError> {
        let name = std::thread::current().name().map(str::to_owned);
        self.0.lock().unwrap().push(name);
        Ok(())
    }
}

#[test]
fn a_purger_given_a_runtime_is_built_outside_one_and_delivers_on_its_thread() {
    // Without a runtime, building fails and says how to give one.
    let refused = Purger::builder()
        .backend("m", MemoryBackend::new())
        .build()
        .unwrap_err();
    assert!(
        refused.to_string().contains("PurgerBuilder::runtime"),
        "{refused}"
    );

    let delivery = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handle = delivery.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("delivery-under-test".into())
        .spawn(move || delivery.block_on(stopped))
        .unwrap();

    let names = Arc::new(std::sync::Mutex::new(Vec::new()));
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("names", ThreadNames(names.clone()))
        .runtime(handle)
        .build()
        .unwrap();
    // Queued from an application runtime of another kind (several threads of its own).
    let app = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    app.block_on(async {
        purger.purge(urls(&["/a"])).await;
        purger.flush().await;
        purger.purge(urls(&["/b", "/c"])).await;
        purger.flush().await;
    });
    assert_eq!(purger.stats()[0].purged, 3);
    let names = names.lock().unwrap().clone();
    assert!(!names.is_empty());
    assert!(
        names
            .iter()
            .all(|n| n.as_deref() == Some("delivery-under-test")),
        "{names:?}"
    );
    app.block_on(async { purger.shutdown(Duration::from_secs(5)).await.unwrap() });
    stop.send(()).unwrap();
    thread.join().unwrap().unwrap();
}
