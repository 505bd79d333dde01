//! Tower and axum integration of [cache-purge-hooks](https://docs.rs/cache-purge-hooks).
//!
//! - [`CacheTagsLayer`] tags responses: a handler adds the entities it rendered to the
//!   request's [`CacheTags`], and the layer writes their tags into the headers the caches in
//!   front read (Varnish xkey or ban headers, Fastly, Cloudflare, Akamai), within each one's
//!   limits. See the [`tags`] module.
//! - [`ReadYourWritesLayer`] holds an edit's response until its purges were attempted,
//!   below.
//!
//! # Read-your-writes
//!
//! An editor saves a post, the app answers `303 See Other`, and the browser asks the cache for
//! the page at once — before the purge the save queued has reached the cache, so the editor
//! sees the old page. [`ReadYourWritesLayer`] holds the response of every unsafe request
//! (POST, PUT, PATCH, DELETE) until the purges *that request* made have been attempted on
//! every backend, at most a timeout (default 3 s). Safe requests (GET, HEAD, OPTIONS, TRACE)
//! pass straight through, and other requests' purges never delay a response.
//!
//! ```
//! use std::time::Duration;
//!
//! use axum::{routing::post, Router};
//! use cache_purge_hooks_tower::ReadYourWritesLayer;
//!
//! async fn save() -> &'static str {
//!     // ... a SeaORM or Diesel save whose hooks purge the post's pages ...
//!     "saved"
//! }
//!
//! let app: Router = Router::new()
//!     .route("/admin/posts/{slug}", post(save))
//!     .layer(ReadYourWritesLayer::new().timeout(Duration::from_secs(2)));
//! ```
//!
//! It works in every delivery mode: `after_commit` and `immediate` purges are watched as they
//! are queued (a transaction's, when it commits inside the handler); with `outbox`, the layer
//! waits for this process's outbox worker to have delivered the rows written meanwhile (rows
//! delivered by a worker in another process cannot be waited for; run one in each app
//! process for read-your-writes). Purges made by tasks the handler spawns are not watched.
//!
//! Outside tower, [`cache_purge_hooks_engine::watch::Watch`] does the same around any
//! future.
#![warn(missing_docs)]
// On docs.rs (nightly), items behind a cargo feature say which one.
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use cache_purge_hooks_engine::watch::Watch;
use tower_layer::Layer;
use tower_service::Service;

pub mod tags;

#[cfg(feature = "axum")]
pub use tags::MissingCacheTagsLayer;
pub use tags::{
    BAN_HEADER, CacheTags, CacheTagsLayer, CacheTagsService, RenderedTags, TagCharset, TagHeader,
    TagLimits, TagSeparator, X_ACCEL_EXPIRES,
};

/// The default longest wait: long enough for a purge over a LAN, short enough that a cache
/// that is down does not stall an editor for long (its purges go on being retried).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// Holds the response of unsafe requests until their purges were attempted; see the
/// [crate documentation](crate).
#[derive(Clone, Copy, Debug)]
pub struct ReadYourWritesLayer {
    timeout: Duration,
}

impl ReadYourWritesLayer {
    /// A layer waiting at most [`DEFAULT_TIMEOUT`].
    pub fn new() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the longest wait for a response's purges.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Default for ReadYourWritesLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for ReadYourWritesLayer {
    type Service = ReadYourWrites<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReadYourWrites {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service of [`ReadYourWritesLayer`].
#[derive(Clone, Debug)]
pub struct ReadYourWrites<S> {
    inner: S,
    timeout: Duration,
}

impl<S, B> Service<http::Request<B>> for ReadYourWrites<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.method().is_safe() {
            return Box::pin(self.inner.call(request));
        }
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let response = self.inner.call(request);
        let timeout = self.timeout;
        Box::pin(async move {
            let (response, watch) = Watch::run(response).await;
            if !watch.is_empty() {
                let watched = watch.attempted(timeout).await;
                if watched.timed_out {
                    tracing::warn!(
                        target: "cache_purge_hooks",
                        %method,
                        path,
                        targets = watched.targets,
                        timeout_ms = timeout.as_millis() as u64,
                        "the request's purges were not all attempted in time; answering anyway (they are retried)"
                    );
                } else {
                    tracing::debug!(
                        target: "cache_purge_hooks",
                        %method,
                        path,
                        targets = watched.targets,
                        failed = watched.failed,
                        waited_us = watched.waited.as_micros() as u64,
                        "response held until its purges were attempted"
                    );
                }
            }
            response
        })
    }
}
