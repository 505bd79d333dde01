//! The Cloudflare backend itself (feature `cloudflare`); see the [module documentation](super).

use std::fmt;
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use super::settings::{CloudflarePlan, CloudflareSettings, SiteUrl, ZoneId};
use crate::backend::{
    Backend, Capabilities, Cause, Failures, PurgeError, RateLimit, SetupError, http_client,
};
use crate::settings::types::RequestRate;
use crate::target::{PurgeUrl, Target};

/// Purges a Cloudflare zone through API v4, within the plan's limits (see the
/// [module documentation](super)).
///
/// ```
/// use cache_purge_hooks_engine::backend::{Backend, Capabilities, CloudflareBackend};
/// use cache_purge_hooks_engine::settings::{BackendSettings, Settings};
///
/// let settings = Settings::from_toml_str(
///     "[backends.cdn]\nkind = \"cloudflare\"\nzone_id = \"023e105f4ecef8ad9ca31a8372d0c353\"\n\
///      api_token = \"token\"\nplan = \"pro\"\nsite_url = \"https://www.example.com\"\n",
/// )
/// .unwrap();
/// let BackendSettings::Cloudflare(cf) = &settings.backends["cdn"].settings else { unreachable!() };
/// let backend = CloudflareBackend::new(cf).unwrap();
/// assert_eq!(backend.capabilities(), Capabilities::ALL);
/// assert_eq!(backend.max_batch(), 100);
/// assert!(!format!("{backend:?}").contains("token\""));
/// ```
pub struct CloudflareBackend {
    client: Client,
    /// `{base_url}/zones/{zone_id}`.
    zone_url: String,
    /// `{base_url}`.
    base_url: String,
    zone: ZoneId,
    /// `Bearer <token>`, marked sensitive.
    authorization: HeaderValue,
    site: Option<SiteUrl>,
    plan: CloudflarePlan,
    urls_per_request: usize,
    concurrency: usize,
    /// Purge requests: the plan's token bucket.
    requests: RateLimit,
    /// URLs: the plan's URLs per second, one second's worth at once.
    urls: RateLimit,
    /// What errors name: the API's host.
    server: String,
}

impl fmt::Debug for CloudflareBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudflareBackend")
            .field("zone_url", &self.zone_url)
            .field("api_token", &"<redacted>")
            .field("site", &self.site)
            .field("plan", &self.plan)
            .field("urls_per_request", &self.urls_per_request)
            .field("requests", &self.requests)
            .field("urls", &self.urls)
            .finish()
    }
}

/// What [`CloudflareBackend::check`] found: the zone the token can purge.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloudflareZone {
    /// The zone's domain (`example.com`).
    pub name: String,
    /// Its status (`active`, `pending`...).
    pub status: String,
    /// The status of the API token (`active`).
    pub token_status: String,
}

/// One request: the targets it carries, its body, the URLs in it (for the URL bucket).
struct Request {
    targets: Vec<Target>,
    body: Value,
    urls: u32,
}

