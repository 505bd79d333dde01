//! The HTTP client of the cache servers themselves (the Varnish and nginx `http` modes).
//!
//! An `http://` server is sent its requests over hyper's HTTP/1 connections
//! (`hyper::client::conn::http1`), pooled here per server and **driven inside the request's
//! own future**: the connection is polled by the task that sends the request, so a purge
//! costs no hand-off to a connection task and back (hyper-util's pooled client, used before,
//! runs each connection as a task of its own: two wake-ups per request, often across
//! threads, and a pool keyed by a SipHash of the scheme and authority). Each request's URI is
//! made of the server's parsed authority and the request's path and query: no URL parse per
//! request, none of reqwest's layers (redirects, retries, default-header merging) around a
//! request that needs none of them. An `https://` server keeps reqwest (rustls, the
//! platform's roots), whose per-request cost is small beside a TLS session's.
//!
//! Everything reqwest did for these requests is kept: `timeout` per request (connecting
//! included, the response's head and body within it), keep-alive pooling (`idle_per_host`
//! idle connections per server, idle ones not used after 90 s), `TCP_NODELAY`, TCP keep-alive
//! probes (15 s, as reqwest's defaults), no redirect followed, no proxy (the environment's
//! `HTTP_PROXY`/`ALL_PROXY` are ignored, as reqwest's `no_proxy()` did), a request that a
//! reused connection closed before it was written sent again once on a new connection (as
//! hyper-util does), and the bytes sent: the method, the path and query as reqwest made them
//! (see [`ServerUrl::join`]), the caller's headers in their order, then `accept: */*`
//! (reqwest's one default header) and `host` from the server's address unless the caller set
//! one.
//!
//! An idle connection is not polled, so a server's close of it is seen by the first poll of
//! the next request that takes it from the pool, before anything is written (the connection
//! is then dropped, and the request goes on a new one): until then its socket waits in
//! `CLOSE_WAIT`, at most `idle_per_host` of them per server.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::Empty;
use hyper::body::Body as _;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::http_client::{self, ServerUrl, plain_path_and_query};
use super::{Cause, PurgeError, SetupError};

/// The most of a response body kept (an error message quotes its first 300 characters); the
/// rest is read and dropped, so that the connection can be used again.
const MAX_BODY_KEPT: usize = 16 * 1024;

/// How long an idle pooled connection is used again: reqwest's default.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// TCP keep-alive: reqwest's defaults (idle time and interval 15 s, 3 probes).
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);
const TCP_KEEPALIVE_RETRIES: u32 = 3;

/// One backend's client of its cache servers.
pub(crate) struct CacheClient {
    /// The idle connections to `http://` servers.
    plain: Pool,
    /// Built only when a server is not plain `http://`.
    tls: Option<reqwest::Client>,
    timeout: Duration,
}

/// An HTTP/1 connection to a plain `http://` server: the sending half and the connection
/// itself, which whoever sends on it polls.
struct Lane {
    sender: SendRequest<Empty<Bytes>>,
    /// Boxed: the connection's state machine is large, and lanes move in and out of the pool.
    conn: Pin<Box<Connection<TokioIo<TcpStream>, Empty<Bytes>>>>,
    /// The connection has ended (closed by the server, or broken): never poll it again.
    ended: bool,
}

impl Lane {
    /// Polls the connection (writing what is queued, reading what came), unless it ended.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if !self.ended && self.conn.as_mut().poll(cx).is_ready() {
            self.ended = true;
        }
    }

    /// Whether the connection can take another request: it has not ended, and hyper's
    /// dispatcher behind `sender` is still there.
    fn reusable(&self) -> bool {
        !self.ended && !self.sender.is_closed()
    }
}

/// Idle connections per server, most recently used last. A backend has a handful of
/// servers, so a scan of their authorities (no hashing) finds one.
struct Pool {
    idle: Mutex<Vec<IdleLanes>>,
    idle_per_host: usize,
}

/// One server's idle connections, with the instant each was put back.
struct IdleLanes {
    authority: Authority,
    lanes: Vec<(Lane, Instant)>,
}

