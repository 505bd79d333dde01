//! Scenario 6: the CDN backends against the local fakes of their APIs
//! (`cache-purge-hooks-testing`), which enforce each provider's documented limits.
//!
//! Cloudflare, per plan: once the plan's bucket is spent (an untimed warm-up), the URLs per
//! second the backend sends through a `Purger` (overall, and steady: over the second half of
//! the requests, as the fake received them), beside the plan's own sustained limit
//! (requests per second × URLs per request, or the URLs per second when that is lower). The
//! plan's clock runs faster (the fake refills `speedup` times faster and the backend is given
//! the plan's rate times the same factor); the figures are divided by the factor, so they
//! read as real-clock URLs per second. A 429 from the fake fails the run.
//!
//! Akamai, the same way: once the account's URL bucket (10,000) is spent, the URLs per second
//! through a `Purger` as the fake received the second half of them, beside the documented
//! 200 URLs per second (the object limit binds: 50 requests per second carry far more).
//!
//! Fastly documents no purge rate limit: its row is what one `PURGE` per URL reaches against
//! the fake on this machine, beside surrogate-key batches of 256.
//!
//! CloudFront limits paths in progress (3,000 per distribution), not requests: how fast URLs
//! go depends on how long invalidations take to complete. The fake completes each one after
//! one second, so the limit it enforces is 3,000 URLs per second; the row is the URLs per
//! second the backend reaches through a `Purger` (polling `GetInvalidation` every 100 ms to
//! see room, the engine's default retry policy), overall and after the first 3,000 (which go
//! at once), beside that limit. A `TooManyInvalidationsInProgress` from the fake fails the run.

use std::time::Duration;

use cache_purge_hooks::Target;
use cache_purge_hooks::backend::{
    AkamaiBackend, CloudFrontBackend, CloudflareBackend, FastlyBackend,
};
use cache_purge_hooks::settings::{
    AkamaiSettings, CloudFrontSettings, CloudflarePlan, CloudflareSettings, FastlySettings,
};
use cache_purge_hooks_testing::{
    AkamaiFake, AkamaiFakeConfig, CLOUDFRONT_MAX_PATHS_IN_PROGRESS, CloudFrontFake,
    CloudFrontFakeConfig, CloudflareFake, CloudflareFakeConfig, CloudflarePlanLimits, FastlyFake,
    FastlyFakeConfig,
};

use crate::report::{Row, Table, grouped};
use crate::{Config, Context, Result, progress};

fn urls(prefix: &str, n: usize) -> Result<Vec<Target>> {
    (0..n)
        .map(|i| Target::url(&format!("/{prefix}/{i}")).context("a bench URL"))
        .collect()
}

/// The plan's sustained URLs per second: requests × URLs per request, or the URL limit.
fn sustained(plan: CloudflarePlan) -> f64 {
    let by_requests = plan.rate().per_second() * plan.max_urls_per_request() as f64;
    by_requests.min(f64::from(plan.urls_per_second()))
}

