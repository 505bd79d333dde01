//! A local fake of Akamai's Fast Purge API v3 that enforces the documented contract, EdgeGrid
//! signatures included.
//!
//! The signature check is written here on its own (from the EdgeGrid specification), not
//! borrowed from the backend, so that a mistake in the client's signing is caught rather than
//! shared.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::background::BackgroundServer;
use crate::cdn::{self, Bucket, Forced, lock};
use crate::error::Result;

/// The largest request body Fast Purge accepts, in bytes ("Purge requests have a body size
/// limit of 50KB"; larger is `413`).
pub const AKAMAI_MAX_BODY_BYTES: usize = 50_000;

/// How an [`AkamaiFake`] behaves.
#[derive(Clone, Debug)]
pub struct AkamaiFakeConfig {
    /// The API client's `client_token`.
    pub client_token: String,
    /// Its `access_token`.
    pub access_token: String,
    /// Its `client_secret`.
    pub client_secret: String,
    /// The CP codes of the account: others are `403 unauthorized cpcode`.
    pub cp_codes: Vec<u64>,
    /// How much faster than documented the buckets refill (1.0: the real rates; bucket sizes
    /// stay the documented ones).
    pub speedup: f64,
    /// How far a request's timestamp may be from the fake's clock (default 30 s; Akamai does
    /// not publish its window).
    pub max_clock_skew: Duration,
}

impl Default for AkamaiFakeConfig {
    fn default() -> Self {
        Self {
            client_token: "akab-client-token-xxx-xxxxxxxxxxxxxxxx".to_owned(),
            access_token: "akab-access-token-xxx-xxxxxxxxxxxxxxxx".to_owned(),
            client_secret: "SxhlxuvPUUe0PA4ovSGvuzqCI8yHoakMx0G9o+3o0OI=".to_owned(),
            cp_codes: vec![12345, 67890],
            speedup: 1.0,
            max_clock_skew: Duration::from_secs(30),
        }
    }
}

/// The documented token buckets (techdocs.akamai.com/purge-cache/reference/rate-limiting):
/// (refill per second, bucket).
const REQUESTS: (f64, f64) = (50.0, 100.0);
const URLS: (f64, f64) = (200.0, 10_000.0);
const TAGS: (f64, f64) = (500.0 / 60.0, 5_000.0);
const CP_CODES: (f64, f64) = (30.0 / 60.0, 300.0);

/// The object type of a purge: the `{type}` of `/ccu/v3/{action}/{type}/{network}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AkamaiObjectType {
    /// `url` (URLs and ARLs).
    Url,
    /// `tag` (cache tags).
    Tag,
    /// `cpcode`.
    CpCode,
}

impl AkamaiObjectType {
    fn index(self) -> usize {
        match self {
            Self::Url => 0,
            Self::Tag => 1,
            Self::CpCode => 2,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Url => "URL Rate Limit exceeded",
            Self::Tag => "Tag Rate Limit exceeded",
            Self::CpCode => "CP Code Rate Limit exceeded",
        }
    }
}

/// One accepted purge, as recorded by an [`AkamaiFake`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AkamaiPurge {
    /// `invalidate` or `delete`.
    pub action: String,
    /// What the objects are.
    pub kind: AkamaiObjectType,
    /// `production` or `staging`.
    pub network: String,
    /// The objects, as strings (CP codes as their numbers).
    pub objects: Vec<String>,
    /// The size of the request body, in bytes.
    pub body_bytes: usize,
    /// When the fake accepted it.
    pub received: std::time::Instant,
}

#[derive(Debug)]
struct State {
    config: AkamaiFakeConfig,
    requests: Bucket,
    objects: [Bucket; 3],
    nonces: HashSet<String>,
    forced: Forced,
    purges: Vec<AkamaiPurge>,
    statuses: Vec<u16>,
    support: u64,
}

