//! The settings of `kind = "cloudflare"`: [`CloudflareSettings`], its [`CloudflarePlan`] and
//! [`ZoneId`].
//!
//! Always compiled, whatever the cargo features: settings files name every kind, and a kind
//! this build lacks is refused when the purger is built, not when the file is read.
//!
//! ```
//! use cache_purge_hooks_engine::settings::{CloudflarePlan, ZoneId};
//!
//! assert!("023e105f4ecef8ad9ca31a8372d0c353".parse::<ZoneId>().is_ok());
//! let err = "example.com".parse::<ZoneId>().unwrap_err();
//! assert!(err.message.contains("not a zone ID"), "{}", err.message);
//! assert_eq!(CloudflarePlan::Enterprise.max_urls_per_request(), 500);
//! ```

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::types::{
    self, BaseUrl, FieldError, InvalidValue, RequestRate, Secret, named_enum, string_serde,
};

/// The real endpoint of Cloudflare's API v4.
pub const CLOUDFLARE_API: &str = "https://api.cloudflare.com/client/v4";

/// The account's Cloudflare plan: it decides the purge rate limit and the items per request.
///
/// The figures are Cloudflare's "Purge cache" page (developers.cloudflare.com/cache/how-to/
/// purge-cache/, "Purge limits", the token bucket limits in force since 2025), applied per
/// account:
///
/// | plan       | requests    | bucket | items per request (tags, hosts, prefixes / URLs) | URLs per second |
/// |------------|-------------|--------|--------------------------------------------------|-----------------|
/// | free       | 5 per minute| 25     | 100 / 100                                        | 800             |
/// | pro        | 5 per second| 25     | 100 / 100                                        | 1500            |
/// | business   | 10 per second| 50    | 100 / 100                                        | 1500            |
/// | enterprise | 50 per second| 500   | 100 / 500                                        | 3000            |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloudflarePlan {
    /// Free: 5 purge requests per minute, bucket of 25.
    #[default]
    Free,
    /// Pro: 5 per second, bucket of 25.
    Pro,
    /// Business: 10 per second, bucket of 50.
    Business,
    /// Enterprise: 50 per second, bucket of 500, 500 URLs per request.
    Enterprise,
}

named_enum!(CloudflarePlan, "Cloudflare plan", {
    Free = "free", Pro = "pro", Business = "business", Enterprise = "enterprise"
});

impl CloudflarePlan {
    /// Every plan, cheapest first.
    pub const ALL: [CloudflarePlan; 4] = [Self::Free, Self::Pro, Self::Business, Self::Enterprise];

    /// Purge requests the bucket refills per unit of time.
    pub fn rate(self) -> RequestRate {
        let rate = match self {
            Self::Free => RequestRate::per_minute_of(5.0),
            Self::Pro => RequestRate::per_second_of(5.0),
            Self::Business => RequestRate::per_second_of(10.0),
            Self::Enterprise => RequestRate::per_second_of(50.0),
        };
        // Constants above 0: always Some.
        rate.unwrap_or_else(|| unreachable!("a positive constant rate"))
    }

    /// The bucket size: purge requests that may go at once after a quiet period.
    pub fn burst(self) -> u32 {
        match self {
            Self::Free | Self::Pro => 25,
            Self::Business => 50,
            Self::Enterprise => 500,
        }
    }

    /// URLs (`files`) per request.
    pub fn max_urls_per_request(self) -> usize {
        match self {
            Self::Enterprise => 500,
            _ => 100,
        }
    }

    /// Tags, hosts or prefixes per request (100 on every plan).
    pub fn max_items_per_request(self) -> usize {
        100
    }

    /// URLs purged per second, a moving average (the second table of the same page).
    pub fn urls_per_second(self) -> u32 {
        match self {
            Self::Free => 800,
            Self::Pro | Self::Business => 1500,
            Self::Enterprise => 3000,
        }
    }
}

/// A Cloudflare zone ID: the 32 hexadecimal digits shown on the zone's Overview page (API
/// section), not the domain name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ZoneId(String);

