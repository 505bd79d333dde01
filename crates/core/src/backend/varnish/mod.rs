//! The Varnish backend: bans through the admin CLI (natively, or by forking `varnishadm`), or
//! HTTP `PURGE` / `BAN` requests to Varnish's HTTP port.
//!
//! | mode | how | purges |
//! |---|---|---|
//! | `cli` (default) | one persistent, authenticated admin connection per server; one ban per batch (an anchored alternation) | URLs, prefixes, everything |
//! | `varnishadm` | forks the configured binary (argv, no shell) once per ban | URLs, prefixes, everything |
//! | `http`, `http_method = "purge"` | `PURGE <path>` per URL over keep-alive connections | URLs |
//! | `http`, `http_method = "ban"` | `BAN /` per ban with the regex in a header | URLs, prefixes, everything |
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

pub mod ban;
pub mod cli;
mod http;
mod varnishadm;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

pub use self::ban::{Ban, BanBuilder};
pub use self::cli::{AdminClient, CliError, Reply};
use crate::backend::{Backend, Capabilities, FailureKind, PurgeError};
use crate::purger::BuildError;
use crate::settings::{VarnishMode, VarnishSettings, parse_server};
use crate::target::Target;

/// Purges Varnish. Built from `kind = "varnish"` settings by [`VarnishBackend::new`].
pub struct VarnishBackend {
    name: String,
    bans: BanBuilder,
    transport: Transport,
}

enum Transport {
    Cli(Vec<Arc<cli_pool::CliServer>>),
    Varnishadm(Vec<varnishadm::Varnishadm>),
    Http(http::HttpTransport),
}

impl VarnishBackend {
    /// A backend from its settings. Fails when a server address is invalid, or the secret
    /// file (for `cli` and `varnishadm`) or the `varnishadm` binary cannot be used: better at
    /// start-up than at the first save.
    pub fn new(name: &str, settings: &VarnishSettings) -> Result<Self, BuildError> {
        let fail = |message: String| BuildError::Backend {
            name: name.to_owned(),
            message,
        };
        let servers = settings.servers_or_default();
        for s in &servers {
            parse_server(s).map_err(|e| fail(format!("servers: {e}")))?;
        }
        let read_secret = || {
            std::fs::read(&settings.secret_file).map_err(|e| {
                fail(format!(
                    "cannot read secret_file `{}`: {e} (the file given to varnishd -S; this process needs read access)",
                    settings.secret_file.display()
                ))
            })
        };
        let transport = match settings.mode {
            VarnishMode::Varnishadm => {
                read_secret()?;
                varnishadm::check_binary(&settings.varnishadm_bin).map_err(fail)?;
                Transport::Varnishadm(
                    servers
                        .iter()
                        .map(|s| varnishadm::Varnishadm {
                            bin: settings.varnishadm_bin.clone(),
                            secret_file: settings.secret_file.clone(),
                            server: s.clone(),
                            timeout: settings.timeout,
                        })
                        .collect(),
                )
            }
            VarnishMode::Http => {
                Transport::Http(http::HttpTransport::new(settings, &servers).map_err(fail)?)
            }
            _ => {
                let secret: Arc<[u8]> = read_secret()?.into();
                Transport::Cli(
                    servers
                        .iter()
                        .map(|s| {
                            Arc::new(cli_pool::CliServer::new(
                                s.clone(),
                                secret.clone(),
                                settings.timeout,
                            ))
                        })
                        .collect(),
                )
            }
        };
        Ok(Self {
            name: name.to_owned(),
            bans: BanBuilder {
                style: settings.ban_style,
                url_header: settings.lurker_url_header.clone(),
                host_header: settings.lurker_host_header.clone(),
                site_domain: settings.site_domain.clone(),
                max_length: settings.max_ban_length,
            },
            transport,
        })
    }

    /// The bans a batch becomes (what `cli`, `varnishadm` and HTTP `BAN` send).
    pub fn bans_for(&self, batch: &[Target]) -> Vec<Ban> {
        self.bans.bans(batch).0
    }
}

impl std::fmt::Debug for VarnishBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.transport {
            Transport::Cli(_) => "cli",
            Transport::Varnishadm(_) => "varnishadm",
            Transport::Http(h) if h.is_ban() => "http ban",
            Transport::Http(_) => "http purge",
        };
        f.debug_struct("VarnishBackend")
            .field("name", &self.name)
            .field("mode", &mode)
            .finish_non_exhaustive()
    }
}

