//! SeaORM saves purging a real varnishd (started per test by `cache-purge-hooks-testing` on
//! free loopback ports), end to end, and a save that never waits for a broken server. The
//! backend's own tests (each mode, hostile URLs, broken servers) are in the engine's
//! tests/varnish.rs.

mod common;

use std::time::Duration;

use cache_purge_hooks::Purger;
use cache_purge_hooks::backend::MemoryBackend;
use cache_purge_hooks::backend::varnish::VarnishBackend;
use cache_purge_hooks::settings::VarnishSettings;
use cache_purge_hooks_testing::{
    Origin, SilentServer, Varnish, assert_cached, assert_purged, warm,
};
use common::entities::post;
use sea_orm::{ActiveModelTrait, Set};

fn cli_settings(varnish: &Varnish) -> VarnishSettings {
    let mut s = VarnishSettings::default();
    s.servers = vec![varnish.admin_addr().parse().unwrap()];
    s.secret_file = varnish.secret_file().to_path_buf();
    s.timeout = Duration::from_secs(2);
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seaorm_save_purges_varnish_end_to_end() {
    let origin = Origin::start().unwrap();
    let varnish = Varnish::start(&origin).await.unwrap();
    let db = common::sqlite().await;
    let backend = VarnishBackend::new(&cli_settings(&varnish)).unwrap();
    let purger = Purger::builder().backend("edge", backend).build().unwrap();

    let saved = purger
        .scope(async {
            post::ActiveModel {
                slug: Set("hello".into()),
                title: Set("Hello".into()),
                category_id: Set(1),
                published: Set(true),
                ..Default::default()
            }
            .insert(&db.db)
            .await
        })
        .await
        .unwrap();
    purger.flush().await;
    warm(&varnish, &["/posts/hello", "/posts/hello-world", "/"]).await;

    let mut edit: post::ActiveModel = saved.into();
    edit.title = Set("Hello again".into());
    purger.scope(edit.update(&db.db)).await.unwrap();
    purger.flush().await;

    assert_purged(&varnish, &origin, "/posts/hello").await;
    assert_purged(&varnish, &origin, "/").await;
    assert_cached(&varnish, "/posts/hello-world").await;
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
    db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_save_succeeds_at_once_when_varnish_is_down() {
    let silent = SilentServer::start().unwrap();
    let db = common::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s\n").unwrap();
    let mut settings = VarnishSettings::default();
    settings.servers = vec![silent.addr().parse().unwrap()];
    settings.secret_file = secret;
    settings.timeout = Duration::from_secs(2);
    let memory = MemoryBackend::new();
    let purger = Purger::builder()
        .backend("edge", VarnishBackend::new(&settings).unwrap())
        .backend("memory", memory.clone())
        .build()
        .unwrap();
    purger
        .scope(async {
            post::ActiveModel {
                slug: Set("down".into()),
                title: Set("Down".into()),
                category_id: Set(1),
                published: Set(true),
                ..Default::default()
            }
            .insert(&db.db)
            .await
        })
        .await
        .unwrap();
    // The save returned while the purge was still waiting on the silent server: nothing
    // has failed yet, the three URLs are in flight.
    let edge = purger
        .stats()
        .into_iter()
        .find(|s| s.backend == "edge")
        .unwrap();
    assert_eq!((edge.queued, edge.failed), (3, 0), "{edge:?}");
    purger.flush().await;
    let stats = purger.stats();
    let edge = stats.iter().find(|s| s.backend == "edge").unwrap();
    assert_eq!(edge.failed, 3, "{edge:?}");
    // The other backend was not held up by the failing one.
    assert!(memory.was_purged("/posts/down"));
    db.close().await;
}
