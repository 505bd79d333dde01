//! Verification: after a purge, ask the cache itself whether the page is gone.
//!
//! A 200 from a purge endpoint proves the request was accepted, not that the page left the
//! cache (a purge aimed at another cache key, a VCL that answers PURGE without purging). With
//! `verify` on a backend ([`VerifySettings`]), its worker requests each purged URL (all, or a
//! sample) **through the cache's own address** (`verify_url`; never the URL's own host, which
//! may be another cache or the world), with the URL's host in `Host`, and reads the cache's
//! signal: the header `verify_header` (`X-Cache-Status` for nginx, `X-Cache` otherwise) with one
//! of the `verify_hit` values (`HIT`), or, with `verify_header = "Age"`, an age above 0.
//!
//! - Not a hit: the purge took; counted `verified`.
//! - A hit: logged at WARN and purged once more, then asked again; still a hit: counted
//!   `verify_failed` and logged at ERROR with a hint about the likely misconfiguration.
//! - No answer: logged at WARN (`could not verify`), counted neither way.
//!
//! **Refresh** (`refresh = true`): every purged URL not verified is requested once through the
//! same address, so that the next visitor does not pay the miss, at most `verify_concurrency`
//! at a time and `refresh_rate` started per second; counted `refreshed`. (A purge and a GET;
//! on Varnish, `http_method = "refresh"` refreshes in place instead, with
//! `req.hash_always_miss`: docs/varnish.md.)
//!
//! **Tags** are checked on the URLs their index knew (nginx with `tags = "index"`): the
//! worker looks the round's tags up before purging them (the purge forgets them from the
//! index), then verifies at most [`TAG_URLS_VERIFIED`] of each tag's URLs, at random (every
//! tag with `"all"`, a share of the tags with a rate), and refreshes the others with
//! `refresh`. Prefixes, purges of everything and tags without an index name no URL the engine
//! knows, and are not checked. Verification runs in a task beside the backend's worker, one round of purges after
//! another and at most `verify_concurrency` requests at a time, so that a slow answer never
//! delays the next purges; at most 10,000 URLs wait for their check (more are counted
//! `verify_skipped`), and [`Purger::flush`](crate::Purger::flush) waits for the checks of what
//! was purged before it. Its GET puts the fresh page back in the cache (the first visitor does not pay the
//! miss). A visitor fetching the page between the purge and the check makes it a hit again,
//! so a rare `verify_failed` on a busy page may be a false alarm: the second purge then
//! clears it anyway.

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::settings::types::{BaseUrl, HeaderName, InvalidValue};

/// How many purged URLs a backend verifies (`verify`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum VerifyMode {
    /// None (`"off"`, the default).
    #[default]
    Off,
    /// Every one (`"all"`).
    All,
    /// This share of them, above 0 and at most 1 (`verify = 0.1`: one in ten, at random).
    Sample(f64),
}

impl VerifyMode {
    /// Whether verification is on.
    pub fn is_on(&self) -> bool {
        !matches!(self, Self::Off)
    }

    /// Whether to verify the next URL (a random draw for a sample).
    pub fn picks(&self) -> bool {
        match self {
            Self::Off => false,
            Self::All => true,
            Self::Sample(rate) => fastrand::f64() < *rate,
        }
    }

    fn rate(rate: f64) -> Result<Self, InvalidValue> {
        if rate.is_finite() && rate > 0.0 && rate <= 1.0 {
            Ok(if rate == 1.0 {
                Self::All
            } else {
                Self::Sample(rate)
            })
        } else {
            Err(InvalidValue::new(format!(
                "`{rate}` is not a sample rate: expected `\"off\"`, `\"all\"` or a share above 0 and at most 1 (`0.1`)"
            )))
        }
    }
}

impl FromStr for VerifyMode {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Self::Off),
            "all" => Ok(Self::All),
            other => match other.parse::<f64>() {
                Ok(rate) => Self::rate(rate),
                Err(_) => Err(InvalidValue::new(format!(
                    "unknown verify mode `{other}`; expected `\"off\"`, `\"all\"` or a share above 0 and at most 1 (`0.1`)"
                ))),
            },
        }
    }
}

impl fmt::Display for VerifyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::All => f.write_str("all"),
            Self::Sample(rate) => write!(f, "{rate}"),
        }
    }
}

impl Serialize for VerifyMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Sample(rate) => s.serialize_f64(*rate),
            other => s.collect_str(other),
        }
    }
}

