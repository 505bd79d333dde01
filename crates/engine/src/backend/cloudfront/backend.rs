//! The CloudFront backend itself (feature `cloudfront`); see the [module documentation](super).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Client, Method, StatusCode};

use super::settings::{CloudFrontSettings, DistributionId, MAX_PATHS_IN_PROGRESS};
use crate::backend::{Backend, Capabilities, Cause, Failures, PurgeError, SetupError, http_client};
use crate::target::{PurgeUrl, Target};

/// The API version in every path.
const API_VERSION: &str = "2020-05-31";
/// The namespace of the request body.
const XMLNS: &str = "http://cloudfront.amazonaws.com/doc/2020-05-31/";
/// CloudFront is a global service, signed for this region.
const SIGNING_REGION: &str = "us-east-1";
/// The SigV4 service name.
const SIGNING_NAME: &str = "cloudfront";
/// Invalidations in progress asked about (the oldest) when the limits are full.
const REFRESH_AT_MOST: usize = 8;

/// Invalidates paths of a CloudFront distribution (see the [module documentation](super)).
///
/// ```
/// use cache_purge_hooks_engine::backend::{Backend, Capabilities, CloudFrontBackend};
/// use cache_purge_hooks_engine::settings::{BackendSettings, Settings};
///
/// let settings = Settings::from_toml_str(
///     "[backends.cdn]\nkind = \"cloudfront\"\ndistribution_id = \"EDFDVBD6EXAMPLE\"\n\
///      access_key_id = \"AKIAIOSFODNN7EXAMPLE\"\nsecret_access_key = \"wJalrXUtnFEMIEXAMPLEKEY\"\n\
///      hosts = [\"www.example.com\"]\n",
/// )
/// .unwrap();
/// let BackendSettings::CloudFront(cf) = &settings.backends["cdn"].settings else { unreachable!() };
/// let backend = CloudFrontBackend::new(cf).unwrap();
/// assert_eq!(
///     backend.capabilities(),
///     Capabilities::URL | Capabilities::PREFIX | Capabilities::EVERYTHING
/// );
/// assert_eq!(backend.max_batch(), 3000);
/// assert!(!format!("{backend:?}").contains("wJalrXUtnFEMIEXAMPLEKEY"));
/// ```
pub struct CloudFrontBackend {
    client: Client,
    /// `{base_url}/2020-05-31/distribution/{id}`.
    distribution_url: String,
    distribution: DistributionId,
    identity: Identity,
    hosts: Vec<crate::routing::HostPattern>,
    wait: bool,
    poll_interval: Duration,
    wait_timeout: Duration,
    max_paths: usize,
    max_wildcards: usize,
    state: Mutex<State>,
    /// What errors name: the API's host.
    server: String,
}

impl fmt::Debug for CloudFrontBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudFrontBackend")
            .field("distribution_url", &self.distribution_url)
            .field("credentials", &"<redacted>")
            .field("hosts", &self.hosts)
            .field("wait", &self.wait)
            .field("max_paths_in_progress", &self.max_paths)
            .field("max_wildcards_in_progress", &self.max_wildcards)
            .finish()
    }
}

/// What [`CloudFrontBackend::check`] found: the distribution the credentials can read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloudFrontDistribution {
    /// Its ID.
    pub id: String,
    /// Its status: `Deployed`, or `InProgress` while a change of its settings propagates.
    pub status: String,
    /// Its CloudFront domain name (`d111111abcdef8.cloudfront.net`).
    pub domain_name: String,
    /// Its alternate domain names (CNAMEs: `www.example.com`).
    pub aliases: Vec<String>,
}

/// Invalidations this client created that were not seen `Completed` yet, and what they hold
/// of the distribution's in-progress limits.
#[derive(Debug, Default)]
struct State {
    in_progress: Vec<InProgress>,
    /// Individual paths held: of `in_progress`, and of requests being sent.
    paths: usize,
    /// Wildcard paths held, likewise.
    wildcards: usize,
    /// Invalidations created, for unique caller references.
    counter: u64,
    /// How long the last invalidation seen completed took, from its creation.
    typical: Option<Duration>,
    /// Why `GetInvalidation` was last refused for good (`AccessDenied` to a key allowed only
    /// `CreateInvalidation`...): the limits cannot free up, so a purge waiting for room is
    /// reported with this cause instead of as rate limited (a retry that cannot succeed).
    polling_refused: Option<PurgeError>,
}

