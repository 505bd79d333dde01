//! The HTTP client of the cache servers themselves (the Varnish and nginx `http` modes).
//!
//! An `http://` server is sent its requests through hyper (hyper-util's pooled client, the
//! one reqwest itself drives), each request's URI made of the server's scheme and authority,
//! parsed once, and the request's path and query: no URL parse per request, none of
//! reqwest's layers (redirects, retries, default-header merging) around a request that needs
//! none of them. An `https://` server keeps reqwest (rustls, the platform's roots), whose
//! per-request cost is small beside a TLS session's.
//!
//! Everything reqwest did for these requests is kept: `timeout` per request (connecting
//! included, the response's head and body within it), keep-alive pooling (`idle_per_host`
//! idle connections per server, idle ones closed after 90 s), `TCP_NODELAY`, TCP keep-alive
//! probes (15 s, as reqwest's defaults), no redirect followed, no proxy (the environment's
//! `HTTP_PROXY`/`ALL_PROXY` are ignored, as reqwest's `no_proxy()` did), and the bytes sent:
//! the method, the path and query as reqwest made them (see [`ServerUrl::join`]), the
//! caller's headers in their order, then `accept: */*` (reqwest's one default header) and
//! `host` from the server's address unless the caller set one.

use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::http_client::{self, ServerUrl, plain_path_and_query};
use super::{Cause, PurgeError, SetupError};

/// The most of a response body kept (an error message quotes its first 300 characters); the
/// rest is read and dropped, so that the connection can be used again.
const MAX_BODY_KEPT: usize = 16 * 1024;

/// How long an idle pooled connection is kept: reqwest's default.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// TCP keep-alive: reqwest's defaults (idle time and interval 15 s, 3 probes).
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);
const TCP_KEEPALIVE_RETRIES: u32 = 3;

/// One backend's client of its cache servers.
pub(crate) struct CacheClient {
    /// Boxed: hyper-util's client is large, and the backends' modes are enum variants.
    plain: Box<Client<HttpConnector, Empty<Bytes>>>,
    /// Built only when a server is not plain `http://`.
    tls: Option<reqwest::Client>,
    timeout: Duration,
}

impl std::fmt::Debug for CacheClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheClient")
            .field("tls", &self.tls.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Where a request goes: a URI for hyper (with the `Host` of its server), or a URL for
/// reqwest.
pub(crate) enum RequestTarget {
    Plain { uri: Uri, host: HeaderValue },
    Tls(reqwest::Url),
}

/// A plain `http://` server as its requests need it, built once: the scheme and authority of
/// reqwest's URI of the base URL, and the `Host` value hyper-util would format of it for
/// every request (the host, and the port unless it is 80).
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    scheme: Scheme,
    authority: Authority,
    host: HeaderValue,
}

/// A response, its body read (its first [`MAX_BODY_KEPT`] bytes kept).
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// A request that got no response, or could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// No complete response within `timeout`.
    #[error("timed out")]
    Timeout,
    /// The path and query make no URL on the server (see [`ServerUrl::join`]).
    #[error("cannot make a request URL of {text}: {error}")]
    Url {
        text: String,
        #[source]
        error: url::ParseError,
    },
    /// The URL is no valid request URI (reqwest refused these too).
    #[error("{0} is not a valid request URI")]
    Uri(String),
    /// From hyper (an `http://` server).
    #[error(transparent)]
    Plain(hyper_util::client::legacy::Error),
    /// From reqwest (an `https://` server).
    #[error(transparent)]
    Tls(reqwest::Error),
}

