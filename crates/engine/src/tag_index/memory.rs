//! [`MemoryTagIndex`]: the tag index of one process.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::{DEFAULT_MAX_URLS_PER_TAG, TagIndex, TagIndexError, expiry_ms, now_ms, warn_full};
use crate::target::{PurgeUrl, Tag};

type Entries = HashMap<Tag, HashMap<PurgeUrl, u64>>;

/// A [`TagIndex`] in this process's memory: for tests, and for an application that runs as
/// one process (the responses and the purges it serves are its own). Clones share the
/// entries.
///
/// Bounded like every index: entries expire with their responses (pruned on each write and
/// lookup of their tag), and a tag takes at most `max_urls_per_tag` live URLs (default
/// [`DEFAULT_MAX_URLS_PER_TAG`]); past that, [`record`](TagIndex::record) refuses new URLs
/// with [`TagIndexErrorKind::Full`](super::TagIndexErrorKind::Full) (see the [module documentation](super)).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use cache_purge_hooks_engine::tag_index::{MemoryTagIndex, TagIndex, TagIndexErrorKind};
/// use cache_purge_hooks_engine::{PurgeUrl, Tag};
///
/// let index = MemoryTagIndex::new().with_max_urls_per_tag(1);
/// let posts = [Tag::parse("posts").unwrap()];
/// let hour = Duration::from_secs(3600);
/// index.record(&PurgeUrl::parse("/").unwrap(), &posts, hour).await.unwrap();
/// let err = index.record(&PurgeUrl::parse("/?page=2").unwrap(), &posts, hour).await.unwrap_err();
/// assert!(matches!(err.kind(), TagIndexErrorKind::Full { max: 1, .. }));
/// assert_eq!(index.urls(&posts).await.unwrap().len(), 1); // nothing dropped
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MemoryTagIndex {
    entries: Arc<Mutex<Entries>>,
    max_urls_per_tag: usize,
}

impl Default for MemoryTagIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryTagIndex {
    /// An empty index with the default cap.
    pub fn new() -> Self {
        Self {
            entries: Arc::new(Mutex::new(HashMap::new())),
            max_urls_per_tag: DEFAULT_MAX_URLS_PER_TAG,
        }
    }

    /// Sets the cap on the live URLs of one tag (at least 1).
    pub fn with_max_urls_per_tag(mut self, max: usize) -> Self {
        self.max_urls_per_tag = max.max(1);
        self
    }

    /// The number of live entries, all tags together.
    pub fn len(&self) -> usize {
        let now = now_ms();
        self.lock()
            .values()
            .map(|urls| urls.values().filter(|e| **e > now).count())
            .sum()
    }

    /// Whether no entry is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl TagIndex for MemoryTagIndex {
    async fn record(
        &self,
        url: &PurgeUrl,
        tags: &[Tag],
        expires_in: Duration,
    ) -> Result<(), TagIndexError> {
        if expires_in.is_zero() {
            return Ok(());
        }
        let now = now_ms();
        let expiry = expiry_ms(now, expires_in);
        let mut full = None;
        let mut entries = self.lock();
        for tag in tags {
            let urls = entries.entry(tag.clone()).or_default();
            urls.retain(|_, e| *e > now);
            let held = urls.len();
            match urls.get_mut(url) {
                Some(e) => *e = (*e).max(expiry),
                None if held >= self.max_urls_per_tag => {
                    warn_full(tag, url, self.max_urls_per_tag);
                    full.get_or_insert_with(|| tag.clone());
                }
                None => {
                    urls.insert(url.clone(), expiry);
                }
            }
        }
        match full {
            None => Ok(()),
            Some(tag) => Err(TagIndexError::full(&tag, self.max_urls_per_tag, url)),
        }
    }

    async fn urls(&self, tags: &[Tag]) -> Result<Vec<PurgeUrl>, TagIndexError> {
        let now = now_ms();
        let mut entries = self.lock();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for tag in tags {
            let Some(urls) = entries.get_mut(tag) else {
                continue;
            };
            urls.retain(|_, e| *e > now);
            for url in urls.keys() {
                if seen.insert(url.clone()) {
                    out.push(url.clone());
                }
            }
            if urls.is_empty() {
                entries.remove(tag);
            }
        }
        Ok(out)
    }

