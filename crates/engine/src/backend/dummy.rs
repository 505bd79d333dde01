//! The `dummy` backend, which purges nothing, and its settings ([`DummySettings`], always
//! compiled: settings name every kind, whatever the features).

use serde::{Deserialize, Serialize};

/// `kind = "dummy"` has no options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DummySettings {}

#[cfg(feature = "dummy")]
use super::{Backend, Capabilities, PurgeError};
#[cfg(feature = "dummy")]
use crate::target::Target;

#[cfg(feature = "dummy")]
/// Accepts every purge and does nothing (the seed's dummy backend): for environments without
/// a cache where even logging is unwanted.
#[derive(Clone, Debug, Default)]
pub struct DummyBackend {
    _private: (),
}

#[cfg(feature = "dummy")]
impl DummyBackend {
    /// A dummy backend.
    pub fn new() -> Self {
        Self::default()
    }
}

#[cfg(feature = "dummy")]
#[async_trait::async_trait]
impl Backend for DummyBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }
    fn max_batch(&self) -> usize {
        usize::MAX
    }
    async fn purge(&self, _batch: &[Target]) -> Result<(), PurgeError> {
        Ok(())
    }
}