impl ServerUrl {
    /// The request target of `path_and_query` on this server: for a plain `http://` server
    /// the URI reqwest made of the URL [`join`](Self::join) gives (`Uri::from_str` of its
    /// text), built from the parsed authority without a parse when the text is plain.
    pub(crate) fn request_target(&self, path_and_query: &str) -> Result<RequestTarget, SendError> {
        if let Some(origin) = self.origin()
            && plain_path_and_query(path_and_query).is_some()
            && let Ok(pq) = PathAndQuery::try_from(path_and_query)
        {
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(origin.scheme.clone());
            parts.authority = Some(origin.authority.clone());
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                return Ok(RequestTarget::Plain {
                    uri,
                    host: origin.host.clone(),
                });
            }
        }
        let url = self
            .join(path_and_query)
            .map_err(|(text, error)| SendError::Url { text, error })?;
        if let Some(origin) = self.origin() {
            // The same authority as the base's: the same `Host`.
            return url
                .as_str()
                .parse::<Uri>()
                .map(|uri| RequestTarget::Plain {
                    uri,
                    host: origin.host.clone(),
                })
                .map_err(|_| SendError::Uri(url.into()));
        }
        Ok(RequestTarget::Tls(url))
    }
}

/// The [`Origin`] of a plain `http://` base URL; `None` for any other.
pub(crate) fn plain_origin(parsed: &url::Url) -> Option<Origin> {
    if parsed.scheme() != "http" {
        return None;
    }
    let uri: Uri = parsed.as_str().parse().ok()?;
    // What hyper-util's `set_host` writes: the host, and the port unless it is http's 80.
    let host = match uri.port_u16() {
        Some(port) if port != 80 => HeaderValue::from_str(&format!("{}:{port}", uri.host()?)),
        _ => HeaderValue::from_str(uri.host()?),
    }
    .ok()?;
    let parts = uri.into_parts();
    Some(Origin {
        scheme: parts.scheme?,
        authority: parts.authority?,
        host,
    })
}

impl CacheClient {
    /// A client with keep-alive connections, `timeout` per request (connecting included),
    /// room for `idle_per_host` idle connections per server, and reqwest for `https://`
    /// servers when `tls` is set.
    pub(crate) fn new(
        timeout: Duration,
        idle_per_host: usize,
        tls: bool,
    ) -> Result<Self, SetupError> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        connector.set_keepalive(Some(TCP_KEEPALIVE));
        connector.set_keepalive_interval(Some(TCP_KEEPALIVE));
        connector.set_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES));
        let plain = Box::new(
            Client::builder(TokioExecutor::new())
                .timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .pool_max_idle_per_host(idle_per_host)
                .build(connector),
        );
        let tls = if tls {
            Some(http_client::client(timeout, idle_per_host)?)
        } else {
            None
        };
        Ok(Self {
            plain,
            tls,
            timeout,
        })
    }

    /// Sends one request without a body, `headers` as given (then `accept: */*`, and `host`
    /// from the target unless set), and reads its response.
    ///
    /// The response's head must come within `timeout`; a body still unread then is cut short
    /// (a response had, the request is not failed for its body, as before).
    pub(crate) async fn send(
        &self,
        method: Method,
        target: RequestTarget,
        mut headers: HeaderMap,
    ) -> Result<Response, SendError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        match target {
            RequestTarget::Plain { uri, host } => {
                // reqwest's one default header, after the caller's, then `host` where
                // hyper-util would add it (built once per server rather than per request).
                headers
                    .entry(header::ACCEPT)
                    .or_insert(HeaderValue::from_static("*/*"));
                headers.entry(header::HOST).or_insert(host);
                let mut request = Request::new(Empty::new());
                *request.method_mut() = method;
                *request.uri_mut() = uri;
                *request.headers_mut() = headers;
                let response = tokio::time::timeout_at(deadline, self.plain.request(request))
                    .await
                    .map_err(|_| SendError::Timeout)?
                    .map_err(SendError::Plain)?;
                let (head, mut body) = response.into_parts();
                let mut kept = Vec::new();
                let _ = tokio::time::timeout_at(deadline, async {
                    while let Some(Ok(frame)) = body.frame().await {
                        if let Ok(data) = frame.into_data() {
                            keep(&mut kept, &data);
                        }
                    }
                })
                .await;
                Ok(Response {
                    status: head.status,
                    headers: head.headers,
                    body: kept,
                })
            }
            RequestTarget::Tls(url) => {
                let Some(client) = &self.tls else {
                    // Not reached: a backend with an `https://` server builds its TLS client.
                    return Err(SendError::Uri(url.into()));
                };
                // reqwest's own timeout (the whole exchange) and default `accept`.
                let mut response = client
                    .request(method, url)
                    .headers(headers)
                    .send()
                    .await
                    .map_err(SendError::Tls)?;
                let status = response.status();
                let headers = std::mem::take(response.headers_mut());
                let mut kept = Vec::new();
                while let Ok(Some(chunk)) = response.chunk().await {
                    keep(&mut kept, &chunk);
                }
                Ok(Response {
                    status,
                    headers,
                    body: kept,
                })
            }
        }
    }
}

