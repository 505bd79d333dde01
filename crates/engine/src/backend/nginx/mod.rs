//! The nginx backend: purges nginx's proxy cache in one of three ways (`mode`).
//!
//! # `mode = "http"` (default): ngx_cache_purge
//!
//! One request per URL to every configured nginx (`servers`, default `localhost:80`), over
//! `concurrency` keep-alive connections per server, each written up to `pipeline` requests at
//! once (HTTP/1.1 pipelining). `200` means
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
//! concurrency = 8                    # keep-alive connections per server
//! pipeline = 8                       # requests written at once on each
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
use std::collections::HashSet;
#[cfg(feature = "nginx")]
use std::path::{Path, PathBuf};
#[cfg(feature = "nginx")]
use std::sync::{Arc, OnceLock};

#[cfg(feature = "nginx")]
use self::settings::{NginxMode, NginxSettings, NginxTags};
#[cfg(feature = "nginx")]
use crate::backend::{Backend, Capabilities, Cause, Failures, PurgeError, SetupError};
#[cfg(feature = "nginx")]
use crate::tag_index::TagIndex;
#[cfg(feature = "nginx")]
use crate::target::{PurgeUrl, Tag, Target};

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
/// let BackendSettings::Nginx(nginx) = &settings.backends["ngx"].settings else { unreachable!() };
/// let backend = NginxBackend::new(nginx).unwrap();
/// assert_eq!(backend.capabilities(), Capabilities::URL); // ngx_cache_purge 2.3: exact URLs
/// ```
#[derive(Debug)]
pub struct NginxBackend {
    mode: Mode,
    /// With `tags = "index"`: where the index goes (set by
    /// [`with_tag_index`](Self::with_tag_index), or by the purger builder).
    tag_index: Option<Arc<TagIndexSlot>>,
}

#[cfg(feature = "nginx")]
/// The tag index of a `tags = "index"` backend, filled once, by the backend's owner or by
/// [`PurgerBuilder::build`](crate::PurgerBuilder::build).
#[derive(Default)]
pub(crate) struct TagIndexSlot(pub(crate) OnceLock<Arc<dyn TagIndex>>);

#[cfg(feature = "nginx")]
impl std::fmt::Debug for TagIndexSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "TagIndexSlot(set)"
        } else {
            "TagIndexSlot(empty)"
        })
    }
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
        settings.check()?;
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
        let tag_index = (settings.tags == NginxTags::Index).then(Arc::default);
        Ok(Self { mode, tag_index })
    }

    /// With `tags = "index"`: purges tags through this index (the one the response side
    /// records into). Without it, the [`PurgerBuilder`](crate::PurgerBuilder) this backend is
    /// added to gives it its own
    /// ([`PurgerBuilder::tag_index`](crate::PurgerBuilder::tag_index) or `[tag_index]`), and
    /// refuses to build when it has none. Ignored with `tags = "none"`; the first index set
    /// stays.
    pub fn with_tag_index(self, index: Arc<dyn TagIndex>) -> Self {
        if let Some(slot) = &self.tag_index {
            let _ = slot.0.set(index);
        }
        self
    }

    /// Whether this backend has `tags = "index"` but no index yet.
    pub fn needs_tag_index(&self) -> bool {
        self.tag_index.as_ref().is_some_and(|s| s.0.get().is_none())
    }

    /// The index slot of a `tags = "index"` backend, for the purger builder.
    pub(crate) fn tag_index_slot(&self) -> Option<Arc<TagIndexSlot>> {
        self.tag_index.clone()
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
        let tags = if self.tag_index.is_some() {
            Capabilities::TAG
        } else {
            Capabilities::NONE
        };
        tags | match self.mode {
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
        if batch.iter().any(|t| matches!(t, Target::Tag(_))) {
            return self.purge_with_tags(batch).await;
        }
        self.purge_urls(batch).await
    }
}

