//! [`RedisTagIndex`]: the tag index in Redis, shared by every process and server.

use std::collections::HashSet;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script};
use tokio::sync::OnceCell;

use super::settings::{KeyPrefix, TagIndexSettings, redact};
use super::{
    DEFAULT_MAX_URLS_PER_TAG, TagIndex, TagIndexError, TagIndexErrorKind, expiry_ms, now_ms,
    warn_full,
};
use crate::target::{PurgeUrl, Tag};

/// Records one URL for several tags atomically: for each tag key, prunes the expired
/// members, keeps the later expiry of a known member, refuses a new member when the tag is
/// at its cap, and moves the key's own expiry to the latest member's. Returns the (1-based)
/// positions of the refused keys.
///
/// KEYS: the tag keys. ARGV: now (ms), expiry (ms), url, cap.
const RECORD: &str = r"
local now = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2])
local cap = tonumber(ARGV[4])
local refused = {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local old = redis.call('ZSCORE', key, ARGV[3])
  if old then
    if tonumber(old) < expiry then redis.call('ZADD', key, expiry, ARGV[3]) end
  elseif redis.call('ZCARD', key) >= cap then
    refused[#refused + 1] = i
  else
    redis.call('ZADD', key, expiry, ARGV[3])
  end
  local ttl = redis.call('PTTL', key)
  if ttl == -1 or (ttl >= 0 and now + ttl < expiry) then
    redis.call('PEXPIREAT', key, expiry)
  end
end
return refused
";

/// URLs per `ZREM` of [`TagIndex::forget`].
const FORGET_CHUNK: usize = 1000;

/// A [`TagIndex`] in Redis (cargo feature `redis`), for applications with several processes
/// or servers: one sorted set per tag, `{prefix}tag:{tag}`, whose members are the URLs and
/// whose scores are their expiries (Unix milliseconds).
///
/// - [`record`](TagIndex::record) runs one Lua script (atomic, one round trip) over the
///   tags' keys: prune the expired members (`ZREMRANGEBYSCORE -inf now`), add the URL (or
///   keep the later expiry of a known one), refuse a new URL when the tag holds
///   `max_urls_per_tag` live ones ([`TagIndexErrorKind::Full`], see
///   [`crate::tag_index`]), and set the key's expiry to its latest member's, so a tag nobody
///   serves any more disappears by itself.
/// - [`urls`](TagIndex::urls) is one pipeline: per tag, `ZREMRANGEBYSCORE -inf now` and
///   `ZRANGEBYSCORE (now +inf`.
/// - [`forget`](TagIndex::forget) is `ZREM`.
///
/// The connection (`redis::aio::ConnectionManager`, reconnecting by itself) is opened on
/// first use, so building a purger does not need Redis up; an operation that cannot reach
/// Redis within `timeout` fails with [`TagIndexErrorKind::Unreachable`] or
/// [`Timeout`](TagIndexErrorKind::Timeout), which makes the tag purge fail and be retried.
/// Plain Redis (any version since 2.6) or a compatible server; not Redis Cluster (a record
/// touches the keys of several tags).
///
/// ```
/// use std::time::Duration;
/// use cache_purge_hooks_engine::tag_index::RedisTagIndex;
/// use cache_purge_hooks_engine::Tag;
///
/// let index = RedisTagIndex::new("redis://127.0.0.1:6379/0")
///     .unwrap()
///     .with_prefix("blog:".parse().unwrap())
///     .with_max_urls_per_tag(5000)
///     .with_timeout(Duration::from_secs(1));
/// assert_eq!(index.tag_key(&Tag::parse("post:1").unwrap()), "blog:tag:post:1");
/// ```
pub struct RedisTagIndex {
    client: Client,
    label: String,
    connection: OnceCell<ConnectionManager>,
    prefix: KeyPrefix,
    max_urls_per_tag: usize,
    timeout: Duration,
    record: Script,
}

impl std::fmt::Debug for RedisTagIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTagIndex")
            .field("url", &self.label)
            .field("prefix", &self.prefix)
            .field("max_urls_per_tag", &self.max_urls_per_tag)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RedisTagIndex {
    /// An index on the Redis at `url` (`redis://host:port/db`, `rediss://` for TLS if the
    /// `redis` crate was built with it), with the default prefix `cache-purge:`, cap
    /// ([`DEFAULT_MAX_URLS_PER_TAG`]) and a 2 s timeout. Connects on first use; fails only
    /// for a URL the `redis` crate cannot read ([`TagIndexErrorKind::Misconfigured`]).
    pub fn new(url: &str) -> Result<Self, TagIndexError> {
        let label = redact(url);
        let client = Client::open(url).map_err(|e| {
            TagIndexError::new(
                TagIndexErrorKind::Misconfigured,
                format!("{label} is not a usable Redis URL: {e}"),
            )
            .with_source(e)
        })?;
        Ok(Self {
            client,
            label,
            connection: OnceCell::new(),
            prefix: KeyPrefix::default(),
            max_urls_per_tag: DEFAULT_MAX_URLS_PER_TAG,
            timeout: Duration::from_secs(2),
            record: Script::new(RECORD),
        })
    }

    /// The index the `[tag_index]` settings describe (`url`, `prefix`, `max_urls_per_tag`,
    /// `timeout`); `url` is required (the loader checked it for settings from a file).
    pub fn from_settings(settings: &TagIndexSettings) -> Result<Self, TagIndexError> {
        let url = settings.url.as_ref().ok_or_else(|| {
            TagIndexError::new(
                TagIndexErrorKind::Misconfigured,
                "tag_index.url is required with kind = \"redis\"",
            )
        })?;
        Ok(Self::new(url.as_str())?
            .with_prefix(settings.prefix.clone())
            .with_max_urls_per_tag(settings.max_urls_per_tag.get())
            .with_timeout(settings.timeout))
    }

    /// Sets the prefix of every key (default `cache-purge:`).
    pub fn with_prefix(mut self, prefix: KeyPrefix) -> Self {
        self.prefix = prefix;
        self
    }

    /// Sets the cap on the live URLs of one tag (at least 1).
    pub fn with_max_urls_per_tag(mut self, max: usize) -> Self {
        self.max_urls_per_tag = max.max(1);
        self
    }

    /// Sets the timeout of a connection attempt and of a command (default 2 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The key of a tag's sorted set: `{prefix}tag:{tag}`.
    pub fn tag_key(&self, tag: &Tag) -> String {
        format!("{}tag:{}", self.prefix.as_str(), tag.as_str())
    }

    async fn connection(&self) -> Result<ConnectionManager, TagIndexError> {
        self.connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1);
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                    .map_err(|e| self.error(e))
            })
            .await
            .cloned()
    }

    /// Runs one operation within the timeout (twice it: a connection attempt, then the
    /// command).
    async fn within<T>(
        &self,
        what: &str,
        op: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, TagIndexError> {
        match tokio::time::timeout(self.timeout * 2, op).await {
            Ok(result) => result.map_err(|e| self.error(e)),
            Err(_) => Err(TagIndexError::new(
                TagIndexErrorKind::Timeout,
                format!(
                    "{}: {what}: no answer within {:?}",
                    self.label,
                    self.timeout * 2
                ),
            )),
        }
    }

    fn error(&self, e: RedisError) -> TagIndexError {
        let kind = if e.is_connection_refusal() {
            TagIndexErrorKind::Unreachable
        } else if e.is_timeout() {
            TagIndexErrorKind::Timeout
        } else if e.is_connection_dropped() {
            TagIndexErrorKind::ConnectionLost
        } else {
            match e.kind() {
                redis::ErrorKind::AuthenticationFailed => TagIndexErrorKind::Authentication,
                redis::ErrorKind::Io => TagIndexErrorKind::Unreachable,
                redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType => {
                    TagIndexErrorKind::Protocol
                }
                redis::ErrorKind::InvalidClientConfig => TagIndexErrorKind::Misconfigured,
                _ => TagIndexErrorKind::Storage,
            }
        };
        TagIndexError::new(kind, format!("{}: {e}", self.label)).with_source(e)
    }
}

