//! The settings of `kind = "cloudfront"`: [`CloudFrontSettings`] and [`DistributionId`].
//!
//! Always compiled, whatever the cargo features: settings files name every kind, and a kind
//! this build lacks is refused when the purger is built, not when the file is read.
//!
//! ```
//! use cache_purge_hooks_engine::settings::DistributionId;
//!
//! assert!("EDFDVBD6EXAMPLE".parse::<DistributionId>().is_ok());
//! let err = "d111111abcdef8.cloudfront.net".parse::<DistributionId>().unwrap_err();
//! assert!(err.message.contains("not a distribution ID"), "{}", err.message);
//! ```

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::types::{self, BaseUrl, FieldError, InvalidValue, Secret, string_serde};

/// The real endpoint of the CloudFront API (global; requests are signed for `us-east-1`).
pub const CLOUDFRONT_API: &str = "https://cloudfront.amazonaws.com";

/// Individual (non-wildcard) paths of one distribution that may be in progress at once
/// (CloudFront Developer Guide, "Concurrent invalidation request maximum": "up to 3,000 files
/// per distribution in progress at one time"). Also the most one invalidation can carry.
pub const MAX_PATHS_IN_PROGRESS: usize = 3000;

/// Wildcard paths (`/blog/*`) of one distribution that may be in progress at once (same
/// page: "up to 15 invalidation paths in progress at one time"), independently of the
/// individual paths.
pub const MAX_WILDCARDS_IN_PROGRESS: usize = 15;

/// A CloudFront distribution ID: the uppercase letters and digits of the console's *ID*
/// column (`EDFDVBD6EXAMPLE`), not its domain name (`d111111abcdef8.cloudfront.net`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DistributionId(String);

impl DistributionId {
    /// The ID, uppercase.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DistributionId {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if (8..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(Self(s.to_ascii_uppercase()));
        }
        let hint = if s.contains('.') {
            " (that looks like the domain name: the ID is in the console's ID column, like `EDFDVBD6EXAMPLE`)"
        } else {
            ""
        };
        Err(InvalidValue::new(format!(
            "`{s}` is not a distribution ID: expected letters and digits, like `EDFDVBD6EXAMPLE`{hint}"
        )))
    }
}

impl fmt::Display for DistributionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(DistributionId);

/// Options of `kind = "cloudfront"`.
///
/// ```toml
/// [backends.cdn]
/// kind = "cloudfront"
/// distribution_id = "EDFDVBD6EXAMPLE"
/// access_key_id = "AKIAIOSFODNN7EXAMPLE"   # or CACHE_PURGE__BACKENDS__CDN__ACCESS_KEY_ID
/// secret_access_key = "..."                # or CACHE_PURGE__BACKENDS__CDN__SECRET_ACCESS_KEY
/// hosts = ["www.example.com"]              # absolute URLs of these hosts are purged by path
/// wait = false                             # true: report success once Completed
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CloudFrontSettings {
    /// The distribution to invalidate (required).
    pub distribution_id: Option<DistributionId>,
    /// The IAM access key ID (required), of a user or role allowed
    /// `cloudfront:CreateInvalidation`, `cloudfront:GetInvalidation` and (for `check`)
    /// `cloudfront:GetDistribution` on the distribution.
    pub access_key_id: Option<Secret>,
    /// The secret access key of `access_key_id` (required). Never printed nor logged.
    pub secret_access_key: Option<Secret>,
    /// The session token of temporary credentials (STS), if they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Secret>,
    /// The hosts the distribution serves (`www.example.com`, `d111111abcdef8.cloudfront.net`,
    /// `*.example.org`): an absolute URL is invalidated by its path only when its host is one
    /// of them; any other host fails as misconfigured rather than invalidating the path of
    /// another site. Paths (`/posts/a`) need none.
    ///
    /// In a settings file this is the backend's `hosts` key, the one every kind has (see
    /// [`crate::routing`]): the loader copies it here, and the purger also routes only these
    /// hosts' URLs to the backend.
    #[serde(skip)]
    pub hosts: Vec<crate::routing::HostPattern>,
    /// Wait for each invalidation to be `Completed` (polling GetInvalidation) before the
    /// purge counts as done (default `false`: done once CloudFront accepted it).
    pub wait: bool,
    /// How often to poll GetInvalidation while waiting, and the wait before retrying when the
    /// in-progress limits are full (default `10s`).
    #[serde(with = "types::timeout")]
    pub poll_interval: Duration,
    /// The longest wait for `Completed` with `wait = true` (default `15m`); past it the purge
    /// fails as timed out (the invalidation goes on), and its retry makes a new invalidation;
    /// at least `poll_interval`.
    #[serde(with = "types::timeout")]
    pub wait_timeout: Duration,
    /// Individual paths this client keeps in progress at most (default and maximum 3,000,
    /// CloudFront's limit per distribution): lower it when other clients invalidate the
    /// same distribution.
    #[serde(deserialize_with = "types::at_least_one")]
    pub max_paths_in_progress: NonZeroUsize,
    /// Wildcard paths this client keeps in progress at most (default and maximum 15).
    #[serde(deserialize_with = "types::at_least_one")]
    pub max_wildcards_in_progress: NonZeroUsize,
    /// The API's base URL (default the real one, [`CLOUDFRONT_API`]); tests set a local fake.
    pub base_url: BaseUrl,
    /// Timeout of one request (default `10s`).
    #[serde(with = "types::timeout")]
    pub timeout: Duration,
}

