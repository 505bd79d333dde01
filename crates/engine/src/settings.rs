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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The settings file read when no path is given.
pub const DEFAULT_FILE: &str = "cache-purge.toml";
/// The environment variable that names another settings file.
pub const FILE_ENV: &str = "CACHE_PURGE_CONFIG";
/// The prefix of environment variables that override settings (`CACHE_PURGE__DELIVERY=...`).
pub const ENV_PREFIX: &str = "CACHE_PURGE";

/// Deserializes a fieldless enum from its snake_case name, with an error that lists the
/// accepted names (serde's own message through `config` names Rust types instead), and
/// serializes it as that name.
macro_rules! named_enum {
    ($ty:ident, $what:literal, { $($variant:ident = $name:literal),+ $(,)? }) => {
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(match self {
                    $(Self::$variant => $name,)+
                })
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                match s.as_str() {
                    $($name => Ok(Self::$variant),)+
                    _ => Err(serde::de::Error::custom(format!(
                        "unknown {} `{}`; expected one of `{}`",
                        $what,
                        s,
                        [$($name),+].join("`, `")
                    ))),
                }
            }
        }
    };
}

named_enum!(Delivery, "delivery mode", { Immediate = "immediate", AfterCommit = "after_commit", Outbox = "outbox" });
named_enum!(VarnishMode, "varnish mode", { Cli = "cli", Varnishadm = "varnishadm", Http = "http" });
named_enum!(BanStyle, "ban style", { ReqUrl = "req_url", Lurker = "lurker" });
named_enum!(VarnishHttpMethod, "varnish http method", { Purge = "purge", Ban = "ban" });
named_enum!(NginxMode, "nginx mode", { Http = "http", Files = "files", Wipe = "wipe" });
named_enum!(QueueFull, "queue policy", { Spill = "spill", Wait = "wait", Coalesce = "coalesce" });

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

/// The whole settings file. Serializes back to the file's form (what `cache-purge settings`
/// prints).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Settings {
    /// When purges are sent (`delivery`, default `after_commit`).
    pub delivery: Delivery,
    /// How long [`shutdown`](crate::Purger::shutdown) waits for queued purges
    /// (`shutdown_timeout`, default `10s`).
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// The backends by name (`[backends.NAME]`). Default: one `log` backend named `log`.
    pub backends: BTreeMap<String, BackendSettings>,
    /// Retries and dead letters (`[retry]`).
    pub retry: crate::retry::RetryPolicy,
    /// Targets waiting per backend before the `when_full` policy applies (`queue_capacity`,
    /// default 100000); see [`crate::Purger::purge`].
    pub queue_capacity: usize,
    /// What a full queue does (`when_full`: `"coalesce"`, the default, or `"wait"`).
    pub when_full: QueueFull,
}

/// The file's top level, with each backend's table kept raw until its `kind` is known, so
/// that errors inside it name the exact key (serde's internally tagged enums lose the path).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    delivery: Delivery,
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    shutdown_timeout: Duration,
    #[serde(default)]
    backends: Option<BTreeMap<String, config::Value>>,
    #[serde(default)]
    retry: crate::retry::RetryPolicy,
    #[serde(default = "default_queue_capacity")]
    queue_capacity: usize,
    #[serde(default)]
    when_full: QueueFull,
}

fn default_queue_capacity() -> usize {
    100_000
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_backends() -> BTreeMap<String, BackendSettings> {
    BTreeMap::from([("log".to_owned(), BackendSettings::Log(LogSettings {}))])
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
        }
    }
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
        }
    }
}

const BACKEND_KINDS: &str = "`log`, `dummy`, `memory`, `varnish`, `nginx`";

/// `kind = "log"` has no options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LogSettings {}

/// `kind = "dummy"` has no options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DummySettings {}

/// Options of `kind = "memory"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MemorySettings {
    /// Targets per batch (`max_batch`, default 1000).
    #[serde(default = "default_memory_batch")]
    pub max_batch: usize,
}

fn default_memory_batch() -> usize {
    1000
}

