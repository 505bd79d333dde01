//! The Varnish backend: bans through the admin CLI (natively, or by forking `varnishadm`), or
//! HTTP `PURGE` / `BAN` requests to Varnish's HTTP port.
//!
//! | mode | how | purges |
//! |---|---|---|
//! | `cli` (default) | one persistent, authenticated admin connection per server; one ban per batch (an anchored alternation) | URLs, prefixes, everything |
//! | `varnishadm` | forks the configured binary (argv, no shell) once per ban | URLs, prefixes, everything |
//! | `http`, `http_method = "purge"` | `PURGE <path>` per URL over keep-alive connections, pipelined (`concurrency` connections, `pipeline` requests written at once on each) | URLs |
//! | `http`, `http_method = "ban"` | `BAN /` per ban with the regex in a header | URLs, prefixes, everything |
//! | `http`, `http_method = "refresh"` | a refresh `GET <path>` per URL: the VCL purges every variant and fetches the page anew (`req.hash_always_miss`) | URLs |
//!
//! ```toml
//! [backends.edge]
//! kind = "varnish"
//! servers = ["127.0.0.1:6082", "10.0.0.2:6082"]   # the -T addresses
//! secret_file = "/etc/varnish/secret"              # the -S file
//! site_domain = "www.example.com"                  # ban only this host's objects
//! ban_style = "lurker"                             # obj.http.x-url: needs the VCL below
//! ```
//!
//! Bans are built by [`ban`]: every URL becomes an anchored, fully escaped regex. With
//! `ban_style = "lurker"` they test object headers that this VCL sets, so Varnish's ban lurker
//! can retire them instead of keeping them until every object expires:
//!
//! ```vcl
//! sub vcl_backend_response {
//!     set beresp.http.x-url = bereq.url;
//!     set beresp.http.x-host = bereq.http.host;
//! }
//! sub vcl_deliver {
//!     unset resp.http.x-url;
//!     unset resp.http.x-host;
//! }
//! ```
//!
//! The `http` mode needs VCL that handles `PURGE` (`return (purge)` or `purge.hard()`) and,
//! for bans, `BAN` with the regex in `X-Ban-Url` (and the host regex in `X-Ban-Host`):
//! `std.ban("obj.http.x-url ~ " + req.http.X-Ban-Url)`. deploy/varnish/cache-purge.vcl is a complete VCL (docs/varnish.md).

#[cfg(feature = "varnish")]
pub mod ban;
#[cfg(feature = "varnish")]
pub mod cli;
#[cfg(feature = "varnish")]
mod http;
pub mod settings;
#[cfg(feature = "varnish")]
mod varnishadm;

#[cfg(feature = "varnish")]
use std::sync::Arc;
#[cfg(feature = "varnish")]
use std::time::Duration;

#[cfg(feature = "varnish")]
use futures::future::join_all;

#[cfg(feature = "varnish")]
pub use self::ban::{Ban, BanBuilder};
#[cfg(feature = "varnish")]
pub use self::cli::{AdminClient, CliError, Reply};
#[cfg(feature = "varnish")]
use self::settings::{VarnishMode, VarnishSettings, VarnishTags};
#[cfg(feature = "varnish")]
use crate::backend::{Backend, Capabilities, Failures, PurgeError, SetupError};
#[cfg(feature = "varnish")]
use crate::target::{Tag, Target};

#[cfg(feature = "varnish")]
/// Purges Varnish. Built from `kind = "varnish"` settings by [`VarnishBackend::new`].
pub struct VarnishBackend {
    bans: BanBuilder,
    /// The servers in the settings' order, which orders the failures of a batch.
    servers: Vec<String>,
    transport: Transport,
    tags: VarnishTags,
}

#[cfg(feature = "varnish")]
enum Transport {
    Cli(Vec<Arc<cli_pool::CliServer>>),
    Varnishadm(Vec<varnishadm::Varnishadm>),
    /// Boxed: the HTTP transport (its client, headers, servers) is much the largest.
    Http(Box<http::HttpTransport>),
}

