//! The Akamai backend itself (feature `akamai`); see the [module documentation](super).

use std::fmt;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Client, StatusCode};
use serde_json::Value;

use super::edgegrid::{self, Signer};
use super::limits;
use super::settings::{AkamaiAction, AkamaiNetwork, AkamaiSettings, CpCode};
use crate::backend::cloudflare::settings::SiteUrl;
use crate::backend::{
    Backend, Capabilities, Cause, Failures, PurgeError, RateLimit, SetupError, http_client,
};
use crate::settings::types::RequestRate;
use crate::target::{PurgeUrl, Target};

/// `{"objects":[` and `]}` around the objects of a body.
const BODY_OVERHEAD: usize = r#"{"objects":[]}"#.len();

/// Purges Akamai through Fast Purge API v3 (see the [module documentation](super)).
///
/// ```
/// use cache_purge_hooks_engine::backend::{AkamaiBackend, Backend, Capabilities};
/// use cache_purge_hooks_engine::settings::{BackendSettings, Settings};
///
/// let settings = Settings::from_toml_str(
///     "[backends.cdn]\nkind = \"akamai\"\nbase_url = \"https://akab-x.purge.akamaiapis.net\"\n\
///      client_token = \"akab-c\"\naccess_token = \"akab-a\"\nclient_secret = \"c2VjcmV0\"\n\
///      site_url = \"https://www.example.com\"\ncp_codes = [12345]\n",
/// )
/// .unwrap();
/// let BackendSettings::Akamai(a) = &settings.backends["cdn"].settings else { unreachable!() };
/// let backend = AkamaiBackend::new(a).unwrap();
/// assert_eq!(
///     backend.capabilities(),
///     Capabilities::URL | Capabilities::TAG | Capabilities::EVERYTHING
/// );
/// assert!(!format!("{backend:?}").contains("c2VjcmV0"));
/// ```
pub struct AkamaiBackend {
    client: Client,
    /// `{base_url}/ccu/v3`.
    api_url: String,
    /// `/ccu/v3` and whatever path `base_url` has before it.
    api_path: String,
    scheme: String,
    /// The host (and port) that is signed: the request's `Host`.
    host: String,
    signer: Signer,
    network: AkamaiNetwork,
    action: AkamaiAction,
    site: Option<SiteUrl>,
    cp_codes: Vec<CpCode>,
    concurrency: usize,
    requests: RateLimit,
    urls: RateLimit,
    tags: RateLimit,
    cpcodes: RateLimit,
}

impl fmt::Debug for AkamaiBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AkamaiBackend")
            .field("api_url", &self.api_url)
            .field("credentials", &"<redacted>")
            .field("network", &self.network)
            .field("action", &self.action)
            .field("site", &self.site)
            .field("cp_codes", &self.cp_codes)
            .field("requests", &self.requests)
            .field("urls", &self.urls)
            .finish()
    }
}

/// What [`AkamaiBackend::check`] found: the credentials were accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AkamaiCheck {
    /// The network purges go to.
    pub network: AkamaiNetwork,
    /// What they do.
    pub action: AkamaiAction,
    /// The account's request bucket, as the answer's `X-Ratelimit-Limit` gave it.
    pub rate_limit: Option<u32>,
    /// Request tokens left, as `X-Ratelimit-Remaining` gave it.
    pub rate_limit_remaining: Option<u32>,
}

/// The object type of a request: the `{type}` of the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Url,
    Tag,
    CpCode,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Url => "url",
            Kind::Tag => "tag",
            Kind::CpCode => "cpcode",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Url => "URL",
            Kind::Tag => "cache tag",
            Kind::CpCode => "CP code",
        }
    }
}

/// One request: its object type, the targets it carries and its body.
struct Request {
    kind: Kind,
    targets: Vec<Target>,
    objects: u32,
    body: Vec<u8>,
}

/// What the `X-Ratelimit-*` headers of an answer say.
#[derive(Debug, Default)]
struct RateHeaders {
    limit: Option<u32>,
    remaining: Option<u32>,
    per_second: Option<f64>,
    remaining_objects: Option<u32>,
    per_second_objects: Option<f64>,
    retry_after: Option<Duration>,
}

