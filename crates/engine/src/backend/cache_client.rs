//! The HTTP client of the cache servers themselves (the Varnish and nginx `http` modes).
//!
//! An `http://` server is sent its requests over HTTP/1.1 connections of our own
//! ([`http1::Conn`]), pooled here per server and driven inside the request's own future (no
//! connection task to hand each request to and back). A batch of one server's requests
//! ([`CacheClient::send_all`]) is **pipelined**: each of its connections is written up to
//! `pipeline` requests at once and then reads their answers in order. hyper's client, used
//! before, had one request per connection at a time: a round trip, and a wake-up of the
//! server's thread, per purge. With 8 connections 8 deep, the bench's Varnish took purges at
//! 1.6 to 2.0 times the rate wrk reached with 16 connections, at half the server's CPU per
//! purge (docs/performance.md).
//! Each request's URI is made of the server's parsed authority and the request's path and
//! query: no URL parse per request. An `https://` server keeps reqwest (rustls, the
//! platform's roots), whose per-request cost is small beside a TLS session's, one request per
//! connection at a time.
//!
//! Everything reqwest did for these requests is kept: `timeout` per request (connecting
//! included, the response's head and body within it; a pipelined request's own time starts
//! when the answer before it came), keep-alive pooling (`idle_per_host` idle connections per
//! server, idle ones not used after 90 s), `TCP_NODELAY`, TCP keep-alive probes (15 s, as
//! reqwest's defaults), no redirect followed, no proxy (the environment's
//! `HTTP_PROXY`/`ALL_PROXY` are ignored, as reqwest's `no_proxy()` did), and the bytes sent:
//! the method, the path and query as reqwest made them (see [`ServerUrl::join`]), the
//! caller's headers in their order, then `accept: */*` (reqwest's one default header) and
//! `host` from the server's address unless the caller set one.
//!
//! When a connection ends before every request written on it was answered:
//! - after an answer that said the server closes (`Connection: close`), the later requests
//!   were not read by the server (RFC 9112, section 9.6) and go on a new connection;
//! - an idle connection taken from the pool that closes before answering anything (the
//!   server closed it meanwhile) gets its requests sent once more on a new connection, as
//!   hyper-util did for a request it had not written;
//! - otherwise the first request not answered fails (`ConnectionLost`: the server may have
//!   broken on it), and the ones after it are sent once more on a new connection (a `PURGE`
//!   or `BAN` done twice does what it did once); a second loss fails them.
//!
//! A server that does not answer in time, or cannot be connected to, fails the batch's
//! requests not yet answered at once, with the same error, rather than each waiting for its
//! own timeout: the engine retries the whole batch's failures later anyway.
//!
//! An idle connection is not polled: a server's close of it is seen by a peek at its socket
//! when the next batch takes it from the pool. Until then its socket waits in `CLOSE_WAIT`,
//! at most `idle_per_host` of them per server.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use tokio::net::TcpStream;

use super::http_client::{self, ServerUrl, plain_path_and_query};
use super::http1::{self, Conn, ReadError, Then, until};
use super::{Cause, PurgeError, SetupError};
use crate::settings::Pipeline;

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
    /// Requests written at once on one `http://` connection (a valid [`Pipeline`]).
    pipeline: usize,
}

/// Idle connections per server, most recently used last. A backend has a handful of
/// servers, so a scan of their authorities (no hashing) finds one.
struct Pool {
    idle: Mutex<Vec<IdleConns>>,
    idle_per_host: usize,
}

/// One server's idle connections, with the instant each was put back.
struct IdleConns {
    authority: Authority,
    conns: Vec<(Conn, Instant)>,
}

impl Pool {
    /// An idle connection to `authority`, if any; those idle for longer than
    /// [`POOL_IDLE_TIMEOUT`], and those the server closed meanwhile, are dropped.
    fn take(&self, authority: &Authority) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let conns = &mut idle
            .iter_mut()
            .find(|server| server.authority == *authority)?
            .conns;
        while let Some((conn, since)) = conns.pop() {
            if since.elapsed() > POOL_IDLE_TIMEOUT || conn.closed_while_idle() {
                continue;
            }
            return Some(conn);
        }
        None
    }

    /// Puts a connection back, unless it ended or the server's idle connections are full.
    fn put(&self, authority: &Authority, conn: Conn) {
        if !conn.reusable() || self.idle_per_host == 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let i = match idle
            .iter()
            .position(|server| server.authority == *authority)
        {
            Some(i) => i,
            None => {
                idle.push(IdleConns {
                    authority: authority.clone(),
                    conns: Vec::new(),
                });
                idle.len() - 1
            }
        };
        let conns = &mut idle[i].conns;
        if conns.len() < self.idle_per_host {
            conns.push((conn, Instant::now()));
        }
    }
}

