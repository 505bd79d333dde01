//! `mode = "http"`: `PURGE <path>` per URL, or `BAN /` per ban with the regex in a header,
//! over one keep-alive client ([`CacheClient`]: pipelined HTTP/1 for `http://` servers, reqwest for
//! `https://`).

use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use http::header::{ACCEPT_ENCODING, HOST, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use super::ban::{BanBuilder, host_regex};
use super::settings::{VarnishHttpMethod, VarnishSettings};
use super::{Ban, Tag};
use crate::backend::cache_client::{self, CacheClient, Request, Response};
use crate::backend::http_client::ServerUrl;
use crate::backend::{Cause, PurgeError, SetupError, http_client};
use crate::settings::types::ServerAddr;
use crate::target::{PurgeUrl, Target};

/// The request header of a refresh (`http_method = "refresh"`, `X-Cache-Purge-Refresh`), and
/// the header of the VCL's answer that says it purged the page's variants: `stored` (the new
/// page is cached) or `uncacheable` (the origin's answer was not cacheable; the page is
/// purged).
static REFRESH: HeaderName = HeaderName::from_static("x-cache-purge-refresh");

pub(super) struct HttpTransport {
    client: CacheClient,
    /// (`host:port` as configured, base URL)
    servers: Vec<(String, ServerUrl)>,
    ban: bool,
    /// `http_method = "refresh"`: URLs are refreshed in place instead of purged.
    refresh: bool,
    /// Per server (in the order of `servers`): its VCL answered a refresh without
    /// `X-Cache-Purge-Refresh`, so it has no refresh branch, and its URLs get `PURGE`s.
    refresh_unsupported: Vec<AtomicBool>,
    purge_method: Method,
    ban_method: Method,
    ban_header: HeaderName,
    ban_host_header: HeaderName,
    ban_tags_header: HeaderName,
    xkey_header: HeaderName,
    soft_purge: bool,
    concurrency: usize,
    site_domain: Option<String>,
}

/// The name of `xkey-soft: 1`, the soft purge of the shipped xkey VCL.
static XKEY_SOFT: HeaderName = HeaderName::from_static("xkey-soft");

/// A header name of the settings (a token by its type): this fails only if `http` ever
/// disagrees, and then as a client that cannot be built.
fn header_name(name: &str) -> Result<HeaderName, SetupError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|e| SetupError::HttpClient(format!("header `{name}`: {e}")))
}

/// Adds `name: value`; a value no header may hold fails the request as reqwest did when it
/// was sent (a request that could not be made).
fn add_header(
    headers: &mut HeaderMap,
    server: &str,
    name: &HeaderName,
    value: &str,
) -> Result<(), PurgeError> {
    let value = HeaderValue::from_str(value).map_err(|e| {
        PurgeError::new(Cause::ConnectionLost, format!("request failed: {e}")).on_server(server)
    })?;
    headers.append(name.clone(), value);
    Ok(())
}

impl HttpTransport {
    pub(super) fn new(
        settings: &VarnishSettings,
        servers: &[ServerAddr],
    ) -> Result<Self, SetupError> {
        let servers: Vec<(String, ServerUrl)> = servers
            .iter()
            .map(|s| (s.to_string(), ServerUrl::new(s.base_url())))
            .collect();
        let refresh_unsupported = servers.iter().map(|_| AtomicBool::new(false)).collect();
        let tls = servers.iter().any(|(_, base)| !base.is_plain());
        let concurrency = settings.concurrency.get();
        Ok(Self {
            client: CacheClient::new(settings.timeout, concurrency, settings.pipeline, tls)?,
            servers,
            ban: settings.http_method == VarnishHttpMethod::Ban,
            refresh: settings.http_method == VarnishHttpMethod::Refresh,
            refresh_unsupported,
            purge_method: http_client::method("PURGE")?,
            ban_method: http_client::method("BAN")?,
            ban_header: header_name(settings.ban_header.as_str())?,
            ban_host_header: header_name(settings.ban_host_header.as_str())?,
            ban_tags_header: header_name(settings.ban_tags_header.as_str())?,
            xkey_header: header_name(settings.xkey_header.as_str())?,
            soft_purge: settings.soft_purge,
            concurrency,
            site_domain: settings.site_domain.as_ref().map(ToString::to_string),
        })
    }

