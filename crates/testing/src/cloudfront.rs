//! A local fake of CloudFront's invalidation API that enforces the documented contract,
//! SigV4 signatures included.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use serde::Deserialize;

use crate::background::BackgroundServer;
use crate::cdn::{self, lock};
use crate::error::Result;

/// Individual paths in progress per distribution (CloudFront Developer Guide, "Concurrent
/// invalidation request maximum": "up to 3,000 files per distribution in progress at one
/// time"). Written here independently of the backend's constant.
pub const CLOUDFRONT_MAX_PATHS_IN_PROGRESS: usize = 3000;
/// Wildcard paths in progress per distribution (same page: "up to 15 invalidation paths in
/// progress at one time"), independent of the individual paths.
pub const CLOUDFRONT_MAX_WILDCARDS_IN_PROGRESS: usize = 15;

const XMLNS: &str = "http://cloudfront.amazonaws.com/doc/2020-05-31/";
/// The longest invalidation path (Developer Guide, "Invalidation paths").
const MAX_PATH_LEN: usize = 4000;
/// How far the request's `X-Amz-Date` may be from the fake's clock (SigV4: 5 minutes).
const MAX_SKEW: Duration = Duration::from_secs(300);

/// How a [`CloudFrontFake`] behaves.
#[derive(Clone, Debug)]
pub struct CloudFrontFakeConfig {
    /// The one distribution it knows.
    pub distribution_id: String,
    /// Its CloudFront domain name.
    pub domain_name: String,
    /// Its alternate domain names.
    pub aliases: Vec<String>,
    /// The one access key ID it accepts.
    pub access_key_id: String,
    /// Its secret: the fake recomputes every signature with it.
    pub secret_access_key: String,
    /// The session token it requires, for temporary credentials.
    pub session_token: Option<String>,
    /// How long an invalidation stays `InProgress` (default 200 ms); `None`: until
    /// [`complete_all`](CloudFrontFake::complete_all).
    pub completes_after: Option<Duration>,
    /// The limit of individual paths in progress (default the documented 3,000).
    pub max_paths_in_progress: usize,
    /// The limit of wildcard paths in progress (default the documented 15).
    pub max_wildcards_in_progress: usize,
    /// The access key may not call `GetInvalidation` (default `false`): it is answered 403
    /// `AccessDenied`, as for an IAM policy allowing only `cloudfront:CreateInvalidation`.
    pub deny_get_invalidation: bool,
}

impl Default for CloudFrontFakeConfig {
    fn default() -> Self {
        Self {
            distribution_id: "EDFDVBD6EXAMPLE".to_owned(),
            domain_name: "d111111abcdef8.cloudfront.net".to_owned(),
            aliases: vec!["www.example.com".to_owned()],
            access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
            session_token: None,
            completes_after: Some(Duration::from_millis(200)),
            max_paths_in_progress: CLOUDFRONT_MAX_PATHS_IN_PROGRESS,
            max_wildcards_in_progress: CLOUDFRONT_MAX_WILDCARDS_IN_PROGRESS,
            deny_get_invalidation: false,
        }
    }
}

/// One invalidation accepted by a [`CloudFrontFake`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudFrontInvalidation {
    /// Its ID (`I2J0I21PCUYOIK`).
    pub id: String,
    /// The caller reference it was created with.
    pub caller_reference: String,
    /// Its paths, in order.
    pub paths: Vec<String>,
}

#[derive(Debug)]
struct Created {
    invalidation: CloudFrontInvalidation,
    at: Instant,
    completed: bool,
}

impl Created {
    fn is_completed(&self, after: Option<Duration>) -> bool {
        self.completed || after.is_some_and(|a| self.at.elapsed() >= a)
    }

    fn counts(&self) -> (usize, usize) {
        let wildcards = self
            .invalidation
            .paths
            .iter()
            .filter(|p| p.ends_with('*'))
            .count();
        (self.invalidation.paths.len() - wildcards, wildcards)
    }
}

#[derive(Debug)]
struct State {
    config: CloudFrontFakeConfig,
    created: Vec<Created>,
    throttle: u32,
    statuses: Vec<u16>,
    codes: Vec<String>,
}