impl std::fmt::Debug for CacheClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheClient")
            .field("tls", &self.tls.is_some())
            .field("timeout", &self.timeout)
            .field("pipeline", &self.pipeline)
            .finish_non_exhaustive()
    }
}

/// Where a request goes: a URI for our HTTP/1 client (with the `Host` of its server), or a
/// URL for reqwest.
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

/// A response, its body read (its first [`http1::MAX_BODY_KEPT`] bytes kept).
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
    /// The connection closed before the answer was complete.
    #[error("the connection closed")]
    Closed,
    /// Writing the request or reading its answer failed (an `http://` server).
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// The server's answer is no HTTP/1 response (an `http://` server).
    #[error("malformed response: {0}")]
    Malformed(String),
    /// From reqwest (an `https://` server).
    #[error(transparent)]
    Tls(reqwest::Error),
}

impl SendError {
    /// This error again, for another request of the batch that it stopped.
    fn again(&self) -> Self {
        match self {
            Self::Connect(e) => Self::Connect(std::io::Error::new(e.kind(), e.to_string())),
            _ => Self::Timeout,
        }
    }
}

impl From<ReadError> for SendError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Timeout(_) => Self::Timeout,
            ReadError::Closed => Self::Closed,
            ReadError::Io(e) => Self::Io(e),
            ReadError::Malformed(what) => Self::Malformed(what),
        }
    }
}

impl From<http1::Answer> for Response {
    fn from(answer: http1::Answer) -> Self {
        Self {
            status: answer.status,
            headers: answer.headers,
            body: answer.body,
        }
    }
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

/// One request to send: its method, where it goes, its headers.
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) target: RequestTarget,
    pub(crate) headers: HeaderMap,
}

/// One server's plain requests as they go on the wire: all of them encoded one after the
/// other, so that a burst of consecutive requests is one slice of `bytes`.
struct Wire {
    bytes: Vec<u8>,
    /// Request `i` is `bytes[ends[i]..ends[i + 1]]`.
    ends: Vec<usize>,
    /// Which requests are `HEAD`s (their answers have no body).
    heads: Vec<bool>,
}

impl Wire {
    fn len(&self) -> usize {
        self.heads.len()
    }

    fn burst(&self, range: &Range<usize>) -> &[u8] {
        &self.bytes[self.ends[range.start]..self.ends[range.end]]
    }
}

/// What stopped a server's batch: every request not yet answered fails with it.
enum Stop {
    Timeout,
    Connect(SendError),
}

impl Stop {
    fn error(&self) -> SendError {
        match self {
            Self::Timeout => SendError::Timeout,
            Self::Connect(e) => e.again(),
        }
    }
}

/// A lane's results: the request's index in the batch, and how it went.
type Results = Vec<(usize, Result<Response, SendError>)>;