impl ZoneId {
    /// The ID, lowercase.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ZoneId {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Self(s.to_ascii_lowercase()));
        }
        let hint = if s.contains('.') {
            " (that looks like the domain: the zone ID is on the zone's Overview page, API section)"
        } else {
            ""
        };
        Err(InvalidValue::new(format!(
            "`{s}` is not a zone ID: expected 32 hexadecimal digits{hint}"
        )))
    }
}

impl fmt::Display for ZoneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(ZoneId);

/// The site whose paths are purged: `https://www.example.com` (scheme and host, optionally a
/// port; no path). Cloudflare purges absolute URLs only.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SiteUrl {
    text: String,
    host_start: usize,
}

impl SiteUrl {
    /// `https://www.example.com`, without a trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `www.example.com` (with the port, if any).
    pub fn host(&self) -> &str {
        &self.text[self.host_start..]
    }
}

impl FromStr for SiteUrl {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            InvalidValue::new(format!(
                "`{s}` is not a site URL: expected the scheme and host the site is served at, like `https://www.example.com`"
            ))
        };
        let url = crate::target::PurgeUrl::parse(s).map_err(|_| bad())?;
        let (Some(scheme), Some(host)) = (url.scheme(), url.host()) else {
            return Err(bad());
        };
        if url.path_and_query() != "/" {
            return Err(InvalidValue::new(format!(
                "`{s}` has a path: give only the scheme and host, like `https://www.example.com`"
            )));
        }
        let text = format!("{scheme}://{host}");
        Ok(Self {
            host_start: scheme.len() + 3,
            text,
        })
    }
}

impl fmt::Display for SiteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

string_serde!(SiteUrl);

/// Options of `kind = "cloudflare"`.
///
/// ```toml
/// [backends.cdn]
/// kind = "cloudflare"
/// zone_id = "023e105f4ecef8ad9ca31a8372d0c353"
/// api_token = "..."                      # or CACHE_PURGE__BACKENDS__CDN__API_TOKEN
/// plan = "pro"                           # free (default), pro, business, enterprise
/// site_url = "https://www.example.com"   # for URLs and prefixes given as paths
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CloudflareSettings {
    /// The zone to purge (required): 32 hexadecimal digits.
    pub zone_id: Option<ZoneId>,
    /// An API token with the *Zone → Cache Purge → Purge* permission on the zone (required).
    /// Never printed nor logged.
    pub api_token: Option<Secret>,
    /// The account's plan (default `free`): the rate limit and items per request.
    pub plan: CloudflarePlan,
    /// The scheme and host of the site, for URLs and prefixes given as paths (`/posts/a`
    /// is purged as `https://www.example.com/posts/a`). Absolute URLs bring their own.
    pub site_url: Option<SiteUrl>,
    /// The API's base URL (default the real one, [`CLOUDFLARE_API`]); tests set a local fake.
    pub base_url: BaseUrl,
    /// Timeout of one request (default `10s`).
    #[serde(with = "types::timeout")]
    pub timeout: Duration,
    /// Overrides the plan's request rate (`5/s`, `5/min`): a share of the account's budget
    /// when several processes purge the same account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<RequestRate>,
    /// Overrides the plan's bucket size (requests at once after a quiet period).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<NonZeroU32>,
    /// Overrides the plan's URLs per request (100, Enterprise 500): `30` for an account still
    /// held to the older limit (cloudflare/cloudflare-docs#21338).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urls_per_request: Option<std::num::NonZeroUsize>,
    /// Requests in flight at once (default 4); the rate limit applies across them.
    #[serde(deserialize_with = "types::at_least_one")]
    pub concurrency: std::num::NonZeroUsize,
}

impl Default for CloudflareSettings {
    /// The settings of an empty `[backends.NAME]` table with `kind = "cloudflare"` (which
    /// [`check`](Self::check) refuses: `zone_id` and `api_token` are required).
    fn default() -> Self {
        Self {
            zone_id: None,
            api_token: None,
            plan: CloudflarePlan::default(),
            site_url: None,
            base_url: BaseUrl::from_static(CLOUDFLARE_API),
            timeout: Duration::from_secs(10),
            rate: None,
            burst: None,
            urls_per_request: None,
            concurrency: std::num::NonZeroUsize::new(4)
                .unwrap_or_else(|| unreachable!("4 is not 0")),
        }
    }
}

