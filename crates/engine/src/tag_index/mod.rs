//! Purging by tag where the cache has no tags (nginx): an index from each tag to the URLs
//! whose cached responses carried it.
//!
//! The response side writes the index: when a response tagged `post:1 posts` is served for
//! `/?page=7`, [`TagIndex::record`] notes that `/?page=7` carries both tags, for as long as
//! the cache may keep the response ([`lifetime_of`] reads that from `Cache-Control`). The
//! purge side reads it: the nginx backend with `tags = "index"` expands a tag target into
//! the URLs [`TagIndex::urls`] lists, purges them like any URL, then
//! [`forget`](TagIndex::forget)s them for that tag (the next response that carries the tag
//! records them again).
//!
//! Three implementations: [`MemoryTagIndex`] (one process: tests, single-process apps),
//! `RedisTagIndex` (cargo feature `redis`; several processes and servers share one Redis),
//! and `SqlTagIndex` of `cache-purge-hooks-sea-orm` (a table in the application's database).
//!
//! # Bounded and expiring
//!
//! - **Expiry.** Each `(tag, url)` entry expires when the response it was recorded for does
//!   (`expires_in`); an expired entry is never returned, and is pruned on the next write or
//!   lookup of its tag. Recording the same URL again keeps the later of the two expiries, so
//!   an entry never expires before a response it describes.
//! - **A cap per tag** (`max_urls_per_tag`, default [`DEFAULT_MAX_URLS_PER_TAG`]): a tag
//!   holding that many live URLs takes no new one. [`record`](TagIndex::record) then fails
//!   with [`TagIndexErrorKind::Full`] (and the index logs a WARN naming the tag and the URL);
//!   URLs already indexed are still refreshed. The index never drops an entry that may still
//!   be cached, so a tag purge never misses a URL it recorded; the URL that was refused is
//!   the one that can go stale, and the caller knows which: **whenever `record` fails (full,
//!   or the index is unreachable), the tagging layer should make that response uncacheable**
//!   (`X-Accel-Expires: 0` for nginx), so that what the index does not know is never cached.
//!
//! # Failures
//!
//! [`TagIndexError`] has a [`kind`](TagIndexError::kind) a program can match and a
//! [`Cause`] ([`TagIndexError::cause`]) for the engine: a failed lookup fails the tag target
//! with a transient [`PurgeError`] ([`TagIndexError::to_purge_error`]), which the engine
//! retries like any purge: a lookup that failed never counts as a purge.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use cache_purge_hooks_engine::tag_index::{MemoryTagIndex, TagIndex};
//! use cache_purge_hooks_engine::{PurgeUrl, Tag};
//!
//! let index = MemoryTagIndex::new();
//! let tags = [Tag::parse("post:1").unwrap(), Tag::parse("posts").unwrap()];
//! let page = PurgeUrl::parse("/?page=7").unwrap();
//! index.record(&page, &tags, Duration::from_secs(600)).await.unwrap();
//! assert_eq!(index.urls(&tags[..1]).await.unwrap(), [page.clone()]);
//! index.forget(&tags[0], &[page]).await.unwrap();
//! assert!(index.urls(&tags[..1]).await.unwrap().is_empty());
//! # }
//! ```

mod memory;
#[cfg(feature = "redis")]
mod redis;
pub mod settings;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backend::{Cause, PurgeError};
use crate::target::{PurgeUrl, Tag, Target};

pub use self::memory::MemoryTagIndex;
#[cfg(feature = "redis")]
pub use self::redis::RedisTagIndex;
pub use self::settings::{TagIndexKind, TagIndexSettings};

/// The default cap on the live URLs of one tag: 10,000.
pub const DEFAULT_MAX_URLS_PER_TAG: usize = 10_000;

