//! The nginx backend: purges nginx's proxy cache in one of three ways (`mode`).
//!
//! # `mode = "http"` (default): ngx_cache_purge
//!
//! One request per URL to every configured nginx (`servers`, default `localhost:80`), at most
//! `concurrency` in flight per server, over one keep-alive connection pool. `200` means
//! purged; `404` (ngx_cache_purge 2.3, Debian's `libnginx-mod-http-cache-purge`) and `412`
//! (the 2.5 fork) mean the URL was not cached, which counts as success. Other statuses fail:
//! `429` as rate limited (honouring `Retry-After`), `5xx` and `408` as transient, the rest
//! (`403` from an `allow`/`deny` list, `405` when the purge location does not exist...) as
//! permanent. ngx_cache_purge 2.3 has no wildcard, so this mode purges exact URLs only.
//!
//! The separate-location style, the one that works with Debian's module (its same-location
//! style crashes the worker): set `purge_prefix = "/purge"`, and `/posts/a?p=2` is purged with
//! `PURGE /purge/posts/a?p=2` (the location accepts any method; `method = "GET"` works too).
//!
//! ```nginx
//! proxy_cache_path /var/cache/nginx levels=1:2 keys_zone=site:64m;
//! server {
//!     location / {
//!         proxy_pass http://origin;
//!         proxy_cache site;
//!         proxy_cache_key "$uri$is_args$args";
//!     }
//!     location ~ ^/purge(/.*)$ {
//!         allow 127.0.0.1;
//!         deny all;
//!         proxy_cache_purge site "$1$is_args$args";
//!     }
//! }
//! ```
//!
//! ```toml
//! [backends.origin-cache]
//! kind = "nginx"
//! servers = ["127.0.0.1:80", "10.0.0.2:80"]
//! purge_prefix = "/purge"
//! host_header = "www.example.com"   # optional
//! concurrency = 8                    # requests in flight per server
//! timeout = "5s"
//! ```
//!
//! The same-location style (ngx_cache_purge 2.5, or a build where it does not crash): leave
//! `purge_prefix` out, and `/posts/a` is purged with `PURGE /posts/a`.
//!
//! ```nginx
//! location / {
//!     proxy_pass http://origin;
//!     proxy_cache site;
//!     proxy_cache_purge PURGE from 127.0.0.1;
//! }
//! ```
//!
//! The `Host` header: an absolute URL (`https://example.com/a`) is sent to the configured
//! servers with its own host; a path gets `host_header` if set, else the server's address.
//! The request target is what a browser would send for the URL (dot segments resolved by the
//! `url` crate, the rest as [`PurgeUrl`] normalised it).
//!
//! When some URLs fail on some server, the batch's [`PurgeError`] lists exactly those URLs
//! ([`PurgeError::failed`]) and names the first failing server (in the order of `servers`);
//! it is permanent only when every failure was (see [`Failures`]). A server that cannot be reached (connection
//! refused or timed out) fails the rest of the batch at once instead of one timeout per URL.
//!
//! # `mode = "files"`: unlink the cache files (no module needed)
//!
//! For each URL, the backend computes the key nginx gives it (`key_template`, the same text
//! as `proxy_cache_key`), then the file `cache_dir/<levels>/<md5(key)>`, and deletes it if,
//! and only if, the `KEY:` line near the start of the file holds exactly that key: a file
//! holding another key is kept and logged at `warn` (the key template probably differs from
//! nginx's). A missing file means "not cached", which is success. Unlike WordPress
//! nginx-helper, the query string is part of the key and the levels are configurable.
//!
//! ```nginx
//! proxy_cache_path /var/cache/nginx levels=1:2 keys_zone=site:64m;
//! location / {
//!     proxy_pass http://origin;
//!     proxy_cache site;
//!     proxy_cache_key "$uri$is_args$args";
//! }
//! ```
//!
//! ```toml
//! [backends.origin-cache]
//! kind = "nginx"
//! mode = "files"
//! cache_dir = "/var/cache/nginx"       # proxy_cache_path
//! levels = "1:2"                       # its levels=
//! key_template = "$uri$is_args$args"   # proxy_cache_key, verbatim
//! # proxy_host = "origin"              # needed if the key uses $proxy_host
//! # host_header = "www.example.com"    # needed if the key uses $host or $http_host
//! # scheme = "https"                   # $scheme for URLs given as paths (default http)
//! ```
//!
//! Set `key_template` (required in this mode) to the exact text of `proxy_cache_key`.
//! Without a `proxy_cache_key`,
//! nginx's documentation says the key is `$scheme$proxy_host$request_uri`, but nginx 1.22
//! actually writes `<proxy_pass scheme>://<proxy_pass host><request uri>` (for
//! `proxy_pass http://origin;` and `/a?x=1`: `http://origin/a?x=1`): the matching template is
//! `key_template = "http://$proxy_host$request_uri"` with `proxy_host = "origin"`. A key
//! template that does not match nginx's finds no file and so purges nothing (debug logs say
//! "not cached" for every URL).
//!
//! The variables, for a URL given as a path or an absolute URL:
//! - `$scheme`: the URL's scheme, or `scheme`; `$proxy_host`: `proxy_host`;
//! - `$http_host`: the URL's host (with port) or `host_header`; `$host`: the same lowercased,
//!   without port or trailing dot, as nginx does;
//! - `$request_uri`: the path and query as sent, still percent-encoded;
//! - `$uri`: the path as nginx normalises it with `merge_slashes on` (the default): `%XX`
//!   decoded, runs of `/` merged, `.` and `..` segments resolved (a URL with a `..` above
//!   the root is refused by nginx with 400 and so never cached: it is skipped). The key is
//!   the one of the request as received, before any `rewrite`;
//! - `$is_args`: `?` when the query is not empty; `$args`, `$query_string`: the raw query.
//!
//! The files are mode 0600 in 0700 directories owned by nginx's worker user: this process
//! must run as that user (or root); a permission error is permanent and says so. File I/O runs
//! on tokio's blocking pool, one task per batch. Responses stored under a `Vary` variant are
//! in other files (named after the variant) that this mode cannot find; ngx_cache_purge does
//! not remove them either. A [`Target::Everything`] wipes `cache_dir` as `wipe` mode does.
//!
//! # `mode = "wipe"`: delete the whole cache (the seed's "dumb" backend)
//!
//! Deletes everything inside `cache_dir` (not the directory itself), once per batch whatever
//! its size. Every URL, prefix or everything target is accepted and purges the whole cache:
//! far more than asked, which is what this mode is for (a small site, no module, no key to
//! compute). Symbolic links inside are removed, never followed; if `cache_dir` itself is a
//! link, the directory it points to is emptied. Entries nginx deletes meanwhile are skipped.
//!
//! ```toml
//! [backends.origin-cache]
//! kind = "nginx"
//! mode = "wipe"
//! cache_dir = "/var/cache/nginx"
//! ```
//!
//! `cache_dir` must be an absolute path with no `..`, and not `/`, in both `files` and
//! `wipe` modes; a `cache_dir` that does not exist when purging is a permanent error.