/// How the Varnish backend talks to Varnish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum VarnishMode {
    /// The admin CLI protocol over TCP, natively (no process forked).
    #[default]
    Cli,
    /// Fork the `varnishadm` binary (argv, no shell) for each batch.
    Varnishadm,
    /// HTTP `PURGE` (per URL) or `BAN` (per batch) requests to Varnish's HTTP port.
    Http,
}

/// Which request field a Varnish ban tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BanStyle {
    /// `req.url ~ ...` (works with any VCL; the ban list only shrinks as objects expire).
    #[default]
    ReqUrl,
    /// `obj.http.x-url ~ ...`, cleaned by the ban lurker; needs the documented VCL that copies
    /// the URL and host into object headers.
    Lurker,
}

/// The HTTP request the `http` Varnish mode sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum VarnishHttpMethod {
    /// One `PURGE <url>` per URL (the VCL does `return (purge)`).
    #[default]
    Purge,
    /// One `BAN` per batch, the escaped regex in a header.
    Ban,
}

/// Options of `kind = "varnish"`. Names follow the seed's `VARNISHADM_*` settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct VarnishSettings {
    /// `cli` (default), `varnishadm` or `http`.
    #[serde(default)]
    pub mode: VarnishMode,
    /// `host:port` of each server: the admin (`-T`) address in `cli`/`varnishadm` mode
    /// (default `localhost:6082`), the HTTP address in `http` mode (default `localhost:80`).
    /// Also accepts one comma-separated string (handy in environment variables).
    #[serde(default, deserialize_with = "string_or_list")]
    pub servers: Vec<String>,
    /// The admin secret file (`-S`), default `/etc/varnish/secret`.
    #[serde(default = "default_secret_file")]
    pub secret_file: PathBuf,
    /// Ban only objects of this host (matched exactly); default: any host.
    #[serde(default)]
    pub site_domain: Option<String>,
    /// The `varnishadm` binary for `mode = "varnishadm"`, default `/usr/bin/varnishadm`.
    #[serde(default = "default_varnishadm")]
    pub varnishadm_bin: PathBuf,
    /// `req_url` (default) or `lurker`.
    #[serde(default)]
    pub ban_style: BanStyle,
    /// For `ban_style = "lurker"`: the object header holding the URL, default `x-url`.
    #[serde(default = "default_lurker_url_header")]
    pub lurker_url_header: String,
    /// For `ban_style = "lurker"`: the object header holding the host, default `x-host`.
    #[serde(default = "default_lurker_host_header")]
    pub lurker_host_header: String,
    /// In `http` mode: `purge` (default) or `ban`.
    #[serde(default)]
    pub http_method: VarnishHttpMethod,
    /// In `http` mode with `http_method = "ban"`: the header carrying the ban regex, default
    /// `X-Ban-Url`.
    #[serde(default = "default_ban_header")]
    pub ban_header: String,
    /// In `http` mode with `http_method = "ban"`: the header carrying the host regex, sent
    /// when the URLs have a host (absolute URLs, or `site_domain`), default `X-Ban-Host`.
    #[serde(default = "default_ban_host_header")]
    pub ban_host_header: String,
    /// The longest ban expression sent in one command (bytes, default 8000); larger batches are
    /// split.
    #[serde(default = "default_max_ban_length")]
    pub max_ban_length: usize,
    /// Timeout of one request or command, default `5s`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// In `http` mode: `PURGE` requests in flight at once per server, default 8.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

impl Default for VarnishSettings {
    /// The settings of an empty `[backends.NAME]` table with `kind = "varnish"`.
    fn default() -> Self {
        Self {
            mode: VarnishMode::default(),
            servers: Vec::new(),
            secret_file: default_secret_file(),
            site_domain: None,
            varnishadm_bin: default_varnishadm(),
            ban_style: BanStyle::default(),
            lurker_url_header: default_lurker_url_header(),
            lurker_host_header: default_lurker_host_header(),
            http_method: VarnishHttpMethod::default(),
            ban_header: default_ban_header(),
            ban_host_header: default_ban_host_header(),
            max_ban_length: default_max_ban_length(),
            timeout: default_timeout(),
            concurrency: default_concurrency(),
        }
    }
}

