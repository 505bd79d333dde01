//! A local fake of Cloudflare's API v4 purge endpoints that enforces the documented contract.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::background::BackgroundServer;
use crate::cdn::{self, Bucket, Forced, json as reply, lock};
use crate::error::Result;

/// A Cloudflare plan, with the purge limits of Cloudflare's "Purge cache" page
/// (<https://developers.cloudflare.com/cache/how-to/purge-cache/>, "Purge limits", in force
/// since 2025). Written here independently of the backend's own table, so that a test of
/// the backend against this fake checks one against the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CloudflarePlanLimits {
    /// 5 requests per minute, bucket of 25, 100 items per request, 800 URLs per second.
    #[default]
    Free,
    /// 5 requests per second, bucket of 25, 100 items per request, 1500 URLs per second.
    Pro,
    /// 10 requests per second, bucket of 50, 100 items per request, 1500 URLs per second.
    Business,
    /// 50 requests per second, bucket of 500, 500 URLs or 100 other items per request, 3000
    /// URLs per second.
    Enterprise,
}

impl CloudflarePlanLimits {
    /// Purge requests per second.
    pub fn requests_per_second(self) -> f64 {
        match self {
            Self::Free => 5.0 / 60.0,
            Self::Pro => 5.0,
            Self::Business => 10.0,
            Self::Enterprise => 50.0,
        }
    }

    /// The bucket size.
    pub fn bucket(self) -> u32 {
        match self {
            Self::Free | Self::Pro => 25,
            Self::Business => 50,
            Self::Enterprise => 500,
        }
    }

    /// URLs (`files`) per request.
    pub fn files_per_request(self) -> usize {
        if self == Self::Enterprise { 500 } else { 100 }
    }

    /// Tags, hosts or prefixes per request.
    pub fn items_per_request(self) -> usize {
        100
    }

    /// URLs per second (the page says a moving average; modelled as a bucket of one
    /// second's worth).
    pub fn urls_per_second(self) -> f64 {
        match self {
            Self::Free => 800.0,
            Self::Pro | Self::Business => 1500.0,
            Self::Enterprise => 3000.0,
        }
    }
}

/// How a [`CloudflareFake`] behaves.
#[derive(Clone, Debug)]
pub struct CloudflareFakeConfig {
    /// The plan whose limits it enforces.
    pub plan: CloudflarePlanLimits,
    /// The one zone it knows (32 hex digits).
    pub zone_id: String,
    /// The zone's domain, for `GET /zones/{id}`.
    pub zone_name: String,
    /// The one API token it accepts.
    pub token: String,
    /// How much faster than real time its rate limit refills (1 = the plan as documented;
    /// 60 makes the Free plan's 5 requests per minute 5 per second). Bucket sizes and items
    /// per request are not scaled.
    pub speedup: f64,
}

impl Default for CloudflareFakeConfig {
    fn default() -> Self {
        Self {
            plan: CloudflarePlanLimits::Free,
            zone_id: "023e105f4ecef8ad9ca31a8372d0c353".to_owned(),
            zone_name: "example.com".to_owned(),
            token: "test-cloudflare-token".to_owned(),
            speedup: 1.0,
        }
    }
}

/// One accepted purge request, as recorded by a [`CloudflareFake`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloudflarePurge {
    /// `{"files": [...]}`.
    Files(Vec<String>),
    /// `{"tags": [...]}`.
    Tags(Vec<String>),
    /// `{"prefixes": [...]}`.
    Prefixes(Vec<String>),
    /// `{"hosts": [...]}`.
    Hosts(Vec<String>),
    /// `{"purge_everything": true}`.
    Everything,
}

impl CloudflarePurge {
    /// The items purged (empty for everything).
    pub fn items(&self) -> &[String] {
        match self {
            Self::Files(v) | Self::Tags(v) | Self::Prefixes(v) | Self::Hosts(v) => v,
            Self::Everything => &[],
        }
    }
}