    pub(super) fn is_ban(&self) -> bool {
        self.ban
    }

    pub(super) fn is_refresh(&self) -> bool {
        self.refresh
    }

    /// The servers whose VCL answered a refresh without `X-Cache-Purge-Refresh`.
    pub(super) fn servers_without_refresh(&self) -> Vec<String> {
        self.servers
            .iter()
            .zip(&self.refresh_unsupported)
            .filter(|(_, unsupported)| unsupported.load(Ordering::Relaxed))
            .map(|((server, _), _)| server.clone())
            .collect()
    }

    /// A whole batch: URLs purged (`http_method = "purge"`) or banned (`"ban"`), tags banned
    /// when `bans` has a tag header (`tags = "ban"`, always as `BAN` requests), and tags
    /// purged through xkey when `xkey` is set, all at once.
    pub(super) async fn purge(
        &self,
        bans: &BanBuilder,
        batch: &[Target],
        xkey: bool,
    ) -> Vec<PurgeError> {
        let xkey_tags: Vec<&Tag> = if xkey {
            batch
                .iter()
                .filter_map(|t| match t {
                    Target::Tag(tag) => Some(tag),
                    _ => None,
                })
                .collect()
        } else {
            Vec::new()
        };
        let urls = async {
            if self.ban {
                return self.ban_all(bans, &bans.bans(batch).0).await;
            }
            if bans.tag_header.is_none() {
                return self.purge_urls(batch).await;
            }
            let tags: Vec<Target> = batch
                .iter()
                .filter(|t| matches!(t, Target::Tag(_)))
                .cloned()
                .collect();
            let tag_bans = bans.bans(&tags).0;
            let (mut errors, more) =
                futures::join!(self.purge_urls(batch), self.ban_all(bans, &tag_bans));
            errors.extend(more);
            errors
        };
        let (mut errors, more) = futures::join!(urls, self.purge_tags(&xkey_tags));
        errors.extend(more);
        errors
    }

    /// `PURGE /` requests carrying the tags in `xkey_header`, joined by spaces into values of
    /// at most [`XKEY_HEADER_BYTES`] (and `xkey-soft: 1` for a soft purge), sent as URL
    /// purges are: over up to `concurrency` connections per server, pipelined. (The xkey
    /// vmod holds one lock for the whole of a purge, but one connection was slower: 50,000
    /// tags took 0.117–0.133 s on one, 0.099–0.108 s on eight, in three alternating pairs
    /// of bench 5; varnishd's own CPU per tag was lower on eight too, its request handling
    /// overlapping on two cores.) The shipped VCL answers 200 with the number of objects purged in
    /// `X-Purged`, logged per request at DEBUG (per tag when a request carries one).
    async fn purge_tags(&self, tags: &[&Tag]) -> Vec<PurgeError> {
        if tags.is_empty() {
            return Vec::new();
        }
        let groups = xkey_groups(tags);
        self.send_per_server(
            self.concurrency,
            |server, base| {
                groups
                    .iter()
                    .map(|(value, targets)| {
                        let mut headers = HeaderMap::new();
                        let request = add_header(&mut headers, server, &self.xkey_header, value)
                            .and_then(|()| {
                                if self.soft_purge {
                                    add_header(&mut headers, server, &XKEY_SOFT, "1")?;
                                }
                                self.request(server, &self.purge_method, base, "/", headers)
                            });
                        (targets.as_slice(), request)
                    })
                    .collect()
            },
            |server, targets, response| {
                if response.status != StatusCode::OK {
                    return false;
                }
                let purged = response
                    .headers
                    .get("x-purged")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                tracing::debug!(
                    target: "cache_purge_hooks",
                    server = %server,
                    tags = targets.len(),
                    first = %targets[0],
                    objects = ?purged,
                    soft = self.soft_purge,
                    "varnish xkey purge"
                );
                true
            },
        )
        .await
    }

