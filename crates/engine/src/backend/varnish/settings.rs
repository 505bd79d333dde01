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
    self, FieldError, HeaderName, HostName, InvalidValue, Pipeline, ServerAddr, named_enum,
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
    /// One refresh per URL: a `GET` carrying `X-Cache-Purge-Refresh: 1`, for which the VCL
    /// fetches the page anew (`req.hash_always_miss`) after purging every stored variant,
    /// so that the next visitor gets the new page from the cache instead of a miss. Needs
    /// the refresh branch of deploy/varnish/cache-purge.vcl; where the answer shows the VCL
    /// has none, the URL is purged with `PURGE` and fetched again instead (logged once at
    /// WARN).
    Refresh,
}

named_enum!(VarnishHttpMethod, "varnish http method", { Purge = "purge", Ban = "ban", Refresh = "refresh" });

/// How the Varnish backend purges tags ([`Target::Tag`](crate::target::Target::Tag)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VarnishTags {
    /// Tags are not purged: each tag target is reported as unsupported (a WARN, and the
    /// `unsupported` count of the backend's stats), never widened to a larger purge.
    #[default]
    None,
    /// Bans on the object header holding the tags (`tag_header`), matching whole tokens
    /// only: works with stock Varnish in every mode, and the ban lurker can retire them.
    Ban,
    /// `xkey.purge` (or `xkey.softpurge`) of the xkey vmod (varnish-modules) through an HTTP
    /// `PURGE` carrying the tag in `xkey_header`: needs `mode = "http"` and the shipped VCL.
    Xkey,
}

named_enum!(VarnishTags, "varnish tag purge", { None = "none", Ban = "ban", Xkey = "xkey" });

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
    /// In `http` mode: `purge` (default), `ban` or `refresh`.
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
    /// In `http` mode: keep-alive connections per server in use at once, default 8 (a
    /// refresh: requests in flight, each one origin fetch).
    #[serde(deserialize_with = "types::at_least_one")]
    pub concurrency: NonZeroUsize,
    /// In `http` mode, to a plain `http://` server: requests written at once on one
    /// connection (HTTP/1.1 pipelining; Varnish answers them in order), 1 to 64, default 8;
    /// 1 sends one at a time. Up to `concurrency × pipeline` requests are in flight.
    pub pipeline: Pipeline,
    /// How tags are purged: `none` (default: tag targets are reported unsupported), `ban`
    /// or `xkey`.
    pub tags: VarnishTags,
    /// For `tags = "ban"`: the object header holding an object's tags, separated by spaces
    /// or commas, default `xkey` (the header the xkey vmod reads, so one app serves both).
    pub tag_header: HeaderName,
    /// For `tags = "ban"` in `http` mode: the request header carrying the tag regex of a
    /// `BAN`, default `X-Ban-Tags`.
    pub ban_tags_header: HeaderName,
    /// For `tags = "xkey"`: the request header of the `PURGE` carrying the tag, default
    /// `xkey-purge`.
    pub xkey_header: HeaderName,
    /// For `tags = "xkey"`: soft purge (`xkey.softpurge`: objects stay as stale, served
    /// within their grace while they are fetched again) instead of removing them. Default
    /// `false`.
    pub soft_purge: bool,
}

/// 8 keep-alive connections per server (checked at compile time).
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
            pipeline: Pipeline::default(),
            tags: VarnishTags::default(),
            tag_header: HeaderName::from_static("xkey"),
            ban_tags_header: HeaderName::from_static("X-Ban-Tags"),
            xkey_header: HeaderName::from_static("xkey-purge"),
            soft_purge: false,
        }
    }
}

impl VarnishSettings {
    /// The rules across keys: the admin CLI (`mode = "cli"` or `"varnishadm"`) is plain TCP,
    /// so its servers cannot be `https://` addresses; `tags = "xkey"` runs in VCL, reached
    /// over HTTP, so it needs `mode = "http"`; `soft_purge` only exists for xkey.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.tags == VarnishTags::Xkey && self.mode != VarnishMode::Http {
            return Err(FieldError::new(
                "tags",
                format!(
                    "`xkey` purges run in VCL (xkey.purge), reached over Varnish's HTTP port: \
                     it needs mode = \"http\" (this backend has mode = \"{}\"); over the admin \
                     port, use tags = \"ban\"",
                    self.mode
                ),
            ));
        }
        if self.soft_purge && self.tags != VarnishTags::Xkey {
            return Err(FieldError::new(
                "soft_purge",
                format!(
                    "soft purges are xkey's (xkey.softpurge); this backend has tags = \"{}\": \
                     set tags = \"xkey\" (with mode = \"http\") or remove soft_purge",
                    self.tags
                ),
            ));
        }
        if self.http_method == VarnishHttpMethod::Refresh && self.mode != VarnishMode::Http {
            return Err(FieldError::new(
                "http_method",
                format!(
                    "a refresh is an HTTP GET that the VCL answers (req.hash_always_miss): it \
                     needs mode = \"http\" (this backend has mode = \"{}\")",
                    self.mode
                ),
            ));
        }
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