impl RateHeaders {
    fn of(headers: &HeaderMap) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let int = |name: &str| text(name).and_then(|v| v.trim().parse::<f64>().ok());
        Self {
            limit: int("x-ratelimit-limit").map(|v| v.max(0.0) as u32),
            remaining: int("x-ratelimit-remaining").map(|v| v.max(0.0) as u32),
            per_second: int("x-ratelimit-limit-per-second").filter(|v| *v > 0.0),
            remaining_objects: int("x-ratelimit-remaining-objects").map(|v| v.max(0.0) as u32),
            per_second_objects: int("x-ratelimit-limit-per-second-objects").filter(|v| *v > 0.0),
            retry_after: headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| http_client::parse_retry_after(v, SystemTime::now())),
        }
    }
}

impl AkamaiBackend {
    /// Builds the client: resolves the credentials (inline, or the `edgerc` file's section)
    /// and fails naming the setting that is missing or wrong.
    pub fn new(settings: &AkamaiSettings) -> Result<Self, SetupError> {
        let credentials = settings.credentials()?;
        let url =
            url::Url::parse(credentials.base_url.as_str()).map_err(|e| SetupError::Invalid {
                setting: "base_url",
                problem: e.to_string(),
            })?;
        let host = url
            .host_str()
            .map(|h| url.port().map_or(h.to_owned(), |p| format!("{h}:{p}")))
            .ok_or_else(|| SetupError::Invalid {
                setting: "base_url",
                problem: "has no host".to_owned(),
            })?;
        let base_path = url.path().trim_end_matches('/');
        let concurrency = settings.concurrency.get();
        let rate = settings.effective_rate();
        let scale = rate.per_second() / limits::REQUESTS_PER_SECOND;
        let bucket = |per_second: f64, burst: u32| {
            let rate = RequestRate::per_second_of(per_second * scale)
                .unwrap_or_else(|| unreachable!("a positive rate times a positive scale"));
            RateLimit::within(rate, burst)
        };
        Ok(Self {
            client: http_client::client(settings.timeout, concurrency)?,
            api_url: format!("{}/ccu/v3", credentials.base_url),
            api_path: format!("{base_path}/ccu/v3"),
            scheme: url.scheme().to_owned(),
            host,
            signer: Signer::new(
                credentials.client_token.expose(),
                credentials.access_token.expose(),
                credentials.client_secret.expose(),
            ),
            network: settings.network,
            action: settings.action,
            site: settings.site_url.clone(),
            cp_codes: settings.cp_codes.clone(),
            concurrency,
            requests: RateLimit::within(rate, limits::REQUEST_BURST),
            urls: bucket(limits::URLS_PER_SECOND, limits::URL_BURST),
            tags: bucket(limits::TAGS_PER_SECOND, limits::TAG_BURST),
            cpcodes: bucket(limits::CP_CODES_PER_SECOND, limits::CP_CODE_BURST),
        })
    }

    /// The bucket of purge requests (the account's 50 per second, bucket 100, or `rate`).
    pub fn rate_limit(&self) -> &RateLimit {
        &self.requests
    }

    /// The bucket of URL objects (200 per second, bucket 10,000, scaled like `rate`).
    pub fn url_rate_limit(&self) -> &RateLimit {
        &self.urls
    }

    fn objects(&self, kind: Kind) -> &RateLimit {
        match kind {
            Kind::Url => &self.urls,
            Kind::Tag => &self.tags,
            Kind::CpCode => &self.cpcodes,
        }
    }

