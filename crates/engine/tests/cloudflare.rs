//! The Cloudflare backend against `CloudflareFake` (cache-purge-hooks-testing), a local fake of
//! API v4 that enforces the documented contract: the token, the zone, the body's shape, the
//! plan's items per request and its token bucket (429 with Retry-After beyond it).
//!
//! The rate-limit tests run the plan's clock faster: the fake refills its bucket `speedup`
//! times faster than the plan says, and the backend is given the plan's rate times the same
//! factor (`rate` setting); bucket sizes and items per request are the plan's own.

use std::time::{Duration, Instant};

use cache_purge_hooks_engine::backend::{Backend, Cause, CloudflareBackend, FailedTargets};
use cache_purge_hooks_engine::retry::RetryPolicy;
use cache_purge_hooks_engine::settings::{CloudflarePlan, CloudflareSettings};
use cache_purge_hooks_engine::{Delivery, Purger, Target};
use cache_purge_hooks_testing::{
    CloudflareFake, CloudflareFakeConfig, CloudflarePlanLimits, CloudflarePurge,
};

fn limits(plan: CloudflarePlan) -> CloudflarePlanLimits {
    match plan {
        CloudflarePlan::Free => CloudflarePlanLimits::Free,
        CloudflarePlan::Pro => CloudflarePlanLimits::Pro,
        CloudflarePlan::Business => CloudflarePlanLimits::Business,
        _ => CloudflarePlanLimits::Enterprise,
    }
}

fn fake(plan: CloudflarePlan, speedup: f64) -> CloudflareFake {
    CloudflareFake::start(CloudflareFakeConfig {
        plan: limits(plan),
        speedup,
        ..CloudflareFakeConfig::default()
    })
    .unwrap()
}

fn settings(fake: &CloudflareFake, plan: CloudflarePlan) -> CloudflareSettings {
    let mut s = CloudflareSettings::default();
    s.zone_id = Some(fake.zone_id().parse().unwrap());
    s.api_token = Some(fake.token().parse().unwrap());
    s.plan = plan;
    s.site_url = Some("https://www.example.com".parse().unwrap());
    s.base_url = fake.base_url().parse().unwrap();
    s.timeout = Duration::from_secs(5);
    s
}

fn targets(kind: &str, n: usize) -> Vec<Target> {
    (0..n)
        .map(|i| match kind {
            "url" => Target::url(&format!("/page/{i}")).unwrap(),
            _ => Target::tag(&format!("post-{i}")).unwrap(),
        })
        .collect()
}