impl VarnishSettings {
    /// The configured servers, or the default one for the mode (`localhost:6082` for the
    /// admin CLI, `localhost:80` for HTTP).
    pub fn servers_or_default(&self) -> Vec<String> {
        if !self.servers.is_empty() {
            return self.servers.clone();
        }
        match self.mode {
            VarnishMode::Http => vec!["localhost:80".to_owned()],
            _ => vec!["localhost:6082".to_owned()],
        }
    }
}

/// How the nginx backend purges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum NginxMode {
    /// HTTP requests to ngx_cache_purge.
    #[default]
    Http,
    /// Delete the exact cache file of each URL (`cache_dir`, `levels`, `key_template`).
    Files,
    /// Delete everything in `cache_dir` (the seed's "dumb" backend), once per batch.
    Wipe,
}

/// Options of `kind = "nginx"`. Names follow the seed's `NGX_CACHE_PURGE_*` settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NginxSettings {
    /// `http` (default), `files` or `wipe`.
    #[serde(default)]
    pub mode: NginxMode,
    /// `host:port` of each nginx (default `localhost:80`). A comma-separated string works too.
    #[serde(default, deserialize_with = "string_or_list")]
    pub servers: Vec<String>,
    /// A `Host` header to send instead of the server's address.
    #[serde(default)]
    pub host_header: Option<String>,
    /// For the separate-location style (`location ~ ^/purge(/.*)$`): the prefix put before the
    /// URL's path, like `/purge`. Absent: the same-location style (`PURGE /path`).
    #[serde(default)]
    pub purge_prefix: Option<String>,
    /// The request method, default `PURGE`.
    #[serde(default = "default_purge_method")]
    pub method: String,
    /// Timeout of one request, default `5s`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Requests in flight at once per backend, default 8.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// The `proxy_cache_path` directory, required by `files` and `wipe`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// The `levels=` of `proxy_cache_path`, default `1:2`.
    #[serde(default = "default_levels")]
    pub levels: String,
    /// In `files` mode (where it is required): your `proxy_cache_key`, verbatim. Without a
    /// `proxy_cache_key`, nginx 1.22 keys `proxy_pass http://origin;` as
    /// `http://$proxy_host$request_uri` (not the documented `$scheme$proxy_host$request_uri`),
    /// which is why there is no default: a wrong key purges nothing.
    /// Understood variables: `$scheme`, `$proxy_host`, `$host`, `$http_host`, `$request_uri`,
    /// `$uri`, `$is_args`, `$args` and `$query_string`; `${name}` works too.
    #[serde(default)]
    pub key_template: Option<String>,
    /// In `files` mode: the value of `$proxy_host` in the key (the host of `proxy_pass`,
    /// like `origin` for `proxy_pass http://origin;`). Required when the key template uses it.
    #[serde(default)]
    pub proxy_host: Option<String>,
    /// In `files` mode: the value of `$scheme` for URLs given as paths, default `http`
    /// (absolute URLs bring their own).
    #[serde(default = "default_scheme")]
    pub scheme: String,
}

impl Default for NginxSettings {
    /// The settings of an empty `[backends.NAME]` table with `kind = "nginx"`.
    fn default() -> Self {
        Self {
            mode: NginxMode::default(),
            servers: Vec::new(),
            host_header: None,
            purge_prefix: None,
            method: default_purge_method(),
            timeout: default_timeout(),
            concurrency: default_concurrency(),
            cache_dir: None,
            levels: default_levels(),
            key_template: None,
            proxy_host: None,
            scheme: default_scheme(),
        }
    }
}

impl NginxSettings {
    /// The configured servers, or `localhost:80`.
    pub fn servers_or_default(&self) -> Vec<String> {
        if self.servers.is_empty() {
            vec!["localhost:80".to_owned()]
        } else {
            self.servers.clone()
        }
    }
}

