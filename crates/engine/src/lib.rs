//! The engine of [cache-purge-hooks](https://docs.rs/cache-purge-hooks): the [`Purger`], its
//! delivery modes, the per-backend workers, retries, the settings file and the built-in
//! backends. It builds on [`cache_purge_hooks_core`] (targets, resolvers, the `Backend`
//! contract), whose items it re-exports under the same paths.
//!
//! The pipeline, one direction only:
//!
//! ```text
//! entity change ─► resolve (PurgeTargets) ─► deliver (Purger, AfterCommit) ─► dispatch (one
//! worker per backend: dedupe, batch, concurrency) ─► Backend ─► cache
//! ```
//!
//! - [`target`]: what is purged ([`Target`], [`PurgeUrl`]) and how URLs are normalised.
//! - [`resolve`]: [`PurgeTargets`], implemented by `#[derive(CachePurge)]`, and the runtime
//!   [`registry`] of resolver functions.
//! - [`purger`]: the non-blocking [`Purger`], its global installation and stats.
//! - [`after_commit`]: holding purges back until a transaction commits.
//! - [`retry`]: backoff, giving up ([`RetryPolicy::decide`]), the dead-letter list.
//! - [`watch`]: read-your-writes, waiting until the purges of one request were attempted.
//! - [`attempt`]: one attempt of a purge for agents with a durable schedule of their own (the
//!   outbox worker), with the engine's verdict per target.
//! - [`backend`]: the [`Backend`](backend::Backend) trait and the built-in backends.
//! - [`settings`]: the settings file and its validation.
//! - [`fleet`]: the agent of a cache node, consuming the `nats` backend's stream, and the
//!   nodes' reported state (`[agent]` settings; the agent needs the `nats` feature).
//! - [`outbox`]: the stored format of the outbox table, shared by the ORM integrations.
//! - [`tag_index`]: the tag→URL index through which caches without tags (nginx) purge by
//!   tag ([`TagIndex`], [`tag_index::MemoryTagIndex`], `RedisTagIndex` with the `redis`
//!   feature, [`tag_index::lifetime_of`] for the response side).
//!
//! # Cargo features
#![doc = document_features::document_features!()]
#![warn(missing_docs)]
// On docs.rs (nightly), items behind a cargo feature say which one.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod after_commit;
pub mod attempt;
pub mod backend;
mod dispatch;
pub mod fleet;
pub mod outbox;
pub mod purger;
mod queue;
pub mod retry;
pub mod routing;
pub mod settings;
pub(crate) mod spill;
pub mod tag_index;
pub mod verify;
pub mod watch;

pub use cache_purge_hooks_core::{resolve, target, template};

pub use after_commit::AfterCommit;
pub use cache_purge_hooks_core::async_trait;
pub use cache_purge_hooks_core::{PurgeTargets, registry};
pub use purger::{
    BackendStats, BuildError, OutboxRounds, Purger, PurgerBuilder, Route, ShutdownTimeout,
};
pub use retry::{DeadLetter, RetryPolicy};
pub use routing::{BackendRoute, HostPattern};
pub use settings::{Delivery, QueueFull, Settings, SettingsError};
pub use tag_index::{TagIndex, TagIndexError};
pub use target::{IntoTarget, InvalidTarget, PurgeUrl, Tag, Target, TargetKind, Targets};

/// What `#[derive(CachePurge)]` expands to refers to (as `<crate>::__private`, the facade's
/// glob re-export of this crate): not a public API.
#[doc(hidden)]
pub mod __private {
    pub use cache_purge_hooks_core::registry;
    pub use cache_purge_hooks_core::template::{
        push_path_segment, push_query_value, push_tag_value,
    };
    pub use cache_purge_hooks_core::{PurgeTargets, Tag, Targets};
}