    /// One `PURGE` per URL and server, sent as [`send_per_server`](Self::send_per_server)
    /// sends (or a refresh, with `http_method = "refresh"`, `concurrency` at a time).
    async fn purge_urls(&self, batch: &[Target]) -> Vec<PurgeError> {
        if self.refresh {
            return self.refresh_urls(batch).await;
        }
        let purge = &self.purge_method;
        self.send_per_server(
            self.concurrency,
            |server, base| {
                batch
                    .iter()
                    .filter_map(|target| {
                        let url = target.as_url()?;
                        let headers = self.host_header(url);
                        let request =
                            self.request(server, purge, base, url.path_and_query(), headers);
                        Some((std::slice::from_ref(target), request))
                    })
                    .collect()
            },
            // 404: the object was not in the cache, which is what we want.
            |_, _, response| matches!(response.status, StatusCode::OK | StatusCode::NOT_FOUND),
        )
        .await
    }

    /// One refresh per URL and server (`http_method = "refresh"`), `concurrency` at a time
    /// per server (the bound on the origin fetches they cause).
    async fn refresh_urls(&self, batch: &[Target]) -> Vec<PurgeError> {
        let per_server = self.servers.iter().zip(&self.refresh_unsupported).map(
            |((server, base), unsupported)| {
                self.refresh_on_server(server, base, unsupported, batch)
            },
        );
        futures::future::join_all(per_server)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The refreshes of one server, `concurrency` at a time.
    async fn refresh_on_server(
        &self,
        server: &str,
        base: &ServerUrl,
        unsupported: &AtomicBool,
        batch: &[Target],
    ) -> Vec<PurgeError> {
        // The futures made before the stream runs: its closures then borrow nothing.
        let jobs: Vec<_> = batch
            .iter()
            .filter_map(|target| {
                let url = target.as_url()?;
                Some(self.refresh_target(server, base, unsupported, target, url))
            })
            .collect();
        futures::stream::iter(jobs)
            .buffer_unordered(self.concurrency)
            .filter_map(std::future::ready)
            .collect()
            .await
    }

    /// The refresh of one target, its failure if any.
    async fn refresh_target(
        &self,
        server: &str,
        base: &ServerUrl,
        unsupported: &AtomicBool,
        target: &Target,
        url: &PurgeUrl,
    ) -> Option<PurgeError> {
        let result = self.refresh_one(server, base, unsupported, url).await;
        result.err().map(|error| error.only(vec![target.clone()]))
    }

    /// Refreshes one URL on one server: a `GET` with `X-Cache-Purge-Refresh` (and `Accept-Encoding:
    /// gzip`, so that the variant warmed is the one browsers get). The VCL's refresh branch
    /// purges every stored variant before fetching the page anew and says so in the same
    /// header, whatever the origin answered: then the purge is done. An answer without it
    /// comes from a VCL with no refresh branch (an ordinary GET, which purged nothing): the
    /// URL is purged with `PURGE` and fetched again with an ordinary `GET`, and so is every
    /// later one of that server (logged once).
    async fn refresh_one(
        &self,
        server: &str,
        base: &ServerUrl,
        unsupported: &AtomicBool,
        url: &PurgeUrl,
    ) -> Result<(), PurgeError> {
        let path = url.path_and_query();
        if !unsupported.load(Ordering::Relaxed) {
            let mut headers = self.host_header(url);
            headers.insert(REFRESH.clone(), HeaderValue::from_static("1"));
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
            let request = self.request(server, &Method::GET, base, path, headers);
            let response = self.send(server, request).await?;
            let answer = response
                .headers
                .get(&REFRESH)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if let Some(answer) = answer {
                tracing::debug!(
                    target: "cache_purge_hooks",
                    server = %server,
                    url = %url,
                    status = response.status.as_u16(),
                    answer = %answer,
                    "varnish refresh"
                );
                return Ok(());
            }
            if !unsupported.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    target: "cache_purge_hooks",
                    server = %server,
                    url = %url,
                    status = response.status.as_u16(),
                    "http_method = \"refresh\", but this Varnish answered a refresh without \
                     X-Cache-Purge-Refresh: its VCL has no refresh branch. Its URLs are purged \
                     with PURGE and fetched again instead (visitors may get a miss meanwhile); \
                     use deploy/varnish/cache-purge.vcl (docs/varnish.md)"
                );
            }
        }
        let request = self.request(
            server,
            &self.purge_method,
            base,
            path,
            self.host_header(url),
        );
        let response = self.send(server, request).await?;
        if !matches!(response.status, StatusCode::OK | StatusCode::NOT_FOUND) {
            return Err(cache_client::response_error(server, &response));
        }
        // Purged; then an ordinary GET warms it again (a purge and a GET, as `refresh = true`
        // does elsewhere). Its failure is not the purge's: the page is gone either way.
        let mut headers = self.host_header(url);
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let request = self.request(server, &Method::GET, base, path, headers);
        if let Err(error) = self.send(server, request).await {
            tracing::debug!(
                target: "cache_purge_hooks",
                server = %server,
                url = %url,
                error = %error,
                "purged; the GET that warms it again failed"
            );
        }
        Ok(())
    }

    /// The `Host` header of a request for this URL: its host, or `site_domain` (none for a
    /// path without `site_domain`: the client sends the server's).
    fn host_header(&self, url: &PurgeUrl) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(host) = url.host().or(self.site_domain.as_deref())
            && let Ok(v) = HeaderValue::from_str(host)
        {
            headers.insert(HOST, v);
        }
        headers
    }

    /// A request to `path_and_query` on the server at `base`, its URI built without parsing
    /// the host again (see [`ServerUrl::request_target`]); one that cannot be made fails as
    /// reqwest failed it when it was sent.
    fn request(
        &self,
        server: &str,
        method: &Method,
        base: &ServerUrl,
        path_and_query: &str,
        headers: HeaderMap,
    ) -> Result<Request, PurgeError> {
        let target = base
            .request_target(path_and_query)
            .map_err(|e| cache_client::transport_error(server, e))?;
        Ok(Request {
            method: method.clone(),
            target,
            headers,
        })
    }

    /// Sends one request: the response, or why there is none.
    async fn send(
        &self,
        server: &str,
        request: Result<Request, PurgeError>,
    ) -> Result<Response, PurgeError> {
        let Request {
            method,
            target,
            headers,
        } = request?;
        self.client
            .send(method, target, headers)
            .await
            .map_err(|e| cache_client::transport_error(server, e))
    }

    /// Sends every server its requests (`jobs` of its name and base URL: the targets each
    /// request purges, and the request), all servers at once, over up to `connections`
    /// connections per server and `pipeline` requests on each (see
    /// [`CacheClient::send_all`]). A response `accepted` says is success; any other, or no
    /// response, fails the request's targets on that server. The jobs borrow their targets:
    /// they are copied only into the error of a request that failed.
    async fn send_per_server<'t>(
        &self,
        connections: usize,
        jobs: impl Fn(&str, &ServerUrl) -> Vec<(&'t [Target], Result<Request, PurgeError>)>,
        accepted: impl Fn(&str, &[Target], &Response) -> bool,
    ) -> Vec<PurgeError> {
        let accepted = &accepted;
        let per_server = self.servers.iter().map(|(server, base)| {
            let mut failures = Vec::new();
            let mut requests = Vec::new();
            let mut purged = Vec::new();
            for (targets, request) in jobs(server, base) {
                match request {
                    Ok(request) => {
                        requests.push(request);
                        purged.push(targets);
                    }
                    Err(error) => failures.push(error.only(targets.to_vec())),
                }
            }
            async move {
                let results = self.client.send_all(requests, connections).await;
                for (targets, result) in purged.into_iter().zip(results) {
                    let error = match result {
                        Err(e) => cache_client::transport_error(server, e),
                        Ok(r) if accepted(server, targets, &r) => continue,
                        Ok(r) => cache_client::response_error(server, &r),
                    };
                    failures.push(error.only(targets.to_vec()));
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

    /// One `BAN` request per ban and server: the URL regex in `ban_header` (a tag regex in
    /// `ban_tags_header`), the host regex (if any) in `ban_host_header`.
    async fn ban_all(&self, builder: &BanBuilder, bans: &[Ban]) -> Vec<PurgeError> {
        if bans.is_empty() {
            return Vec::new();
        }
        let method = &self.ban_method;
        let per_server = self.servers.iter().map(|(server, base)| async move {
            let mut failures = Vec::new();
            for ban in bans {
                let (subject, regex, host_regex) =
                    http_ban_headers(ban, builder, self.site_domain.as_deref());
                let header = match subject {
                    Subject::Tags => &self.ban_tags_header,
                    Subject::Urls => &self.ban_header,
                };
                let mut headers = HeaderMap::new();
                let request = add_header(&mut headers, server, header, &regex).and_then(|()| {
                    if let Some(h) = &host_regex {
                        add_header(&mut headers, server, &self.ban_host_header, h)?;
                    }
                    self.request(server, method, base, "/", headers)
                });
                let result = match self.send(server, request).await {
                    Err(e) => Err(e),
                    Ok(r) if r.status == StatusCode::OK => Ok(()),
                    Ok(r) => Err(cache_client::response_error(server, &r)),
                };
                if let Err(error) = result {
                    let unreachable = error.cause() == &Cause::Unreachable;
                    failures.push(error.only(ban.targets.clone()));
                    if unreachable {
                        // Do not wait out the rest of the batch on a server that is down.
                        for rest in bans.iter().skip_while(|b| !std::ptr::eq(*b, ban)).skip(1) {
                            failures.push(
                                PurgeError::new(Cause::Unreachable, "not sent: server unreachable")
                                    .on_server(server)
                                    .only(rest.targets.clone()),
                            );
                        }
                        break;
                    }
                }
            }
            failures
        });
        futures::future::join_all(per_server)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

/// The longest `xkey-purge` value of one request: FOSHttpCache's header length, which most
/// servers accept (varnishd's own limit, `http_req_hdr_len`, is 8 KB by default).
pub(super) const XKEY_HEADER_BYTES: usize = 4096;

/// Tags joined by spaces into header values of at most [`XKEY_HEADER_BYTES`] (a tag is at
/// most 1,024 bytes, so each fits), with the targets each value purges.
fn xkey_groups(tags: &[&Tag]) -> Vec<(String, Vec<Target>)> {
    let mut groups: Vec<(String, Vec<Target>)> = Vec::new();
    for tag in tags {
        match groups.last_mut() {
            Some((value, targets)) if value.len() + 1 + tag.as_str().len() <= XKEY_HEADER_BYTES => {
                value.push(' ');
                value.push_str(tag.as_str());
                targets.push(Target::Tag((*tag).clone()));
            }
            _ => groups.push((tag.as_str().to_owned(), vec![Target::Tag((*tag).clone())])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xkey_values_hold_every_tag_once_and_stay_under_4096_bytes() {
        let owned: Vec<Tag> = (0..2000)
            .map(|i| Tag::parse(&format!("post:{i}")).unwrap())
            .chain([Tag::parse(&"x".repeat(1024)).unwrap()])
            .collect();
        let tags: Vec<&Tag> = owned.iter().collect();
        let groups = xkey_groups(&tags);
        assert!(groups.len() > 1);
        let mut seen = Vec::new();
        for (value, targets) in &groups {
            assert!(value.len() <= XKEY_HEADER_BYTES, "{}", value.len());
            let words: Vec<&str> = value.split(' ').collect();
            assert_eq!(words.len(), targets.len());
            seen.extend(words.iter().map(|w| w.to_string()));
        }
        let expected: Vec<String> = owned.iter().map(|t| t.as_str().to_owned()).collect();
        assert_eq!(seen, expected);
    }
}

/// What an HTTP ban's regex tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subject {
    /// URLs (and prefixes, and everything): the regex goes in `ban_header`.
    Urls,
    /// Tags: the regex goes in `ban_tags_header`.
    Tags,
}

/// The header values of an HTTP ban: what it tests, its regex (`.` for everything) and the
/// host regex. Conditions are told apart by their field, never guessed from their text.
fn http_ban_headers(
    ban: &Ban,
    builder: &BanBuilder,
    site_domain: Option<&str>,
) -> (Subject, String, Option<String>) {
    let host_field = builder.host_field();
    let subject = match ban.targets.first() {
        Some(Target::Tag(_)) => Subject::Tags,
        _ => Subject::Urls,
    };
    let mut regex = None;
    let mut host = None;
    for c in &ban.conditions {
        if c.field == host_field {
            host = Some(c.argument.clone());
        } else if ban.targets.iter().any(|t| !matches!(t, Target::Everything)) {
            regex = Some(c.argument.clone());
        }
    }
    // "Everything" has no URL condition: match every URL (of the site domain, if set).
    let regex = regex.unwrap_or_else(|| ".".to_owned());
    let host = host.or_else(|| site_domain.map(host_regex));
    (subject, regex, host)
}