#[async_trait::async_trait]
impl TagIndex for RedisTagIndex {
    async fn record(
        &self,
        url: &PurgeUrl,
        tags: &[Tag],
        expires_in: Duration,
    ) -> Result<(), TagIndexError> {
        if expires_in.is_zero() || tags.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let expiry = expiry_ms(now, expires_in);
        let mut invocation = self.record.prepare_invoke();
        for tag in tags {
            invocation.key(self.tag_key(tag));
        }
        invocation
            .arg(now)
            .arg(expiry)
            .arg(url.as_str())
            .arg(self.max_urls_per_tag);
        let mut conn = self.connection().await?;
        let refused: Vec<usize> = self
            .within("recording", invocation.invoke_async(&mut conn))
            .await?;
        let Some(first) = refused.first().and_then(|i| tags.get(i.wrapping_sub(1))) else {
            return Ok(());
        };
        for tag in refused.iter().filter_map(|i| tags.get(i.wrapping_sub(1))) {
            warn_full(tag, url, self.max_urls_per_tag);
        }
        Err(TagIndexError::full(first, self.max_urls_per_tag, url))
    }

    async fn urls(&self, tags: &[Tag]) -> Result<Vec<PurgeUrl>, TagIndexError> {
        let mut seen = HashSet::new();
        Ok(self
            .urls_of_each(tags)
            .await?
            .into_iter()
            .flatten()
            .filter(|url| seen.insert(url.clone()))
            .collect())
    }

