//! The CDN fakes enforce their provider's documented contract, whoever the client: raw
//! requests that break a rule get the provider's error, in its body shape.

use std::time::Duration;

use cache_purge_hooks_testing::{
    AkamaiFake, AkamaiFakeConfig, CloudFrontFake, CloudFrontFakeConfig, CloudflareFake,
    CloudflareFakeConfig, CloudflarePlanLimits, CloudflarePurge, FastlyFake, FastlyFakeConfig,
    FastlyPurge,
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

/// A request signed with SigV4 for `region`/`service` with this secret, as any AWS client
/// would sign it (the `aws-sigv4` crate).
fn aws_signed(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    body: &str,
    secret: &str,
    region: &str,
) -> reqwest::RequestBuilder {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let identity =
        aws_credential_types::Credentials::new("AKIAIOSFODNN7EXAMPLE", secret, None, None, "test")
            .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("cloudfront")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let headers = [("content-type", "application/xml")];
    let signable = SignableRequest::new(
        method,
        url,
        headers.into_iter(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut request = client
        .request(method.parse().unwrap(), url)
        .header("content-type", "application/xml")
        .body(body.to_owned());
    for (name, value) in instructions.headers() {
        request = request.header(name, value);
    }
    request
}

fn batch(reference: &str, quantity: usize, paths: &[String]) -> String {
    let items: String = paths.iter().map(|p| format!("<Path>{p}</Path>")).collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><InvalidationBatch xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\">\
         <CallerReference>{reference}</CallerReference><Paths><Quantity>{quantity}</Quantity><Items>{items}</Items></Paths></InvalidationBatch>"
    )
}

async fn aws_send(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn code(body: &str) -> &str {
    body.split("<Code>")
        .nth(1)
        .and_then(|rest| rest.split("</Code>").next())
        .unwrap_or("")
}

#[tokio::test]
async fn the_cloudfront_fake_verifies_signatures_and_the_invalidation_batch() {
    let fake = CloudFrontFake::start(CloudFrontFakeConfig {
        completes_after: None,
        ..CloudFrontFakeConfig::default()
    })
    .unwrap();
    let secret = fake.secret_access_key();
    let client = reqwest::Client::new();
    let url = format!(
        "{}/2020-05-31/distribution/{}/invalidation",
        fake.base_url(),
        fake.distribution_id()
    );
    let one = vec!["/a".to_owned()];
    let post = |body: &str| aws_signed(&client, "POST", &url, body, &secret, "us-east-1");

    // Signatures: none, another secret, another region, a body changed after signing.
    let (status, body) = aws_send(client.post(&url).body(batch("r0", 1, &one))).await;
    assert_eq!(
        (status, code(&body)),
        (403, "MissingAuthenticationToken"),
        "{body}"
    );
    let (status, body) = aws_send(aws_signed(
        &client,
        "POST",
        &url,
        &batch("r0", 1, &one),
        "wrong",
        "us-east-1",
    ))
    .await;
    assert_eq!(
        (status, code(&body)),
        (403, "SignatureDoesNotMatch"),
        "{body}"
    );
    assert!(body.contains("<Type>Sender</Type>"), "{body}");
    let (status, body) = aws_send(aws_signed(
        &client,
        "POST",
        &url,
        &batch("r0", 1, &one),
        &secret,
        "eu-west-1",
    ))
    .await;
    assert_eq!(
        (status, code(&body)),
        (403, "SignatureDoesNotMatch"),
        "{body}"
    );
    let tampered = post(&batch("r0", 1, &one)).body(batch("r0", 1, &["/b".to_owned()]));
    let (status, body) = aws_send(tampered).await;
    assert_eq!(
        (status, code(&body)),
        (403, "SignatureDoesNotMatch"),
        "{body}"
    );

    // The batch's shape.
    let (status, body) = aws_send(post(&batch("r1", 2, &one))).await;
    assert_eq!(
        (status, code(&body)),
        (400, "InconsistentQuantities"),
        "{body}"
    );
    let (status, body) = aws_send(post(&batch("r1", 1, &["/a*b".to_owned()]))).await;
    assert_eq!((status, code(&body)), (400, "InvalidArgument"), "{body}");
    let (status, body) = aws_send(post(&batch("r1", 1, &["a".to_owned()]))).await;
    assert_eq!((status, code(&body)), (400, "InvalidArgument"), "{body}");
    let (status, body) = aws_send(post("<Nope/>")).await;
    assert_eq!((status, code(&body)), (400, "InvalidArgument"), "{body}");
    let (status, body) = aws_send(post("")).await;
    assert_eq!((status, code(&body)), (400, "MissingBody"), "{body}");

    // Limits: 3,000 paths or 15 wildcards in one batch is the most; in progress likewise.
    let many: Vec<String> = (0..3001).map(|i| format!("/p/{i}")).collect();
    let (status, body) = aws_send(post(&batch("r2", many.len(), &many))).await;
    assert_eq!((status, code(&body)), (413, "BatchTooLarge"), "{body}");
    let wild: Vec<String> = (0..16).map(|i| format!("/w/{i}/*")).collect();
    let (status, body) = aws_send(post(&batch("r2", wild.len(), &wild))).await;
    assert_eq!((status, code(&body)), (413, "BatchTooLarge"), "{body}");
    let (status, body) = aws_send(post(&batch("r3", 3000, &many[..3000]))).await;
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("<Status>InProgress</Status>"), "{body}");
    let (status, body) = aws_send(post(&batch("r4", 1, &one))).await;
    assert_eq!(
        (status, code(&body)),
        (400, "TooManyInvalidationsInProgress"),
        "{body}"
    );
    let (status, body) = aws_send(post(&batch("r4", 15, &wild[..15]))).await;
    assert_eq!(status, 201, "wildcards are counted apart: {body}");
    let (status, body) = aws_send(post(&batch("r5", 1, &["/z/*".to_owned()]))).await;
    assert_eq!(
        (status, code(&body)),
        (400, "TooManyInvalidationsInProgress"),
        "{body}"
    );

    // The same caller reference: the same paths get the first invalidation back, others 409.
    let (status, body) = aws_send(post(&batch("r4", 15, &wild[..15]))).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = aws_send(post(&batch("r4", 1, &one))).await;
    assert_eq!(
        (status, code(&body)),
        (409, "InvalidationBatchAlreadyExists"),
        "{body}"
    );
    assert_eq!(fake.invalidations().len(), 2);

    // Completed ones free the limits; GetInvalidation says so.
    fake.complete_all();
    let id = fake.invalidations()[0].id.clone();
    let get = aws_signed(
        &client,
        "GET",
        &format!("{url}/{id}"),
        "",
        &secret,
        "us-east-1",
    );
    let (status, body) = aws_send(get).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<Status>Completed</Status>"), "{body}");
    let (status, _) = aws_send(post(&batch("r6", 1, &one))).await;
    assert_eq!(status, 201);

    // Another distribution; throttling.
    let other = url.replace(&fake.distribution_id(), "E2WRONGEXAMPLE");
    let (status, body) = aws_send(aws_signed(
        &client,
        "POST",
        &other,
        &batch("r7", 1, &one),
        &secret,
        "us-east-1",
    ))
    .await;
    assert_eq!((status, code(&body)), (404, "NoSuchDistribution"), "{body}");
    fake.throttle(1);
    let (status, body) = aws_send(post(&batch("r8", 1, &one))).await;
    assert_eq!((status, code(&body)), (400, "Throttling"), "{body}");
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