/// Where the URLs of each tag are kept (see the [module documentation](self)).
///
/// Implementations are shared by the response side (which records) and the purge side (which
/// looks up and forgets), possibly in several processes; every method may be called
/// concurrently.
#[async_trait::async_trait]
pub trait TagIndex: Send + Sync + 'static {
    /// The response for `url` carries these tags and stays cached at most `expires_in`.
    ///
    /// A zero `expires_in`, or no tag, records nothing. Fails with
    /// [`TagIndexErrorKind::Full`] when a tag holds its cap of live URLs and `url` is not one
    /// of them (the other tags are recorded): the caller should then keep the response out of
    /// the cache.
    async fn record(
        &self,
        url: &PurgeUrl,
        tags: &[Tag],
        expires_in: Duration,
    ) -> Result<(), TagIndexError>;

    /// The unexpired URLs of any of these tags, each once, in no particular order.
    async fn urls(&self, tags: &[Tag]) -> Result<Vec<PurgeUrl>, TagIndexError>;

    /// Removes these URLs from the tag (after they were purged). URLs the tag does not hold
    /// are ignored.
    async fn forget(&self, tag: &Tag, urls: &[PurgeUrl]) -> Result<(), TagIndexError>;

    /// The unexpired URLs of each tag, in the order of `tags` (a URL under two tags is in
    /// both lists): the purge side's lookup of a whole batch of tags.
    ///
    /// The default asks [`urls`](Self::urls) once per tag; an index that can answer every
    /// tag in one round trip (a Redis pipeline, one `SELECT`) overrides it, which is what
    /// makes purging thousands of tags as fast as purging their URLs.
    async fn urls_of_each(&self, tags: &[Tag]) -> Result<Vec<Vec<PurgeUrl>>, TagIndexError> {
        let mut out = Vec::with_capacity(tags.len());
        for tag in tags {
            out.push(self.urls(std::slice::from_ref(tag)).await?);
        }
        Ok(out)
    }

    /// [`forget`](Self::forget) for several tags at once (each with the URLs purged for it).
    ///
    /// The default calls `forget` once per tag; an index that can do it in one round trip
    /// overrides it.
    async fn forget_each(&self, purged: &[(Tag, Vec<PurgeUrl>)]) -> Result<(), TagIndexError> {
        for (tag, urls) in purged {
            self.forget(tag, urls).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl<I: TagIndex + ?Sized> TagIndex for Arc<I> {
    async fn record(
        &self,
        url: &PurgeUrl,
        tags: &[Tag],
        expires_in: Duration,
    ) -> Result<(), TagIndexError> {
        (**self).record(url, tags, expires_in).await
    }
    async fn urls(&self, tags: &[Tag]) -> Result<Vec<PurgeUrl>, TagIndexError> {
        (**self).urls(tags).await
    }
    async fn urls_of_each(&self, tags: &[Tag]) -> Result<Vec<Vec<PurgeUrl>>, TagIndexError> {
        (**self).urls_of_each(tags).await
    }
    async fn forget_each(&self, purged: &[(Tag, Vec<PurgeUrl>)]) -> Result<(), TagIndexError> {
        (**self).forget_each(purged).await
    }
    async fn forget(&self, tag: &Tag, urls: &[PurgeUrl]) -> Result<(), TagIndexError> {
        (**self).forget(tag, urls).await
    }
}

/// What made a tag index operation fail, for programs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TagIndexErrorKind {
    /// The index's server could not be reached (connection refused, no route, name not
    /// resolved).
    Unreachable,
    /// No answer in time.
    Timeout,
    /// The connection broke before an answer.
    ConnectionLost,
    /// The server refused the credentials.
    Authentication,
    /// The server answered something this client does not understand.
    Protocol,
    /// The store answered with an error (a Redis error reply, a database error).
    Storage,
    /// The index cannot work as configured (a bad URL, a missing table).
    Misconfigured,
    /// [`record`](TagIndex::record): the tag holds `max` live URLs already; this URL was not
    /// recorded for it.
    Full {
        /// The tag at its cap.
        tag: Tag,
        /// The cap (`max_urls_per_tag`).
        max: usize,
    },
}

type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A tag index operation failed: a [`kind`](Self::kind) to match, a message for people, and
/// the underlying error as [`source`](std::error::Error::source).
///
/// ```
/// use cache_purge_hooks_engine::backend::Cause;
/// use cache_purge_hooks_engine::tag_index::{TagIndexError, TagIndexErrorKind};
/// use cache_purge_hooks_engine::Target;
///
/// let e = TagIndexError::new(TagIndexErrorKind::Unreachable, "redis://127.0.0.1:6379: refused");
/// assert_eq!(e.cause(), Cause::Unreachable);
/// let tag = Target::tag("post:1").unwrap();
/// let purge = e.to_purge_error(&tag);
/// assert!(purge.is_transient()); // retried: a failed lookup is not a purge
/// assert!(purge.failed().contains(&tag));
/// ```
#[derive(Clone)]
pub struct TagIndexError {
    kind: TagIndexErrorKind,
    message: String,
    source: Option<Source>,
}

impl TagIndexError {
    /// An error of this kind; `message` says what failed, for people.
    pub fn new(kind: TagIndexErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// [`TagIndexErrorKind::Full`]: `tag` holds `max` live URLs, so `url` was not recorded
    /// for it. What every index answers when its cap refuses a URL.
    pub fn full(tag: &Tag, max: usize, url: &PurgeUrl) -> Self {
        Self::new(
            TagIndexErrorKind::Full {
                tag: tag.clone(),
                max,
            },
            format!(
                "tag {tag} holds max_urls_per_tag = {max} live URLs; {url} not recorded for it"
            ),
        )
    }

    /// Keeps the underlying error, returned by [`source`](std::error::Error::source).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// What made it fail.
    pub fn kind(&self) -> &TagIndexErrorKind {
        &self.kind
    }

    /// What failed, for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The purge failure this is for a target whose URLs could not be looked up: the
    /// connection failures as themselves, a store's error reply as
    /// [`Cause::Unavailable`], all transient; [`Cause::Authentication`] and
    /// [`Cause::Misconfigured`] are permanent.
    pub fn cause(&self) -> Cause {
        match self.kind {
            TagIndexErrorKind::Unreachable => Cause::Unreachable,
            TagIndexErrorKind::Timeout => Cause::Timeout,
            TagIndexErrorKind::ConnectionLost => Cause::ConnectionLost,
            TagIndexErrorKind::Authentication => Cause::Authentication,
            TagIndexErrorKind::Protocol => Cause::Protocol,
            TagIndexErrorKind::Storage => Cause::Unavailable,
            TagIndexErrorKind::Misconfigured => Cause::Misconfigured,
            TagIndexErrorKind::Full { .. } => Cause::Refused,
        }
    }

    /// The [`PurgeError`] of `target` (a tag whose URLs could not be looked up or
    /// forgotten): [`cause`](Self::cause), only that target, this error as its source.
    pub fn to_purge_error(&self, target: &Target) -> PurgeError {
        PurgeError::new(
            self.cause(),
            format!("the tag index failed for {target}: {}", self.message),
        )
        .only(vec![target.clone()])
        .with_source(self.clone())
    }
}

impl fmt::Debug for TagIndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TagIndexError");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", &format_args!("{source}"));
        }
        d.finish()
    }
}

