//! The state each agent reports, in the KV bucket `state_bucket` under its node's name:
//! [`NodeState`], and how healthy that makes the node ([`Health`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The version of [`NodeState`]'s JSON form.
pub const STATE_VERSION: u64 = 1;

/// What an agent last said about its node (JSON in the state bucket, written every
/// `heartbeat`, after a failure, and when it stops).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeState {
    /// [`STATE_VERSION`].
    pub v: u64,
    /// The node.
    pub node: String,
    /// The groups it consumes.
    pub groups: Vec<String>,
    /// `running` or `stopped` (it stopped cleanly, on SIGTERM).
    pub status: String,
    /// The highest stream sequence it purged and acked.
    pub applied_sequence: u64,
    /// Every stream sequence up to this one is done on the node: purged and acked,
    /// dead-lettered, or another group's. With several messages purged at once it can be
    /// behind [`applied_sequence`](Self::applied_sequence) (a message handed back for a
    /// retry, one still being purged); a consumer created again resumes after it. 0 in a
    /// state written before it was kept.
    #[serde(default)]
    pub done_through: u64,
    /// The stream's last sequence when the state was written.
    pub stream_last_sequence: u64,
    /// Messages of its groups not yet purged (pending plus unacked) when the state was written.
    pub lag: u64,
    /// Messages purged and acked since it started.
    pub purged: u64,
    /// Failed attempts that will be retried (the message is delivered again after a backoff).
    pub retried: u64,
    /// Messages dead-lettered since it started (invalid, or given up on).
    pub dead_lettered: u64,
    /// The last failure, for people.
    pub last_error: Option<String>,
    /// When it happened (ms since the Unix epoch).
    pub last_error_at_ms: Option<u64>,
    /// When a message was last purged (ms since the Unix epoch).
    pub last_purge_at_ms: Option<u64>,
    /// When it last purged everything because it had been away too long.
    pub purged_everything_at_ms: Option<u64>,
    /// When the agent started.
    pub started_at_ms: u64,
    /// When this state was written.
    pub updated_at_ms: u64,
    /// Its heartbeat interval, in ms: a state older than three of them is stale.
    pub heartbeat_ms: u64,
}

/// How a node looks from its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Health {
    /// Running, heartbeat fresh, no failure since its last purge.
    Ok,
    /// Running, but its last attempt failed (see `last_error`).
    Failing,
    /// No heartbeat for three intervals: the agent died or cannot reach NATS.
    Stale,
    /// Stopped cleanly.
    Stopped,
}

impl Health {
    /// `ok`, `failing`, `stale`, `stopped`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failing => "failing",
            Self::Stale => "stale",
            Self::Stopped => "stopped",
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl NodeState {
    /// Its health at `now`.
    pub fn health(&self, now: SystemTime) -> Health {
        if self.status == "stopped" {
            return Health::Stopped;
        }
        let age = millis(now).saturating_sub(self.updated_at_ms);
        if age > 3 * self.heartbeat_ms.max(1) {
            return Health::Stale;
        }
        match (self.last_error_at_ms, self.last_purge_at_ms) {
            (Some(error), Some(purge)) if error > purge => Health::Failing,
            (Some(_), None) => Health::Failing,
            _ => Health::Ok,
        }
    }

    /// How long ago the state was written.
    pub fn age(&self, now: SystemTime) -> Duration {
        Duration::from_millis(millis(now).saturating_sub(self.updated_at_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> NodeState {
        NodeState {
            v: STATE_VERSION,
            node: "edge-1".into(),
            groups: vec!["all".into()],
            status: "running".into(),
            applied_sequence: 7,
            done_through: 7,
            stream_last_sequence: 7,
            lag: 0,
            purged: 7,
            retried: 0,
            dead_lettered: 0,
            last_error: None,
            last_error_at_ms: None,
            last_purge_at_ms: Some(1_000),
            purged_everything_at_ms: None,
            started_at_ms: 0,
            updated_at_ms: 10_000,
            heartbeat_ms: 1_000,
        }
    }

    #[test]
    fn health_follows_heartbeat_errors_and_status() {
        let at = |ms| UNIX_EPOCH + Duration::from_millis(ms);
        let mut s = state();
        assert_eq!(s.health(at(11_000)), Health::Ok);
        assert_eq!(s.health(at(14_000)), Health::Stale);
        s.last_error_at_ms = Some(2_000);
        assert_eq!(s.health(at(11_000)), Health::Failing);
        s.last_purge_at_ms = Some(3_000);
        assert_eq!(s.health(at(11_000)), Health::Ok);
        s.status = "stopped".into();
        assert_eq!(s.health(at(99_000)), Health::Stopped);
    }
}
