//! The `[agent]` table of the settings file: what `cache-purge agent` consumes and how
//! ([`AgentSettings`], [`NodeName`], [`StartFrom`], [`WhenAway`]).
//!
//! Always compiled, whatever the cargo features (the agent itself needs `nats`).
//!
//! ```toml
//! [agent]
//! node = "edge-1"                 # required (or --node): the durable consumer's name
//! servers = ["127.0.0.1:4222"]
//! stream = "CACHE_PURGE"          # default; as the app's `kind = "nats"` backend
//! subject_prefix = "cache-purge"  # default
//! groups = ["all"]                # default: the groups this node belongs to
//! start = "now"                   # a new node: "now", "first", or a time (RFC 3339)
//! when_away_too_long = "purge_everything"  # or "warn"
//!
//! [agent.auth]                    # as a `kind = "nats"` backend's (NatsAuth)
//! token = "..."                   # or CACHE_PURGE__AGENT__AUTH__TOKEN
//!
//! [agent.tls]                     # TLS required (NatsTls)
//! ca_file = "/etc/nats/ca.pem"
//! ```
//!
//! ```
//! use cache_purge_hooks_engine::settings::Settings;
//!
//! let err = Settings::from_toml_str("[agent]\nstart = \"yesterday\"\n").unwrap_err();
//! assert_eq!(err.key.as_deref(), Some("agent.start"));
//! let s = Settings::from_toml_str("[agent]\nnode = \"edge-1\"\ngroups = [\"all\", \"blog\"]\n").unwrap();
//! assert_eq!(s.agent.unwrap().groups.len(), 2);
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::backend::nats::settings::{GroupName, NatsAuth, NatsTls, StreamName, SubjectPrefix};
use crate::settings::types::{
    self, FieldError, InvalidValue, ServerAddr, named_enum, string_serde,
};

/// A cache node's name (`edge-1`): 1 to 64 ASCII letters, digits, `-` and `_`. Names the
/// node's durable consumer (`cache-purge-agent-<node>`) and its state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName(String);

impl NodeName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeName {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidValue::new(format!(
                "`{s}` is not a node name: 1 to 64 ASCII letters, digits, `-` or `_`"
            )))
        }
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(NodeName);

/// Where a new node (one without a consumer yet) starts reading the stream. A node that has
/// a consumer always resumes after its last ack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StartFrom {
    /// With the purges published from now on (a new node's cache is empty). The default.
    #[default]
    Now,
    /// With the oldest purge the stream still keeps.
    First,
    /// With the purges published since this time.
    Time(SystemTime),
}

impl FromStr for StartFrom {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "now" => Ok(Self::Now),
            "first" => Ok(Self::First),
            other => humantime::parse_rfc3339_weak(other)
                .map(Self::Time)
                .map_err(|_| {
                    InvalidValue::new(format!(
                        "`{other}` is not `now`, `first` or a time like 2026-12-01T10:00:00Z"
                    ))
                }),
        }
    }
}

impl fmt::Display for StartFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Now => f.write_str("now"),
            Self::First => f.write_str("first"),
            Self::Time(t) => write!(f, "{}", humantime::format_rfc3339_seconds(*t)),
        }
    }
}

string_serde!(StartFrom);

/// What an agent does when it finds that purges were published for it and dropped by the
/// stream before it read them (it was away longer than the stream's `max_age`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WhenAway {
    /// Purge everything on every local backend before reading on: the node cannot know what
    /// it missed (an origin stampede on a big cache, never a stale page). The default.
    #[default]
    PurgeEverything,
    /// Log an ERROR and read on: the pages those purges were for may stay stale.
    Warn,
}

named_enum!(WhenAway, "away policy", { PurgeEverything = "purge_everything", Warn = "warn" });

