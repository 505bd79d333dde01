//! cache-purge-hooks facade.
#![warn(missing_docs)]

pub use cache_purge_hooks_core::*;
pub use cache_purge_hooks_macros::CachePurge;

#[doc(hidden)]
pub mod __private {
    pub use cache_purge_hooks_core::registry;
    pub use cache_purge_hooks_core::template::{push_path_segment, push_query_value};
    pub use cache_purge_hooks_core::{PurgeTargets, Targets};
}
