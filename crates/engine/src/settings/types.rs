//! Validated values that several backends' settings share: a server address, a host name, a
//! header name, an HTTP method token; and the two errors of settings checks.
//!
//! Each type can only hold a valid value: it is parsed once, where the settings are read (or
//! with [`FromStr`] in code), and the backends use it without checking it again.
//!
//! ```
//! use cache_purge_hooks_engine::settings::types::ServerAddr;
//!
//! let addr: ServerAddr = "[::1]:6082".parse().unwrap();
//! assert_eq!((addr.host(), addr.port()), ("::1", 6082));
//! assert_eq!(addr.to_string(), "[::1]:6082");
//! assert_eq!(
//!     "nohost".parse::<ServerAddr>().unwrap_err().to_string(),
//!     "`nohost` is not `host:port`"
//! );
//! ```
//!
//! Every type deserializes from its string form (the error is the expectation, as
//! [`FromStr`] gives it) and serializes back to it.

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// A value that is not what its key expects. The message says what was expected, naming the
/// value (`` `nohost` is not `host:port` ``); the key and origin are added by the loader.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct InvalidValue {
    /// What is wrong and what was expected.
    pub message: String,
}

impl InvalidValue {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// A rule across several keys of one backend's settings is broken (`mode = "files"` without a
/// `key_template`, a key template using `$proxy_host` without `proxy_host`...). Returned by the
/// one check of each rule, such as
/// [`NginxSettings::check`](crate::settings::NginxSettings::check), which the loader calls and
/// the backend's constructor calls again for settings built in code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
#[non_exhaustive]
pub struct FieldError {
    /// The key inside the backend's table (`key_template`), which is missing or wrong.
    pub key: &'static str,
    /// What is wrong and what is expected.
    pub message: String,
}

impl FieldError {
    /// An error about this key.
    pub fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self {
            key,
            message: message.into(),
        }
    }
}

/// Implements `Serialize` (the `Display` form) and `Deserialize` (a string, through
/// `FromStr`, whose [`InvalidValue`] message becomes the deserializer's error as is) for a type
/// whose settings form is a string.
macro_rules! string_serde {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse()
                    .map_err(|e: $crate::settings::types::InvalidValue| {
                        <D::Error as serde::de::Error>::custom(e.message)
                    })
            }
        }
    };
}
pub(crate) use string_serde;

/// Implements `Serialize`, `Deserialize`, `FromStr` and `Display` for a fieldless enum from
/// its snake_case names, with an error that lists the accepted names (serde's own message
/// names Rust types instead).
macro_rules! named_enum {
    ($ty:ident, $what:literal, { $($variant:ident = $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The name of the value in the settings.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl std::str::FromStr for $ty {
            type Err = $crate::settings::types::InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(Self::$variant),)+
                    _ => Err($crate::settings::types::InvalidValue::new(format!(
                        "unknown {} `{}`; expected one of `{}`",
                        $what,
                        s,
                        [$($name),+].join("`, `")
                    ))),
                }
            }
        }
        $crate::settings::types::string_serde!($ty);
    };
}
pub(crate) use named_enum;

/// Whether `s` is an HTTP token (RFC 9110): what header names and methods are made of.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `s` looks like a host, with an optional port: letters, digits, `-`, `.`, and `:`,
/// `[`, `]` for ports and IPv6 literals.
fn is_host(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']'))
}

/// A server's address, `host:port` (`[::1]:6082` for IPv6): the port is not 0, the host is a
/// name or an IP address. For the HTTP modes, `https://host:port` says to purge over TLS
/// (`http://host:port` is the same as `host:port`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerAddr {
    host: String,
    port: u16,
    tls: bool,
}

impl ServerAddr {
    /// Whether it was given as `https://...`: HTTP purges go over TLS.
    pub fn is_https(&self) -> bool {
        self.tls
    }

    /// The base URL of HTTP requests to it: `http://host:port` or `https://host:port` (IPv6
    /// hosts in brackets).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }

    /// The host, without brackets (`::1` for `[::1]:6082`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, never 0.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `localhost:port`, for the backends' default servers (`port` is not 0).
    pub(crate) fn localhost(port: u16) -> Self {
        debug_assert!(port != 0);
        Self {
            host: "localhost".to_owned(),
            port,
            tls: false,
        }
    }
}

impl FromStr for ServerAddr {
    type Err = InvalidValue;