/// What went wrong on one server, for one ban or URL.
pub(crate) struct ServerFailure {
    pub(crate) server: String,
    pub(crate) error: PurgeError,
    pub(crate) targets: Vec<Target>,
}

/// One error for the batch out of every server's failures: the failed targets (on any
/// server), the first server named, every server counted, and a kind that is permanent only
/// when every failure is.
pub(crate) fn combine(batch_len: usize, failures: Vec<ServerFailure>) -> Result<(), PurgeError> {
    let Some(first) = failures.first() else {
        return Ok(());
    };
    let mut servers: Vec<&str> = failures.iter().map(|f| f.server.as_str()).collect();
    servers.dedup();
    let mut failed: Vec<Target> = Vec::new();
    for f in &failures {
        for t in &f.targets {
            if !failed.contains(t) {
                failed.push(t.clone());
            }
        }
    }
    let kind = if failures
        .iter()
        .all(|f| f.error.kind == FailureKind::Permanent)
    {
        FailureKind::Permanent
    } else {
        failures
            .iter()
            .map(|f| f.error.kind)
            .find(|k| *k != FailureKind::Permanent)
            .unwrap_or(FailureKind::Transient)
    };
    let mut message = first.error.message.clone();
    if failures.len() > 1 || servers.len() > 1 {
        message.push_str(&format!(
            " ({} failure(s) on {}; {} of {} target(s) not purged)",
            failures.len(),
            servers.join(", "),
            failed.len(),
            batch_len
        ));
    }
    let failed = if failed.len() == batch_len {
        Vec::new()
    } else {
        failed
    };
    Err(PurgeError {
        kind,
        server: Some(first.server.clone()),
        message,
        failed,
    })
}

#[async_trait::async_trait]
impl Backend for VarnishBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        match &self.transport {
            Transport::Http(h) if !h.is_ban() => Capabilities::URL,
            _ => Capabilities {
                url: true,
                prefix: true,
                tag: false,
                everything: true,
            },
        }
    }

    fn max_batch(&self) -> usize {
        match &self.transport {
            Transport::Http(h) if !h.is_ban() => 256,
            _ => 1000,
        }
    }

    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
        if let Transport::Http(h) = &self.transport
            && !h.is_ban()
        {
            return combine(batch.len(), h.purge_urls(batch).await);
        }
        let (bans, _) = self.bans.bans(batch);
        let failures: Vec<ServerFailure> = match &self.transport {
            Transport::Cli(servers) => join_all(servers.iter().map(|s| s.ban_all(&bans)))
                .await
                .into_iter()
                .flatten()
                .collect(),
            Transport::Varnishadm(servers) => join_all(servers.iter().map(|s| s.ban_all(&bans)))
                .await
                .into_iter()
                .flatten()
                .collect(),
            Transport::Http(h) => h.ban_all(&bans).await,
        };
        combine(batch.len(), failures)
    }
}

/// Keeps one authenticated admin connection per server.
mod cli_pool {
    use super::*;
    use tokio::sync::Mutex;

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
        pub(crate) async fn ban_all(&self, bans: &[Ban]) -> Vec<ServerFailure> {
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
                    let kind = if e.is_transient() {
                        FailureKind::Transient
                    } else {
                        FailureKind::Permanent
                    };
                    if !matches!(e, CliError::Refused { .. }) {
                        // The connection is unusable (or unauthenticated): drop it, and do not
                        // hammer a server that is down with the rest of the batch.
                        *guard = None;
                        let message = match &e {
                            CliError::Io(io) => format!("varnish admin: cannot reach: {io}"),
                            other => format!("varnish admin: {other}"),
                        };
                        failures.push(ServerFailure {
                            server: self.addr.clone(),
                            error: PurgeError {
                                kind,
                                ..PurgeError::transient(message).on_server(&self.addr)
                            },
                            targets: bans[i..].iter().flat_map(|b| b.targets.clone()).collect(),
                        });
                        break;
                    }
                    failures.push(ServerFailure {
                        server: self.addr.clone(),
                        error: PurgeError {
                            kind,
                            ..PurgeError::transient(format!(
                                "varnish refused `{}`: {e}",
                                ban.expression()
                            ))
                            .on_server(&self.addr)
                        },
                        targets: ban.targets.clone(),
                    });
                }
            }
            failures
        }
    }
}
