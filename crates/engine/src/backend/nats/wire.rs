//! The wire format of a purge message on the stream, version 1: what the `nats` backend
//! publishes and what `cache-purge agent` accepts.
//!
//! One message is one batch, a JSON object:
//!
//! ```json
//! {"v": 1, "targets": ["url /posts/a", "prefix /blog/", "tag post-1", "everything"], "sent_at_ms": 1764612000000}
//! ```
//!
//! - `v`: the format version, `1`. An agent accepts only the versions it knows and
//!   dead-letters any other message: a purge is never guessed at, let alone widened.
//! - `targets`: at least one, at most [`MAX_TARGETS`], each in the stable text form of
//!   [`Target`] (`url ...`, `prefix ...`, `tag ...`, `everything`; the outbox stores the same),
//!   checked as when it was made: an invalid one rejects the whole message.
//! - `sent_at_ms`: when the backend published it, milliseconds since the Unix epoch (the age
//!   that decides the retry policy's `max_age`).
//!
//! No other key is allowed.
//!
//! ```
//! use cache_purge_hooks_engine::backend::nats::wire;
//! use cache_purge_hooks_engine::Target;
//!
//! let targets = vec![Target::url("/a?b=1").unwrap(), Target::tag("post-1").unwrap()];
//! let bytes = wire::encode(&targets);
//! assert_eq!(wire::decode(&bytes).unwrap().targets, targets);
//! assert!(wire::decode(br#"{"v": 2, "targets": ["everything"], "sent_at_ms": 0}"#).is_err());
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::target::Target;

/// The format version this build writes and reads.
pub const VERSION: u64 = 1;

/// The most targets one message may hold.
pub const MAX_TARGETS: usize = 10_000;

/// A decoded purge message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PurgeMessage {
    /// What to purge, as published.
    pub targets: Vec<Target>,
    /// When it was published.
    pub sent_at: SystemTime,
}

/// A message that is not a purge this build understands. Such a message is dead-lettered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Not JSON, or not an object with `v`, `targets` and `sent_at_ms` only.
    #[error("not a purge message: {0}")]
    Malformed(String),
    /// A format version this build does not know.
    #[error("purge message format version {0}; this agent knows only version {VERSION}")]
    UnknownVersion(u64),
    /// A target that does not parse (or none, or too many).
    #[error("invalid target in purge message: {0}")]
    InvalidTarget(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct V1 {
    v: u64,
    targets: Vec<String>,
    sent_at_ms: u64,
}

#[derive(Deserialize)]
struct Version {
    v: u64,
}

/// The message of one batch, sent now.
pub fn encode(targets: &[Target]) -> Vec<u8> {
    let sent_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let message = V1 {
        v: VERSION,
        targets: targets.iter().map(ToString::to_string).collect(),
        sent_at_ms,
    };
    // A struct of strings and integers always serializes.
    serde_json::to_vec(&message).unwrap_or_default()
}

/// Reads a message, refusing anything but a well-formed version 1 purge.
pub fn decode(bytes: &[u8]) -> Result<PurgeMessage, WireError> {
    let version: Version =
        serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    if version.v != VERSION {
        return Err(WireError::UnknownVersion(version.v));
    }
    let message: V1 =
        serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    if message.targets.is_empty() {
        return Err(WireError::InvalidTarget("no targets".to_owned()));
    }
    if message.targets.len() > MAX_TARGETS {
        return Err(WireError::InvalidTarget(format!(
            "{} targets, more than {MAX_TARGETS}",
            message.targets.len()
        )));
    }
    let targets = message
        .targets
        .iter()
        .map(|t| {
            t.parse::<Target>()
                .map_err(|e| WireError::InvalidTarget(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PurgeMessage {
        targets,
        sent_at: UNIX_EPOCH + Duration::from_millis(message.sent_at_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_target_round_trips() {
        let targets = vec![
            Target::url("https://www.example.com/a?b=1").unwrap(),
            Target::prefix("/blog/").unwrap(),
            Target::tag("post-1").unwrap(),
            Target::Everything,
        ];
        let decoded = decode(&encode(&targets)).unwrap();
        assert_eq!(decoded.targets, targets);
        assert!(decoded.sent_at.elapsed().unwrap() < Duration::from_secs(5));
    }

    #[test]
    fn hostile_messages_are_refused_never_widened() {
        for (bad, expected) in [
            (&b"not json"[..], "not a purge message"),
            (br#"{"targets": ["everything"]}"#, "not a purge message"),
            (
                br#"{"v": 2, "targets": ["url /a"], "sent_at_ms": 0}"#,
                "version 2",
            ),
            (br#"{"v": 1, "targets": [], "sent_at_ms": 0}"#, "no targets"),
            (
                br#"{"v": 1, "targets": ["url /a", "everythin", "tag "], "sent_at_ms": 0}"#,
                "invalid target",
            ),
            (
                br#"{"v": 1, "targets": ["url ftp://x/a"], "sent_at_ms": 0}"#,
                "invalid target",
            ),
            (
                br#"{"v": 1, "targets": ["url /a"], "sent_at_ms": 0, "all": true}"#,
                "unknown field",
            ),
        ] {
            let err = decode(bad).unwrap_err().to_string();
            assert!(err.contains(expected), "{bad:?}: {err}");
        }
    }
}
