//! Settings: which backends, with which options, and how purges are delivered.
//!
//! Read from one TOML file (default `cache-purge.toml` in the working directory, or the path
//! in `CACHE_PURGE_CONFIG`), then overridden by environment variables named
//! `CACHE_PURGE__<KEY>__<SUBKEY>` (double underscores between levels). With no file at the
//! default path, the defaults apply: one `log` backend, `after_commit` delivery.
//!
//! ```toml
//! delivery = "after_commit"      # or "immediate", "outbox"
//!
//! [backends.edge]                # any name; several backends may be listed
//! kind = "varnish"
//! servers = ["127.0.0.1:6082"]
//! secret_file = "/etc/varnish/secret"
//!
//! [backends.origin-cache]
//! kind = "nginx"
//! servers = ["127.0.0.1:80"]
//! purge_prefix = "/purge"
//! ```
//!
//! Every setting is checked when the settings are loaded, and an error names the key, where
//! it came from and what was expected:
//!
//! ```
//! use cache_purge_hooks_engine::settings::Settings;
//!
//! let err = Settings::from_toml_str("[backends.edge]\nkind = \"varnsh\"\n").unwrap_err();
//! assert_eq!(err.key.as_deref(), Some("backends.edge.kind"));
//! assert!(err.to_string().contains("unknown backend kind `varnsh`"), "{err}");
//! ```

//!
//! # Where things are
//!
//! Each backend's options live beside the backend ([`VarnishSettings`] in
//! `backend::varnish::settings`, [`NginxSettings`] in `backend::nginx::settings`...) and are
//! re-exported here; the values several backends share ([`ServerAddr`], [`HostName`],
//! [`HeaderName`], [`HttpMethod`]) are in [`types`]. Every value is parsed once, into a type
//! that can only hold a valid one, when the settings are read; the rules across keys of one
//! backend are one function beside its settings ([`NginxSettings::check`]), called here.
//!
//! # In an application's own configuration
//!
//! [`Settings`] implements `Deserialize`, with the same defaults and checks as the loader
//! (without file or environment: the application's own configuration decides those):
//!
//! ```
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct AppConfig {
//!     port: u16,
//!     cache_purge: cache_purge_hooks_engine::Settings,
//! }
//!
//! let app: AppConfig = toml::from_str(
//!     "port = 8080\n[cache_purge]\ndelivery = \"immediate\"\n\
//!      [cache_purge.backends.edge]\nkind = \"varnish\"\nservers = \"127.0.0.1:6082\"\n",
//! )
//! .unwrap();
//! assert_eq!(app.port, 8080);
//! assert_eq!(app.cache_purge.backends["edge"].kind(), "varnish");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{ConfigError, Map, Source, Value, ValueKind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod env;
pub mod types;

pub use crate::backend::akamai::settings::{
    AkamaiAction, AkamaiNetwork, AkamaiSettings, CpCode, EdgeGridCredentials, EdgercSection,
};
pub use crate::backend::cloudflare::settings::{
    CLOUDFLARE_API, CloudflarePlan, CloudflareSettings, SiteUrl, ZoneId,
};
pub use crate::backend::cloudfront::settings::{
    CLOUDFRONT_API, CloudFrontSettings, DistributionId, MAX_PATHS_IN_PROGRESS,
    MAX_WILDCARDS_IN_PROGRESS,
};
pub use crate::backend::dummy::DummySettings;
pub use crate::backend::fastly::settings::{FASTLY_API, FastlySettings, ServiceId};
pub use crate::backend::log::LogSettings;
pub use crate::backend::memory::MemorySettings;
pub use crate::backend::nats::settings::{
    GroupName, NatsAuth, NatsSettings, NatsTls, StreamName, StreamRetention, StreamStorage,
    SubjectPrefix,
};
pub use crate::backend::nginx::settings::{
    CacheDir, KeyPart, KeyTemplate, Levels, NGINX_KEY_VARIABLES, NginxMode, NginxSettings,
    NginxTags, PurgePrefix, Scheme,
};
pub use crate::backend::varnish::settings::{
    BanStyle, MaxBanLength, VarnishHttpMethod, VarnishMode, VarnishSettings, VarnishTags,
};
pub use crate::fleet::settings::{AgentSettings, NodeName, StartFrom, WhenAway};
pub use crate::tag_index::settings::{KeyPrefix, RedisUrl, TagIndexKind, TagIndexSettings};
pub use types::{
    BaseUrl, FieldError, HeaderName, HostName, HttpMethod, InvalidValue, Pipeline, RequestRate,
    Secret, ServerAddr,
};

use types::named_enum;

/// The settings file read when no path is given.
pub const DEFAULT_FILE: &str = "cache-purge.toml";
/// The environment variable that names another settings file.
pub const FILE_ENV: &str = "CACHE_PURGE_CONFIG";
/// The prefix of environment variables that override settings (`CACHE_PURGE__DELIVERY=...`).
pub const ENV_PREFIX: &str = "CACHE_PURGE";

/// What happens when a backend's queue holds `queue_capacity` targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QueueFull {
    /// What does not fit goes to the backend's spill file on disk and is delivered in order
    /// when there is room: memory stays bounded, no save waits, nothing is widened or
    /// dropped. Counted (`spilled`) and logged.
    #[default]
    Spill,
    /// The ORM hooks (and [`Purger::purge`](crate::Purger::purge)) wait for room: saves slow
    /// down instead. [`Purger::try_purge`](crate::Purger::try_purge), which never waits,
    /// spills.
    Wait,
    /// Opt-in widening: what does not fit becomes one purge of everything where the backend
    /// can (wider, never lost; an origin stampede on a big cache), and is spilled where it
    /// cannot. Counted (`coalesced`) and logged.
    Coalesce,
}

