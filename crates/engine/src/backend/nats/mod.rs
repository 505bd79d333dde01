//! The `nats` backend: each batch becomes one message on a NATS JetStream stream, for the
//! `cache-purge agent`s beside the cache nodes to purge (docs/fleet.md).
//!
//! A publish succeeds when the stream has acked it, so that with `delivery = "outbox"` the row
//! stays until JetStream has the purge: commit → outbox → stream → agents is at-least-once
//! from end to end. A publish the stream did not ack in `timeout` (server down, no stream, a
//! lost connection) is a transient failure, retried by the engine (or the outbox) with
//! backoff.
//!
//! The stream (`stream`, taking `<subject_prefix>.>`) is created on the first purge when it
//! does not exist (`create_stream`, default on), with the settings' `retention`, `max_age`,
//! `replicas` and `storage`; an existing stream is checked against them, and a stream that
//! differs fails every purge as misconfigured, saying how (nothing is changed behind an
//! operator's back). The message format is [`wire`].

pub mod settings;
#[cfg(feature = "nats")]
pub mod wire;

#[cfg(feature = "nats")]
mod backend;

#[cfg(feature = "nats")]
pub use backend::{NatsBackend, connect, stream_config, stream_differences};