impl<'de> Deserialize<'de> for VerifyMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Mode;
        impl serde::de::Visitor<'_> for Mode {
            type Value = VerifyMode;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"off\", \"all\" or a share above 0 and at most 1")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<VerifyMode, E> {
                s.parse().map_err(|e: InvalidValue| E::custom(e.message))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<VerifyMode, E> {
                VerifyMode::rate(v).map_err(|e| E::custom(e.message))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<VerifyMode, E> {
                self.visit_f64(v as f64)
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<VerifyMode, E> {
                self.visit_f64(v as f64)
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<VerifyMode, E> {
                Ok(if v { VerifyMode::All } else { VerifyMode::Off })
            }
        }
        d.deserialize_any(Mode)
    }
}

/// The `verify*` keys of a backend (see the [module documentation](self)).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct VerifySettings {
    /// How many purged URLs to verify (`verify`, default `"off"`).
    #[serde(rename = "verify", skip_serializing_if = "is_off")]
    pub mode: VerifyMode,
    /// The cache's public HTTP address, where the check's GET goes (`verify_url`); default:
    /// the first of `servers` for nginx and Varnish in `http` mode (required otherwise).
    #[serde(rename = "verify_url", skip_serializing_if = "Option::is_none")]
    pub url: Option<BaseUrl>,
    /// The header that tells a hit (`verify_header`); default `X-Cache-Status` for nginx,
    /// `CF-Cache-Status` for Cloudflare, `X-Cache` otherwise. `Age`: a hit is an age above 0.
    #[serde(rename = "verify_header", skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderName>,
    /// The values of the header that mean a hit, compared without case (`verify_hit`,
    /// default `["HIT"]`).
    #[serde(rename = "verify_hit", skip_serializing_if = "is_default_hit")]
    pub hit: Vec<String>,
    /// Checks (and refreshes) in flight at once (`verify_concurrency`, default 4).
    #[serde(
        rename = "verify_concurrency",
        skip_serializing_if = "is_default_concurrency"
    )]
    pub concurrency: NonZeroUsize,
    /// Refresh after purge (`refresh`, default `false`): every purged URL not verified is
    /// requested once through the same address, so that the next visitor does not pay the
    /// miss (a verified URL already was). See the [module documentation](self).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refresh: bool,
    /// The most refreshes started per second, minute or hour (`refresh_rate`, `"50/s"`;
    /// default: no limit but `verify_concurrency`), so that a large purge does not stampede
    /// the origin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_rate: Option<crate::settings::RequestRate>,
}

fn is_off(mode: &VerifyMode) -> bool {
    !mode.is_on()
}

fn is_default_hit(hit: &[String]) -> bool {
    hit == ["HIT"]
}

fn is_default_concurrency(n: &NonZeroUsize) -> bool {
    n.get() == 4
}

impl Default for VerifySettings {
    fn default() -> Self {
        Self {
            mode: VerifyMode::Off,
            url: None,
            header: None,
            hit: vec!["HIT".to_owned()],
            concurrency: NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN),
            refresh: false,
            refresh_rate: None,
        }
    }
}

impl VerifySettings {
    /// Verification of every purged URL through the cache at `url`.
    pub fn all(url: BaseUrl) -> Self {
        Self {
            mode: VerifyMode::All,
            url: Some(url),
            ..Self::default()
        }
    }

    /// These settings, asking the cache at this address (`verify_url`).
    pub fn url(mut self, url: BaseUrl) -> Self {
        self.url = Some(url);
        self
    }

    /// These settings, judging hits by this header.
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = Some(header);
        self
    }

    /// These settings, refreshing (or not) what they do not verify.
    pub fn refresh(mut self, refresh: bool) -> Self {
        self.refresh = refresh;
        self
    }

    /// Whether the address is used at all: verification or refresh is on.
    pub fn needs_address(&self) -> bool {
        self.mode.is_on() || self.refresh
    }

    /// These settings, with this mode.
    pub fn mode(mut self, mode: VerifyMode) -> Self {
        self.mode = mode;
        self
    }
}

/// A purge that verification found had not taken: the page was still served from the cache
/// after it and after a second purge.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyFailure {
    /// The URL still cached.
    pub url: crate::PurgeUrl,
    /// What to check (see [`hint_for`]).
    pub hint: &'static str,
}

/// What to check when a purge of this kind of backend (`kind`) was accepted and the page is
/// still cached.
pub fn hint_for(kind: &str) -> &'static str {
    match kind {
        "nginx" => {
            "nginx accepted the purge, but the page is still cached: the purge does not reach the \
             page's cache key. The key of the purge location (proxy_cache_purge ... from ...; \
             its proxy_cache_key) or, in files mode, key_template must be the proxy_cache_key \
             of the cached location, host and scheme parts included (docs/nginx.md)"
        }
        "varnish" => {
            "Varnish accepted the purge, but the page is still cached: the VCL may answer PURGE \
             or BAN without purging (vcl_recv must return (hash) for PURGE and vcl_hit call \
             purge.hard(), as deploy/varnish/cache-purge.vcl does), or the ban names another \
             host than the page's (site_domain, ban_host_header)"
        }
        _ => {
            "the backend accepted the purge, but the page is still cached: check that the purge \
             and the page share one cache key (host, scheme, path and query)"
        }
    }
}