impl CacheClient {
    /// A client with keep-alive connections, `timeout` per request (connecting included),
    /// room for `idle_per_host` idle connections per server, up to `pipeline` requests
    /// written at once on one `http://` connection, and reqwest for `https://` servers when
    /// `tls` is set.
    pub(crate) fn new(
        timeout: Duration,
        idle_per_host: usize,
        pipeline: Pipeline,
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
            pipeline: pipeline.get(),
        })
    }

    /// Sends one request without a body, `headers` as given (then `accept: */*`, and `host`
    /// from the target unless set), and reads its response.
    ///
    /// The response's head must come within `timeout`; a body still unread then is cut short
    /// (a response had, the request is not failed for its body, as before).
    // Only the Varnish backend sends requests one by one (bans, refreshes); nginx batches.
    #[cfg_attr(not(feature = "varnish"), allow(dead_code))]
    pub(crate) async fn send(
        &self,
        method: Method,
        target: RequestTarget,
        headers: HeaderMap,
    ) -> Result<Response, SendError> {
        let request = Request {
            method,
            target,
            headers,
        };
        self.send_all(vec![request], 1)
            .await
            .pop()
            .unwrap_or(Err(SendError::Closed))
    }

    /// Sends one server's requests over up to `connections` connections at once, and gives
    /// their results in the order of `requests`. To a plain `http://` server they are
    /// pipelined: each connection is written bursts of up to `pipeline` consecutive requests
    /// (fewer when the batch is small: it is spread over the connections first), so up to
    /// `connections × pipeline` are in flight. To any other server, or when the requests go
    /// to more than one, they are sent one per connection at a time, `connections` at once.
    pub(crate) async fn send_all(
        &self,
        requests: Vec<Request>,
        connections: usize,
    ) -> Vec<Result<Response, SendError>> {
        let in_flight = connections.max(1);
        let authority = match requests.first().map(|r| &r.target) {
            Some(RequestTarget::Plain { uri, .. }) => uri.authority().cloned(),
            _ => None,
        };
        let one_server = authority.as_ref().is_some_and(|a| {
            requests.iter().all(|r| {
                matches!(&r.target, RequestTarget::Plain { uri, .. } if uri.authority() == Some(a))
            })
        });
        let (Some(authority), true) = (authority, one_server) else {
            return futures::stream::iter(requests)
                .map(|r| self.send_one(r))
                .buffered(in_flight)
                .collect()
                .await;
        };
        let wire = encode_all(requests);
        let n = wire.len();
        // Across connections first, then deeper on each: a small batch is answered by as
        // many of the server's threads as it has requests.
        let lanes = in_flight.min(n);
        let depth = self.pipeline.min(n.div_ceil(lanes));
        let next = AtomicUsize::new(0);
        let stop = OnceLock::new();
        let lanes = (0..lanes).map(|_| self.lane(&authority, &wire, depth, &next, &stop));
        let mut results: Vec<Option<Result<Response, SendError>>> = (0..n).map(|_| None).collect();
        for lane in futures::future::join_all(lanes).await {
            for (i, result) in lane {
                results[i] = Some(result);
            }
        }
        // Every index is taken by one lane, which gives it a result.
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(SendError::Closed)))
            .collect()
    }

    /// One request to a server that is not pipelined to (an `https://` one through
    /// reqwest), or a plain one sent alone.
    async fn send_one(&self, request: Request) -> Result<Response, SendError> {
        let url = match request.target {
            RequestTarget::Tls(url) => url,
            plain @ RequestTarget::Plain { .. } => {
                let request = Request {
                    target: plain,
                    ..request
                };
                return Box::pin(self.send_all(vec![request], 1))
                    .await
                    .pop()
                    .unwrap_or(Err(SendError::Closed));
            }
        };
        let Some(client) = &self.tls else {
            // Not reached: a backend with an `https://` server builds its TLS client.
            return Err(SendError::Uri(url.into()));
        };
        // reqwest's own timeout (the whole exchange) and default `accept`.
        let mut response = client
            .request(request.method, url)
            .headers(request.headers)
            .send()
            .await
            .map_err(SendError::Tls)?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut kept = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            let room = http1::MAX_BODY_KEPT.saturating_sub(kept.len());
            kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        Ok(Response {
            status,
            headers,
            body: kept,
        })
    }

    /// One connection's share of a batch: bursts of up to `depth` consecutive requests taken
    /// from `next`, each written at once and its answers read in order, on a connection
    /// from the pool or a new one (see the module's documentation for a connection that
    /// ends early).
    async fn lane(
        &self,
        authority: &Authority,
        wire: &Wire,
        depth: usize,
        next: &AtomicUsize,
        stop: &OnceLock<Stop>,
    ) -> Results {
        let n = wire.len();
        let mut out = Vec::new();
        // The connection the last burst left open, for the next.
        let mut kept: Option<Conn> = None;
        // Requests to send again (consecutive), and whether they already were.
        let mut again: Option<(Range<usize>, bool)> = None;
        let mut expiry = std::pin::pin!(tokio::time::sleep(self.timeout));
        loop {
            let (burst, resent) = match again.take() {
                Some(again) => again,
                None => {
                    let start = next.fetch_add(depth, Ordering::Relaxed);
                    if start >= n {
                        break;
                    }
                    (start..(start + depth).min(n), false)
                }
            };
            if let Some(stop) = stop.get() {
                out.extend(burst.map(|i| (i, Err(stop.error()))));
                continue;
            }
            expiry
                .as_mut()
                .reset(tokio::time::Instant::now() + self.timeout);
            let (mut conn, reused) = match kept.take() {
                Some(conn) => (conn, true),
                None => match self.plain.take(authority) {
                    Some(conn) => (conn, true),
                    None => match until(expiry.as_mut(), connect(authority)).await {
                        Some(Ok(conn)) => (conn, false),
                        failed => {
                            let error = match failed {
                                Some(Err(e)) => e,
                                _ => SendError::Timeout,
                            };
                            let stop = stop.get_or_init(|| match error.again() {
                                SendError::Timeout => Stop::Timeout,
                                e => Stop::Connect(e),
                            });
                            let mut burst = burst;
                            if let Some(first) = burst.next() {
                                out.push((first, Err(error)));
                            }
                            out.extend(burst.map(|i| (i, Err(stop.error()))));
                            continue;
                        }
                    },
                },
            };
            let mut answered = burst.start;
            let ended = match until(expiry.as_mut(), conn.write(wire.burst(&burst))).await {
                None => Some(ReadError::Timeout(None)),
                Some(Err(e)) => Some(ReadError::Io(e)),
                Some(Ok(())) => loop {
                    if answered == burst.end {
                        break None;
                    }
                    match conn
                        .read_answer(expiry.as_mut(), wire.heads[answered])
                        .await
                    {
                        Ok(answer) => {
                            let then = answer.then;
                            out.push((answered, Ok(answer.into())));
                            answered += 1;
                            expiry
                                .as_mut()
                                .reset(tokio::time::Instant::now() + self.timeout);
                            match then {
                                Then::Open => {}
                                // Not read by the server: sent again, as they were.
                                Then::Closes => {
                                    again = (answered < burst.end)
                                        .then_some((answered..burst.end, resent));
                                    break None;
                                }
                                // What the server did with the later requests is
                                // unknown: sent again once.
                                Then::Broke => {
                                    let rest = answered..burst.end;
                                    if resent {
                                        out.extend(rest.map(|i| (i, Err(SendError::Closed))));
                                    } else if !rest.is_empty() {
                                        again = Some((rest, true));
                                    }
                                    break None;
                                }
                            }
                        }
                        Err(e) => break Some(e),
                    }
                },
            };
            match ended {
                None if conn.reusable() => kept = Some(conn),
                None => {}
                Some(ReadError::Timeout(partial)) => {
                    stop.get_or_init(|| Stop::Timeout);
                    let mut rest = answered..burst.end;
                    if let Some(partial) = partial
                        && let Some(first) = rest.next()
                    {
                        out.push((first, Ok((*partial).into())));
                    }
                    out.extend(rest.map(|i| (i, Err(SendError::Timeout))));
                }
                Some(error) => {
                    let mut rest = answered..burst.end;
                    if reused && answered == burst.start && !resent {
                        tracing::debug!(
                            target: "cache_purge_hooks",
                            server = %authority,
                            %error,
                            "an idle connection closed before answering; sending its requests on a new one"
                        );
                        again = Some((rest, true));
                        continue;
                    }
                    if let Some(first) = rest.next() {
                        out.push((first, Err(error.into())));
                    }
                    if resent {
                        out.extend(rest.map(|i| (i, Err(SendError::Closed))));
                    } else if !rest.is_empty() {
                        again = Some((rest, true));
                    }
                }
            }
        }
        if let Some(conn) = kept {
            self.plain.put(authority, conn);
        }
        out
    }
}