    /// Checks the credentials and that the API answers, as `cache-purge check` does: sends a
    /// purge request with no objects, which the EdgeGrid gateway authenticates (401 with bad
    /// credentials, 403 without the CCU APIs service) and Fast Purge then refuses as empty
    /// (400) or accepts as nothing (201). Purges nothing; takes one request token.
    pub async fn check(&self) -> Result<AkamaiCheck, PurgeError> {
        let request = Request {
            kind: Kind::Url,
            targets: Vec::new(),
            objects: 0,
            body: br#"{"objects":[]}"#.to_vec(),
        };
        self.requests.acquire(1).await;
        let (status, rates, text) = self.post(&request).await?;
        if status.is_success() || status == StatusCode::BAD_REQUEST {
            return Ok(AkamaiCheck {
                network: self.network,
                action: self.action,
                rate_limit: rates.limit,
                rate_limit_remaining: rates.remaining,
            });
        }
        Err(self.api_error(status, &rates, &text, &request))
    }

    /// `/a` → `https://www.example.com/a`; absolute URLs as they are.
    fn absolute(&self, url: &PurgeUrl) -> Result<String, String> {
        if url.is_absolute() {
            return Ok(url.as_str().to_owned());
        }
        match &self.site {
            Some(site) => Ok(format!("{}{}", site.as_str(), url.path_and_query())),
            None => Err(format!(
                "cannot purge the path {url} without site_url: Akamai purges absolute URLs (set site_url = \"https://www.example.com\")"
            )),
        }
    }

    /// The batch as requests, each of one object type, within 50,000 bytes and the bucket of
    /// its type; what cannot be sent is a failure of its own.
    fn requests(&self, batch: &[Target], failures: &mut Failures<'_>) -> Vec<Request> {
        let mut urls = Vec::new();
        let mut tags = Vec::new();
        let mut cpcodes = Vec::new();
        if batch.contains(&Target::Everything) {
            // Capabilities say EVERYTHING only with cp_codes; a batch handed over anyway
            // fails rather than purging something else.
            if self.cp_codes.is_empty() {
                failures.push(PurgeError::new(
                    Cause::Misconfigured,
                    "Akamai cannot purge everything without cp_codes: set cp_codes = [12345] to the CP codes of the site",
                ));
                return Vec::new();
            }
            for code in &self.cp_codes {
                cpcodes.push((None, Value::from(code.get())));
            }
            return self.pack(Kind::CpCode, cpcodes, batch, failures);
        }
        for target in batch {
            match target {
                Target::Url(url) => match self.absolute(url) {
                    Ok(u) => urls.push((Some(target), Value::from(u))),
                    Err(message) => failures.push(
                        PurgeError::new(Cause::Misconfigured, message).only(vec![target.clone()]),
                    ),
                },
                Target::Tag(tag) => tags.push((
                    Some(target),
                    Value::from(tag.akamai_form().as_str()),
                )),
                other => failures.push(
                    PurgeError::new(
                        Cause::Misconfigured,
                        format!(
                            "Akamai cannot purge {other}: Fast Purge has no prefix purge (tag the pages instead)"
                        ),
                    )
                    .only(vec![other.clone()]),
                ),
            }
        }
        let mut requests = self.pack(Kind::Url, urls, batch, failures);
        requests.extend(self.pack(Kind::Tag, tags, batch, failures));
        requests
    }

