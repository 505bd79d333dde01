use super::{Backend, Capabilities, PurgeError};
use crate::target::Target;

/// Accepts every purge and does nothing (the seed's dummy backend): for environments without
/// a cache where even logging is unwanted.
#[derive(Clone, Debug, Default)]
pub struct DummyBackend {
    _private: (),
}

impl DummyBackend {
    /// A dummy backend.
    pub fn new() -> Self {
        Self::default()
    }
}

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
