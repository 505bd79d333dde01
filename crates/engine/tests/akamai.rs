//! The Akamai backend against `AkamaiFake` (cache-purge-hooks-testing), a local fake of Fast
//! Purge API v3 that enforces the documented contract: EdgeGrid signatures (recomputed from
//! the credentials; stale timestamps and reused nonces refused), the request shapes, the
//! 50,000-byte body limit (413), the account's token buckets (429) and the `X-Ratelimit-*`
//! headers on every answer.
//!
//! The rate-limit tests run the account's clock faster: the fake refills its buckets
//! `speedup` times faster than documented, and the backend is given the documented request
//! rate times the same factor (`rate`, which scales the object rates too); bucket sizes are
//! the documented ones.

use std::time::{Duration, Instant, SystemTime};

use cache_purge_hooks_engine::backend::akamai::edgegrid::{self, Signer};
use cache_purge_hooks_engine::backend::{AkamaiBackend, Backend, Capabilities, Cause};
use cache_purge_hooks_engine::retry::RetryPolicy;
use cache_purge_hooks_engine::settings::{AkamaiAction, AkamaiNetwork, AkamaiSettings};
use cache_purge_hooks_engine::{Delivery, Purger, Target};
use cache_purge_hooks_testing::{
    AKAMAI_MAX_BODY_BYTES, AkamaiFake, AkamaiFakeConfig, AkamaiObjectType, AkamaiPurge,
};

fn fake(speedup: f64) -> AkamaiFake {
    AkamaiFake::start(AkamaiFakeConfig {
        speedup,
        ..AkamaiFakeConfig::default()
    })
    .unwrap()
}