named_enum!(QueueFull, "queue policy", { Spill = "spill", Wait = "wait", Coalesce = "coalesce" });

/// When purges are sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Delivery {
    /// Send at once, even inside a transaction scope. Lowest latency; a purge can precede
    /// the COMMIT it belongs to.
    Immediate,
    /// Inside a transaction scope (`cache_purge_hooks::sea_orm::transaction`), send after
    /// COMMIT and drop on rollback; outside one, send at once (the write has committed when
    /// the hook runs).
    #[default]
    AfterCommit,
    /// Write each purge as rows of the outbox table through the connection of the save, so
    /// it commits or rolls back with it; an outbox worker delivers the rows (at least once,
    /// surviving crashes; several processes share the table). Needs the ORM crate's outbox
    /// migration and worker (`cache_purge_hooks::sea_orm::outbox`).
    Outbox,
}

named_enum!(Delivery, "delivery mode", { Immediate = "immediate", AfterCommit = "after_commit", Outbox = "outbox" });

/// The whole settings file. Serializes back to the file's form (what `cache-purge settings`
/// prints); deserializes from it with every check of the loader (see the
/// [module documentation](self)).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Settings {
    /// When purges are sent (`delivery`, default `after_commit`).
    pub delivery: Delivery,
    /// How long [`shutdown`](crate::Purger::shutdown) waits for queued purges
    /// (`shutdown_timeout`, default `10s`).
    #[serde(serialize_with = "types::duration::serialize")]
    pub shutdown_timeout: Duration,
    /// The backends by name (`[backends.NAME]`). Default: one `log` backend named `log`.
    pub backends: BTreeMap<String, BackendTable>,
    /// Retries and dead letters (`[retry]`).
    pub retry: crate::retry::RetryPolicy,
    /// Targets waiting per backend before the `when_full` policy applies (`queue_capacity`,
    /// default 100000); see [`crate::Purger::purge`].
    pub queue_capacity: usize,
    /// What a full queue does (`when_full`: `"spill"`, the default, `"wait"` or
    /// `"coalesce"`).
    pub when_full: QueueFull,
    /// Where spill files go (`spill_dir`, default `cache-purge-spill` in the system's
    /// temporary directory); see [`QueueFull::Spill`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spill_dir: Option<std::path::PathBuf>,
    /// The delay of the second purge of every target (`repurge_after`, default: none); see
    /// [`PurgerBuilder::repurge_after`](crate::PurgerBuilder::repurge_after).
    #[serde(
        serialize_with = "types::optional_duration::serialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub repurge_after: Option<Duration>,
    /// Where the tag→URL index of `tags = "index"` backends is kept (`[tag_index]`, default:
    /// none; code may pass one with
    /// [`PurgerBuilder::tag_index`](crate::PurgerBuilder::tag_index)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_index: Option<TagIndexSettings>,
    /// What `cache-purge agent` consumes on this cache node (`[agent]`, default: none); see
    /// [`AgentSettings`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSettings>,
}

/// The file's top level but `backends`, which is read table by table (see
/// [`backend_from_value`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopLevel {
    #[serde(default)]
    delivery: Delivery,
    #[serde(default = "default_shutdown_timeout", with = "types::duration")]
    shutdown_timeout: Duration,
    /// Never read here (the loader takes `backends` out first): it is declared so that the
    /// list of known keys in errors has it, in its place.
    #[serde(default)]
    #[allow(dead_code)]
    backends: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    retry: crate::retry::RetryPolicy,
    #[serde(default = "default_queue_capacity")]
    queue_capacity: usize,
    #[serde(default)]
    when_full: QueueFull,
    #[serde(default)]
    spill_dir: Option<std::path::PathBuf>,
    #[serde(default, with = "types::optional_duration")]
    repurge_after: Option<Duration>,
    #[serde(default)]
    tag_index: Option<TagIndexSettings>,
    #[serde(default)]
    agent: Option<AgentSettings>,
}

fn default_queue_capacity() -> usize {
    100_000
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_backends() -> BTreeMap<String, BackendTable> {
    BTreeMap::from([(
        "log".to_owned(),
        BackendTable::from(BackendSettings::Log(LogSettings {})),
    )])
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            delivery: Delivery::default(),
            shutdown_timeout: default_shutdown_timeout(),
            backends: default_backends(),
            retry: crate::retry::RetryPolicy::default(),
            queue_capacity: default_queue_capacity(),
            when_full: QueueFull::default(),
            spill_dir: None,
            repurge_after: None,
            tag_index: None,
            agent: None,
        }
    }
}

impl<'de> Deserialize<'de> for Settings {
    /// Reads the settings' table from any serde format (an application's own TOML file), with
    /// the loader's defaults and checks; the error is the [`SettingsError`]'s text.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let top = Value::deserialize(d)?.into_table().map_err(|e| {
            serde::de::Error::custom(format!(
                "expected a table of cache purge settings, found {}",
                found(e)
            ))
        })?;
        settings_from_table(top, None).map_err(serde::de::Error::custom)
    }
}