/// Runs scenario 6 (`quick`: a half-second window per plan instead of three seconds).
pub(crate) async fn run(config: &Config, quick: bool) -> Result<Table> {
    let window = if quick { 0.5 } else { 3.0 };
    let mut table = Table::new(
        "cdn",
        format!(
            "6. CDN backends against enforcing fakes: Cloudflare per plan (after its bucket, {window} s or three buckets at the plan's limit), Fastly"
        ),
        "URL",
    );
    for (plan, limits, speedup) in [
        (CloudflarePlan::Free, CloudflarePlanLimits::Free, 480.0),
        (CloudflarePlan::Pro, CloudflarePlanLimits::Pro, 8.0),
        (
            CloudflarePlan::Business,
            CloudflarePlanLimits::Business,
            4.0,
        ),
        (
            CloudflarePlan::Enterprise,
            CloudflarePlanLimits::Enterprise,
            2.0,
        ),
    ] {
        let fake = CloudflareFake::start(CloudflareFakeConfig {
            plan: limits,
            speedup,
            ..CloudflareFakeConfig::default()
        })
        .context("starting the Cloudflare fake")?;
        let mut s = CloudflareSettings::default();
        s.zone_id = Some(fake.zone_id().parse().context("the fake's zone")?);
        s.api_token = Some(fake.token().parse().context("the fake's token")?);
        s.plan = plan;
        s.site_url = Some("https://www.example.com".parse().context("site_url")?);
        s.base_url = fake.base_url().parse().context("the fake's URL")?;
        s.rate = Some(plan.rate().scaled(speedup));
        s.timeout = Duration::from_secs(10);
        let limit = sustained(plan);
        let request_bound =
            plan.rate().per_second() * (plan.max_urls_per_request() as f64) <= limit + 1e-9;
        // The warm-up spends the bucket that binds: the requests', or the URLs'.
        let warm = if request_bound {
            plan.burst() as usize * plan.max_urls_per_request()
        } else {
            plan.urls_per_second() as usize
        };
        // At least three buckets' worth, so that the second half is paced by the refill
        // whatever the warm-up left (it may leave much of a bucket when sending it took
        // longer than the refill).
        let bucket_urls = if request_bound {
            warm
        } else {
            plan.urls_per_second() as usize
        };
        let timed = ((limit * speedup * window).round() as usize).max(3 * bucket_urls);
        progress!(
            "cloudflare {plan}: {} URLs to spend the bucket, then {} timed (clock x{speedup})",
            grouped(warm as u64),
            grouped(timed as u64)
        );
        let purger = cache_purge_hooks::Purger::builder()
            .delivery(cache_purge_hooks::Delivery::Immediate)
            .backend(
                "cf",
                CloudflareBackend::new(&s).context("CloudflareBackend::new")?,
            )
            .build()
            .context("building the Purger")?;
        purger.purge(urls("warm", warm)?).await;
        purger.flush().await;
        let started = std::time::Instant::now();
        purger.purge(urls("timed", timed)?).await;
        purger.flush().await;
        let seconds = started.elapsed().as_secs_f64() * speedup;
        let stats = purger.stats().into_iter().next().ok_or("no backend")?;
        purger
            .shutdown(Duration::from_secs(10))
            .await
            .context("shutting the Purger down")?;
        let purged: usize = fake.purges().iter().map(|p| p.items().len()).sum();
        let (ours_id, steady_id, limit_id) = match plan {
            CloudflarePlan::Free => (
                "ours-cloudflare-free",
                "steady-cloudflare-free",
                "limit-cloudflare-free",
            ),
            CloudflarePlan::Pro => (
                "ours-cloudflare-pro",
                "steady-cloudflare-pro",
                "limit-cloudflare-pro",
            ),
            CloudflarePlan::Business => (
                "ours-cloudflare-business",
                "steady-cloudflare-business",
                "limit-cloudflare-business",
            ),
            _ => (
                "ours-cloudflare-enterprise",
                "steady-cloudflare-enterprise",
                "limit-cloudflare-enterprise",
            ),
        };
        table.rows.push(Row::measured(
            ours_id,
            format!("ours: Purger + CloudflareBackend, {plan} plan (real-clock equivalent)"),
            timed as u64,
            seconds,
        ));
        // The steady rate, from when the fake received the second half of the timed
        // requests: by then whatever the warm-up left in the bucket is spent, and the
        // requests go at the pace the bucket allows.
        let times = fake.purge_times();
        let per_request = plan.max_urls_per_request();
        let timed_requests = timed.div_ceil(per_request).min(times.len());
        let tail = &times[times.len() - timed_requests.div_ceil(2)..];
        let steady = match (tail.first(), tail.last()) {
            (Some(first), Some(last)) if tail.len() > 1 && last > first => {
                (tail.len() - 1) as f64 * per_request as f64
                    / (last.duration_since(*first).as_secs_f64() * speedup)
            }
            _ => 0.0,
        };
        table.rows.push(Row::derived(
            steady_id,
            format!(
                "ours, steady: the second half of the {plan} requests as the fake received them"
            ),
            steady,
        ));
        table.rows.push(Row::derived(
            limit_id,
            format!("the {plan} plan's sustained limit"),
            limit,
        ));
        let reached = steady / limit;
        table.check(
            fake.too_many_requests() == 0,
            true,
            format!("cloudflare {plan}: no 429 from the fake"),
        );
        table.check(
            purged == warm + timed && stats.dead == 0,
            true,
            format!(
                "cloudflare {plan}: every URL purged ({} of {})",
                grouped(purged as u64),
                grouped((warm + timed) as u64)
            ),
        );
        table.check(
            reached >= 0.9,
            !quick,
            format!("cloudflare {plan}: steady at 90% of the plan's limit or more"),
        );
    }

    akamai(&mut table, window, quick).await?;

    // Fastly: URLs one PURGE each, and surrogate keys in batches of 256.
    let fake =
        FastlyFake::start(FastlyFakeConfig::default()).context("starting the Fastly fake")?;
    let mut s = FastlySettings::default();
    s.service_id = Some(fake.service_id().parse().context("the fake's service")?);
    s.api_token = Some(fake.token().parse().context("the fake's key")?);
    s.site_url = Some("https://www.example.com".parse().context("site_url")?);
    s.base_url = fake.base_url().parse().context("the fake's URL")?;
    s.edge_url = Some(fake.base_url().parse().context("the fake's URL")?);
    let n = config.urls;
    progress!(
        "fastly: {} URLs, then {} surrogate keys",
        grouped(n as u64),
        grouped(n as u64)
    );
    let (seconds, _) = crate::through_purger_targets(
        FastlyBackend::new(&s).context("FastlyBackend::new")?,
        urls("fastly", n)?,
    )
    .await?;
    table.rows.push(Row::measured(
        "ours-fastly-url",
        "ours: Purger + FastlyBackend, one PURGE per URL (no documented limit)",
        n as u64,
        seconds,
    ));
    let keys: Vec<Target> = (0..n)
        .map(|i| Target::tag(&format!("k{i}")).context("a bench key"))
        .collect::<Result<_>>()?;
    let (seconds, _) =
        crate::through_purger_targets(FastlyBackend::new(&s).context("FastlyBackend::new")?, keys)
            .await?;
    table.rows.push(Row::measured(
        "ours-fastly-keys",
        "ours: Purger + FastlyBackend, surrogate keys in batches of 256",
        n as u64,
        seconds,
    ));
    let purged: usize = fake
        .purges()
        .iter()
        .map(|p| match p {
            cache_purge_hooks_testing::FastlyPurge::Keys { keys, .. } => keys.len(),
            _ => 1,
        })
        .sum();
    table.check(
        purged == 2 * n && fake.statuses().iter().all(|s| *s == 200),
        true,
        format!("fastly: every URL and key purged ({} of {})", purged, 2 * n),
    );

    cloudfront(&mut table, quick).await?;
    Ok(table)
}

