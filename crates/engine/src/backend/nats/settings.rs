//! The settings of `kind = "nats"`, parsed into types: [`NatsSettings`], the JetStream
//! stream's [`StreamRetention`] and [`StreamStorage`], and the names NATS restricts:
//! [`StreamName`], [`SubjectPrefix`], [`GroupName`].
//!
//! Always compiled, whatever the cargo features: settings files name every kind, and a kind
//! this build lacks is refused when the purger is built, not when the file is read.
//!
//! ```
//! use cache_purge_hooks_engine::settings::{GroupName, NatsSettings};
//!
//! let s = NatsSettings::default();
//! assert_eq!(s.subject(), "cache-purge.all");
//! assert_eq!(s.stream.as_str(), "CACHE_PURGE");
//! assert!("blog.example".parse::<GroupName>().is_err()); // one subject token
//! ```

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::types::{
    self, FieldError, HostName, InvalidValue, Secret, ServerAddr, named_enum, string_serde,
};

/// Whether `s` is one NATS subject token this crate accepts: ASCII letters, digits, `-`, `_`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A JetStream stream's name (`CACHE_PURGE`): ASCII letters, digits, `-` and `_`, at most
/// 64 characters (no `.`, `*`, `>` or white space, which NATS refuses in names).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamName(String);

impl StreamName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for StreamName {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_token(s) && s.len() <= 64 {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidValue::new(format!(
                "`{s}` is not a JetStream stream name: 1 to 64 ASCII letters, digits, `-` or `_`"
            )))
        }
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(StreamName);

/// The first tokens of every purge subject (`cache-purge`, or `shop.cache-purge`): tokens of
/// ASCII letters, digits, `-` and `_`, separated by `.` (no wildcard). The stream takes
/// `<prefix>.>`; a group's purges go to `<prefix>.<group>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SubjectPrefix(String);

impl SubjectPrefix {
    /// The prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<prefix>.<group>`: the subject a group's purges are published to.
    pub fn subject(&self, group: &GroupName) -> String {
        format!("{}.{}", self.0, group.0)
    }

    /// `<prefix>.>`: every group's subject, what the stream takes.
    pub fn wildcard(&self) -> String {
        format!("{}.>", self.0)
    }
}

impl Default for SubjectPrefix {
    fn default() -> Self {
        Self("cache-purge".to_owned())
    }
}

impl FromStr for SubjectPrefix {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.split('.').all(is_token) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidValue::new(format!(
                "`{s}` is not a subject prefix: tokens of ASCII letters, digits, `-` or `_`, \
                 separated by `.`, like `cache-purge`"
            )))
        }
    }
}

impl fmt::Display for SubjectPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(SubjectPrefix);

/// A group of cache nodes (`all`, `blog`): one subject token, ASCII letters, digits, `-` and
/// `_`. A `nats` backend publishes to one group; an agent consumes the groups it lists.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupName(String);

impl GroupName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for GroupName {
    /// `all`.
    fn default() -> Self {
        Self("all".to_owned())
    }
}

impl FromStr for GroupName {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_token(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidValue::new(format!(
                "`{s}` is not a group name: ASCII letters, digits, `-` or `_` (one subject token)"
            )))
        }
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(GroupName);

/// How long the stream keeps purges (JetStream's retention policy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamRetention {
    /// Every purge is kept for `max_age` whoever has read it: a node that was down catches up
    /// from its last ack, a new node can start from a time. The default.
    #[default]
    Limits,
    /// A purge is dropped once every consumer has acked it (and after `max_age` at the
    /// latest): a smaller stream, but a node whose consumer was deleted cannot catch up.
    Interest,
}

named_enum!(StreamRetention, "stream retention", { Limits = "limits", Interest = "interest" });

/// Where the stream keeps purges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamStorage {
    /// On the NATS servers' disks: survives their restarts. The default.
    #[default]
    File,
    /// In the NATS servers' memory: lost when they restart.
    Memory,
}