    async fn forget(&self, tag: &Tag, urls: &[PurgeUrl]) -> Result<(), TagIndexError> {
        let mut entries = self.lock();
        if let Some(held) = entries.get_mut(tag) {
            for url in urls {
                held.remove(url);
            }
            if held.is_empty() {
                entries.remove(tag);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag_index::TagIndexErrorKind;

    fn u(s: &str) -> PurgeUrl {
        PurgeUrl::parse(s).unwrap()
    }
    fn t(s: &str) -> Tag {
        Tag::parse(s).unwrap()
    }

    #[tokio::test]
    async fn lookups_deduplicate_across_tags_and_forget_is_per_tag() {
        let index = MemoryTagIndex::new();
        let hour = Duration::from_secs(3600);
        index
            .record(&u("/posts/1"), &[t("post:1"), t("posts")], hour)
            .await
            .unwrap();
        index
            .record(&u("/?page=7"), &[t("post:1"), t("posts")], hour)
            .await
            .unwrap();
        index
            .record(&u("/posts/10"), &[t("post:10")], hour)
            .await
            .unwrap();
        let mut both = index.urls(&[t("post:1"), t("posts")]).await.unwrap();
        both.sort();
        assert_eq!(both, [u("/?page=7"), u("/posts/1")]);
        index
            .forget(&t("post:1"), &[u("/posts/1"), u("/never")])
            .await
            .unwrap();
        assert_eq!(index.urls(&[t("post:1")]).await.unwrap(), [u("/?page=7")]);
        // Still listed for the other tag.
        assert_eq!(index.urls(&[t("posts")]).await.unwrap().len(), 2);
        assert_eq!(index.urls(&[t("post:10")]).await.unwrap(), [u("/posts/10")]);
        assert!(index.urls(&[t("nothing")]).await.unwrap().is_empty());
        // Zero lifetime: not recorded.
        index
            .record(&u("/z"), &[t("z")], Duration::ZERO)
            .await
            .unwrap();
        assert!(index.urls(&[t("z")]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_entry_is_not_returned_after_it_expired() {
        let index = MemoryTagIndex::new();
        index
            .record(&u("/short"), &[t("x")], Duration::from_millis(300))
            .await
            .unwrap();
        index
            .record(&u("/long"), &[t("x")], Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(index.urls(&[t("x")]).await.unwrap().len(), 2);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(index.urls(&[t("x")]).await.unwrap(), [u("/long")]);
        assert_eq!(index.len(), 1);
    }

    #[tokio::test]
    async fn a_full_tag_refuses_new_urls_but_refreshes_known_ones_and_frees_expired_room() {
        let index = MemoryTagIndex::new().with_max_urls_per_tag(2);
        let short = Duration::from_millis(300);
        let hour = Duration::from_secs(3600);
        index.record(&u("/a"), &[t("x")], short).await.unwrap();
        index.record(&u("/b"), &[t("x")], hour).await.unwrap();
        let err = index
            .record(&u("/c"), &[t("x"), t("y")], hour)
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            &TagIndexErrorKind::Full {
                tag: t("x"),
                max: 2
            }
        );
        // The other tag was recorded; nothing of `x` was dropped.
        assert_eq!(index.urls(&[t("y")]).await.unwrap(), [u("/c")]);
        let mut x = index.urls(&[t("x")]).await.unwrap();
        x.sort();
        assert_eq!(x, [u("/a"), u("/b")]);
        // A URL the tag holds is refreshed (later expiry kept), not refused.
        index.record(&u("/b"), &[t("x")], hour).await.unwrap();
        // Once `/a` expired there is room again.
        tokio::time::sleep(Duration::from_millis(400)).await;
        index.record(&u("/c"), &[t("x")], hour).await.unwrap();
        let mut x = index.urls(&[t("x")]).await.unwrap();
        x.sort();
        assert_eq!(x, [u("/b"), u("/c")]);
    }
}