    /// Packs objects into bodies of at most [`limits::MAX_BODY_BYTES`] and at most the
    /// bucket of their type. A `None` target stands for the whole batch (CP codes of
    /// "everything").
    fn pack(
        &self,
        kind: Kind,
        objects: Vec<(Option<&Target>, Value)>,
        batch: &[Target],
        failures: &mut Failures<'_>,
    ) -> Vec<Request> {
        let most = self.objects(kind).burst() as usize;
        let mut requests = Vec::new();
        let mut items: Vec<String> = Vec::new();
        let mut targets: Vec<Target> = Vec::new();
        let mut size = BODY_OVERHEAD;
        let flush =
            |items: &mut Vec<String>, targets: &mut Vec<Target>, requests: &mut Vec<Request>| {
                if items.is_empty() {
                    return;
                }
                let body = format!(r#"{{"objects":[{}]}}"#, items.join(",")).into_bytes();
                debug_assert!(body.len() <= limits::MAX_BODY_BYTES);
                requests.push(Request {
                    kind,
                    targets: std::mem::take(targets),
                    objects: items.len() as u32,
                    body,
                });
                items.clear();
            };
        for (target, value) in objects {
            let item = value.to_string();
            if BODY_OVERHEAD + item.len() > limits::MAX_BODY_BYTES {
                let message = format!(
                    "this {} is too long for Fast Purge: alone, it makes a body of more than {} bytes",
                    kind.name(),
                    limits::MAX_BODY_BYTES
                );
                let error = PurgeError::new(Cause::Refused, message);
                failures.push(match target {
                    Some(t) => error.only(vec![t.clone()]),
                    None => error,
                });
                continue;
            }
            let comma = usize::from(!items.is_empty());
            if size + comma + item.len() > limits::MAX_BODY_BYTES || items.len() >= most {
                flush(&mut items, &mut targets, &mut requests);
                size = BODY_OVERHEAD;
            }
            size += usize::from(!items.is_empty()) + item.len();
            items.push(item);
            if let Some(t) = target {
                targets.push(t.clone());
            }
        }
        flush(&mut items, &mut targets, &mut requests);
        if kind == Kind::CpCode {
            // Every CP code request carries the whole batch ("everything").
            for r in &mut requests {
                r.targets = batch.to_vec();
            }
        }
        requests
    }

    /// Signs and sends one request; the answer's status, rate headers and body.
    async fn post(
        &self,
        request: &Request,
    ) -> Result<(StatusCode, RateHeaders, String), PurgeError> {
        let path = format!(
            "{}/{}/{}/{}",
            self.api_path,
            self.action.as_str(),
            request.kind.path(),
            self.network.as_str()
        );
        let authorization = self.signer.authorization(
            "POST",
            &self.scheme,
            &self.host,
            &path,
            &request.body,
            &edgegrid::timestamp(SystemTime::now()),
            &edgegrid::nonce(),
        );
        let mut authorization = HeaderValue::from_str(&authorization).map_err(|_| {
            PurgeError::new(
                Cause::Misconfigured,
                "the credentials do not make a valid Authorization header (visible ASCII only)",
            )
        })?;
        authorization.set_sensitive(true);
        let url = format!(
            "{}/{}/{}/{}",
            self.api_url,
            self.action.as_str(),
            request.kind.path(),
            self.network.as_str()
        );
        let response = self
            .client
            .post(url)
            .header(AUTHORIZATION, authorization)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(request.body.clone())
            .send()
            .await
            .map_err(|e| http_client::transport_error(&self.host, e))?;
        let status = response.status();
        let rates = RateHeaders::of(response.headers());
        let text = response.text().await.unwrap_or_default();
        self.follow(request.kind, &rates);
        Ok((status, rates, text))
    }

    /// Lowers the buckets to what the answer says is left of the account's.
    fn follow(&self, kind: Kind, rates: &RateHeaders) {
        if let Some(remaining) = rates.remaining {
            let reserve = limits::REQUEST_BURST.saturating_sub(self.requests.burst());
            self.requests.at_most(remaining.saturating_sub(reserve));
        }
        if let Some(remaining) = rates.remaining_objects {
            let bucket = self.objects(kind);
            let provider = match kind {
                Kind::Url => limits::URL_BURST,
                Kind::Tag => limits::TAG_BURST,
                Kind::CpCode => limits::CP_CODE_BURST,
            };
            bucket.at_most(remaining.saturating_sub(provider.saturating_sub(bucket.burst())));
        }
    }

    async fn send(&self, request: &Request) -> Result<(), PurgeError> {
        self.requests.acquire(1).await;
        self.objects(request.kind).acquire(request.objects).await;
        let (status, rates, text) = self.post(request).await?;
        if status.is_success() {
            tracing::debug!(
                target: "cache_purge_hooks",
                kind = request.kind.path(),
                objects = request.objects,
                "purged"
            );
            return Ok(());
        }
        let error = self.api_error(status, &rates, &text, request);
        if let Cause::RateLimited {
            retry_after: Some(wait),
        } = error.cause()
        {
            // Hold back the calls in flight too: the account's bucket is empty.
            self.requests.pause(*wait);
            self.objects(request.kind).pause(*wait);
        }
        Err(error)
    }

    /// How long a 429 asks to wait: `Retry-After`, else the refill of what the request
    /// lacks, else the documented five seconds.
    fn wait_of_429(&self, rates: &RateHeaders, parsed: &Value, request: &Request) -> Duration {
        if let Some(wait) = rates.retry_after {
            return wait;
        }
        let mut wait: Option<f64> = None;
        if rates.remaining == Some(0) {
            let per_second = rates.per_second.unwrap_or(self.requests.per_second());
            wait = Some(1.0 / per_second);
        }
        let remaining = rates
            .remaining_objects
            .or_else(|| parsed["rateLimitRemaining"].as_u64().map(|v| v as u32));
        let size = parsed["rateLimitCurrentRequestSize"]
            .as_u64()
            .map_or(request.objects, |v| v as u32);
        if let Some(remaining) = remaining
            && remaining < size
            && parsed["title"].as_str() != Some("Rate Limit exceeded")
        {
            let per_second = rates
                .per_second_objects
                .unwrap_or(self.objects(request.kind).per_second());
            let objects = f64::from(size - remaining) / per_second;
            wait = Some(wait.map_or(objects, |w| w.max(objects)));
        }
        wait.map_or(limits::DEFAULT_429_WAIT, Duration::from_secs_f64)
    }

    /// An error answer, from its status and the problem+json body.
    fn api_error(
        &self,
        status: StatusCode,
        rates: &RateHeaders,
        text: &str,
        request: &Request,
    ) -> PurgeError {
        let parsed: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let title = parsed["title"].as_str().unwrap_or("");
        let detail = parsed["detail"].as_str().unwrap_or("");
        let mut quoted = match (title.is_empty(), detail.is_empty()) {
            (false, false) => format!("{title}: {detail}"),
            (false, true) => title.to_owned(),
            (true, false) => detail.to_owned(),
            (true, true) => {
                let cut: String = text.trim().chars().take(300).collect();
                if cut.is_empty() {
                    "no body".to_owned()
                } else {
                    cut.replace(['\r', '\n'], " ")
                }
            }
        };
        if let Some(id) = parsed["supportId"]
            .as_str()
            .or(parsed["requestId"].as_str())
        {
            quoted.push_str(&format!(" (support ID {id})"));
        }
        let lower = detail.to_ascii_lowercase();
        let (cause, message) = match status {
            StatusCode::TOO_MANY_REQUESTS => {
                let wait = self.wait_of_429(rates, &parsed, request);
                (
                    Cause::RateLimited {
                        retry_after: Some(wait),
                    },
                    format!(
                        "answered {status}: {quoted}: the account's Fast Purge rate limit is spent, probably by another \
                         API client of the account (requests left: {}, {}s objects left: {})",
                        rates.remaining.map_or("?".to_owned(), |v| v.to_string()),
                        request.kind.name(),
                        rates
                            .remaining_objects
                            .map_or("?".to_owned(), |v| v.to_string()),
                    ),
                )
            }
            StatusCode::UNAUTHORIZED => {
                let hint = if lower.contains("signature") {
                    "the signature does not match: check client_secret (and that base_url is the credentials' host)"
                } else if lower.contains("client token") {
                    "check client_token"
                } else if lower.contains("access token") {
                    "check access_token"
                } else if lower.contains("timestamp") {
                    "the request's timestamp is out of range: check this machine's clock (NTP)"
                } else if lower.contains("nonce") {
                    "a nonce was used twice: retrying with a new one may pass"
                } else {
                    "check client_token, access_token and client_secret (the .edgerc section of an API client)"
                };
                (
                    Cause::Authentication,
                    format!(
                        "answered {status}: {quoted}: EdgeGrid refused the credentials; {hint}"
                    ),
                )
            }
            StatusCode::FORBIDDEN => (
                Cause::Authentication,
                format!(
                    "answered {status}: {quoted}: the API client may not purge this; give it the CCU APIs (Fast Purge) \
                     service at READ-WRITE, and check that the {}s are the account's",
                    request.kind.name()
                ),
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                Cause::Refused,
                format!(
                    "answered {status}: {quoted}: the body of {} bytes is over Fast Purge's limit of {} bytes",
                    request.body.len(),
                    limits::MAX_BODY_BYTES
                ),
            ),
            s if s.is_server_error() => (
                Cause::Status(s.as_u16()),
                format!("answered {status}: {quoted}"),
            ),
            // 408 and the rest: the status decides (408 is transient), as for every HTTP backend.
            _ => (
                Cause::Status(status.as_u16()),
                format!("answered {status}: {quoted}"),
            ),
        };
        PurgeError::new(cause, message).on_server(&self.host)
    }
}

#[async_trait::async_trait]
impl Backend for AkamaiBackend {
    /// URLs and tags; everything only with `cp_codes`; never prefixes.
    fn capabilities(&self) -> Capabilities {
        let base = Capabilities::URL | Capabilities::TAG;
        if self.cp_codes.is_empty() {
            base
        } else {
            base | Capabilities::EVERYTHING
        }
    }