async fn settle(purger: &Purger, deadline: Duration) {
    let start = Instant::now();
    purger.flush().await;
    while purger.undelivered() > 0 && start.elapsed() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn urls_tags_prefixes_hosts_and_everything_are_purged_exactly_as_asked() {
    let fake = fake(CloudflarePlan::Pro, 1.0);
    let backend = CloudflareBackend::new(&settings(&fake, CloudflarePlan::Pro)).unwrap();
    let batch = vec![
        Target::url("/a?x=1").unwrap(),
        Target::url("https://static.example.com/app.js").unwrap(),
        Target::tag("post-1").unwrap(),
        Target::prefix("/blog/").unwrap(),
        Target::prefix("https://cdn.example.com/").unwrap(),
    ];
    backend.purge(&batch).await.unwrap();
    let mut purges = fake.purges();
    purges.sort_by_key(|p| format!("{p:?}"));
    assert_eq!(
        purges,
        [
            CloudflarePurge::Files(vec![
                "https://www.example.com/a?x=1".into(),
                "https://static.example.com/app.js".into()
            ]),
            CloudflarePurge::Hosts(vec!["cdn.example.com".into()]),
            CloudflarePurge::Prefixes(vec!["www.example.com/blog/".into()]),
            CloudflarePurge::Tags(vec!["post-1".into()]),
        ]
    );

    // Everything in a batch is one purge_everything, which covers the rest.
    backend
        .purge(&[Target::url("/b").unwrap(), Target::Everything])
        .await
        .unwrap();
    assert_eq!(fake.purges().last(), Some(&CloudflarePurge::Everything));
    assert_eq!(fake.purges().len(), 5);
}

#[tokio::test]
async fn a_burst_larger_than_the_bucket_completes_without_a_429_at_90_percent_of_the_plan_rate_on_every_plan()
 {
    // Each plan's clock runs `speedup` times faster (Enterprise at its own rate), so that
    // the refill phase after the bucket lasts about two seconds.
    for (plan, speedup) in [
        (CloudflarePlan::Free, 480.0),
        (CloudflarePlan::Pro, 8.0),
        (CloudflarePlan::Business, 4.0),
        (CloudflarePlan::Enterprise, 1.0),
    ] {
        let fake = fake(plan, speedup);
        let mut s = settings(&fake, plan);
        let rate = plan.rate().scaled(speedup);
        s.rate = Some(rate);
        let per_second = rate.per_second();
        let burst = f64::from(plan.burst());
        // The bucket, then two seconds of refill; 100 tags per request.
        let requests = (burst + 2.0 * per_second).round() as usize;
        let purger = Purger::builder()
            .delivery(Delivery::Immediate)
            .backend("cf", CloudflareBackend::new(&s).unwrap())
            .build()
            .unwrap();
        let start = Instant::now();
        purger.purge(targets("tag", requests * 100)).await;
        settle(&purger, Duration::from_secs(30)).await;
        // Until the last request reached the fake (not the polling of `settle`).
        let last = *fake.purge_times().last().unwrap();
        let elapsed = last.duration_since(start).as_secs_f64();

        assert_eq!(fake.too_many_requests(), 0, "{plan}: {:?}", fake.statuses());
        let purges = fake.purges();
        assert_eq!(purges.len(), requests, "{plan}");
        let tags: usize = purges.iter().map(|p| p.items().len()).sum();
        assert_eq!(tags, requests * 100, "{plan}");
        // What the plan allows in `elapsed`: the bucket plus the refill.
        let allowed = burst + per_second * elapsed;
        let achieved = requests as f64 / allowed;
        assert!(
            achieved >= 0.9,
            "{plan}: {requests} requests in {elapsed:.3}s, {:.1}% of the {allowed:.1} allowed",
            achieved * 100.0
        );
        eprintln!(
            "{plan}: {requests} requests in {elapsed:.3}s: {:.1}% of the allowed rate",
            achieved * 100.0
        );
        // And the bucket did hold them back: the refill phase took its time.
        let floor = (requests as f64 - burst) / per_second;
        assert!(
            elapsed >= floor * 0.95,
            "{plan}: {elapsed:.3}s < {floor:.3}s"
        );
    }
}

#[tokio::test]
async fn a_forced_429_is_retried_after_its_retry_after() {
    let fake = fake(CloudflarePlan::Pro, 1.0);
    fake.force_429(1, Duration::from_secs(1));
    let backend = CloudflareBackend::new(&settings(&fake, CloudflarePlan::Pro)).unwrap();

    // The backend says what the 429 asked for...
    let err = backend
        .purge(&[Target::url("/a").unwrap()])
        .await
        .unwrap_err();
    assert_eq!(
        err.cause(),
        &Cause::RateLimited {
            retry_after: Some(Duration::from_secs(1))
        }
    );
    assert!(err.message().contains("971"), "{err}");

    // ... and the engine waits that long before the retry, which goes through.
    fake.force_429(1, Duration::from_secs(1));
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .retry(
            RetryPolicy::default()
                .with_backoff(Duration::from_millis(10), Duration::from_millis(20)),
        )
        .backend("cf", backend)
        .build()
        .unwrap();
    let start = Instant::now();
    purger.purge([Target::url("/b").unwrap()]).await;
    settle(&purger, Duration::from_secs(10)).await;
    assert_eq!(
        fake.purges(),
        [CloudflarePurge::Files(vec![
            "https://www.example.com/b".into()
        ])]
    );
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(fake.statuses(), [429, 429, 200]);
    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.retried, stats.dead), (1, 1, 0));
}

#[tokio::test]
async fn a_bad_token_is_a_permanent_failure_that_is_not_retried() {
    let fake = fake(CloudflarePlan::Pro, 1.0);
    let mut s = settings(&fake, CloudflarePlan::Pro);
    s.api_token = Some("not-the-token".parse().unwrap());
    let backend = CloudflareBackend::new(&s).unwrap();
    let err = backend
        .purge(&[Target::url("/a").unwrap()])
        .await
        .unwrap_err();
    assert_eq!(err.cause(), &Cause::Authentication);
    assert!(!err.is_transient());
    assert!(
        err.message().contains("10000 Authentication error"),
        "{err}"
    );
    assert!(err.message().contains("api_token"), "{err}");
    assert!(!err.to_string().contains("not-the-token"), "{err}");

    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("cf", backend)
        .build()
        .unwrap();
    purger.purge([Target::url("/b").unwrap()]).await;
    settle(&purger, Duration::from_secs(5)).await;
    let dead = purger.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 1, "not retried");
    assert_eq!(fake.statuses(), [403, 403]);
    assert!(fake.purges().is_empty());
}

#[tokio::test]
async fn a_wrong_zone_id_is_named_as_such() {
    let fake = fake(CloudflarePlan::Pro, 1.0);
    let mut s = settings(&fake, CloudflarePlan::Pro);
    s.zone_id = Some("ffffffffffffffffffffffffffffffff".parse().unwrap());
    let backend = CloudflareBackend::new(&s).unwrap();
    let err = backend
        .purge(&[Target::url("/a").unwrap()])
        .await
        .unwrap_err();
    assert_eq!(err.cause(), &Cause::Misconfigured);
    assert!(err.message().contains("7003"), "{err}");
    assert!(
        err.message()
            .contains("no zone ffffffffffffffffffffffffffffffff"),
        "{err}"
    );
    assert!(err.message().contains("zone_id"), "{err}");
    let err = backend.check().await.unwrap_err();
    assert_eq!(err.cause(), &Cause::Misconfigured);
}