fn settings(fake: &AkamaiFake, speedup: f64) -> AkamaiSettings {
    let (client, access, secret) = fake.credentials();
    let mut s = AkamaiSettings::default();
    s.base_url = Some(fake.base_url().parse().unwrap());
    s.client_token = Some(client.parse().unwrap());
    s.access_token = Some(access.parse().unwrap());
    s.client_secret = Some(secret.parse().unwrap());
    s.site_url = Some("https://www.example.com".parse().unwrap());
    s.rate = Some(format!("{}/s", 50.0 * speedup).parse().unwrap());
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

fn urls(n: usize, padding: usize) -> Vec<Target> {
    let pad = "p".repeat(padding);
    (0..n)
        .map(|i| Target::url(&format!("/page{pad}/{i}")).unwrap())
        .collect()
}

fn purge(
    action: &str,
    kind: AkamaiObjectType,
    network: &str,
    objects: &[&str],
) -> (String, AkamaiObjectType, String, Vec<String>) {
    (
        action.to_owned(),
        kind,
        network.to_owned(),
        objects.iter().map(|o| (*o).to_owned()).collect(),
    )
}

fn shapes(purges: &[AkamaiPurge]) -> Vec<(String, AkamaiObjectType, String, Vec<String>)> {
    let mut shapes: Vec<_> = purges
        .iter()
        .map(|p| {
            (
                p.action.clone(),
                p.kind,
                p.network.clone(),
                p.objects.clone(),
            )
        })
        .collect();
    shapes.sort_by_key(|s| format!("{s:?}"));
    shapes
}

#[tokio::test]
async fn urls_tags_and_cp_codes_are_purged_exactly_as_asked() {
    let fake = fake(1.0);
    let mut s = settings(&fake, 1.0);
    s.cp_codes = vec!["12345".parse().unwrap(), "cpc_67890".parse().unwrap()];
    let backend = AkamaiBackend::new(&s).unwrap();
    let long_tag = format!("post:{}", "x".repeat(200));
    backend
        .purge(&[
            Target::url("/a?x=1").unwrap(),
            Target::url("https://static.example.com/app.js").unwrap(),
            Target::tag("post-1").unwrap(),
            Target::tag(&long_tag).unwrap(),
            Target::tag("post:1").unwrap(),
        ])
        .await
        .unwrap();
    let akamai_form = |tag: &str| {
        cache_purge_hooks_engine::target::Tag::parse(tag)
            .unwrap()
            .akamai_form()
            .as_str()
            .to_owned()
    };
    // What `TagHeader::edge_cache_tag()` writes on the page (its tests check the same form).
    let shortened = akamai_form(&long_tag);
    assert_eq!(shortened.len(), 128);
    let colon = akamai_form("post:1");
    assert!(colon.starts_with("post_1~"), "{colon}");
    assert_eq!(
        shapes(&fake.purges()),
        [
            purge(
                "invalidate",
                AkamaiObjectType::Tag,
                "production",
                &["post-1", &shortened, &colon]
            ),
            purge(
                "invalidate",
                AkamaiObjectType::Url,
                "production",
                &[
                    "https://www.example.com/a?x=1",
                    "https://static.example.com/app.js"
                ]
            ),
        ]
    );
    // Everything is the configured CP codes, and covers the rest of the batch.
    backend
        .purge(&[Target::url("/b").unwrap(), Target::Everything])
        .await
        .unwrap();
    let last = fake.purges().last().cloned().unwrap();
    assert_eq!(
        (last.kind, last.objects),
        (
            AkamaiObjectType::CpCode,
            vec!["12345".into(), "67890".into()]
        )
    );
    assert_eq!(fake.purges().len(), 3);
    assert!(
        fake.statuses().iter().all(|s| *s == 201),
        "{:?}",
        fake.statuses()
    );
}

#[tokio::test]
async fn delete_and_staging_go_to_their_own_endpoints() {
    let fake = fake(1.0);
    let mut s = settings(&fake, 1.0);
    s.action = AkamaiAction::Delete;
    s.network = AkamaiNetwork::Staging;
    let backend = AkamaiBackend::new(&s).unwrap();
    backend
        .purge(&[Target::url("/a").unwrap(), Target::tag("t").unwrap()])
        .await
        .unwrap();
    assert_eq!(
        shapes(&fake.purges()),
        [
            purge("delete", AkamaiObjectType::Tag, "staging", &["t"]),
            purge(
                "delete",
                AkamaiObjectType::Url,
                "staging",
                &["https://www.example.com/a"]
            ),
        ]
    );
}

#[tokio::test]
async fn a_batch_over_50_kb_is_split_into_requests_within_it_even_with_long_urls() {
    let fake = fake(10.0);
    let backend = AkamaiBackend::new(&settings(&fake, 10.0)).unwrap();
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("akamai", backend)
        .build()
        .unwrap();
    // 2,000 URLs of about 1 KB, and 2,000 short ones: about 2.1 MB of objects.
    let mut targets = urls(2000, 1000);
    targets.extend(urls(2000, 0).into_iter().map(|t| match t {
        Target::Url(u) => Target::url(&format!("{}?short", u.as_str())).unwrap(),
        t => t,
    }));
    purger.purge(targets).await;
    settle(&purger, Duration::from_secs(30)).await;
    let purges = fake.purges();
    let total: usize = purges.iter().map(|p| p.objects.len()).sum();
    assert_eq!(total, 4000);
    let largest = purges.iter().map(|p| p.body_bytes).max().unwrap();
    assert!(
        largest <= AKAMAI_MAX_BODY_BYTES,
        "a body of {largest} bytes"
    );
    // Packed close to the limit, not one URL per request.
    assert!(largest > AKAMAI_MAX_BODY_BYTES - 1100, "{largest}");
    assert!(
        fake.statuses().iter().all(|s| *s == 201),
        "{:?}",
        fake.statuses()
    );
}

#[tokio::test]
async fn a_burst_larger_than_the_url_bucket_completes_without_a_429_at_the_documented_rate() {
    // URLs: a bucket of 10,000 refilled at 200/s, here 2,000/s.
    let speedup = 10.0;
    let fake = fake(speedup);
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend(
            "akamai",
            AkamaiBackend::new(&settings(&fake, speedup)).unwrap(),
        )
        .build()
        .unwrap();
    let n = 14_000;
    let start = Instant::now();
    purger.purge(urls(n, 0)).await;
    settle(&purger, Duration::from_secs(30)).await;
    let elapsed = start.elapsed().as_secs_f64();
    assert!(
        fake.statuses().iter().all(|s| *s == 201),
        "{:?}",
        fake.statuses()
    );
    let total: usize = fake.purges().iter().map(|p| p.objects.len()).sum();
    assert_eq!(total, n);
    // The bucket held the 4,000 beyond it back for their refill...
    let floor = (n as f64 - 10_000.0) / (200.0 * speedup);
    assert!(elapsed >= floor * 0.95, "{elapsed:.3}s < {floor:.3}s");
    // ... and not far longer than needed (loose: 2 CPUs shared with the fake and CI).
    assert!(elapsed < floor * 3.0 + 2.0, "{elapsed:.3}s");
    eprintln!("{n} URLs in {elapsed:.3}s (floor {floor:.3}s)");
}

#[tokio::test]
async fn what_another_client_spent_is_followed_through_x_ratelimit_remaining_objects() {
    let speedup = 5.0;
    let fake = fake(speedup);
    // Another API client of the account leaves 1,000 URL tokens of the 10,000.
    fake.spend(AkamaiObjectType::Url, 9_000);
    let backend = AkamaiBackend::new(&settings(&fake, speedup)).unwrap();
    let batch = urls(800, 0);
    let start = Instant::now();
    for _ in 0..4 {
        backend.purge(&batch).await.unwrap();
    }
    // This side's bucket thought 9,800 were left; the answers said 200, then less, and it
    // waited for the refill (1,000/s here) instead of drawing 429s.
    assert_eq!(fake.statuses(), [201, 201, 201, 201]);
    let floor = (4.0 * 800.0 - 1000.0) / (200.0 * speedup);
    let elapsed = start.elapsed().as_secs_f64();
    assert!(elapsed >= floor * 0.9, "{elapsed:.3}s < {floor:.3}s");
}

#[tokio::test]
async fn a_forced_429_is_retried_after_its_wait() {
    let fake = fake(1.0);
    fake.force_429(1, Duration::from_secs(1));
    let backend = AkamaiBackend::new(&settings(&fake, 1.0)).unwrap();
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
    assert!(err.message().contains("Rate Limit exceeded"), "{err}");

    fake.force_429(1, Duration::from_secs(1));
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .retry(
            RetryPolicy::default()
                .with_backoff(Duration::from_millis(10), Duration::from_millis(20)),
        )
        .backend("akamai", backend)
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
    assert_eq!(fake.statuses(), [429, 429, 201]);
    assert_eq!(
        fake.purges().last().unwrap().objects,
        ["https://www.example.com/b"]
    );
    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.retried, stats.dead), (1, 1, 0));
}