#[derive(Clone, Debug)]
struct InProgress {
    id: String,
    paths: usize,
    wildcards: usize,
    created: Instant,
}

/// One path to invalidate and the target it stands for.
struct Item {
    /// The targets naming this path (two URLs of two `hosts` can): each shares its outcome.
    targets: Vec<Target>,
    path: String,
}

/// One invalidation: the targets it carries and its paths (files first, then wildcards).
struct Batch {
    targets: Vec<Target>,
    paths: Vec<String>,
    files: usize,
    wildcards: usize,
}

impl CloudFrontBackend {
    /// Builds the client. Fails when a required key is missing or a limit is above
    /// CloudFront's (the loader's own check, for settings built in code).
    pub fn new(settings: &CloudFrontSettings) -> Result<Self, SetupError> {
        settings.check()?;
        let required = settings.required()?;
        let identity: Identity = Credentials::new(
            required.access_key_id.expose(),
            required.secret_access_key.expose(),
            settings
                .session_token
                .as_ref()
                .map(|t| t.expose().to_owned()),
            None,
            "cache-purge-hooks settings",
        )
        .into();
        let base_url = settings.base_url.as_str();
        let server = url::Url::parse(base_url)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| u.port().map_or(h.to_owned(), |p| format!("{h}:{p}")))
            })
            .unwrap_or_else(|| base_url.to_owned());
        Ok(Self {
            client: http_client::client(settings.timeout, 2)?,
            distribution_url: format!(
                "{base_url}/{API_VERSION}/distribution/{}",
                required.distribution
            ),
            distribution: required.distribution.clone(),
            identity,
            hosts: settings.hosts.clone(),
            wait: settings.wait,
            poll_interval: settings.poll_interval,
            wait_timeout: settings.wait_timeout,
            max_paths: settings.max_paths_in_progress.get(),
            max_wildcards: settings.max_wildcards_in_progress.get(),
            state: Mutex::new(State::default()),
            server,
        })
    }

    /// Individual and wildcard paths of this client's invalidations not yet seen completed
    /// (what it holds of the distribution's limits).
    pub fn in_progress(&self) -> (usize, usize) {
        let state = self.lock();
        (state.paths, state.wildcards)
    }

    /// Checks the credentials and the distribution, as `cache-purge check` does
    /// (`GetDistribution`: the signature, the keys and the `cloudfront:GetDistribution`
    /// permission, and that the distribution exists). Invalidates nothing.
    pub async fn check(&self) -> Result<CloudFrontDistribution, PurgeError> {
        let (status, _, body) = self
            .call(Method::GET, &self.distribution_url, Vec::new())
            .await?;
        if !status.is_success() {
            return Err(self.api_error(status, None, &body));
        }
        let aliases = element(&body, "Aliases")
            .map(|a| elements(a, "CNAME"))
            .unwrap_or_default();
        Ok(CloudFrontDistribution {
            id: text_of(&body, "Id").unwrap_or_default(),
            status: text_of(&body, "Status").unwrap_or_default(),
            domain_name: text_of(&body, "DomainName").unwrap_or_default(),
            aliases,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Signs and sends one request; the answer's status, `Retry-After` and body.
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Option<Duration>, String), PurgeError> {
        let content_type = "application/xml";
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if !body.is_empty() {
            headers.push(("content-type", content_type));
        }
        let signed = self.sign(method.as_str(), url, &headers, &body)?;
        let mut request = self.client.request(method, url);
        if !body.is_empty() {
            request = request
                .header(CONTENT_TYPE, HeaderValue::from_static(content_type))
                .body(body);
        }
        for (name, mut value) in signed {
            value.set_sensitive(true);
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| http_client::transport_error(&self.server, e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| http_client::parse_retry_after(v, SystemTime::now()));
        let text = response.text().await.unwrap_or_default();
        Ok((status, retry_after, text))
    }

    /// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-security-token`) of a
    /// request, by the `aws-sigv4` crate.
    fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(HeaderName, HeaderValue)>, PurgeError> {
        let internal = |what: &str, e: &dyn fmt::Display| {
            PurgeError::new(
                Cause::Internal,
                format!("cannot sign the request ({what}): {e}"),
            )
        };
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(SIGNING_REGION)
            .name(SIGNING_NAME)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| internal("parameters", &e))?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| internal("request", &e))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| internal("signature", &e))?
            .into_parts();
        let (signed, _) = instructions.into_parts();
        signed
            .into_iter()
            .map(|h| {
                let name = HeaderName::from_bytes(h.name().as_bytes())
                    .map_err(|e| internal("header", &e))?;
                HeaderValue::from_str(h.value())
                    .map(|v| (name, v))
                    .map_err(|e| internal("header", &e))
            })
            .collect()
    }

    /// A target's invalidation path, `Ok(None)` for [`Target::Everything`].
    fn path(&self, target: &Target) -> Result<Option<(String, bool)>, String> {
        let (url, wildcard) = match target {
            Target::Url(url) => (url, false),
            Target::Prefix(url) => (url, true),
            Target::Everything => return Ok(None),
            Target::Tag(tag) => {
                return Err(format!(
                    "CloudFront cannot invalidate the tag {tag}: it has no tag invalidation"
                ));
            }
            #[allow(unreachable_patterns)]
            other => return Err(format!("CloudFront cannot invalidate {other}")),
        };
        self.served(url)?;
        let path = url.path_and_query();
        if path.contains('*') {
            return Err(format!(
                "cannot invalidate {url}: CloudFront reads `*` in a path as a wildcard, which would \
                 invalidate more than this {}",
                if wildcard { "prefix" } else { "URL" }
            ));
        }
        if wildcard {
            Ok(Some((format!("{path}*"), true)))
        } else {
            Ok(Some((path.to_owned(), false)))
        }
    }

    /// An absolute URL is invalidated by its path only if the distribution serves its host.
    fn served(&self, url: &PurgeUrl) -> Result<(), String> {
        let Some(host) = url.host() else {
            return Ok(());
        };
        if self.hosts.iter().any(|h| h.matches(host)) {
            return Ok(());
        }
        let served = if self.hosts.is_empty() {
            "none are set".to_owned()
        } else {
            self.hosts
                .iter()
                .map(crate::routing::HostPattern::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(format!(
            "{url} is not on a host of distribution {} (hosts: {served}): CloudFront invalidates paths, \
             so only URLs of the hosts it serves are sent; add `{host}` to hosts if it serves it",
            self.distribution
        ))
    }

    /// Takes what fits of `files` individual and `wildcards` wildcard paths in the limits,
    /// asking CloudFront about this client's invalidations in progress first when the limits
    /// are full.
    async fn reserve(&self, files: usize, wildcards: usize) -> (usize, usize) {
        for refreshed in [false, true] {
            {
                let mut state = self.lock();
                let f = files.min(self.max_paths.saturating_sub(state.paths));
                let w = wildcards.min(self.max_wildcards.saturating_sub(state.wildcards));
                if f + w > 0 || refreshed || state.in_progress.is_empty() {
                    state.paths += f;
                    state.wildcards += w;
                    return (f, w);
                }
            }
            self.refresh().await;
        }
        (0, 0)
    }

    /// When room in the limits is expected: the oldest invalidation in progress plus the time
    /// the last one took to complete (`poll_interval` before any completed), at least
    /// `poll_interval`. The engine retries no sooner, so a retry is not spent in vain.
    fn room_in(&self) -> Duration {
        let state = self.lock();
        let typical = state.typical.unwrap_or(self.poll_interval);
        let now = Instant::now();
        state
            .in_progress
            .iter()
            .map(|i| (i.created + typical).saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::ZERO)
            .max(self.poll_interval)
    }

    /// The permanent failure to report for targets waiting for room while `GetInvalidation`
    /// is refused (see `State::polling_refused`).
    fn polling_refused(&self) -> Option<PurgeError> {
        let refused = self.lock().polling_refused.clone()?;
        Some(
            PurgeError::new(
                refused.cause().clone(),
                format!(
                    "the invalidations in progress of distribution {} are at the limit and cannot \
                     be seen completing: GetInvalidation {refused} (allow cloudfront:GetInvalidation)",
                    self.distribution
                ),
            )
            .on_server(&self.server),
        )
    }

    fn release(&self, files: usize, wildcards: usize) {
        let mut state = self.lock();
        state.paths = state.paths.saturating_sub(files);
        state.wildcards = state.wildcards.saturating_sub(wildcards);
    }

    /// Asks CloudFront for the status of this client's invalidations in progress, and gives
    /// back the limits' share of the completed ones.
    async fn refresh(&self) {
        // The oldest complete first: asking about a few of them is enough to find room, and
        // keeps the GetInvalidation calls few however many small invalidations there are.
        let mut list: Vec<InProgress> = self.lock().in_progress.clone();
        list.sort_by_key(|i| i.created);
        list.truncate(REFRESH_AT_MOST);
        for invalidation in list {
            match self.completed(&invalidation.id).await {
                Ok(done) => {
                    self.lock().polling_refused = None;
                    if done {
                        self.completed_release(&invalidation.id);
                    }
                }
                Err(e) if !e.is_transient() => self.lock().polling_refused = Some(e),
                Err(_) => {}
            }
        }
    }

    fn completed_release(&self, id: &str) {
        let mut state = self.lock();
        if let Some(k) = state.in_progress.iter().position(|i| i.id == id) {
            let done = state.in_progress.remove(k);
            state.typical = Some(done.created.elapsed());
            state.paths = state.paths.saturating_sub(done.paths);
            state.wildcards = state.wildcards.saturating_sub(done.wildcards);
        }
    }

    /// `GetInvalidation`: whether it is `Completed`.
    async fn completed(&self, id: &str) -> Result<bool, PurgeError> {
        let url = format!("{}/invalidation/{id}", self.distribution_url);
        let (status, retry_after, body) = self.call(Method::GET, &url, Vec::new()).await?;
        if status.is_success() {
            return Ok(text_of(&body, "Status").as_deref() == Some("Completed"));
        }
        if status == StatusCode::NOT_FOUND
            && code_of(&body).as_deref() == Some("NoSuchInvalidation")
        {
            // Gone: it holds nothing any more.
            return Ok(true);
        }
        Err(self.api_error(status, retry_after, &body))
    }

    /// A new, unique caller reference, also for the retry of a request whose outcome is
    /// unknown: reusing the earlier one would let CloudFront answer with an invalidation made
    /// before a later save of the same paths committed (the backend cannot tell a retry from
    /// that save), which could leave its page stale. A duplicate invalidation costs one more;
    /// a deduplicated one could cost a stale page.
    fn reference(&self, key: u64) -> String {
        let mut state = self.lock();
        state.counter += 1;
        let millis = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let reference = format!(
            "cache-purge-hooks-{millis}-{}-{}-{key:016x}",
            std::process::id(),
            state.counter
        );
        reference
    }

    /// Creates one invalidation (and waits for it with `wait = true`). Its share of the
    /// limits is reserved already; it is kept on success and given back otherwise.
    async fn invalidate(&self, batch: &Batch) -> Result<(), PurgeError> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        batch.paths.hash(&mut hasher);
        let key = hasher.finish();
        let reference = self.reference(key);
        let body = invalidation_batch(&reference, &batch.paths);
        let url = format!("{}/invalidation", self.distribution_url);
        let answer = self.call(Method::POST, &url, body.into_bytes()).await;
        let (status, retry_after, text) = match answer {
            Ok(answer) => answer,
            Err(e) => {
                // Maybe created: the retry is a new invalidation (see `reference`).
                self.release(batch.files, batch.wildcards);
                return Err(e);
            }
        };
        if !status.is_success() {
            self.release(batch.files, batch.wildcards);
            let error = self.api_error(status, retry_after, &text);
            return Err(error);
        }
        let Some(id) = text_of(&text, "Id") else {
            self.release(batch.files, batch.wildcards);
            return Err(PurgeError::new(
                Cause::Protocol,
                format!("answered {status} without an invalidation Id"),
            )
            .on_server(&self.server));
        };
        let done = text_of(&text, "Status").as_deref() == Some("Completed");
        {
            let mut state = self.lock();
            if done || state.in_progress.iter().any(|i| i.id == id) {
                // Completed already, or an invalidation counted already (CloudFront answered
                // with one it had): give this request's reservation back.
                state.paths = state.paths.saturating_sub(batch.files);
                state.wildcards = state.wildcards.saturating_sub(batch.wildcards);
            } else {
                state.in_progress.push(InProgress {
                    id: id.clone(),
                    paths: batch.files,
                    wildcards: batch.wildcards,
                    created: Instant::now(),
                });
            }
        }
        tracing::debug!(
            target: "cache_purge_hooks",
            distribution = %self.distribution,
            invalidation = %id,
            paths = batch.paths.len(),
            "invalidation created"
        );
        if done {
            // An earlier attempt's invalidation that completed meanwhile gives its share back.
            self.completed_release(&id);
        }
        if !self.wait || done {
            return Ok(());
        }
        self.wait_for(&id).await
    }

    /// Polls `GetInvalidation` until `Completed`, at most `wait_timeout`.
    async fn wait_for(&self, id: &str) -> Result<(), PurgeError> {
        let deadline = Instant::now() + self.wait_timeout;
        loop {
            match self.completed(id).await {
                Ok(true) => {
                    self.completed_release(id);
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) if e.is_transient() => {}
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(PurgeError::new(
                    Cause::Timeout,
                    format!(
                        "invalidation {id} of distribution {} is still in progress after {} (wait_timeout); \
                         it goes on, and a retry makes a new one",
                        self.distribution,
                        humantime::format_duration(self.wait_timeout)
                    ),
                )
                .on_server(&self.server));
            }
            tokio::time::sleep(self.poll_interval.min(deadline - now)).await;
        }
    }

    /// An error answer, from its status and CloudFront's `<ErrorResponse>`.
    fn api_error(
        &self,
        status: StatusCode,
        retry_after: Option<Duration>,
        text: &str,
    ) -> PurgeError {
        let code = code_of(text).unwrap_or_default();
        let message = text_of(text, "Message").unwrap_or_default();
        let quoted = if code.is_empty() {
            let cut: String = text.trim().chars().take(300).collect();
            if cut.is_empty() {
                "no body".to_owned()
            } else {
                cut.replace(['\r', '\n'], " ")
            }
        } else if message.is_empty() {
            code.clone()
        } else {
            format!("{code}: {message}")
        };
        let distribution = &self.distribution;
        let (cause, explained) = match code.as_str() {
            "TooManyInvalidationsInProgress" => (
                Cause::RateLimited {
                    retry_after: Some(retry_after.unwrap_or(self.poll_interval)),
                },
                format!(
                    "answered {status}: {quoted}: distribution {distribution} has its limit of invalidations in \
                     progress ({MAX_PATHS_IN_PROGRESS} paths, 15 wildcard paths), probably with other clients' \
                     invalidations; retried once some complete"
                ),
            ),
            "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequests" => (
                Cause::RateLimited { retry_after },
                format!("answered {status}: {quoted}: CloudFront throttled the API calls"),
            ),
            "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "InvalidSignatureException"
            | "MissingAuthenticationToken"
            | "ExpiredToken"
            | "UnrecognizedClientException"
            | "AuthFailure" => (
                Cause::Authentication,
                format!(
                    "answered {status}: {quoted}: AWS refused the credentials; check access_key_id and \
                     secret_access_key (and session_token, for temporary credentials)"
                ),
            ),
            "AccessDenied" | "AccessDeniedException" => (
                Cause::Authentication,
                format!(
                    "answered {status}: {quoted}: the credentials are valid but not allowed; give the IAM user or \
                     role cloudfront:CreateInvalidation, cloudfront:GetInvalidation and cloudfront:GetDistribution \
                     on distribution {distribution}"
                ),
            ),
            "NoSuchDistribution" => (
                Cause::Misconfigured,
                format!(
                    "answered {status}: {quoted}: there is no distribution {distribution} for these credentials; \
                     check distribution_id (the CloudFront console's ID column)"
                ),
            ),
            _ if status == StatusCode::TOO_MANY_REQUESTS => (
                Cause::RateLimited { retry_after },
                format!("answered {status}: {quoted}"),
            ),
            _ if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => (
                Cause::Authentication,
                format!(
                    "answered {status}: {quoted}: AWS refused the credentials or their permissions"
                ),
            ),
            _ if status == StatusCode::NOT_FOUND && code.is_empty() => (
                Cause::Misconfigured,
                format!(
                    "answered {status}: {quoted}: no such distribution {distribution}, or base_url is not the CloudFront API"
                ),
            ),
            _ if status.is_server_error() => (
                Cause::Status(status.as_u16()),
                format!("answered {status}: {quoted}"),
            ),
            _ => (
                Cause::Refused,
                format!(
                    "answered {status}: {quoted} (at most {MAX_PATHS_IN_PROGRESS} paths and 15 wildcard paths per invalidation)"
                ),
            ),
        };
        PurgeError::new(cause, explained).on_server(&self.server)
    }

    /// The batch's paths as invalidations, each within the limits and what is left of them.
    fn items(&self, batch: &[Target], failures: &mut Failures<'_>) -> (Vec<Item>, Vec<Item>) {
        let mut files: Vec<Item> = Vec::new();
        let mut wildcards: Vec<Item> = Vec::new();
        // Where each path is: the same path twice is sent once (CloudFront would count both),
        // and its targets share that one invalidation's outcome.
        let mut seen: std::collections::HashMap<String, (bool, usize)> =
            std::collections::HashMap::new();
        for target in batch {
            match self.path(target) {
                Ok(Some((path, wildcard))) => {
                    if let Some(&(w, i)) = seen.get(&path) {
                        let list = if w { &mut wildcards } else { &mut files };
                        if let Some(item) = list.get_mut(i) {
                            item.targets.push(target.clone());
                        }
                        continue;
                    }
                    let list = if wildcard { &mut wildcards } else { &mut files };
                    seen.insert(path.clone(), (wildcard, list.len()));
                    list.push(Item {
                        targets: vec![target.clone()],
                        path,
                    });
                }
                Ok(None) => {}
                Err(message) => failures.push(
                    PurgeError::new(Cause::Misconfigured, message).only(vec![target.clone()]),
                ),
            }
        }
        (files, wildcards)
    }
}