/// One `[backends.NAME]` table: the options every kind has ([`BackendCommon`]: `hosts`,
/// `paths`) and the kind's own ([`BackendSettings`], selected by `kind`). Serializes back to
/// one flat table.
///
/// ```
/// use cache_purge_hooks_engine::settings::{BackendSettings, Settings};
///
/// let s = Settings::from_toml_str(
///     "[backends.www]\nkind = \"nginx\"\nhosts = [\"www.example.com\", \"*.example.org\"]\npaths = true\n",
/// )
/// .unwrap();
/// let www = &s.backends["www"];
/// assert!(matches!(www.settings, BackendSettings::Nginx(_)));
/// assert!(www.common.route.paths);
/// assert!(www.common.route.serves_host("shop.example.org"));
/// assert!(!www.common.route.serves_host("example.net"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BackendTable {
    /// The kind (`kind`) and its own options.
    #[serde(flatten)]
    pub settings: BackendSettings,
    /// The options every kind has.
    #[serde(flatten)]
    pub common: BackendCommon,
}

impl BackendTable {
    /// The `kind` string.
    pub fn kind(&self) -> &'static str {
        self.settings.kind()
    }

    /// Where verification asks the cache (see [`crate::verify`]): `verify_url`, else the
    /// first server of nginx or Varnish in `http` mode; `None` when neither is known.
    pub fn verify_url(&self) -> Option<BaseUrl> {
        if let Some(url) = &self.common.verify.url {
            return Some(url.clone());
        }
        let server = match &self.settings {
            BackendSettings::Nginx(n) if n.mode == NginxMode::Http => {
                n.servers_or_default().into_iter().next()
            }
            BackendSettings::Varnish(v) if v.mode == VarnishMode::Http => {
                v.servers_or_default().into_iter().next()
            }
            _ => None,
        }?;
        server.base_url().parse().ok()
    }

    /// The header that tells a hit: `verify_header`, else `X-Cache-Status` for nginx (what
    /// `deploy/nginx/` adds), `CF-Cache-Status` for Cloudflare, `X-Cache` otherwise (what
    /// `deploy/varnish/` sets, and most CDNs).
    pub fn verify_header(&self) -> String {
        if let Some(h) = &self.common.verify.header {
            return h.as_str().to_owned();
        }
        match &self.settings {
            BackendSettings::Nginx(_) => "X-Cache-Status",
            BackendSettings::Cloudflare(_) => "CF-Cache-Status",
            _ => "X-Cache",
        }
        .to_owned()
    }

    /// What to check when a purge of this kind of backend did not take.
    pub fn verify_hint(&self) -> &'static str {
        crate::verify::hint_for(self.kind())
    }
}

impl From<BackendSettings> for BackendTable {
    /// The kind's options, with the default common ones (every host, paths not marked).
    fn from(settings: BackendSettings) -> Self {
        Self {
            settings,
            common: BackendCommon::default(),
        }
    }
}

impl<'de> Deserialize<'de> for BackendTable {
    /// Reads one backend's table (with its `kind`), with the loader's checks; keys in errors
    /// are relative to the table.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        backend_from_value(Value::deserialize(d)?, "", None).map_err(serde::de::Error::custom)
    }
}

/// The options of a `[backends.NAME]` table that every kind has, read before the kind's own.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BackendCommon {
    /// Which targets the backend takes (`hosts`, `paths`; see [`crate::routing`]).
    #[serde(flatten)]
    pub route: crate::routing::BackendRoute,
    /// Whether and how purges are verified (`verify`, `verify_url`...; see [`crate::verify`]).
    #[serde(flatten)]
    pub verify: crate::verify::VerifySettings,
}

/// The common keys as the file writes them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommonKeys {
    #[serde(default, deserialize_with = "types::host_patterns")]
    hosts: Option<Vec<crate::routing::HostPattern>>,
    #[serde(default)]
    paths: bool,
    #[serde(default)]
    verify: crate::verify::VerifyMode,
    #[serde(default)]
    verify_url: Option<BaseUrl>,
    #[serde(default)]
    verify_header: Option<HeaderName>,
    #[serde(default)]
    verify_hit: Option<Vec<String>>,
    #[serde(default, deserialize_with = "types::optional_at_least_one")]
    verify_concurrency: Option<std::num::NonZeroUsize>,
    #[serde(default)]
    refresh: bool,
    #[serde(default)]
    refresh_rate: Option<RequestRate>,
}

/// One backend's settings; `kind` selects the variant.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum BackendSettings {
    /// `kind = "log"`: log every purge (the default backend).
    Log(LogSettings),
    /// `kind = "dummy"`: do nothing.
    Dummy(DummySettings),
    /// `kind = "memory"`: record every purge, for tests.
    Memory(MemorySettings),
    /// `kind = "varnish"`: ban or purge on Varnish.
    Varnish(VarnishSettings),
    /// `kind = "nginx"`: purge nginx's proxy cache.
    Nginx(NginxSettings),
    /// `kind = "cloudflare"`: purge a Cloudflare zone through API v4.
    Cloudflare(CloudflareSettings),
    /// `kind = "fastly"`: purge a Fastly service.
    Fastly(FastlySettings),
    /// `kind = "cloudfront"`: invalidate paths of a CloudFront distribution.
    #[serde(rename = "cloudfront")]
    CloudFront(CloudFrontSettings),
    /// `kind = "akamai"`: purge Akamai through Fast Purge API v3.
    Akamai(AkamaiSettings),
    /// `kind = "nats"`: publish to a JetStream stream for the fleet's agents.
    Nats(NatsSettings),
}