    fn from_str(given: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidValue::new(format!("`{given}` is not `host:port`"));
        let (tls, s) = match (
            given.strip_prefix("https://"),
            given.strip_prefix("http://"),
        ) {
            (Some(rest), _) => (true, rest.trim_end_matches('/')),
            (None, Some(rest)) => (false, rest.trim_end_matches('/')),
            (None, None) => (false, given),
        };
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
            if h.contains(['[', ']']) {
                return Err(bad());
            }
            (h, p)
        } else {
            let (h, p) = s.rsplit_once(':').ok_or_else(bad)?;
            // A `:` left in the host is an IPv6 address without brackets: which `:` starts
            // the port would be a guess.
            if h.contains([':', '[', ']']) {
                return Err(bad());
            }
            (h, p)
        };
        if !is_host(host) {
            return Err(bad());
        }
        let port: u16 = port.parse().map_err(|_| {
            InvalidValue::new(format!("`{port}` in `{given}` is not a port number"))
        })?;
        if port == 0 {
            return Err(InvalidValue::new(format!("port 0 in `{given}`")));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tls {
            f.write_str("https://")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

string_serde!(ServerAddr);

/// A host name, optionally with a port (`www.example.com`, `example.com:8080`, `[::1]`):
/// letters, digits, `-`, `.`, and `:`, `[`, `]`. Always a valid `Host` header value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(String);

impl HostName {
    /// The host as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for HostName {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_host(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidValue::new(format!(
                "`{s}` is not a host name (letters, digits, `-`, `.`, port)"
            )))
        }
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(HostName);

/// An HTTP header name (a token: letters, digits and ``!#$%&'*+-.^_`|~``), as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HeaderName(String);

impl HeaderName {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For defaults written in this crate, which are tokens.
    pub(crate) fn from_static(name: &'static str) -> Self {
        debug_assert!(is_token(name), "`{name}` is not a token");
        Self(name.to_owned())
    }
}

impl FromStr for HeaderName {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_token(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidValue::new(format!(
                "`{s}` is not a valid header name"
            )))
        }
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(HeaderName);

/// An HTTP request method (a token, like `PURGE` or `GET`), as written: methods are
/// case-sensitive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpMethod(String);

impl HttpMethod {
    /// The method as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For defaults written in this crate, which are tokens.
    pub(crate) fn from_static(name: &'static str) -> Self {
        debug_assert!(is_token(name), "`{name}` is not a token");
        Self(name.to_owned())
    }
}

impl FromStr for HttpMethod {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_token(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidValue::new(format!("`{s}` is not an HTTP method")))
        }
    }
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(HttpMethod);

