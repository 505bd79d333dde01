//! Test harness for cache-purge-hooks: real nginx and Varnish servers for end-to-end tests of
//! purge backends.
//!
//! Every server runs on free loopback ports with its own temp dir, in front of an [`Origin`]
//! the test controls (or any HTTP server on a loopback port, such as the application under
//! test: `start_in_front_of`), is waited for until it is ready (with a 30 s deadline), and is
//! stopped by PID, with its whole process group, when the test calls `stop()` or drops it.
//! Nothing is left behind: no processes, no temp dirs.
//!
//! The servers run the configuration the project ships in `deploy/` (and recommends in its
//! docs), with placeholders such as `@DIR@`, ports and the origin's address filled in:
//! `deploy/nginx/nginx.conf` + `deploy/nginx/cache-purge.conf` ([`NGINX_CONF`],
//! [`NGINX_SITE_CONF`]) and `deploy/varnish/cache-purge.vcl` ([`HARNESS_VCL`]). What the
//! tests run is therefore what users are told to deploy.
//!
//! - [`Origin`]: an HTTP/1.1 origin on its own thread that counts fetches per request target
//!   and puts the count in the body (`"/a #2"` means the cache fetched `/a` again).
//! - [`Nginx`]: nginx with Debian's `ngx_cache_purge` module, purges in a separate location
//!   ([`PurgeLocation::Separate`], the default and the shipped style) or in the proxied one
//!   ([`PurgeLocation::Same`], which crashes Debian's module: [`Nginx::worker_crash`]).
//! - [`Varnish`]: varnishd with [`HARNESS_VCL`] (HTTP `PURGE` and `BAN`, lurker-friendly
//!   object headers) or your own VCL, with its admin CLI on a `-T` port with a `-S` secret,
//!   and independent checks of what a client did: [`Varnish::ban_list`],
//!   [`Varnish::ban_count`], [`Varnish::varnishadm`].
//! - [`Redis`]: a `redis-server` (no persistence) for the tag index tests.
//! - CDN API fakes that enforce the documented contract (authentication, request shapes,
//!   items per request, rate limits answered with 429 and `Retry-After`) and record what was
//!   purged: [`CloudflareFake`] (API v4 `purge_cache`, the plan's token bucket, optionally
//!   run faster) and [`FastlyFake`] (URL `PURGE`, batch surrogate keys, purge-all, soft).
//! - [`Nats`]: a `nats-server -js` (JetStream in its own temp dir) for the fleet tests, with
//!   [`Nats::kill_server`] and [`Nats::restart`] for fault tests, and with a token, a user
//!   and password or TLS ([`NatsConfig`]).
//! - Broken peers: [`refused_addr`], [`SilentServer`] (never answers), [`StatusServer`]
//!   (always answers, say, `503`).
//! - What a user checks after a purge: [`warm`] (cached), [`assert_purged`] (the next GET is
//!   a MISS with fresh content from the origin), [`assert_cached`] (the neighbour is still a
//!   HIT).
//! - [`logs::capture`]: what `tracing` writes on this thread, to assert on log lines.
//! - `db` (feature `sea-orm`): a fresh SeaORM database per test, on SQLite and, when
//!   reachable (required with `CI=true`), PostgreSQL and MariaDB on 127.0.0.1; the schema is
//!   the caller's.
//!
//! The servers are the Debian packages (nginx 1.22, `libnginx-mod-http-cache-purge` 2.3,
//! Varnish 7.1). When one is missing the error says which and how to install them all:
//! [`INSTALL_COMMAND`] (`apt-get install -y nginx libnginx-mod-http-cache-purge varnish`).
//! Tests using this crate therefore fail, rather than skip, on a machine without them.
//!
//! # Example
//!
//! ```no_run
//! use cache_purge_hooks_testing::{HarnessError, Nginx, NginxConfig, Origin, Varnish};
//!
//! # async fn example() -> Result<(), HarnessError> {
//! let origin = Origin::start()?;
//! // Start both caches at once: each takes a moment (Varnish compiles its VCL).
//! let (nginx, varnish) = tokio::try_join!(
//!     Nginx::start(&origin, NginxConfig::default()),
//!     Varnish::start(&origin),
//! )?;
//!
//! assert!(!nginx.get("/a").await?.is_hit()); // MISS: fetched from the origin
//! assert!(nginx.get("/a").await?.is_hit()); // HIT
//! // ... let the backend under test purge http://{nginx.addr()}/purge/a ...
//! # nginx.request("PURGE", "/purge/a", &[]).await?;
//! let page = nginx.get("/a").await?;
//! assert!(!page.is_hit());
//! assert_eq!(page.body, "/a #2"); // fetched again
//!
//! // ... let the backend under test send a ban to varnish.admin_addr() ...
//! # varnish.varnishadm(&["ban", "obj.http.x-url", "~", "^/b$"])?;
//! assert_eq!(varnish.ban_list()?, ["obj.http.x-url ~ ^/b$"]);
//!
//! nginx.stop()?; // or just drop them
//! varnish.stop()?;
//! assert_eq!(origin.fetches("/a"), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Things to know
//!
//! - Servers are started on a separate thread, so `start` works on any Tokio runtime flavour
//!   (and `start_blocking` in synchronous tests). `get`/`request` use reqwest and need a Tokio
//!   runtime with I/O and time enabled, as `#[tokio::test]` provides. `stop()` and `Drop`
//!   block for as long as the server takes to exit (milliseconds; at most 5 s before SIGKILL).
//! - Each server runs in its own process group, so a Ctrl-C in a terminal does not reach it:
//!   a test process killed before its servers are stopped or dropped leaves them running.
//!   Keep servers in the test (not in a `static`, which is never dropped).
//! - Run as root (as on the CI machine), nginx runs its workers as `nobody` and varnishd
//!   switches to `varnish`/`vcache`; the temp dirs are mode 0755 so they can reach their
//!   files.