impl BackendSettings {
    /// The `kind` string.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Log(_) => "log",
            Self::Dummy(_) => "dummy",
            Self::Memory(_) => "memory",
            Self::Varnish(_) => "varnish",
            Self::Nginx(_) => "nginx",
            Self::Cloudflare(_) => "cloudflare",
            Self::Fastly(_) => "fastly",
            Self::CloudFront(_) => "cloudfront",
            Self::Akamai(_) => "akamai",
            Self::Nats(_) => "nats",
        }
    }
}

impl<'de> Deserialize<'de> for BackendSettings {
    /// Reads one backend's table (with its `kind`), with the loader's checks; keys in errors
    /// are relative to the table. The options every kind has (`hosts`, `paths`) are refused
    /// here, where they would be lost: deserialize a [`BackendTable`] to read them.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = backend_from_value(Value::deserialize(d)?, "", None)
            .map_err(serde::de::Error::custom)?;
        if table.common != BackendCommon::default() {
            return Err(serde::de::Error::custom(
                "`hosts` and `paths` are read by a BackendTable, not by BackendSettings",
            ));
        }
        Ok(table.settings)
    }
}

const BACKEND_KINDS: &str = "`log`, `dummy`, `memory`, `varnish`, `nginx`, `cloudflare`, `fastly`, `cloudfront`, `akamai`, `nats`";

/// A setting is invalid. Says which key, where it came from and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SettingsError {
    /// What kind of problem it is, for programs.
    pub kind: SettingsErrorKind,
    /// The key, dotted (`backends.edge.timeout`), when the error concerns one.
    pub key: Option<String>,
    /// Where the value came from: the file's path or the environment variable's name.
    pub origin: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

/// The kinds of [`SettingsError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SettingsErrorKind {
    /// A settings file that must exist does not (`CACHE_PURGE_CONFIG`, an explicit path, or
    /// [`SettingsLoader::require_file`]).
    MissingFile,
    /// The file exists but cannot be read.
    Unreadable,
    /// The file is not valid TOML.
    Syntax,
    /// A value is invalid, unknown or missing.
    Invalid,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid cache purge setting")?;
        if let Some(key) = &self.key {
            write!(f, " `{key}`")?;
        }
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for SettingsError {}

impl SettingsError {
    fn new(key: Option<String>, origin: Option<String>, message: impl Into<String>) -> Self {
        Self {
            kind: SettingsErrorKind::Invalid,
            key,
            origin,
            message: message.into(),
        }
    }

    fn of_kind(mut self, kind: SettingsErrorKind) -> Self {
        self.kind = kind;
        self
    }
}

// ----- reading the merged tree -----------------------------------------------------------

/// One step of a key's path: a table's key or a list's index.
#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_owned())
}

/// `prefix.a.b[0]`.
fn dotted(prefix: &str, path: &[Seg]) -> String {
    let mut out = prefix.to_owned();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Where the value at `path` below `root` came from, as config recorded it (the file, the
/// environment variable); for a key that is absent, where its nearest enclosing table came
/// from; `fallback` when config recorded nothing (values deserialized from another format).
fn origin_at(root: &Value, path: &[Seg], fallback: Option<&str>) -> Option<String> {
    let mut node = root;
    let mut origin = node.origin();
    for seg in path {
        let next = match (seg, &node.kind) {
            (Seg::Key(k), ValueKind::Table(t)) => t.get(k),
            (Seg::Index(i), ValueKind::Array(a)) => a.get(*i),
            _ => None,
        };
        let Some(next) = next else { break };
        node = next;
        origin = next.origin().or(origin);
    }
    origin.or(fallback).map(str::to_owned)
}

/// Errors about the values below one table, keyed below `prefix`, with origins looked up in a
/// copy of the table taken before it was consumed.
struct Scope<'a> {
    root: Value,
    prefix: &'a str,
    fallback: Option<&'a str>,
}

impl Scope<'_> {
    fn error(&self, path: &[Seg], message: impl Into<String>) -> SettingsError {
        SettingsError::new(
            Some(dotted(self.prefix, path)),
            origin_at(&self.root, path, self.fallback),
            message,
        )
    }

    /// The first unknown key of `table` (in sorted order, so that the error is always the
    /// same one), against the keys serde knows for `T`.
    fn unknown_key<T: DeserializeOwned>(
        &self,
        at: &[Seg],
        table: &Map<String, Value>,
        no_options: &str,
    ) -> Result<(), SettingsError> {
        self.unknown_key_also::<T>(at, table, no_options, &[])
    }

    /// [`unknown_key`](Self::unknown_key), with keys read elsewhere that are valid here too
    /// (a backend's common keys, taken out of its table before its kind's): named among the
    /// expected ones.
    fn unknown_key_also<T: DeserializeOwned>(
        &self,
        at: &[Seg],
        table: &Map<String, Value>,
        no_options: &str,
        also: &[&'static str],
    ) -> Result<(), SettingsError> {
        let mut known = field_names::<T>().to_vec();
        for key in also {
            if !known.contains(key) {
                known.push(key);
            }
        }
        let mut unknown: Vec<&String> = table
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .collect();
        unknown.sort();
        let Some(first) = unknown.first() else {
            return Ok(());
        };
        let expected = if known.is_empty() {
            no_options.to_owned()
        } else if field_names::<T>().is_empty() {
            format!(
                "{no_options} of its own; expected one of `{}`",
                known.join("`, `")
            )
        } else {
            format!("expected one of `{}`", known.join("`, `"))
        };
        let mut path = at.to_vec();
        path.push(key(first));
        Err(self.error(&path, format!("unknown key `{first}`; {expected}")))
    }

    /// Deserializes `value` (the table of this scope, or a part of it at `at`), keying an
    /// error by the path serde was at.
    fn deserialize<T: DeserializeOwned>(
        &self,
        at: &[Seg],
        value: Value,
    ) -> Result<T, SettingsError> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let mut path = at.to_vec();
            for seg in e.path().iter() {
                match seg {
                    serde_path_to_error::Segment::Map { key } => path.push(Seg::Key(key.clone())),
                    serde_path_to_error::Segment::Seq { index } => path.push(Seg::Index(*index)),
                    serde_path_to_error::Segment::Enum { variant } => {
                        path.push(Seg::Key(variant.clone()))
                    }
                    _ => {}
                }
            }
            self.error(&path, message_of(e.into_inner()))
        })
    }
}

