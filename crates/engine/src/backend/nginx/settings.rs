//! The settings of `kind = "nginx"`, parsed into types: [`NginxSettings`], its [`NginxMode`],
//! and the values only nginx has: [`KeyTemplate`] (a `proxy_cache_key`), [`Levels`] (a
//! `levels=`), [`CacheDir`] (a `proxy_cache_path`), [`PurgePrefix`] and [`Scheme`].
//!
//! Always compiled, whatever the cargo features: settings files name every kind, and a kind
//! this build lacks is refused when the purger is built, not when the file is read.
//!
//! ```
//! use cache_purge_hooks_engine::settings::{KeyTemplate, NginxMode, NginxSettings};
//!
//! let mut s = NginxSettings::default();
//! s.mode = NginxMode::Files;
//! s.cache_dir = Some("/var/cache/nginx".parse().unwrap());
//! s.key_template = Some("http://$proxy_host$request_uri".parse().unwrap());
//! let err = s.check().unwrap_err();
//! assert_eq!(err.key, "proxy_host");
//! s.proxy_host = Some("origin".into());
//! assert!(s.check().is_ok());
//! assert!("$host".parse::<KeyTemplate>().is_err()); // neither $uri nor $request_uri
//! ```

use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::types::{
    self, FieldError, HostName, HttpMethod, InvalidValue, Pipeline, ServerAddr, named_enum,
    string_serde,
};

/// How the nginx backend purges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
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

named_enum!(NginxMode, "nginx mode", { Http = "http", Files = "files", Wipe = "wipe" });

/// How the nginx backend purges tags ([`Target::Tag`](crate::target::Target::Tag)): nginx
/// has no tags of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NginxTags {
    /// Tags are not purged: each tag target is reported as unsupported (a WARN, and the
    /// `unsupported` count of the backend's stats), never widened to a larger purge.
    #[default]
    None,
    /// Through the tag→URL index ([`crate::tag_index`]): a tag is expanded into the URLs
    /// whose cached responses carried it, which are purged in `http` or `files` mode like
    /// any URL, then forgotten from the index. Needs an index (`[tag_index]`, or
    /// [`PurgerBuilder::tag_index`](crate::PurgerBuilder::tag_index)); not with `mode =
    /// "wipe"`, which empties the whole cache for any target anyway.
    Index,
}

named_enum!(NginxTags, "nginx tag purge", { None = "none", Index = "index" });

/// The value of `$scheme` for URLs given as paths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `http`.
    #[default]
    Http,
    /// `https`.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

impl FromStr for Scheme {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "http" => Ok(Self::Http),
            "https" => Ok(Self::Https),
            other => Err(InvalidValue::new(format!(
                "expected `http` or `https`, got `{other}`"
            ))),
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

string_serde!(Scheme);

/// The prefix put before a URL's path in the separate-location style (`/purge`): starts with
/// `/`, does not end with one, holds no `?`, `#` or space.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PurgePrefix(String);

impl PurgePrefix {
    /// The prefix, like `/purge`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PurgePrefix {
    type Err = InvalidValue;

    fn from_str(p: &str) -> Result<Self, Self::Err> {
        if !p.starts_with('/') || p.ends_with('/') || p.contains(['?', '#', ' ']) {
            return Err(InvalidValue::new(format!(
                "`{p}` must start with `/`, not end with `/`, and hold no `?`, `#` or space"
            )));
        }
        Ok(Self(p.to_owned()))
    }
}

impl fmt::Display for PurgePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(PurgePrefix);

/// The `levels=` of `proxy_cache_path` (`1:2`): up to three levels of 1 or 2 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Levels(Vec<usize>);

impl Levels {
    /// The characters of each level, outermost first (`[1, 2]` for `1:2`).
    pub fn as_slice(&self) -> &[usize] {
        &self.0
    }
}

impl Default for Levels {
    /// `1:2`, the usual value.
    fn default() -> Self {
        Self(vec![1, 2])
    }
}

impl FromStr for Levels {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Ok(Self(Vec::new()));
        }
        let levels: Vec<usize> = s
            .split(':')
            .map(|p| match p {
                "1" => Ok(1),
                "2" => Ok(2),
                _ => Err(InvalidValue::new(format!(
                    "`{s}` is not an nginx levels value: up to three levels of 1 or 2, like `1:2`"
                ))),
            })
            .collect::<Result<_, _>>()?;
        if levels.len() > 3 {
            return Err(InvalidValue::new(format!(
                "`{s}` has more than three levels"
            )));
        }
        Ok(Self(levels))
    }
}