named_enum!(StreamStorage, "stream storage", { File = "file", Memory = "memory" });

/// How a client proves who it is to the NATS servers: the `auth` table of `kind = "nats"`
/// (`[backends.NAME.auth]`) and of the agent (`[agent.auth]`). At most one way; none (the
/// default) for a server without authorization.
///
/// ```toml
/// [backends.fleet.auth]
/// token = "s3cret"                      # the server's `authorization { token }`
/// # or: user = "app" and password = "..."
/// # or: credentials_file = "/etc/nats/app.creds" (a JWT and an NKey seed, from `nsc`)
/// # or: nkey_seed = "SUA..."            # a user NKey seed (the server lists its public key)
/// ```
///
/// Keep the secrets out of the file: `CACHE_PURGE__BACKENDS__FLEET__AUTH__TOKEN=...`,
/// `CACHE_PURGE__AGENT__AUTH__PASSWORD=...`. They are shown as `<redacted>`.
///
/// ```
/// use cache_purge_hooks_engine::settings::Settings;
///
/// let err = Settings::from_toml_str(
///     "[backends.fleet]\nkind = \"nats\"\n[backends.fleet.auth]\ntoken = \"t\"\nuser = \"app\"\npassword = \"p\"\n",
/// )
/// .unwrap_err();
/// assert_eq!(err.key.as_deref(), Some("backends.fleet.auth"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NatsAuth {
    /// A token (the server's `authorization { token }`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// A user name, with [`password`](Self::password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The user's password, with [`user`](Self::user).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// A `.creds` file (a user JWT and its NKey seed, as `nsc generate creds` writes it), for
    /// servers in operator mode (decentralized JWT authentication).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<std::path::PathBuf>,
    /// A user NKey seed (`SU...`), whose public key the server's `authorization` lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nkey_seed: Option<Secret>,
}

impl NatsAuth {
    /// Whether no way is set (a server without authorization).
    pub fn is_none(&self) -> bool {
        self == &Self::default()
    }

    /// The rules across keys: at most one way, `user` and `password` together, an NKey seed
    /// that is a user seed.
    pub fn check(&self) -> Result<(), FieldError> {
        let ways = [
            self.token.is_some(),
            self.user.is_some() || self.password.is_some(),
            self.credentials_file.is_some(),
            self.nkey_seed.is_some(),
        ];
        if ways.iter().filter(|w| **w).count() > 1 {
            return Err(FieldError::new(
                "auth",
                "give one way to authenticate: `token`, `user` with `password`, \
                 `credentials_file` or `nkey_seed`",
            ));
        }
        match (&self.user, &self.password) {
            (Some(_), None) => {
                return Err(FieldError::new(
                    "auth.password",
                    "missing: `user` needs a `password`",
                ));
            }
            (None, Some(_)) => {
                return Err(FieldError::new(
                    "auth.user",
                    "missing: `password` needs a `user`",
                ));
            }
            (Some(user), Some(_)) if user.trim().is_empty() => {
                return Err(FieldError::new("auth.user", "empty: expected a user name"));
            }
            _ => {}
        }
        if let Some(seed) = &self.nkey_seed
            && !seed.expose().starts_with("SU")
        {
            return Err(FieldError::new(
                "auth.nkey_seed",
                "not a user NKey seed: those start with `SU` (a public key starts with `U`; \
                 give the seed, which stays on this machine)",
            ));
        }
        Ok(())
    }

    /// Checks that `credentials_file` can be read, at start-up rather than at the first
    /// connection.
    pub fn check_files(&self) -> Result<(), crate::backend::SetupError> {
        if let Some(path) = &self.credentials_file {
            readable(
                "auth.credentials_file",
                path,
                "a .creds file from `nsc generate creds`",
            )?;
        }
        Ok(())
    }
}

