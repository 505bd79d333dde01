//! The Fastly backend itself (feature `fastly`); see the [module documentation](super).

use std::fmt;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use reqwest::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use super::settings::{FastlySettings, ServiceId};
use crate::backend::cloudflare::settings::SiteUrl;
use crate::backend::{
    Backend, Capabilities, Cause, Failures, PurgeError, RateLimit, SetupError, http_client,
};
use crate::settings::types::BaseUrl;
use crate::target::{PurgeUrl, Target};

/// Surrogate keys per batch purge request (Fastly API reference, "Purge multiple surrogate
/// key tags": "Up to 256 surrogate keys can be purged in one batch request").
pub(crate) const MAX_KEYS_PER_REQUEST: usize = 256;

const FASTLY_KEY: HeaderName = HeaderName::from_static("fastly-key");
const FASTLY_SOFT_PURGE: HeaderName = HeaderName::from_static("fastly-soft-purge");
const FASTLY_RATELIMIT_RESET: HeaderName = HeaderName::from_static("fastly-ratelimit-reset");

/// Purges a Fastly service (see the [module documentation](super)).
///
/// ```
/// use cache_purge_hooks_engine::backend::{Backend, Capabilities, FastlyBackend};
/// use cache_purge_hooks_engine::settings::{BackendSettings, Settings};
///
/// let settings = Settings::from_toml_str(
///     "[backends.cdn]\nkind = \"fastly\"\nservice_id = \"SU1Z0isxPaozGVKXdv0eY\"\n\
///      api_token = \"key\"\nsoft = true\nsite_url = \"https://www.example.com\"\n",
/// )
/// .unwrap();
/// let BackendSettings::Fastly(f) = &settings.backends["cdn"].settings else { unreachable!() };
/// let backend = FastlyBackend::new(f).unwrap();
/// assert_eq!(
///     backend.capabilities(),
///     Capabilities::URL | Capabilities::TAG | Capabilities::EVERYTHING
/// );
/// assert_eq!(backend.max_batch(), 256);
/// ```
pub struct FastlyBackend {
    client: Client,
    /// `{base_url}/service/{service_id}`.
    service_url: String,
    service: ServiceId,
    key: HeaderValue,
    soft: bool,
    site: Option<SiteUrl>,
    edge: Option<BaseUrl>,
    concurrency: usize,
    limit: Option<RateLimit>,
    /// What errors of the API name: its host.
    server: String,
}

impl fmt::Debug for FastlyBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastlyBackend")
            .field("service_url", &self.service_url)
            .field("api_token", &"<redacted>")
            .field("soft", &self.soft)
            .field("site", &self.site)
            .field("edge", &self.edge)
            .field("limit", &self.limit)
            .finish()
    }
}

/// What [`FastlyBackend::check`] found: the service the token can see.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FastlyService {
    /// The service's name.
    pub name: String,
}

/// One request of a batch.
enum Request {
    Url(Target, String, String),
    Keys(Vec<Target>),
    All(Vec<Target>),
}

impl Request {
    fn targets(&self) -> Vec<Target> {
        match self {
            Request::Url(t, _, _) => vec![t.clone()],
            Request::Keys(ts) | Request::All(ts) => ts.clone(),
        }
    }
}

fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| u.port().map_or(h.to_owned(), |p| format!("{h}:{p}")))
        })
        .unwrap_or_else(|| url.to_owned())
}

impl FastlyBackend {
    /// Builds the client. Fails when `service_id` or `api_token` is missing (the loader's own
    /// check, for settings built in code).
    pub fn new(settings: &FastlySettings) -> Result<Self, SetupError> {
        settings.check()?;
        let (service, token) = settings.required()?;
        let mut key = HeaderValue::from_str(token.expose()).map_err(|_| SetupError::Invalid {
            setting: "api_token",
            problem: "not a valid HTTP header value".to_owned(),
        })?;
        key.set_sensitive(true);
        let concurrency = settings.concurrency.get();
        let limit = settings.rate.map(|rate| {
            let burst = settings
                .burst
                .map_or_else(|| (rate.per_second().ceil() as u32).max(1), |b| b.get());
            RateLimit::new(rate, burst)
        });
        Ok(Self {
            client: http_client::client(settings.timeout, concurrency)?,
            service_url: format!("{}/service/{service}", settings.base_url),
            service: service.clone(),
            key,
            soft: settings.soft,
            site: settings.site_url.clone(),
            edge: settings.edge_url.clone(),
            concurrency,
            limit,
            server: host_of(settings.base_url.as_str()),
        })
    }

