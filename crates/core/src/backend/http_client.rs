//! What the HTTP backends (Varnish `http` mode, nginx `http` mode) share: one keep-alive
//! client per backend, and the translation of transport errors and status codes into
//! [`PurgeError`]s that name the server.

use std::time::Duration;

use reqwest::{Client, Method, StatusCode};

use super::{FailureKind, PurgeError};

/// The longest part of a response body quoted in an error message.
const MAX_BODY_IN_ERROR: usize = 300;

/// A client with keep-alive connections, `timeout` per request (connecting included), and
/// room for `idle_per_host` idle connections per server.
pub(crate) fn client(timeout: Duration, idle_per_host: usize) -> Result<Client, String> {
    Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_max_idle_per_host(idle_per_host)
        .tcp_nodelay(true)
        // Purge endpoints answer directly; a redirect would purge some other URL.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot create the HTTP client: {e}"))
}

/// Parses an HTTP method name (already checked to be a token by the settings).
pub(crate) fn method(name: &str) -> Result<Method, String> {
    Method::from_bytes(name.as_bytes()).map_err(|_| format!("`{name}` is not an HTTP method"))
}

/// The base URL of a `host:port` server: `http://host:port` (IPv6 hosts in brackets).
pub(crate) fn base_url(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("http://[{host}]:{port}")
    } else {
        format!("http://{host}:{port}")
    }
}

/// A request that got no response: refused, reset, timed out.
pub(crate) fn transport_error(server: &str, e: &reqwest::Error) -> PurgeError {
    let what = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        format!("cannot connect: {}", root_cause(e))
    } else {
        format!("request failed: {}", root_cause(e))
    };
    PurgeError::transient(what).on_server(server)
}

/// A response with a status that is neither success nor "not cached".
///
/// 429, and 503 with `Retry-After`, are rate limiting (honouring `Retry-After` in seconds);
/// other 5xx (but 501) and 408 are
/// transient, every other status is permanent: the purge endpoint refuses this request as
/// configured.
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
    let retry_after = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let kind = if status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some())
    {
        // A 503 with Retry-After says when to come back, like a 429.
        FailureKind::RateLimited { retry_after }
    } else if (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
        || status == StatusCode::REQUEST_TIMEOUT
    {
        // 501 is what a purge sent to a location without the purge handler gets: a
        // configuration problem, like 405, not a passing one.
        FailureKind::Transient
    } else {
        FailureKind::Permanent
    };
    PurgeError {
        kind,
        ..PurgeError::transient(message).on_server(server)
    }
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
            e.kind,
            FailureKind::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            status_error("h:1", StatusCode::BAD_GATEWAY, None, "").kind,
            FailureKind::Transient
        );
        assert_eq!(
            status_error("h:1", StatusCode::SERVICE_UNAVAILABLE, Some("3"), "").kind,
            FailureKind::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            status_error("h:1", StatusCode::SERVICE_UNAVAILABLE, None, "").kind,
            FailureKind::Transient
        );
        let e = status_error(
            "h:1",
            StatusCode::FORBIDDEN,
            None,
            "<h1>403\nForbidden</h1>",
        );
        assert_eq!(e.kind, FailureKind::Permanent);
        assert_eq!(
            e.to_string(),
            "h:1: answered 403 Forbidden: <h1>403 Forbidden</h1> (permanent)"
        );
    }

    #[test]
    fn ipv6_hosts_get_brackets() {
        assert_eq!(base_url("::1", 8080), "http://[::1]:8080");
        assert_eq!(base_url("127.0.0.1", 80), "http://127.0.0.1:80");
    }
}