#[cfg(feature = "nginx")]
mod files;
#[cfg(feature = "nginx")]
mod http;
pub mod settings;
#[cfg(feature = "nginx")]
mod wipe;

#[cfg(feature = "nginx")]
use std::path::{Path, PathBuf};
#[cfg(feature = "nginx")]
use std::sync::Arc;

#[cfg(feature = "nginx")]
use self::settings::{NginxMode, NginxSettings};
#[cfg(feature = "nginx")]
use crate::backend::{Backend, Capabilities, Cause, Failures, PurgeError, SetupError};
#[cfg(feature = "nginx")]
use crate::target::{PurgeUrl, Target};

#[cfg(feature = "nginx")]
use files::{KeyRenderer, NoKey, Unlinked};
#[cfg(feature = "nginx")]
use http::HttpPurger;

#[cfg(feature = "nginx")]
/// Targets per batch in `http` mode.
const HTTP_MAX_BATCH: usize = 256;
#[cfg(feature = "nginx")]
/// Targets per batch in `files` mode.
const FILES_MAX_BATCH: usize = 1000;
#[cfg(feature = "nginx")]
/// Targets per batch in `wipe` mode: one wipe covers any number of them.
const WIPE_MAX_BATCH: usize = 100_000;

#[cfg(feature = "nginx")]
/// Purges nginx's proxy cache: over HTTP with ngx_cache_purge, by unlinking each URL's cache
/// file, or by wiping the cache directory (see the [module documentation](self)).
///
/// ```
/// use cache_purge_hooks_engine::backend::{Backend, Capabilities, NginxBackend};
/// use cache_purge_hooks_engine::settings::{BackendSettings, Settings};
///
/// let settings = Settings::from_toml_str(
///     "[backends.ngx]\nkind = \"nginx\"\nservers = [\"127.0.0.1:8080\"]\npurge_prefix = \"/purge\"\n",
/// )
/// .unwrap();
/// let BackendSettings::Nginx(nginx) = &settings.backends["ngx"] else { unreachable!() };
/// let backend = NginxBackend::new(nginx).unwrap();
/// assert_eq!(backend.capabilities(), Capabilities::URL); // ngx_cache_purge 2.3: exact URLs
/// ```
#[derive(Debug)]
pub struct NginxBackend {
    mode: Mode,
}