impl State {
    fn in_progress(&self) -> (usize, usize) {
        let after = self.config.completes_after;
        self.created
            .iter()
            .filter(|c| !c.is_completed(after))
            .map(Created::counts)
            .fold((0, 0), |(a, b), (f, w)| (a + f, b + w))
    }
}

/// A local fake of the CloudFront API on `127.0.0.1:<free port>`: `CreateInvalidation`,
/// `GetInvalidation` and `GetDistribution` (API version 2020-05-31) of one distribution. It
/// enforces the documented contract and records what was invalidated:
///
/// - every request is SigV4-signed for `us-east-1`/`cloudfront`: the fake recomputes the
///   signature (with the `aws-sigv4` crate and its own copy of the secret) and answers `403`
///   `SignatureDoesNotMatch` on a mismatch, `403 InvalidClientTokenId` for another key,
///   `403 MissingAuthenticationToken` without one, and checks `X-Amz-Date` (5 minutes);
/// - another distribution ID is `404 NoSuchDistribution`;
/// - the `InvalidationBatch` XML is validated: the namespace, `CallerReference`, `Quantity`
///   equal to the `Path` items (`InconsistentQuantities`), paths starting with `/`, at most
///   4,000 characters, `*` only at the end (`InvalidArgument`), no body (`MissingBody`);
/// - more than 3,000 paths or 15 wildcard paths in one batch is `413 BatchTooLarge`; more
///   than that in progress at once is `400 TooManyInvalidationsInProgress`;
/// - the same `CallerReference` with the same paths returns the first invalidation (nothing
///   new is created); with other paths, `409 InvalidationBatchAlreadyExists`;
/// - [`throttle`](Self::throttle) answers the next requests `400 Throttling`.
///
/// Errors are CloudFront's `<ErrorResponse><Error><Type>Sender</Type><Code>...`.
///
/// ```
/// use cache_purge_hooks_testing::{CloudFrontFake, CloudFrontFakeConfig};
///
/// let fake = CloudFrontFake::start(CloudFrontFakeConfig::default())?;
/// assert!(fake.base_url().starts_with("http://127.0.0.1:"));
/// assert!(fake.invalidations().is_empty());
/// # Ok::<(), cache_purge_hooks_testing::HarnessError>(())
/// ```
#[derive(Debug)]
pub struct CloudFrontFake {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _server: BackgroundServer,
}