impl fmt::Display for TagIndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tag index: ")?;
        f.write_str(&self.message)
    }
}

impl std::error::Error for TagIndexError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for TagIndexError {
    /// Equal kinds and messages (sources are not compared).
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

impl Eq for TagIndexError {}

/// How long a response may stay in a shared cache, from its `Cache-Control` header: what to
/// pass to [`TagIndex::record`].
///
/// `s-maxage` (for shared caches) wins over `max-age`; without either, `default` (what the
/// cache applies to responses that say nothing: nginx's `proxy_cache_valid`). `no-store`,
/// `private` and `no-cache` (which nginx does not cache) give `None`: do not record. Names
/// are case-insensitive; a value that is not a number of seconds is ignored, so the next
/// rule applies (a longer lifetime is always safe: it only keeps an entry longer).
///
/// ```
/// use std::time::Duration;
/// use cache_purge_hooks_engine::tag_index::lifetime_of;
///
/// let day = Duration::from_secs(86_400);
/// assert_eq!(lifetime_of(Some("public, max-age=60, s-maxage=600"), day), Some(Duration::from_secs(600)));
/// assert_eq!(lifetime_of(Some("max-age=60"), day), Some(Duration::from_secs(60)));
/// assert_eq!(lifetime_of(None, day), Some(day));
/// assert_eq!(lifetime_of(Some("private, max-age=60"), day), None);
/// assert_eq!(lifetime_of(Some("no-store"), day), None);
/// ```
pub fn lifetime_of(cache_control: Option<&str>, default: Duration) -> Option<Duration> {
    let Some(header) = cache_control else {
        return Some(default);
    };
    let mut max_age = None;
    let mut s_maxage = None;
    for directive in header.split(',') {
        let directive = directive.trim();
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (directive, None),
        };
        let seconds = value.and_then(|v| v.parse::<u64>().ok());
        if name.eq_ignore_ascii_case("no-store")
            || name.eq_ignore_ascii_case("private")
            || name.eq_ignore_ascii_case("no-cache")
        {
            return None;
        } else if name.eq_ignore_ascii_case("s-maxage") {
            s_maxage = s_maxage.or(seconds);
        } else if name.eq_ignore_ascii_case("max-age") {
            max_age = max_age.or(seconds);
        }
    }
    Some(
        s_maxage
            .or(max_age)
            .map(Duration::from_secs)
            .unwrap_or(default),
    )
}