/// The message of a deserialization error: config's structured type mismatch, or the message
/// of a value's own check (which says what was expected), whole.
fn message_of(e: ConfigError) -> String {
    match e {
        ConfigError::Type {
            unexpected,
            expected,
            ..
        } => format!("expected {expected}, found {unexpected}"),
        ConfigError::At { error, .. } => message_of(*error),
        ConfigError::Message(message) => message,
        other => other.to_string(),
    }
}

/// What a value that is not a table was (`string "x"`), from config's type error.
fn found(e: ConfigError) -> String {
    match e {
        ConfigError::Type { unexpected, .. } => unexpected.to_string(),
        ConfigError::At { error, .. } => found(*error),
        other => other.to_string(),
    }
}

/// The keys serde's derive knows for `T` (its `deserialize_struct` field list), in
/// declaration order: the lists of known keys in errors come from the types themselves, so
/// they cannot drift from them.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error, Visitor};

    /// A deserializer that only records the fields a struct asks for.
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(Error::custom("probed"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    // The probe always fails: what it recorded on the way is the answer.
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// Settings from the merged tree's top-level table. `fallback` is the origin of values config
/// recorded none for.
fn settings_from_table(
    mut top: Map<String, Value>,
    fallback: Option<&str>,
) -> Result<Settings, SettingsError> {
    let scope = Scope {
        root: Value::new(None, ValueKind::Table(top.clone())),
        prefix: "",
        fallback,
    };
    scope.unknown_key::<TopLevel>(&[], &top, "there are no settings")?;
    if let Some(Value {
        kind: ValueKind::Table(retry),
        ..
    }) = top.get("retry")
    {
        scope.unknown_key::<crate::retry::RetryPolicy>(&[key("retry")], retry, "")?;
    }
    if let Some(Value {
        kind: ValueKind::Table(index),
        ..
    }) = top.get("tag_index")
    {
        scope.unknown_key::<TagIndexSettings>(&[key("tag_index")], index, "")?;
    }
    let backends = top.remove("backends");
    let raw: TopLevel = scope.deserialize(&[], Value::new(None, ValueKind::Table(top)))?;
    let backends = match backends {
        None => default_backends(),
        Some(value) => {
            let tables = value.into_table().map_err(|e| {
                scope.error(
                    &[key("backends")],
                    format!("expected a table of backends, found {}", found(e)),
                )
            })?;
            if tables.is_empty() {
                return Err(scope.error(
                    &[key("backends")],
                    "no backend configured; add one (kind = \"dummy\" to purge nothing on purpose)",
                ));
            }
            let mut backends = BTreeMap::new();
            // Sorted, so that of several bad backends the same one is always reported.
            for (name, value) in tables.into_iter().collect::<BTreeMap<_, _>>() {
                let prefix = format!("backends.{name}");
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
                {
                    return Err(SettingsError::new(
                        Some(prefix),
                        value.origin().or(fallback).map(str::to_owned),
                        "a backend name may only hold letters, digits, `-` and `_`",
                    ));
                }
                let backend = backend_from_value(value, &prefix, fallback)?;
                backends.insert(name, backend);
            }
            backends
        }
    };
    let settings = Settings {
        delivery: raw.delivery,
        shutdown_timeout: raw.shutdown_timeout,
        backends,
        retry: raw.retry,
        queue_capacity: raw.queue_capacity,
        when_full: raw.when_full,
        spill_dir: raw.spill_dir,
        repurge_after: raw.repurge_after,
        tag_index: raw.tag_index,
        agent: raw.agent,
    };
    if let Some(index) = &settings.tag_index {
        index
            .check()
            .map_err(|e| scope.error(&[key("tag_index"), key(e.key)], e.message))?;
    }
    if let Some(agent) = &settings.agent {
        agent
            .check()
            .map_err(|e| scope.error(&[key("agent"), key(e.key)], e.message))?;
    }
    check_top(&settings).map_err(|(path, message)| scope.error(&path, message))?;
    Ok(settings)
}

/// The rules of the top level that its types do not carry.
fn check_top(s: &Settings) -> Result<(), (Vec<Seg>, &'static str)> {
    if s.retry.max_attempts == 0 {
        return Err((
            vec![key("retry"), key("max_attempts")],
            "expected at least 1 (1 = no retries)",
        ));
    }
    if s.retry.max_backoff < s.retry.initial_backoff {
        return Err((
            vec![key("retry"), key("max_backoff")],
            "must not be shorter than retry.initial_backoff",
        ));
    }
    if s.queue_capacity == 0 {
        return Err((vec![key("queue_capacity")], "expected at least 1"));
    }
    if s.repurge_after.is_some_and(|d| d.is_zero()) {
        return Err((
            vec![key("repurge_after")],
            "expected more than 0s (leave it out for no second purge)",
        ));
    }
    Ok(())
}

/// One backend from its table: reads `kind`, checks the table's keys against that kind's,
/// deserializes them, then checks the kind's rules across keys. Errors are keyed below
/// `prefix` (`backends.NAME`).
fn backend_from_value(
    value: Value,
    prefix: &str,
    fallback: Option<&str>,
) -> Result<BackendTable, SettingsError> {
    let scope = Scope {
        root: value.clone(),
        prefix,
        fallback,
    };
    let mut table = value.into_table().map_err(|e| {
        scope.error(
            &[],
            format!("expected a table of backend options, found {}", found(e)),
        )
    })?;
    let kind = match table.remove("kind") {
        None => {
            return Err(scope.error(
                &[key("kind")],
                format!("missing `kind`; expected one of {BACKEND_KINDS}"),
            ));
        }
        Some(v) => v.into_string().map_err(|_| {
            scope.error(
                &[key("kind")],
                format!("expected a string, one of {BACKEND_KINDS}"),
            )
        })?,
    };
    let common = common_from_table(&scope, &kind, &mut table)?;
    fn options<T: DeserializeOwned>(
        scope: &Scope<'_>,
        table: Map<String, Value>,
    ) -> Result<T, SettingsError> {
        scope.unknown_key_also::<T>(
            &[],
            &table,
            "this backend has no options",
            field_names::<CommonKeys>(),
        )?;
        scope.deserialize(&[], Value::new(None, ValueKind::Table(table)))
    }
    let settings = match kind.as_str() {
        "log" => BackendSettings::Log(options(&scope, table)?),
        "dummy" => BackendSettings::Dummy(options(&scope, table)?),
        "memory" => BackendSettings::Memory(options(&scope, table)?),
        "varnish" => {
            let varnish: VarnishSettings = options(&scope, table)?;
            varnish
                .check()
                .map_err(|e| scope.error(&[key(e.key)], e.message))?;
            BackendSettings::Varnish(varnish)
        }
        "nginx" => {
            let nginx: NginxSettings = options(&scope, table)?;
            nginx
                .check()
                .map_err(|e| scope.error(&[key(e.key)], e.message))?;
            BackendSettings::Nginx(nginx)
        }
        "cloudflare" => {
            let cloudflare: CloudflareSettings = options(&scope, table)?;
            cloudflare
                .check()
                .map_err(|e| scope.error(&[key(e.key)], e.message))?;
            BackendSettings::Cloudflare(cloudflare)
        }
        "fastly" => {
            let fastly: FastlySettings = options(&scope, table)?;
            fastly
                .check()
                .map_err(|e| scope.error(&[key(e.key)], e.message))?;
            BackendSettings::Fastly(fastly)
        }
        "cloudfront" => {
            let mut cloudfront: CloudFrontSettings = options(&scope, table)?;
            // The distribution's hosts are the backend's `hosts`: one key, one meaning.
            cloudfront.hosts = common.route.hosts.clone();
            cloudfront
                .check()
                .map_err(|e| scope.error(&[key(e.key)], e.message))?;
            BackendSettings::CloudFront(cloudfront)
        }
        "akamai" => {
            let akamai: AkamaiSettings = options(&scope, table)?;
            akamai
                .check()
                .map_err(|e| scope.error(&[key(e.key)], e.message))?;
            BackendSettings::Akamai(akamai)
        }
        "nats" => {
            let nats: NatsSettings = options(&scope, table)?;
            nats.check()
                .map_err(|e| scope.error(&[key(e.key)], e.message))?;
            BackendSettings::Nats(nats)
        }
        other => {
            return Err(scope.error(
                &[key("kind")],
                format!("unknown backend kind `{other}`; expected one of {BACKEND_KINDS}"),
            ));
        }
    };
    let table = BackendTable { settings, common };
    if let BackendSettings::Varnish(v) = &table.settings
        && v.http_method == VarnishHttpMethod::Refresh
    {
        // A refreshed page is a hit on its new copy: a check could not tell it from a stale
        // one, and a refresh after it would fetch each page a second time.
        if table.common.verify.mode.is_on() {
            return Err(scope.error(
                &[key("verify")],
                "not with http_method = \"refresh\": the refreshed page is a hit on its new \
                 copy, which a check cannot tell from a stale one (each refresh's answer says \
                 whether Varnish replaced the page); use http_method = \"purge\" to verify",
            ));
        }
        if table.common.verify.refresh {
            return Err(scope.error(
                &[key("refresh")],
                "not with http_method = \"refresh\", which already refreshes every URL it \
                 purges, in place: refresh = true would fetch each page a second time",
            ));
        }
    }
    if table.common.verify.needs_address() && table.verify_url().is_none() {
        return Err(scope.error(
            &[key("verify_url")],
            "required with verify or refresh: the cache's public HTTP address (`http://HOST:PORT`), where \
             the check's GET goes (only nginx and varnish in http mode default to their first \
             server)",
        ));
    }
    Ok(table)
}

/// Takes the options every kind has (`hosts`, `paths`) out of a backend's table.
fn common_from_table(
    scope: &Scope<'_>,
    kind: &str,
    table: &mut Map<String, Value>,
) -> Result<BackendCommon, SettingsError> {
    let mut common = Map::new();
    for name in field_names::<CommonKeys>() {
        if let Some(v) = table.remove(*name) {
            common.insert((*name).to_owned(), v);
        }
    }
    if kind == "nats"
        && let Some(Value {
            kind: ValueKind::Table(_),
            ..
        }) = common.get("hosts")
    {
        return Err(scope.error(
            &[key("hosts")],
            "expected a list of host patterns (the hosts this backend serves); the table of \
             host → group of a nats backend is `[backends.NAME.host_groups]`",
        ));
    }
    let raw: CommonKeys = scope.deserialize(&[], Value::new(None, ValueKind::Table(common)))?;
    // An empty list is the same as none (every host): what `hosts = []` of a CloudFront
    // backend always meant for routing (it sends no absolute URL either way).
    let mut verify = crate::verify::VerifySettings::default();
    verify.mode = raw.verify;
    verify.url = raw.verify_url;
    verify.header = raw.verify_header;
    if let Some(hit) = raw.verify_hit {
        if hit.is_empty() || hit.iter().any(|h| h.trim().is_empty()) {
            return Err(scope.error(
                &[key("verify_hit")],
                "expected the header's values that mean a hit, like [\"HIT\"]",
            ));
        }
        verify.hit = hit;
    }
    if let Some(n) = raw.verify_concurrency {
        verify.concurrency = n;
    }
    verify.refresh = raw.refresh;
    verify.refresh_rate = raw.refresh_rate;
    Ok(BackendCommon {
        route: crate::routing::BackendRoute::default()
            .with_hosts(raw.hosts.unwrap_or_default())
            .paths(raw.paths),
        verify,
    })
}

// ----- sources ----------------------------------------------------------------------------

/// TOML text (a file's, or given as a string) as a config source whose every value carries
/// one origin: the path as the caller gave it (config's own `File` records it relative to the
/// working directory), or "settings text".
#[derive(Clone, Debug)]
struct TomlSource {
    text: String,
    origin: String,
}

/// `value` and everything in it, recorded as coming from `origin`.
fn stamped(value: Value, origin: &String) -> Value {
    let kind = match value.kind {
        ValueKind::Table(t) => ValueKind::Table(
            t.into_iter()
                .map(|(k, v)| (k, stamped(v, origin)))
                .collect(),
        ),
        ValueKind::Array(a) => {
            ValueKind::Array(a.into_iter().map(|v| stamped(v, origin)).collect())
        }
        other => other,
    };
    Value::new(Some(origin), kind)
}

impl Source for TomlSource {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, ConfigError> {
        let table = config::File::from_str(&self.text, config::FileFormat::Toml).collect()?;
        Ok(table
            .into_iter()
            .map(|(k, v)| (k, stamped(v, &self.origin)))
            .collect())
    }

    /// Merged with [`merge`], which keeps the origin of tables (config's own merge rebuilds
    /// every table without one).
    fn collect_to(&self, cache: &mut Value) -> Result<(), ConfigError> {
        merge(cache, Value::new(None, ValueKind::Table(self.collect()?)));
        Ok(())
    }
}

/// Deep-merges `from` into `into`: tables key by key (a table keeps the origin of the source
/// that made it first), anything else replaced with its origin.
fn merge(into: &mut Value, from: Value) {
    let origin = from.origin().map(str::to_owned);
    match (&mut into.kind, from.kind) {
        (ValueKind::Table(old), ValueKind::Table(new)) => {
            for (k, v) in new {
                match old.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        old.insert(k, v);
                    }
                }
            }
        }
        (_, kind) => *into = Value::new(origin.as_ref(), kind),
    }
}