impl fmt::Display for Levels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, level) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{level}")?;
        }
        Ok(())
    }
}

string_serde!(Levels);

/// The `proxy_cache_path` directory: absolute, below `/` (never `/` itself), without `..`,
/// since `wipe` deletes everything inside it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheDir(PathBuf);

impl CacheDir {
    /// Checks a path.
    pub fn new(path: impl Into<PathBuf>) -> Result<Self, InvalidValue> {
        let dir = path.into();
        let components: Vec<Component<'_>> = dir.components().collect();
        if !dir.is_absolute()
            || components.iter().any(|c| matches!(c, Component::ParentDir))
            || !components.iter().any(|c| matches!(c, Component::Normal(_)))
        {
            return Err(InvalidValue::new(format!(
                "`{}` must be an absolute path below `/` without `..`, like /var/cache/nginx",
                dir.display()
            )));
        }
        Ok(Self(dir))
    }

    /// The directory.
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for CacheDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl FromStr for CacheDir {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for CacheDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display().fmt(f)
    }
}

string_serde!(CacheDir);

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
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyPart {
    /// Text copied as is.
    Literal(String),
    /// A variable, by name without the `$` (one of [`NGINX_KEY_VARIABLES`]).
    Variable(&'static str),
}

/// An nginx `proxy_cache_key`, parsed: literal text and the variables this crate can compute
/// (see [`NGINX_KEY_VARIABLES`]; `${name}` works too). It uses `$request_uri` or `$uri`, or
/// every URL would share one key.
///
/// ```
/// use cache_purge_hooks_engine::settings::{KeyPart, KeyTemplate};
///
/// let t: KeyTemplate = "$scheme$proxy_host$request_uri".parse().unwrap();
/// assert!(t.uses("proxy_host"));
/// assert_eq!(t.parts()[0], KeyPart::Variable("scheme"));
/// assert_eq!(t.to_string(), "$scheme$proxy_host$request_uri");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyTemplate {
    text: String,
    parts: Vec<KeyPart>,
}

impl KeyTemplate {
    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Its pieces, in order.
    pub fn parts(&self) -> &[KeyPart] {
        &self.parts
    }

    /// Whether it uses this variable (by name without `$`).
    pub fn uses(&self, variable: &str) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, KeyPart::Variable(v) if *v == variable))
    }
}

impl FromStr for KeyTemplate {
    type Err = InvalidValue;

    fn from_str(template: &str) -> Result<Self, Self::Err> {
        let bad = |message: String| InvalidValue::new(message);
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = template;
        while let Some(i) = rest.find('$') {
            literal.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
                let end = braced
                    .find('}')
                    .ok_or_else(|| bad(format!("unclosed `${{` in `{template}`")))?;
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
                    bad(format!(
                        "unknown variable `${name}` in `{template}`; understood: ${}",
                        NGINX_KEY_VARIABLES.join(", $")
                    ))
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
        let parsed = Self {
            text: template.to_owned(),
            parts,
        };
        if !parsed.uses("request_uri") && !parsed.uses("uri") {
            return Err(bad(format!(
                "`{template}` uses neither $request_uri nor $uri: every URL would share one key"
            )));
        }
        Ok(parsed)
    }
}

impl fmt::Display for KeyTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

string_serde!(KeyTemplate);

/// Options of `kind = "nginx"`. Names follow the seed's `NGX_CACHE_PURGE_*` settings.
///
/// Each value is valid by its type; the rules across keys (what `files` and `wipe` need) are
/// [`check`](Self::check)ed when the settings are loaded, and again by the backend for
/// settings built in code.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NginxSettings {
    /// `http` (default), `files` or `wipe`.
    pub mode: NginxMode,
    /// `host:port` of each nginx (default `localhost:80`). A comma-separated string works too.
    #[serde(deserialize_with = "types::servers")]
    pub servers: Vec<ServerAddr>,
    /// A `Host` header to send instead of the server's address; in `files` mode, the host of
    /// `$host` and `$http_host` for URLs given as paths.
    pub host_header: Option<HostName>,
    /// For the separate-location style (`location ~ ^/purge(/.*)$`): the prefix put before the
    /// URL's path, like `/purge`. Absent: the same-location style (`PURGE /path`).
    pub purge_prefix: Option<PurgePrefix>,
    /// The request method, default `PURGE`.
    pub method: HttpMethod,
    /// Timeout of one request, default `5s`.
    #[serde(with = "types::timeout")]
    pub timeout: Duration,
    /// In `http` mode: keep-alive connections per server in use at once, default 8.
    #[serde(deserialize_with = "types::at_least_one")]
    pub concurrency: NonZeroUsize,
    /// In `http` mode, to a plain `http://` server: requests written at once on one
    /// connection (HTTP/1.1 pipelining; an nginx worker answers them in order), 1 to 64,
    /// default 8; 1 sends one at a time. Up to `concurrency × pipeline` requests are in
    /// flight.
    pub pipeline: Pipeline,
    /// The `proxy_cache_path` directory, required by `files` and `wipe`.
    pub cache_dir: Option<CacheDir>,
    /// The `levels=` of `proxy_cache_path`, default `1:2`.
    pub levels: Levels,
    /// In `files` mode (where it is required): your `proxy_cache_key`, verbatim. Without a
    /// `proxy_cache_key`, nginx 1.22 keys `proxy_pass http://origin;` as
    /// `http://$proxy_host$request_uri` (not the documented `$scheme$proxy_host$request_uri`),
    /// which is why there is no default: a wrong key purges nothing.
    pub key_template: Option<KeyTemplate>,
    /// In `files` mode: the value of `$proxy_host` in the key (the host of `proxy_pass`,
    /// like `origin` for `proxy_pass http://origin;`). Required when the key template uses it.
    pub proxy_host: Option<String>,
    /// In `files` mode: the value of `$scheme` for URLs given as paths, default `http`
    /// (absolute URLs bring their own).
    pub scheme: Scheme,
    /// How tags are purged: `none` (default: tag targets are reported unsupported) or
    /// `index` (through the tag→URL index, in `http` and `files` modes).
    pub tags: NginxTags,
}