/// Now, in milliseconds since the Unix epoch: the time every index stores (shared by
/// processes and machines).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `now + expires_in` in milliseconds, saturating.
pub(crate) fn expiry_ms(now: u64, expires_in: Duration) -> u64 {
    now.saturating_add(u64::try_from(expires_in.as_millis()).unwrap_or(u64::MAX))
}

/// Logs the WARN of [`TagIndexErrorKind::Full`]: naming the tag, the URL refused and the cap.
/// For [`TagIndex`] implementations, so that every index says it the same way.
pub fn warn_full(tag: &Tag, url: &PurgeUrl, max: usize) {
    tracing::warn!(
        target: "cache_purge_hooks",
        %tag,
        %url,
        max_urls_per_tag = max,
        "tag index: the tag holds max_urls_per_tag live URLs; this URL was not recorded for it, \
         so purging the tag would not purge it: keep this response out of the cache, or raise \
         max_urls_per_tag"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_follow_cache_control() {
        let d = Duration::from_secs(100);
        let s = Duration::from_secs;
        assert_eq!(lifetime_of(Some("S-MaxAge=5, max-age=1"), d), Some(s(5)));
        assert_eq!(lifetime_of(Some("max-age=\"7\""), d), Some(s(7)));
        assert_eq!(lifetime_of(Some("public"), d), Some(d));
        assert_eq!(lifetime_of(Some(""), d), Some(d));
        assert_eq!(lifetime_of(Some("max-age=0"), d), Some(s(0)));
        // Not a number: ignored, the next rule applies.
        assert_eq!(lifetime_of(Some("s-maxage=soon, max-age=9"), d), Some(s(9)));
        assert_eq!(lifetime_of(Some("max-age=-1"), d), Some(d));
        for none in ["no-store", "public, Private", "no-cache, max-age=9"] {
            assert_eq!(lifetime_of(Some(none), d), None, "{none}");
        }
    }

    #[test]
    fn errors_map_onto_causes() {
        let e = TagIndexError::new(TagIndexErrorKind::Timeout, "slow")
            .with_source(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(e.cause(), Cause::Timeout);
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(e.to_string(), "tag index: slow");
        let target = Target::tag("t").unwrap();
        let p = e.to_purge_error(&target);
        assert!(p.is_transient());
        assert!(std::error::Error::source(&p).is_some());
        assert!(
            !TagIndexError::new(TagIndexErrorKind::Misconfigured, "x")
                .to_purge_error(&target)
                .is_transient()
        );
        assert!(
            TagIndexError::new(TagIndexErrorKind::Storage, "x")
                .to_purge_error(&target)
                .is_transient()
        );
    }
}
