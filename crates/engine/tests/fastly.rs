//! The Fastly backend against `FastlyFake` (cache-purge-hooks-testing), a local fake of
//! Fastly's purge API and of its edge's `PURGE` that enforces the documented contract: the
//! `Fastly-Key`, the service, at most 256 surrogate keys per request, soft purges.

use std::time::{Duration, Instant};

use cache_purge_hooks_engine::backend::{Backend, Capabilities, Cause, FastlyBackend};
use cache_purge_hooks_engine::retry::RetryPolicy;
use cache_purge_hooks_engine::settings::FastlySettings;
use cache_purge_hooks_engine::{Delivery, Purger, Target};
use cache_purge_hooks_testing::{
    FASTLY_MAX_KEYS_PER_REQUEST, FastlyFake, FastlyFakeConfig, FastlyPurge,
};

fn fake() -> FastlyFake {
    FastlyFake::start(FastlyFakeConfig::default()).unwrap()
}

fn settings(fake: &FastlyFake) -> FastlySettings {
    let mut s = FastlySettings::default();
    s.service_id = Some(fake.service_id().parse().unwrap());
    s.api_token = Some(fake.token().parse().unwrap());
    s.site_url = Some("https://www.example.com".parse().unwrap());
    s.base_url = fake.base_url().parse().unwrap();
    // URL purges go to the fake's edge, with the site in `Host`.
    s.edge_url = Some(fake.base_url().parse().unwrap());
    s.timeout = Duration::from_secs(5);
    s
}

async fn settle(purger: &Purger, deadline: Duration) {
    let start = Instant::now();
    purger.flush().await;
    while purger.undelivered() > 0 && start.elapsed() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tags(n: usize) -> Vec<Target> {
    (0..n)
        .map(|i| Target::tag(&format!("post-{i}")).unwrap())
        .collect()
}

#[tokio::test]
async fn urls_and_surrogate_keys_are_purged_exactly_as_asked() {
    let fake = fake();
    let backend = FastlyBackend::new(&settings(&fake)).unwrap();
    backend
        .purge(&[
            Target::url("/a?x=1").unwrap(),
            Target::url("https://static.example.com/app.js").unwrap(),
            Target::tag("post-1").unwrap(),
            Target::tag("author/joe").unwrap(),
        ])
        .await
        .unwrap();
    let mut purges = fake.purges();
    purges.sort_by_key(|p| format!("{p:?}"));
    assert_eq!(
        purges,
        [
            FastlyPurge::Keys {
                keys: vec!["post-1".into(), "author/joe".into()],
                soft: false
            },
            FastlyPurge::Url {
                url: "static.example.com/app.js".into(),
                soft: false
            },
            FastlyPurge::Url {
                url: "www.example.com/a?x=1".into(),
                soft: false
            },
        ]
    );
    backend
        .purge(&[Target::Everything, Target::url("/b").unwrap()])
        .await
        .unwrap();
    assert_eq!(fake.purges().last(), Some(&FastlyPurge::All));
    assert_eq!(fake.purges().len(), 4, "everything covers /b");
}

#[tokio::test]
async fn soft_purges_mark_urls_and_keys_stale_and_purge_all_stays_hard() {
    let fake = fake();
    let mut s = settings(&fake);
    s.soft = true;
    let backend = FastlyBackend::new(&s).unwrap();
    backend
        .purge(&[Target::url("/a").unwrap(), Target::tag("k").unwrap()])
        .await
        .unwrap();
    backend.purge(&[Target::Everything]).await.unwrap();
    let purges = fake.purges();
    assert!(purges.contains(&FastlyPurge::Url {
        url: "www.example.com/a".into(),
        soft: true
    }));
    assert!(purges.contains(&FastlyPurge::Keys {
        keys: vec!["k".into()],
        soft: true
    }));
    assert_eq!(purges.last(), Some(&FastlyPurge::All));
}

#[tokio::test]
async fn surrogate_keys_are_split_into_requests_of_at_most_256() {
    let fake = fake();
    let backend = FastlyBackend::new(&settings(&fake)).unwrap();
    assert_eq!(backend.max_batch(), FASTLY_MAX_KEYS_PER_REQUEST);
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("fastly", backend)
        .build()
        .unwrap();
    purger.purge(tags(1000)).await;
    settle(&purger, Duration::from_secs(10)).await;
    let mut total = 0;
    for purge in fake.purges() {
        let FastlyPurge::Keys { keys, .. } = purge else {
            panic!("{purge:?}")
        };
        assert!(keys.len() <= 256, "{} keys in one request", keys.len());
        total += keys.len();
    }
    assert_eq!(total, 1000);
    assert!(fake.statuses().iter().all(|s| *s == 200));
}

#[tokio::test]
async fn a_forced_429_is_retried_after_its_retry_after() {
    let fake = fake();
    fake.force_429(1, Duration::from_secs(1));
    let backend = FastlyBackend::new(&settings(&fake)).unwrap();
    let err = backend
        .purge(&[Target::tag("k").unwrap()])
        .await
        .unwrap_err();
    assert_eq!(
        err.cause(),
        &Cause::RateLimited {
            retry_after: Some(Duration::from_secs(1))
        }
    );

    fake.force_429(1, Duration::from_secs(1));
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .retry(
            RetryPolicy::default()
                .with_backoff(Duration::from_millis(10), Duration::from_millis(20)),
        )
        .backend("fastly", backend)
        .build()
        .unwrap();
    let start = Instant::now();
    purger.purge([Target::url("/b").unwrap()]).await;
    settle(&purger, Duration::from_secs(10)).await;
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        fake.purges(),
        [FastlyPurge::Url {
            url: "www.example.com/b".into(),
            soft: false
        }]
    );
    assert_eq!(fake.statuses(), [429, 429, 200]);
    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.retried, stats.dead), (1, 1, 0));
}

