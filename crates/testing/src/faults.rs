//! Broken peers: a server that never answers and one that answers every request with a fixed
//! error. They model broken networks and failing caches, for testing how a backend copes; they
//! are not mocks of nginx or Varnish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use tokio::io::AsyncReadExt;

use crate::background::BackgroundServer;
use crate::error::{HarnessError, Result};
use crate::ports;

/// Accepts TCP connections on `127.0.0.1:<free port>` and never answers anything.
///
/// Whatever a client sends is read and thrown away, and the connection stays open until the
/// client closes it or the server is dropped: a request to it hangs until the client's own
/// timeout. Runs on its own thread; dropping it closes the listener and every connection.
///
/// ```
/// use std::io::{Read, Write};
/// use std::time::Duration;
///
/// let silent = cache_purge_hooks_testing::SilentServer::start()?;
/// let mut conn = std::net::TcpStream::connect(silent.addr()).unwrap();
/// conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
/// conn.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
/// let mut buf = [0u8; 16];
/// assert!(conn.read(&mut buf).is_err()); // timed out: no answer
/// # Ok::<(), cache_purge_hooks_testing::HarnessError>(())
/// ```
#[derive(Debug)]
pub struct SilentServer {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    _server: BackgroundServer,
}

impl SilentServer {
    /// Binds a free loopback port and starts accepting.
    pub fn start() -> Result<SilentServer> {
        let listener = ports::bind_loopback()?;
        let addr = listener
            .local_addr()
            .map_err(|e| HarnessError::io("silent server: reading the bound address", e))?;
        let connections = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&connections);
        let server =
            BackgroundServer::spawn("cph-silent-server", listener, move |listener| async move {
                loop {
                    let Ok((mut stream, _)) = listener.accept().await else {
                        // Out of file descriptors or similar: back off instead of spinning.
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let mut sink = [0u8; 4096];
                        // Read and discard until the client closes; never write.
                        while let Ok(n) = stream.read(&mut sink).await {
                            if n == 0 {
                                break;
                            }
                        }
                    });
                }
            })?;
        Ok(SilentServer {
            addr,
            connections,
            _server: server,
        })
    }

    /// `"127.0.0.1:<port>"`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Answers every HTTP request (any method, any target) with a fixed status, headers and body,
/// like `503 "backend down"` or `429` with `Retry-After`, and counts the requests.
///
/// Runs on `127.0.0.1:<free port>` on its own thread; dropping it stops it.
///
/// ```
/// let down = cache_purge_hooks_testing::StatusServer::start(503, "backend down")?;
/// assert_eq!(down.requests(), 0);
/// assert!(down.addr().starts_with("127.0.0.1:"));
/// # Ok::<(), cache_purge_hooks_testing::HarnessError>(())
/// ```
#[derive(Debug)]
pub struct StatusServer {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    _server: BackgroundServer,
}

impl StatusServer {
    /// Starts a server answering every request with `status` and `body`
    /// (`Content-Type: text/plain`).
    ///
    /// Fails with [`HarnessError::InvalidArgument`] if `status` is not between 200 and 999
    /// (a 1xx status cannot end an exchange).
    pub fn start(status: u16, body: &str) -> Result<StatusServer> {
        StatusServer::start_with_headers(status, body, &[])
    }

    /// Like [`StatusServer::start`], with extra response headers, like
    /// `&[("Retry-After", "2")]`.
    pub fn start_with_headers(
        status: u16,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Result<StatusServer> {
        let status = StatusCode::from_u16(status)
            .ok()
            .filter(|s| !s.is_informational())
            .ok_or_else(|| {
                HarnessError::invalid("status", format!("{status}: expected 200 to 999"))
            })?;
        let mut parsed = vec![(
            HeaderName::from_static("content-type"),
            HeaderValue::from_static("text/plain"),
        )];
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| HarnessError::invalid("header name", format!("{name:?}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| HarnessError::invalid("header value", format!("{value:?}: {e}")))?;
            parsed.push((name, value));
        }
        let listener = ports::bind_loopback()?;
        let addr = listener
            .local_addr()
            .map_err(|e| HarnessError::io("status server: reading the bound address", e))?;
        let requests = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&requests);
        let body = body.to_owned();
        let app = Router::new().fallback(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut response = Response::new(Body::from(body.clone()));
            *response.status_mut() = status;
            for (name, value) in &parsed {
                response.headers_mut().append(name.clone(), value.clone());
            }
            std::future::ready(response)
        });
        let server =
            BackgroundServer::spawn("cph-status-server", listener, move |listener| async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "status server stopped");
                }
            })?;
        Ok(StatusServer {
            addr,
            requests,
            _server: server,
        })
    }

    /// `"127.0.0.1:<port>"`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many HTTP requests it has answered.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}