/// TLS to the NATS servers: the `tls` table of `kind = "nats"` (`[backends.NAME.tls]`) and
/// of the agent (`[agent.tls]`). Its presence requires TLS (a server that does not offer it is
/// refused); without the table, TLS is used only where the server requires it, with the
/// system's root certificates.
///
/// ```toml
/// [backends.fleet.tls]
/// ca_file = "/etc/nats/ca.pem"          # the CA that signed the servers' certificates
/// cert_file = "/etc/nats/client.pem"    # a client certificate, for `verify: true` servers
/// key_file = "/etc/nats/client-key.pem"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NatsTls {
    /// PEM root certificates to trust (default: the system's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    /// A PEM client certificate, with [`key_file`](Self::key_file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<std::path::PathBuf>,
    /// The client certificate's PEM private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<std::path::PathBuf>,
    /// Start TLS before the server's greeting (default `false`), for servers configured with
    /// `handshake_first`.
    pub handshake_first: bool,
}

impl NatsTls {
    /// The rules across keys: `cert_file` and `key_file` together.
    pub fn check(&self) -> Result<(), FieldError> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err(FieldError::new(
                "tls.key_file",
                "missing: `cert_file` needs its `key_file`",
            )),
            (None, Some(_)) => Err(FieldError::new(
                "tls.cert_file",
                "missing: `key_file` needs its `cert_file`",
            )),
            _ => Ok(()),
        }
    }

    /// Checks that the files can be read, at start-up rather than at the first connection.
    pub fn check_files(&self) -> Result<(), crate::backend::SetupError> {
        for (setting, path, hint) in [
            ("tls.ca_file", &self.ca_file, "PEM certificates of the CA"),
            ("tls.cert_file", &self.cert_file, "a PEM certificate"),
            ("tls.key_file", &self.key_file, "a PEM private key"),
        ] {
            if let Some(path) = path {
                readable(setting, path, hint)?;
            }
        }
        Ok(())
    }
}

fn readable(
    setting: &'static str,
    path: &std::path::Path,
    hint: &'static str,
) -> Result<(), crate::backend::SetupError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|source| crate::backend::SetupError::File {
            setting,
            path: path.to_path_buf(),
            source,
            hint,
        })
}

/// Options of `kind = "nats"`: publish each batch to a JetStream stream, consumed by one
/// `cache-purge agent` per cache node (docs/fleet.md).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NatsSettings {
    /// `host:port` of the NATS servers (default `localhost:4222`). A comma-separated string
    /// works too.
    #[serde(deserialize_with = "types::servers")]
    pub servers: Vec<ServerAddr>,
    /// How to authenticate (`[backends.NAME.auth]`, default none): see [`NatsAuth`].
    #[serde(skip_serializing_if = "NatsAuth::is_none")]
    pub auth: NatsAuth,
    /// TLS (`[backends.NAME.tls]`): see [`NatsTls`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<NatsTls>,
    /// The JetStream stream (default `CACHE_PURGE`).
    pub stream: StreamName,
    /// The first tokens of the subjects (default `cache-purge`): the stream takes
    /// `<subject_prefix>.>`.
    pub subject_prefix: SubjectPrefix,
    /// The group of nodes this backend's purges go to (default `all`): the subject is
    /// `<subject_prefix>.<group>`.
    pub group: GroupName,
    /// Host routing (`[backends.NAME.host_groups]`, default none): the purges of absolute URLs (and
    /// prefixes) of a host listed here go to its group instead of `group`, so that each site's
    /// pages are purged only on its own nodes. Tags, everything and URLs given as paths go to
    /// `group`.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub host_groups: std::collections::BTreeMap<HostName, GroupName>,
    /// The stream's retention: `limits` (default) or `interest`.
    pub retention: StreamRetention,
    /// How long the stream keeps a purge (default `24h`): a node away for longer cannot catch
    /// up message by message (see the agent's `when_away_too_long`).
    #[serde(with = "types::timeout")]
    pub max_age: Duration,
    /// Copies of the stream in a NATS cluster, 1 to 5 (default 1).
    #[serde(deserialize_with = "types::at_least_one")]
    pub replicas: NonZeroUsize,
    /// `file` (default) or `memory`.
    pub storage: StreamStorage,
    /// Create the stream when it does not exist (default `true`); with `false`, a missing
    /// stream fails every publish (transient: the outbox keeps the rows) until it is created.
    /// An existing stream is always checked against these settings.
    pub create_stream: bool,
    /// How long to wait for the connection and for the stream's ack of one publish (default
    /// `5s`).
    #[serde(with = "types::timeout")]
    pub timeout: Duration,
    /// Targets per message (default 500).
    #[serde(deserialize_with = "types::at_least_one")]
    pub max_batch: NonZeroUsize,
    /// Publishes waiting for their ack at once (default 4).
    #[serde(deserialize_with = "types::at_least_one")]
    pub concurrency: NonZeroUsize,
}