#[tokio::test]
async fn a_bad_token_is_a_permanent_failure_that_is_not_retried() {
    let fake = fake();
    let mut s = settings(&fake);
    s.api_token = Some("not-the-key".parse().unwrap());
    let backend = FastlyBackend::new(&s).unwrap();
    let err = backend
        .purge(&[Target::tag("k").unwrap()])
        .await
        .unwrap_err();
    assert_eq!(err.cause(), &Cause::Authentication);
    assert!(!err.is_transient());
    assert!(
        err.message()
            .contains("Provided credentials are missing or invalid"),
        "{err}"
    );
    assert!(err.message().contains("api_token"), "{err}");
    assert!(!err.to_string().contains("not-the-key"));

    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("fastly", backend)
        .build()
        .unwrap();
    purger.purge([Target::url("/b").unwrap()]).await;
    settle(&purger, Duration::from_secs(5)).await;
    let dead = purger.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 1, "not retried");
    assert_eq!(fake.statuses(), [401, 401]);
}

#[tokio::test]
async fn a_wrong_service_id_and_a_missing_purge_all_scope_are_named() {
    let fake = fake();
    let mut s = settings(&fake);
    s.service_id = Some("NoSuchService000".parse().unwrap());
    let backend = FastlyBackend::new(&s).unwrap();
    let err = backend
        .purge(&[Target::tag("k").unwrap()])
        .await
        .unwrap_err();
    assert_eq!(err.cause(), &Cause::Misconfigured);
    assert!(err.message().contains("Cannot find service"), "{err}");
    assert!(err.message().contains("service_id"), "{err}");
    assert_eq!(
        backend.check().await.unwrap_err().cause(),
        &Cause::Misconfigured
    );

    let scoped = FastlyFake::start(FastlyFakeConfig {
        purge_all_scope: false,
        ..FastlyFakeConfig::default()
    })
    .unwrap();
    let backend = FastlyBackend::new(&settings(&scoped)).unwrap();
    let err = backend.purge(&[Target::Everything]).await.unwrap_err();
    assert_eq!(err.cause(), &Cause::Authentication);
    assert!(err.message().contains("purge_all"), "{err}");
}

#[tokio::test]
async fn prefixes_are_not_supported_and_never_widened() {
    let fake = fake();
    let backend = FastlyBackend::new(&settings(&fake)).unwrap();
    assert!(!backend.capabilities().contains(Capabilities::PREFIX));
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("fastly", backend)
        .build()
        .unwrap();
    purger.purge([Target::prefix("/blog/").unwrap()]).await;
    settle(&purger, Duration::from_secs(5)).await;
    assert_eq!(purger.stats()[0].unsupported, 1);
    assert!(fake.purges().is_empty());
}

#[tokio::test]
async fn check_confirms_the_token_and_the_service() {
    let fake = fake();
    let backend = FastlyBackend::new(&settings(&fake)).unwrap();
    assert_eq!(backend.check().await.unwrap().name, "www.example.com");
    let mut s = settings(&fake);
    s.api_token = Some("wrong".parse().unwrap());
    let err = FastlyBackend::new(&s).unwrap().check().await.unwrap_err();
    assert_eq!(err.cause(), &Cause::Authentication);
    assert!(fake.purges().is_empty());
}

#[test]
fn the_key_never_shows_in_debug_output() {
    let mut s = FastlySettings::default();
    s.service_id = Some("SU1Z0isxPaozGVKXdv0eY".parse().unwrap());
    s.api_token = Some("very-secret-key-123".parse().unwrap());
    let backend = FastlyBackend::new(&s).unwrap();
    for shown in [format!("{s:?}"), format!("{backend:?}")] {
        assert!(!shown.contains("very-secret-key-123"), "{shown}");
    }
}
