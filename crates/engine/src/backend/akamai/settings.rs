//! The settings of `kind = "akamai"`: [`AkamaiSettings`], its [`AkamaiNetwork`],
//! [`AkamaiAction`] and [`CpCode`]s, and the EdgeGrid credentials ([`EdgeGridCredentials`])
//! they name, inline or in an `.edgerc` file.
//!
//! Always compiled, whatever the cargo features: settings files name every kind, and a kind
//! this build lacks is refused when the purger is built, not when the file is read.
//!
//! ```
//! use cache_purge_hooks_engine::settings::{AkamaiAction, AkamaiNetwork, CpCode};
//!
//! assert_eq!("staging".parse(), Ok(AkamaiNetwork::Staging));
//! assert_eq!(AkamaiAction::default(), AkamaiAction::Invalidate);
//! assert_eq!("cpc_12345".parse::<CpCode>().unwrap().get(), 12345);
//! assert!("www.example.com".parse::<CpCode>().is_err());
//! ```

use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::SetupError;
use crate::backend::cloudflare::settings::SiteUrl;
use crate::settings::types::{
    self, BaseUrl, FieldError, InvalidValue, RequestRate, Secret, named_enum, string_serde,
};

/// Which Akamai network a purge applies to: the `{network}` of
/// `POST /ccu/v3/{action}/{type}/{network}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AkamaiNetwork {
    /// The production network (the default): what visitors are served.
    #[default]
    Production,
    /// The staging network, where a configuration is tried before it is activated.
    Staging,
}

named_enum!(AkamaiNetwork, "Akamai network", {
    Production = "production", Staging = "staging"
});

/// What a purge does to the objects (Fast Purge API v3: "invalidate" or "delete").
///
/// `invalidate` (the default, and Akamai's recommendation) marks the objects stale: the next
/// request revalidates with the origin (`If-Modified-Since`), and the stale object can still
/// be served when the origin cannot be reached. `delete` removes them, so the next request
/// fetches the object in full, and nothing is left to serve if the origin is down: use it for
/// content that must not be served again (legal takedowns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AkamaiAction {
    /// Mark stale, revalidate on the next request (the "soft" purge; default).
    #[default]
    Invalidate,
    /// Remove from the cache.
    Delete,
}

named_enum!(AkamaiAction, "Akamai purge action", {
    Invalidate = "invalidate", Delete = "delete"
});

/// A content provider (CP) code: the number Akamai groups a property's content under
/// (`12345`, also written `cpc_12345` in Control Center).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CpCode(u64);

impl CpCode {
    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl FromStr for CpCode {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.trim().trim_start_matches("cpc_");
        match digits.parse::<u64>() {
            Ok(n) if n > 0 => Ok(Self(n)),
            _ => Err(InvalidValue::new(format!(
                "`{s}` is not a CP code: expected its number, like `12345` (Control Center > CP codes)"
            ))),
        }
    }
}