fn from_config_error(e: ConfigError, file: Option<&str>) -> SettingsError {
    match e {
        ConfigError::FileParse { cause, .. } => SettingsError::new(
            None,
            file.map(str::to_owned),
            format!("not valid TOML: {}", cause.to_string().trim_end()),
        )
        .of_kind(SettingsErrorKind::Syntax),
        // The environment source's own errors name the variable.
        ConfigError::Message(message) => SettingsError::new(None, None, message),
        other => SettingsError::new(None, file.map(str::to_owned), other.to_string()),
    }
}

/// Where settings come from: a file (optional or required) and environment overrides.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct SettingsLoader {
    file: Option<PathBuf>,
    file_required: bool,
    toml: Option<String>,
    env: Option<Vec<(String, String)>>,
    skip_env: bool,
}

impl SettingsLoader {
    /// Reads the default sources: the file named by `CACHE_PURGE_CONFIG` (which must exist),
    /// else `cache-purge.toml` if it exists; then the process's `CACHE_PURGE__*` variables.
    pub fn new() -> Self {
        match std::env::var_os(FILE_ENV) {
            Some(path) if !path.is_empty() => Self::default().file(path),
            _ => Self {
                file: Some(PathBuf::from(DEFAULT_FILE)),
                ..Self::default()
            },
        }
    }