/// The variables an nginx `key_template` may use.
pub const NGINX_KEY_VARIABLES: &[&str] = &[
    "scheme",
    "proxy_host",
    "host",
    "http_host",
    "request_uri",
    "uri",
    "is_args",
    "args",
    "query_string",
];

/// One piece of a parsed nginx key template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPart {
    /// Text copied as is.
    Literal(String),
    /// A variable, by name without the `$` (one of [`NGINX_KEY_VARIABLES`]).
    Variable(&'static str),
}

/// Parses an nginx `proxy_cache_key` template into literal text and known variables.
pub fn parse_key_template(template: &str) -> Result<Vec<KeyPart>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        literal.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in `{template}`"))?;
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        let known = NGINX_KEY_VARIABLES
            .iter()
            .find(|v| **v == name)
            .ok_or_else(|| {
                format!(
                    "unknown variable `${name}` in `{template}`; understood: ${}",
                    NGINX_KEY_VARIABLES.join(", $")
                )
            })?;
        if !literal.is_empty() {
            parts.push(KeyPart::Literal(std::mem::take(&mut literal)));
        }
        parts.push(KeyPart::Variable(known));
        rest = after;
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(KeyPart::Literal(literal));
    }
    if !parts
        .iter()
        .any(|p| matches!(p, KeyPart::Variable("request_uri" | "uri")))
    {
        return Err(format!(
            "`{template}` uses neither $request_uri nor $uri: every URL would share one key"
        ));
    }
    Ok(parts)
}

fn default_secret_file() -> PathBuf {
    PathBuf::from("/etc/varnish/secret")
}
fn default_varnishadm() -> PathBuf {
    PathBuf::from("/usr/bin/varnishadm")
}
fn default_lurker_url_header() -> String {
    "x-url".into()
}
fn default_lurker_host_header() -> String {
    "x-host".into()
}
fn default_ban_header() -> String {
    "X-Ban-Url".into()
}
fn default_ban_host_header() -> String {
    "X-Ban-Host".into()
}
fn default_max_ban_length() -> usize {
    8000
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_purge_method() -> String {
    "PURGE".into()
}
fn default_concurrency() -> usize {
    8
}
fn default_levels() -> String {
    "1:2".into()
}
fn default_scheme() -> String {
    "http".into()
}

fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

/// A setting is invalid. Says which key, where it came from and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsError {
    /// The key, dotted (`backends.edge.timeout`), when the error concerns one.
    pub key: Option<String>,
    /// Where the value came from: the file's path or the environment variable's name.
    pub origin: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
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
            key,
            origin,
            message: message.into(),
        }
    }
}