impl Default for NatsSettings {
    /// The settings of an empty `[backends.NAME]` table with `kind = "nats"`.
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            auth: NatsAuth::default(),
            tls: None,
            stream: StreamName("CACHE_PURGE".to_owned()),
            subject_prefix: SubjectPrefix::default(),
            group: GroupName::default(),
            host_groups: std::collections::BTreeMap::new(),
            retention: StreamRetention::default(),
            max_age: Duration::from_secs(24 * 3600),
            replicas: NonZeroUsize::MIN,
            storage: StreamStorage::default(),
            create_stream: true,
            timeout: Duration::from_secs(5),
            max_batch: NonZeroUsize::new(500).unwrap_or(NonZeroUsize::MIN),
            concurrency: NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

impl NatsSettings {
    /// The configured servers, or `localhost:4222`.
    pub fn servers_or_default(&self) -> Vec<ServerAddr> {
        if self.servers.is_empty() {
            vec![ServerAddr::localhost(4222)]
        } else {
            self.servers.clone()
        }
    }

    /// The subject this backend publishes to: `<subject_prefix>.<group>`.
    pub fn subject(&self) -> String {
        self.subject_prefix.subject(&self.group)
    }

    /// The group a target goes to: its host's in [`host_groups`](Self::host_groups) (compared without
    /// case), else [`group`](Self::group).
    pub fn group_of(&self, target: &crate::target::Target) -> &GroupName {
        use crate::target::Target;
        let host = match target {
            Target::Url(u) | Target::Prefix(u) => u.host(),
            _ => None,
        };
        host.and_then(|h| {
            self.host_groups
                .iter()
                .find(|(k, _)| k.as_str().eq_ignore_ascii_case(h))
                .map(|(_, g)| g)
        })
        .unwrap_or(&self.group)
    }