impl CloudFrontFake {
    /// Starts the fake with `config`.
    pub fn start(config: CloudFrontFakeConfig) -> Result<CloudFrontFake> {
        let state = Arc::new(Mutex::new(State {
            config,
            created: Vec::new(),
            throttle: 0,
            statuses: Vec::new(),
            codes: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        let (addr, server) = cdn::serve("cph-cloudfront-fake", move |request| {
            let state = Arc::clone(&shared);
            async move {
                let (response, code) = handle(&state, request).await;
                let mut s = lock(&state);
                s.statuses.push(response.status().as_u16());
                if let Some(code) = code {
                    s.codes.push(code);
                }
                response
            }
        })?;
        Ok(CloudFrontFake {
            addr,
            state,
            _server: server,
        })
    }

    /// The `base_url` to give the backend: `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The distribution ID it knows.
    pub fn distribution_id(&self) -> String {
        lock(&self.state).config.distribution_id.clone()
    }

    /// The access key ID it accepts.
    pub fn access_key_id(&self) -> String {
        lock(&self.state).config.access_key_id.clone()
    }

    /// The secret it signs with.
    pub fn secret_access_key(&self) -> String {
        lock(&self.state).config.secret_access_key.clone()
    }

    /// Every invalidation created, in order.
    pub fn invalidations(&self) -> Vec<CloudFrontInvalidation> {
        lock(&self.state)
            .created
            .iter()
            .map(|c| c.invalidation.clone())
            .collect()
    }

    /// Every path invalidated, in order.
    pub fn paths(&self) -> Vec<String> {
        lock(&self.state)
            .created
            .iter()
            .flat_map(|c| c.invalidation.paths.clone())
            .collect()
    }

    /// Individual and wildcard paths in progress now.
    pub fn in_progress(&self) -> (usize, usize) {
        lock(&self.state).in_progress()
    }

    /// The status of every answer, in order.
    pub fn status_codes(&self) -> Vec<u16> {
        lock(&self.state).statuses.clone()
    }

    /// The error codes answered (`TooManyInvalidationsInProgress`...), in order.
    pub fn error_codes(&self) -> Vec<String> {
        lock(&self.state).codes.clone()
    }

    /// Marks every invalidation `Completed`.
    pub fn complete_all(&self) {
        for c in &mut lock(&self.state).created {
            c.completed = true;
        }
    }

    /// Answers the next `count` requests `400 Throttling` ("Rate exceeded").
    pub fn throttle(&self, count: u32) {
        lock(&self.state).throttle = count;
    }
}

type Answer = (Response<Body>, Option<String>);

fn xml(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// CloudFront's error body.
fn error(status: StatusCode, code: &str, message: &str) -> Answer {
    let body = format!(
        "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type><Code>{code}</Code>\
         <Message>{}</Message></Error><RequestId>b2f5c1a4-0000-4000-8000-000000000000</RequestId></ErrorResponse>",
        escape(message)
    );
    (xml(status, body), Some(code.to_owned()))
}

fn invalidation_xml(c: &Created, after: Option<Duration>) -> String {
    let status = if c.is_completed(after) {
        "Completed"
    } else {
        "InProgress"
    };
    let inv = &c.invalidation;
    let mut paths = String::new();
    for p in &inv.paths {
        paths.push_str(&format!("<Path>{}</Path>", escape(p)));
    }
    format!(
        "<?xml version=\"1.0\"?>\n<Invalidation xmlns=\"{XMLNS}\"><Id>{}</Id><Status>{status}</Status>\
         <CreateTime>2026-01-01T00:00:00.000Z</CreateTime><InvalidationBatch><Paths><Quantity>{}</Quantity>\
         <Items>{paths}</Items></Paths><CallerReference>{}</CallerReference></InvalidationBatch></Invalidation>",
        inv.id,
        inv.paths.len(),
        escape(&inv.caller_reference)
    )
}

async fn handle(state: &Arc<Mutex<State>>, request: Request<Body>) -> Answer {
    let config = lock(state).config.clone();
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, cdn::MAX_BODY).await else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "unreadable body",
        );
    };
    if let Err(answer) = verify(&config, &parts.method, &parts.uri, &parts.headers, &body) {
        return *answer;
    }
    {
        let mut s = lock(state);
        if s.throttle > 0 {
            s.throttle -= 1;
            return error(StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded");
        }
    }
    let path = parts.uri.path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["2020-05-31", "distribution", id, rest @ ..] = segments.as_slice() else {
        return error(StatusCode::NOT_FOUND, "NoSuchResource", "no such resource");
    };
    if *id != config.distribution_id {
        return error(
            StatusCode::NOT_FOUND,
            "NoSuchDistribution",
            "The specified distribution does not exist.",
        );
    }
    match (&parts.method, rest) {
        (&Method::GET, []) => {
            let mut aliases = String::new();
            for a in &config.aliases {
                aliases.push_str(&format!("<CNAME>{}</CNAME>", escape(a)));
            }
            let body = format!(
                "<?xml version=\"1.0\"?>\n<Distribution xmlns=\"{XMLNS}\"><Id>{}</Id><ARN>arn:aws:cloudfront::123456789012:distribution/{}</ARN>\
                 <Status>Deployed</Status><InProgressInvalidationBatches>0</InProgressInvalidationBatches>\
                 <DomainName>{}</DomainName><DistributionConfig><Aliases><Quantity>{}</Quantity><Items>{aliases}</Items></Aliases>\
                 <Enabled>true</Enabled></DistributionConfig></Distribution>",
                config.distribution_id,
                config.distribution_id,
                config.domain_name,
                config.aliases.len()
            );
            let mut response = xml(StatusCode::OK, body);
            response
                .headers_mut()
                .insert(header::ETAG, HeaderValue::from_static("E2QWRUHEXAMPLE"));
            (response, None)
        }
        (&Method::POST, ["invalidation"]) => create(state, &parts.headers, &body),
        (&Method::GET, ["invalidation", _]) if lock(state).config.deny_get_invalidation => error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "User is not authorized to perform: cloudfront:GetInvalidation",
        ),
        (&Method::GET, ["invalidation", iid]) => {
            let s = lock(state);
            match s.created.iter().find(|c| c.invalidation.id == *iid) {
                Some(c) => (
                    xml(
                        StatusCode::OK,
                        invalidation_xml(c, s.config.completes_after),
                    ),
                    None,
                ),
                None => error(
                    StatusCode::NOT_FOUND,
                    "NoSuchInvalidation",
                    "The specified invalidation does not exist.",
                ),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "NoSuchResource", "no such resource"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidationBatchXml {
    #[serde(rename = "@xmlns")]
    xmlns: Option<String>,
    #[serde(rename = "CallerReference")]
    caller_reference: String,
    #[serde(rename = "Paths")]
    paths: PathsXml,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathsXml {
    #[serde(rename = "Quantity")]
    quantity: i64,
    #[serde(rename = "Items", default)]
    items: Option<ItemsXml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemsXml {
    #[serde(rename = "Path", default)]
    path: Vec<String>,
}

fn create(state: &Arc<Mutex<State>>, headers: &HeaderMap, body: &[u8]) -> Answer {
    if body.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "MissingBody",
            "This operation requires a body. Ensure that the body is present and the Content-Type header is set.",
        );
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.contains("xml") {
        return error(
            StatusCode::BAD_REQUEST,
            "MissingBody",
            "This operation requires a body. Ensure that the body is present and the Content-Type header is set.",
        );
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "the body is not UTF-8",
        );
    };
    let mut root = text.trim_start();
    if root.starts_with("<?xml") {
        root = root.find("?>").map_or("", |i| root[i + 2..].trim_start());
    }
    if !root.starts_with("<InvalidationBatch") {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "the root element must be InvalidationBatch",
        );
    }
    let batch: InvalidationBatchXml = match quick_xml::de::from_str(text) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                &format!("the InvalidationBatch XML is malformed: {e}"),
            );
        }
    };
    if batch.xmlns.as_deref() != Some(XMLNS) {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            &format!("the InvalidationBatch must be in the namespace {XMLNS}"),
        );
    }
    if batch.caller_reference.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "CallerReference is required",
        );
    }
    let paths = batch.paths.items.map(|i| i.path).unwrap_or_default();
    if usize::try_from(batch.paths.quantity).ok() != Some(paths.len()) {
        return error(
            StatusCode::BAD_REQUEST,
            "InconsistentQuantities",
            "The value of Quantity and the size of Items don't match.",
        );
    }
    if paths.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Your request must contain at least one invalidation path.",
        );
    }
    for p in &paths {
        let star = p.find('*');
        if !p.starts_with('/')
            || p.len() > MAX_PATH_LEN
            || star.is_some_and(|i| i != p.len() - 1)
            || p.bytes().any(|b| !b.is_ascii_graphic())
        {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                &format!(
                    "Your request contains one or more invalid invalidation paths: {p:?} (a path starts with /, \
                     is URL-encoded, at most {MAX_PATH_LEN} characters, with * only at the end)"
                ),
            );
        }
    }
    let wildcards = paths.iter().filter(|p| p.ends_with('*')).count();
    let files = paths.len() - wildcards;
    let mut s = lock(state);
    if files > s.config.max_paths_in_progress || wildcards > s.config.max_wildcards_in_progress {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BatchTooLarge",
            &format!(
                "Invalidation batch specified is too large: {files} paths and {wildcards} wildcard paths (at most {} and {})",
                s.config.max_paths_in_progress, s.config.max_wildcards_in_progress
            ),
        );
    }
    let after = s.config.completes_after;
    if let Some(existing) = s
        .created
        .iter()
        .find(|c| c.invalidation.caller_reference == batch.caller_reference)
    {
        if existing.invalidation.paths == paths {
            return (
                xml(StatusCode::CREATED, invalidation_xml(existing, after)),
                None,
            );
        }
        return error(
            StatusCode::CONFLICT,
            "InvalidationBatchAlreadyExists",
            "The CallerReference was used before with other paths.",
        );
    }
    let (in_files, in_wildcards) = s.in_progress();
    if in_files + files > s.config.max_paths_in_progress
        || in_wildcards + wildcards > s.config.max_wildcards_in_progress
    {
        return error(
            StatusCode::BAD_REQUEST,
            "TooManyInvalidationsInProgress",
            &format!(
                "Your request contains too many invalidations: {in_files} paths and {in_wildcards} wildcard paths are in progress"
            ),
        );
    }
    let id = format!("I{:013}", s.created.len() + 1);
    let created = Created {
        invalidation: CloudFrontInvalidation {
            id: id.clone(),
            caller_reference: batch.caller_reference,
            paths,
        },
        at: Instant::now(),
        completed: false,
    };
    let body = invalidation_xml(&created, after);
    let location = format!(
        "https://cloudfront.amazonaws.com/2020-05-31/distribution/{}/invalidation/{id}",
        s.config.distribution_id
    );
    s.created.push(created);
    let mut response = xml(StatusCode::CREATED, body);
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    (response, None)
}

