//! SeaORM saves purging a real nginx with Debian's ngx_cache_purge module (started per test by
//! `cache-purge-hooks-testing` on a free loopback port), end to end: from the save to the
//! cached page, including saves made while nginx is down. The backend's own tests (each
//! mode, broken servers) are in the engine's tests/nginx.rs.

mod common;

use std::time::Duration;

use cache_purge_hooks::backend::NginxBackend;
use cache_purge_hooks::settings::NginxSettings;
use cache_purge_hooks::{Purger, RetryPolicy};
use cache_purge_hooks_testing::{Nginx, NginxConfig, Origin, assert_cached, assert_purged, warm};
use common::entities::post;
use sea_orm::{ActiveModelTrait, Set};

fn http_settings(nginx: &Nginx) -> NginxSettings {
    let mut s = NginxSettings::default();
    s.servers = vec![nginx.addr().parse().unwrap()];
    s.purge_prefix = Some("/purge".parse().unwrap());
    s.timeout = Duration::from_secs(2);
    s
}

async fn start() -> (Origin, Nginx) {
    let origin = Origin::start().unwrap();
    let nginx = Nginx::start(&origin, NginxConfig::default()).await.unwrap();
    (origin, nginx)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seaorm_save_purges_nginx_end_to_end() {
    let (origin, nginx) = start().await;
    let db = common::sqlite().await;
    let purger = Purger::builder()
        .backend("nginx", NginxBackend::new(&http_settings(&nginx)).unwrap())
        .build()
        .unwrap();
    let saved = purger
        .scope(async {
            post::ActiveModel {
                slug: Set("first".into()),
                title: Set("First".into()),
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
    warm(
        &nginx,
        &["/posts/first", "/posts/first-draft", "/posts/renamed"],
    )
    .await;

    // A slug change purges the old URL and the new one.
    let mut edit: post::ActiveModel = saved.into();
    edit.slug = Set("renamed".into());
    purger.scope(edit.update(&db.db)).await.unwrap();
    purger.flush().await;
    assert_purged(&nginx, &origin, "/posts/first").await;
    assert_purged(&nginx, &origin, "/posts/renamed").await;
    assert_cached(&nginx, "/posts/first-draft").await;
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
    db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn purges_made_while_nginx_is_down_arrive_when_it_is_back() {
    let (origin, mut nginx) = start().await;
    let db = common::sqlite().await;
    let mut settings = http_settings(&nginx);
    settings.timeout = Duration::from_millis(500);
    let purger = Purger::builder()
        .retry(
            RetryPolicy::default()
                .with_max_attempts(1000)
                .with_backoff(Duration::from_millis(50), Duration::from_millis(300)),
        )
        .backend("nginx", NginxBackend::new(&settings).unwrap())
        .build()
        .unwrap();

    let slugs: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    let mut saved = Vec::new();
    for slug in &slugs {
        let model = purger
            .scope(
                post::ActiveModel {
                    slug: Set(slug.clone()),
                    title: Set("v1".into()),
                    category_id: Set(1),
                    published: Set(true),
                    ..Default::default()
                }
                .insert(&db.db),
            )
            .await
            .unwrap();
        saved.push(model);
    }
    purger.flush().await;
    let pages: Vec<String> = slugs.iter().map(|s| format!("/posts/{s}")).collect();
    let keep: Vec<String> = slugs.iter().map(|s| format!("/posts/{s}-keep")).collect();
    let all: Vec<&str> = pages.iter().chain(&keep).map(String::as_str).collect();
    warm(&nginx, &all).await;

    // The cache goes down; the saves go on (and none of them waits for it).
    nginx.kill_server().unwrap();
    for model in saved {
        let mut edit: post::ActiveModel = model.into();
        edit.title = Set("v2".into());
        purger.scope(edit.update(&db.db)).await.unwrap();
    }
    purger.flush().await;
    let during = purger.stats()[0].clone();
    assert!(during.failed > 0 && during.queued > 0, "{during:?}");

    // Back up with its cache on disk: the neighbours below are still HITs after the restart.
    nginx.restart().unwrap();
    purger.shutdown(Duration::from_secs(20)).await.unwrap();
    let stats = &purger.stats()[0];
    assert_eq!((stats.dead, stats.queued), (0, 0), "{stats:?}");
    assert!(stats.retried > 0, "{stats:?}");
    for page in &pages {
        assert_purged(&nginx, &origin, page).await;
    }
    for page in &keep {
        assert_cached(&nginx, page).await;
    }
    db.close().await;
}
