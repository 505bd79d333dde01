//! Fetching pages through a cache.

use std::time::Duration;

use crate::error::{HarnessError, Result};

/// How long one request through a harness server may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A response fetched through a cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The HTTP status code.
    pub status: u16,
    /// What the cache said about this response: the value of `X-Cache-Status` (nginx:
    /// `HIT`, `MISS`, `EXPIRED`, `BYPASS`, ...) or `X-Cache` (Varnish: `HIT` or `MISS`).
    /// `None` when the header was absent (a response nginx or Varnish made itself, like a
    /// purge answer, may have none).
    pub cache: Option<String>,
    /// The body, as text (invalid UTF-8 is replaced).
    pub body: String,
    /// Every response header, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
}

impl Page {
    /// Whether the cache answered from its store: [`Page::cache`] is exactly `"HIT"`.
    pub fn is_hit(&self) -> bool {
        self.cache.as_deref() == Some("HIT")
    }

    /// The first value of a response header (name compared without regard to case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP client for one server: no proxy (whatever the environment says), no redirects, a
/// timeout on every request, and no connection reuse (so it works the same from any runtime
/// and a test's requests never depend on each other's connection state).
#[derive(Debug, Clone)]
pub(crate) struct PageClient {
    client: reqwest::Client,
    port: u16,
    cache_header: &'static str,
}

impl PageClient {
    pub(crate) fn new(port: u16, cache_header: &'static str) -> Result<PageClient> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| HarnessError::Http {
                method: "-".to_owned(),
                url: format!("http://127.0.0.1:{port}"),
                source: Box::new(e),
            })?;
        Ok(PageClient {
            client,
            port,
            cache_header,
        })
    }

    /// Sends `method path_and_query` with the given headers (a `Host` among them replaces the
    /// default `127.0.0.1:<port>`).
    pub(crate) async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Page> {
        if !path_and_query.starts_with('/') {
            return Err(HarnessError::invalid(
                "request target",
                format!("{path_and_query:?} must start with '/'"),
            ));
        }
        let url = format!("http://127.0.0.1:{}{path_and_query}", self.port);
        let method_value = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| HarnessError::invalid("method", format!("{method:?}: {e}")))?;
        let mut request = self.client.request(method_value, &url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let http_error = |e: reqwest::Error| HarnessError::Http {
            method: method.to_owned(),
            url: url.clone(),
            source: Box::new(e),
        };
        let response = request.send().await.map_err(http_error)?;
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response.bytes().await.map_err(http_error)?;
        let cache = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(self.cache_header))
            .map(|(_, v)| v.clone());
        Ok(Page {
            status,
            cache,
            body: String::from_utf8_lossy(&body).into_owned(),
            headers,
        })
    }
}
