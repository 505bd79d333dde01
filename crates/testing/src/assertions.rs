//! What a user checks after a purge, as assertion helpers: the page was cached, the next GET
//! is a MISS served fresh from the origin, the neighbouring URL is still a HIT.

use std::future::Future;

use crate::{Nginx, Origin, Page, Result, Varnish};

/// A cache started by this crate, as the assertion helpers see it.
pub trait CacheServer: Sync {
    /// `GET path_and_query` through the cache.
    fn get(&self, path_and_query: &str) -> impl Future<Output = Result<Page>> + Send;
}

impl CacheServer for Nginx {
    fn get(&self, path_and_query: &str) -> impl Future<Output = Result<Page>> + Send {
        Nginx::get(self, path_and_query)
    }
}

impl CacheServer for Varnish {
    fn get(&self, path_and_query: &str) -> impl Future<Output = Result<Page>> + Send {
        Varnish::get(self, path_and_query)
    }
}

/// GETs each path twice and panics unless the second answer came from the cache.
pub async fn warm(cache: &impl CacheServer, paths: &[&str]) {
    for path in paths {
        fetch(cache, path).await;
        let page = fetch(cache, path).await;
        assert!(
            page.is_hit(),
            "{path} should be cached after two GETs: {page:?}"
        );
    }
}

/// Panics unless the next GET of `path` is a MISS that the origin served again, with the
/// fresh content (the fetch count in the body went up by one).
pub async fn assert_purged(cache: &impl CacheServer, origin: &Origin, path: &str) {
    let before = origin.fetches(path);
    let page = fetch(cache, path).await;
    assert!(!page.is_hit(), "{path} should have been purged: {page:?}");
    assert_eq!(
        origin.fetches(path),
        before + 1,
        "{path} should have been fetched again from the origin"
    );
    assert!(
        page.body.ends_with(&format!("#{}", before + 1)),
        "{path}: fresh content expected, got {:?}",
        page.body
    );
}

/// Panics unless the next GET of `path` is still a HIT.
pub async fn assert_cached(cache: &impl CacheServer, path: &str) {
    let page = fetch(cache, path).await;
    assert!(page.is_hit(), "{path} should still be cached: {page:?}");
}

async fn fetch(cache: &impl CacheServer, path: &str) -> Page {
    match cache.get(path).await {
        Ok(page) => page,
        Err(e) => panic!("GET {path} failed: {e}"),
    }
}