/// A local fake of Fast Purge API v3 on `127.0.0.1:<free port>`: `POST
/// /ccu/v3/{invalidate|delete}/{url|tag|cpcode}/{staging|production}` with `{"objects": [...]}`.
/// It enforces the documented contract and records what was purged:
///
/// - EdgeGrid: the `Authorization` header is `EG1-HMAC-SHA256 client_token=…;access_token=…;
///   timestamp=…;nonce=…;signature=…`; the fake recomputes the signature from its
///   credentials, the method, scheme (`http`), `Host`, path and the SHA-256 of the body, and
///   answers a mismatch, another client or access token, a timestamp more than
///   [`max_clock_skew`](AkamaiFakeConfig::max_clock_skew) away, and a nonce seen before with
///   `401` and the gateway's problem+json (`"type":
///   "https://problems.luna.akamaiapis.net/-/pep-authn/request-error"`, `"detail": "The
///   signature does not match"`...);
/// - the request: `POST`, `Content-Type: application/json`, a body of at most 50,000 bytes
///   (else `413`), `{"objects": [...]}` with at least one object (else `400`): absolute
///   `http(s)` URLs, cache tags of 1 to 128 visible characters, the account's CP codes
///   (others: `403 unauthorized cpcode`);
/// - the token buckets of the account, at [`speedup`](AkamaiFakeConfig::speedup) times the
///   documented refill: 100 requests at 50 per second, and URLs 10,000 at 200 per second, CP
///   codes 300 at 30 per minute, tags 5,000 at 500 per minute; a request lacking either
///   tokens is `429` (`"title": "Rate Limit exceeded"` or `"URL Rate Limit exceeded"`...,
///   with `rateLimitRemaining` and `rateLimitCurrentRequestSize`), consuming none;
/// - every answer carries `X-Ratelimit-Limit`, `X-Ratelimit-Remaining` and
///   `X-Ratelimit-Limit-Per-Second`, and purge answers `X-Ratelimit-Limit-Objects`,
///   `X-Ratelimit-Remaining-Objects` and `X-Ratelimit-Limit-Per-Second-Objects` of their
///   type; the documented 429 has no `Retry-After`;
/// - [`force_429`](Self::force_429) answers the next purges with 429 and `Retry-After`;
///   [`spend`](Self::spend) takes tokens as another client of the account would.
///
/// ```
/// use cache_purge_hooks_testing::{AkamaiFake, AkamaiFakeConfig};
///
/// let fake = AkamaiFake::start(AkamaiFakeConfig::default())?;
/// assert!(fake.base_url().starts_with("http://127.0.0.1:"));
/// assert!(fake.purges().is_empty());
/// # Ok::<(), cache_purge_hooks_testing::HarnessError>(())
/// ```
#[derive(Debug)]
pub struct AkamaiFake {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _server: BackgroundServer,
}

impl AkamaiFake {
    /// Starts the fake with `config`.
    pub fn start(config: AkamaiFakeConfig) -> Result<AkamaiFake> {
        let speedup = config.speedup.max(f64::MIN_POSITIVE);
        let bucket = |(rate, burst): (f64, f64)| Bucket::new(rate * speedup, burst);
        let state = Arc::new(Mutex::new(State {
            config,
            requests: bucket(REQUESTS),
            objects: [bucket(URLS), bucket(TAGS), bucket(CP_CODES)],
            nonces: HashSet::new(),
            forced: Forced::default(),
            purges: Vec::new(),
            statuses: Vec::new(),
            support: 0,
        }));
        let shared = Arc::clone(&state);
        let (addr, server) = cdn::serve("cph-akamai-fake", move |request| {
            let state = Arc::clone(&shared);
            async move {
                let (mut response, kind) = handle(&state, request).await;
                let mut state = lock(&state);
                state.statuses.push(response.status().as_u16());
                rate_headers(&mut state, kind, &mut response);
                response
            }
        })?;
        Ok(AkamaiFake {
            addr,
            state,
            _server: server,
        })
    }

    /// The `base_url` to give the backend: `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The credentials it accepts: `(client_token, access_token, client_secret)`.
    pub fn credentials(&self) -> (String, String, String) {
        let c = &lock(&self.state).config;
        (
            c.client_token.clone(),
            c.access_token.clone(),
            c.client_secret.clone(),
        )
    }

    /// Every purge accepted, in order.
    pub fn purges(&self) -> Vec<AkamaiPurge> {
        lock(&self.state).purges.clone()
    }

    /// The status of every answer, in order.
    pub fn statuses(&self) -> Vec<u16> {
        lock(&self.state).statuses.clone()
    }

    /// Answers the next `count` purges with 429 and `Retry-After: retry_after` (whole
    /// seconds, at least 1).
    pub fn force_429(&self, count: u32, retry_after: Duration) {
        lock(&self.state).forced = Forced {
            count,
            retry_after_secs: cdn::retry_after_secs(retry_after),
        };
    }