/// 8 keep-alive connections per server (checked at compile time).
const DEFAULT_CONCURRENCY: NonZeroUsize = NonZeroUsize::new(8).unwrap();

impl Default for NginxSettings {
    /// The settings of an empty `[backends.NAME]` table with `kind = "nginx"`.
    fn default() -> Self {
        Self {
            mode: NginxMode::default(),
            servers: Vec::new(),
            host_header: None,
            purge_prefix: None,
            method: HttpMethod::from_static("PURGE"),
            timeout: Duration::from_secs(5),
            concurrency: DEFAULT_CONCURRENCY,
            pipeline: Pipeline::default(),
            cache_dir: None,
            levels: Levels::default(),
            key_template: None,
            proxy_host: None,
            scheme: Scheme::default(),
            tags: NginxTags::default(),
        }
    }
}

impl NginxSettings {
    /// The configured servers, or `localhost:80`.
    pub fn servers_or_default(&self) -> Vec<ServerAddr> {
        if self.servers.is_empty() {
            vec![ServerAddr::localhost(80)]
        } else {
            self.servers.clone()
        }
    }

    /// The rules across keys: `tags = "index"` needs `http` or `files` mode; `files` and `wipe` need `cache_dir`; `files` needs a
    /// `key_template`, and `proxy_host` or `host_header` when the template uses `$proxy_host`
    /// or `$host`/`$http_host`. The one place these rules are written: the loader calls it
    /// (the error is keyed `backends.NAME.<key>`), and so does
    /// [`NginxBackend::new`](crate::backend::NginxBackend) for settings built in code.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.tags == NginxTags::Index && self.mode == NginxMode::Wipe {
            return Err(FieldError::new(
                "tags",
                "tags = \"index\" purges the URLs of a tag, which mode = \"wipe\" cannot \
                 (it empties the whole cache for any target): use mode = \"http\" or \"files\", \
                 or remove tags",
            ));
        }
        match self.mode {
            NginxMode::Files => self.files_options().map(drop),
            NginxMode::Wipe => self.required_cache_dir().map(drop),
            _ => Ok(()),
        }
    }

    /// `cache_dir`, required by `files` and `wipe`.
    pub(crate) fn required_cache_dir(&self) -> Result<&CacheDir, FieldError> {
        self.cache_dir.as_ref().ok_or_else(|| {
            FieldError::new(
                "cache_dir",
                "required with mode = \"files\" or \"wipe\": the proxy_cache_path directory",
            )
        })
    }

    /// What `files` mode needs: `cache_dir`, and [`key_options`](Self::key_options).
    pub(crate) fn files_options(&self) -> Result<(&CacheDir, &KeyTemplate), FieldError> {
        Ok((self.required_cache_dir()?, self.key_options()?))
    }

    /// The key template, with a value for each variable it uses that is not taken from the
    /// URL itself (`proxy_host`; `host_header`, for URLs given as paths).
    pub(crate) fn key_options(&self) -> Result<&KeyTemplate, FieldError> {
        let template = self.key_template.as_ref().ok_or_else(|| {
            FieldError::new(
                "key_template",
                "required with mode = \"files\": your proxy_cache_key, verbatim (without one, nginx uses \"http://$proxy_host$request_uri\" for proxy_pass http://...)",
            )
        })?;
        if self.proxy_host.is_none() && template.uses("proxy_host") {
            return Err(FieldError::new(
                "proxy_host",
                format!(
                    "required because key_template `{template}` uses $proxy_host: the host of your proxy_pass (like `origin`)"
                ),
            ));
        }
        if self.host_header.is_none() && (template.uses("host") || template.uses("http_host")) {
            return Err(FieldError::new(
                "host_header",
                format!(
                    "required because key_template `{template}` uses $host: the site's host name"
                ),
            ));
        }
        Ok(template)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_and_print_back() {
        for good in ["1:2", "2", "1:1:2", ""] {
            assert_eq!(good.parse::<Levels>().unwrap().to_string(), good);
        }
        assert_eq!("1:2".parse::<Levels>().unwrap().as_slice(), [1, 2]);
        assert!("1:2:1:2".parse::<Levels>().is_err());
        assert_eq!("/purge".parse::<PurgePrefix>().unwrap().as_str(), "/purge");
        for bad in ["purge", "/purge/", "/pu rge", "/p?x"] {
            assert!(bad.parse::<PurgePrefix>().is_err(), "{bad}");
        }
        assert_eq!(
            "/var/cache/nginx".parse::<CacheDir>().unwrap().as_path(),
            Path::new("/var/cache/nginx")
        );
        for bad in ["cache", "/", "/var/../etc", "//"] {
            assert!(
                bad.parse::<CacheDir>()
                    .unwrap_err()
                    .message
                    .contains("absolute"),
                "{bad}"
            );
        }
        assert_eq!("https".parse::<Scheme>().unwrap(), Scheme::Https);
        assert_eq!(
            "ftp".parse::<Scheme>().unwrap_err().message,
            "expected `http` or `https`, got `ftp`"
        );
    }

    #[test]
    fn key_templates() {
        let t: KeyTemplate = "${host}$request_uri".parse().unwrap();
        assert_eq!(
            t.parts(),
            [KeyPart::Variable("host"), KeyPart::Variable("request_uri")]
        );
        assert!(t.uses("host") && !t.uses("uri"));
        let t: KeyTemplate = "k:$uri$is_args$args;".parse().unwrap();
        assert_eq!(t.parts().first(), Some(&KeyPart::Literal("k:".into())));
        assert_eq!(t.parts().last(), Some(&KeyPart::Literal(";".into())));
        assert_eq!(
            "${uri".parse::<KeyTemplate>().unwrap_err().message,
            "unclosed `${` in `${uri`"
        );
        assert!(
            "$uri$foo"
                .parse::<KeyTemplate>()
                .unwrap_err()
                .message
                .starts_with("unknown variable `$foo`")
        );
    }

    #[test]
    fn cross_field_rules() {
        let mut s = NginxSettings {
            mode: NginxMode::Wipe,
            ..NginxSettings::default()
        };
        assert_eq!(s.check().unwrap_err().key, "cache_dir");
        s.cache_dir = Some("/var/cache/nginx".parse().unwrap());
        assert!(s.check().is_ok());
        s.mode = NginxMode::Files;
        assert_eq!(s.check().unwrap_err().key, "key_template");
        s.key_template = Some("$host$uri".parse().unwrap());
        assert_eq!(s.check().unwrap_err().key, "host_header");
        s.host_header = Some("example.com".parse().unwrap());
        assert!(s.check().is_ok());
        s.tags = NginxTags::Index;
        assert!(s.check().is_ok());
        s.mode = NginxMode::Wipe;
        assert_eq!(s.check().unwrap_err().key, "tags");
        // `http` mode ignores the file options.
        let s = NginxSettings {
            key_template: Some("$proxy_host$uri".parse().unwrap()),
            ..NginxSettings::default()
        };
        assert!(s.check().is_ok());
    }
}