#[cfg(feature = "varnish")]
impl VarnishBackend {
    /// A backend from its settings, which are valid by their types. Fails only on what needs
    /// I/O: the secret file (for `cli` and `varnishadm`) cannot be read, the `varnishadm`
    /// binary cannot be used, the HTTP client cannot be built. Better at start-up than at the
    /// first save.
    pub fn new(settings: &VarnishSettings) -> Result<Self, SetupError> {
        let servers = settings.servers_or_default();
        let read_secret = || {
            std::fs::read(&settings.secret_file).map_err(|source| SetupError::File {
                setting: "secret_file",
                path: settings.secret_file.clone(),
                source,
                hint: "the file given to varnishd -S; this process needs read access",
            })
        };
        let transport = match settings.mode {
            VarnishMode::Varnishadm => {
                read_secret()?;
                varnishadm::check_binary(&settings.varnishadm_bin)?;
                Transport::Varnishadm(
                    servers
                        .iter()
                        .map(|s| varnishadm::Varnishadm {
                            bin: settings.varnishadm_bin.clone(),
                            secret_file: settings.secret_file.clone(),
                            server: s.to_string(),
                            timeout: settings.timeout,
                        })
                        .collect(),
                )
            }
            VarnishMode::Http => {
                Transport::Http(Box::new(http::HttpTransport::new(settings, &servers)?))
            }
            _ => {
                let secret: Arc<[u8]> = read_secret()?.into();
                Transport::Cli(
                    servers
                        .iter()
                        .map(|s| {
                            Arc::new(cli_pool::CliServer::new(
                                s.to_string(),
                                secret.clone(),
                                settings.timeout,
                            ))
                        })
                        .collect(),
                )
            }
        };
        Ok(Self {
            bans: BanBuilder {
                style: settings.ban_style,
                url_header: settings.lurker_url_header.to_string(),
                host_header: settings.lurker_host_header.to_string(),
                site_domain: settings.site_domain.as_ref().map(ToString::to_string),
                max_length: settings.max_ban_length.get(),
                tag_header: (settings.tags == VarnishTags::Ban)
                    .then(|| settings.tag_header.to_string()),
            },
            tags: settings.tags,
            servers: servers.iter().map(ToString::to_string).collect(),
            transport,
        })
    }

    /// Whether this backend refreshes URLs in place (`mode = "http"`, `http_method =
    /// "refresh"`).
    pub fn refreshes_in_place(&self) -> bool {
        matches!(&self.transport, Transport::Http(h) if h.is_refresh())
    }

    /// With `http_method = "refresh"`: the servers (as configured) whose VCL answered a
    /// refresh without `X-Cache-Purge-Refresh`, so has no refresh branch; their URLs are
    /// purged with `PURGE` and fetched again instead. Empty in the other modes, and before the
    /// first refresh.
    pub fn servers_without_refresh(&self) -> Vec<String> {
        match &self.transport {
            Transport::Http(h) => h.servers_without_refresh(),
            _ => Vec::new(),
        }
    }

    /// The bans a batch becomes (what `cli`, `varnishadm` and HTTP `BAN` send).
    pub fn bans_for(&self, batch: &[Target]) -> Vec<Ban> {
        self.bans.bans(batch).0
    }
}

#[cfg(feature = "varnish")]
impl std::fmt::Debug for VarnishBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.transport {
            Transport::Cli(_) => "cli",
            Transport::Varnishadm(_) => "varnishadm",
            Transport::Http(h) if h.is_ban() => "http ban",
            Transport::Http(h) if h.is_refresh() => "http refresh",
            Transport::Http(_) => "http purge",
        };
        f.debug_struct("VarnishBackend")
            .field("mode", &mode)
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "varnish")]
#[async_trait::async_trait]
impl Backend for VarnishBackend {
    fn capabilities(&self) -> Capabilities {
        let urls = match &self.transport {
            Transport::Http(h) if !h.is_ban() => Capabilities::URL,
            _ => Capabilities::URL | Capabilities::PREFIX | Capabilities::EVERYTHING,
        };
        match self.tags {
            VarnishTags::Ban | VarnishTags::Xkey => urls | Capabilities::TAG,
            _ => urls,
        }
    }