/// Where settings come from: a file (optional or required) and environment overrides.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct SettingsLoader {
    file: Option<PathBuf>,
    file_required: bool,
    toml: Option<String>,
    env: Option<HashMap<String, String>>,
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
        let mut builder = config::Config::builder();
        let mut file_label = None;
        if let Some(text) = &self.toml {
            builder = builder.add_source(config::File::from_str(text, config::FileFormat::Toml));
            file_label = Some("settings text".to_owned());
        } else if let Some(path) = &self.file {
            let exists = path.exists();
            if self.file_required && !exists {
                return Err(SettingsError::new(
                    None,
                    Some(path.display().to_string()),
                    "the settings file does not exist",
                ));
            }
            if exists {
                builder = builder.add_source(
                    config::File::from(path.as_path()).format(config::FileFormat::Toml),
                );
                file_label = Some(path.display().to_string());
            }
        }
        if !self.skip_env {
            let env = config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(self.env.clone());
            builder = builder.add_source(env);
        }
        let config = builder
            .build()
            .map_err(|e| from_config_error(e, &file_label))?;
        let origin = |key: &str| origin_of(key, &file_label, self.env.as_ref());
        let fail = |key: String, message: String| {
            let origin = origin(&key);
            SettingsError::new(Some(key), origin, message)
        };
        let raw: RawSettings = serde_path_to_error::deserialize(config).map_err(|e| {
            let (key, message) = describe(e, "");
            fail(key, message)
        })?;
        let backends = match raw.backends {
            None => default_backends(),
            Some(tables) => {
                let mut backends = BTreeMap::new();
                for (name, value) in tables {
                    let prefix = format!("backends.{name}");
                    let backend =
                        backend_from_value(value, &prefix).map_err(|(k, m)| fail(k, m))?;
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
        };
        settings.validate().map_err(|mut e| {
            if let Some(key) = &e.key {
                e.origin = origin(key);
            }
            e
        })?;
        Ok(settings)
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

    /// Checks what types alone cannot: required options, ranges, formats.
    fn validate(&self) -> Result<(), SettingsError> {
        let err = |key: String, msg: String| Err(SettingsError::new(Some(key), None, msg));
        if self.retry.max_attempts == 0 {
            return err(
                "retry.max_attempts".into(),
                "expected at least 1 (1 = no retries)".into(),
            );
        }
        if self.retry.max_backoff < self.retry.initial_backoff {
            return err(
                "retry.max_backoff".into(),
                "must not be shorter than retry.initial_backoff".into(),
            );
        }
        if self.queue_capacity == 0 {
            return err("queue_capacity".into(), "expected at least 1".into());
        }
        if self.backends.is_empty() {
            return err(
                "backends".into(),
                "no backend configured; add one (kind = \"dummy\" to purge nothing on purpose)"
                    .into(),
            );
        }
        for (name, backend) in &self.backends {
            let key = |k: &str| format!("backends.{name}.{k}");
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
            {
                return err(
                    format!("backends.{name}"),
                    "a backend name may only hold letters, digits, `-` and `_`".into(),
                );
            }
            let servers = match backend {
                BackendSettings::Memory(m) if m.max_batch == 0 => {
                    return err(key("max_batch"), "expected a number of at least 1".into());
                }
                BackendSettings::Varnish(v) => {
                    if v.concurrency == 0 {
                        return err(key("concurrency"), "expected at least 1".into());
                    }
                    if v.max_ban_length < 256 {
                        return err(
                            key("max_ban_length"),
                            format!("expected at least 256 bytes, got {}", v.max_ban_length),
                        );
                    }
                    for (k, h) in [
                        ("lurker_url_header", &v.lurker_url_header),
                        ("lurker_host_header", &v.lurker_host_header),
                        ("ban_header", &v.ban_header),
                        ("ban_host_header", &v.ban_host_header),
                    ] {
                        if !is_token(h) {
                            return err(key(k), format!("`{h}` is not a valid header name"));
                        }
                    }
                    if let Some(d) = &v.site_domain
                        && !is_host(d)
                    {
                        return err(
                            key("site_domain"),
                            format!("`{d}` is not a host name (letters, digits, `-`, `.`, port)"),
                        );
                    }
                    Some(&v.servers)
                }
                BackendSettings::Nginx(n) => {
                    if !is_token(&n.method) {
                        return err(
                            key("method"),
                            format!("`{}` is not an HTTP method", n.method),
                        );
                    }
                    if n.concurrency == 0 {
                        return err(key("concurrency"), "expected at least 1".into());
                    }
                    if let Some(p) = &n.purge_prefix
                        && (!p.starts_with('/') || p.ends_with('/') || p.contains(['?', '#', ' ']))
                    {
                        return err(
                            key("purge_prefix"),
                            format!(
                                "`{p}` must start with `/`, not end with `/`, and hold no `?`, `#` or space"
                            ),
                        );
                    }
                    if let Some(h) = &n.host_header
                        && !is_host(h)
                    {
                        return err(key("host_header"), format!("`{h}` is not a host name"));
                    }
                    if let Err(e) = parse_levels(&n.levels) {
                        return err(key("levels"), e);
                    }
                    if matches!(n.mode, NginxMode::Files | NginxMode::Wipe) && n.cache_dir.is_none()
                    {
                        return err(
                            key("cache_dir"),
                            "required with mode = \"files\" or \"wipe\": the proxy_cache_path directory".into(),
                        );
                    }
                    if n.mode == NginxMode::Files {
                        let Some(template) = &n.key_template else {
                            return err(
                                key("key_template"),
                                "required with mode = \"files\": your proxy_cache_key, verbatim (without one, nginx uses \"http://$proxy_host$request_uri\" for proxy_pass http://...)".into(),
                            );
                        };
                        let parts = match parse_key_template(template) {
                            Ok(p) => p,
                            Err(e) => return err(key("key_template"), e),
                        };
                        if n.proxy_host.is_none()
                            && parts.contains(&KeyPart::Variable("proxy_host"))
                        {
                            return err(
                                key("proxy_host"),
                                format!(
                                    "required because key_template `{template}` uses $proxy_host: the host of your proxy_pass (like `origin`)"
                                ),
                            );
                        }
                        if n.host_header.is_none()
                            && parts
                                .iter()
                                .any(|p| matches!(p, KeyPart::Variable("host" | "http_host")))
                        {
                            return err(
                                key("host_header"),
                                format!(
                                    "required because key_template `{template}` uses $host: the site's host name"
                                ),
                            );
                        }
                    }
                    if !matches!(n.scheme.as_str(), "http" | "https") {
                        return err(
                            key("scheme"),
                            format!("expected `http` or `https`, got `{}`", n.scheme),
                        );
                    }
                    Some(&n.servers)
                }
                _ => None,
            };
            for (i, s) in servers.into_iter().flatten().enumerate() {
                if let Err(e) = parse_server(s) {
                    return err(format!("backends.{name}.servers[{i}]"), e);
                }
            }
        }
        Ok(())
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_host(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']'))
}

/// Parses `host:port` (`[::1]:6082` for IPv6).
pub fn parse_server(s: &str) -> Result<(String, u16), String> {
    let bad = || format!("`{s}` is not `host:port`");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
        (h, p)
    } else {
        s.rsplit_once(':').ok_or_else(bad)?
    };
    if host.is_empty() || !is_host(host) {
        return Err(bad());
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{port}` in `{s}` is not a port number"))?;
    if port == 0 {
        return Err(format!("port 0 in `{s}`"));
    }
    Ok((host.to_owned(), port))
}

/// Parses an nginx `levels=` value (`1:2`, up to three levels of 1 or 2 characters).
pub fn parse_levels(s: &str) -> Result<Vec<usize>, String> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let levels: Vec<usize> = s
        .split(':')
        .map(|p| match p {
            "1" => Ok(1),
            "2" => Ok(2),
            _ => Err(format!(
                "`{s}` is not an nginx levels value: up to three levels of 1 or 2, like `1:2`"
            )),
        })
        .collect::<Result<_, _>>()?;
    if levels.len() > 3 {
        return Err(format!("`{s}` has more than three levels"));
    }
    Ok(levels)
}

fn from_config_error(e: config::ConfigError, file: &Option<String>) -> SettingsError {
    match e {
        config::ConfigError::FileParse { uri, cause } => SettingsError::new(
            None,
            file.clone().or(uri),
            format!("not valid TOML: {}", cause.to_string().trim_end()),
        ),
        config::ConfigError::Foreign(cause) => {
            SettingsError::new(None, file.clone(), format!("cannot read: {cause}"))
        }
        other => SettingsError::new(None, file.clone(), other.to_string()),
    }
}

/// Builds one backend from its raw table: reads `kind`, then deserializes the rest into that
/// kind's options.
fn backend_from_value(
    value: config::Value,
    prefix: &str,
) -> Result<BackendSettings, (String, String)> {
    let mut table = value.into_table().map_err(|e| {
        (
            prefix.to_owned(),
            format!(
                "expected a table of backend options, {}",
                strip_key(&e.to_string())
            ),
        )
    })?;
    let kind_key = format!("{prefix}.kind");
    let kind = match table.remove("kind") {
        None => {
            return Err((
                kind_key,
                format!("missing `kind`; expected one of {BACKEND_KINDS}"),
            ));
        }
        Some(v) => v.into_string().map_err(|_| {
            (
                kind_key.clone(),
                format!("expected a string, one of {BACKEND_KINDS}"),
            )
        })?,
    };
    fn options<T: serde::de::DeserializeOwned>(
        table: config::Map<String, config::Value>,
        prefix: &str,
    ) -> Result<T, (String, String)> {
        serde_path_to_error::deserialize(config::Value::from(table))
            .map_err(|e| describe(e, prefix))
    }
    Ok(match kind.as_str() {
        "log" => BackendSettings::Log(options(table, prefix)?),
        "dummy" => BackendSettings::Dummy(options(table, prefix)?),
        "memory" => BackendSettings::Memory(options(table, prefix)?),
        "varnish" => BackendSettings::Varnish(options(table, prefix)?),
        "nginx" => BackendSettings::Nginx(options(table, prefix)?),
        other => {
            return Err((
                kind_key,
                format!("unknown backend kind `{other}`; expected one of {BACKEND_KINDS}"),
            ));
        }
    })
}

/// Removes the ` for key `...`` that `config` appends: the key is reported separately.
fn strip_key(message: &str) -> String {
    match message.find(" for key `") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Turns a deserialization error into (dotted key, message).
fn describe(e: serde_path_to_error::Error<config::ConfigError>, prefix: &str) -> (String, String) {
    let path = e.path().to_string();
    let mut key = match (prefix.is_empty(), path.as_str()) {
        (_, "." | "") => prefix.to_owned(),
        (true, p) => p.to_owned(),
        (false, p) => format!("{prefix}.{p}"),
    };
    let message = match e.into_inner() {
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => format!("expected {expected}, found {unexpected}"),
        config::ConfigError::Message(m) => strip_key(&m),
        other => strip_key(&other.to_string()),
    };
    let message = if message.ends_with("expected a duration") {
        format!("{message} like \"5s\" or \"250ms\"")
    } else {
        message
    };
    let message = if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default();
        if !key.ends_with(field) {
            key = if key.is_empty() {
                field.to_owned()
            } else {
                format!("{key}.{field}")
            };
        }
        let expected = rest
            .split_once(", ")
            .map(|x| x.1)
            .unwrap_or("this backend has no options");
        let expected = if expected.starts_with("there are no fields") {
            "this backend has no options"
        } else {
            expected
        };
        format!("unknown key `{field}`; {expected}")
    } else if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or_default();
        key = if key.is_empty() {
            field.to_owned()
        } else {
            format!("{key}.{field}")
        };
        format!("missing required `{field}`")
    } else {
        message
    };
    (key, message)
}

