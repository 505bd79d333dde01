//! What the HTTP backends share: the reqwest client (the CDN backends', `verify`'s, and
//! the Varnish and nginx `http` modes' for `https://` servers; their `http://` servers go
//! through [`CacheClient`](super::cache_client::CacheClient)), the request URL of a server's
//! base and a path ([`ServerUrl`]), and the translation of transport errors and status codes
//! into [`PurgeError`]s with their [`Cause`] and the server named. The CDN backends use the
//! client, the transport errors and `Retry-After`; they read their providers' error bodies
//! themselves.

// With only CDN backends, the status-line helpers of Varnish and nginx are unused.
#![cfg_attr(not(any(feature = "varnish", feature = "nginx")), allow(dead_code))]

use std::time::Duration;

use reqwest::{Client, Method, StatusCode, Url};

use super::{Cause, PurgeError, SetupError};

/// The longest part of a response body quoted in an error message.
const MAX_BODY_IN_ERROR: usize = 300;

/// A client with keep-alive connections, `timeout` per request (connecting included), and
/// room for `idle_per_host` idle connections per server.
pub(crate) fn client(timeout: Duration, idle_per_host: usize) -> Result<Client, SetupError> {
    Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_max_idle_per_host(idle_per_host)
        .tcp_nodelay(true)
        // Purge endpoints answer directly; a redirect would purge some other URL.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| SetupError::HttpClient(e.to_string()))
}

/// The reqwest method of a name that is a token (an `HttpMethod` of the settings, or a
/// constant): reqwest takes every token, so this fails only if it ever stops doing so, and
/// then as a client that cannot be built.
pub(crate) fn method(name: &str) -> Result<Method, SetupError> {
    Method::from_bytes(name.as_bytes())
        .map_err(|e| SetupError::HttpClient(format!("method `{name}`: {e}")))
}

/// A server's base URL (`http://host:port`, as [`ServerAddr::base_url`] writes it), parsed
/// once: the URL of each request is then the parsed base with its path and query set, not a
/// parse of the whole text, whose host parse (IDNA processing included) was a visible part
/// of the client's CPU per purge.
///
/// [`ServerAddr::base_url`]: crate::settings::types::ServerAddr::base_url
#[derive(Clone, Debug)]
pub(crate) struct ServerUrl {
    text: String,
    /// `None` if the base itself does not parse: every request then takes the slow path and
    /// fails as it always did.
    parsed: Option<Url>,
    /// The scheme and authority of a plain `http://` base, for the requests sent through
    /// the engine's pipelining HTTP/1 client ([`CacheClient`](super::cache_client::CacheClient));
    /// `None` for `https://`.
    #[cfg(any(feature = "varnish", feature = "nginx"))]
    origin: Option<super::cache_client::Origin>,
}

impl ServerUrl {
    pub(crate) fn new(text: String) -> Self {
        let parsed = Url::parse(&text).ok().filter(|u| u.path() == "/");
        Self {
            #[cfg(any(feature = "varnish", feature = "nginx"))]
            origin: parsed.as_ref().and_then(super::cache_client::plain_origin),
            text,
            parsed,
        }
    }

    /// The scheme, authority and `Host` of a plain `http://` base URL.
    #[cfg(any(feature = "varnish", feature = "nginx"))]
    pub(crate) fn origin(&self) -> Option<&super::cache_client::Origin> {
        self.origin.as_ref()
    }

    /// Whether requests to this server go through the engine's own HTTP/1 client (a plain
    /// `http://` base URL).
    #[cfg(any(feature = "varnish", feature = "nginx"))]
    pub(crate) fn is_plain(&self) -> bool {
        self.origin.is_some()
    }

    /// The request URL of `path_and_query` on this server: always what
    /// `Url::parse(&format!("{base}{path_and_query}"))` gives (the bytes sent must stay the
    /// cache's key), with the error's text when that fails.
    ///
    /// `url`'s setters encode and normalise somewhat differently from its parser (tabs are
    /// kept, `?` and `#` in a path are encoded, `%2e` segments are dots to both...), so the
    /// fast way is only taken for text that neither would change: visible ASCII that no
    /// percent-encode set holds, no `\`, no `#`, no dot segment (literal or encoded). That is
    /// what [`PurgeUrl`](crate::target::PurgeUrl) normally holds; anything else is parsed
    /// whole, as before.
    pub(crate) fn join(&self, path_and_query: &str) -> Result<Url, (String, url::ParseError)> {
        if let Some(base) = &self.parsed
            && let Some((path, query)) = plain_path_and_query(path_and_query)
        {
            let mut url = base.clone();
            url.set_path(path);
            url.set_query(query);
            return Ok(url);
        }
        let text = format!("{}{path_and_query}", self.text);
        Url::parse(&text).map_err(|e| (text, e))
    }
}