#[cfg(feature = "nginx")]
#[derive(Debug)]
enum Mode {
    Http(HttpPurger),
    Files(Arc<FilesMode>),
    Wipe(PathBuf),
}

#[cfg(feature = "nginx")]
#[derive(Debug)]
struct FilesMode {
    dir: PathBuf,
    levels: Vec<usize>,
    keys: KeyRenderer,
}

#[cfg(feature = "nginx")]
impl NginxBackend {
    /// A backend from its settings, which are valid by their types.
    ///
    /// Fails with [`SetupError::Invalid`] when settings built in code break a rule across keys
    /// (`files` and `wipe` without `cache_dir`, `files` without `key_template`, a template
    /// using `$proxy_host` or `$host` without `proxy_host` or `host_header`): the error of
    /// [`NginxSettings::check`], which the loader already ran on settings from a file. Fails
    /// with [`SetupError::HttpClient`] when the HTTP client cannot be built.
    pub fn new(settings: &NginxSettings) -> Result<Self, SetupError> {
        let mode = match settings.mode {
            NginxMode::Files => {
                let (dir, _) = settings.files_options()?;
                let keys = KeyRenderer::new(settings)?;
                Mode::Files(Arc::new(FilesMode {
                    dir: dir.as_path().to_path_buf(),
                    levels: settings.levels.as_slice().to_vec(),
                    keys,
                }))
            }
            NginxMode::Wipe => Mode::Wipe(settings.required_cache_dir()?.as_path().to_path_buf()),
            _ => Mode::Http(HttpPurger::new(settings)?),
        };
        Ok(Self { mode })
    }

    /// In `files` mode, the cache key nginx gives this URL (bytes: `$uri` is decoded and need
    /// not be UTF-8); `None` in the other modes, or for a URL nginx would refuse (and so never
    /// cache).
    pub fn cache_key(&self, url: &PurgeUrl) -> Option<Vec<u8>> {
        match &self.mode {
            Mode::Files(files) => files.keys.render(url).ok(),
            _ => None,
        }
    }

    /// In `files` mode, the cache file where nginx would store this URL's response; `None`
    /// as for [`cache_key`](Self::cache_key).
    pub fn cache_file(&self, url: &PurgeUrl) -> Option<PathBuf> {
        match &self.mode {
            Mode::Files(files) => {
                let key = files.keys.render(url).ok()?;
                Some(files::cache_path(&files.dir, &files.levels, &key))
            }
            _ => None,
        }
    }
}

#[cfg(feature = "nginx")]
#[async_trait::async_trait]
impl Backend for NginxBackend {
    fn capabilities(&self) -> Capabilities {
        match self.mode {
            Mode::Http(_) => Capabilities::URL,
            Mode::Files(_) => Capabilities::URL | Capabilities::EVERYTHING,
            Mode::Wipe(_) => Capabilities::URL | Capabilities::PREFIX | Capabilities::EVERYTHING,
        }
    }

    fn max_batch(&self) -> usize {
        match self.mode {
            Mode::Http(_) => HTTP_MAX_BATCH,
            Mode::Files(_) => FILES_MAX_BATCH,
            Mode::Wipe(_) => WIPE_MAX_BATCH,
        }
    }

    /// One batch at a time: the backend parallelises inside a batch (`http` mode) or is
    /// bound by the disk (`files`, `wipe`).
    fn max_concurrency(&self) -> usize {
        1
    }

    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
        if batch.is_empty() {
            return Ok(());
        }
        match &self.mode {
            Mode::Http(http) => {
                let mut failures =
                    Failures::new(batch).with_servers(http.servers.iter().map(|s| s.label.clone()));
                for e in http.purge(batch).await {
                    failures.push(e);
                }
                failures.into_result()
            }
            Mode::Files(files) => {
                if batch.iter().any(|t| matches!(t, Target::Everything)) {
                    return wipe_blocking(&files.dir, batch.len()).await;
                }
                let mut failures = Failures::new(batch);
                for e in purge_files(files, batch).await? {
                    failures.push(e);
                }
                failures.into_result()
            }
            Mode::Wipe(dir) => wipe_blocking(dir, batch.len()).await,
        }
    }
}

