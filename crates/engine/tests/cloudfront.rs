//! The CloudFront backend against `CloudFrontFake` (cache-purge-hooks-testing), a local fake
//! of the invalidation API that enforces the documented contract: SigV4 signatures
//! (recomputed with the secret), the `InvalidationBatch` XML, 3,000 paths and 15 wildcard
//! paths in progress per distribution, caller references, throttling.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use cache_purge_hooks_engine::backend::{Backend, Cause, CloudFrontBackend};
use cache_purge_hooks_engine::retry::RetryPolicy;
use cache_purge_hooks_engine::settings::CloudFrontSettings;
use cache_purge_hooks_engine::{Delivery, Purger, Target};
use cache_purge_hooks_testing::{CloudFrontFake, CloudFrontFakeConfig};

fn fake() -> CloudFrontFake {
    CloudFrontFake::start(CloudFrontFakeConfig::default()).unwrap()
}

fn fake_with(f: impl FnOnce(&mut CloudFrontFakeConfig)) -> CloudFrontFake {
    let mut config = CloudFrontFakeConfig::default();
    f(&mut config);
    CloudFrontFake::start(config).unwrap()
}

fn settings(fake: &CloudFrontFake) -> CloudFrontSettings {
    let mut s = CloudFrontSettings::default();
    s.distribution_id = Some(fake.distribution_id().parse().unwrap());
    s.access_key_id = Some(fake.access_key_id().parse().unwrap());
    s.secret_access_key = Some(fake.secret_access_key().parse().unwrap());
    s.hosts = vec!["www.example.com".parse().unwrap()];
    s.base_url = fake.base_url().parse().unwrap();
    s.timeout = Duration::from_secs(5);
    s.poll_interval = Duration::from_millis(50);
    s
}

fn urls(n: usize) -> Vec<Target> {
    (0..n)
        .map(|i| Target::url(&format!("/page/{i}")).unwrap())
        .collect()
}

fn prefixes(n: usize) -> Vec<Target> {
    (0..n)
        .map(|i| Target::prefix(&format!("/section/{i}/")).unwrap())
        .collect()
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy::default()
        .with_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .with_max_attempts(100)
}

