//! The settings of `kind = "fastly"`: [`FastlySettings`] and [`ServiceId`].
//!
//! Always compiled, whatever the cargo features: settings files name every kind, and a kind
//! this build lacks is refused when the purger is built, not when the file is read.
//!
//! ```
//! use cache_purge_hooks_engine::settings::ServiceId;
//!
//! assert!("SU1Z0isxPaozGVKXdv0eY".parse::<ServiceId>().is_ok());
//! assert!("www.example.com".parse::<ServiceId>().unwrap_err().message.contains("not a service ID"));
//! ```

use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::cloudflare::settings::SiteUrl;
use crate::settings::types::{
    self, BaseUrl, FieldError, InvalidValue, RequestRate, Secret, string_serde,
};

/// The real endpoint of Fastly's API.
pub const FASTLY_API: &str = "https://api.fastly.com";

/// A Fastly service ID: the alphanumeric ID shown under the service's name (not its domain).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServiceId(String);

impl ServiceId {
    /// The ID as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ServiceId {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(Self(s.to_owned()));
        }
        let hint = if s.contains('.') {
            " (that looks like a domain: the service ID is shown under the service's name in the Fastly console)"
        } else {
            ""
        };
        Err(InvalidValue::new(format!(
            "`{s}` is not a service ID: expected letters and digits, like `SU1Z0isxPaozGVKXdv0eY`{hint}"
        )))
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(ServiceId);

/// Options of `kind = "fastly"`.
///
/// ```toml
/// [backends.cdn]
/// kind = "fastly"
/// service_id = "SU1Z0isxPaozGVKXdv0eY"
/// api_token = "..."                      # or CACHE_PURGE__BACKENDS__CDN__API_TOKEN
/// site_url = "https://www.example.com"   # for URLs given as paths
/// soft = true                            # mark stale instead of removing
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FastlySettings {
    /// The service to purge (required).
    pub service_id: Option<ServiceId>,
    /// An API token (sent as `Fastly-Key`) with the `purge_select` scope, and `purge_all`
    /// to purge everything (required). Never printed nor logged.
    pub api_token: Option<Secret>,
    /// Soft purges (`Fastly-Soft-Purge: 1`): objects are marked stale, not removed, so they
    /// can still be served stale while revalidating or when the origin fails (default
    /// `false`). Purge-all is always hard: Fastly has no soft purge-all.
    pub soft: bool,
    /// The scheme and host of the site, for URLs given as paths.
    pub site_url: Option<SiteUrl>,
    /// The API's base URL (default the real one, [`FASTLY_API`]); tests set a local fake.
    pub base_url: BaseUrl,
    /// Where URL purges go: by default each URL's own host (`PURGE https://www.example.com/a`,
    /// which Fastly's edge answers); set it to send them to another address, with the URL's
    /// host in the `Host` header (tests: the fake).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge_url: Option<BaseUrl>,
    /// Timeout of one request (default `10s`).
    #[serde(with = "types::timeout")]
    pub timeout: Duration,
    /// Requests in flight at once (default 8).
    #[serde(deserialize_with = "types::at_least_one")]
    pub concurrency: NonZeroUsize,
    /// A client-side request rate (`100/s`), none by default: Fastly documents no rate limit
    /// for purges, and a 429 is honoured whenever it comes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<RequestRate>,
    /// The bucket of `rate` (default: one second's worth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<NonZeroU32>,
}

impl Default for FastlySettings {
    /// The settings of an empty `[backends.NAME]` table with `kind = "fastly"` (which
    /// [`check`](Self::check) refuses: `service_id` and `api_token` are required).
    fn default() -> Self {
        Self {
            service_id: None,
            api_token: None,
            soft: false,
            site_url: None,
            base_url: BaseUrl::from_static(FASTLY_API),
            edge_url: None,
            timeout: Duration::from_secs(10),
            concurrency: NonZeroUsize::new(8).unwrap_or_else(|| unreachable!("8 is not 0")),
            rate: None,
            burst: None,
        }
    }
}

impl FastlySettings {
    /// The required keys: `service_id` and `api_token`; `burst` only with `rate`. Called by
    /// the loader (the error is keyed `backends.NAME.<key>`) and by
    /// [`FastlyBackend::new`](crate::backend::FastlyBackend) for settings built in code.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.burst.is_some() && self.rate.is_none() {
            return Err(FieldError::new(
                "burst",
                "needs `rate`: the bucket of a client-side rate limit (Fastly has none by default)",
            ));
        }
        self.required().map(drop)
    }

    pub(crate) fn required(&self) -> Result<(&ServiceId, &Secret), FieldError> {
        let service = self.service_id.as_ref().ok_or_else(|| {
            FieldError::new(
                "service_id",
                "required: the service's ID (shown under its name in the Fastly console)",
            )
        })?;
        let token = self.api_token.as_ref().ok_or_else(|| {
            FieldError::new(
                "api_token",
                "required: an API token with the purge_select scope (and purge_all to purge \
                 everything), or CACHE_PURGE__BACKENDS__<NAME>__API_TOKEN",
            )
        })?;
        Ok((service, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_and_the_token_are_required() {
        let mut s = FastlySettings::default();
        assert_eq!(s.check().unwrap_err().key, "service_id");
        s.service_id = Some("SU1Z0isxPaozGVKXdv0eY".parse().unwrap());
        assert_eq!(s.check().unwrap_err().key, "api_token");
        s.api_token = Some("k".parse().unwrap());
        assert!(s.check().is_ok());
        s.burst = NonZeroU32::new(10);
        assert_eq!(s.check().unwrap_err().key, "burst");
        s.rate = Some("100/s".parse().unwrap());
        assert!(s.check().is_ok());
    }
}