#[cfg(feature = "nginx")]
/// `files` mode: unlinks each URL's cache file in one blocking task.
async fn purge_files(
    files: &Arc<FilesMode>,
    batch: &[Target],
) -> Result<Vec<PurgeError>, PurgeError> {
    let mut failures = Vec::new();
    let mut jobs = Vec::with_capacity(batch.len());
    for target in batch {
        let Target::Url(url) = target else {
            failures.push(
                PurgeError::new(
                    Cause::Misconfigured,
                    format!("mode = \"files\" cannot purge {target}: only URLs and everything"),
                )
                .only(vec![target.clone()]),
            );
            continue;
        };
        match files.keys.render(url) {
            Ok(key) => {
                let path = files::cache_path(&files.dir, &files.levels, &key);
                jobs.push((target.clone(), url.clone(), key, path));
            }
            Err(NoKey::Rejected(why)) => tracing::debug!(
                target: "cache_purge_hooks",
                %url,
                why,
                "nginx refuses this URL (400), so it is never cached; nothing to purge"
            ),
            Err(NoKey::Missing(what)) => failures.push(
                PurgeError::new(
                    Cause::Misconfigured,
                    format!("cannot compute the cache key of {url}: {what} is not set"),
                )
                .only(vec![target.clone()]),
            ),
        }
    }
    if jobs.is_empty() {
        return Ok(failures);
    }
    let files = Arc::clone(files);
    // The blocking pool's thread does not inherit the engine's span (which names the backend).
    let span = tracing::Span::current();
    let done = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        // Tell a missing or unusable cache_dir from a URL that is not cached.
        match std::fs::metadata(&files.dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(wipe::dir_error(
                    &files.dir,
                    std::io::Error::from(std::io::ErrorKind::NotADirectory),
                ));
            }
            Err(e) => return Err(wipe::dir_error(&files.dir, e)),
        }
        let mut failed = Vec::new();
        for (target, url, key, path) in jobs {
            match files::unlink_if_key(&path, &key) {
                Ok(Unlinked::Removed) => tracing::debug!(
                    target: "cache_purge_hooks",
                    %url,
                    path = %path.display(),
                    "cache file removed"
                ),
                Ok(Unlinked::NotCached) => tracing::debug!(
                    target: "cache_purge_hooks",
                    %url,
                    path = %path.display(),
                    "not cached"
                ),
                Ok(Unlinked::OtherKey(found)) => tracing::warn!(
                    target: "cache_purge_hooks",
                    %url,
                    path = %path.display(),
                    expected = %files::show_key(&key),
                    found = %files::show_key(&found),
                    "cache file holds another key; kept (does key_template match proxy_cache_key?)"
                ),
                Ok(Unlinked::NoKeyLine) => tracing::warn!(
                    target: "cache_purge_hooks",
                    %url,
                    path = %path.display(),
                    expected = %files::show_key(&key),
                    "no KEY line found at the start of the cache file; kept"
                ),
                Err(e) => failed.push(files::io_error(&path, e).only(vec![target])),
            }
        }
        Ok(failed)
    })
    .await
    .map_err(|e| {
        PurgeError::new(
            Cause::Internal,
            format!("the cache file task did not finish: {e}"),
        )
    })??;
    failures.extend(done);
    Ok(failures)
}

#[cfg(feature = "nginx")]
/// Wipes a cache directory in a blocking task.
async fn wipe_blocking(dir: &Path, targets: usize) -> Result<(), PurgeError> {
    let owned = dir.to_path_buf();
    let report = tokio::task::spawn_blocking(move || wipe::wipe(&owned))
        .await
        .map_err(|e| {
            PurgeError::new(
                Cause::Internal,
                format!("the wipe task did not finish: {e}"),
            )
        })??;
    let removed = report.into_result(dir)?;
    tracing::info!(
        target: "cache_purge_hooks",
        dir = %dir.display(),
        removed,
        targets,
        "nginx cache wiped"
    );
    Ok(())
}

#[cfg(all(test, feature = "nginx"))]
mod tests;