/// The `InvalidationBatch` body.
fn invalidation_batch(reference: &str, paths: &[String]) -> String {
    let mut body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InvalidationBatch xmlns=\"{XMLNS}\"><CallerReference>{}</CallerReference><Paths><Quantity>{}</Quantity><Items>",
        escape(reference),
        paths.len()
    );
    for path in paths {
        body.push_str("<Path>");
        body.push_str(&escape(path));
        body.push_str("</Path>");
    }
    body.push_str("</Items></Paths></InvalidationBatch>");
    body
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The inside of the first `<name>...</name>` element (attributes allowed).
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}");
    let mut from = 0;
    while let Some(at) = xml[from..].find(&open) {
        let start = from + at + open.len();
        let rest = &xml[start..];
        match rest.chars().next() {
            Some('>') => {
                let body = &rest[1..];
                let end = body.find(&format!("</{name}>"))?;
                return Some(&body[..end]);
            }
            Some(c) if c.is_whitespace() => {
                let close = rest.find('>')?;
                if rest[..close].ends_with('/') {
                    return Some("");
                }
                let body = &rest[close + 1..];
                let end = body.find(&format!("</{name}>"))?;
                return Some(&body[..end]);
            }
            _ => from = start,
        }
    }
    None
}

/// Every `<name>text</name>` directly in `xml`, unescaped.
fn elements(xml: &str, name: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(inner) = element(rest, name) {
        found.push(unescape(inner.trim()));
        let close = format!("</{name}>");
        match rest.find(&close) {
            Some(end) => rest = &rest[end + close.len()..],
            None => break,
        }
    }
    found
}

