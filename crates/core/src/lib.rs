//! The contract of [cache-purge-hooks](https://docs.rs/cache-purge-hooks) for backend
//! authors, and what every other crate of the family builds on (as `axum-core` is to axum):
//!
//! - [`target`]: what is purged ([`Target`], [`PurgeUrl`], [`Tag`]) and how URLs are
//!   normalised, so that no backend ever sees a character that could inject or widen a purge.
//! - [`resolve`]: [`PurgeTargets`], implemented by `#[derive(CachePurge)]`, and the runtime
//!   [`registry`] of resolver functions.
//! - [`backend`]: the [`Backend`](backend::Backend) trait, its
//!   [`Capabilities`](backend::Capabilities) and typed failures
//!   ([`PurgeError`](backend::PurgeError), [`Cause`](backend::Cause)).
//! - [`template`]: the encoders the derive's URL templates use.
//!
//! No HTTP client, no settings, no digests: the engine (batching, retries, delivery modes),
//! the settings file and the built-in Varnish and nginx backends are in
//! `cache-purge-hooks-engine`, above this crate.
#![warn(missing_docs)]

pub mod backend;
pub mod resolve;
pub mod target;
pub mod template;

pub use async_trait::async_trait;
pub use resolve::{PurgeTargets, registry};
pub use target::{IntoTarget, InvalidTarget, PurgeUrl, Tag, Target, TargetKind, Targets};