#![warn(missing_docs)]

mod akamai;
mod assertions;
mod background;
mod cdn;
mod cloudflare;
mod cloudfront;
#[cfg(feature = "sea-orm")]
pub mod db;
mod error;
mod fastly;
mod faults;
pub mod logs;
mod nats;
mod nginx;
mod origin;
mod page;
mod ports;
mod process;
mod redis;
mod varnish;

pub use akamai::{
    AKAMAI_MAX_BODY_BYTES, AkamaiFake, AkamaiFakeConfig, AkamaiObjectType, AkamaiPurge,
};
pub use assertions::{CacheServer, assert_cached, assert_purged, warm};
pub use cloudflare::{CloudflareFake, CloudflareFakeConfig, CloudflarePlanLimits, CloudflarePurge};
pub use cloudfront::{
    CLOUDFRONT_MAX_PATHS_IN_PROGRESS, CLOUDFRONT_MAX_WILDCARDS_IN_PROGRESS, CloudFrontFake,
    CloudFrontFakeConfig, CloudFrontInvalidation,
};
pub use error::{HarnessError, INSTALL_COMMAND, Result};
pub use fastly::{FASTLY_MAX_KEYS_PER_REQUEST, FastlyFake, FastlyFakeConfig, FastlyPurge};
pub use faults::{SilentServer, StatusServer};
pub use nats::{Nats, NatsConfig, NatsTlsFiles, nats_answers};
pub use nginx::{
    CACHE_PURGE_MODULE, CACHE_ZONE, NGINX_CONF, NGINX_SITE_CONF, Nginx, NginxConfig, PurgeLocation,
};
pub use origin::Origin;
pub use page::Page;
pub use ports::refused_addr;
pub use redis::{Redis, redis_answers};
pub use varnish::{Ban, HARNESS_VCL, HARNESS_XKEY_VCL, Varnish};