fn text_of(xml: &str, name: &str) -> Option<String> {
    element(xml, name).map(|t| unescape(t.trim()))
}

/// The `<Code>` of an `<ErrorResponse>`.
fn code_of(xml: &str) -> Option<String> {
    element(xml, "Error").and_then(|e| text_of(e, "Code"))
}

#[async_trait::async_trait]
impl Backend for CloudFrontBackend {
    /// URLs (exact paths), prefixes (`/prefix*` wildcards) and everything (`/*`); no tags.
    fn capabilities(&self) -> Capabilities {
        Capabilities::URL | Capabilities::PREFIX | Capabilities::EVERYTHING
    }

    /// One invalidation's worth of paths (the limit in progress, `max_paths_in_progress`).
    fn max_batch(&self) -> usize {
        self.max_paths
    }

    fn max_concurrency(&self) -> usize {
        2
    }

    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
        let mut failures = Failures::new(batch);
        let mut pending: Vec<Batch> = Vec::new();
        if batch.contains(&Target::Everything) {
            pending.push(Batch {
                targets: batch.to_vec(),
                paths: vec!["/*".to_owned()],
                files: 0,
                wildcards: 1,
            });
        } else {
            let (files, wildcards) = self.items(batch, &mut failures);
            let mut files = files.into_iter().peekable();
            let mut wildcards = wildcards.into_iter().peekable();
            while files.peek().is_some() || wildcards.peek().is_some() {
                let want_f = files.len().min(self.max_paths);
                let want_w = wildcards.len().min(self.max_wildcards);
                let (f, w) = self.reserve(want_f, want_w).await;
                if f == 0 && w == 0 {
                    break;
                }
                let mut b = Batch {
                    targets: Vec::new(),
                    paths: Vec::new(),
                    files: f,
                    wildcards: w,
                };
                for item in files.by_ref().take(f).chain(wildcards.by_ref().take(w)) {
                    b.targets.extend(item.targets);
                    b.paths.push(item.path);
                }
                if let Err(e) = self.invalidate(&b).await {
                    failures.push(e.only(b.targets));
                }
            }
            let left: Vec<Target> = files.chain(wildcards).flat_map(|i| i.targets).collect();
            if !left.is_empty() {
                let (paths, wild) = self.in_progress();
                if let Some(refused) = self.polling_refused() {
                    failures.push(refused.only(left));
                    return failures.into_result();
                }
                failures.push(
                    PurgeError::new(
                        Cause::RateLimited {
                            retry_after: Some(self.room_in()),
                        },
                        format!(
                            "the invalidations in progress of distribution {} are at the limit ({paths} of {} paths, \
                             {wild} of {} wildcard paths held by this client); retried once some complete",
                            self.distribution, self.max_paths, self.max_wildcards
                        ),
                    )
                    .on_server(&self.server)
                    .only(left),
                );
            }
            return failures.into_result();
        }
        for b in pending {
            let (f, w) = self.reserve(b.files, b.wildcards).await;
            if w < b.wildcards {
                self.release(f, w);
                if let Some(refused) = self.polling_refused() {
                    failures.push(refused.only(b.targets));
                    continue;
                }
                failures.push(
                    PurgeError::new(
                        Cause::RateLimited {
                            retry_after: Some(self.room_in()),
                        },
                        format!(
                            "the wildcard invalidations in progress of distribution {} are at the limit ({}); \
                             `/*` is retried once some complete",
                            self.distribution, self.max_wildcards
                        ),
                    )
                    .on_server(&self.server)
                    .only(b.targets),
                );
                continue;
            }
            if let Err(e) = self.invalidate(&b).await {
                failures.push(e.only(b.targets));
            }
        }
        failures.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_body_is_the_documented_xml_escaped() {
        let body = invalidation_batch("ref-1", &["/a?x=1&y=2".to_owned(), "/blog/*".to_owned()]);
        assert!(body.contains(
            "<InvalidationBatch xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\">"
        ));
        assert!(body.contains("<CallerReference>ref-1</CallerReference>"));
        assert!(body.contains(
            "<Quantity>2</Quantity><Items><Path>/a?x=1&amp;y=2</Path><Path>/blog/*</Path></Items>"
        ));
    }

    #[test]
    fn error_responses_are_read_for_their_code_and_message() {
        let xml = "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\">\
                   <Error><Type>Sender</Type><Code>NoSuchDistribution</Code><Message>The specified distribution does not exist.</Message></Error>\
                   <RequestId>1</RequestId></ErrorResponse>";
        assert_eq!(code_of(xml).as_deref(), Some("NoSuchDistribution"));
        assert_eq!(
            text_of(xml, "Message").as_deref(),
            Some("The specified distribution does not exist.")
        );
        let dist = "<Distribution><Id>E1</Id><Aliases><Quantity>2</Quantity><Items><CNAME>a.example.com</CNAME><CNAME>b.example.com</CNAME></Items></Aliases></Distribution>";
        assert_eq!(
            element(dist, "Aliases").map(|a| elements(a, "CNAME")),
            Some(vec!["a.example.com".to_owned(), "b.example.com".to_owned()])
        );
    }
}
