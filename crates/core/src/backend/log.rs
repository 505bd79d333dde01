use super::{Backend, Capabilities, PurgeError};
use crate::target::Target;

/// Logs every target it is given as one `tracing` event (target `cache_purge_hooks`, level
/// INFO) and purges nothing. The default backend when no settings file exists, so a new app
/// shows what it would purge before a cache is set up.
#[derive(Clone, Debug)]
pub struct LogBackend {
    name: String,
}

impl LogBackend {
    /// A log backend with this name.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

impl Default for LogBackend {
    fn default() -> Self {
        Self::new("log")
    }
}

#[async_trait::async_trait]
impl Backend for LogBackend {
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }
    fn max_batch(&self) -> usize {
        1024
    }
    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
        for target in batch {
            tracing::info!(target: "cache_purge_hooks", backend = %self.name, %target, "purge");
        }
        Ok(())
    }
}
