//! A local fake of Fastly's purge API (and of its edge's `PURGE`) that enforces the documented
//! contract.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::background::BackgroundServer;
use crate::cdn::{self, Forced, json as reply, lock};
use crate::error::Result;

/// Surrogate keys per batch purge (Fastly API reference, "Purge multiple surrogate key tags":
/// "Up to 256 surrogate keys can be purged in one batch request").
pub const FASTLY_MAX_KEYS_PER_REQUEST: usize = 256;

/// How a [`FastlyFake`] behaves.
#[derive(Clone, Debug)]
pub struct FastlyFakeConfig {
    /// The one service it knows.
    pub service_id: String,
    /// The service's name, for `GET /service/{id}`.
    pub service_name: String,
    /// The one `Fastly-Key` it accepts.
    pub token: String,
    /// Whether the token has the `purge_all` scope (default true); without it, purge-all is
    /// `403`.
    pub purge_all_scope: bool,
}

impl Default for FastlyFakeConfig {
    fn default() -> Self {
        Self {
            service_id: "SU1Z0isxPaozGVKXdv0eY".to_owned(),
            service_name: "www.example.com".to_owned(),
            token: "test-fastly-key".to_owned(),
            purge_all_scope: true,
        }
    }
}

/// One accepted purge, as recorded by a [`FastlyFake`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FastlyPurge {
    /// `PURGE` of one URL: `host/path?query` (the `Host` header and the request target).
    Url {
        /// `www.example.com/a?x=1`.
        url: String,
        /// Sent with `Fastly-Soft-Purge: 1`.
        soft: bool,
    },
    /// A batch surrogate-key purge.
    Keys {
        /// The keys, in order.
        keys: Vec<String>,
        /// Sent with `Fastly-Soft-Purge: 1`.
        soft: bool,
    },
    /// A purge-all (always hard: Fastly has no soft purge-all).
    All,
}

#[derive(Debug)]
struct State {
    config: FastlyFakeConfig,
    forced: Forced,
    purges: Vec<FastlyPurge>,
    statuses: Vec<u16>,
}

/// A local fake of Fastly on `127.0.0.1:<free port>`: the API's `POST
/// /service/{id}/purge` (batch surrogate keys, in a JSON body or a `Surrogate-Key` header),
/// `POST /service/{id}/purge_all` and `GET /service/{id}`, and the edge's `PURGE <url>` (any
/// other path, the site in `Host`). It enforces the documented contract and records what was
/// purged:
///
/// - `Fastly-Key` on every request (the service uses authenticated purging): missing or
///   another key is `401` `{"msg": "Provided credentials are missing or invalid"}`;
///   purge-all without the `purge_all` scope is `403`;
/// - another service ID is `404` `{"msg": "Record not found", "detail": "Cannot find service '...'"}`;
/// - more than 256 keys, or none, is `400` `{"msg": "Bad request", "detail": ...}`;
/// - `Fastly-Soft-Purge: 1` is recorded on URL and key purges, and ignored on purge-all;
/// - [`force_429`](Self::force_429) answers the next purges with 429 and `Retry-After`.
///
/// ```
/// use cache_purge_hooks_testing::{FastlyFake, FastlyFakeConfig};
///
/// let fake = FastlyFake::start(FastlyFakeConfig::default())?;
/// assert!(fake.base_url().starts_with("http://127.0.0.1:"));
/// assert!(fake.purges().is_empty());
/// # Ok::<(), cache_purge_hooks_testing::HarnessError>(())
/// ```
#[derive(Debug)]
pub struct FastlyFake {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _server: BackgroundServer,
}