impl fmt::Display for CpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for CpCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for CpCode {
    /// A number (`12345`) or a string (`"12345"`, `"cpc_12345"`).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) if n > 0 => Ok(Self(n as u64)),
            Raw::Number(n) => Err(serde::de::Error::custom(format!(
                "`{n}` is not a CP code: expected a positive number"
            ))),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A section name of an `.edgerc` file (`default`, `ccu`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EdgercSection(String);

impl EdgercSection {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for EdgercSection {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s.contains(['[', ']', '\n']) {
            return Err(InvalidValue::new(format!(
                "`{s}` is not an .edgerc section name: expected the name between `[` and `]`, like `default`"
            )));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for EdgercSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(EdgercSection);

/// The EdgeGrid credentials of one API client: what an `.edgerc` section holds.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EdgeGridCredentials {
    /// `https://` and the section's `host` (`akab-xxxx.purge.akamaiapis.net`), or `base_url`.
    pub base_url: BaseUrl,
    /// `client_token` (`akab-...`).
    pub client_token: Secret,
    /// `access_token` (`akab-...`).
    pub access_token: Secret,
    /// `client_secret`: the key of the signatures. Never sent.
    pub client_secret: Secret,
}

impl fmt::Debug for EdgeGridCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeGridCredentials")
            .field("base_url", &self.base_url)
            .field("client_token", &self.client_token)
            .field("access_token", &self.access_token)
            .field("client_secret", &self.client_secret)
            .finish()
    }
}

/// Options of `kind = "akamai"`.
///
/// ```toml
/// [backends.cdn]
/// kind = "akamai"
/// edgerc = "~/.edgerc"                   # the credentials file of the API client...
/// section = "ccu"                        # ...and its section (default `default`)
/// # or inline (each overrides the file's value):
/// # base_url = "https://akab-xxxx.purge.akamaiapis.net"
/// # client_token = "akab-..."  access_token = "akab-..."  client_secret = "..."
/// network = "production"                 # or staging
/// action = "invalidate"                  # or delete
/// site_url = "https://www.example.com"   # for URLs given as paths
/// cp_codes = [12345]                     # what "everything" purges
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AkamaiSettings {
    /// An `.edgerc` file with the API client's credentials (`~/` is the home directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edgerc: Option<PathBuf>,
    /// The section of `edgerc` to read (default `default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<EdgercSection>,
    /// The API's base URL: `https://` and the credentials' `host`
    /// (`https://akab-xxxx.purge.akamaiapis.net`). Default: the `host` of the `edgerc`
    /// section. Tests set a local fake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<BaseUrl>,
    /// The API client's `client_token` (else the `edgerc` section's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<Secret>,
    /// The API client's `access_token` (else the `edgerc` section's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Secret>,
    /// The API client's `client_secret` (else the `edgerc` section's). Never printed, logged
    /// or sent: it signs the requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    /// `production` (default) or `staging`.
    pub network: AkamaiNetwork,
    /// `invalidate` (default: mark stale) or `delete` (remove).
    pub action: AkamaiAction,
    /// The scheme and host of the site, for URLs given as paths (Akamai purges absolute
    /// URLs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_url: Option<SiteUrl>,
    /// The CP codes that "purge everything" purges. Empty (the default): everything is not
    /// supported (never widened to anything else).
    pub cp_codes: Vec<CpCode>,
    /// Timeout of one request (default `10s`).
    #[serde(with = "types::timeout")]
    pub timeout: Duration,
    /// Overrides the account's request rate (default 50 per second, bucket 100): a share of
    /// the account when several processes purge it. The object rates scale with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<RequestRate>,
    /// Requests in flight at once (default 1: each answer's `X-Ratelimit-Remaining` then
    /// counts every request sent before the next one, and objects, not requests, are the
    /// limit that binds).
    #[serde(deserialize_with = "types::at_least_one")]
    pub concurrency: NonZeroUsize,
}

impl Default for AkamaiSettings {
    /// The settings of an empty `[backends.NAME]` table with `kind = "akamai"` (which
    /// [`check`](Self::check) refuses: credentials are required).
    fn default() -> Self {
        Self {
            edgerc: None,
            section: None,
            base_url: None,
            client_token: None,
            access_token: None,
            client_secret: None,
            network: AkamaiNetwork::default(),
            action: AkamaiAction::default(),
            site_url: None,
            cp_codes: Vec::new(),
            timeout: Duration::from_secs(10),
            rate: None,
            concurrency: NonZeroUsize::MIN,
        }
    }
}

/// The keys of an `.edgerc` section this backend reads.
const EDGERC_KEYS: [&str; 4] = ["host", "client_token", "access_token", "client_secret"];

impl AkamaiSettings {
    /// Without an `edgerc` file, the four inline values are required; `section` needs
    /// `edgerc`. Called by the loader (the error is keyed `backends.NAME.<key>`) and by
    /// [`AkamaiBackend::new`](crate::backend::AkamaiBackend) for settings built in code. The
    /// file itself is read when the backend is built ([`credentials`](Self::credentials)).
    pub fn check(&self) -> Result<(), FieldError> {
        if self.edgerc.is_some() {
            return Ok(());
        }
        if self.section.is_some() {
            return Err(FieldError::new(
                "section",
                "needs `edgerc`: the section of which .edgerc file",
            ));
        }
        let missing = [
            ("base_url", self.base_url.is_none()),
            ("client_token", self.client_token.is_none()),
            ("access_token", self.access_token.is_none()),
            ("client_secret", self.client_secret.is_none()),
        ];
        if let Some((key, _)) = missing.iter().find(|(_, m)| *m) {
            return Err(FieldError::new(
                key,
                "required without `edgerc`: the API client's credentials (Control Center > \
                 Identity & access > API clients, with the CCU APIs / Fast Purge service at \
                 READ-WRITE), as `edgerc = \"~/.edgerc\"` or base_url (`https://` and the \
                 credentials' host), client_token, access_token and client_secret",
            ));
        }
        Ok(())
    }

    /// The credentials in effect: each inline value, else the `edgerc` section's. Reads the
    /// file (when set) and names what is missing or wrong.
    pub fn credentials(&self) -> Result<EdgeGridCredentials, SetupError> {
        self.check()?;
        let mut file = std::collections::HashMap::new();
        if let Some(path) = &self.edgerc {
            let section = self.section.as_ref().map_or("default", |s| s.as_str());
            let path = expand_home(path);
            let text = std::fs::read_to_string(&path).map_err(|source| SetupError::File {
                setting: "edgerc",
                path: path.clone(),
                source,
                hint: "the .edgerc file of the API client (Control Center > Identity & access > API clients > Download)",
            })?;
            file = edgerc_section(&text, section).ok_or_else(|| SetupError::Invalid {
                setting: "section",
                problem: format!("`{}` has no section [{section}]", path.display()),
            })?;
        }
        let from_file = |key: &'static str| file.get(key).cloned();
        let secret = |key: &'static str, inline: &Option<Secret>| -> Result<Secret, SetupError> {
            if let Some(s) = inline {
                return Ok(s.clone());
            }
            let value = from_file(key).ok_or_else(|| SetupError::Invalid {
                setting: key,
                problem: "missing: not set inline, nor in the edgerc section".to_owned(),
            })?;
            value
                .parse()
                .map_err(|e: InvalidValue| SetupError::Invalid {
                    setting: key,
                    problem: format!("the edgerc section's value {}", e.message),
                })
        };
        let base_url = match &self.base_url {
            Some(url) => url.clone(),
            None => {
                let host = from_file("host").ok_or_else(|| SetupError::Invalid {
                    setting: "base_url",
                    problem: "missing: not set inline, and the edgerc section has no `host`"
                        .to_owned(),
                })?;
                let host = host.trim().trim_end_matches('/');
                let url = if host.starts_with("https://") || host.starts_with("http://") {
                    host.to_owned()
                } else {
                    format!("https://{host}")
                };
                url.parse().map_err(|e: InvalidValue| SetupError::Invalid {
                    setting: "base_url",
                    problem: format!("the edgerc section's host: {}", e.message),
                })?
            }
        };
        Ok(EdgeGridCredentials {
            base_url,
            client_token: secret("client_token", &self.client_token)?,
            access_token: secret("access_token", &self.access_token)?,
            client_secret: secret("client_secret", &self.client_secret)?,
        })
    }

    /// The request rate in effect: `rate`, else the account's 50 per second.
    pub fn effective_rate(&self) -> RequestRate {
        self.rate.unwrap_or_else(|| {
            RequestRate::per_second_of(super::limits::REQUESTS_PER_SECOND)
                .unwrap_or_else(|| unreachable!("a positive constant"))
        })
    }
}

/// `~/x` → `$HOME/x`; other paths as they are.
fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// The `key = value` pairs of `[section]` in an `.edgerc` (INI) file, or `None` without that
/// section. Comments start with `#` or `;`; values may be quoted.
pub(crate) fn edgerc_section(
    text: &str,
    section: &str,
) -> Option<std::collections::HashMap<&'static str, String>> {
    let mut found = false;
    let mut inside = false;
    let mut values = std::collections::HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            found |= inside;
            continue;
        }
        if !inside {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let value = value.trim().trim_matches('"').trim_matches('\'');
        if let Some(known) = EDGERC_KEYS.iter().find(|k| **k == key) {
            values.insert(*known, value.to_owned());
        }
    }
    found.then_some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDGERC: &str = "\
; the file Control Center gives
[default]
client_secret = c2VjcmV0LWRlZmF1bHQ=
host = akab-default.purge.akamaiapis.net
access_token = akab-access-default
client_token = akab-client-default

