//! Watches (read-your-writes): what a watched future's purges are, and what is waited for.

use std::time::Duration;

use cache_purge_hooks_engine::backend::{Backend, Capabilities, MemoryBackend, PurgeError};
use cache_purge_hooks_engine::watch::{MAX_WATCHED, Watch};
use cache_purge_hooks_engine::{AfterCommit, Delivery, Purger, Target};

/// A memory backend that takes 50 ms a call.
struct Slow(MemoryBackend);

#[cache_purge_hooks_engine::async_trait]
impl Backend for Slow {
    fn capabilities(&self) -> Capabilities {
        Capabilities::URL
    }
    fn max_batch(&self) -> usize {
        10_000
    }
    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.0.purge(batch).await
    }
}

fn pipeline(delivery: Delivery) -> (Purger, MemoryBackend) {
    let memory = MemoryBackend::new();
    let purger = Purger::builder()
        .delivery(delivery)
        .backend("slow", Slow(memory.clone()))
        .build()
        .unwrap();
    (purger, memory)
}

fn url(u: &str) -> Target {
    Target::url(u).unwrap()
}

#[tokio::test]
async fn a_transactions_purges_are_watched_when_it_commits_and_not_when_it_rolls_back() {
    let (purger, memory) = pipeline(Delivery::AfterCommit);
    let ((), watch) = Watch::run(async {
        let ((), committed) = AfterCommit::run(purger.purge([url("/kept")])).await;
        committed.commit();
        let ((), rolled_back) = AfterCommit::run(purger.purge([url("/never")])).await;
        rolled_back.discard();
    })
    .await;
    let watched = watch.attempted(Duration::from_secs(5)).await;
    assert!(watched.in_time());
    assert_eq!((watched.targets, watched.failed), (1, 0));
    assert!(memory.was_purged("/kept"));
    assert!(!memory.was_purged("/never"));
}

#[tokio::test]
async fn only_the_watched_tasks_own_purges_are_waited_for() {
    let (purger, memory) = pipeline(Delivery::Immediate);
    let ((), watch) = Watch::run(async {
        // Spawned: another task, not watched.
        let other = purger.clone();
        tokio::spawn(async move { other.purge([url("/spawned")]).await })
            .await
            .unwrap();
        // One purge too large to watch (a bulk write): not waited for either.
        let bulk: Vec<Target> = (0..=MAX_WATCHED)
            .map(|i| url(&format!("/bulk/{i}")))
            .collect();
        purger.purge(bulk).await;
    })
    .await;
    assert!(watch.is_empty());
    let watched = watch.attempted(Duration::from_secs(5)).await;
    assert_eq!(watched.targets, 0);
    assert!(!memory.was_purged("/spawned"), "not waited for");
    purger.flush().await;
    assert!(memory.was_purged("/spawned") && memory.was_purged("/bulk/0"));
}
