//! `mode = "http"`: one request per URL to every nginx, answered by ngx_cache_purge.
//!
//! `200` means purged; `404` (ngx_cache_purge 2.3) and `412` (the 2.5 fork) mean the URL
//! was not cached, which is just as good. Anything else is an error built by
//! [`http_client::status_error`]; no response at all, by [`cache_client::transport_error`].
//!
//! Requests to one server run at most `concurrency` at a time over one keep-alive pool
//! ([`CacheClient`]: our pipelining HTTP/1 client for `http://` servers, reqwest for
//! `https://`); servers are purged in parallel. Once a server cannot be reached (connection failed or
//! timed out), the URLs of the batch not yet sent to it fail at once with the same error,
//! rather than each waiting for its own timeout: the whole batch is retried later anyway.

use http::header::{HOST, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use super::settings::NginxSettings;
use crate::backend::cache_client::{self, CacheClient, Request, SendError};
use crate::backend::{Cause, PurgeError, SetupError, http_client};
use crate::target::{PurgeUrl, Target};

/// One nginx to purge.
#[derive(Clone, Debug)]
pub(crate) struct Server {
    /// `host:port` as configured, for messages.
    pub(crate) label: String,
    /// `http://host:port`, parsed once.
    base: http_client::ServerUrl,
}

/// Sends ngx_cache_purge requests.
#[derive(Debug)]
pub(crate) struct HttpPurger {
    client: CacheClient,
    method: Method,
    pub(crate) servers: Vec<Server>,
    prefix: String,
    host_header: Option<HeaderValue>,
    concurrency: usize,
}

impl HttpPurger {
    /// Builds the client; the settings are valid by their types.
    pub(crate) fn new(settings: &NginxSettings) -> Result<Self, SetupError> {
        let servers: Vec<Server> = settings
            .servers_or_default()
            .iter()
            .map(|s| Server {
                label: s.to_string(),
                base: http_client::ServerUrl::new(s.base_url()),
            })
            .collect();
        let tls = servers.iter().any(|s| !s.base.is_plain());
        let host_header = match &settings.host_header {
            // A HostName is visible ASCII, which every header value may hold: this fails only
            // if reqwest ever disagrees, and then as a client that cannot be built.
            Some(h) => Some(HeaderValue::from_str(h.as_str()).map_err(|e| {
                SetupError::HttpClient(format!("host_header `{h}` as a header value: {e}"))
            })?),
            None => None,
        };
        let concurrency = settings.concurrency.get();
        Ok(Self {
            client: CacheClient::new(settings.timeout, concurrency, settings.pipeline, tls)?,
            method: http_client::method(settings.method.as_str())?,
            servers,
            prefix: settings
                .purge_prefix
                .as_ref()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            host_header,
            concurrency,
        })
    }

    /// Sends every URL of the batch to every server; returns the failures, each of one
    /// target on one server.
    pub(crate) async fn purge(&self, batch: &[Target]) -> Vec<PurgeError> {
        let mut failures = Vec::new();
        let mut urls = Vec::with_capacity(batch.len());
        for target in batch {
            match target {
                Target::Url(url) => urls.push((target, url)),
                other => failures.push(
                    PurgeError::new(
                        Cause::Misconfigured,
                        format!(
                            "ngx_cache_purge cannot purge {other}: only exact URLs (use mode = \"wipe\" to clear everything)"
                        ),
                    )
                    .only(vec![other.clone()]),
                ),
            }
        }
        let per_server = self
            .servers
            .iter()
            .map(|server| self.purge_on(server, &urls));
        for server_failures in futures::future::join_all(per_server).await {
            failures.extend(server_failures);
        }
        failures
    }

    /// Sends the URLs to one server over `concurrency` connections, `pipeline` requests
    /// written at once on each (see [`CacheClient::send_all`]).
    async fn purge_on(&self, server: &Server, urls: &[(&Target, &PurgeUrl)]) -> Vec<PurgeError> {
        let mut failures = Vec::new();
        let mut requests = Vec::with_capacity(urls.len());
        let mut sent = Vec::with_capacity(urls.len());
        for &(target, url) in urls {
            match self.request(server, url) {
                Ok(request) => {
                    requests.push(request);
                    sent.push((target, url));
                }
                Err(error) => failures.push(error.only(vec![target.clone()])),
            }
        }
        let results = self.client.send_all(requests, self.concurrency).await;
        for ((target, url), result) in sent.into_iter().zip(results) {
            let error = match result {
                Ok(response) if purged(response.status) => {
                    tracing::debug!(
                        target: "cache_purge_hooks",
                        server = %server.label,
                        %url,
                        status = response.status.as_u16(),
                        "{}",
                        if response.status.is_success() { "purged" } else { "not cached" }
                    );
                    continue;
                }
                Ok(response) => cache_client::response_error(&server.label, &response),
                Err(e) => cache_client::transport_error(&server.label, e),
            };
            tracing::debug!(
                target: "cache_purge_hooks",
                server = %server.label,
                %url,
                %error,
                "purge request failed"
            );
            failures.push(error.only(vec![target.clone()]));
        }
        failures
    }

    /// The request of one URL, or why it cannot be made.
    fn request(&self, server: &Server, url: &PurgeUrl) -> Result<Request, PurgeError> {
        let prefixed;
        let path_and_query = if self.prefix.is_empty() {
            url.path_and_query()
        } else {
            prefixed = format!("{}{}", self.prefix, url.path_and_query());
            &prefixed
        };
        let target = server
            .base
            .request_target(path_and_query)
            .map_err(|e| match e {
                SendError::Url { text, error } => PurgeError::new(
                    Cause::Misconfigured,
                    format!("cannot make a request URL of {text}: {error}"),
                )
                .on_server(&server.label),
                other => cache_client::transport_error(&server.label, other),
            })?;
        let mut headers = HeaderMap::new();
        if let Some(host) = url.host() {
            // An absolute URL is purged under its own host.
            let host = HeaderValue::from_str(host).map_err(|_| {
                PurgeError::new(
                    Cause::Misconfigured,
                    format!("`{host}` is not a valid Host header"),
                )
                .on_server(&server.label)
            })?;
            headers.insert(HOST, host);
        } else if let Some(host) = &self.host_header {
            headers.insert(HOST, host.clone());
        }
        Ok(Request {
            method: self.method.clone(),
            target,
            headers,
        })
    }
}

/// `200` (purged), or `404` (ngx_cache_purge 2.3) and `412` (the 2.5 fork): not cached.
fn purged(status: StatusCode) -> bool {
    status.is_success()
        || status == StatusCode::NOT_FOUND
        || status == StatusCode::PRECONDITION_FAILED
}
