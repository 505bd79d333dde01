//! The `memory` backend, which records every purge for tests, and its settings
//! ([`MemorySettings`], always compiled: settings name every kind, whatever the features).

use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};

/// Options of `kind = "memory"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MemorySettings {
    /// Targets per batch (`max_batch`, default 1000, at least 1).
    #[serde(deserialize_with = "crate::settings::types::at_least_one")]
    pub max_batch: NonZeroUsize,
}

impl Default for MemorySettings {
    /// The settings of an empty `[backends.NAME]` table with `kind = "memory"`.
    fn default() -> Self {
        const DEFAULT: NonZeroUsize = NonZeroUsize::new(1000).unwrap();
        Self { max_batch: DEFAULT }
    }
}

#[cfg(feature = "memory")]
use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(feature = "memory")]
use super::{Backend, Capabilities, PurgeError};
#[cfg(feature = "memory")]
use crate::target::{PurgeUrl, Target};

#[cfg(feature = "memory")]
/// One purge call as the [`MemoryBackend`] received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeRecord {
    /// The batch's targets, in the order given.
    pub targets: Vec<Target>,
    /// Whether the call was made to fail by [`MemoryBackend::fail_with`].
    pub failed: bool,
}

#[cfg(feature = "memory")]
#[derive(Debug, Default)]
struct State {
    records: Vec<PurgeRecord>,
    failure: Option<PurgeError>,
}

#[cfg(feature = "memory")]
/// Records every purge in memory, for assertions in your own tests.
///
/// Cloning gives another handle on the same record, so keep one clone and give the other to
/// the [`Purger`](crate::Purger):
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use cache_purge_hooks_engine::{backend::MemoryBackend, Purger, Target};
///
/// let memory = MemoryBackend::new();
/// let purger = Purger::builder().backend("memory", memory.clone()).build().unwrap();
/// purger.purge([Target::url("/posts/a").unwrap()]).await;
/// purger.flush().await;
/// assert_eq!(memory.urls(), ["/posts/a"]);
/// assert!(memory.was_purged("/posts/a"));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MemoryBackend {
    max_batch: usize,
    state: Arc<Mutex<State>>,
}

#[cfg(feature = "memory")]
impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "memory")]
impl MemoryBackend {
    /// An empty memory backend.
    pub fn new() -> Self {
        Self {
            max_batch: 1000,
            state: Arc::default(),
        }
    }

    /// Sets how many targets one batch may carry (default 1000).
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the record half-written; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every purge call received so far.
    pub fn records(&self) -> Vec<PurgeRecord> {
        self.state().records.clone()
    }

    /// Every target successfully purged so far, in order (a target purged twice appears twice).
    pub fn purged(&self) -> Vec<Target> {
        self.state()
            .records
            .iter()
            .filter(|r| !r.failed)
            .flat_map(|r| r.targets.iter().cloned())
            .collect()
    }

    /// The URLs successfully purged so far, in order.
    pub fn urls(&self) -> Vec<String> {
        self.purged()
            .iter()
            .filter_map(|t| t.as_url().map(PurgeUrl::to_string))
            .collect()
    }

    /// The URLs purged so far, sorted and without duplicates: convenient to compare.
    pub fn url_set(&self) -> Vec<String> {
        let mut urls = self.urls();
        urls.sort();
        urls.dedup();
        urls
    }

    /// Returns the URLs purged so far and forgets every record.
    pub fn take_urls(&self) -> Vec<String> {
        let urls = self.urls();
        self.clear();
        urls
    }

    /// Whether this URL (as normalised by [`PurgeUrl::parse`]) was purged.
    pub fn was_purged(&self, url: &str) -> bool {
        let Ok(url) = PurgeUrl::parse(url) else {
            return false;
        };
        self.purged().iter().any(|t| t.as_url() == Some(&url))
    }

    /// Forgets every record.
    pub fn clear(&self) {
        self.state().records.clear();
    }

    /// Makes every following purge call fail with this error (recorded with `failed: true`),
    /// or succeed again with `None`. For testing how an application copes with a failing cache.
    pub fn fail_with(&self, error: Option<PurgeError>) {
        self.state().failure = error;
    }
}

#[cfg(feature = "memory")]
#[async_trait::async_trait]
impl Backend for MemoryBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }
    fn max_batch(&self) -> usize {
        self.max_batch
    }
    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
        let mut state = self.state();
        let failure = state.failure.clone();
        state.records.push(PurgeRecord {
            targets: batch.to_vec(),
            failed: failure.is_some(),
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