    /// Reads this file, which must exist.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self.file_required = true;
        self
    }

    /// Makes a missing default file (`cache-purge.toml`) an error
    /// ([`SettingsErrorKind::MissingFile`]) instead of the defaults, for a production app that
    /// must not start without its cache settings (started from another directory, say).
    pub fn require_file(mut self) -> Self {
        self.file_required = true;
        self
    }

    /// Reads settings from TOML text instead of a file.
    pub fn toml(mut self, text: impl Into<String>) -> Self {
        self.file = None;
        self.toml = Some(text.into());
        self
    }

    /// Uses these variables instead of the process environment for overrides (tests).
    pub fn env_vars<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Ignores environment overrides.
    pub fn without_env(mut self) -> Self {
        self.skip_env = true;
        self
    }

    /// Reads, merges and checks the settings.
    pub fn load(self) -> Result<Settings, SettingsError> {
        // The sources are merged here, one after the other, rather than by config's
        // `ConfigBuilder`: its merge rebuilds every table without an origin, and the origin of
        // a table is what an error about a key missing from it names.
        let mut sources: Vec<Box<dyn Source + Send + Sync>> = Vec::new();
        let mut label = None;
        if let Some(text) = self.toml {
            let origin = "settings text".to_owned();
            sources.push(Box::new(TomlSource {
                text,
                origin: origin.clone(),
            }));
            label = Some(origin);
        } else if let Some(path) = &self.file {
            let shown = path.display().to_string();
            let exists = path.exists();
            if self.file_required && !exists {
                return Err(SettingsError::new(
                    None,
                    Some(shown),
                    "the settings file does not exist",
                )
                .of_kind(SettingsErrorKind::MissingFile));
            }
            if !exists {
                // A default that silently purges nothing would be a defect: say where we
                // looked and what is used instead.
                let looked = std::env::current_dir()
                    .map(|d| d.join(path).display().to_string())
                    .unwrap_or_else(|_| shown.clone());
                tracing::warn!(
                    target: "cache_purge_hooks",
                    looked_for = %looked,
                    "no cache purge settings file (and no {FILE_ENV}): using the defaults, one `log` backend that purges nothing; set {FILE_ENV} or create {DEFAULT_FILE}, or make this an error with SettingsLoader::require_file()"
                );
            }
            if exists {
                let bytes = std::fs::read(path).map_err(|e| {
                    SettingsError::new(None, Some(shown.clone()), format!("cannot read: {e}"))
                        .of_kind(SettingsErrorKind::Unreadable)
                })?;
                // As config's own file source: skip a UTF-8 byte order mark.
                let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
                sources.push(Box::new(TomlSource {
                    text: String::from_utf8_lossy(bytes).into_owned(),
                    origin: shown.clone(),
                }));
                label = Some(shown);
            }
        }
        if !self.skip_env {
            env::warn_near_misses(self.env.as_deref());
            sources.push(Box::new(env::EnvSource::new(self.env)));
        }
        let mut tree = Value::new(None, ValueKind::Table(Map::new()));
        for source in &sources {
            source
                .collect_to(&mut tree)
                .map_err(|e| from_config_error(e, label.as_deref()))?;
        }
        let top = tree
            .into_table()
            .map_err(|e| from_config_error(e, label.as_deref()))?;
        settings_from_table(top, label.as_deref())
    }
}

