//! The `[tag_index]` table of the settings file: [`TagIndexSettings`], its [`TagIndexKind`],
//! and the values only it has: [`RedisUrl`] and [`KeyPrefix`].
//!
//! Always compiled, whatever the cargo features: a settings file may name `kind = "redis"` in
//! a build without the `redis` feature, which is refused when the purger is built.
//!
//! ```toml
//! [tag_index]
//! kind = "redis"
//! url = "redis://127.0.0.1:6379/0"
//! prefix = "cache-purge:"          # default
//! max_urls_per_tag = 10000         # default
//! timeout = "2s"                   # default
//! ```
//!
//! ```
//! use cache_purge_hooks_engine::settings::Settings;
//!
//! let err = Settings::from_toml_str("[tag_index]\nkind = \"redis\"\n").unwrap_err();
//! assert_eq!(err.key.as_deref(), Some("tag_index.url"));
//! let s = Settings::from_toml_str(
//!     "[tag_index]\nkind = \"redis\"\nurl = \"redis://:secret@127.0.0.1:6379/0\"\n",
//! )
//! .unwrap();
//! let index = s.tag_index.unwrap();
//! assert_eq!(index.url.unwrap().to_string(), "redis://:***@127.0.0.1:6379/0"); // never shown
//! ```

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::types::{self, FieldError, InvalidValue, named_enum, string_serde};

/// Where the tag index is kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TagIndexKind {
    /// In this process ([`MemoryTagIndex`](super::MemoryTagIndex)): only for an application
    /// that serves and purges in one process.
    #[default]
    Memory,
    /// In Redis (`RedisTagIndex`, cargo feature `redis`), shared by
    /// every process: needs `url`.
    Redis,
}

named_enum!(TagIndexKind, "tag index kind", { Memory = "memory", Redis = "redis" });

/// A Redis URL: `redis://[user][:password@]host[:port][/db]` or `rediss://` (TLS). Shown
/// (and serialized) with the password as `***`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL as given, password included: what to connect with.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RedisUrl {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            InvalidValue::new(format!(
                "`{}` is not a Redis URL like redis://127.0.0.1:6379/0 (or rediss:// for TLS)",
                redact(s)
            ))
        };
        let url = url::Url::parse(s).map_err(|_| bad())?;
        if !matches!(url.scheme(), "redis" | "rediss") || url.host_str().is_none_or(str::is_empty) {
            return Err(bad());
        }
        let db = url.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u32>().is_err() {
            return Err(InvalidValue::new(format!(
                "`{}`: the path of a Redis URL is a database number, like /0",
                redact(s)
            )));
        }
        Ok(Self(s.to_owned()))
    }
}

/// `s` with the password of its userinfo replaced by `***`.
pub(crate) fn redact(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(_) => s.to_owned(),
        // Not a URL: it may still hold a password; show only the scheme.
        Err(_) => match s.split_once("://") {
            Some((scheme, rest)) if rest.contains('@') => format!("{scheme}://***"),
            _ => s.to_owned(),
        },
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

string_serde!(RedisUrl);

/// The prefix of every Redis key of the index (default `cache-purge:`): 1 to 100 visible
/// ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// The prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for KeyPrefix {
    /// `cache-purge:`.
    fn default() -> Self {
        Self("cache-purge:".to_owned())
    }
}

impl FromStr for KeyPrefix {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 100 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidValue::new(format!(
                "`{s}` must be 1 to 100 visible ASCII characters, like `cache-purge:`"
            )));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(KeyPrefix);

/// The `[tag_index]` table: where the tag→URL index of `tags = "index"` backends (nginx) is
/// kept. Each value is valid by its type; the rule across keys (Redis needs `url`) is
/// [`check`](Self::check)ed by the loader.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TagIndexSettings {
    /// `memory` (default) or `redis`.
    pub kind: TagIndexKind,
    /// For `kind = "redis"` (required): the server, like `redis://127.0.0.1:6379/0`.
    pub url: Option<RedisUrl>,
    /// For `kind = "redis"`: the prefix of every key, default `cache-purge:` (the URLs of tag
    /// `T` are the sorted set `{prefix}tag:T`).
    pub prefix: KeyPrefix,
    /// The most live URLs one tag holds, default 10000; past it new URLs are refused (see
    /// [`crate::tag_index`]).
    #[serde(deserialize_with = "types::at_least_one")]
    pub max_urls_per_tag: NonZeroUsize,
    /// For `kind = "redis"`: timeout of one connection attempt or command, default `2s`.
    #[serde(with = "types::timeout")]
    pub timeout: Duration,
}

/// 10,000 (checked at compile time).
const DEFAULT_MAX: NonZeroUsize = NonZeroUsize::new(super::DEFAULT_MAX_URLS_PER_TAG).unwrap();

impl Default for TagIndexSettings {
    /// The settings of an empty `[tag_index]` table.
    fn default() -> Self {
        Self {
            kind: TagIndexKind::default(),
            url: None,
            prefix: KeyPrefix::default(),
            max_urls_per_tag: DEFAULT_MAX,
            timeout: Duration::from_secs(2),
        }
    }
}

impl TagIndexSettings {
    /// The rules across keys: `kind = "redis"` needs `url`; `url` is only for Redis.
    pub fn check(&self) -> Result<(), FieldError> {
        match (self.kind, &self.url) {
            (TagIndexKind::Redis, None) => Err(FieldError::new(
                "url",
                "required with kind = \"redis\": the server, like redis://127.0.0.1:6379/0",
            )),
            (TagIndexKind::Memory, Some(_)) => Err(FieldError::new(
                "url",
                "only used with kind = \"redis\" (kind = \"memory\" keeps the index in this \
                 process)",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_and_hide_passwords() {
        for good in [
            "redis://127.0.0.1:6379/0",
            "redis://localhost",
            "rediss://user:pw@cache.example:6380/2",
        ] {
            assert_eq!(good.parse::<RedisUrl>().unwrap().as_str(), good);
        }
        for bad in [
            "127.0.0.1:6379",
            "http://127.0.0.1:6379",
            "redis://",
            "redis://h/x",
        ] {
            assert!(bad.parse::<RedisUrl>().is_err(), "{bad}");
        }
        let e = "redis://:hunter2@h/db".parse::<RedisUrl>().unwrap_err();
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        let url: RedisUrl = "redis://u:hunter2@h:1/0".parse().unwrap();
        assert_eq!(url.to_string(), "redis://u:***@h:1/0");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!("".parse::<KeyPrefix>().is_err());
        assert!("a b".parse::<KeyPrefix>().is_err());
        assert_eq!("app:".parse::<KeyPrefix>().unwrap().as_str(), "app:");
    }

    #[test]
    fn redis_needs_a_url_and_memory_none() {
        let mut s = TagIndexSettings {
            kind: TagIndexKind::Redis,
            ..TagIndexSettings::default()
        };
        assert_eq!(s.check().unwrap_err().key, "url");
        s.url = Some("redis://127.0.0.1".parse().unwrap());
        assert!(s.check().is_ok());
        s.kind = TagIndexKind::Memory;
        assert_eq!(s.check().unwrap_err().key, "url");
    }
}
