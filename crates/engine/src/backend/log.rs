//! The `log` backend, which logs every purge, and its settings ([`LogSettings`], always
//! compiled: settings name every kind, whatever the features).

use serde::{Deserialize, Serialize};

/// `kind = "log"` has no options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LogSettings {}

#[cfg(feature = "log")]
use super::{Backend, Capabilities, PurgeError};
#[cfg(feature = "log")]
use crate::target::Target;

#[cfg(feature = "log")]
/// Logs every target it is given as one `tracing` event (target `cache_purge_hooks`, level
/// INFO, inside the engine's span that names the backend) and purges nothing. The default
/// backend when no settings file exists, so a new app shows what it would purge before a
/// cache is set up.
#[derive(Clone, Debug, Default)]
pub struct LogBackend {
    _private: (),
}

#[cfg(feature = "log")]
impl LogBackend {
    /// A log backend.
    pub fn new() -> Self {
        Self::default()
    }
}

#[cfg(feature = "log")]
#[async_trait::async_trait]
impl Backend for LogBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }
    fn max_batch(&self) -> usize {
        1024
    }
    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
        for target in batch {
            tracing::info!(target: "cache_purge_hooks", %target, "purge");
        }
        Ok(())
    }
}