/// Encodes one server's plain requests (each its `accept: */*` and `host` added where the
/// caller set none, as reqwest and hyper-util did).
fn encode_all(requests: Vec<Request>) -> Wire {
    let mut wire = Wire {
        bytes: Vec::with_capacity(requests.len() * 160),
        ends: Vec::with_capacity(requests.len() + 1),
        heads: Vec::with_capacity(requests.len()),
    };
    wire.ends.push(0);
    for Request {
        method,
        target,
        mut headers,
    } in requests
    {
        if let RequestTarget::Plain { uri, host } = target {
            // reqwest's one default header, after the caller's, then `host` where
            // hyper-util would add it (built once per server rather than per request).
            headers
                .entry(header::ACCEPT)
                .or_insert(HeaderValue::from_static("*/*"));
            headers.entry(header::HOST).or_insert(host);
            // On the request line: the path and query only (origin form), as hyper-util
            // wrote it.
            let path = uri.path_and_query().map_or("/", PathAndQuery::as_str);
            http1::encode(&method, path, &headers, &mut wire.bytes);
        }
        wire.ends.push(wire.bytes.len());
        wire.heads.push(method == Method::HEAD);
    }
    wire
}

/// A new connection to `authority` (an `http://` server): `TCP_NODELAY` and TCP keep-alive
/// probes (nothing is sent until the first request).
async fn connect(authority: &Authority) -> Result<Conn, SendError> {
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
    Ok(Conn::new(stream))
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
        // that crashed on the request closes it without a word), or what came was no
        // answer.
        e @ (SendError::Closed | SendError::Io(_) | SendError::Malformed(_)) => {
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
        let client =
            CacheClient::new(Duration::from_secs(5), 1, Pipeline::new(1).unwrap(), false).unwrap();
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
        let client = CacheClient::new(
            Duration::from_millis(300),
            1,
            Pipeline::new(1).unwrap(),
            false,
        )
        .unwrap();
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
        /// The connection is closed without an answer (a worker that crashed on it).
        Vanish,
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
                                Answer::Vanish => return,
                                Answer::Silent => {
                                    // Hold the connection open, answering nothing,
                                    // until the client closes it.
                                    while matches!(stream.read(&mut chunk), Ok(k) if k > 0) {}
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
        let client =
            CacheClient::new(Duration::from_secs(5), 4, Pipeline::new(8).unwrap(), false).unwrap();
        for _ in 0..5 {
            assert_eq!(server.purge(&client).await, Ok(StatusCode::OK));
        }
        assert_eq!((server.connections(), server.requests()), (1, 5));
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_not_used_again() {
        let server = Server::start(|_, _| Answer::OkThenClose);
        let client =
            CacheClient::new(Duration::from_secs(5), 4, Pipeline::new(8).unwrap(), false).unwrap();
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
        let client =
            CacheClient::new(Duration::from_secs(5), 4, Pipeline::new(8).unwrap(), false).unwrap();
        for _ in 0..3 {
            assert_eq!(server.purge(&client).await, Ok(StatusCode::OK));
        }
        assert_eq!((server.connections(), server.requests()), (3, 3));
    }

    #[tokio::test]
    async fn a_timed_out_request_does_not_leave_its_connection_for_the_next() {
        // The first connection never answers; every later one does.
        let server = Server::start(|c, _| if c == 0 { Answer::Silent } else { Answer::Ok });
        let client = CacheClient::new(
            Duration::from_millis(300),
            4,
            Pipeline::new(8).unwrap(),
            false,
        )
        .unwrap();
        assert_eq!(server.purge(&client).await, Err(Cause::Timeout));
        assert_eq!(server.purge(&client).await, Ok(StatusCode::OK));
        assert_eq!(server.purge(&client).await, Ok(StatusCode::OK));
        assert_eq!((server.connections(), server.requests()), (2, 3));
    }

    #[tokio::test]
    async fn concurrent_requests_open_connections_and_keep_at_most_idle_per_host() {
        let server = Server::start(|_, _| Answer::After(100));
        let client =
            CacheClient::new(Duration::from_secs(5), 2, Pipeline::new(8).unwrap(), false).unwrap();
        let four = || futures::future::join_all((0..4).map(|_| server.purge(&client)));
        assert!(four().await.iter().all(|r| r == &Ok(StatusCode::OK)));
        assert_eq!(server.connections(), 4);
        // Two were kept: the next four take them and open two more.
        assert!(four().await.iter().all(|r| r == &Ok(StatusCode::OK)));
        assert_eq!((server.connections(), server.requests()), (6, 8));
    }

    /// `n` PURGEs, of `/0`, `/1`..., to the server at `addr`.
    fn batch(addr: &str, n: usize) -> Vec<Request> {
        let base = ServerUrl::new(format!("http://{addr}"));
        (0..n)
            .map(|i| Request {
                method: Method::from_bytes(b"PURGE").unwrap(),
                target: base.request_target(&format!("/{i}")).unwrap(),
                headers: HeaderMap::new(),
            })
            .collect()
    }

    /// Each result's status, or its error's cause.
    fn outcomes(results: Vec<Result<Response, SendError>>) -> Vec<Result<u16, Cause>> {
        results
            .into_iter()
            .map(|r| match r {
                Ok(response) => Ok(response.status.as_u16()),
                Err(e) => Err(transport_error("s:1", e).cause().clone()),
            })
            .collect()
    }

    /// A server that reads `burst` whole requests before it answers any of them, each
    /// answer's body the path of its request; it counts its connections.
    fn burst_server(burst: usize) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let text = String::from_utf8_lossy(&buf).into_owned();
                        let heads: Vec<&str> = text.split("\r\n\r\n").collect();
                        if heads.len() > burst {
                            let mut answers = String::new();
                            for head in &heads[..burst] {
                                let path = head.split(' ').nth(1).unwrap_or("?");
                                answers.push_str(&format!(
                                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{path}",
                                    path.len()
                                ));
                            }
                            stream.write_all(answers.as_bytes()).unwrap();
                            let used: usize = heads[..burst].iter().map(|h| h.len() + 4).sum();
                            buf.drain(..used);
                            continue;
                        }
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    }
                });
            }
        });
        (addr, connections)
    }

    #[tokio::test]
    async fn a_batch_is_pipelined_and_its_answers_matched_to_their_requests_in_order() {
        // The server answers nothing until it has 8 requests: one request per connection at a
        // time would wait out the timeout.
        let (addr, connections) = burst_server(8);
        let client =
            CacheClient::new(Duration::from_secs(5), 4, Pipeline::new(8).unwrap(), false).unwrap();
        let results = client.send_all(batch(&addr, 24), 1).await;
        let bodies: Vec<String> = results
            .into_iter()
            .map(|r| String::from_utf8(r.unwrap().body).unwrap())
            .collect();
        let expected: Vec<String> = (0..24).map(|i| format!("/{i}")).collect();
        assert_eq!(bodies, expected);
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Two connections 8 deep: the first one kept from before, and a new one.
        let results = client.send_all(batch(&addr, 32), 2).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn requests_after_an_answer_that_says_close_go_on_a_new_connection() {
        // Every connection answers three requests, the third with `connection: close`.
        let server = Server::start(|_, n| match n {
            2 => Answer::OkConnectionClose,
            _ => Answer::Ok,
        });
        let client =
            CacheClient::new(Duration::from_secs(5), 4, Pipeline::new(8).unwrap(), false).unwrap();
        let results = outcomes(client.send_all(batch(&server.addr, 10), 1).await);
        assert_eq!(results, vec![Ok(200); 10]);
        assert_eq!((server.connections(), server.requests()), (4, 10));
    }

    #[tokio::test]
    async fn a_server_that_breaks_on_one_request_fails_only_that_one() {
        // The first connection closes without a word on its third request.
        let server = Server::start(|c, n| match (c, n) {
            (0, 2) => Answer::Vanish,
            _ => Answer::Ok,
        });
        let client =
            CacheClient::new(Duration::from_secs(5), 4, Pipeline::new(8).unwrap(), false).unwrap();
        let results = outcomes(client.send_all(batch(&server.addr, 8), 1).await);
        let mut expected = vec![Ok(200); 8];
        expected[2] = Err(Cause::ConnectionLost);
        assert_eq!(results, expected);
        // The five after it went again on a second connection.
        assert_eq!((server.connections(), server.requests()), (2, 8));
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_fails_the_whole_batch_at_once() {
        let server = Server::start(|_, _| Answer::Silent);
        let client = CacheClient::new(
            Duration::from_millis(300),
            4,
            Pipeline::new(8).unwrap(),
            false,
        )
        .unwrap();
        let results = outcomes(client.send_all(batch(&server.addr, 40), 1).await);
        assert_eq!(results, vec![Err(Cause::Timeout); 40]);
        // The first burst timed out; the four after it were not sent.
        assert_eq!(server.connections(), 1);
    }

    #[tokio::test]
    async fn a_connection_closed_by_the_server_just_after_its_answer_loses_no_request() {
        // No pause: the close may reach this end before or after the next batch takes the
        // connection from the pool.
        let server = Server::start(|_, _| Answer::OkThenClose);
        let client =
            CacheClient::new(Duration::from_secs(5), 4, Pipeline::new(8).unwrap(), false).unwrap();
        for _ in 0..20 {
            let results = outcomes(client.send_all(batch(&server.addr, 1), 8).await);
            assert_eq!(results, vec![Ok(200)]);
        }
        assert_eq!((server.connections(), server.requests()), (20, 20));
    }
}