    /// Takes `objects` tokens of a type (and one request token), as another API client of the
    /// account purging at the same time would. Panics if the bucket lacks them.
    pub fn spend(&self, kind: AkamaiObjectType, objects: u32) {
        let mut state = lock(&self.state);
        let taken = state.requests.take(1.0).is_ok()
            && state.objects[kind.index()].take(f64::from(objects)).is_ok();
        assert!(taken, "the fake's bucket lacks {objects} tokens");
    }
}

fn problem(status: StatusCode, body: Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// A Fast Purge error (`supportId`, `title`, `httpStatus`, `detail`, `describedBy`).
fn purge_error(
    state: &Arc<Mutex<State>>,
    status: StatusCode,
    title: &str,
    detail: &str,
) -> Response<Body> {
    let id = support_id(state);
    problem(
        status,
        json!({
            "supportId": id,
            "title": title,
            "httpStatus": status.as_u16(),
            "detail": detail,
            "describedBy": format!("https://techdocs.akamai.com/purge-cache/reference/{}", status.as_u16()),
        }),
    )
}

/// The EdgeGrid gateway's 401.
fn auth_error(path: &str, detail: &str) -> Response<Body> {
    problem(
        StatusCode::UNAUTHORIZED,
        json!({
            "type": "https://problems.luna.akamaiapis.net/-/pep-authn/request-error",
            "title": "Bad request",
            "status": 401,
            "detail": detail,
            "instance": format!("/-/pep-authn/request-error{path}"),
            "method": "POST",
            "requestId": "2ce206fd",
        }),
    )
}

fn support_id(state: &Arc<Mutex<State>>) -> String {
    let mut s = lock(state);
    s.support += 1;
    format!("edcp-fake{:08}", s.support)
}

fn rate_headers(state: &mut State, kind: Option<AkamaiObjectType>, response: &mut Response<Body>) {
    let speedup = state.config.speedup.max(f64::MIN_POSITIVE);
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    };
    put("x-ratelimit-limit", format!("{}", REQUESTS.1));
    put(
        "x-ratelimit-remaining",
        format!("{}", state.requests.remaining().floor()),
    );
    put(
        "x-ratelimit-limit-per-second",
        format!("{:.2}", REQUESTS.0 * speedup),
    );
    if let Some(kind) = kind {
        let (rate, burst) = [URLS, TAGS, CP_CODES][kind.index()];
        put("x-ratelimit-limit-objects", format!("{burst}"));
        put(
            "x-ratelimit-remaining-objects",
            format!("{}", state.objects[kind.index()].remaining().floor()),
        );
        put(
            "x-ratelimit-limit-per-second-objects",
            format!("{:.2}", rate * speedup),
        );
    }
}

fn hmac_base64(key: &[u8], data: &[u8]) -> String {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(data);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks the EdgeGrid `Authorization` of a request: `Err(detail)` as the gateway words it.
fn verify(
    state: &Arc<Mutex<State>>,
    authorization: Option<&str>,
    host: &str,
    path_and_query: &str,
    body: &[u8],
) -> std::result::Result<(), &'static str> {
    let config = lock(state).config.clone();
    let Some(fields) = authorization.and_then(|a| a.strip_prefix("EG1-HMAC-SHA256 ")) else {
        return Err("Invalid authorization header");
    };
    let mut values = std::collections::HashMap::new();
    for part in fields.split(';') {
        if let Some((k, v)) = part.split_once('=') {
            values.insert(k, v);
        }
    }
    let get = |k: &str| values.get(k).copied().unwrap_or("");
    if get("client_token") != config.client_token {
        return Err("Invalid authorization client token");
    }
    if get("access_token") != config.access_token {
        return Err("Invalid authorization access token");
    }
    let timestamp = get("timestamp");
    if !timestamp_is_fresh(timestamp, config.max_clock_skew) {
        return Err("Invalid timestamp");
    }
    let nonce = get("nonce");
    if nonce.is_empty() {
        return Err("Invalid authorization nonce");
    }
    let Some(signed) = fields.rfind("signature=").map(|i| &fields[..i]) else {
        return Err("Invalid authorization header");
    };
    let prefix = format!("EG1-HMAC-SHA256 {signed}");
    // Fast Purge bodies are far below EdgeGrid's max_body of 131,072 bytes.
    let hash = if body.is_empty() {
        String::new()
    } else {
        STANDARD.encode(Sha256::digest(&body[..body.len().min(131_072)]))
    };
    let data = ["POST", "http", host, path_and_query, "", &hash, &prefix].join("\t");
    let key = hmac_base64(config.client_secret.as_bytes(), timestamp.as_bytes());
    if hmac_base64(key.as_bytes(), data.as_bytes()) != get("signature") {
        return Err("The signature does not match");
    }
    if !lock(state).nonces.insert(nonce.to_owned()) {
        return Err("Invalid authorization nonce: it was used before");
    }
    Ok(())
}