    /// Checks the token and the service, as `cache-purge check` does (`GET
    /// /service/{service_id}`). Purges nothing.
    pub async fn check(&self) -> Result<FastlyService, PurgeError> {
        let response = self
            .client
            .get(&self.service_url)
            .header(FASTLY_KEY, self.key.clone())
            .send()
            .await
            .map_err(|e| http_client::transport_error(&self.server, e))?;
        let status = response.status();
        let retry_after = retry_after(&response);
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            return Ok(FastlyService {
                name: parsed["name"].as_str().unwrap_or("").to_owned(),
            });
        }
        Err(self.api_error(&self.server, status, retry_after, &text, true))
    }

    fn absolute(&self, url: &PurgeUrl) -> Result<String, String> {
        if url.is_absolute() {
            return Ok(url.as_str().to_owned());
        }
        match &self.site {
            Some(site) => Ok(format!("{}{}", site.as_str(), url.path_and_query())),
            None => Err(format!(
                "cannot purge the path {url} without site_url: Fastly purges absolute URLs (set site_url = \"https://www.example.com\")"
            )),
        }
    }

    fn requests(&self, batch: &[Target], failures: &mut Failures<'_>) -> Vec<Request> {
        if batch.contains(&Target::Everything) {
            if self.soft {
                tracing::debug!(
                    target: "cache_purge_hooks",
                    service = %self.service,
                    "purge-all is always hard at Fastly, soft = true or not"
                );
            }
            return vec![Request::All(batch.to_vec())];
        }
        let mut requests = Vec::new();
        let mut keys = Vec::new();
        for target in batch {
            match target {
                Target::Url(url) => match self.absolute(url) {
                    Ok(absolute) => {
                        let (to, host) = match &self.edge {
                            // To another address, with the URL's host in `Host`.
                            Some(edge) => (
                                format!("{}{}", edge.as_str(), url.path_and_query()),
                                url.host()
                                    .map(str::to_owned)
                                    .or_else(|| self.site.as_ref().map(|s| s.host().to_owned()))
                                    .unwrap_or_default(),
                            ),
                            None => (absolute.clone(), String::new()),
                        };
                        requests.push(Request::Url(target.clone(), to, host));
                    }
                    Err(message) => failures.push(
                        PurgeError::new(Cause::Misconfigured, message).only(vec![target.clone()]),
                    ),
                },
                Target::Tag(_) => keys.push(target.clone()),
                other => failures.push(
                    PurgeError::new(
                        Cause::Misconfigured,
                        format!(
                            "Fastly cannot purge {other}: no prefix purge (tag the pages instead)"
                        ),
                    )
                    .only(vec![other.clone()]),
                ),
            }
        }
        for chunk in keys.chunks(MAX_KEYS_PER_REQUEST) {
            requests.push(Request::Keys(chunk.to_vec()));
        }
        requests
    }

    async fn send(&self, request: &Request) -> Result<(), PurgeError> {
        if let Some(limit) = &self.limit {
            limit.acquire(1).await;
        }
        let soft = self.soft.then(|| HeaderValue::from_static("1"));
        let (builder, server, service_endpoint) = match request {
            Request::Url(_, to, host) => {
                let method = Method::from_bytes(b"PURGE")
                    .map_err(|e| PurgeError::new(Cause::Internal, e.to_string()))?;
                let mut b = self.client.request(method, to.as_str());
                if !host.is_empty() {
                    let value = HeaderValue::from_str(host).map_err(|_| {
                        PurgeError::new(
                            Cause::Misconfigured,
                            format!("`{host}` is not a valid Host header"),
                        )
                    })?;
                    b = b.header(HOST, value);
                }
                if let Some(soft) = &soft {
                    b = b.header(FASTLY_SOFT_PURGE, soft.clone());
                }
                (b, host_of(to), false)
            }
            Request::Keys(targets) => {
                let keys: Vec<String> = targets
                    .iter()
                    .map(|t| match t {
                        Target::Tag(tag) => tag.as_str().to_owned(),
                        other => other.to_string(),
                    })
                    .collect();
                let body = serde_json::to_vec(&json!({ "surrogate_keys": keys }))
                    .map_err(|e| PurgeError::new(Cause::Internal, e.to_string()))?;
                let mut b = self
                    .client
                    .post(format!("{}/purge", self.service_url))
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(body);
                if let Some(soft) = &soft {
                    b = b.header(FASTLY_SOFT_PURGE, soft.clone());
                }
                (b, self.server.clone(), true)
            }
            Request::All(_) => (
                self.client.post(format!("{}/purge_all", self.service_url)),
                self.server.clone(),
                true,
            ),
        };
        let response = builder
            .header(FASTLY_KEY, self.key.clone())
            .send()
            .await
            .map_err(|e| http_client::transport_error(&server, e))?;
        let status = response.status();
        let wait = retry_after(&response);
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(());
        }
        let error = self.api_error(&server, status, wait, &text, service_endpoint);
        if let (
            Some(limit),
            Cause::RateLimited {
                retry_after: Some(wait),
            },
        ) = (&self.limit, error.cause())
        {
            limit.pause(*wait);
        }
        Err(error)
    }

    fn api_error(
        &self,
        server: &str,
        status: StatusCode,
        retry_after: Option<Duration>,
        text: &str,
        service_endpoint: bool,
    ) -> PurgeError {
        let parsed: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let quoted = match (parsed["msg"].as_str(), parsed["detail"].as_str()) {
            (Some(msg), Some(detail)) if !detail.is_empty() => format!("{msg}: {detail}"),
            (Some(msg), _) => msg.to_owned(),
            _ => {
                let cut: String = text.trim().chars().take(300).collect();
                if cut.is_empty() {
                    "no body".to_owned()
                } else {
                    cut.replace(['\r', '\n'], " ")
                }
            }
        };
        let service = &self.service;
        let (cause, message) = match status {
            StatusCode::TOO_MANY_REQUESTS => (
                Cause::RateLimited { retry_after },
                format!("answered {status}: {quoted}"),
            ),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
                Cause::Authentication,
                format!(
                    "answered {status}: {quoted}: Fastly refused the API token; check api_token, and that it has the \
                     purge_select scope (purge_all to purge everything) on service {service}"
                ),
            ),
            StatusCode::NOT_FOUND if service_endpoint => (
                Cause::Misconfigured,
                format!(
                    "answered {status}: {quoted}: there is no service {service} for this token; check service_id"
                ),
            ),
            s if s.is_server_error() => (
                Cause::Status(s.as_u16()),
                format!("answered {status}: {quoted}"),
            ),
            _ => (Cause::Refused, format!("answered {status}: {quoted}")),
        };
        PurgeError::new(cause, message).on_server(server)
    }
}