#[derive(Debug)]
struct State {
    config: CloudflareFakeConfig,
    requests: Bucket,
    urls: Bucket,
    forced: Forced,
    purges: Vec<(Instant, CloudflarePurge)>,
    /// Every answer to `purge_cache`, by status.
    statuses: Vec<u16>,
}

/// A local fake of Cloudflare's API v4 (`POST /zones/{zone_id}/purge_cache`, `GET
/// /user/tokens/verify`, `GET /zones/{zone_id}`) on `127.0.0.1:<free port>`, enforcing the
/// documented contract, and recording what was purged:
///
/// - `Authorization: Bearer <token>`: missing or malformed is `400` with code `6003` (and
///   `6111` in its `error_chain`), another token is `403` with code `10000 Authentication
///   error`, as the API answers;
/// - the zone: anything but the configured zone ID is `400` with code `7003` ("Could not
///   route to /client/v4/zones/..., perhaps your object identifier is invalid?") and `7000`;
/// - the body: JSON, exactly one of `files` (absolute http(s) URLs), `tags`, `prefixes` (no
///   scheme), `hosts` or `purge_everything: true`, each list not empty and within the plan's
///   items per request; anything else is `400` in the `{"success": false, "errors": [...]}`
///   envelope;
/// - the rate limit: the plan's token bucket of requests and of URLs per second (run
///   [`speedup`](CloudflareFakeConfig::speedup) times faster); beyond it, `429` with
///   `Retry-After` and code `971`. Rejected requests take no token;
/// - [`force_429`](Self::force_429) answers the next purges with 429 whatever the bucket.
///
/// The error codes are the ones the API is seen answering (client projects quote them:
/// 10000, 7003/7000, 6003/6111, 971); Cloudflare documents the envelope, not a list of
/// codes. The code of a request over the items limit is not documented: the fake uses
/// `1011` for it, and the backend must not depend on that number.
///
/// ```
/// use cache_purge_hooks_testing::{CloudflareFake, CloudflareFakeConfig};
///
/// let fake = CloudflareFake::start(CloudflareFakeConfig::default())?;
/// assert!(fake.base_url().starts_with("http://127.0.0.1:"));
/// assert!(fake.base_url().ends_with("/client/v4"));
/// assert!(fake.purges().is_empty());
/// # Ok::<(), cache_purge_hooks_testing::HarnessError>(())
/// ```
#[derive(Debug)]
pub struct CloudflareFake {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _server: BackgroundServer,
}