impl CloudflareBackend {
    /// Builds the client. Fails when `zone_id` or `api_token` is missing (the loader's own
    /// check, for settings built in code).
    pub fn new(settings: &CloudflareSettings) -> Result<Self, SetupError> {
        let (zone, token) = settings.required()?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| SetupError::Invalid {
                setting: "api_token",
                problem: "not a valid HTTP header value".to_owned(),
            })?;
        authorization.set_sensitive(true);
        let base_url = settings.base_url.as_str().to_owned();
        let server = url::Url::parse(&base_url)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| u.port().map_or(h.to_owned(), |p| format!("{h}:{p}")))
            })
            .unwrap_or_else(|| base_url.clone());
        let concurrency = settings.concurrency.get();
        let urls_per_second = settings.plan.urls_per_second();
        let per_second = RequestRate::per_second_of(f64::from(urls_per_second))
            .unwrap_or_else(|| unreachable!("a positive constant"));
        // The URL rate scales with the request rate when that is overridden (a share of the
        // account, or a test's faster clock).
        let scale = settings.effective_rate().per_second() / settings.plan.rate().per_second();
        Ok(Self {
            client: http_client::client(settings.timeout, concurrency)?,
            zone_url: format!("{base_url}/zones/{zone}"),
            base_url,
            zone: zone.clone(),
            authorization,
            site: settings.site_url.clone(),
            plan: settings.plan,
            urls_per_request: settings.effective_urls_per_request(),
            concurrency,
            requests: RateLimit::within(settings.effective_rate(), settings.effective_burst()),
            // One second's worth of the plan's URLs, refilled at the rate in effect.
            urls: RateLimit::within(per_second.scaled(scale), urls_per_second),
            server,
        })
    }

    /// The bucket of purge requests (the plan's, or `rate`/`burst`).
    pub fn rate_limit(&self) -> &RateLimit {
        &self.requests
    }

    /// Checks the credentials and the zone, as `cache-purge check` does: the token is valid
    /// and active (`GET /user/tokens/verify`), and the zone exists for it (`GET
    /// /zones/{zone_id}`). Purges nothing; takes no token of the purge bucket.
    pub async fn check(&self) -> Result<CloudflareZone, PurgeError> {
        let verify = self
            .get(&format!("{}/user/tokens/verify", self.base_url))
            .await?;
        let token_status = verify["result"]["status"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned();
        if token_status != "active" {
            return Err(PurgeError::new(
                Cause::Authentication,
                format!(
                    "the API token is {token_status}, not active: create a new one (My Profile > API Tokens)"
                ),
            )
            .on_server(&self.server));
        }
        let zone = self.get(&self.zone_url).await?;
        Ok(CloudflareZone {
            name: zone["result"]["name"].as_str().unwrap_or("").to_owned(),
            status: zone["result"]["status"].as_str().unwrap_or("").to_owned(),
            token_status,
        })
    }

    async fn get(&self, url: &str) -> Result<Value, PurgeError> {
        let response = self
            .client
            .get(url)
            .header(AUTHORIZATION, self.authorization.clone())
            .send()
            .await
            .map_err(|e| http_client::transport_error(&self.server, e))?;
        let status = response.status();
        let retry_after = header_text(&response, RETRY_AFTER);
        let body = response.text().await.unwrap_or_default();
        let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if status.is_success() && parsed["success"].as_bool() == Some(true) {
            return Ok(parsed);
        }
        Err(self.api_error(status, retry_after.as_deref(), &body, &parsed))
    }

    /// `/a` → `https://www.example.com/a`; absolute URLs as they are.
    fn absolute(&self, url: &PurgeUrl) -> Result<String, String> {
        if url.is_absolute() {
            return Ok(url.as_str().to_owned());
        }
        match &self.site {
            Some(site) => Ok(format!("{}{}", site.as_str(), url.path_and_query())),
            None => Err(format!(
                "cannot purge the path {url} without site_url: Cloudflare purges absolute URLs (set site_url = \"https://www.example.com\")"
            )),
        }
    }

    /// A prefix, as Cloudflare writes them (`www.example.com/blog/`, no scheme, no query), or
    /// the host when the prefix is a whole host.
    fn prefix(&self, url: &PurgeUrl) -> Result<Prefix, String> {
        if url.query().is_some() {
            return Err(format!(
                "Cloudflare purges prefixes without a query string; {url} has one"
            ));
        }
        let host = match (url.host(), &self.site) {
            (Some(h), _) => h,
            (None, Some(site)) => site.host(),
            (None, None) => {
                return Err(format!(
                    "cannot purge the prefix {url} without site_url (set site_url = \"https://www.example.com\")"
                ));
            }
        };
        if url.path() == "/" {
            Ok(Prefix::Host(host.to_owned()))
        } else {
            Ok(Prefix::Path(format!("{host}{}", url.path())))
        }
    }

    /// The batch as requests, each within the plan's items per request; what cannot be sent
    /// is a failure of its own.
    fn requests(&self, batch: &[Target], failures: &mut Failures<'_>) -> Vec<Request> {
        if batch.contains(&Target::Everything) {
            return vec![Request {
                targets: batch.to_vec(),
                body: json!({ "purge_everything": true }),
                urls: 0,
            }];
        }
        let mut files = Vec::new();
        let mut tags = Vec::new();
        let mut prefixes = Vec::new();
        let mut hosts = Vec::new();
        for target in batch {
            let converted = match target {
                Target::Url(url) => self.absolute(url).map(|u| files.push((target, u))),
                Target::Tag(tag) => {
                    tags.push((target, tag.as_str().to_owned()));
                    Ok(())
                }
                Target::Prefix(url) => self.prefix(url).map(|p| match p {
                    Prefix::Host(h) => hosts.push((target, h)),
                    Prefix::Path(p) => prefixes.push((target, p)),
                }),
                other => Err(format!("cannot purge {other}")),
            };
            if let Err(message) = converted {
                failures.push(
                    PurgeError::new(Cause::Misconfigured, message).only(vec![target.clone()]),
                );
            }
        }
        let mut requests = Vec::new();
        let items = self.plan.max_items_per_request();
        for (key, list, per_request) in [
            ("files", files, self.urls_per_request),
            ("tags", tags, items),
            ("prefixes", prefixes, items),
            ("hosts", hosts, items),
        ] {
            for chunk in list.chunks(per_request) {
                let values: Vec<&str> = chunk.iter().map(|(_, v)| v.as_str()).collect();
                requests.push(Request {
                    targets: chunk.iter().map(|(t, _)| (*t).clone()).collect(),
                    body: json!({ key: values }),
                    urls: if key == "files" {
                        chunk.len() as u32
                    } else {
                        0
                    },
                });
            }
        }
        requests
    }

    async fn send(&self, request: &Request) -> Result<(), PurgeError> {
        self.requests.acquire(1).await;
        if request.urls > 0 {
            self.urls.acquire(request.urls).await;
        }
        let body = serde_json::to_vec(&request.body).map_err(|e| {
            PurgeError::new(
                Cause::Internal,
                format!("cannot write the request body: {e}"),
            )
        })?;
        let response = self
            .client
            .post(format!("{}/purge_cache", self.zone_url))
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
            .send()
            .await
            .map_err(|e| http_client::transport_error(&self.server, e))?;
        let status = response.status();
        let retry_after = header_text(&response, RETRY_AFTER);
        let text = response.text().await.unwrap_or_default();
        let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() && parsed["success"].as_bool() != Some(false) {
            tracing::debug!(
                target: "cache_purge_hooks",
                zone = %self.zone,
                targets = request.targets.len(),
                "purged"
            );
            return Ok(());
        }
        let error = self.api_error(status, retry_after.as_deref(), &text, &parsed);
        if let Cause::RateLimited { retry_after } = error.cause() {
            // Hold back the calls in flight too: the account's bucket is empty.
            self.requests
                .pause(retry_after.unwrap_or_else(|| self.one_token()));
        }
        Err(error)
    }

    /// The refill time of one token: the wait a 429 without `Retry-After` stands for.
    fn one_token(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.requests.per_second())
    }

    /// An error answer, from its status and Cloudflare's `errors` list.
    fn api_error(
        &self,
        status: StatusCode,
        retry_after: Option<&str>,
        text: &str,
        parsed: &Value,
    ) -> PurgeError {
        let errors: Vec<(i64, String)> = parsed["errors"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|e| {
                        (
                            e["code"].as_i64().unwrap_or(0),
                            e["message"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let quoted = if errors.is_empty() {
            let mut cut: String = text.trim().chars().take(300).collect();
            if cut.is_empty() {
                cut = "no body".to_owned();
            }
            cut.replace(['\r', '\n'], " ")
        } else {
            errors
                .iter()
                .map(|(code, message)| format!("{code} {message}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let has = |codes: &[i64]| errors.iter().any(|(c, _)| codes.contains(c));
        let zone = &self.zone;
        let (cause, message) = if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = retry_after
                .and_then(|v| http_client::parse_retry_after(v, std::time::SystemTime::now()));
            (
                Cause::RateLimited { retry_after: wait },
                format!(
                    "answered {status}: {quoted}: the account's purge rate limit ({} plan: {} requests per second, bucket of {}) is spent, \
                     probably by another client of the account",
                    self.plan,
                    self.requests.per_second(),
                    self.requests.burst()
                ),
            )
        } else if has(&[10000, 9109, 6003, 6111, 6100, 6101, 6102, 6103])
            || matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
        {
            (
                Cause::Authentication,
                format!(
                    "answered {status}: {quoted}: Cloudflare refused the API token; check api_token, and that it \
                     has the Zone > Cache Purge > Purge permission on zone {zone}"
                ),
            )
        } else if has(&[7003, 7000, 1001]) || status == StatusCode::NOT_FOUND {
            (
                Cause::Misconfigured,
                format!(
                    "answered {status}: {quoted}: there is no zone {zone} for this token; check zone_id (the zone's \
                     Overview page, API section)"
                ),
            )
        } else if status.is_server_error() {
            (
                Cause::Status(status.as_u16()),
                format!("answered {status}: {quoted}"),
            )
        } else {
            (
                Cause::Refused,
                format!(
                    "answered {status}: {quoted} (plan {}: at most {} URLs and {} tags, hosts or prefixes per request)",
                    self.plan,
                    self.urls_per_request,
                    self.plan.max_items_per_request()
                ),
            )
        };
        PurgeError::new(cause, message).on_server(&self.server)
    }
}

enum Prefix {
    Host(String),
    Path(String),
}

fn header_text(response: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[async_trait::async_trait]
impl Backend for CloudflareBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    /// The plan's URLs per request: one `files` request per batch of URLs.
    fn max_batch(&self) -> usize {
        self.urls_per_request
    }

    fn max_concurrency(&self) -> usize {
        self.concurrency
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
                    .map(|e| e.only(request.targets.clone()))
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
