use super::{Backend, Capabilities, PurgeError};
use crate::target::Target;

/// Accepts every purge and does nothing (the seed's dummy backend): for environments without
/// a cache where even logging is unwanted.
#[derive(Clone, Debug)]
pub struct DummyBackend {
    name: String,
}

impl DummyBackend {
    /// A dummy backend with this name.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

impl Default for DummyBackend {
    fn default() -> Self {
        Self::new("dummy")
    }
}

#[async_trait::async_trait]
impl Backend for DummyBackend {
    fn name(&self) -> &str {
        &self.name
    }
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