async fn settle(purger: &Purger, deadline: Duration) {
    let start = Instant::now();
    purger.flush().await;
    while purger.undelivered() > 0 && start.elapsed() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn urls_prefixes_and_everything_are_invalidated_as_exact_paths_and_wildcards() {
    let fake = fake();
    let backend = CloudFrontBackend::new(&settings(&fake)).unwrap();
    backend
        .purge(&[
            Target::url("/a?x=1").unwrap(),
            Target::url("https://www.example.com/b").unwrap(),
            Target::prefix("/blog/").unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(fake.paths(), ["/a?x=1", "/b", "/blog/*"]);
    let first = &fake.invalidations()[0];
    assert!(
        first.caller_reference.starts_with("cache-purge-hooks-"),
        "{first:?}"
    );

    // Everything is one `/*`, which covers the rest of its batch.
    backend
        .purge(&[Target::url("/c").unwrap(), Target::Everything])
        .await
        .unwrap();
    assert_eq!(fake.paths(), ["/a?x=1", "/b", "/blog/*", "/*"]);
    let refs: Vec<String> = fake
        .invalidations()
        .into_iter()
        .map(|i| i.caller_reference)
        .collect();
    assert_ne!(refs[0], refs[1], "a new caller reference per invalidation");
}

#[tokio::test]
async fn tags_other_hosts_and_stars_fail_alone_as_misconfigured_and_never_widen() {
    let fake = fake();
    let backend = CloudFrontBackend::new(&settings(&fake)).unwrap();
    assert!(
        !backend
            .capabilities()
            .supports(cache_purge_hooks_engine::TargetKind::Tag)
    );
    let tag = Target::tag("post-1").unwrap();
    let other = Target::url("https://other.example.com/x").unwrap();
    let star = Target::url("/a*b").unwrap();
    let err = backend
        .purge(&[
            tag.clone(),
            other.clone(),
            star.clone(),
            Target::url("/ok").unwrap(),
        ])
        .await
        .unwrap_err();
    assert_eq!(err.cause(), &Cause::Misconfigured);
    for t in [&tag, &other, &star] {
        assert!(err.failed().contains(t), "{t} failed: {err}");
    }
    assert!(!err.failed().contains(&Target::url("/ok").unwrap()));
    assert_eq!(fake.paths(), ["/ok"], "only the one path, nothing wider");
}

#[tokio::test]
async fn a_batch_over_the_path_limit_is_split_into_invalidations_within_it() {
    // A fake (and a client) held to 100 paths in progress, invalidations completing after
    // 100 ms: 250 URLs go as invalidations of at most 100 paths, each sent once the previous
    // ones completed, without a single TooManyInvalidationsInProgress.
    let fake = fake_with(|c| {
        c.max_paths_in_progress = 100;
        c.completes_after = Some(Duration::from_millis(100));
    });
    let mut s = settings(&fake);
    s.max_paths_in_progress = NonZeroUsize::new(100).unwrap();
    let backend = CloudFrontBackend::new(&s).unwrap();
    assert_eq!(backend.max_batch(), 100);
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .retry(quick_retries())
        .backend("cf", backend)
        .build()
        .unwrap();
    purger.purge(urls(250)).await;
    settle(&purger, Duration::from_secs(20)).await;
    let mut paths = fake.paths();
    paths.sort();
    let mut want: Vec<String> = (0..250).map(|i| format!("/page/{i}")).collect();
    want.sort();
    assert_eq!(paths, want, "every URL exactly once");
    let sizes: Vec<usize> = fake.invalidations().iter().map(|i| i.paths.len()).collect();
    assert!(
        sizes.len() >= 3 && sizes.iter().all(|&n| n <= 100),
        "{sizes:?}"
    );
    assert!(fake.error_codes().is_empty(), "{:?}", fake.error_codes());
    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.dead), (250, 0));
}

#[tokio::test]
async fn splitting_respects_the_documented_3000_paths_and_15_wildcards_in_progress() {
    // Invalidations stay in progress until the test completes them.
    let fake = fake_with(|c| c.completes_after = None);
    let backend = CloudFrontBackend::new(&settings(&fake)).unwrap();
    assert_eq!(backend.max_batch(), 3000);
    let mut batch = urls(3500);
    batch.extend(prefixes(20));
    let err = backend.purge(&batch).await.unwrap_err();
    // One invalidation of 3,000 paths and 15 wildcards; the rest waits for room.
    let sizes: Vec<usize> = fake.invalidations().iter().map(|i| i.paths.len()).collect();
    assert_eq!(sizes, [3015]);
    assert_eq!(fake.in_progress(), (3000, 15));
    assert_eq!(backend.in_progress(), (3000, 15));
    assert_eq!(
        err.cause(),
        &Cause::RateLimited {
            retry_after: Some(Duration::from_millis(50))
        }
    );
    assert_eq!(err.failed().count(batch.len()), 505, "{err}");
    assert!(err.message().contains("3000 of 3000 paths"), "{err}");
    assert!(
        fake.error_codes().is_empty(),
        "refused on this side, not sent"
    );
    // Everything (`/*`) is a wildcard too: it waits for room like the rest.
    let everything = backend.purge(&[Target::Everything]).await.unwrap_err();
    assert!(
        matches!(everything.cause(), Cause::RateLimited { .. }),
        "{everything}"
    );
    assert_eq!(fake.invalidations().len(), 1);

    // Once they completed, the rest goes.
    fake.complete_all();
    let rest: Vec<Target> = batch
        .iter()
        .filter(|t| err.failed().contains(t))
        .cloned()
        .collect();
    backend.purge(&rest).await.unwrap();
    assert_eq!(fake.paths().len(), 3520);
    assert_eq!(backend.in_progress(), (500, 5));
}

#[tokio::test]
async fn prefixes_beyond_15_wildcards_in_progress_go_as_earlier_ones_complete() {
    let fake = fake_with(|c| c.completes_after = Some(Duration::from_millis(100)));
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .retry(quick_retries())
        .backend("cf", CloudFrontBackend::new(&settings(&fake)).unwrap())
        .build()
        .unwrap();
    purger.purge(prefixes(40)).await;
    settle(&purger, Duration::from_secs(20)).await;
    let mut paths = fake.paths();
    paths.sort();
    let mut want: Vec<String> = (0..40).map(|i| format!("/section/{i}/*")).collect();
    want.sort();
    assert_eq!(paths, want);
    let sizes: Vec<usize> = fake.invalidations().iter().map(|i| i.paths.len()).collect();
    assert!(
        sizes.len() >= 3 && sizes.iter().all(|&n| n <= 15),
        "{sizes:?}"
    );
    assert!(fake.error_codes().is_empty(), "{:?}", fake.error_codes());
    assert_eq!(purger.stats()[0].dead, 0);
}

#[tokio::test]
async fn too_many_invalidations_in_progress_from_another_client_is_retried_not_lost() {
    let fake = fake_with(|c| {
        c.max_paths_in_progress = 10;
        // Long enough for the refusal below to come before it completes, on a loaded machine.
        c.completes_after = Some(Duration::from_secs(1));
    });
    // Another client fills the distribution's limit.
    let other = CloudFrontBackend::new(&settings(&fake)).unwrap();
    other.purge(&urls(10)).await.unwrap();

    let backend = CloudFrontBackend::new(&settings(&fake)).unwrap();
    let err = backend
        .purge(&[Target::url("/x").unwrap()])
        .await
        .unwrap_err();
    assert_eq!(
        err.cause(),
        &Cause::RateLimited {
            retry_after: Some(Duration::from_millis(50))
        }
    );
    assert!(err.is_transient());
    assert!(
        err.message().contains("TooManyInvalidationsInProgress"),
        "{err}"
    );

    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .retry(quick_retries())
        .backend("cf", backend)
        .build()
        .unwrap();
    purger.purge([Target::url("/y").unwrap()]).await;
    settle(&purger, Duration::from_secs(10)).await;
    assert!(
        fake.paths().contains(&"/y".to_owned()),
        "{:?}",
        fake.paths()
    );
    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.dead), (1, 0));
    assert!(stats.retried >= 1, "{stats:?}");
    assert!(
        fake.error_codes()
            .iter()
            .filter(|c| *c == "TooManyInvalidationsInProgress")
            .count()
            >= 2
    );
}