    /// About one 50,000-byte request of URLs of 60 bytes; longer ones split further.
    fn max_batch(&self) -> usize {
        800
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

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(cp_codes: &[u64]) -> AkamaiBackend {
        let s = AkamaiSettings {
            base_url: Some("https://akab-x.purge.akamaiapis.net".parse().unwrap()),
            client_token: Some("akab-c".parse().unwrap()),
            access_token: Some("akab-a".parse().unwrap()),
            client_secret: Some("c2VjcmV0".parse().unwrap()),
            site_url: Some("https://www.example.com".parse().unwrap()),
            cp_codes: cp_codes
                .iter()
                .map(|c| c.to_string().parse().unwrap())
                .collect(),
            ..AkamaiSettings::default()
        };
        AkamaiBackend::new(&s).unwrap()
    }

    #[test]
    fn long_urls_are_packed_into_bodies_of_at_most_50000_bytes() {
        let b = backend(&[]);
        let batch: Vec<Target> = (0..700)
            .map(|i| Target::url(&format!("/{}/{i}", "x".repeat(300))).unwrap())
            .collect();
        let mut failures = Failures::new(&batch);
        let requests = b.requests(&batch, &mut failures);
        assert!(failures.is_empty());
        assert!(requests.len() > 1);
        let mut total = 0;
        for r in &requests {
            assert!(r.body.len() <= limits::MAX_BODY_BYTES, "{}", r.body.len());
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["objects"].as_array().unwrap().len(), r.targets.len());
            total += r.targets.len();
        }
        assert_eq!(total, 700);
        // Packed tight: every body but the last would overflow with the next URL.
        assert!(requests[0].body.len() > limits::MAX_BODY_BYTES - 350);
    }

    #[test]
    fn a_429_waits_for_retry_after_else_the_refill_of_what_it_lacks_else_five_seconds() {
        let b = backend(&[]);
        let request = Request {
            kind: Kind::Url,
            targets: Vec::new(),
            objects: 600,
            body: Vec::new(),
        };
        let rates = RateHeaders {
            retry_after: Some(Duration::from_secs(2)),
            ..RateHeaders::default()
        };
        assert_eq!(
            b.wait_of_429(&rates, &Value::Null, &request),
            Duration::from_secs(2)
        );
        let rates = RateHeaders {
            remaining_objects: Some(200),
            per_second_objects: Some(200.0),
            ..RateHeaders::default()
        };
        let body = serde_json::json!({"title": "URL Rate Limit exceeded", "rateLimitCurrentRequestSize": 600});
        assert_eq!(
            b.wait_of_429(&rates, &body, &request),
            Duration::from_secs(2)
        );
        assert_eq!(
            b.wait_of_429(&RateHeaders::default(), &Value::Null, &request),
            limits::DEFAULT_429_WAIT
        );
    }
}