/// `path_and_query` split at its first `?`, if it is plain enough that setting it on a URL
/// gives what parsing it does (see [`ServerUrl::join`]); `None` otherwise.
pub(crate) fn plain_path_and_query(path_and_query: &str) -> Option<(&str, Option<&str>)> {
    let bytes = path_and_query.as_bytes();
    if bytes.first() != Some(&b'/') {
        return None;
    }
    let mut query_start = None;
    let mut segment_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let plain = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'%'
                    | b'/'
                    | b'?'
            );
        if !plain {
            return None;
        }
        if query_start.is_none() {
            match b {
                b'/' => {
                    if is_dot_segment(&bytes[segment_start..i]) {
                        return None;
                    }
                    segment_start = i + 1;
                }
                b'?' => {
                    if is_dot_segment(&bytes[segment_start..i]) {
                        return None;
                    }
                    query_start = Some(i);
                }
                _ => {}
            }
        }
    }
    match query_start {
        Some(q) => Some((&path_and_query[..q], Some(&path_and_query[q + 1..]))),
        None if is_dot_segment(&bytes[segment_start..]) => None,
        None => Some((path_and_query, None)),
    }
}

/// Whether a path segment is one the URL parser resolves: `.` or `..`, either dot possibly
/// written `%2e` or `%2E`.
fn is_dot_segment(segment: &[u8]) -> bool {
    let dot_at = |s: &[u8]| -> Option<usize> {
        match s {
            [b'.', ..] => Some(1),
            [b'%', b'2', b'e' | b'E', ..] => Some(3),
            _ => None,
        }
    };
    let Some(first) = dot_at(segment) else {
        return false;
    };
    let rest = &segment[first..];
    rest.is_empty() || dot_at(rest).is_some_and(|n| n == rest.len())
}

/// A request that got no response: refused, reset, timed out.
pub(crate) fn transport_error(server: &str, e: reqwest::Error) -> PurgeError {
    let (cause, what) = if e.is_timeout() {
        (Cause::Timeout, "timed out".to_owned())
    } else if e.is_connect() {
        (
            Cause::Unreachable,
            format!("cannot connect: {}", root_cause(&e)),
        )
    } else {
        // Sent, but no complete answer: the connection closed or broke (an nginx worker
        // that crashed on the request closes it without a word).
        (
            Cause::ConnectionLost,
            format!("request failed: {}", root_cause(&e)),
        )
    };
    PurgeError::new(cause, what)
        .on_server(server)
        .with_source(e)
}

/// The wait a `Retry-After` value asks for: delay-seconds, or an HTTP-date (RFC 9110 10.2.3;
/// a date in the past means now).
pub(crate) fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A response with a status that is neither success nor "not cached".
///
/// 429, and 503 with `Retry-After`, are [`Cause::RateLimited`] (with the wait it asks for, in
/// seconds or as an HTTP-date); every other status is [`Cause::Status`], whose
/// [`is_transient`](Cause::is_transient) tells 5xx and 408 (worth retrying) from the rest.
pub(crate) fn status_error(
    server: &str,
    status: StatusCode,
    retry_after: Option<&str>,
    body: &str,
) -> PurgeError {
    let mut message = format!("answered {status}");
    let body = body.trim();
    if !body.is_empty() {
        let cut: String = body.chars().take(MAX_BODY_IN_ERROR).collect();
        message.push_str(": ");
        message.push_str(&cut.replace(['\r', '\n'], " "));
        if cut.len() < body.len() {
            message.push('…');
        }
    }
    let retry_after = retry_after.and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
    let cause = if status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some())
    {
        // A 503 with Retry-After says when to come back, like a 429.
        Cause::RateLimited { retry_after }
    } else {
        Cause::Status(status.as_u16())
    };
    PurgeError::new(cause, message).on_server(server)
}