/// The `[agent]` table: what `cache-purge agent` consumes, and its safety and state settings.
/// The node's own caches are the settings' `[backends.*]` (never `kind = "nats"`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AgentSettings {
    /// This node's name (required to run an agent; `cache-purge agent --node` overrides it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeName>,
    /// `host:port` of the NATS servers (default `localhost:4222`).
    #[serde(deserialize_with = "types::servers")]
    pub servers: Vec<ServerAddr>,
    /// How to authenticate (`[agent.auth]`, default none): see [`NatsAuth`].
    #[serde(skip_serializing_if = "NatsAuth::is_none")]
    pub auth: NatsAuth,
    /// TLS (`[agent.tls]`): see [`NatsTls`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<NatsTls>,
    /// The stream (default `CACHE_PURGE`), created by the publishing side.
    pub stream: StreamName,
    /// The subjects' first tokens (default `cache-purge`).
    pub subject_prefix: SubjectPrefix,
    /// The groups this node belongs to (default `["all"]`): it purges what is published to
    /// `<subject_prefix>.<group>` for each.
    pub groups: Vec<GroupName>,
    /// Where a new node starts: `"now"` (default), `"first"`, or an RFC 3339 time.
    pub start: StartFrom,
    /// `"purge_everything"` (default) or `"warn"`: see [`WhenAway`].
    pub when_away_too_long: WhenAway,
    /// How long the stream waits for an ack before it delivers a message again (default
    /// `30s`): what a killed agent's unfinished messages wait before its restart gets them.
    #[serde(with = "types::timeout")]
    pub ack_wait: Duration,
    /// How often the node's state is written to the state bucket (default `5s`).
    #[serde(with = "types::timeout")]
    pub heartbeat: Duration,
    /// The KV bucket of the nodes' states (default `cache_purge_nodes`).
    pub state_bucket: StreamName,
    /// Connecting, and one JetStream call (default `5s`).
    #[serde(with = "types::timeout")]
    pub timeout: Duration,
    /// Messages purged at once (default 16): each is purged on every backend and acked on
    /// its own, so a slow purge does not hold up the ones behind it. 1 purges one message
    /// at a time, in stream order.
    #[serde(deserialize_with = "types::at_least_one")]
    pub concurrency: std::num::NonZeroUsize,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            node: None,
            servers: Vec::new(),
            auth: NatsAuth::default(),
            tls: None,
            stream: default_stream(),
            subject_prefix: SubjectPrefix::default(),
            groups: vec![GroupName::default()],
            start: StartFrom::default(),
            when_away_too_long: WhenAway::default(),
            ack_wait: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            state_bucket: default_bucket(),
            timeout: Duration::from_secs(5),
            concurrency: std::num::NonZeroUsize::new(16).unwrap_or(std::num::NonZeroUsize::MIN),
        }
    }
}

fn default_stream() -> StreamName {
    // A valid constant name.
    "CACHE_PURGE".parse().unwrap_or_else(|_| unreachable!())
}

fn default_bucket() -> StreamName {
    "cache_purge_nodes"
        .parse()
        .unwrap_or_else(|_| unreachable!())
}

impl AgentSettings {
    /// The configured servers, or `localhost:4222`.
    pub fn servers_or_default(&self) -> Vec<ServerAddr> {
        if self.servers.is_empty() {
            vec![ServerAddr::localhost(4222)]
        } else {
            self.servers.clone()
        }
    }

    /// The connection part as a [`NatsSettings`](crate::settings::NatsSettings) (servers,
    /// `auth`, `tls`, timeout, stream and subject prefix), for
    /// [`connect`](crate::backend::nats::connect).
    #[cfg(feature = "nats")]
    pub fn connection(&self) -> crate::backend::nats::settings::NatsSettings {
        crate::backend::nats::settings::NatsSettings {
            servers: self.servers_or_default(),
            auth: self.auth.clone(),
            tls: self.tls.clone(),
            timeout: self.timeout,
            stream: self.stream.clone(),
            subject_prefix: self.subject_prefix.clone(),
            ..Default::default()
        }
    }

    /// The rules across keys: at least one group, no group twice, and those of
    /// [`NatsAuth::check`] and [`NatsTls::check`].
    pub fn check(&self) -> Result<(), FieldError> {
        self.auth.check()?;
        if let Some(tls) = &self.tls {
            tls.check()?;
        }
        if self.groups.is_empty() {
            return Err(FieldError::new(
                "groups",
                "expected at least one group (\"all\" is what a `kind = \"nats\"` backend publishes to by default)",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(twice) = self.groups.iter().find(|g| !seen.insert(*g)) {
            return Err(FieldError::new(
                "groups",
                format!("`{twice}` is listed twice"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_points_parse_and_print_back() {
        assert_eq!("now".parse::<StartFrom>().unwrap(), StartFrom::Now);
        assert_eq!("first".parse::<StartFrom>().unwrap(), StartFrom::First);
        let t = "2026-12-01T10:00:00Z".parse::<StartFrom>().unwrap();
        assert_eq!(t.to_string(), "2026-12-01T10:00:00Z");
        assert!("soon".parse::<StartFrom>().is_err());
    }

    #[test]
    fn groups_must_be_listed_once_each() {
        let mut s = AgentSettings::default();
        assert!(s.check().is_ok());
        s.groups.push(GroupName::default());
        assert_eq!(s.check().unwrap_err().key, "groups");
        s.groups.clear();
        assert_eq!(s.check().unwrap_err().key, "groups");
    }
}