impl FastlyFake {
    /// Starts the fake with `config`.
    pub fn start(config: FastlyFakeConfig) -> Result<FastlyFake> {
        let state = Arc::new(Mutex::new(State {
            config,
            forced: Forced::default(),
            purges: Vec::new(),
            statuses: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        let (addr, server) = cdn::serve("cph-fastly-fake", move |request| {
            let state = Arc::clone(&shared);
            async move {
                let response = handle(&state, request).await;
                lock(&state).statuses.push(response.status().as_u16());
                response
            }
        })?;
        Ok(FastlyFake {
            addr,
            state,
            _server: server,
        })
    }

    /// The `base_url` (and `edge_url`) to give the backend: `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The service ID it knows.
    pub fn service_id(&self) -> String {
        lock(&self.state).config.service_id.clone()
    }

    /// The key it accepts.
    pub fn token(&self) -> String {
        lock(&self.state).config.token.clone()
    }

    /// Every purge accepted, in order.
    pub fn purges(&self) -> Vec<FastlyPurge> {
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
}

fn error(status: StatusCode, msg: &str, detail: &str) -> Response<Body> {
    reply(status, &json!({ "msg": msg, "detail": detail }))
}

fn soft(headers: &HeaderMap) -> bool {
    headers
        .get("fastly-soft-purge")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "1")
}

fn forced(state: &Arc<Mutex<State>>) -> Option<Response<Body>> {
    let mut state = lock(state);
    if state.forced.count == 0 {
        return None;
    }
    state.forced.count -= 1;
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests",
        "rate limit exceeded",
    );
    if let Ok(v) = HeaderValue::from_str(&state.forced.retry_after_secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Some(response)
}

async fn handle(state: &Arc<Mutex<State>>, request: Request<Body>) -> Response<Body> {
    let config = lock(state).config.clone();
    let key = request
        .headers()
        .get("fastly-key")
        .and_then(|v| v.to_str().ok());
    if key != Some(config.token.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Provided credentials are missing or invalid",
            "",
        );
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let is_purge_method = method.as_str() == "PURGE";
    match (segments.as_slice(), is_purge_method) {
        (_, true) => {
            let Some(host) = request
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
            else {
                return error(StatusCode::BAD_REQUEST, "Bad request", "no Host header");
            };
            if let Some(limited) = forced(state) {
                return limited;
            }
            let target = request
                .uri()
                .path_and_query()
                .map_or(path.as_str(), |pq| pq.as_str());
            let purge = FastlyPurge::Url {
                url: format!("{host}{target}"),
                soft: soft(request.headers()),
            };
            lock(state).purges.push(purge);
            reply(
                StatusCode::OK,
                &json!({ "status": "ok", "id": "108-1391560174-974124" }),
            )
        }
        (["service", id, rest @ ..], false) => {
            if *id != config.service_id {
                return error(
                    StatusCode::NOT_FOUND,
                    "Record not found",
                    &format!("Cannot find service '{id}'"),
                );
            }
            match (method, rest) {
                (Method::GET, []) => reply(
                    StatusCode::OK,
                    &json!({ "id": config.service_id, "name": config.service_name }),
                ),
                (Method::POST, ["purge"]) => purge_keys(state, request).await,
                (Method::POST, ["purge_all"]) => {
                    if !config.purge_all_scope {
                        return error(
                            StatusCode::FORBIDDEN,
                            "You are not authorized to perform this action",
                            "the token lacks the purge_all scope",
                        );
                    }
                    if let Some(limited) = forced(state) {
                        return limited;
                    }
                    lock(state).purges.push(FastlyPurge::All);
                    reply(StatusCode::OK, &json!({ "status": "ok" }))
                }
                _ => error(
                    StatusCode::NOT_FOUND,
                    "Record not found",
                    "no such endpoint",
                ),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "Record not found",
            "no such endpoint",
        ),
    }
}

async fn purge_keys(state: &Arc<Mutex<State>>, request: Request<Body>) -> Response<Body> {
    let soft = soft(request.headers());
    let header_keys: Option<Vec<String>> = request
        .headers()
        .get("surrogate-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split_whitespace().map(str::to_owned).collect());
    let Ok(bytes) = axum::body::to_bytes(request.into_body(), cdn::MAX_BODY).await else {
        return error(StatusCode::BAD_REQUEST, "Bad request", "unreadable body");
    };
    let keys = match header_keys {
        Some(keys) => keys,
        None => {
            let Ok(body) = serde_json::from_slice::<Value>(&bytes) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    "malformed JSON body",
                );
            };
            let Some(list) = body["surrogate_keys"].as_array() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    "expected {\"surrogate_keys\": [...]}",
                );
            };
            let keys: Vec<String> = list
                .iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect();
            if keys.len() != list.len() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    "surrogate_keys must be strings",
                );
            }
            keys
        }
    };
    if keys.is_empty() || keys.len() > FASTLY_MAX_KEYS_PER_REQUEST {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad request",
            &format!(
                "between 1 and {FASTLY_MAX_KEYS_PER_REQUEST} surrogate keys per request; got {}",
                keys.len()
            ),
        );
    }
    if let Some(bad) = keys
        .iter()
        .find(|k| k.len() > 1024 || k.bytes().any(|b| !b.is_ascii_graphic()))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad request",
            &format!("invalid surrogate key {bad:?}"),
        );
    }
    if let Some(limited) = forced(state) {
        return limited;
    }
    let ids: Map<String, Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), json!(format!("108-1391560174-{i}"))))
        .collect();
    lock(state).purges.push(FastlyPurge::Keys { keys, soft });
    reply(StatusCode::OK, &Value::Object(ids))
}