/// Whether a key's value came from an environment variable or the file.
fn origin_of(
    key: &str,
    file: &Option<String>,
    env: Option<&HashMap<String, String>>,
) -> Option<String> {
    let base = key.split('[').next().unwrap_or_default();
    let var = format!("{ENV_PREFIX}__{}", base.replace('.', "__").to_uppercase());
    let in_env = match env {
        Some(vars) => vars.keys().any(|k| k.eq_ignore_ascii_case(&var)),
        None => std::env::vars_os().any(|(k, _)| k.to_string_lossy().eq_ignore_ascii_case(&var)),
    };
    if in_env {
        Some(format!("environment variable {var}"))
    } else {
        file.clone()
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
        let BackendSettings::Varnish(v) = &s.backends["edge"] else {
            panic!()
        };
        assert_eq!(v.servers.len(), 2);
        assert_eq!(v.timeout, Duration::from_millis(250));
        assert_eq!(v.ban_style, BanStyle::Lurker);
        let BackendSettings::Nginx(n) = &s.backends["ngx"] else {
            panic!()
        };
        assert_eq!(n.mode, NginxMode::Files);
        assert_eq!(n.servers, Vec::<String>::new());
    }

    #[test]
    fn servers_parse() {
        assert_eq!(parse_server("[::1]:80").unwrap(), ("::1".into(), 80));
        assert_eq!(
            parse_server("localhost:6082").unwrap(),
            ("localhost".into(), 6082)
        );
        assert!(parse_server("localhost").is_err());
        assert!(parse_server("h:0").is_err());
        assert!(parse_server("h:99999").is_err());
    }
}