/// CloudFront: URLs per second through the 3,000 paths in progress of a fake whose
/// invalidations complete after one second.
async fn cloudfront(table: &mut Table, quick: bool) -> Result<()> {
    let completes_after = Duration::from_secs(1);
    let fake = CloudFrontFake::start(CloudFrontFakeConfig {
        completes_after: Some(completes_after),
        ..CloudFrontFakeConfig::default()
    })
    .context("starting the CloudFront fake")?;
    let mut s = CloudFrontSettings::default();
    s.distribution_id = Some(fake.distribution_id().parse().context("the fake's ID")?);
    s.access_key_id = Some(fake.access_key_id().parse().context("the fake's key")?);
    s.secret_access_key = Some(
        fake.secret_access_key()
            .parse()
            .context("the fake's secret")?,
    );
    s.base_url = fake.base_url().parse().context("the fake's URL")?;
    s.poll_interval = Duration::from_millis(100);
    s.timeout = Duration::from_secs(10);
    // Three (quick: two) limits' worth: the first goes at once, the rest as room comes.
    let rounds = if quick { 2 } else { 3 };
    let n = rounds * CLOUDFRONT_MAX_PATHS_IN_PROGRESS;
    progress!(
        "cloudfront: {} URLs through {} paths in progress, invalidations completing after {:?}",
        grouped(n as u64),
        grouped(CLOUDFRONT_MAX_PATHS_IN_PROGRESS as u64),
        completes_after
    );
    let purger = cache_purge_hooks::Purger::builder()
        .delivery(cache_purge_hooks::Delivery::Immediate)
        .backend(
            "cloudfront",
            CloudFrontBackend::new(&s).context("CloudFrontBackend::new")?,
        )
        .build()
        .context("building the Purger")?;
    let started = std::time::Instant::now();
    purger.purge(urls("cloudfront", n)?).await;
    purger.flush().await;
    while purger.undelivered() > 0 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let stats = purger.stats().into_iter().next().ok_or("no backend")?;
    purger
        .shutdown(Duration::from_secs(10))
        .await
        .context("shutting the Purger down")?;
    table.rows.push(Row::measured(
        "ours-cloudfront",
        "ours: Purger + CloudFrontBackend, 3,000 paths in progress (fake completes in 1 s)",
        n as u64,
        seconds,
    ));
    // The first limit's worth goes at once; the rest as invalidations complete, which is
    // the rate the limit allows.
    table.rows.push(Row::derived(
        "after-first-cloudfront",
        "ours, after the first 3,000 (sent at once): the rest over the whole run",
        (n - CLOUDFRONT_MAX_PATHS_IN_PROGRESS) as f64 / seconds,
    ));
    let limit = CLOUDFRONT_MAX_PATHS_IN_PROGRESS as f64 / completes_after.as_secs_f64();
    table.rows.push(Row::derived(
        "limit-cloudfront",
        "CloudFront's limit here: 3,000 paths in progress / 1 s to complete",
        limit,
    ));
    let refused = fake
        .error_codes()
        .iter()
        .filter(|c| *c == "TooManyInvalidationsInProgress" || *c == "BatchTooLarge")
        .count();
    table.check(
        refused == 0,
        true,
        "cloudfront: no TooManyInvalidationsInProgress nor BatchTooLarge from the fake",
    );
    let purged = fake.paths().len();
    table.check(
        purged == n && stats.dead == 0,
        true,
        format!(
            "cloudfront: every URL invalidated ({} of {})",
            grouped(purged as u64),
            grouped(n as u64)
        ),
    );
    Ok(())
}