impl Settings {
    /// [`SettingsLoader::new`]`.load()`: the default file (if present) and the environment.
    pub fn load() -> Result<Self, SettingsError> {
        SettingsLoader::new().load()
    }

    /// Reads this file (which must exist), then the environment.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SettingsError> {
        SettingsLoader::new().file(path.as_ref()).load()
    }

    /// Parses TOML text, without environment overrides.
    pub fn from_toml_str(text: &str) -> Result<Self, SettingsError> {
        SettingsLoader::default().toml(text).without_env().load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str) -> Result<Settings, SettingsError> {
        Settings::from_toml_str(toml)
    }

    #[test]
    fn empty_text_gives_defaults() {
        let s = load("").unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.backends.keys().collect::<Vec<_>>(), ["log"]);
    }

    #[test]
    fn full_varnish_and_nginx_settings_parse() {
        let s = load(
            r#"
            delivery = "immediate"
            shutdown_timeout = "3s"
            [backends.edge]
            kind = "varnish"
            mode = "cli"
            servers = ["127.0.0.1:6082", "[::1]:6083"]
            secret_file = "/tmp/secret"
            site_domain = "example.com"
            ban_style = "lurker"
            timeout = "250ms"
            [backends.ngx]
            kind = "nginx"
            mode = "files"
            cache_dir = "/var/cache/nginx"
            levels = "1:2"
            key_template = "$uri$is_args$args"
            "#,
        )
        .unwrap();
        assert_eq!(s.delivery, Delivery::Immediate);
        assert_eq!(s.shutdown_timeout, Duration::from_secs(3));
        let BackendSettings::Varnish(v) = &s.backends["edge"].settings else {
            panic!()
        };
        assert_eq!(v.servers.len(), 2);
        assert_eq!(v.servers[1].host(), "::1");
        assert_eq!(v.timeout, Duration::from_millis(250));
        assert_eq!(v.ban_style, BanStyle::Lurker);
        let BackendSettings::Nginx(n) = &s.backends["ngx"].settings else {
            panic!()
        };
        assert_eq!(n.mode, NginxMode::Files);
        assert_eq!(n.servers, Vec::<ServerAddr>::new());
    }

    #[test]
    fn known_keys_come_from_the_types() {
        assert_eq!(
            field_names::<TopLevel>(),
            [
                "delivery",
                "shutdown_timeout",
                "backends",
                "retry",
                "queue_capacity",
                "when_full",
                "spill_dir",
                "repurge_after",
                "tag_index",
                "agent"
            ]
        );
        assert!(field_names::<LogSettings>().is_empty());
        assert_eq!(field_names::<MemorySettings>(), ["max_batch"]);
    }
}
