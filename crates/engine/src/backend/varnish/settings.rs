//! The settings of `kind = "varnish"`, parsed into types: [`VarnishSettings`], its
//! [`VarnishMode`], [`BanStyle`], [`VarnishHttpMethod`] and [`MaxBanLength`].
//!
//! Always compiled, whatever the cargo features: settings files name every kind, and a kind
//! this build lacks is refused when the purger is built, not when the file is read.

use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::types::{
    self, FieldError, HeaderName, HostName, InvalidValue, ServerAddr, named_enum,
};

/// How the Varnish backend talks to Varnish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VarnishMode {
    /// The admin CLI protocol over TCP, natively (no process forked).
    #[default]
    Cli,
    /// Fork the `varnishadm` binary (argv, no shell) for each batch.
    Varnishadm,
    /// HTTP `PURGE` (per URL) or `BAN` (per batch) requests to Varnish's HTTP port.
    Http,
}

named_enum!(VarnishMode, "varnish mode", { Cli = "cli", Varnishadm = "varnishadm", Http = "http" });

/// Which request field a Varnish ban tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BanStyle {
    /// `req.url ~ ...` (works with any VCL; the ban list only shrinks as objects expire).
    #[default]
    ReqUrl,
    /// `obj.http.x-url ~ ...`, cleaned by the ban lurker; needs the documented VCL that copies
    /// the URL and host into object headers.
    Lurker,
}

named_enum!(BanStyle, "ban style", { ReqUrl = "req_url", Lurker = "lurker" });

/// The HTTP request the `http` Varnish mode sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VarnishHttpMethod {
    /// One `PURGE <url>` per URL (the VCL does `return (purge)`).
    #[default]
    Purge,
    /// One `BAN` per batch, the escaped regex in a header.
    Ban,
}

named_enum!(VarnishHttpMethod, "varnish http method", { Purge = "purge", Ban = "ban" });

/// The longest ban expression sent in one command, in bytes: at least 256 (below that, a
/// single long URL could not be banned).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MaxBanLength(usize);

impl MaxBanLength {
    /// The smallest length accepted.
    pub const MIN: usize = 256;

    /// Checks a length.
    pub fn new(bytes: usize) -> Result<Self, InvalidValue> {
        if bytes < Self::MIN {
            return Err(InvalidValue::new(format!(
                "expected at least {} bytes, got {bytes}",
                Self::MIN
            )));
        }
        Ok(Self(bytes))
    }

    /// The length in bytes.
    pub fn get(self) -> usize {
        self.0
    }
}

impl Default for MaxBanLength {
    /// 8000 bytes.
    fn default() -> Self {
        Self(8000)
    }
}

impl FromStr for MaxBanLength {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s
            .parse()
            .map_err(|_| InvalidValue::new(format!("`{s}` is not a number of bytes")))?;
        Self::new(bytes)
    }
}

impl fmt::Display for MaxBanLength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for MaxBanLength {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0 as u64)
    }
}

