//! The origin server the caches sit in front of.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;

use crate::background::BackgroundServer;
use crate::error::{HarnessError, Result};
use crate::ports;

/// An HTTP/1.1 origin server on `127.0.0.1:<free port>` that counts what it serves.
///
/// It runs on its own thread with its own Tokio runtime, so it works from any test
/// (synchronous, or async on any runtime flavour), and it stops when dropped.
///
/// Every `GET` and `HEAD` is answered `200 OK` with `Content-Type: text/plain`,
/// `Cache-Control: public, max-age=600` and the body `"{target} #{n}"`, where `target` is the
/// request target exactly as received (path and query, percent-escapes untouched) and `n` is
/// how many times that target has been fetched, this fetch included. A test therefore sees
/// `"/a #1"` from the first fetch and `"/a #2"` only after a purge made the cache fetch again.
///
/// Any other method is answered `405 Method Not Allowed` and counted apart
/// ([`Origin::other_requests`]), so a test can check that, say, a `PURGE` never reached the
/// origin.
///
/// ```
/// let origin = cache_purge_hooks_testing::Origin::start()?;
/// assert_eq!(origin.total_fetches(), 0);
/// assert!(origin.addr().starts_with("127.0.0.1:"));
/// # Ok::<(), cache_purge_hooks_testing::HarnessError>(())
/// ```
#[derive(Debug)]
pub struct Origin {
    addr: SocketAddr,
    state: Arc<Counters>,
    // Dropped last: stops the server thread.
    _server: BackgroundServer,
}

#[derive(Debug, Default)]
struct Counters {
    by_target: Mutex<HashMap<String, u64>>,
    /// Extra response header lines by request target.
    headers: Mutex<HashMap<String, Vec<(HeaderName, HeaderValue)>>>,
    total: AtomicU64,
    other: AtomicU64,
}

impl Origin {
    /// Binds a free loopback port and starts serving on a new thread.
    ///
    /// The listener is bound before this returns, so the origin can be used at once.
    pub fn start() -> Result<Origin> {
        let listener = ports::bind_loopback()?;
        let addr = listener
            .local_addr()
            .map_err(|e| HarnessError::io("origin: reading the bound address", e))?;
        let state = Arc::new(Counters::default());
        let app = Router::new()
            .fallback(serve_request)
            .with_state(Arc::clone(&state));
        let server = BackgroundServer::spawn("cph-origin", listener, move |listener| async move {
            // Nagle off: the caches keep connections alive and expect prompt answers.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "origin server stopped");
            }
        })?;
        Ok(Origin {
            addr,
            state,
            _server: server,
        })
    }

    /// The port the origin listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `"127.0.0.1:<port>"`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// How many times this exact request target (path, then `?` and the query if there was
    /// one, as received: escapes are not decoded) was fetched with `GET` or `HEAD`.
    pub fn fetches(&self, path_and_query: &str) -> u64 {
        self.state
            .by_target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path_and_query)
            .copied()
            .unwrap_or(0)
    }

    /// Adds a header line to every later response for this exact request target (path,
    /// then `?` and the query), beside the usual ones; called again with the same name, it
    /// adds another line. Cache tags, say: `origin.add_header("/posts/1", "xkey", "post:1 posts")`.
    ///
    /// Fails with [`HarnessError::InvalidArgument`] when the name or value is not a valid header.
    pub fn add_header(&self, path_and_query: &str, name: &str, value: &str) -> Result<()> {
        let name = HeaderName::try_from(name).map_err(|e| HarnessError::InvalidArgument {
            what: "origin header name",
            reason: format!("{name:?}: {e}"),
        })?;
        let value = HeaderValue::try_from(value).map_err(|e| HarnessError::InvalidArgument {
            what: "origin header value",
            reason: format!("{value:?}: {e}"),
        })?;
        self.state
            .headers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(path_and_query.to_owned())
            .or_default()
            .push((name, value));
        Ok(())
    }

    /// How many `GET` and `HEAD` requests were served, all targets together.
    pub fn total_fetches(&self) -> u64 {
        self.state.total.load(Ordering::SeqCst)
    }

    /// How many requests with another method (answered 405) were received.
    pub fn other_requests(&self) -> u64 {
        self.state.other.load(Ordering::SeqCst)
    }
}

async fn serve_request(State(state): State<Arc<Counters>>, method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        state.other.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n").into_response();
    }
    let target = match uri.path_and_query() {
        Some(pq) => pq.as_str().to_owned(),
        None => uri.to_string(),
    };
    let n = {
        let mut counts = state
            .by_target
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(target.clone()).or_insert(0);
        *n += 1;
        *n
    };
    state.total.fetch_add(1, Ordering::SeqCst);
    let mut response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/plain")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=600"),
            ),
        ],
        format!("{target} #{n}"),
    )
        .into_response();
    let extra = state
        .headers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&target)
        .cloned()
        .unwrap_or_default();
    for (name, value) in extra {
        response.headers_mut().append(name, value);
    }
    response
}
