//! Fleets of cache nodes: the agent's side of the `nats` backend.
//!
//! The application publishes purges to a JetStream stream (`kind = "nats"`,
//! [`crate::backend::nats`]); beside each cache node, `cache-purge agent` runs an [`Agent`]
//! that consumes them with the node's own durable consumer and purges them with the node's
//! local backends, through the engine. Each agent writes its [`NodeState`] in a KV bucket,
//! which `cache-purge fleet status` lists. docs/fleet.md has the picture and the guarantees.
//!
//! The settings ([`settings::AgentSettings`], the `[agent]` table) are always compiled; the
//! agent needs the `nats` feature.

pub mod settings;
#[cfg(feature = "nats")]
pub mod state;

#[cfg(feature = "nats")]
mod agent;

#[cfg(feature = "nats")]
pub use agent::{Agent, AgentError, AgentSummary, consumer_name};
#[cfg(feature = "nats")]
pub use state::{Health, NodeState};