    /// The rules across keys: `replicas` is at most 5 (JetStream's limit), no server is
    /// given as `https://` (TLS is the `tls` table), and those of [`NatsAuth::check`] and
    /// [`NatsTls::check`].
    pub fn check(&self) -> Result<(), FieldError> {
        self.auth.check()?;
        if let Some(tls) = &self.tls {
            tls.check()?;
        }
        if self.replicas.get() > 5 {
            return Err(FieldError::new(
                "replicas",
                format!("expected 1 to 5 (JetStream's limit), got {}", self.replicas),
            ));
        }
        if let Some(server) = self.servers.iter().find(|s| s.is_https()) {
            return Err(FieldError::new(
                "servers",
                format!("`{server}`: give NATS servers as `host:port` (TLS is the `tls` table)"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!("CACHE_PURGE".parse::<StreamName>().is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>"] {
            assert!(bad.parse::<StreamName>().is_err(), "{bad:?}");
            assert!(bad.parse::<GroupName>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "shop.cache-purge"
                .parse::<SubjectPrefix>()
                .unwrap()
                .wildcard(),
            "shop.cache-purge.>"
        );
        for bad in ["", "a..b", ".a", "a.*", "a.>", "a b"] {
            assert!(bad.parse::<SubjectPrefix>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hosts_route_their_urls_to_their_group() {
        use crate::target::Target;
        let s = crate::settings::Settings::from_toml_str(
            "[backends.fleet]\nkind = \"nats\"\n[backends.fleet.host_groups]\n\"blog.example.com\" = \"blog\"\n",
        )
        .unwrap();
        let crate::settings::BackendSettings::Nats(n) = &s.backends["fleet"].settings else {
            panic!("{s:?}")
        };
        let group = |t: &str| n.group_of(&t.parse::<Target>().unwrap()).to_string();
        assert_eq!(group("url https://Blog.Example.com/a"), "blog");
        assert_eq!(group("prefix https://blog.example.com/posts/"), "blog");
        assert_eq!(group("url https://shop.example.com/a"), "all");
        assert_eq!(group("url /a"), "all");
        assert_eq!(group("tag post-1"), "all");
        let err = crate::settings::Settings::from_toml_str(
            "[backends.fleet]\nkind = \"nats\"\n[backends.fleet.host_groups]\n\"blog.example.com\" = \"a.b\"\n",
        )
        .unwrap_err();
        assert_eq!(
            err.key.as_deref(),
            Some("backends.fleet.host_groups.blog.example.com"),
            "{err}"
        );
    }

    #[test]
    fn the_auth_and_tls_tables_are_checked_where_they_are_read() {
        let err = |text: &str| {
            crate::settings::Settings::from_toml_str(&format!(
                "[backends.fleet]\nkind = \"nats\"\n{text}"
            ))
            .unwrap_err()
        };
        for (text, key, says) in [
            (
                "[backends.fleet.auth]\ntoken = \"t\"\nnkey_seed = \"SUABC\"\n",
                "backends.fleet.auth",
                "give one way",
            ),
            (
                "[backends.fleet.auth]\nuser = \"app\"\n",
                "backends.fleet.auth.password",
                "`user` needs a `password`",
            ),
            (
                "[backends.fleet.auth]\npassword = \"p\"\n",
                "backends.fleet.auth.user",
                "needs a `user`",
            ),
            (
                "[backends.fleet.auth]\nnkey_seed = \"UABC\"\n",
                "backends.fleet.auth.nkey_seed",
                "start with `SU`",
            ),
            (
                "[backends.fleet.auth]\ntokn = \"t\"\n",
                "backends.fleet.auth.tokn",
                "unknown",
            ),
            (
                "[backends.fleet.tls]\ncert_file = \"/c.pem\"\n",
                "backends.fleet.tls.key_file",
                "needs its `key_file`",
            ),
        ] {
            let e = err(text);
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
        let agent = crate::settings::Settings::from_toml_str(
            "[agent]\nnode = \"a\"\n[agent.auth]\nuser = \"app\"\n",
        )
        .unwrap_err();
        assert_eq!(agent.key.as_deref(), Some("agent.auth.password"), "{agent}");

        let s = crate::settings::Settings::from_toml_str(
            "[backends.fleet]\nkind = \"nats\"\n[backends.fleet.auth]\nuser = \"app\"\npassword = \"hunter2\"\n[backends.fleet.tls]\n",
        )
        .unwrap();
        let crate::settings::BackendSettings::Nats(n) = &s.backends["fleet"].settings else {
            panic!("{s:?}")
        };
        assert_eq!(n.auth.user.as_deref(), Some("app"));
        assert_eq!(
            n.tls,
            Some(NatsTls::default()),
            "an empty table requires TLS"
        );
        assert!(!format!("{n:?}").contains("hunter2"));
        assert!(!toml::to_string(&s).unwrap().contains("hunter2"));
    }

    #[test]
    fn replicas_are_at_most_five() {
        let mut s = NatsSettings::default();
        assert!(s.check().is_ok());
        s.replicas = NonZeroUsize::new(6).unwrap();
        assert_eq!(s.check().unwrap_err().key, "replicas");
    }
}