/// A credential (an API token or key): kept out of `Debug` output, logs and printed settings.
///
/// `Debug` and `Display` write `<redacted>`; so does serialization (what `cache-purge
/// settings` prints), so a printed settings file never carries the secret. Only
/// [`expose`](Self::expose) gives the value, to the one place that sends it.
///
/// ```
/// use cache_purge_hooks_engine::settings::types::Secret;
///
/// let token: Secret = "s3cr3t-token".parse().unwrap();
/// assert_eq!(format!("{token:?} {token}"), "Secret(<redacted>) <redacted>");
/// assert_eq!(token.expose(), "s3cr3t-token");
/// assert!("".parse::<Secret>().is_err());
/// assert!("has space".parse::<Secret>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the header that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(InvalidValue::new("empty: expected the API token or key"));
        }
        // It goes into an HTTP header: visible ASCII only (the value itself is never quoted
        // in the error).
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidValue::new(
                "holds spaces, control or non-ASCII characters: an API token is visible ASCII \
                 (was more than the token pasted?)",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

string_serde!(Secret);

/// The base URL of an HTTP API (`https://api.cloudflare.com/client/v4`): `http` or `https`,
/// a host, an optional path, no query or fragment; kept without a trailing `/`. CDN backends
/// default to the provider's real endpoint; tests point them at a local fake.
///
/// ```
/// use cache_purge_hooks_engine::settings::types::BaseUrl;
///
/// let url: BaseUrl = "http://127.0.0.1:8080/client/v4/".parse().unwrap();
/// assert_eq!(url.as_str(), "http://127.0.0.1:8080/client/v4");
/// assert!("api.cloudflare.com".parse::<BaseUrl>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BaseUrl(String);

impl BaseUrl {
    /// The URL without a trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For defaults written in this crate.
    #[allow(dead_code)]
    pub(crate) fn from_static(url: &'static str) -> Self {
        Self(url.trim_end_matches('/').to_owned())
    }
}

impl FromStr for BaseUrl {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = url::Url::parse(s).map_err(|e| {
            InvalidValue::new(format!(
                "`{s}` is not a URL ({e}); expected like `https://api.example.com/v1`"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(InvalidValue::new(format!(
                "`{s}` must be an http:// or https:// URL with a host"
            )));
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(InvalidValue::new(format!(
                "`{s}` must not hold a query, a fragment or credentials"
            )));
        }
        Ok(Self(url.as_str().trim_end_matches('/').to_owned()))
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(BaseUrl);

/// A request rate, `N/s`, `N/min` or `N/h` (`5/min`, `10/s`, `0.5/s`): how many requests a
/// client-side [`RateLimit`](crate::backend::RateLimit) lets through per unit of time.
///
/// ```
/// use cache_purge_hooks_engine::settings::types::RequestRate;
///
/// let r: RequestRate = "5/min".parse().unwrap();
/// assert!((r.per_second() - 5.0 / 60.0).abs() < 1e-12);
/// assert_eq!(r.to_string(), "5/min");
/// assert!("0/s".parse::<RequestRate>().is_err());
/// assert!("5 per minute".parse::<RequestRate>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RequestRate {
    count: f64,
    unit: RateUnit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RateUnit {
    Second,
    Minute,
    Hour,
}

impl RequestRate {
    /// `count` requests per second (more than 0, finite).
    pub fn per_second_of(count: f64) -> Option<Self> {
        (count.is_finite() && count > 0.0).then_some(Self {
            count,
            unit: RateUnit::Second,
        })
    }

    /// `count` requests per minute (more than 0, finite).
    pub fn per_minute_of(count: f64) -> Option<Self> {
        (count.is_finite() && count > 0.0).then_some(Self {
            count,
            unit: RateUnit::Minute,
        })
    }

    /// The rate in requests per second.
    pub fn per_second(&self) -> f64 {
        match self.unit {
            RateUnit::Second => self.count,
            RateUnit::Minute => self.count / 60.0,
            RateUnit::Hour => self.count / 3600.0,
        }
    }

    /// This rate `factor` times faster (for tests against a fake that runs its clock faster).
    pub fn scaled(self, factor: f64) -> Self {
        Self {
            count: self.count * factor,
            unit: self.unit,
        }
    }
}

impl FromStr for RequestRate {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            InvalidValue::new(format!(
                "`{s}` is not a rate: expected requests per unit of time, like `5/s`, `5/min` or `100/h`"
            ))
        };
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: f64 = count.trim().parse().map_err(|_| bad())?;
        let unit = match unit.trim() {
            "s" | "sec" | "second" => RateUnit::Second,
            "min" | "minute" => RateUnit::Minute,
            "h" | "hour" => RateUnit::Hour,
            _ => return Err(bad()),
        };
        if !count.is_finite() || count <= 0.0 {
            return Err(InvalidValue::new(format!(
                "`{s}`: the rate must be more than 0"
            )));
        }
        Ok(Self { count, unit })
    }
}

impl fmt::Display for RequestRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            RateUnit::Second => "s",
            RateUnit::Minute => "min",
            RateUnit::Hour => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

string_serde!(RequestRate);

/// `servers`: a list of `host:port`, or one comma-separated string of them (handy in an
/// environment variable). An element's error is keyed by its index (`servers[1]`).
pub(crate) fn servers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ServerAddr>, D::Error> {
    struct Servers;
    impl<'de> serde::de::Visitor<'de> for Servers {
        type Value = Vec<ServerAddr>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of `host:port`, or one comma-separated string of them")
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().map_err(|e: InvalidValue| E::custom(e.message)))
                .collect()
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut servers = Vec::new();
            while let Some(server) = seq.next_element()? {
                servers.push(server);
            }
            Ok(servers)
        }
    }
    d.deserialize_any(Servers)
}

/// `hosts`: a list of host patterns, or one comma-separated string of them (handy in an
/// environment variable). An element's error is keyed by its index (`hosts[1]`).
pub(crate) fn host_patterns<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<crate::routing::HostPattern>>, D::Error> {
    struct Patterns;
    impl<'de> serde::de::Visitor<'de> for Patterns {
        type Value = Vec<crate::routing::HostPattern>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of host patterns (`www.example.com`, `*.example.org`), or one comma-separated string of them")
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().map_err(|e: InvalidValue| E::custom(e.message)))
                .collect()
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut hosts = Vec::new();
            while let Some(host) = seq.next_element()? {
                hosts.push(host);
            }
            Ok(hosts)
        }
    }
    d.deserialize_any(Patterns).map(Some)
}

/// `pipeline` of the Varnish and nginx `http` modes: how many requests one keep-alive
/// connection to a plain `http://` server is written at once (HTTP/1.1 pipelining), 1 to
/// [`Pipeline::MAX`]; 1 sends one request per connection at a time.
///
/// ```
/// use cache_purge_hooks_engine::settings::Pipeline;
///
/// assert_eq!(Pipeline::default().get(), 8);
/// assert_eq!("16".parse::<Pipeline>().unwrap().get(), 16);
/// let e = Pipeline::new(0).unwrap_err();
/// assert_eq!(e.to_string(), "expected 1 to 64 requests written at once on one connection, got 0");
/// assert!("65".parse::<Pipeline>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pipeline(usize);