#[tokio::test]
async fn bad_credentials_are_permanent_failures_that_name_the_setting() {
    let fake = fake(1.0);
    let mut s = settings(&fake, 1.0);
    s.client_secret = Some("bm90LXRoZS1zZWNyZXQ=".parse().unwrap());
    let backend = AkamaiBackend::new(&s).unwrap();
    let err = backend
        .purge(&[Target::url("/a").unwrap()])
        .await
        .unwrap_err();
    assert_eq!(err.cause(), &Cause::Authentication);
    assert!(!err.is_transient());
    assert!(
        err.message().contains("The signature does not match"),
        "{err}"
    );
    assert!(err.message().contains("client_secret"), "{err}");
    assert!(!err.to_string().contains("bm90LXRoZS1zZWNyZXQ="));

    let mut s = settings(&fake, 1.0);
    s.client_token = Some("akab-someone-else".parse().unwrap());
    let err = AkamaiBackend::new(&s)
        .unwrap()
        .purge(&[Target::tag("t").unwrap()])
        .await
        .unwrap_err();
    assert_eq!(err.cause(), &Cause::Authentication);
    assert!(err.message().contains("client_token"), "{err}");

    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("akamai", backend)
        .build()
        .unwrap();
    purger.purge([Target::url("/b").unwrap()]).await;
    settle(&purger, Duration::from_secs(5)).await;
    let dead = purger.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 1, "not retried");
    assert_eq!(fake.statuses(), [401, 401, 401]);
    assert!(fake.purges().is_empty());
}

