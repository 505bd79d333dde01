//! The CDN fakes enforce their provider's documented contract, whoever the client: raw
//! requests that break a rule get the provider's error, in its body shape.

use std::time::Duration;

use cache_purge_hooks_testing::{
    AkamaiFake, AkamaiFakeConfig, CloudflareFake, CloudflareFakeConfig, CloudflarePlanLimits,
    CloudflarePurge, FastlyFake, FastlyFakeConfig, FastlyPurge,
};
use serde_json::{Value, json};

async fn send(request: reqwest::RequestBuilder) -> (u16, Option<String>, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, retry_after, body)
}

fn codes(body: &Value) -> Vec<i64> {
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn the_cloudflare_fake_refuses_what_the_api_refuses_in_its_error_envelope() {
    let fake = CloudflareFake::start(CloudflareFakeConfig::default()).unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/zones/{}/purge_cache", fake.base_url(), fake.zone_id());
    let bearer = format!("Bearer {}", fake.token());
    let post = |body: Value| {
        client
            .post(&url)
            .header("authorization", &bearer)
            .header("content-type", "application/json")
            .body(body.to_string())
    };

    let (status, _, body) = send(client.post(&url).body("{}")).await;
    assert_eq!((status, codes(&body)), (400, vec![6003]), "{body}");
    assert_eq!(body["success"], false);
    let (status, _, body) = send(
        client
            .post(&url)
            .header("authorization", "Bearer nope")
            .header("content-type", "application/json")
            .body("{\"purge_everything\":true}"),
    )
    .await;
    assert_eq!((status, codes(&body)), (403, vec![10000]), "{body}");
    let other_zone = format!(
        "{}/zones/ffffffffffffffffffffffffffffffff/purge_cache",
        fake.base_url()
    );
    let (status, _, body) = send(
        client
            .post(&other_zone)
            .header("authorization", &bearer)
            .header("content-type", "application/json")
            .body("{\"purge_everything\":true}"),
    )
    .await;
    assert_eq!((status, codes(&body)), (400, vec![7003, 7000]), "{body}");

    // One kind per request, absolute URLs, within the plan's items per request.
    for bad in [
        json!({ "files": ["https://www.example.com/a"], "tags": ["t"] }),
        json!({ "files": ["/a"] }),
        json!({ "prefixes": ["https://www.example.com/a"] }),
        json!({ "tags": [] }),
        json!({ "purge_everything": false }),
        json!({ "tags": (0..101).map(|i| format!("t{i}")).collect::<Vec<_>>() }),
    ] {
        let (status, _, body) = send(post(bad.clone())).await;
        assert_eq!(status, 400, "{bad} -> {body}");
        assert_eq!(body["success"], false, "{body}");
    }
    let (_, _, body) = send(post(
        json!({ "files": (0..101).map(|i| format!("https://www.example.com/{i}")).collect::<Vec<_>>() }),
    ))
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("up to 100 files"),
        "{body}"
    );
    assert!(fake.purges().is_empty(), "nothing refused was recorded");

    let (status, _, body) = send(post(json!({ "tags": ["a", "b"] }))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(
        fake.purges(),
        [CloudflarePurge::Tags(vec!["a".into(), "b".into()])]
    );
}

#[tokio::test]
async fn the_cloudflare_fake_answers_429_with_retry_after_beyond_the_plans_bucket() {
    // Free: a bucket of 25, then one request per 12 seconds.
    let fake = CloudflareFake::start(CloudflareFakeConfig {
        plan: CloudflarePlanLimits::Free,
        ..CloudflareFakeConfig::default()
    })
    .unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/zones/{}/purge_cache", fake.base_url(), fake.zone_id());
    let mut statuses = Vec::new();
    let mut last = (0, None, Value::Null);
    for i in 0..26 {
        last = send(
            client
                .post(&url)
                .header("authorization", format!("Bearer {}", fake.token()))
                .header("content-type", "application/json")
                .body(json!({ "tags": [format!("t{i}")] }).to_string()),
        )
        .await;
        statuses.push(last.0);
    }
    assert_eq!(&statuses[..25], &[200; 25]);
    assert_eq!(statuses[25], 429);
    let retry_after: u64 = last.1.expect("Retry-After").parse().unwrap();
    assert!((11..=12).contains(&retry_after), "{retry_after}");
    assert_eq!(codes(&last.2), [971]);
    assert_eq!(fake.purges().len(), 25);

    fake.force_429(1, Duration::from_secs(3));
    let (status, retry_after, _) = send(
        client
            .post(&url)
            .header("authorization", format!("Bearer {}", fake.token()))
            .header("content-type", "application/json")
            .body("{\"purge_everything\":true}"),
    )
    .await;
    assert_eq!((status, retry_after.as_deref()), (429, Some("3")));
}

#[tokio::test]
async fn the_fastly_fake_checks_the_key_the_service_and_256_keys_per_request() {
    let fake = FastlyFake::start(FastlyFakeConfig::default()).unwrap();
    let client = reqwest::Client::new();
    let purge = format!("{}/service/{}/purge", fake.base_url(), fake.service_id());

    let (status, _, body) = send(client.post(&purge).body("{\"surrogate_keys\":[\"a\"]}")).await;
    assert_eq!(status, 401);
    assert_eq!(body["msg"], "Provided credentials are missing or invalid");
    let (status, _, body) = send(
        client
            .post(format!("{}/service/Nope/purge", fake.base_url()))
            .header("fastly-key", fake.token())
            .body("{\"surrogate_keys\":[\"a\"]}"),
    )
    .await;
    assert_eq!(
        (status, body["msg"].as_str()),
        (404, Some("Record not found"))
    );
    let keys: Vec<String> = (0..257).map(|i| format!("k{i}")).collect();
    let (status, _, body) = send(
        client
            .post(&purge)
            .header("fastly-key", fake.token())
            .body(json!({ "surrogate_keys": keys }).to_string()),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("256"), "{body}");

    // The Surrogate-Key header form, soft.
    let (status, _, body) = send(
        client
            .post(&purge)
            .header("fastly-key", fake.token())
            .header("surrogate-key", "a b")
            .header("fastly-soft-purge", "1"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body["a"].is_string() && body["b"].is_string(), "{body}");
    // Soft is ignored on purge-all.
    let (status, _, _) = send(
        client
            .post(format!(
                "{}/service/{}/purge_all",
                fake.base_url(),
                fake.service_id()
            ))
            .header("fastly-key", fake.token())
            .header("fastly-soft-purge", "1"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        fake.purges(),
        [
            FastlyPurge::Keys {
                keys: vec!["a".into(), "b".into()],
                soft: true
            },
            FastlyPurge::All
        ]
    );
}

#[tokio::test]
async fn the_akamai_fake_refuses_unsigned_and_mis_signed_requests_with_the_gateways_401() {
    let fake = AkamaiFake::start(AkamaiFakeConfig::default()).unwrap();
    let (client_token, access_token, _) = fake.credentials();
    let client = reqwest::Client::new();
    let url = format!("{}/ccu/v3/invalidate/url/production", fake.base_url());
    let body = r#"{"objects":["https://www.example.com/a"]}"#;
    let post = |authorization: String| {
        client
            .post(&url)
            .header("content-type", "application/json")
            .header("authorization", authorization)
            .body(body)
    };
    let timestamp = "20140321T19:34:21+0000";
    for (authorization, detail) in [
        ("Bearer abc".to_owned(), "Invalid authorization header"),
        (
            format!(
                "EG1-HMAC-SHA256 client_token=akab-other;access_token={access_token};timestamp={timestamp};nonce=n;signature=x"
            ),
            "Invalid authorization client token",
        ),
        (
            format!(
                "EG1-HMAC-SHA256 client_token={client_token};access_token=akab-other;timestamp={timestamp};nonce=n;signature=x"
            ),
            "Invalid authorization access token",
        ),
        // A timestamp from 2014: stale.
        (
            format!(
                "EG1-HMAC-SHA256 client_token={client_token};access_token={access_token};timestamp={timestamp};nonce=n;signature=x"
            ),
            "Invalid timestamp",
        ),
    ] {
        let response = post(authorization).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
        // Every answer carries the request bucket's headers.
        assert_eq!(response.headers()["x-ratelimit-limit"], "100");
        assert!(response.headers().contains_key("x-ratelimit-remaining"));
        let problem: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(problem["detail"], detail, "{problem}");
        assert_eq!(
            problem["type"],
            "https://problems.luna.akamaiapis.net/-/pep-authn/request-error"
        );
    }
    // The path is checked before anything else: the action, the type, the network.
    for path in [
        "/ccu/v3/refresh/url/production",
        "/ccu/v3/invalidate/prefix/production",
        "/ccu/v3/invalidate/url/qa",
        "/ccu/v2/queues/default",
    ] {
        let (status, _, problem) = send(client.post(format!("{}{path}", fake.base_url()))).await;
        assert_eq!(
            (status, problem["httpStatus"].as_u64()),
            (404, Some(404)),
            "{path}"
        );
    }
    let (status, _, _) = send(client.get(&url)).await;
    assert_eq!(status, 405);
    assert!(fake.purges().is_empty());
}