impl Pipeline {
    /// The most requests written at once on one connection.
    pub const MAX: usize = 64;

    /// Checks a depth.
    pub fn new(requests: usize) -> Result<Self, InvalidValue> {
        if !(1..=Self::MAX).contains(&requests) {
            return Err(InvalidValue::new(format!(
                "expected 1 to {} requests written at once on one connection, got {requests}",
                Self::MAX
            )));
        }
        Ok(Self(requests))
    }

    /// The number of requests.
    pub fn get(self) -> usize {
        self.0
    }
}

impl Default for Pipeline {
    /// 8 requests: with `concurrency = 8` connections, the bench's Varnish purged 1.6 to 2
    /// times as fast as wrk with 16 connections, one request on each (docs/performance.md).
    fn default() -> Self {
        Self(8)
    }
}

impl FromStr for Pipeline {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let requests = s
            .trim()
            .parse()
            .map_err(|_| InvalidValue::new(format!("`{s}` is not a number of requests")))?;
        Self::new(requests)
    }
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl serde::Serialize for Pipeline {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0 as u64)
    }
}

impl<'de> Deserialize<'de> for Pipeline {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(usize::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// An optional integer of at least 1.
pub(crate) fn optional_at_least_one<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<NonZeroUsize>, D::Error> {
    at_least_one(d).map(Some)
}

/// `concurrency`, `max_batch`: an integer of at least 1.
pub(crate) fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<NonZeroUsize, D::Error> {
    let n = usize::deserialize(d)?;
    NonZeroUsize::new(n).ok_or_else(|| serde::de::Error::custom("expected at least 1"))
}

/// Durations as humantime strings (`"5s"`, `"250ms"`), with an error that shows the form.
pub(crate) mod duration {
    use super::*;

    /// Writes `5s`, `1m 30s`...
    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        humantime_serde::serialize(d, s)
    }

    /// Reads `"5s"`, `"250ms"`, `"1h 30m"`.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    /// Parses a humantime duration, or says what was expected.
    pub(crate) fn parse(text: &str) -> Result<Duration, String> {
        humantime::parse_duration(text).map_err(|_| {
            format!("invalid value: string {text:?}, expected a duration like \"5s\" or \"250ms\"")
        })
    }
}

/// An optional duration: absent, or `"5s"`.
pub(crate) mod optional_duration {
    use super::*;

    /// Writes the duration (the field is skipped when absent).
    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Reads `"5s"`.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(d).map(Some)
    }
}

/// Timeouts: a duration longer than zero (a zero timeout fails every request).
pub(crate) mod timeout {
    use super::*;

    pub(crate) use super::duration::serialize;

    /// Reads a duration, refusing `0s`.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let value = super::duration::deserialize(d)?;
        if value.is_zero() {
            return Err(serde::de::Error::custom("expected more than 0s"));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        let a: ServerAddr = "localhost:6082".parse().unwrap();
        assert_eq!((a.host(), a.port()), ("localhost", 6082));
        assert_eq!(a.to_string(), "localhost:6082");
        let a: ServerAddr = "[::1]:80".parse().unwrap();
        assert_eq!((a.host(), a.port()), ("::1", 80));
        assert_eq!(a.to_string(), "[::1]:80");
        for (bad, message) in [
            ("localhost", "`localhost` is not `host:port`"),
            ("h:0", "port 0 in `h:0`"),
            ("h:99999", "`99999` in `h:99999` is not a port number"),
            (":80", "`:80` is not `host:port`"),
            ("::1:80", "`::1:80` is not `host:port`"),
            ("a b:80", "`a b:80` is not `host:port`"),
        ] {
            assert_eq!(
                bad.parse::<ServerAddr>().unwrap_err().message,
                message,
                "{bad}"
            );
        }
    }

    #[test]
    fn names_and_tokens() {
        assert_eq!(
            "example.com:8080".parse::<HostName>().unwrap().as_str(),
            "example.com:8080"
        );
        assert!("exa mple".parse::<HostName>().is_err());
        assert_eq!(
            "X-Ban-Url".parse::<HeaderName>().unwrap().as_str(),
            "X-Ban-Url"
        );
        assert_eq!(
            "x url".parse::<HeaderName>().unwrap_err().message,
            "`x url` is not a valid header name"
        );
        assert_eq!("PURGE".parse::<HttpMethod>().unwrap().as_str(), "PURGE");
        assert_eq!(
            "PU RGE".parse::<HttpMethod>().unwrap_err().message,
            "`PU RGE` is not an HTTP method"
        );
    }

    #[test]
    fn durations_show_their_form() {
        assert_eq!(
            duration::parse("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            duration::parse("soon").unwrap_err(),
            "invalid value: string \"soon\", expected a duration like \"5s\" or \"250ms\""
        );
    }
}