#[tokio::test]
async fn splitting_respects_every_limit_of_the_plan() {
    // Pro: 100 URLs and 100 tags per request; Enterprise: 500 URLs, still 100 tags.
    for (plan, max_urls) in [
        (CloudflarePlan::Pro, 100),
        (CloudflarePlan::Enterprise, 500),
    ] {
        let fake = fake(plan, 1.0);
        let purger = Purger::builder()
            .delivery(Delivery::Immediate)
            .backend(
                "cf",
                CloudflareBackend::new(&settings(&fake, plan)).unwrap(),
            )
            .build()
            .unwrap();
        let mut all = targets("url", 1234);
        all.extend(targets("tag", 777));
        purger.purge(all).await;
        settle(&purger, Duration::from_secs(10)).await;
        let purges = fake.purges();
        let (mut urls, mut tags) = (0, 0);
        for p in &purges {
            match p {
                CloudflarePurge::Files(f) => {
                    assert!(f.len() <= max_urls, "{plan}: {} URLs", f.len());
                    urls += f.len();
                }
                CloudflarePurge::Tags(t) => {
                    assert!(t.len() <= 100, "{plan}: {} tags", t.len());
                    tags += t.len();
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((urls, tags), (1234, 777), "{plan}");
        assert!(fake.statuses().iter().all(|s| *s == 200), "{plan}");
    }

    // An account held to 30 URLs per request says so.
    let fake = fake(CloudflarePlan::Free, 1.0);
    let mut s = settings(&fake, CloudflarePlan::Free);
    s.urls_per_request = std::num::NonZeroUsize::new(30);
    let backend = CloudflareBackend::new(&s).unwrap();
    assert_eq!(backend.max_batch(), 30);
}

#[tokio::test]
async fn more_items_than_the_plan_takes_is_refused_with_cloudflares_message() {
    // The fake enforces the plan: an override above it draws Cloudflare's 400.
    let fake = fake(CloudflarePlan::Pro, 1.0);
    let mut s = settings(&fake, CloudflarePlan::Pro);
    s.urls_per_request = std::num::NonZeroUsize::new(150);
    let backend = CloudflareBackend::new(&s).unwrap();
    let err = backend.purge(&targets("url", 150)).await.unwrap_err();
    assert_eq!(err.cause(), &Cause::Refused);
    assert!(!err.is_transient());
    assert!(err.message().contains("up to 100 files"), "{err}");
    assert!(err.message().contains("plan pro"), "{err}");
}

#[tokio::test]
async fn paths_without_a_site_url_fail_alone_and_the_rest_is_purged() {
    let fake = fake(CloudflarePlan::Pro, 1.0);
    let mut s = settings(&fake, CloudflarePlan::Pro);
    s.site_url = None;
    let backend = CloudflareBackend::new(&s).unwrap();
    let batch = [
        Target::url("/a").unwrap(),
        Target::url("https://www.example.com/b").unwrap(),
        Target::tag("t").unwrap(),
    ];
    let err = backend.purge(&batch).await.unwrap_err();
    assert_eq!(err.cause(), &Cause::Misconfigured);
    assert_eq!(err.failed(), &FailedTargets::Only(vec![batch[0].clone()]));
    assert!(err.message().contains("site_url"), "{err}");
    assert_eq!(fake.purges().len(), 2);
}

#[tokio::test]
async fn check_confirms_the_token_and_the_zone_and_names_a_bad_token() {
    let fake = fake(CloudflarePlan::Pro, 1.0);
    let backend = CloudflareBackend::new(&settings(&fake, CloudflarePlan::Pro)).unwrap();
    let zone = backend.check().await.unwrap();
    assert_eq!(
        (
            zone.name.as_str(),
            zone.status.as_str(),
            zone.token_status.as_str()
        ),
        ("example.com", "active", "active")
    );
    assert!(fake.purges().is_empty(), "a check purges nothing");

    let mut s = settings(&fake, CloudflarePlan::Pro);
    s.api_token = Some("wrong".parse().unwrap());
    let err = CloudflareBackend::new(&s)
        .unwrap()
        .check()
        .await
        .unwrap_err();
    assert_eq!(err.cause(), &Cause::Authentication);
}

#[test]
fn the_token_never_shows_in_debug_output() {
    let mut s = CloudflareSettings::default();
    s.zone_id = Some("023e105f4ecef8ad9ca31a8372d0c353".parse().unwrap());
    s.api_token = Some("very-secret-token-123".parse().unwrap());
    let backend = CloudflareBackend::new(&s).unwrap();
    for shown in [format!("{s:?}"), format!("{backend:?}")] {
        assert!(!shown.contains("very-secret-token-123"), "{shown}");
    }
    let printed = toml::to_string(&s).unwrap();
    assert!(!printed.contains("very-secret-token-123"), "{printed}");
}