#[tokio::test]
async fn throttling_is_a_transient_rate_limit_that_is_retried() {
    let fake = fake();
    fake.throttle(1);
    let backend = CloudFrontBackend::new(&settings(&fake)).unwrap();
    let err = backend
        .purge(&[Target::url("/a").unwrap()])
        .await
        .unwrap_err();
    assert_eq!(err.cause(), &Cause::RateLimited { retry_after: None });
    assert!(err.message().contains("Throttling"), "{err}");

    fake.throttle(2);
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .retry(quick_retries())
        .backend("cf", backend)
        .build()
        .unwrap();
    purger.purge([Target::url("/b").unwrap()]).await;
    settle(&purger, Duration::from_secs(10)).await;
    assert_eq!(fake.paths(), ["/b"]);
    assert_eq!(fake.status_codes(), [400, 400, 400, 201]);
}

#[tokio::test]
async fn bad_credentials_are_a_permanent_failure_that_is_not_retried() {
    let fake = fake();
    for (key, secret, code) in [
        (
            "AKIAIOSFODNN7EXAMPLE",
            "not-the-secret",
            "SignatureDoesNotMatch",
        ),
        (
            "AKIAOTHERKEYEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "InvalidClientTokenId",
        ),
    ] {
        let mut s = settings(&fake);
        s.access_key_id = Some(key.parse().unwrap());
        s.secret_access_key = Some(secret.parse().unwrap());
        let backend = CloudFrontBackend::new(&s).unwrap();
        let err = backend
            .purge(&[Target::url("/a").unwrap()])
            .await
            .unwrap_err();
        assert_eq!(err.cause(), &Cause::Authentication, "{err}");
        assert!(!err.is_transient());
        assert!(err.message().contains(code), "{err}");
        assert!(err.message().contains("secret_access_key"), "{err}");
        assert!(!err.to_string().contains(secret), "{err}");
        let err = backend.check().await.unwrap_err();
        assert_eq!(err.cause(), &Cause::Authentication);
    }

    let mut s = settings(&fake);
    s.secret_access_key = Some("not-the-secret".parse().unwrap());
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .retry(quick_retries())
        .backend("cf", CloudFrontBackend::new(&s).unwrap())
        .build()
        .unwrap();
    purger.purge([Target::url("/b").unwrap()]).await;
    settle(&purger, Duration::from_secs(5)).await;
    let dead = purger.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 1, "not retried");
    assert!(fake.paths().is_empty());
}

#[tokio::test]
async fn temporary_credentials_carry_their_session_token() {
    let fake = fake_with(|c| c.session_token = Some("FwoGZXIvYXdzEXAMPLE".to_owned()));
    let mut s = settings(&fake);
    let without = CloudFrontBackend::new(&s).unwrap();
    let err = without
        .purge(&[Target::url("/a").unwrap()])
        .await
        .unwrap_err();
    assert_eq!(err.cause(), &Cause::Authentication);
    s.session_token = Some("FwoGZXIvYXdzEXAMPLE".parse().unwrap());
    let with = CloudFrontBackend::new(&s).unwrap();
    with.purge(&[Target::url("/a").unwrap()]).await.unwrap();
    assert_eq!(fake.paths(), ["/a"]);
}