[ccu]
client_secret = \"c2VjcmV0LWNjdQ==\"
host = akab-ccu.purge.akamaiapis.net/
access_token = akab-access-ccu
client_token = akab-client-ccu
max-body = 131072
";

    #[test]
    fn the_credentials_come_from_the_edgerc_section_and_inline_values_override_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".edgerc");
        std::fs::write(&path, EDGERC).unwrap();
        let mut s = AkamaiSettings {
            edgerc: Some(path.clone()),
            section: Some("ccu".parse().unwrap()),
            ..AkamaiSettings::default()
        };
        let c = s.credentials().unwrap();
        assert_eq!(c.base_url.as_str(), "https://akab-ccu.purge.akamaiapis.net");
        assert_eq!(c.client_secret.expose(), "c2VjcmV0LWNjdQ==");
        assert_eq!(c.client_token.expose(), "akab-client-ccu");
        assert!(!format!("{c:?}").contains("c2VjcmV0"));
        s.section = None;
        assert_eq!(
            s.credentials().unwrap().access_token.expose(),
            "akab-access-default"
        );
        s.base_url = Some("http://127.0.0.1:9".parse().unwrap());
        s.client_secret = Some("inline".parse().unwrap());
        let c = s.credentials().unwrap();
        assert_eq!(
            (c.base_url.as_str(), c.client_secret.expose()),
            ("http://127.0.0.1:9", "inline")
        );
        s.section = Some("nosuch".parse().unwrap());
        let err = s.credentials().unwrap_err().to_string();
        assert!(err.contains("no section [nosuch]"), "{err}");
        s.edgerc = Some(dir.path().join("missing"));
        assert!(matches!(
            s.credentials().unwrap_err(),
            SetupError::File {
                setting: "edgerc",
                ..
            }
        ));
    }

    #[test]
    fn without_edgerc_the_four_inline_values_are_required() {
        let mut s = AkamaiSettings::default();
        assert_eq!(s.check().unwrap_err().key, "base_url");
        s.base_url = Some("https://akab-x.purge.akamaiapis.net".parse().unwrap());
        s.client_token = Some("akab-c".parse().unwrap());
        s.access_token = Some("akab-a".parse().unwrap());
        assert_eq!(s.check().unwrap_err().key, "client_secret");
        s.client_secret = Some("secret".parse().unwrap());
        assert!(s.check().is_ok());
        s.section = Some("ccu".parse().unwrap());
        assert_eq!(s.check().unwrap_err().key, "section");
    }

    #[test]
    fn cp_codes_are_positive_numbers_written_either_way() {
        assert_eq!("12345".parse::<CpCode>().unwrap().get(), 12345);
        assert_eq!("cpc_678".parse::<CpCode>().unwrap().get(), 678);
        assert!("0".parse::<CpCode>().is_err());
        assert!("-3".parse::<CpCode>().is_err());
        #[derive(Deserialize)]
        struct T {
            c: Vec<CpCode>,
        }
        let t: T = toml::from_str("c = [12345, \"cpc_6\"]").unwrap();
        assert_eq!(t.c.iter().map(|c| c.get()).collect::<Vec<_>>(), [12345, 6]);
        assert!(toml::from_str::<T>("c = [0]").is_err());
    }
}