/// The innermost error's text: "Connection refused (os error 111)" rather than reqwest's
/// "error sending request for url (...)".
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_failure_kinds() {
        let e = status_error("h:1", StatusCode::TOO_MANY_REQUESTS, Some("7"), "");
        assert_eq!(
            e.cause(),
            &Cause::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        let e = status_error("h:1", StatusCode::BAD_GATEWAY, None, "");
        assert_eq!(e.cause(), &Cause::Status(502));
        assert!(e.is_transient());
        assert_eq!(
            status_error("h:1", StatusCode::SERVICE_UNAVAILABLE, Some("3"), "").cause(),
            &Cause::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        let e = status_error("h:1", StatusCode::SERVICE_UNAVAILABLE, None, "");
        assert_eq!(e.cause(), &Cause::Status(503));
        assert!(e.is_transient());
        let e = status_error(
            "h:1",
            StatusCode::FORBIDDEN,
            None,
            "<h1>403\nForbidden</h1>",
        );
        assert_eq!(e.cause(), &Cause::Status(403));
        assert!(!e.is_transient());
        assert_eq!(
            e.to_string(),
            "h:1: answered 403 Forbidden: <h1>403 Forbidden</h1> (permanent)"
        );
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = httpdate::parse_http_date("Tue, 01 Dec 2026 10:00:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Tue, 01 Dec 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date already past: come back now.
        assert_eq!(
            parse_retry_after("Tue, 01 Dec 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        // Through a response: a 429 whose Retry-After is a date.
        let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(60));
        let e = status_error("h:1", StatusCode::TOO_MANY_REQUESTS, Some(&later), "");
        let wait = e.retry_after().unwrap();
        assert!(
            wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
    }

    /// What a request's URL was before [`ServerUrl`]: the whole text parsed.
    fn parsed_whole(base: &str, path_and_query: &str) -> Option<String> {
        Url::parse(&format!("{base}{path_and_query}"))
            .ok()
            .map(String::from)
    }

    const BASES: [&str; 5] = [
        "http://127.0.0.1:8080",
        "http://[::1]:6081",
        "https://cache.example:443",
        "http://localhost:80",
        "http://Cache.EXAMPLE:8080",
    ];

    #[test]
    fn request_urls_are_what_parsing_the_whole_text_gives() {
        let hostile = [
            "/",
            "/a/b?c=d&e=f",
            "/purge/a-typical_slug~1/2?x=1;y=(2)*3+4,5!$@:",
            "/a/./b",
            "/a/../b",
            "/a/..",
            "/a/.",
            "/a/%2e%2E/b",
            "/a/%2e./b",
            "/a/.%2E",
            "/%2e",
            "/a/.../b",
            "/a/.b/c.",
            "/a?b/../c",
            "/a?./..",
            "/a b",
            "/a\tb",
            "/a\nb?c\rd",
            "/a\\b",
            "/a#f",
            "/a?b#c",
            "/é?é",
            "/%E2%82%AC?%zz%",
            "//x/y",
            "//",
            "/a?",
            "/?",
            "/??",
            "/a'b?c'd",
            "/{x}`y`?{z}",
            "/a|b^c[d]?e|f^g[h]",
            "/a\"b<c>?d\"e<f>",
            "/a ",
            "/a? ",
            "/a\u{1}?\u{7f}",
            "a/b",
            "",
        ];
        for base in BASES {
            let b = ServerUrl::new(base.to_owned());
            for pq in hostile {
                let built = b.join(pq).ok().map(String::from);
                assert_eq!(built, parsed_whole(base, pq), "{base} + {pq:?}");
            }
        }
        // The common case takes the fast way.
        assert!(plain_path_and_query("/purge/posts/my-post-1?page=2").is_some());
        assert!(plain_path_and_query("/a/%2E%2E/b").is_none());
        // A base that does not parse fails every request with the whole text.
        let bad = ServerUrl::new("http://exa mple:80".to_owned());
        let (text, _) = bad.join("/a").unwrap_err();
        assert_eq!(text, "http://exa mple:80/a");
    }

    proptest::proptest! {
        #[test]
        fn request_urls_are_what_parsing_the_whole_text_gives_on_random_paths(
            pq in "/[a-zA-Z0-9/./?%2eE#\\\\ \t'`{}|^\\[\\]:@;=&+!$*()~_,é\"<>-]{0,30}",
            k in 0usize..5,
        ) {
            let base = BASES[k];
            let built = ServerUrl::new(base.to_owned()).join(&pq).ok().map(String::from);
            proptest::prop_assert_eq!(built, parsed_whole(base, &pq));
        }
    }

    #[test]
    fn ipv6_hosts_get_brackets_and_https_servers_their_scheme() {
        let url = |s: &str| {
            s.parse::<crate::settings::types::ServerAddr>()
                .unwrap()
                .base_url()
        };
        assert_eq!(url("[::1]:8080"), "http://[::1]:8080");
        assert_eq!(url("127.0.0.1:80"), "http://127.0.0.1:80");
        assert_eq!(url("http://127.0.0.1:80"), "http://127.0.0.1:80");
        assert_eq!(
            url("https://cache.example:8443/"),
            "https://cache.example:8443"
        );
        assert_eq!(url("https://[::1]:443"), "https://[::1]:443");
    }
}
