//! `mode = "http"`: `PURGE <path>` per URL, or `BAN /` per ban with the regex in a header,
//! over one keep-alive client.

use futures::StreamExt;
use reqwest::header::{HOST, HeaderValue};
use reqwest::{Client, Method, StatusCode};

use super::Ban;
use super::ban::host_regex;
use super::settings::{VarnishHttpMethod, VarnishSettings};
use crate::backend::{Cause, PurgeError, SetupError, http_client};
use crate::settings::types::ServerAddr;
use crate::target::Target;

pub(super) struct HttpTransport {
    client: Client,
    /// (`host:port` as configured, base URL)
    servers: Vec<(String, String)>,
    ban: bool,
    /// `PURGE` or `BAN`.
    method: Method,
    ban_header: String,
    ban_host_header: String,
    concurrency: usize,
    site_domain: Option<String>,
}

impl HttpTransport {
    pub(super) fn new(
        settings: &VarnishSettings,
        servers: &[ServerAddr],
    ) -> Result<Self, SetupError> {
        let servers = servers
            .iter()
            .map(|s| (s.to_string(), s.base_url()))
            .collect();
        let concurrency = settings.concurrency.get();
        Ok(Self {
            client: http_client::client(settings.timeout, concurrency)?,
            servers,
            ban: settings.http_method == VarnishHttpMethod::Ban,
            method: match settings.http_method {
                VarnishHttpMethod::Ban => http_client::method("BAN")?,
                _ => http_client::method("PURGE")?,
            },
            ban_header: settings.ban_header.to_string(),
            ban_host_header: settings.ban_host_header.to_string(),
            concurrency,
            site_domain: settings.site_domain.as_ref().map(ToString::to_string),
        })
    }

    pub(super) fn is_ban(&self) -> bool {
        self.ban
    }

    /// One `PURGE` per URL and server, `concurrency` at a time per server.
    pub(super) async fn purge_urls(&self, batch: &[Target]) -> Vec<PurgeError> {
        let purge = &self.method;
        let per_server = self.servers.iter().map(|(server, base)| {
            // Owned jobs: the stream's closures then borrow nothing from the batch.
            let jobs: Vec<(Target, reqwest::RequestBuilder)> = batch
                .iter()
                .filter_map(|target| {
                    let url = target.as_url()?;
                    let mut request = self
                        .client
                        .request(purge.clone(), format!("{base}{}", url.path_and_query()));
                    if let Some(host) = url.host().or(self.site_domain.as_deref())
                        && let Ok(v) = HeaderValue::from_str(host)
                    {
                        request = request.header(HOST, v);
                    }
                    Some((target.clone(), request))
                })
                .collect();
            async move {
                futures::stream::iter(jobs)
                    .map(|(target, request)| async move {
                        let result = match request.send().await {
                            Err(e) => Err(http_client::transport_error(server, e)),
                            // 404: the object was not in the cache, which is what we want.
                            Ok(r)
                                if matches!(r.status(), StatusCode::OK | StatusCode::NOT_FOUND) =>
                            {
                                Ok(())
                            }
                            Ok(r) => Err(http_client::response_error(server, r).await),
                        };
                        result.err().map(|error| error.only(vec![target]))
                    })
                    .buffer_unordered(self.concurrency)
                    .filter_map(std::future::ready)
                    .collect::<Vec<_>>()
                    .await
            }
        });
        futures::future::join_all(per_server)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// One `BAN` request per ban and server: the URL regex in `ban_header`, the host regex
    /// (if any) in `ban_host_header`.
    pub(super) async fn ban_all(&self, bans: &[Ban]) -> Vec<PurgeError> {
        let method = &self.method;
        let per_server = self.servers.iter().map(|(server, base)| {
            let method = method.clone();
            async move {
                let mut failures = Vec::new();
                for ban in bans {
                    let (url_regex, host_regex) =
                        http_ban_headers(ban, self.site_domain.as_deref());
                    let mut request = self
                        .client
                        .request(method.clone(), format!("{base}/"))
                        .header(self.ban_header.as_str(), url_regex);
                    if let Some(h) = host_regex {
                        request = request.header(self.ban_host_header.as_str(), h);
                    }
                    let result = match request.send().await {
                        Err(e) => Err(http_client::transport_error(server, e)),
                        Ok(r) if r.status() == StatusCode::OK => Ok(()),
                        Ok(r) => Err(http_client::response_error(server, r).await),
                    };
                    if let Err(error) = result {
                        let unreachable = error.cause() == &Cause::Unreachable;
                        failures.push(error.only(ban.targets.clone()));
                        if unreachable {
                            // Do not wait out the rest of the batch on a server that is down.
                            for rest in bans.iter().skip_while(|b| !std::ptr::eq(*b, ban)).skip(1) {
                                failures.push(
                                    PurgeError::new(
                                        Cause::Unreachable,
                                        "not sent: server unreachable",
                                    )
                                    .on_server(server)
                                    .only(rest.targets.clone()),
                                );
                            }
                            break;
                        }
                    }
                }
                failures
            }
        });
        futures::future::join_all(per_server)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

/// The header values of an HTTP ban: the URL regex (`.` for everything) and the host regex.
fn http_ban_headers(ban: &Ban, site_domain: Option<&str>) -> (String, Option<String>) {
    let mut url = None;
    let mut host = None;
    for c in &ban.conditions {
        if c.field.ends_with("url") {
            url = Some(c.argument.clone());
        } else if c.field.ends_with("host") {
            host = Some(c.argument.clone());
        }
    }
    // "Everything" has no URL condition: match every URL (of the site domain, if set).
    let url = url.unwrap_or_else(|| ".".to_owned());
    let host = host.or_else(|| site_domain.map(host_regex));
    (url, host)
}