/// Appends what room is left under [`MAX_BODY_KEPT`] of `data`.
fn keep(kept: &mut Vec<u8>, data: &[u8]) {
    let room = MAX_BODY_KEPT.saturating_sub(kept.len());
    kept.extend_from_slice(&data[..data.len().min(room)]);
}

/// The error of a request that got no response: refused (unreachable), timed out, or
/// broken once sent (connection lost).
pub(crate) fn transport_error(server: &str, e: SendError) -> PurgeError {
    match e {
        SendError::Tls(e) => http_client::transport_error(server, e),
        SendError::Timeout => PurgeError::new(Cause::Timeout, "timed out").on_server(server),
        SendError::Plain(e) if e.is_connect() && is_timed_out(&e) => {
            PurgeError::new(Cause::Timeout, "timed out")
                .on_server(server)
                .with_source(e)
        }
        SendError::Plain(e) if e.is_connect() => PurgeError::new(
            Cause::Unreachable,
            format!("cannot connect: {}", http_client::root_cause(&e)),
        )
        .on_server(server)
        .with_source(e),
        // Sent, but no complete answer: the connection closed or broke (an nginx worker
        // that crashed on the request closes it without a word).
        SendError::Plain(e) => PurgeError::new(
            Cause::ConnectionLost,
            format!("request failed: {}", http_client::root_cause(&e)),
        )
        .on_server(server)
        .with_source(e),
        // What reqwest answered for a request it could not make (a builder error).
        e @ (SendError::Url { .. } | SendError::Uri(_)) => PurgeError::new(
            Cause::ConnectionLost,
            format!("request failed: {}", http_client::root_cause(&e)),
        )
        .on_server(server)
        .with_source(e),
    }
}