impl Default for CloudFrontSettings {
    /// The settings of an empty `[backends.NAME]` table with `kind = "cloudfront"` (which
    /// [`check`](Self::check) refuses: the distribution and the keys are required).
    fn default() -> Self {
        Self {
            distribution_id: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            hosts: Vec::new(),
            wait: false,
            poll_interval: Duration::from_secs(10),
            wait_timeout: Duration::from_secs(15 * 60),
            max_paths_in_progress: NonZeroUsize::new(MAX_PATHS_IN_PROGRESS)
                .unwrap_or_else(|| unreachable!("3000 is not 0")),
            max_wildcards_in_progress: NonZeroUsize::new(MAX_WILDCARDS_IN_PROGRESS)
                .unwrap_or_else(|| unreachable!("15 is not 0")),
            base_url: BaseUrl::from_static(CLOUDFRONT_API),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The required keys, borrowed (read by the backend, which is behind the feature).
#[cfg_attr(not(feature = "cloudfront"), allow(dead_code))]
pub(crate) struct Required<'a> {
    pub(crate) distribution: &'a DistributionId,
    pub(crate) access_key_id: &'a Secret,
    pub(crate) secret_access_key: &'a Secret,
}

impl CloudFrontSettings {
    /// The required keys (`distribution_id`, `access_key_id`, `secret_access_key`) and the
    /// limits (at most CloudFront's own; `poll_interval` above zero). Called by the loader
    /// (the error is keyed `backends.NAME.<key>`) and by
    /// [`CloudFrontBackend::new`](crate::backend::CloudFrontBackend) for settings built in code.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.max_paths_in_progress.get() > MAX_PATHS_IN_PROGRESS {
            return Err(FieldError::new(
                "max_paths_in_progress",
                format!(
                    "at most {MAX_PATHS_IN_PROGRESS}: CloudFront's limit of individual paths in progress per distribution"
                ),
            ));
        }
        if self.max_wildcards_in_progress.get() > MAX_WILDCARDS_IN_PROGRESS {
            return Err(FieldError::new(
                "max_wildcards_in_progress",
                format!(
                    "at most {MAX_WILDCARDS_IN_PROGRESS}: CloudFront's limit of wildcard paths in progress per distribution"
                ),
            ));
        }
        if self.poll_interval.is_zero() {
            return Err(FieldError::new(
                "poll_interval",
                "must be above zero (like `10s`)",
            ));
        }
        if self.wait && self.wait_timeout < self.poll_interval {
            // A wait that cannot see one poll times out every time: each retry would make
            // another invalidation and time out again, never done.
            return Err(FieldError::new(
                "wait_timeout",
                format!(
                    "must be at least poll_interval ({}): real invalidations take minutes (default `15m`)",
                    humantime::format_duration(self.poll_interval)
                ),
            ));
        }
        self.required().map(drop)
    }

    pub(crate) fn required(&self) -> Result<Required<'_>, FieldError> {
        let distribution = self.distribution_id.as_ref().ok_or_else(|| {
            FieldError::new(
                "distribution_id",
                "required: the distribution's ID (the CloudFront console's ID column, like EDFDVBD6EXAMPLE)",
            )
        })?;
        let access_key_id = self.access_key_id.as_ref().ok_or_else(|| {
            FieldError::new(
                "access_key_id",
                "required: the access key ID of an IAM user or role allowed cloudfront:CreateInvalidation \
                 (IAM console > Users > Security credentials > Create access key), or \
                 CACHE_PURGE__BACKENDS__<NAME>__ACCESS_KEY_ID",
            )
        })?;
        let secret_access_key = self.secret_access_key.as_ref().ok_or_else(|| {
            FieldError::new(
                "secret_access_key",
                "required: the secret access key shown once when the access key was created, or \
                 CACHE_PURGE__BACKENDS__<NAME>__SECRET_ACCESS_KEY",
            )
        })?;
        Ok(Required {
            distribution,
            access_key_id,
            secret_access_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_distribution_and_both_keys_are_required() {
        let mut s = CloudFrontSettings::default();
        assert_eq!(s.check().unwrap_err().key, "distribution_id");
        s.distribution_id = Some("edfdvbd6example".parse().unwrap());
        assert_eq!(
            s.distribution_id.as_ref().unwrap().as_str(),
            "EDFDVBD6EXAMPLE"
        );
        assert_eq!(s.check().unwrap_err().key, "access_key_id");
        s.access_key_id = Some("AKIAIOSFODNN7EXAMPLE".parse().unwrap());
        assert_eq!(s.check().unwrap_err().key, "secret_access_key");
        s.secret_access_key = Some("wJalrXUtnFEMI".parse().unwrap());
        assert!(s.check().is_ok());
        assert!(!format!("{s:?}").contains("wJalrXUtnFEMI"));
    }

    #[test]
    fn limits_above_cloudfronts_own_are_refused() {
        let mut s = CloudFrontSettings {
            distribution_id: Some("EDFDVBD6EXAMPLE".parse().unwrap()),
            access_key_id: Some("AKIAIOSFODNN7EXAMPLE".parse().unwrap()),
            secret_access_key: Some("secret".parse().unwrap()),
            ..CloudFrontSettings::default()
        };
        s.max_paths_in_progress = NonZeroUsize::new(3001).unwrap();
        assert_eq!(s.check().unwrap_err().key, "max_paths_in_progress");
        s.max_paths_in_progress = NonZeroUsize::new(100).unwrap();
        s.max_wildcards_in_progress = NonZeroUsize::new(16).unwrap();
        assert_eq!(s.check().unwrap_err().key, "max_wildcards_in_progress");
        s.max_wildcards_in_progress = NonZeroUsize::new(15).unwrap();
        assert!(s.check().is_ok());
    }
}