#[tokio::test]
async fn prefixes_are_unsupported_and_everything_needs_cp_codes() {
    let fake = fake(1.0);
    let backend = AkamaiBackend::new(&settings(&fake, 1.0)).unwrap();
    assert_eq!(
        backend.capabilities(),
        Capabilities::URL | Capabilities::TAG
    );
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("akamai", backend)
        .build()
        .unwrap();
    purger
        .purge([Target::prefix("/blog/").unwrap(), Target::Everything])
        .await;
    settle(&purger, Duration::from_secs(5)).await;
    assert_eq!(purger.stats()[0].unsupported, 2);
    assert!(
        fake.statuses().is_empty(),
        "nothing was sent, nothing widened"
    );

    // A CP code that is not the account's is refused, and says so.
    let mut s = settings(&fake, 1.0);
    s.cp_codes = vec!["555".parse().unwrap()];
    let err = AkamaiBackend::new(&s)
        .unwrap()
        .purge(&[Target::Everything])
        .await
        .unwrap_err();
    assert_eq!(err.cause(), &Cause::Authentication);
    assert!(err.message().contains("unauthorized cpcode"), "{err}");
}

#[tokio::test]
async fn check_confirms_the_credentials_without_purging() {
    let fake = fake(1.0);
    let backend = AkamaiBackend::new(&settings(&fake, 1.0)).unwrap();
    let found = backend.check().await.unwrap();
    assert_eq!(found.network, AkamaiNetwork::Production);
    assert_eq!(found.rate_limit, Some(100));
    assert!(fake.purges().is_empty());

    let mut s = settings(&fake, 1.0);
    s.access_token = Some("akab-wrong".parse().unwrap());
    let err = AkamaiBackend::new(&s).unwrap().check().await.unwrap_err();
    assert_eq!(err.cause(), &Cause::Authentication);
    assert!(err.message().contains("access_token"), "{err}");
}

#[tokio::test]
async fn credentials_can_come_from_an_edgerc_section() {
    let fake = fake(1.0);
    let (client, access, secret) = fake.credentials();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".edgerc");
    std::fs::write(
        &path,
        format!(
            "[default]\nhost = akab-other.purge.akamaiapis.net\nclient_token = x\naccess_token = x\nclient_secret = x\n\n\
             [ccu]\nclient_secret = {secret}\nhost = {}\naccess_token = {access}\nclient_token = {client}\n",
            fake.base_url()
        ),
    )
    .unwrap();
    let mut s = AkamaiSettings::default();
    s.edgerc = Some(path);
    s.section = Some("ccu".parse().unwrap());
    s.site_url = Some("https://www.example.com".parse().unwrap());
    AkamaiBackend::new(&s)
        .unwrap()
        .purge(&[Target::url("/a").unwrap()])
        .await
        .unwrap();
    assert_eq!(fake.statuses(), [201]);
}

/// Signs and posts one request as the backend would, with a chosen timestamp and nonce.
async fn post(
    fake: &AkamaiFake,
    body: &[u8],
    timestamp: &str,
    nonce: &str,
) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
    let (client, access, secret) = fake.credentials();
    let signer = Signer::new(&client, &access, &secret);
    let host = fake.base_url().trim_start_matches("http://").to_owned();
    let path = "/ccu/v3/invalidate/url/production";
    let auth = signer.authorization("POST", "http", &host, path, body, timestamp, nonce);
    let response = reqwest::Client::new()
        .post(format!("{}{path}", fake.base_url()))
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    (status, body, headers)
}