#[tokio::test]
async fn a_wrong_distribution_id_is_permanent_and_named() {
    let fake = fake();
    let mut s = settings(&fake);
    s.distribution_id = Some("E2WRONGEXAMPLE".parse().unwrap());
    let backend = CloudFrontBackend::new(&s).unwrap();
    let err = backend
        .purge(&[Target::url("/a").unwrap()])
        .await
        .unwrap_err();
    assert_eq!(err.cause(), &Cause::Misconfigured);
    assert!(!err.is_transient());
    assert!(err.message().contains("NoSuchDistribution"), "{err}");
    assert!(
        err.message().contains("no distribution E2WRONGEXAMPLE"),
        "{err}"
    );
    assert!(err.message().contains("distribution_id"), "{err}");
    let err = backend.check().await.unwrap_err();
    assert_eq!(err.cause(), &Cause::Misconfigured);
    assert_eq!(fake.status_codes(), [404, 404]);
}

#[tokio::test]
async fn check_reports_the_distribution_it_can_read() {
    let fake = fake();
    let backend = CloudFrontBackend::new(&settings(&fake)).unwrap();
    let d = backend.check().await.unwrap();
    assert_eq!(d.id, "EDFDVBD6EXAMPLE");
    assert_eq!(d.status, "Deployed");
    assert_eq!(d.domain_name, "d111111abcdef8.cloudfront.net");
    assert_eq!(d.aliases, ["www.example.com"]);
    assert!(fake.invalidations().is_empty(), "check invalidates nothing");
}

#[tokio::test]
async fn with_wait_a_purge_is_done_only_once_its_invalidation_completed() {
    let fake = fake_with(|c| c.completes_after = Some(Duration::from_millis(300)));
    let mut s = settings(&fake);
    s.wait = true;
    let backend = CloudFrontBackend::new(&s).unwrap();
    let start = Instant::now();
    backend.purge(&[Target::url("/a").unwrap()]).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(backend.in_progress(), (0, 0), "released once completed");
    assert_eq!(fake.in_progress(), (0, 0));
}

#[tokio::test]
async fn a_wait_that_times_out_is_retried_as_a_new_invalidation_never_folded_into_the_old_one() {
    let fake = fake_with(|c| c.completes_after = None);
    let mut s = settings(&fake);
    s.wait = true;
    s.wait_timeout = Duration::from_millis(200);
    let backend = CloudFrontBackend::new(&s).unwrap();
    let batch = [Target::url("/a").unwrap(), Target::url("/b").unwrap()];
    let err = backend.purge(&batch).await.unwrap_err();
    assert_eq!(err.cause(), &Cause::Timeout);
    assert!(err.is_transient());
    assert!(err.message().contains("still in progress"), "{err}");

    // The retry (or a later save of the same paths: the backend cannot tell them apart) is
    // an invalidation of its own, with its own caller reference, made after it was asked for.
    let err = backend.purge(&batch).await.unwrap_err();
    assert_eq!(err.cause(), &Cause::Timeout);
    let made = fake.invalidations();
    assert_eq!(made.len(), 2, "{made:?}");
    assert_ne!(made[0].caller_reference, made[1].caller_reference);
}

#[tokio::test]
async fn a_key_that_may_not_get_invalidations_fails_for_good_once_the_limits_are_full() {
    // The IAM policy allows CreateInvalidation only: the backend can never see its
    // invalidations complete, so waiting for room would be a retry that cannot succeed.
    let fake = fake_with(|c| {
        c.completes_after = None;
        c.deny_get_invalidation = true;
        c.max_paths_in_progress = 10;
    });
    let mut s = settings(&fake);
    s.max_paths_in_progress = 10.try_into().unwrap();
    let backend = CloudFrontBackend::new(&s).unwrap();
    backend.purge(&urls(10)).await.unwrap();
    let err = backend
        .purge(&[Target::url("/more").unwrap()])
        .await
        .unwrap_err();
    assert_eq!(err.cause(), &Cause::Authentication, "{err}");
    assert!(!err.is_transient(), "{err}");
    assert!(
        err.message().contains("cloudfront:GetInvalidation"),
        "{err}"
    );
    assert_eq!(fake.invalidations().len(), 1);
}

#[tokio::test]
async fn two_targets_of_one_path_are_sent_once_and_share_its_outcome() {
    let fake = fake_with(|c| {
        c.completes_after = None;
        c.max_paths_in_progress = 1;
    });
    let mut s = settings(&fake);
    s.max_paths_in_progress = 1.try_into().unwrap();
    let backend = CloudFrontBackend::new(&s).unwrap();
    // `/a` and `https://www.example.com/a` are the same CloudFront path.
    let twins = [
        Target::url("/a").unwrap(),
        Target::url("https://www.example.com/a").unwrap(),
    ];
    backend.purge(&twins).await.unwrap();
    assert_eq!(fake.paths(), ["/a"]);
    // The limit is full now: both twins wait for room, neither is counted as purged.
    let err = backend.purge(&twins).await.unwrap_err();
    assert!(matches!(err.cause(), Cause::RateLimited { .. }), "{err}");
    assert_eq!(err.failed().count(twins.len()), 2, "{err}");
}