/// `yyyyMMddTHH:mm:ss+0000` within `skew` of now.
fn timestamp_is_fresh(text: &str, skew: Duration) -> bool {
    let b = text.as_bytes();
    if b.len() != 22 || b[8] != b'T' || !text.ends_with("+0000") {
        return false;
    }
    let num = |a: usize, z: usize| text.get(a..z).and_then(|s| s.parse::<i64>().ok());
    let (Some(y), Some(m), Some(d), Some(h), Some(mi), Some(s)) = (
        num(0, 4),
        num(4, 6),
        num(6, 8),
        num(9, 11),
        num(12, 14),
        num(15, 17),
    ) else {
        return false;
    };
    // Days from the civil date (proleptic Gregorian), then seconds.
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * m + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let at = days * 86_400 + h * 3600 + mi * 60 + s;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    (at - now).unsigned_abs() <= skew.as_secs()
}

async fn handle(
    state: &Arc<Mutex<State>>,
    request: Request<Body>,
) -> (Response<Body>, Option<AkamaiObjectType>) {
    let path = request.uri().path().to_owned();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or(path.clone(), |pq| pq.as_str().to_owned());
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (action, kind, network) = match segments.as_slice() {
        [
            "ccu",
            "v3",
            action @ ("invalidate" | "delete"),
            kind,
            network @ ("production" | "staging"),
        ] => {
            let kind = match *kind {
                "url" | "arl" => AkamaiObjectType::Url,
                "tag" => AkamaiObjectType::Tag,
                "cpcode" => AkamaiObjectType::CpCode,
                _ => {
                    return (
                        purge_error(
                            state,
                            StatusCode::NOT_FOUND,
                            "Not Found",
                            "no such purge type",
                        ),
                        None,
                    );
                }
            };
            ((*action).to_owned(), kind, (*network).to_owned())
        }
        _ => {
            return (
                purge_error(
                    state,
                    StatusCode::NOT_FOUND,
                    "Not Found",
                    &format!("no endpoint {path}"),
                ),
                None,
            );
        }
    };
    if request.method() != Method::POST {
        return (
            purge_error(
                state,
                StatusCode::METHOD_NOT_ALLOWED,
                "Method Not Allowed",
                "purges are POST",
            ),
            None,
        );
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let json_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let Ok(body) = axum::body::to_bytes(request.into_body(), cdn::MAX_BODY).await else {
        return (
            purge_error(
                state,
                StatusCode::BAD_REQUEST,
                "Bad Request",
                "unreadable body",
            ),
            None,
        );
    };
    if let Err(detail) = verify(
        state,
        authorization.as_deref(),
        &host,
        &path_and_query,
        &body,
    ) {
        return (auth_error(&path, detail), None);
    }
    if body.len() > AKAMAI_MAX_BODY_BYTES {
        let detail = format!(
            "The request body is {} bytes, over the limit of {AKAMAI_MAX_BODY_BYTES} bytes",
            body.len()
        );
        return (
            purge_error(
                state,
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request Entity Too Large",
                &detail,
            ),
            Some(kind),
        );
    }
    if !json_type {
        return (
            purge_error(
                state,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported Media Type",
                "expected application/json",
            ),
            Some(kind),
        );
    }
    let objects = match parse_objects(state, kind, &body) {
        Ok(objects) => objects,
        Err(response) => return (response, Some(kind)),
    };
    {
        let mut s = lock(state);
        if s.forced.count > 0 {
            s.forced.count -= 1;
            let secs = s.forced.retry_after_secs;
            drop(s);
            let mut response = purge_error(
                state,
                StatusCode::TOO_MANY_REQUESTS,
                "Rate Limit exceeded",
                "",
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return (response, Some(kind));
        }
    }
    let n = objects.len() as f64;
    let refused = {
        let mut s = lock(state);
        if s.requests.take(1.0).is_err() {
            Some((
                "Rate Limit exceeded",
                REQUESTS.1,
                s.requests.remaining(),
                1.0,
            ))
        } else if s.objects[kind.index()].take(n).is_err() {
            s.requests.refund(1.0);
            let burst = [URLS, TAGS, CP_CODES][kind.index()].1;
            Some((kind.title(), burst, s.objects[kind.index()].remaining(), n))
        } else {
            None
        }
    };
    if let Some((title, limit, remaining, size)) = refused {
        let id = support_id(state);
        let response = problem(
            StatusCode::TOO_MANY_REQUESTS,
            json!({
                "supportId": id,
                "title": title,
                "httpStatus": 429,
                "detail": "",
                "describedBy": "https://techdocs.akamai.com/purge-cache/reference/429",
                "rateLimit": limit,
                "rateLimitCurrentRequestSize": size,
                "rateLimitRemaining": remaining.floor(),
            }),
        );
        return (response, Some(kind));
    }
    lock(state).purges.push(AkamaiPurge {
        action,
        kind,
        network,
        objects,
        body_bytes: body.len(),
        received: std::time::Instant::now(),
    });
    let id = support_id(state);
    let mut response = Response::new(Body::from(
        json!({
            "httpStatus": 201,
            "detail": "Request accepted",
            "estimatedSeconds": 5,
            "purgeId": id,
            "supportId": id,
        })
        .to_string(),
    ));
    *response.status_mut() = StatusCode::CREATED;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    (response, Some(kind))
}

/// The objects of a body, checked for their type (else the answer, built once per request).
#[allow(clippy::result_large_err)]
fn parse_objects(
    state: &Arc<Mutex<State>>,
    kind: AkamaiObjectType,
    body: &[u8],
) -> std::result::Result<Vec<String>, Response<Body>> {
    let bad =
        |title: &str, detail: &str| purge_error(state, StatusCode::BAD_REQUEST, title, detail);
    let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
        return Err(bad("Bad Request", "malformed JSON body"));
    };
    let Some(list) = parsed["objects"].as_array() else {
        return Err(bad("Bad Request", "expected {\"objects\": [...]}"));
    };
    if list.is_empty() {
        return Err(bad("Bad Request", "the objects list is empty"));
    }
    let cp_codes = lock(state).config.cp_codes.clone();
    let mut objects = Vec::new();
    for object in list {
        match kind {
            AkamaiObjectType::Url => {
                let Some(url) = object.as_str() else {
                    return Err(bad("bad URL", "URLs must be strings"));
                };
                let host = url
                    .strip_prefix("https://")
                    .or_else(|| url.strip_prefix("http://"))
                    .and_then(|rest| rest.split('/').next())
                    .unwrap_or("");
                if host.is_empty() || !url.is_ascii() || url.contains(char::is_whitespace) {
                    return Err(bad(
                        "bad URL",
                        &format!(
                            "Invalid or malformed URL '{url}': an absolute http(s) URL is required"
                        ),
                    ));
                }
                objects.push(url.to_owned());
            }
            AkamaiObjectType::Tag => {
                let Some(tag) = object.as_str() else {
                    return Err(bad("bad cache tag", "cache tags must be strings"));
                };
                // Akamai's cache tag requirements: at most 128 characters, RFC 7230 token
                // characters less the ones it refuses (`:`, `/`, `=`, `@`...).
                if tag.is_empty()
                    || tag.len() > 128
                    || !tag
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'+.^_`|~-".contains(&b))
                {
                    return Err(bad(
                        "bad cache tag",
                        &format!(
                            "Invalid cache tag '{tag}': 1 to 128 letters, digits or !#$%&'+.^_`|~-"
                        ),
                    ));
                }
                objects.push(tag.to_owned());
            }
            AkamaiObjectType::CpCode => {
                let Some(code) = object.as_u64() else {
                    return Err(bad("bad CP code", "CP codes must be numbers"));
                };
                if !cp_codes.contains(&code) {
                    return Err(purge_error(
                        state,
                        StatusCode::FORBIDDEN,
                        "unauthorized cpcode",
                        &code.to_string(),
                    ));
                }
                objects.push(code.to_string());
            }
        }
    }
    Ok(objects)
}