#[tokio::test]
async fn the_fake_refuses_stale_timestamps_reused_nonces_and_bodies_over_50_kb() {
    let fake = fake(1.0);
    let now = edgegrid::timestamp(SystemTime::now());
    let body = br#"{"objects":["https://www.example.com/a"]}"#;
    let (status, _, headers) = post(&fake, body, &now, "n-1").await;
    assert_eq!(status, 201);
    assert_eq!(headers["x-ratelimit-limit"], "100");
    assert_eq!(headers["x-ratelimit-remaining"], "99");
    assert!(headers.contains_key("x-ratelimit-remaining-objects"));

    let (status, problem, headers) = post(&fake, body, &now, "n-1").await;
    assert_eq!(status, 401);
    assert!(
        problem["detail"].as_str().unwrap().contains("nonce"),
        "{problem}"
    );
    assert!(headers.contains_key("x-ratelimit-remaining"));

    let stale = edgegrid::timestamp(SystemTime::now() - Duration::from_secs(600));
    let (status, problem, _) = post(&fake, body, &stale, "n-2").await;
    assert_eq!(
        (status, problem["detail"].as_str()),
        (401, Some("Invalid timestamp"))
    );
    assert_eq!(
        problem["type"],
        "https://problems.luna.akamaiapis.net/-/pep-authn/request-error"
    );

    let objects: Vec<String> = (0..1000)
        .map(|i| format!("https://www.example.com/{}/{i}", "x".repeat(40)))
        .collect();
    let big = serde_json::to_vec(&serde_json::json!({ "objects": objects })).unwrap();
    assert!(big.len() > AKAMAI_MAX_BODY_BYTES);
    let (status, problem, _) = post(&fake, &big, &now, "n-3").await;
    assert_eq!(status, 413);
    assert_eq!(problem["httpStatus"], 413);
    assert!(problem["supportId"].is_string());

    let (status, problem, _) = post(&fake, br#"{"objects":["/relative"]}"#, &now, "n-4").await;
    assert_eq!((status, problem["title"].as_str()), (400, Some("bad URL")));
}

#[tokio::test]
async fn a_429_without_retry_after_waits_for_the_refill_its_headers_name() {
    let speedup = 10.0;
    let fake = fake(speedup);
    // Another client leaves 100 URL tokens: a request of 800 is refused (the documented 429
    // has no Retry-After) and takes none.
    let spent = std::time::Instant::now();
    fake.spend(AkamaiObjectType::Url, 9_900);
    let backend = AkamaiBackend::new(&settings(&fake, speedup)).unwrap();
    let err = backend.purge(&urls(800, 0)).await.unwrap_err();
    // The bucket refills while the request is on its way: the wait names what was missing
    // when the fake answered, up to `since` less than when the tokens were spent.
    let since = spent.elapsed().as_secs_f64();
    let Cause::RateLimited {
        retry_after: Some(wait),
    } = err.cause()
    else {
        panic!("{err}")
    };
    // 700 tokens short at 2,000 per second.
    let expected = 700.0 / (200.0 * speedup);
    let wait = wait.as_secs_f64();
    assert!(
        wait <= expected + 0.05 && wait >= expected - since - 0.05,
        "{wait}s, expected {expected}s less up to the {since}s since the tokens were spent"
    );
    assert!(err.message().contains("URL Rate Limit exceeded"), "{err}");
    assert_eq!(fake.statuses(), [429]);

    // The engine retries no sooner, and the retry goes through.
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .retry(
            RetryPolicy::default()
                .with_backoff(Duration::from_millis(10), Duration::from_millis(20)),
        )
        .backend("akamai", backend)
        .build()
        .unwrap();
    purger.purge(urls(800, 0)).await;
    settle(&purger, Duration::from_secs(10)).await;
    assert_eq!(purger.stats()[0].purged, 800);
    assert_eq!(fake.statuses().last(), Some(&201));
}