    fn max_batch(&self) -> usize {
        match &self.transport {
            // With xkey, a batch's tags fill xkey-purge values of up to 4,096 bytes, sent
            // `concurrency` at once, each failing alone: the bigger the batch, the fewer and
            // fuller the requests. 256 made one short request per batch, one batch at a time
            // (0.6x FOSHttpCache's sequential full headers in the bench), 1,000 0.8x.
            Transport::Http(h) if !h.is_ban() && self.tags == VarnishTags::Xkey => 10_000,
            Transport::Http(h) if !h.is_ban() => 256,
            _ => 1000,
        }
    }

    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
        let errors: Vec<PurgeError> = match &self.transport {
            Transport::Http(h) => {
                h.purge(&self.bans, batch, self.tags == VarnishTags::Xkey)
                    .await
            }
            Transport::Cli(servers) => {
                let (bans, _) = self.bans.bans(batch);
                join_all(servers.iter().map(|s| s.ban_all(&bans)))
                    .await
                    .into_iter()
                    .flatten()
                    .collect()
            }
            Transport::Varnishadm(servers) => {
                let (bans, _) = self.bans.bans(batch);
                join_all(servers.iter().map(|s| s.ban_all(&bans)))
                    .await
                    .into_iter()
                    .flatten()
                    .collect()
            }
        };
        let mut failures = Failures::new(batch).with_servers(self.servers.iter().cloned());
        for e in errors {
            failures.push(e);
        }
        failures.into_result()
    }
}

#[cfg(feature = "varnish")]
/// Keeps one authenticated admin connection per server.
mod cli_pool {
    use super::*;
    use tokio::sync::Mutex;

    use crate::backend::PurgeError;

    pub(crate) struct CliServer {
        addr: String,
        secret: Arc<[u8]>,
        timeout: Duration,
        /// One connection, used by one batch at a time: the admin protocol is strictly
        /// request/reply.
        conn: Mutex<Option<AdminClient>>,
    }

    impl CliServer {
        pub(crate) fn new(addr: String, secret: Arc<[u8]>, timeout: Duration) -> Self {
            Self {
                addr,
                secret,
                timeout,
                conn: Mutex::new(None),
            }
        }

        async fn connect(&self) -> Result<AdminClient, CliError> {
            let client = AdminClient::connect(&self.addr, Some(&self.secret), self.timeout).await?;
            tracing::debug!(target: "cache_purge_hooks", server = %self.addr, "varnish admin connection open");
            Ok(client)
        }

        /// Sends every ban, in order, on the server's connection; reconnects once when a
        /// kept connection turns out to be broken (varnishd restarted, idle timeout).
        pub(crate) async fn ban_all(&self, bans: &[Ban]) -> Vec<PurgeError> {
            let mut guard = self.conn.lock().await;
            let mut failures = Vec::new();
            for (i, ban) in bans.iter().enumerate() {
                let line = ban.cli_command();
                let reused = guard.is_some();
                let result = match guard.as_mut() {
                    Some(c) => c.command(&line).await,
                    None => match self.connect().await {
                        Ok(c) => guard.insert(c).command(&line).await,
                        Err(e) => Err(e),
                    },
                };
                let result = match result {
                    Err(e) if reused && e.is_transient() => {
                        *guard = None;
                        tracing::debug!(target: "cache_purge_hooks", server = %self.addr, error = %e, "varnish admin connection lost; reconnecting");
                        match self.connect().await {
                            Ok(c) => guard.insert(c).command(&line).await,
                            Err(e) => Err(e),
                        }
                    }
                    other => other,
                };
                if let Err(e) = result {
                    if !matches!(e, CliError::Refused { .. }) {
                        // The connection is unusable (or unauthenticated): drop it, and do not
                        // hammer a server that is down with the rest of the batch.
                        *guard = None;
                        let message = match &e {
                            CliError::Connect(io) => format!("varnish admin: cannot reach: {io}"),
                            other => format!("varnish admin: {other}"),
                        };
                        failures.push(
                            PurgeError::new(e.cause(), message)
                                .on_server(&self.addr)
                                .only(bans[i..].iter().flat_map(|b| b.targets.clone()).collect())
                                .with_source(e),
                        );
                        break;
                    }
                    failures.push(
                        PurgeError::new(
                            e.cause(),
                            format!("varnish refused `{}`: {e}", ban.expression()),
                        )
                        .on_server(&self.addr)
                        .only(ban.targets.clone())
                        .with_source(e),
                    );
                }
            }
            failures
        }
    }
}