#[cfg(feature = "nginx")]
impl NginxBackend {
    /// The failures of a batch, ordered by server in `http` mode.
    fn failures<'a>(&self, batch: &'a [Target]) -> Failures<'a> {
        match &self.mode {
            Mode::Http(http) => {
                Failures::new(batch).with_servers(http.servers.iter().map(|s| s.label.clone()))
            }
            _ => Failures::new(batch),
        }
    }

    /// A batch with tags (`tags = "index"`): each tag is looked up in the index, its URLs are
    /// purged with the batch's other targets (each URL once), and forgotten from the tag
    /// once they all were. A tag whose lookup failed, or one of whose URLs failed, fails (as
    /// its cause says, so a connection failure is retried), and nothing of it is forgotten.
    async fn purge_with_tags(&self, batch: &[Target]) -> Result<(), PurgeError> {
        let mut failures = self.failures(batch);
        let (tags, mut expanded): (Vec<&Target>, Vec<Target>) = {
            let (tags, rest): (Vec<&Target>, Vec<&Target>) =
                batch.iter().partition(|t| matches!(t, Target::Tag(_)));
            (tags, rest.into_iter().cloned().collect())
        };
        let index = self.tag_index.as_ref().and_then(|slot| slot.0.get());
        let mut looked_up: Vec<(&Target, &Tag, Vec<PurgeUrl>)> = Vec::new();
        match index {
            None => failures.push(
                PurgeError::new(
                    Cause::Misconfigured,
                    "tags = \"index\" but this nginx backend has no tag index: set \
                     [tag_index] in the settings, or pass one with PurgerBuilder::tag_index \
                     or NginxBackend::with_tag_index",
                )
                .only(tags.iter().map(|t| (*t).clone()).collect()),
            ),
            Some(index) => {
                // One lookup for the batch's tags (one round trip for the indexes that can).
                let tag_list: Vec<Tag> = tags
                    .iter()
                    .filter_map(|t| match t {
                        Target::Tag(tag) => Some(tag.clone()),
                        _ => None,
                    })
                    .collect();
                match index.urls_of_each(&tag_list).await {
                    Ok(lists) => {
                        let mut seen: HashSet<Target> = expanded.iter().cloned().collect();
                        for (&target, urls) in tags.iter().zip(lists) {
                            let Target::Tag(tag) = target else { continue };
                            for url in &urls {
                                let t = Target::Url(url.clone());
                                if seen.insert(t.clone()) {
                                    expanded.push(t);
                                }
                            }
                            looked_up.push((target, tag, urls));
                        }
                    }
                    Err(e) => {
                        tracing::debug!(
                            target: "cache_purge_hooks",
                            tags = tag_list.len(),
                            error = %e,
                            "tag index lookup failed"
                        );
                        for &target in &tags {
                            failures.push(e.to_purge_error(target));
                        }
                    }
                }
            }
        }
        let failed = if expanded.is_empty() {
            None
        } else {
            self.purge_urls(&expanded).await.err()
        };
        let url_failed = |url: &PurgeUrl| {
            failed
                .as_ref()
                .is_some_and(|e| e.failed().contains(&Target::Url(url.clone())))
        };
        if let Some(e) = &failed {
            let mut not_purged: Vec<Target> = batch
                .iter()
                .filter(|t| !matches!(t, Target::Tag(_)) && e.failed().contains(t))
                .cloned()
                .collect();
            for (target, _, urls) in &looked_up {
                if urls.iter().any(url_failed) {
                    not_purged.push((*target).clone());
                }
            }
            if !not_purged.is_empty() {
                failures.push(e.clone().only(not_purged));
            }
        }
        if let Some(index) = index {
            let mut purged: Vec<(Tag, Vec<PurgeUrl>)> = Vec::new();
            for (_, tag, urls) in looked_up {
                if urls.is_empty() {
                    tracing::debug!(
                        target: "cache_purge_hooks",
                        %tag,
                        "no URL indexed for the tag (nothing cached carries it, or it expired)"
                    );
                    continue;
                }
                if urls.iter().any(url_failed) {
                    continue;
                }
                tracing::debug!(
                    target: "cache_purge_hooks",
                    %tag,
                    urls = urls.len(),
                    "tag purged through the index"
                );
                purged.push((tag.clone(), urls));
            }
            // The purge is done; an entry left behind only costs a needless purge later.
            if let Err(e) = index.forget_each(&purged).await {
                tracing::warn!(
                    target: "cache_purge_hooks",
                    tags = purged.len(),
                    error = %e,
                    "tags purged, but their URLs could not be removed from the tag index"
                );
            }
        }
        failures.into_result()
    }

    /// A batch without tags.
    async fn purge_urls(&self, batch: &[Target]) -> Result<(), PurgeError> {
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
