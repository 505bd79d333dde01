use super::{Backend, Capabilities, PurgeError};
use crate::target::Target;

/// Logs every target it is given as one `tracing` event (target `cache_purge_hooks`, level
/// INFO, inside the engine's span that names the backend) and purges nothing. The default
/// backend when no settings file exists, so a new app shows what it would purge before a
/// cache is set up.
#[derive(Clone, Debug, Default)]
pub struct LogBackend {
    _private: (),
}

impl LogBackend {
    /// A log backend.
    pub fn new() -> Self {
        Self::default()
    }
}

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