/// The most URLs of one purged tag that are verified (a random sample of those the tag
/// index knew before the purge).
pub const TAG_URLS_VERIFIED: usize = 10;

/// The verification of one backend, ready to run in its worker.
#[cfg(feature = "verify")]
pub(crate) struct Verifier {
    client: reqwest::Client,
    /// The cache's address, without a trailing `/`.
    base: String,
    header: String,
    hit: Vec<String>,
    mode: VerifyMode,
    refresh: bool,
    /// The spacing of refreshes, from `refresh_rate`.
    refresh_every: Option<std::time::Duration>,
    pub(crate) concurrency: usize,
    /// What to check when a purge did not take, for this kind of backend.
    hint: &'static str,
}

/// What the cache said of one URL.
#[cfg(feature = "verify")]
pub(crate) enum Seen {
    /// Served from the cache: the purge did not take.
    Hit,
    /// Not from the cache.
    Miss,
    /// No answer (the message says why).
    Unknown(String),
}

#[cfg(feature = "verify")]
impl Verifier {
    /// The verifier of settings whose address and header are known (see
    /// [`VerifySettings`]), or `None` when verification is off.
    pub(crate) fn new(
        settings: &VerifySettings,
        url: &BaseUrl,
        header: &str,
        hint: &'static str,
    ) -> Result<Option<Self>, crate::backend::SetupError> {
        if !settings.needs_address() {
            return Ok(None);
        }
        let concurrency = settings.concurrency.get();
        Ok(Some(Self {
            client: crate::backend::http_client::client(
                std::time::Duration::from_secs(5),
                concurrency,
            )?,
            base: url.as_str().trim_end_matches('/').to_owned(),
            header: header.to_owned(),
            hit: settings.hit.clone(),
            mode: settings.mode,
            refresh: settings.refresh,
            refresh_every: settings
                .refresh_rate
                .as_ref()
                .map(|r| std::time::Duration::from_secs_f64(1.0 / r.per_second())),
            concurrency,
            hint,
        }))
    }

    /// Whether to verify this target (URLs only, all or a sample).
    pub(crate) fn picks(&self, target: &crate::Target) -> bool {
        target.as_url().is_some() && self.mode.picks()
    }

    /// Whether to refresh this target (a URL not verified, with `refresh`).
    pub(crate) fn refreshes(&self, target: &crate::Target) -> bool {
        self.refresh && target.as_url().is_some()
    }

    /// Whether to check a purged tag's URLs (found in the tag index): `Some(true)` to verify
    /// a sample of them (all tags, or a sample of tags), `Some(false)` only to refresh them
    /// (`refresh`), `None` not at all.
    pub(crate) fn checks_tag(&self) -> Option<bool> {
        if self.mode.picks() {
            Some(true)
        } else if self.refresh {
            Some(false)
        } else {
            None
        }
    }

    /// A purged tag's URLs, split into those to verify (at most [`TAG_URLS_VERIFIED`], at
    /// random, when `verified`) and those to refresh (the others, with `refresh`).
    pub(crate) fn split_tag_urls(
        &self,
        verified: bool,
        mut urls: Vec<crate::PurgeUrl>,
    ) -> (Vec<crate::PurgeUrl>, Vec<crate::PurgeUrl>) {
        let mut verify = Vec::new();
        if verified {
            fastrand::shuffle(&mut urls);
            let rest = urls.split_off(urls.len().min(TAG_URLS_VERIFIED));
            verify = std::mem::replace(&mut urls, rest);
        }
        if !self.refresh {
            urls.clear();
        }
        (verify, urls)
    }

    /// The spacing between two refreshes started (`refresh_rate`).
    pub(crate) fn refresh_every(&self) -> Option<std::time::Duration> {
        self.refresh_every
    }

    /// The hint for a purge that did not take.
    pub(crate) fn hint(&self) -> &'static str {
        self.hint
    }

    /// GETs the URL through the cache's address, with its host (if any) in `Host`.
    pub(crate) async fn look(&self, url: &crate::PurgeUrl) -> Seen {
        let address = format!("{}{}", self.base, url.path_and_query());
        let mut request = self.client.get(&address);
        if let Some(host) = url.host() {
            request = request.header(reqwest::header::HOST, host);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Seen::Unknown(format!("GET {address}: {e}")),
        };
        let value = response
            .headers()
            .get(self.header.as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .map(str::to_owned);
        // Read the body, so that the connection is reused.
        let _ = response.bytes().await;
        let hit = match value {
            None => false,
            Some(v) if self.header.eq_ignore_ascii_case("age") => {
                v.parse::<u64>().is_ok_and(|age| age > 0)
            }
            Some(v) => self.hit.iter().any(|h| h.eq_ignore_ascii_case(&v)),
        };
        if hit { Seen::Hit } else { Seen::Miss }
    }
}