/// The wait a 429 asks for: `Retry-After`, else `Fastly-RateLimit-Reset` (a Unix time).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let headers = response.headers();
    let now = SystemTime::now();
    if let Some(v) = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()) {
        return http_client::parse_retry_after(v, now);
    }
    let reset: u64 = headers
        .get(FASTLY_RATELIMIT_RESET)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(reset);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[async_trait::async_trait]
impl Backend for FastlyBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities::URL | Capabilities::TAG | Capabilities::EVERYTHING
    }

    /// One batch purge request's worth of keys.
    fn max_batch(&self) -> usize {
        MAX_KEYS_PER_REQUEST
    }

    fn max_concurrency(&self) -> usize {
        // Each call sends its URLs `concurrency` at a time already.
        2
    }

    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
        let mut failures = Failures::new(batch);
        let requests = self.requests(batch, &mut failures);
        // Indices rather than `&Request` items: a closure taking a borrowed argument trips the
        // compiler's `Send` check of the async-trait future.
        let requests = &requests;
        let results: Vec<Option<PurgeError>> = futures::stream::iter(0..requests.len())
            .map(move |k| async move {
                let request = requests.get(k)?;
                self.send(request)
                    .await
                    .err()
                    .map(|e| e.only(request.targets()))
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        for error in results.into_iter().flatten() {
            failures.push(error);
        }
        failures.into_result()
    }
}
