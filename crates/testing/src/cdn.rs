//! What the CDN API fakes share: serving a handler on a loopback port, the provider's token
//! bucket (with a clock that may run faster), and 429s forced by a test.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};

use crate::background::BackgroundServer;
use crate::error::{HarnessError, Result};
use crate::ports;

/// The most a fake reads of a request body: far above any provider's limit, so that the
/// fake can answer a too-large body with the provider's own error.
pub(crate) const MAX_BODY: usize = 4 * 1024 * 1024;

/// Serves `handle` for every request on `127.0.0.1:<free port>`, on its own thread.
pub(crate) fn serve<F, Fut>(name: &str, handle: F) -> Result<(SocketAddr, BackgroundServer)>
where
    F: Fn(Request<Body>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = ports::bind_loopback()?;
    let addr = listener
        .local_addr()
        .map_err(|e| HarnessError::io(format!("{name}: reading the bound address"), e))?;
    let app = Router::new().fallback(move |request: Request<Body>| handle(request));
    let thread = name.to_owned();
    let server = BackgroundServer::spawn(name, listener, move |listener| async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, server = %thread, "fake stopped");
        }
    })?;
    Ok((addr, server))
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A provider's token bucket: `burst` tokens, refilled at `per_second` (already multiplied by
/// the fake's speed-up), full at the start.
#[derive(Debug)]
pub(crate) struct Bucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

/// Rounding slack: a client that keeps the same bucket exactly may arrive a few nanoseconds
/// "early" by float arithmetic, never by a whole token.
const SLACK: f64 = 1e-6;

impl Bucket {
    pub(crate) fn new(per_second: f64, burst: f64) -> Self {
        Self {
            per_second,
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Takes `n` tokens, or says how long until there are enough (nothing is taken then).
    pub(crate) fn take(&mut self, n: f64) -> std::result::Result<(), Duration> {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.at = now;
        if self.tokens + SLACK >= n {
            self.tokens -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((n - self.tokens) / self.per_second))
        }
    }
}

impl Bucket {
    /// The tokens in the bucket now.
    pub(crate) fn remaining(&mut self) -> f64 {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.at = now;
        self.tokens.max(0.0)
    }

    /// Gives back tokens taken for a request that was refused after all.
    pub(crate) fn refund(&mut self, n: f64) {
        self.tokens = (self.tokens + n).min(self.burst);
    }
}

/// 429s a test asked for: the next `count` purge requests get one with this `Retry-After`.
#[derive(Debug, Default)]
pub(crate) struct Forced {
    pub(crate) count: u32,
    pub(crate) retry_after_secs: u64,
}

/// `Retry-After` in whole seconds for a wait (at least 1, as HTTP has no fractions).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

/// Locks a fake's state, whatever a panicking handler left.
pub(crate) fn lock<T>(m: &Arc<Mutex<T>>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