impl Pool {
    /// An idle connection to `authority`, if any; those idle for longer than
    /// [`POOL_IDLE_TIMEOUT`] are dropped. One the server closed meanwhile is seen by the
    /// request's first poll of it, before anything is written, and the request goes on a new
    /// connection ([`CacheClient::request`]).
    fn take(&self, authority: &Authority) -> Option<Lane> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let lanes = &mut idle
            .iter_mut()
            .find(|server| server.authority == *authority)?
            .lanes;
        while let Some((lane, since)) = lanes.pop() {
            if since.elapsed() > POOL_IDLE_TIMEOUT {
                continue;
            }
            if lane.reusable() {
                return Some(lane);
            }
        }
        None
    }

    /// Puts a connection back, unless it ended or the server's idle connections are full.
    fn put(&self, authority: &Authority, lane: Lane) {
        if !lane.reusable() || self.idle_per_host == 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let i = match idle
            .iter()
            .position(|server| server.authority == *authority)
        {
            Some(i) => i,
            None => {
                idle.push(IdleLanes {
                    authority: authority.clone(),
                    lanes: Vec::new(),
                });
                idle.len() - 1
            }
        };
        let lanes = &mut idle[i].lanes;
        if lanes.len() < self.idle_per_host {
            lanes.push((lane, Instant::now()));
        }
    }
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
    /// Connecting to an `http://` server failed.
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    /// The connection closed before the request could be written, or without answering.
    #[error("the connection closed")]
    Closed,
    /// From hyper, once connected (an `http://` server).
    #[error(transparent)]
    Plain(hyper::Error),
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
        let tls = if tls {
            Some(http_client::client(timeout, idle_per_host)?)
        } else {
            None
        };
        Ok(Self {
            plain: Pool {
                idle: Mutex::new(Vec::new()),
                idle_per_host,
            },
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
                let parts = uri.into_parts();
                let authority = parts
                    .authority
                    .ok_or_else(|| SendError::Uri("a request URI without a server".to_owned()))?;
                // On the request line: the path and query only (origin form), as hyper-util
                // wrote it.
                let path = parts
                    .path_and_query
                    .unwrap_or_else(|| PathAndQuery::from_static("/"));
                let mut request = Request::new(Empty::new());
                *request.method_mut() = method;
                *request.uri_mut() = Uri::from(path);
                *request.headers_mut() = headers;
                // One timer for the head and the body.
                let mut expiry = std::pin::pin!(tokio::time::sleep_until(deadline));
                let (mut lane, response) =
                    until(expiry.as_mut(), self.request(&authority, request))
                        .await
                        .ok_or(SendError::Timeout)??;
                let (head, mut body) = response.into_parts();
                let mut kept = Vec::new();
                // The body, the connection polled when it has no more yet (a short body
                // usually came with the head); read whole, the connection can carry the next
                // request.
                let whole = until(
                    expiry.as_mut(),
                    std::future::poll_fn(|cx| {
                        let mut driven = false;
                        loop {
                            match Pin::new(&mut body).poll_frame(cx) {
                                Poll::Ready(Some(Ok(frame))) => {
                                    if let Ok(data) = frame.into_data() {
                                        keep(&mut kept, &data);
                                    }
                                }
                                Poll::Ready(Some(Err(_))) => return Poll::Ready(false),
                                Poll::Ready(None) => return Poll::Ready(true),
                                // Not expected of hyper: the connection ended and left the
                                // body unfinished.
                                Poll::Pending if lane.ended => return Poll::Ready(false),
                                Poll::Pending if driven => return Poll::Pending,
                                Poll::Pending => {
                                    lane.drive(cx);
                                    driven = true;
                                }
                            }
                        }
                    }),
                )
                .await;
                if whole == Some(true) {
                    self.plain.put(&authority, lane);
                }
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

    /// Sends `request` to `authority` on an idle connection, or a new one, and waits for the
    /// response's head. A request that a reused connection closed before writing it (the
    /// server closed the idle connection meanwhile) goes once more, on a new connection.
    async fn request(
        &self,
        authority: &Authority,
        mut request: Request<Empty<Bytes>>,
    ) -> Result<(Lane, http::Response<hyper::body::Incoming>), SendError> {
        let mut idle = self.plain.take(authority);
        loop {
            let reused = idle.is_some();
            let mut lane = match idle.take() {
                Some(lane) => lane,
                None => connect(authority).await?,
            };
            match exchange(&mut lane, request).await {
                Ok(response) => return Ok((lane, response)),
                Err(Failure::Unsent(again, error)) if reused => {
                    tracing::debug!(
                        target: "cache_purge_hooks",
                        server = %authority,
                        error = error.as_ref().map(tracing::field::display),
                        "an idle connection closed before the request was written; sending it on a new one"
                    );
                    request = *again;
                }
                Err(Failure::Unsent(_, error)) => {
                    return Err(error.map_or(SendError::Closed, SendError::Plain));
                }
                Err(Failure::Sent(error)) => return Err(SendError::Plain(error)),
                Err(Failure::Ended) => return Err(SendError::Closed),
            }
        }
    }
}

/// `future`'s output, or `None` once `expiry` has passed.
async fn until<F: Future>(
    mut expiry: Pin<&mut tokio::time::Sleep>,
    future: F,
) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        expiry.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// Why an exchange got no response head.
enum Failure {
    /// The request was never written: it is given back, and may go on another connection
    /// (boxed: the common outcomes stay small).
    Unsent(Box<Request<Empty<Bytes>>>, Option<hyper::Error>),
    /// Written (or partly), then the connection failed.
    Sent(hyper::Error),
    /// The connection ended without failing the request (not expected of hyper).
    Ended,
}

/// Sends `request` on `lane` and waits for the response's head, polling the connection
/// meanwhile: it writes the request and reads the response in this task.
async fn exchange(
    lane: &mut Lane,
    request: Request<Empty<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, Failure> {
    // Ready for a request, and still open: this first poll of a connection from the pool
    // reads a close that came while it was idle (hyper would otherwise write the request
    // first, and lose it to the close).
    let ready = std::future::poll_fn(|cx| {
        lane.drive(cx);
        match lane.sender.poll_ready(cx) {
            Poll::Ready(Ok(())) if !lane.ended => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(Some(e))),
            Poll::Ready(Ok(())) => Poll::Ready(Err(None)),
            Poll::Pending if lane.ended => Poll::Ready(Err(None)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    if let Err(error) = ready {
        return Err(Failure::Unsent(Box::new(request), error));
    }
    let mut response = std::pin::pin!(lane.sender.try_send_request(request));
    std::future::poll_fn(|cx| {
        lane.drive(cx);
        match response.as_mut().poll(cx) {
            Poll::Ready(Ok(response)) => Poll::Ready(Ok(response)),
            Poll::Ready(Err(mut e)) => Poll::Ready(Err(match e.take_message() {
                Some(request) => Failure::Unsent(Box::new(request), Some(e.into_error())),
                None => Failure::Sent(e.into_error()),
            })),
            Poll::Pending if lane.ended => Poll::Ready(Err(Failure::Ended)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// A new connection to `authority` (an `http://` server): `TCP_NODELAY`, TCP keep-alive
/// probes, then hyper's HTTP/1 handshake (nothing is sent until the first request).
async fn connect(authority: &Authority) -> Result<Lane, SendError> {
    let host = authority.host();
    // An IPv6 literal is written in brackets in a URL, not in a socket address.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = authority.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(SendError::Connect)?;
    stream.set_nodelay(true).map_err(SendError::Connect)?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(TCP_KEEPALIVE)
        .with_interval(TCP_KEEPALIVE)
        .with_retries(TCP_KEEPALIVE_RETRIES);
    // As hyper-util's connector: a socket that refuses the probes still carries requests.
    if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(target: "cache_purge_hooks", server = %authority, error = %e, "TCP keep-alive not set");
    }
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(SendError::Plain)?;
    Ok(Lane {
        sender,
        conn: Box::pin(conn),
        ended: false,
    })
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
        SendError::Connect(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            PurgeError::new(Cause::Timeout, "timed out")
                .on_server(server)
                .with_source(e)
        }
        SendError::Connect(e) => PurgeError::new(
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
        e @ SendError::Closed => {
            PurgeError::new(Cause::ConnectionLost, format!("request failed: {e}"))
                .on_server(server)
                .with_source(e)
        }
        // What reqwest answered for a request it could not make (a builder error).
        e @ (SendError::Url { .. } | SendError::Uri(_)) => PurgeError::new(
            Cause::ConnectionLost,
            format!("request failed: {}", http_client::root_cause(&e)),
        )
        .on_server(server)
        .with_source(e),
    }
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

    /// How a [`Server`] answers the `n`th request (from 0) on the `c`th connection (from 0).
    #[derive(Clone, Copy)]
    enum Answer {
        /// `200`, keep-alive.
        Ok,
        /// `200`, then the server closes the connection without saying so.
        OkThenClose,
        /// `200` with `connection: close`, then the server closes it.
        OkConnectionClose,
        /// `200` after this many milliseconds.
        After(u64),
        /// Nothing: the request is read and never answered.
        Silent,
    }

    /// A keep-alive HTTP/1.1 server on loopback that counts its connections and requests.
    struct Server {
        addr: String,
        connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Server {
        fn start(answer: fn(usize, usize) -> Answer) -> Self {
            use std::sync::Arc;
            use std::sync::atomic::{AtomicUsize, Ordering};
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let connections = Arc::new(AtomicUsize::new(0));
            let requests = Arc::new(AtomicUsize::new(0));
            let (conns, reqs) = (connections.clone(), requests.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { return };
                    let c = conns.fetch_add(1, Ordering::SeqCst);
                    let reqs = reqs.clone();
                    std::thread::spawn(move || {
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 4096];
                        for n in 0.. {
                            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                                match stream.read(&mut chunk) {
                                    Ok(0) | Err(_) => return,
                                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                                }
                            }
                            let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                            buf.drain(..end + 4);
                            reqs.fetch_add(1, Ordering::SeqCst);
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            match answer(c, n) {
                                Answer::Ok => stream.write_all(ok).unwrap(),
                                Answer::OkThenClose => {
                                    stream.write_all(ok).unwrap();
                                    return;
                                }
                                Answer::OkConnectionClose => {
                                    stream
                                        .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
                                        .unwrap();
                                    return;
                                }
                                Answer::After(ms) => {
                                    std::thread::sleep(Duration::from_millis(ms));
                                    stream.write_all(ok).unwrap();
                                }
                                Answer::Silent => {
                                    // Hold the connection open, answering nothing.
                                    let _ = stream.read(&mut chunk);
                                    return;
                                }
                            }
                        }
                    });
                }
            });
            Self {
                addr,
                connections,
                requests,
            }
        }

        fn connections(&self) -> usize {
            self.connections.load(std::sync::atomic::Ordering::SeqCst)
        }

        fn requests(&self) -> usize {
            self.requests.load(std::sync::atomic::Ordering::SeqCst)
        }

        /// A `PURGE` of `/a` through `client`: its status, or the error's cause.
        async fn purge(&self, client: &CacheClient) -> Result<StatusCode, Cause> {
            let target = ServerUrl::new(format!("http://{}", self.addr))
                .request_target("/a")
                .unwrap();
            let method = Method::from_bytes(b"PURGE").unwrap();
            match client.send(method, target, HeaderMap::new()).await {
                Ok(response) => {
                    assert_eq!(response.body, b"ok");
                    Ok(response.status)
                }
                Err(e) => Err(transport_error("s:1", e).cause().clone()),
            }
        }
    }

    #[tokio::test]
    async fn sequential_requests_share_one_kept_alive_connection() {
        let server = Server::start(|_, _| Answer::Ok);
        let client = CacheClient::new(Duration::from_secs(5), 4, false).unwrap();
        for _ in 0..5 {
            assert_eq!(server.purge(&client).await, Ok(StatusCode::OK));
        }
        assert_eq!((server.connections(), server.requests()), (1, 5));
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_not_used_again() {
        let server = Server::start(|_, _| Answer::OkThenClose);
        let client = CacheClient::new(Duration::from_secs(5), 4, false).unwrap();
        for _ in 0..3 {
            assert_eq!(server.purge(&client).await, Ok(StatusCode::OK));
            // The server's close reaches this end before the next request.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!((server.connections(), server.requests()), (3, 3));
    }

    #[tokio::test]
    async fn a_response_with_connection_close_leaves_its_connection_out_of_the_pool() {
        let server = Server::start(|_, _| Answer::OkConnectionClose);
        let client = CacheClient::new(Duration::from_secs(5), 4, false).unwrap();
        for _ in 0..3 {
            assert_eq!(server.purge(&client).await, Ok(StatusCode::OK));
        }
        assert_eq!((server.connections(), server.requests()), (3, 3));
    }

    #[tokio::test]
    async fn a_timed_out_request_does_not_leave_its_connection_for_the_next() {
        // The first connection never answers; every later one does.
        let server = Server::start(|c, _| if c == 0 { Answer::Silent } else { Answer::Ok });
        let client = CacheClient::new(Duration::from_millis(300), 4, false).unwrap();
        assert_eq!(server.purge(&client).await, Err(Cause::Timeout));
        assert_eq!(server.purge(&client).await, Ok(StatusCode::OK));
        assert_eq!(server.purge(&client).await, Ok(StatusCode::OK));
        assert_eq!((server.connections(), server.requests()), (2, 3));
    }

    #[tokio::test]
    async fn concurrent_requests_open_connections_and_keep_at_most_idle_per_host() {
        let server = Server::start(|_, _| Answer::After(100));
        let client = CacheClient::new(Duration::from_secs(5), 2, false).unwrap();
        let four = || futures::future::join_all((0..4).map(|_| server.purge(&client)));
        assert!(four().await.iter().all(|r| r == &Ok(StatusCode::OK)));
        assert_eq!(server.connections(), 4);
        // Two were kept: the next four take them and open two more.
        assert!(four().await.iter().all(|r| r == &Ok(StatusCode::OK)));
        assert_eq!((server.connections(), server.requests()), (6, 8));
    }
}