impl<'de> Deserialize<'de> for MaxBanLength {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(usize::deserialize(d)?).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// Options of `kind = "varnish"`. Names follow the seed's `VARNISHADM_*` settings. Each value
/// is valid by its type: the backend only checks what needs I/O (the secret file, the
/// `varnishadm` binary).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct VarnishSettings {
    /// `cli` (default), `varnishadm` or `http`.
    pub mode: VarnishMode,
    /// `host:port` of each server: the admin (`-T`) address in `cli`/`varnishadm` mode
    /// (default `localhost:6082`), the HTTP address in `http` mode (default `localhost:80`).
    /// Also accepts one comma-separated string (handy in environment variables).
    #[serde(deserialize_with = "types::servers")]
    pub servers: Vec<ServerAddr>,
    /// The admin secret file (`-S`), default `/etc/varnish/secret`.
    pub secret_file: PathBuf,
    /// Ban only objects of this host (matched exactly); default: any host.
    pub site_domain: Option<HostName>,
    /// The `varnishadm` binary for `mode = "varnishadm"`, default `/usr/bin/varnishadm`.
    pub varnishadm_bin: PathBuf,
    /// `req_url` (default) or `lurker`.
    pub ban_style: BanStyle,
    /// For `ban_style = "lurker"`: the object header holding the URL, default `x-url`.
    pub lurker_url_header: HeaderName,
    /// For `ban_style = "lurker"`: the object header holding the host, default `x-host`.
    pub lurker_host_header: HeaderName,
    /// In `http` mode: `purge` (default) or `ban`.
    pub http_method: VarnishHttpMethod,
    /// In `http` mode with `http_method = "ban"`: the header carrying the ban regex, default
    /// `X-Ban-Url`.
    pub ban_header: HeaderName,
    /// In `http` mode with `http_method = "ban"`: the header carrying the host regex, sent
    /// when the URLs have a host (absolute URLs, or `site_domain`), default `X-Ban-Host`.
    pub ban_host_header: HeaderName,
    /// The longest ban expression sent in one command (bytes, default 8000, at least 256);
    /// larger batches are split.
    pub max_ban_length: MaxBanLength,
    /// Timeout of one request or command, default `5s`.
    #[serde(with = "types::timeout")]
    pub timeout: Duration,
    /// In `http` mode: `PURGE` requests in flight at once per server, default 8.
    #[serde(deserialize_with = "types::at_least_one")]
    pub concurrency: NonZeroUsize,
}

/// 8 requests in flight per server (checked at compile time).
const DEFAULT_CONCURRENCY: NonZeroUsize = NonZeroUsize::new(8).unwrap();

impl Default for VarnishSettings {
    /// The settings of an empty `[backends.NAME]` table with `kind = "varnish"`.
    fn default() -> Self {
        Self {
            mode: VarnishMode::default(),
            servers: Vec::new(),
            secret_file: PathBuf::from("/etc/varnish/secret"),
            site_domain: None,
            varnishadm_bin: PathBuf::from("/usr/bin/varnishadm"),
            ban_style: BanStyle::default(),
            lurker_url_header: HeaderName::from_static("x-url"),
            lurker_host_header: HeaderName::from_static("x-host"),
            http_method: VarnishHttpMethod::default(),
            ban_header: HeaderName::from_static("X-Ban-Url"),
            ban_host_header: HeaderName::from_static("X-Ban-Host"),
            max_ban_length: MaxBanLength::default(),
            timeout: Duration::from_secs(5),
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

impl VarnishSettings {
    /// The rules across keys: the admin CLI (`mode = "cli"` or `"varnishadm"`) is plain TCP,
    /// so its servers cannot be `https://` addresses.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.mode != VarnishMode::Http && self.servers.iter().any(ServerAddr::is_https) {
            return Err(FieldError::new(
                "servers",
                "the admin port (mode = \"cli\" or \"varnishadm\") takes `host:port`, not `https://`; \
                 HTTPS is for mode = \"http\"",
            ));
        }
        Ok(())
    }

    /// The configured servers, or the default one for the mode (`localhost:6082` for the
    /// admin CLI, `localhost:80` for HTTP).
    pub fn servers_or_default(&self) -> Vec<ServerAddr> {
        if !self.servers.is_empty() {
            return self.servers.clone();
        }
        match self.mode {
            VarnishMode::Http => vec![ServerAddr::localhost(80)],
            _ => vec![ServerAddr::localhost(6082)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_lengths() {
        assert_eq!("256".parse::<MaxBanLength>().unwrap().get(), 256);
        assert_eq!(
            "255".parse::<MaxBanLength>().unwrap_err().message,
            "expected at least 256 bytes, got 255"
        );
        assert!("many".parse::<MaxBanLength>().is_err());
    }

    #[test]
    fn named_values() {
        assert_eq!("lurker".parse::<BanStyle>().unwrap(), BanStyle::Lurker);
        assert_eq!(VarnishMode::Varnishadm.to_string(), "varnishadm");
        assert_eq!(
            "ssh".parse::<VarnishMode>().unwrap_err().message,
            "unknown varnish mode `ssh`; expected one of `cli`, `varnishadm`, `http`"
        );
    }
}