impl CloudflareFake {
    /// Starts the fake with `config` (its buckets full).
    pub fn start(config: CloudflareFakeConfig) -> Result<CloudflareFake> {
        let plan = config.plan;
        let speedup = config.speedup.max(f64::MIN_POSITIVE);
        let state = Arc::new(Mutex::new(State {
            requests: Bucket::new(
                plan.requests_per_second() * speedup,
                f64::from(plan.bucket()),
            ),
            urls: Bucket::new(plan.urls_per_second() * speedup, plan.urls_per_second()),
            config,
            forced: Forced::default(),
            purges: Vec::new(),
            statuses: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        let (addr, server) = cdn::serve("cph-cloudflare-fake", move |request| {
            let state = Arc::clone(&shared);
            async move { handle(&state, request).await }
        })?;
        Ok(CloudflareFake {
            addr,
            state,
            _server: server,
        })
    }

    /// The `base_url` to give the backend: `http://127.0.0.1:<port>/client/v4`.
    pub fn base_url(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    /// The zone ID it knows.
    pub fn zone_id(&self) -> String {
        lock(&self.state).config.zone_id.clone()
    }

    /// The token it accepts.
    pub fn token(&self) -> String {
        lock(&self.state).config.token.clone()
    }

    /// Every purge accepted, in order.
    pub fn purges(&self) -> Vec<CloudflarePurge> {
        lock(&self.state)
            .purges
            .iter()
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// When each accepted purge arrived, in order.
    pub fn purge_times(&self) -> Vec<Instant> {
        lock(&self.state).purges.iter().map(|(t, _)| *t).collect()
    }

    /// The status of every answer to `purge_cache`, in order.
    pub fn statuses(&self) -> Vec<u16> {
        lock(&self.state).statuses.clone()
    }

    /// How many `purge_cache` requests were answered 429.
    pub fn too_many_requests(&self) -> usize {
        lock(&self.state)
            .statuses
            .iter()
            .filter(|s| **s == 429)
            .count()
    }

    /// Answers the next `count` purge requests with 429 and `Retry-After: retry_after` (in
    /// whole seconds, at least 1).
    pub fn force_429(&self, count: u32, retry_after: Duration) {
        let mut state = lock(&self.state);
        state.forced = Forced {
            count,
            retry_after_secs: cdn::retry_after_secs(retry_after),
        };
    }
}

fn envelope_error(status: StatusCode, errors: Value) -> Response<Body> {
    reply(
        status,
        &json!({ "success": false, "errors": errors, "messages": [], "result": null }),
    )
}

fn bad_request(code: u32, message: impl Into<String>) -> Response<Body> {
    envelope_error(
        StatusCode::BAD_REQUEST,
        json!([{ "code": code, "message": message.into() }]),
    )
}

/// The token check every endpoint makes first.
fn authenticate(config: &CloudflareFakeConfig, request: &Request<Body>) -> Option<Response<Body>> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match value.and_then(|v| v.strip_prefix("Bearer ")) {
        None => Some(envelope_error(
            StatusCode::BAD_REQUEST,
            json!([{
                "code": 6003,
                "message": "Invalid request headers",
                "error_chain": [{ "code": 6111, "message": "Invalid format for Authorization header" }]
            }]),
        )),
        Some(token) if token != config.token => Some(envelope_error(
            StatusCode::FORBIDDEN,
            json!([{ "code": 10000, "message": "Authentication error" }]),
        )),
        Some(_) => None,
    }
}

fn no_route(path: &str) -> Response<Body> {
    envelope_error(
        StatusCode::BAD_REQUEST,
        json!([
            { "code": 7003, "message": format!("Could not route to {path}, perhaps your object identifier is invalid?") },
            { "code": 7000, "message": "No route for that URI" }
        ]),
    )
}

async fn handle(state: &Arc<Mutex<State>>, request: Request<Body>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let config = lock(state).config.clone();
    let Some(rest) = path.strip_prefix("/client/v4/") else {
        return no_route(&path);
    };
    let segments: Vec<&str> = rest.split('/').collect();
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["user", "tokens", "verify"]) => {
            // The verify endpoint answers a bad token with 401 and code 1000.
            let token = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if token != Some(config.token.as_str()) {
                return envelope_error(
                    StatusCode::UNAUTHORIZED,
                    json!([{ "code": 1000, "message": "Invalid API Token" }]),
                );
            }
            reply(
                StatusCode::OK,
                &json!({
                    "success": true, "errors": [], "messages": [{"code": 10000, "message": "This API Token is valid and active"}],
                    "result": { "id": "f267e341f3dd4697bd3b9f71dd96247f", "status": "active" }
                }),
            )
        }
        (Method::GET, ["zones", zone]) => {
            if let Some(refused) = authenticate(&config, &request) {
                return refused;
            }
            if *zone != config.zone_id {
                return no_route(&path);
            }
            reply(
                StatusCode::OK,
                &json!({
                    "success": true, "errors": [], "messages": [],
                    "result": { "id": config.zone_id, "name": config.zone_name, "status": "active" }
                }),
            )
        }
        (Method::POST, ["zones", zone, "purge_cache"]) => {
            let zone = (*zone).to_owned();
            let response = purge(state, &config, &zone, &path, request).await;
            lock(state).statuses.push(response.status().as_u16());
            response
        }
        _ => no_route(&path),
    }
}

async fn purge(
    state: &Arc<Mutex<State>>,
    config: &CloudflareFakeConfig,
    zone: &str,
    path: &str,
    request: Request<Body>,
) -> Response<Body> {
    if let Some(refused) = authenticate(config, &request) {
        return refused;
    }
    if zone != config.zone_id {
        return no_route(path);
    }
    let json_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let Ok(bytes) = axum::body::to_bytes(request.into_body(), cdn::MAX_BODY).await else {
        return bad_request(1012, "Request body could not be read");
    };
    if !json_type {
        return envelope_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!([{ "code": 6105, "message": "Invalid Content-Type header, valid values are application/json,multipart/form-data" }]),
        );
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&bytes) else {
        return bad_request(6007, "Malformed JSON in request body");
    };
    let plan = config.plan;
    let known = ["files", "tags", "prefixes", "hosts", "purge_everything"];
    let keys: Vec<&String> = body.keys().collect();
    if keys.len() != 1 || !known.contains(&keys[0].as_str()) {
        return bad_request(
            1012,
            format!(
                "Request must contain exactly one of files, tags, prefixes, hosts or purge_everything; got {keys:?}"
            ),
        );
    }
    let key = keys[0].as_str();
    let purge = if key == "purge_everything" {
        if body[key] != Value::Bool(true) {
            return bad_request(1012, "purge_everything must be true");
        }
        CloudflarePurge::Everything
    } else {
        let Some(list) = body[key].as_array() else {
            return bad_request(1012, format!("{key} must be a list"));
        };
        let items: Vec<String> = list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        if items.len() != list.len() || items.is_empty() {
            return bad_request(1012, format!("{key} must be a non-empty list of strings"));
        }
        let max = if key == "files" {
            plan.files_per_request()
        } else {
            plan.items_per_request()
        };
        if items.len() > max {
            // Code not documented (see the type's documentation); the limit is the page's.
            return bad_request(
                1011,
                format!(
                    "You can only purge up to {max} {key} at a time on the {plan:?} plan; got {}",
                    items.len()
                ),
            );
        }
        for item in &items {
            let ok = match key {
                "files" => {
                    (item.starts_with("https://") || item.starts_with("http://"))
                        && item.split("://").nth(1).is_some_and(|r| r.contains('/'))
                }
                "prefixes" => !item.contains("://") && item.contains('/') && !item.contains('?'),
                "hosts" => !item.contains('/') && !item.is_empty(),
                _ => !item.is_empty() && item.len() <= 1024,
            };
            if !ok {
                return bad_request(1012, format!("Invalid {key} entry: {item}"));
            }
        }
        match key {
            "files" => CloudflarePurge::Files(items),
            "tags" => CloudflarePurge::Tags(items),
            "prefixes" => CloudflarePurge::Prefixes(items),
            _ => CloudflarePurge::Hosts(items),
        }
    };
    let mut state = lock(state);
    let throttled = |secs: u64| {
        let mut response = envelope_error(
            StatusCode::TOO_MANY_REQUESTS,
            json!([{ "code": 971, "message": "Please wait and consider throttling your request speed" }]),
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    };
    if state.forced.count > 0 {
        state.forced.count -= 1;
        return throttled(state.forced.retry_after_secs);
    }
    if let Err(wait) = state.requests.take(1.0) {
        return throttled(cdn::retry_after_secs(wait));
    }
    if let CloudflarePurge::Files(files) = &purge
        && let Err(wait) = state.urls.take(files.len() as f64)
    {
        state.requests.refund(1.0);
        return throttled(cdn::retry_after_secs(wait));
    }
    state.purges.push((Instant::now(), purge));
    reply(
        StatusCode::OK,
        &json!({ "success": true, "errors": [], "messages": [], "result": { "id": "9a7806061c88ada191ed06f989cc3dac" } }),
    )
}