impl CloudflareSettings {
    /// The required keys: `zone_id` and `api_token`. Called by the loader (the error is
    /// keyed `backends.NAME.<key>`) and by
    /// [`CloudflareBackend::new`](crate::backend::CloudflareBackend) for settings built in code.
    pub fn check(&self) -> Result<(), FieldError> {
        self.required().map(drop)
    }

    pub(crate) fn required(&self) -> Result<(&ZoneId, &Secret), FieldError> {
        let zone = self.zone_id.as_ref().ok_or_else(|| {
            FieldError::new(
                "zone_id",
                "required: the zone's ID (32 hexadecimal digits, on the zone's Overview page, API section)",
            )
        })?;
        let token = self.api_token.as_ref().ok_or_else(|| {
            FieldError::new(
                "api_token",
                "required: an API token with the Zone > Cache Purge > Purge permission \
                 (dashboard: My Profile > API Tokens), or CACHE_PURGE__BACKENDS__<NAME>__API_TOKEN",
            )
        })?;
        Ok((zone, token))
    }

    /// The request rate in effect: `rate`, else the plan's.
    pub fn effective_rate(&self) -> RequestRate {
        self.rate.unwrap_or_else(|| self.plan.rate())
    }

    /// URLs per request in effect: `urls_per_request`, else the plan's.
    pub fn effective_urls_per_request(&self) -> usize {
        self.urls_per_request.map_or_else(
            || self.plan.max_urls_per_request(),
            std::num::NonZeroUsize::get,
        )
    }

    /// The bucket size in effect: `burst`, else the plan's.
    pub fn effective_burst(&self) -> u32 {
        self.burst
            .map_or_else(|| self.plan.burst(), NonZeroU32::get)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_carry_the_documented_limits() {
        let per_second: Vec<f64> = CloudflarePlan::ALL
            .iter()
            .map(|p| p.rate().per_second())
            .collect();
        assert_eq!(per_second, [5.0 / 60.0, 5.0, 10.0, 50.0]);
        let bursts: Vec<u32> = CloudflarePlan::ALL.iter().map(|p| p.burst()).collect();
        assert_eq!(bursts, [25, 25, 50, 500]);
        assert_eq!(CloudflarePlan::Pro.max_urls_per_request(), 100);
        assert_eq!("business".parse(), Ok(CloudflarePlan::Business));
        assert!(
            "gold"
                .parse::<CloudflarePlan>()
                .unwrap_err()
                .message
                .contains("`free`, `pro`, `business`, `enterprise`")
        );
    }

    #[test]
    fn site_urls_are_a_scheme_and_a_host() {
        let s: SiteUrl = "https://WWW.example.com/".parse().unwrap();
        assert_eq!(
            (s.as_str(), s.host()),
            ("https://www.example.com", "www.example.com")
        );
        let s: SiteUrl = "http://127.0.0.1:8080".parse().unwrap();
        assert_eq!(s.host(), "127.0.0.1:8080");
        assert!("https://example.com/blog".parse::<SiteUrl>().is_err());
        assert!("www.example.com".parse::<SiteUrl>().is_err());
    }

    #[test]
    fn the_zone_and_the_token_are_required_and_the_plan_sets_the_bucket() {
        let mut s = CloudflareSettings::default();
        assert_eq!(s.check().unwrap_err().key, "zone_id");
        s.zone_id = Some("023E105F4ECEF8AD9CA31A8372D0C353".parse().unwrap());
        assert_eq!(
            s.zone_id.as_ref().unwrap().as_str(),
            "023e105f4ecef8ad9ca31a8372d0c353"
        );
        assert_eq!(s.check().unwrap_err().key, "api_token");
        s.api_token = Some("t".parse().unwrap());
        assert!(s.check().is_ok());
        s.plan = CloudflarePlan::Business;
        assert_eq!(
            (s.effective_rate().per_second(), s.effective_burst()),
            (10.0, 50)
        );
        s.rate = Some("2/s".parse().unwrap());
        s.burst = NonZeroU32::new(5);
        assert_eq!(
            (s.effective_rate().per_second(), s.effective_burst()),
            (2.0, 5)
        );
        assert!(!format!("{s:?}").contains("api_token: Some(\"t\")"));
    }
}