/// Whether an error's chain holds an I/O time-out (the connect timeout).
fn is_timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The error for a response whose status is neither success nor "not cached": its status,
/// `Retry-After` and (the start of) its body, via [`http_client::status_error`].
pub(crate) fn response_error(server: &str, response: &Response) -> PurgeError {
    let retry_after = response
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok());
    let body = String::from_utf8_lossy(&response.body);
    http_client::status_error(server, response.status, retry_after, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The head of the first request a one-shot server on loopback receives, answered `200`.
    fn capture() -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if conn.read(&mut byte).unwrap() == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .unwrap();
            head
        });
        (addr, handle)
    }

    /// The bytes reqwest sent (the client these backends used before) and the bytes
    /// [`CacheClient`] sends, for one request.
    async fn both(
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> (String, String) {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let (first, server) = capture();
        let base = ServerUrl::new(format!("http://{first}"));
        let url = base.join(path_and_query).unwrap();
        let old = http_client::client(Duration::from_secs(5), 1).unwrap();
        let response = old
            .request(method.clone(), url)
            .headers(map.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let sent_by_reqwest = String::from_utf8(server.join().unwrap()).unwrap();

        let (addr, server) = capture();
        let base = ServerUrl::new(format!("http://{addr}"));
        let client = CacheClient::new(Duration::from_secs(5), 1, false).unwrap();
        let target = base.request_target(path_and_query).unwrap();
        let response = client.send(method, target, map).await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.body, b"ok");
        let ours = String::from_utf8(server.join().unwrap()).unwrap();
        // The two servers' ports differ: compare with the server's address written the same.
        (
            sent_by_reqwest.replace(&first, "SERVER"),
            ours.replace(&addr, "SERVER"),
        )
    }

    #[tokio::test]
    async fn requests_carry_the_bytes_reqwest_sent() {
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
        let cases: [Case; 6] = [
            ("PURGE", "/posts/a-post?page=2", &[]),
            ("PURGE", "/a/./b/../c?x=%zz", &[]),
            ("PURGE", "/é b", &[("host", "www.example.com")]),
            (
                "PURGE",
                "/",
                &[("xkey-purge", "post:1 posts"), ("xkey-soft", "1")],
            ),
            (
                "BAN",
                "/",
                &[("x-ban-url", "^/a$"), ("x-ban-host", "^example\\.com$")],
            ),
            ("GET", "/purge/x?y", &[("host", "example.com")]),
        ];
        for (method, pq, headers) in cases {
            let (reqwest, ours) = both(method, pq, headers).await;
            assert!(reqwest.starts_with(method), "{reqwest}");
            assert_eq!(ours, reqwest, "{method} {pq}");
        }
    }

    #[test]
    fn request_uris_are_what_reqwest_made_of_the_url() {
        let paths = [
            "/",
            "/a/b?c=d&e=f",
            "/purge/a-typical_slug~1/2?x=1;y=(2)*3+4,5!$@:",
            "/a/./b",
            "/a/%2e%2E/b",
            "/a b",
            "/a\tb",
            "/a\\b",
            "/a#f",
            "/a?b#c",
            "/é?é",
            "/%E2%82%AC?%zz%",
            "//x/y",
            "/a?",
            "/{x}`y`?{z}",
            "/a|b^c[d]?e|f^g[h]",
            "/a\"b<c>?d\"e<f>",
        ];
        for base in [
            "http://127.0.0.1:8080",
            "http://[::1]:6081",
            "http://Cache.EXAMPLE:80",
        ] {
            let b = ServerUrl::new(base.to_owned());
            for pq in paths {
                let reqwest: Option<Uri> = b.join(pq).ok().and_then(|u| u.as_str().parse().ok());
                let ours = match b.request_target(pq) {
                    Ok(RequestTarget::Plain { uri, .. }) => Some(uri),
                    Ok(RequestTarget::Tls(_)) => panic!("{base}: plain http went to reqwest"),
                    Err(_) => None,
                };
                assert_eq!(
                    ours.as_ref().map(Uri::to_string),
                    reqwest.as_ref().map(Uri::to_string),
                    "{base} + {pq:?}"
                );
            }
        }
        // `Host` as hyper-util formats it: the host, and the port unless it is 80.
        let host = |base: &str| match ServerUrl::new(base.to_owned()).request_target("/a") {
            Ok(RequestTarget::Plain { host, .. }) => host,
            _ => panic!("{base}: not plain"),
        };
        assert_eq!(host("http://Cache.EXAMPLE:80"), "cache.example");
        assert_eq!(host("http://[::1]:6081"), "[::1]:6081");
        assert_eq!(host("http://127.0.0.1:8080"), "127.0.0.1:8080");
        // An https server keeps reqwest.
        let tls = ServerUrl::new("https://cache.example:8443".to_owned());
        assert!(matches!(
            tls.request_target("/a"),
            Ok(RequestTarget::Tls(_))
        ));
    }

    #[tokio::test]
    async fn a_refused_connection_is_unreachable_and_a_silent_server_a_timeout() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let client = CacheClient::new(Duration::from_millis(300), 1, false).unwrap();
        // The error of a GET of `/` on the server at `addr`.
        let error_of = |addr: std::net::SocketAddr| {
            let client = &client;
            async move {
                let base = ServerUrl::new(format!("http://{addr}"));
                let target = base.request_target("/").unwrap();
                let e = client.send(Method::GET, target, HeaderMap::new()).await;
                transport_error("s:1", e.unwrap_err())
            }
        };
        let e = error_of(addr).await;
        assert_eq!(e.cause(), &Cause::Unreachable, "{e}");
        assert!(
            e.message().contains("cannot connect: Connection refused"),
            "{e}"
        );

        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = error_of(silent.local_addr().unwrap()).await;
        assert_eq!(e.cause(), &Cause::Timeout, "{e}");
        drop(silent);
    }
}