/// The Akamai row: URLs per second past the account's URL bucket, beside the documented 200.
async fn akamai(table: &mut Table, window: f64, quick: bool) -> Result<()> {
    const LIMIT: f64 = 200.0;
    const BUCKET: usize = 10_000;
    let speedup = 50.0;
    let fake = AkamaiFake::start(AkamaiFakeConfig {
        speedup,
        ..AkamaiFakeConfig::default()
    })
    .context("starting the Akamai fake")?;
    let (client, access, secret) = fake.credentials();
    let mut s = AkamaiSettings::default();
    s.base_url = Some(fake.base_url().parse().context("the fake's URL")?);
    s.client_token = Some(client.parse().context("the fake's client token")?);
    s.access_token = Some(access.parse().context("the fake's access token")?);
    s.client_secret = Some(secret.parse().context("the fake's secret")?);
    s.site_url = Some("https://www.example.com".parse().context("site_url")?);
    s.rate = Some(
        format!("{}/s", 50.0 * speedup)
            .parse()
            .context("the scaled rate")?,
    );
    s.timeout = Duration::from_secs(10);
    // Three buckets' worth at least, so that the second half is paced by the refill.
    let timed = ((LIMIT * speedup * window).round() as usize).max(3 * BUCKET);
    progress!(
        "akamai: {} URLs to spend the bucket, then {} timed (clock x{speedup})",
        grouped(BUCKET as u64),
        grouped(timed as u64)
    );
    let purger = cache_purge_hooks::Purger::builder()
        .delivery(cache_purge_hooks::Delivery::Immediate)
        .backend(
            "akamai",
            AkamaiBackend::new(&s).context("AkamaiBackend::new")?,
        )
        .build()
        .context("building the Purger")?;
    purger.purge(urls("warm", BUCKET)?).await;
    purger.flush().await;
    let already = fake.purges().len();
    let started = std::time::Instant::now();
    purger.purge(urls("timed", timed)?).await;
    purger.flush().await;
    let seconds = started.elapsed().as_secs_f64() * speedup;
    let stats = purger.stats().into_iter().next().ok_or("no backend")?;
    purger
        .shutdown(Duration::from_secs(10))
        .await
        .context("shutting the Purger down")?;
    let purges = fake.purges();
    let purged: usize = purges.iter().map(|p| p.objects.len()).sum();
    table.rows.push(Row::measured(
        "ours-akamai",
        "ours: Purger + AkamaiBackend, URLs (real-clock equivalent)",
        timed as u64,
        seconds,
    ));
    // The second half of the timed requests, as the fake received them.
    let timed_purges = &purges[already.min(purges.len())..];
    let tail = &timed_purges[timed_purges.len() / 2..];
    let steady = match (tail.first(), tail.last()) {
        (Some(first), Some(last)) if tail.len() > 1 && last.received > first.received => {
            let urls: usize = tail[1..].iter().map(|p| p.objects.len()).sum();
            urls as f64 / (last.received.duration_since(first.received).as_secs_f64() * speedup)
        }
        _ => 0.0,
    };
    table.rows.push(Row::derived(
        "steady-akamai",
        "ours, steady: the second half of the Akamai requests as the fake received them",
        steady,
    ));
    table.rows.push(Row::derived(
        "limit-akamai",
        "Akamai Fast Purge's documented URL rate (200/s after a bucket of 10,000)",
        LIMIT,
    ));
    table.check(
        fake.statuses().iter().all(|s| *s == 201),
        true,
        "akamai: no 429 (nor any other error) from the fake",
    );
    table.check(
        purged == BUCKET + timed && stats.dead == 0,
        true,
        format!(
            "akamai: every URL purged ({} of {})",
            grouped(purged as u64),
            grouped((BUCKET + timed) as u64)
        ),
    );
    table.check(
        steady / LIMIT >= 0.9,
        !quick,
        "akamai: steady at 90% of the documented URL rate or more",
    );
    Ok(())
}