/// `X-Amz-Date` (`20260101T120000Z`) as a time.
fn amz_date(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

fn denied(code: &str, message: &str) -> Answer {
    error(StatusCode::FORBIDDEN, code, message)
}

/// Recomputes the request's SigV4 signature with the configured secret.
fn verify(
    config: &CloudFrontFakeConfig,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> std::result::Result<(), Box<Answer>> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(authorization) = get("authorization") else {
        return Err(Box::new(denied(
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        )));
    };
    let incomplete = || {
        error(
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
            "The request signature does not conform to AWS standards.",
        )
    };
    let Some(fields) = authorization.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err(Box::new(incomplete()));
    };
    let mut credential = None;
    let mut signed_headers = None;
    for field in fields.split(',') {
        let field = field.trim();
        if let Some(v) = field.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = field.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        }
    }
    let (Some(credential), Some(signed_headers)) = (credential, signed_headers) else {
        return Err(Box::new(incomplete()));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [key, _date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(Box::new(incomplete()));
    };
    if *key != config.access_key_id {
        return Err(Box::new(denied(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        )));
    }
    if *region != "us-east-1" || *service != "cloudfront" {
        return Err(Box::new(denied(
            "SignatureDoesNotMatch",
            &format!(
                "Credential should be scoped to a valid region and service: us-east-1/cloudfront, not {region}/{service}."
            ),
        )));
    }
    match (&config.session_token, get("x-amz-security-token")) {
        (Some(want), Some(got)) if want == got => {}
        (None, None) => {}
        _ => {
            return Err(Box::new(denied(
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            )));
        }
    }
    let Some(time) = get("x-amz-date").and_then(amz_date) else {
        return Err(Box::new(incomplete()));
    };
    let now = SystemTime::now();
    let skew = now
        .duration_since(time)
        .or_else(|_| time.duration_since(now))
        .unwrap_or_default();
    if skew > MAX_SKEW {
        return Err(Box::new(denied(
            "SignatureDoesNotMatch",
            "Signature expired: the request time is more than 5 minutes from the current time.",
        )));
    }
    let mut signable_headers: Vec<(&str, &str)> = Vec::new();
    for name in signed_headers.split(';') {
        if matches!(name, "x-amz-date" | "x-amz-security-token") {
            continue;
        }
        let Some(value) = get(name) else {
            return Err(Box::new(denied(
                "SignatureDoesNotMatch",
                &format!("the signed header {name} is not in the request"),
            )));
        };
        signable_headers.push((name, value));
    }
    let host = get("host").unwrap_or("localhost");
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("http://{host}{target}");
    let identity: Identity = Credentials::new(
        config.access_key_id.clone(),
        config.secret_access_key.clone(),
        config.session_token.clone(),
        None,
        "cloudfront fake",
    )
    .into();
    let expected = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("cloudfront")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .ok()
        .map(Into::into)
        .and_then(|params| {
            let signable = SignableRequest::new(
                method.as_str(),
                url,
                signable_headers.into_iter(),
                SignableBody::Bytes(body),
            )
            .ok()?;
            let (instructions, _) = sign(signable, &params).ok()?.into_parts();
            instructions
                .headers()
                .find(|(n, _)| *n == "authorization")
                .map(|(_, v)| v.to_owned())
        });
    if expected.as_deref() != Some(authorization) {
        return Err(Box::new(denied(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method.",
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_are_read_as_utc_times() {
        let t = amz_date("20150830T123600Z").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_440_938_160
        );
        assert!(amz_date("2015-08-30T12:36:00Z").is_none());
    }
}
