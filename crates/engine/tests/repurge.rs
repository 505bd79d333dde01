//! The delayed second purge (`repurge_after`): one per target, after its last purge, counted,
//! and delivered before shutdown returns.

use std::time::Duration;

use cache_purge_hooks_engine::backend::MemoryBackend;
use cache_purge_hooks_engine::{Delivery, Purger, Target};

fn url(u: &str) -> Target {
    Target::url(u).unwrap()
}

#[tokio::test]
async fn each_target_is_purged_again_once_after_its_last_purge() {
    let memory = MemoryBackend::new();
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .repurge_after(Duration::from_millis(200))
        .backend("memory", memory.clone())
        .build()
        .unwrap();
    purger.purge([url("/a"), url("/b")]).await;
    purger.flush().await;
    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.purged, stats.repurging, stats.queued),
        (2, 2, 2),
        "{stats:?}"
    );
    // /a is purged again before its second purge is due: it gets one, 200 ms after this.
    tokio::time::sleep(Duration::from_millis(100)).await;
    purger.purge([url("/a")]).await;
    purger.flush().await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    purger.flush().await;
    // /b's second purge went out; /a's is not due yet.
    let count = |u: &str| memory.urls().iter().filter(|x| *x == u).count();
    assert_eq!((count("/a"), count("/b")), (2, 2), "{:?}", memory.urls());
    // Shutdown waits for what is still scheduled.
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!((count("/a"), count("/b")), (3, 2), "{:?}", memory.urls());
    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.repurged, stats.repurging, stats.queued),
        (2, 0, 0),
        "{stats:?}"
    );
}

#[tokio::test]
async fn without_the_setting_nothing_is_purged_twice() {
    let memory = MemoryBackend::new();
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("memory", memory.clone())
        .build()
        .unwrap();
    purger.purge([url("/a")]).await;
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(memory.urls(), ["/a"]);
    assert_eq!(purger.stats()[0].repurged, 0);
}
