//! What the HTTP backends (Varnish `http` mode, nginx `http` mode) share: one keep-alive
//! client per backend, and the translation of transport errors and status codes into
//! [`PurgeError`]s with their [`Cause`] and the server named. The CDN backends use the
//! client, the transport errors and `Retry-After`; they read their providers' error bodies
//! themselves.

// With only CDN backends, the status-line helpers of Varnish and nginx are unused.
#![cfg_attr(not(any(feature = "varnish", feature = "nginx")), allow(dead_code))]

use std::time::Duration;

use reqwest::{Client, Method, StatusCode};

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
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// The error for a response whose status is neither success nor "not cached": its status,
/// `Retry-After` and (the start of) its body, via [`status_error`].
pub(crate) async fn response_error(server: &str, response: reqwest::Response) -> PurgeError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // A body that cannot be read only makes the message shorter.
    let body = response.text().await.unwrap_or_default();
    status_error(server, status, retry_after.as_deref(), &body)
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