    /// One pipeline for every tag: `ZREMRANGEBYSCORE -inf now` and `ZRANGEBYSCORE (now +inf`
    /// per tag.
    async fn urls_of_each(&self, tags: &[Tag]) -> Result<Vec<Vec<PurgeUrl>>, TagIndexError> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut pipe = redis::pipe();
        for tag in tags {
            let key = self.tag_key(tag);
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&key)
                .arg("-inf")
                .arg(now)
                .ignore()
                .cmd("ZRANGEBYSCORE")
                .arg(&key)
                .arg(format!("({now}"))
                .arg("+inf");
        }
        let mut conn = self.connection().await?;
        let lists: Vec<Vec<String>> = self
            .within("looking up tags", pipe.query_async(&mut conn))
            .await?;
        Ok(lists
            .into_iter()
            .map(|members| {
                members
                    .into_iter()
                    .filter_map(|member| match PurgeUrl::parse(&member) {
                        Ok(url) => Some(url),
                        Err(e) => {
                            tracing::warn!(
                                target: "cache_purge_hooks",
                                index = %self.label,
                                %e,
                                "tag index: a member is not a URL (written by something else?); skipped"
                            );
                            None
                        }
                    })
                    .collect()
            })
            .collect())
    }

    async fn forget(&self, tag: &Tag, urls: &[PurgeUrl]) -> Result<(), TagIndexError> {
        self.forget_each(&[(tag.clone(), urls.to_vec())]).await
    }

    /// One pipeline: `ZREM` per tag, 1,000 URLs per command.
    async fn forget_each(&self, purged: &[(Tag, Vec<PurgeUrl>)]) -> Result<(), TagIndexError> {
        let mut pipe = redis::pipe();
        let mut commands = 0;
        for (tag, urls) in purged {
            let key = self.tag_key(tag);
            for chunk in urls.chunks(FORGET_CHUNK) {
                pipe.cmd("ZREM")
                    .arg(&key)
                    .arg(chunk.iter().map(PurgeUrl::as_str).collect::<Vec<_>>())
                    .ignore();
                commands += 1;
            }
        }
        if commands == 0 {
            return Ok(());
        }
        let mut conn = self.connection().await?;
        self.within("forgetting URLs", pipe.query_async::<()>(&mut conn))
            .await
    }
}
