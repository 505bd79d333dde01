//! A real nginx with Debian's `ngx_cache_purge` module in front of an [`Origin`].

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::background::off_thread;
use crate::error::{HarnessError, Result};
use crate::origin::Origin;
use crate::page::{Page, PageClient};
use crate::ports;
use crate::process::{self, ServerProcess};

/// Where the packaged nginx binary lives on Debian.
const NGINX_BIN: &str = "/usr/sbin/nginx";
/// Debian's `libnginx-mod-http-cache-purge` (ngx_cache_purge 2.3).
pub const CACHE_PURGE_MODULE: &str = "/usr/share/nginx/modules/ngx_http_cache_purge_module.so";
/// The `keys_zone` name of the shipped config ([`NGINX_SITE_CONF`]).
pub const CACHE_ZONE: &str = "cache_purge";

/// The shipped `deploy/nginx/nginx.conf`: a self-contained main config that runs
/// [`NGINX_SITE_CONF`] in the foreground with everything under one directory (`@DIR@`).
///
/// [`Nginx::start`] writes it, with `@DIR@` filled in, as the server's `nginx.conf`.
pub const NGINX_CONF: &str = include_str!("../deploy/nginx/nginx.conf");

/// The shipped `deploy/nginx/cache-purge.conf`: the cache and purge configuration the docs
/// recommend, for nginx's `http` block, with the placeholders `@CACHE_DIR@`, `@LISTEN@` and
/// `@ORIGIN@`.
///
/// [`Nginx::start`] writes it, filled in, as `cache-purge.conf` beside `nginx.conf`. With
/// [`NginxConfig::default`] that is the shipped file as it is; the other [`NginxConfig`]
/// values change exactly the lines that name them (cache key, purge key, `levels=`, purge
/// location).
pub const NGINX_SITE_CONF: &str = include_str!("../deploy/nginx/cache-purge.conf");

/// How nginx is told to purge: where `proxy_cache_purge` goes in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeLocation {
    /// The separate-location style, which works with Debian's module:
    ///
    /// ```nginx
    /// location ~ ^<prefix>(/.*)$ {
    ///     allow 127.0.0.1;
    ///     allow ::1;
    ///     deny all;
    ///     proxy_cache_purge cache_purge "$1$is_args$args";
    /// }
    /// ```
    ///
    /// A request with any method to `<prefix>/a?x=1` purges the key of `/a?x=1`. Answers 200
    /// when an entry was removed and 404 when nothing was cached under the key.
    Separate {
        /// The path prefix, default `/purge`: starts with `/`, does not end with `/`, and
        /// holds only ASCII letters, digits and `/ _ - . ~`.
        prefix: String,
    },
    /// The README's same-location style, inside the proxied `location /`:
    ///
    /// ```nginx
    /// proxy_cache_purge <METHOD> from 127.0.0.1;
    /// ```
    ///
    /// **Debian's module (2.3) crashes the worker with it** (SIGSEGV: its copy of an nginx
    /// struct is 8 bytes off), so a purge request gets no answer at all and
    /// [`Nginx::worker_crash`] reports the crash. Useful to test how a client copes with that;
    /// use [`PurgeLocation::Separate`] for working purges.
    Same {
        /// The purge method, like `PURGE` (ASCII upper-case letters, digits, `_` and `-`).
        method: String,
    },
}

impl PurgeLocation {
    /// [`PurgeLocation::Separate`] with the given prefix.
    pub fn separate(prefix: impl Into<String>) -> PurgeLocation {
        PurgeLocation::Separate {
            prefix: prefix.into(),
        }
    }

    /// [`PurgeLocation::Same`] with the given method.
    pub fn same(method: impl Into<String>) -> PurgeLocation {
        PurgeLocation::Same {
            method: method.into(),
        }
    }
}

impl Default for PurgeLocation {
    /// `Separate { prefix: "/purge" }`.
    fn default() -> Self {
        PurgeLocation::separate("/purge")
    }
}

/// What a test may change in the shipped config ([`NGINX_SITE_CONF`]); the default changes
/// nothing.
///
/// ```
/// use cache_purge_hooks_testing::{NginxConfig, PurgeLocation};
///
/// let config = NginxConfig {
///     cache_key: "$host$uri$is_args$args".to_owned(),
///     ..NginxConfig::default()
/// };
/// assert_eq!(config.purge, PurgeLocation::Separate { prefix: "/purge".to_owned() });
/// assert_eq!(config.levels, "1:2");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxConfig {
    /// Where purges go; default [`PurgeLocation::Separate`] with prefix `/purge`.
    pub purge: PurgeLocation,
    /// The `proxy_cache_key`, default `$uri$is_args$args`. Written inside double quotes, so it
    /// must not contain `"`, `\` or control characters.
    pub cache_key: String,
    /// The `levels=` of `proxy_cache_path`, default `1:2` (one to three levels of 1 or 2).
    pub levels: String,
    /// The key `proxy_cache_purge` computes in the separate purge location. `None` (default):
    /// the cache key with `$uri` replaced by `$1` (the path captured after the prefix), which
    /// is right whenever the cache key uses `$uri`. Set it when the cache key does not.
    pub purge_key: Option<String>,
    /// The size of the `keys_zone` in megabytes, default 16. nginx keeps about 8,000 keys a
    /// megabyte and, when the zone is full, evicts the least recently used entries, so that a
    /// MISS no longer proves a purge: give a run that caches more than about 100,000 pages
    /// more.
    pub keys_zone_megabytes: usize,
}

impl Default for NginxConfig {
    fn default() -> Self {
        NginxConfig {
            purge: PurgeLocation::default(),
            cache_key: "$uri$is_args$args".to_owned(),
            levels: "1:2".to_owned(),
            purge_key: None,
            keys_zone_megabytes: SHIPPED_KEYS_ZONE_MEGABYTES,
        }
    }
}

impl NginxConfig {
    fn validate(&self) -> Result<()> {
        match &self.purge {
            PurgeLocation::Separate { prefix } => {
                let ok_chars = prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/_-.~".contains(c));
                if !prefix.starts_with('/') || prefix.ends_with('/') || !ok_chars {
                    return Err(HarnessError::invalid(
                        "purge prefix",
                        format!(
                            "{prefix:?}: expected a path like \"/purge\" (starts with '/', no \
                             trailing '/', only letters, digits and / _ - . ~)"
                        ),
                    ));
                }
            }
            PurgeLocation::Same { method } => {
                let ok = !method.is_empty()
                    && method
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || "_-".contains(c));
                if !ok {
                    return Err(HarnessError::invalid(
                        "purge method",
                        format!("{method:?}: expected an upper-case token like \"PURGE\""),
                    ));
                }
            }
        }
        check_quoted("cache key", &self.cache_key)?;
        if let Some(key) = &self.purge_key {
            check_quoted("purge key", key)?;
        }
        let levels_ok = {
            let parts: Vec<&str> = self.levels.split(':').collect();
            (1..=3).contains(&parts.len()) && parts.iter().all(|p| *p == "1" || *p == "2")
        };
        if !levels_ok {
            return Err(HarnessError::invalid(
                "cache levels",
                format!(
                    "{:?}: expected one to three levels of 1 or 2, like \"1:2\"",
                    self.levels
                ),
            ));
        }
        if self.keys_zone_megabytes == 0 {
            return Err(HarnessError::invalid(
                "keys zone",
                "0 megabytes: expected at least 1 (nginx keeps about 8,000 keys a megabyte)",
            ));
        }
        Ok(())
    }

    fn effective_purge_key(&self) -> String {
        match &self.purge_key {
            Some(key) => key.clone(),
            None => self.cache_key.replace("${uri}", "$1").replace("$uri", "$1"),
        }
    }

    /// The two config files for a server in `dir` listening on `port` in front of
    /// `origin_port`: `nginx.conf` ([`NGINX_CONF`]) and `cache-purge.conf`
    /// ([`NGINX_SITE_CONF`] with this config's changes), placeholders filled in.
    fn render(&self, dir: &Path, port: u16, origin_port: u16) -> Result<RenderedConfig> {
        let d = dir.display().to_string();
        let main = fill(NGINX_CONF, "nginx.conf", &[("@DIR@", &d)])?;
        let mut site = fill(
            NGINX_SITE_CONF,
            "cache-purge.conf",
            &[
                ("@CACHE_DIR@", &format!("{d}/cache")),
                ("@LISTEN@", &format!("127.0.0.1:{port}")),
                ("@ORIGIN@", &format!("127.0.0.1:{origin_port}")),
            ],
        )?;
        site = replace_once(&site, SHIPPED_LEVELS, &format!("levels={} ", self.levels))?;
        site = replace_once(
            &site,
            SHIPPED_KEYS_ZONE,
            &format!("keys_zone={CACHE_ZONE}:{}m ", self.keys_zone_megabytes),
        )?;
        site = replace_once(
            &site,
            SHIPPED_CACHE_KEY,
            &format!("proxy_cache_key \"{}\";", self.cache_key),
        )?;
        site = match &self.purge {
            PurgeLocation::Separate { prefix } => {
                let site = replace_once(
                    &site,
                    SHIPPED_PURGE_LOCATION,
                    &format!("location ~ ^{}(/.*)$ {{", prefix.replace('.', "\\.")),
                )?;
                replace_once(
                    &site,
                    SHIPPED_PURGE_KEY,
                    &format!(
                        "proxy_cache_purge {CACHE_ZONE} \"{}\";",
                        self.effective_purge_key()
                    ),
                )?
            }
            PurgeLocation::Same { method } => {
                let site = without_purge_location(&site)?;
                replace_once(
                    &site,
                    SHIPPED_STATUS_HEADER,
                    &format!(
                        "{SHIPPED_STATUS_HEADER}\n            \
                         # Same-location style: SEGFAULTS the worker with Debian's module 2.3.\n            \
                         proxy_cache_purge {method} from 127.0.0.1;"
                    ),
                )?
            }
        };
        Ok(RenderedConfig { main, site })
    }
}

/// What [`NginxConfig::render`] writes.
struct RenderedConfig {
    /// `nginx.conf`.
    main: String,
    /// `cache-purge.conf`, which `nginx.conf` includes.
    site: String,
}

// The lines of the shipped cache-purge.conf that an `NginxConfig` changes. Each must occur
// exactly once (checked by the unit tests and, without panicking, at every start).
const SHIPPED_LEVELS: &str = "levels=1:2 ";
const SHIPPED_KEYS_ZONE: &str = "keys_zone=cache_purge:16m ";
const SHIPPED_KEYS_ZONE_MEGABYTES: usize = 16;
const SHIPPED_CACHE_KEY: &str = "proxy_cache_key \"$uri$is_args$args\";";
const SHIPPED_PURGE_LOCATION: &str = "location ~ ^/purge(/.*)$ {";
const SHIPPED_PURGE_KEY: &str = "proxy_cache_purge cache_purge \"$1$is_args$args\";";
const SHIPPED_STATUS_HEADER: &str = "add_header X-Cache-Status $upstream_cache_status always;";

/// `template` with every placeholder replaced; an error if one is missing or any `@NAME@`
/// is left unfilled (the shipped file and this code disagree).
fn fill(template: &str, file: &'static str, values: &[(&str, &str)]) -> Result<String> {
    let mut text = template.to_owned();
    for (placeholder, value) in values {
        if !text.contains(placeholder) {
            return Err(shipped_mismatch(
                file,
                format!("no {placeholder} to fill in"),
            ));
        }
        text = text.replace(placeholder, value);
    }
    if let Some(left) = unfilled_placeholder(&text) {
        return Err(shipped_mismatch(file, format!("{left} is not filled in")));
    }
    Ok(text)
}

/// The first `@NAME@` (upper-case letters and `_`) left in `text`.
fn unfilled_placeholder(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(start) = rest.find('@') {
        let after = &rest[start + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('@') {
            return Some(&rest[start..start + name_len + 2]);
        }
        rest = after;
    }
    None
}

/// `text` with the one occurrence of `from` replaced by `to`.
fn replace_once(text: &str, from: &str, to: &str) -> Result<String> {
    match text.matches(from).count() {
        1 => Ok(text.replacen(from, to, 1)),
        n => Err(shipped_mismatch(
            "cache-purge.conf",
            format!("expected `{from}` once, found it {n} times"),
        )),
    }
}

/// `site` without the separate purge location: the `location` block and the comment lines
/// right above it.
fn without_purge_location(site: &str) -> Result<String> {
    let lines: Vec<&str> = site.lines().collect();
    let Some(start) = lines
        .iter()
        .position(|l| l.trim() == SHIPPED_PURGE_LOCATION)
    else {
        return Err(shipped_mismatch(
            "cache-purge.conf",
            format!("no `{SHIPPED_PURGE_LOCATION}` line"),
        ));
    };
    let indent = &lines[start][..lines[start].len() - lines[start].trim_start().len()];
    let closing = format!("{indent}}}");
    let Some(length) = lines[start..].iter().position(|l| *l == closing) else {
        return Err(shipped_mismatch(
            "cache-purge.conf",
            "the purge location has no closing brace at its indentation".to_owned(),
        ));
    };
    let end = start + length;
    let mut first = start;
    while first > 0 && lines[first - 1].trim_start().starts_with('#') {
        first -= 1;
    }
    let mut kept: Vec<&str> = lines[..first].to_vec();
    // The blank line that separated the block from the one above goes with it.
    if kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    kept.extend_from_slice(&lines[end + 1..]);
    let mut out = kept.join("\n");
    out.push('\n');
    Ok(out)
}

fn shipped_mismatch(file: &'static str, detail: String) -> HarnessError {
    HarnessError::invalid(
        "shipped nginx config",
        format!("deploy/nginx/{file}: {detail}"),
    )
}

fn check_quoted(what: &'static str, value: &str) -> Result<()> {
    if value.is_empty() || value.contains(['"', '\\']) || value.chars().any(char::is_control) {
        return Err(HarnessError::invalid(
            what,
            format!("{value:?}: must be non-empty without '\"', '\\' or control characters"),
        ));
    }
    Ok(())
}

/// A real nginx (`nginx -p DIR -c DIR/nginx.conf`, master and one worker) caching an
/// [`Origin`] (or any HTTP server on a loopback port: [`Nginx::start_in_front_of`]) on
/// `127.0.0.1:<free port>`, with Debian's `ngx_cache_purge` module loaded.
///
/// It runs the configuration the project ships, `deploy/nginx/nginx.conf` ([`NGINX_CONF`])
/// including `deploy/nginx/cache-purge.conf` ([`NGINX_SITE_CONF`]), with the placeholders
/// filled in; [`NginxConfig`] and [`PurgeLocation`] say what a test may change in it.
///
/// Everything lives in its own temp dir: both config files, pid file, `logs/error.log`,
/// `logs/access.log` (`METHOD URI STATUS cache=STATUS` per line), temp paths and the cache
/// (`proxy_cache_path DIR/cache levels=<levels> keys_zone=cache_purge:16m`). Responses carry
/// `X-Cache-Status`. [`Nginx::stop`] (or dropping it) stops the whole process group and removes
/// the temp dir.
#[derive(Debug)]
pub struct Nginx {
    // Field order matters for Drop: the process stops before its temp dir is removed.
    process: Option<ServerProcess>,
    dir: Option<tempfile::TempDir>,
    pid: u32,
    port: u16,
    root: PathBuf,
    config_path: PathBuf,
    site_config_path: PathBuf,
    cache_dir: PathBuf,
    error_log: PathBuf,
    access_log: PathBuf,
    purge: PurgeLocation,
    client: PageClient,
}

impl Nginx {
    /// Starts nginx in front of `origin` and waits (up to 30 s) until it is ready: its pid
    /// file names the started process (so the listening socket is bound: nginx writes the
    /// file after binding) and its port accepts connections.
    ///
    /// The blocking work runs on its own thread, so this works on any Tokio runtime flavour;
    /// see [`Nginx::start_blocking`] for synchronous tests.
    ///
    /// Fails with [`HarnessError::MissingBinary`] or [`HarnessError::MissingFile`] (naming the
    /// `apt-get install` command) when nginx or the module is missing, and with
    /// [`HarnessError::StartFailed`] (quoting stderr, `error.log` and the config path) when
    /// nginx does not start. A port taken by someone else in the meantime is retried with a
    /// new port.
    pub async fn start(origin: &Origin, config: NginxConfig) -> Result<Nginx> {
        let origin_port = origin.port();
        off_thread("cph-nginx-start", move || {
            Nginx::start_on_port(origin_port, config)
        })
        .await
    }

    /// [`Nginx::start`] for synchronous code: blocks the calling thread until nginx is ready.
    pub fn start_blocking(origin: &Origin, config: NginxConfig) -> Result<Nginx> {
        Nginx::start_on_port(origin.port(), config)
    }

    /// Like [`Nginx::start`], in front of any HTTP server listening on `127.0.0.1:origin_port`
    /// (an application under test, say), which must be running by the first request.
    ///
    /// ```no_run
    /// use cache_purge_hooks_testing::{Nginx, NginxConfig};
    ///
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let app = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// // ... serve the app on `app` ...
    /// let nginx = Nginx::start_in_front_of(app.local_addr()?.port(), NginxConfig::default()).await?;
    /// let page = nginx.get("/").await?; // fetched from the app, then cached
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start_in_front_of(origin_port: u16, config: NginxConfig) -> Result<Nginx> {
        off_thread("cph-nginx-start", move || {
            Nginx::start_on_port(origin_port, config)
        })
        .await
    }

    /// [`Nginx::start_in_front_of`] for synchronous code.
    pub fn start_in_front_of_blocking(origin_port: u16, config: NginxConfig) -> Result<Nginx> {
        Nginx::start_on_port(origin_port, config)
    }

    fn start_on_port(origin_port: u16, config: NginxConfig) -> Result<Nginx> {
        config.validate()?;
        let binary = process::find_binary("nginx", &[NGINX_BIN], "")?;
        if !Path::new(CACHE_PURGE_MODULE).is_file() {
            return Err(HarnessError::MissingFile {
                what: "Debian's ngx_cache_purge module (libnginx-mod-http-cache-purge)".to_owned(),
                path: PathBuf::from(CACHE_PURGE_MODULE),
            });
        }
        let dir = process::server_temp_dir("cph-nginx-")?;
        let root = dir.path().to_path_buf();
        for sub in ["logs", "tmp"] {
            let path = root.join(sub);
            std::fs::create_dir(&path)
                .map_err(|e| HarnessError::io(format!("creating {}", path.display()), e))?;
            process::set_mode(&path, 0o755)?;
        }
        let config_path = root.join("nginx.conf");
        let site_config_path = root.join("cache-purge.conf");
        let pid_path = root.join("nginx.pid");
        let error_log = root.join("logs").join("error.log");
        let access_log = root.join("logs").join("access.log");
        let stdout_path = root.join("stdout.log");
        let stderr_path = root.join("stderr.log");

        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = ports::free_port()?;
            let rendered = config.render(&root, port, origin_port)?;
            process::write_file(&config_path, rendered.main.as_bytes(), 0o644)?;
            process::write_file(&site_config_path, rendered.site.as_bytes(), 0o644)?;
            let args: [&OsStr; 4] = [
                OsStr::new("-p"),
                root.as_os_str(),
                OsStr::new("-c"),
                config_path.as_os_str(),
            ];
            let mut server =
                ServerProcess::spawn("nginx", &binary, &args, &root, &stdout_path, &stderr_path)?;
            let logs = [stderr_path.as_path(), error_log.as_path()];
            // The temp dir goes away with the error, so the message carries the config too
            // (nginx's messages point at its lines).
            let failure = |reason: String| HarnessError::StartFailed {
                server: "nginx",
                reason,
                config: config_path.clone(),
                logs: format!(
                    "{}{}{}",
                    process::log_tails(&logs),
                    process::numbered(&config_path),
                    process::numbered(&site_config_path)
                ),
            };
            let deadline = Instant::now() + process::START_DEADLINE;
            let outcome = loop {
                if let Some(status) = server.poll_exit()? {
                    break Err(format!("it exited ({status}) before it was ready"));
                }
                // nginx retries a busy port for 2.5 s before giving up: do not wait for that.
                if process::mentions_port_taken(&logs) {
                    break Err(format!("port {port} is already in use"));
                }
                if pid_file_names(&pid_path, server.pid()) && port_accepts(port) {
                    break Ok(());
                }
                if Instant::now() >= deadline {
                    break Err(format!(
                        "not ready after {:?} (pid file {} naming pid {}, port {port} \
                         accepting connections)",
                        process::START_DEADLINE,
                        pid_path.display(),
                        server.pid()
                    ));
                }
                std::thread::sleep(process::POLL_INTERVAL);
            };
            match outcome {
                Ok(()) => {
                    tracing::debug!(pid = server.pid(), port, dir = %root.display(), "nginx ready");
                    let client = PageClient::new(port, "x-cache-status")?;
                    return Ok(Nginx {
                        pid: server.pid(),
                        process: Some(server),
                        dir: Some(dir),
                        port,
                        cache_dir: root.join("cache"),
                        root,
                        config_path,
                        site_config_path,
                        error_log,
                        access_log,
                        purge: config.purge,
                        client,
                    });
                }
                Err(reason) => {
                    let in_use = process::mentions_port_taken(&logs);
                    // Stop it (it may still be retrying the busy port) before reading logs.
                    let _ = server.terminate(process::STOP_GRACE);
                    if in_use && attempt < process::PORT_ATTEMPTS {
                        tracing::debug!(port, attempt, "nginx: port taken, retrying");
                        for log in [&stderr_path, &error_log, &stdout_path] {
                            let _ = std::fs::remove_file(log);
                        }
                        continue;
                    }
                    return Err(failure(reason));
                }
            }
        }
    }

    /// The port nginx listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `"127.0.0.1:<port>"`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The `proxy_cache_path` directory (files are `<levels>/<md5 of the key>`, mode 0600,
    /// owned by the worker user).
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The PID of the nginx master process (also its process group ID).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The `nginx.conf` it runs: [`NGINX_CONF`] with `@DIR@` filled in.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The `cache-purge.conf` that `nginx.conf` includes: [`NGINX_SITE_CONF`] with the
    /// placeholders filled in and the [`NginxConfig`] applied.
    pub fn site_config_path(&self) -> &Path {
        &self.site_config_path
    }

    /// The server's temp dir (`-p` prefix), holding the config, logs, temp paths and cache.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// How purges are configured.
    pub fn purge_location(&self) -> &PurgeLocation {
        &self.purge
    }

    /// `GET path_and_query` (which must start with `/`) through nginx, with
    /// `Host: 127.0.0.1:<port>`.
    ///
    /// Uses a reqwest client with no proxy, no redirects and a 10 s timeout, so it needs a
    /// Tokio runtime with I/O and time enabled (as `#[tokio::test]` provides).
    pub async fn get(&self, path_and_query: &str) -> Result<Page> {
        self.client.request("GET", path_and_query, &[]).await
    }

    /// `GET path_and_query` with the given `Host` header.
    pub async fn get_with_host(&self, host: &str, path_and_query: &str) -> Result<Page> {
        self.client
            .request("GET", path_and_query, &[("host", host)])
            .await
    }

    /// Any request through nginx, like `request("PURGE", "/purge/a", &[])`. The response
    /// comes back as a [`Page`] whatever its status; an error means no response at all
    /// (connection refused or closed, for instance by a crashing worker, or the 10 s timeout).
    pub async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Page> {
        self.client.request(method, path_and_query, headers).await
    }

    /// The contents of `logs/error.log` (level `warn` and above), or a note saying why it
    /// could not be read.
    pub fn error_log(&self) -> String {
        read_text(&self.error_log)
    }

    /// The contents of `logs/access.log`: one `METHOD URI STATUS cache=STATUS` line per
    /// completed request.
    pub fn access_log(&self) -> String {
        read_text(&self.access_log)
    }

    /// `Some(description)` when a worker process died on a signal: nginx logs `worker process
    /// NNN exited on signal 11` in error.log and starts a new worker, and the request the worker
    /// was serving got no response.
    ///
    /// With [`PurgeLocation::Same`] that is the known crash of Debian's ngx_cache_purge 2.3,
    /// and the description says so and what to use instead.
    ///
    /// A client sees its connection close a moment before the master process logs the crash,
    /// so when error.log has no crash yet this re-reads it for up to 200 ms before answering
    /// `None` (blocking the calling thread that long).
    pub fn worker_crash(&self) -> Option<String> {
        let deadline = Instant::now() + CRASH_LOG_GRACE;
        let log = loop {
            let log = self.error_log();
            if log.lines().any(is_crash_line) || Instant::now() >= deadline {
                break log;
            }
            std::thread::sleep(process::POLL_INTERVAL);
        };
        let lines: Vec<&str> = log.lines().filter(|l| is_crash_line(l)).collect();
        let first = lines.first()?;
        let signal = first
            .split("exited on signal ")
            .nth(1)
            .and_then(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<i32>()
                    .ok()
            })
            .map(|n| match nix::sys::signal::Signal::try_from(n) {
                Ok(s) => format!("{n} ({s})"),
                Err(_) => n.to_string(),
            })
            .unwrap_or_else(|| "?".to_owned());
        let mut message = format!(
            "an nginx worker crashed {} time(s), first on signal {signal}; error.log: {first:?}. ",
            lines.len()
        );
        match &self.purge {
            PurgeLocation::Same { method } => {
                let _ = write!(
                    message,
                    "This is the known crash of Debian's ngx_cache_purge 2.3 \
                     (libnginx-mod-http-cache-purge) with the same-location syntax \
                     `proxy_cache_purge {method} from 127.0.0.1;`: the module's copy of an nginx \
                     struct is 8 bytes off, so the worker segfaults on every purge request and \
                     the client gets no response. Use PurgeLocation::Separate \
                     (settings: purge_prefix = \"/purge\") instead."
                );
            }
            PurgeLocation::Separate { .. } => {
                let _ = write!(
                    message,
                    "Unexpected with PurgeLocation::Separate; see {}.",
                    self.error_log.display()
                );
            }
        }
        Some(message)
    }

    /// Takes the cache down: stops the nginx processes (as [`Nginx::stop`] does) but keeps the
    /// temp dir, so the port refuses connections until [`Nginx::restart`]. For fault tests.
    pub fn kill_server(&mut self) -> Result<()> {
        if let Some(mut server) = self.process.take() {
            server.terminate(process::STOP_GRACE)?;
        }
        Ok(())
    }

    /// Starts nginx again (stopping it first if it runs) with the same config, port and cache
    /// directory: the files cached before survive, as with a real restart. Waits up to 30 s
    /// until it is ready.
    pub fn restart(&mut self) -> Result<()> {
        self.kill_server()?;
        let binary = process::find_binary("nginx", &[NGINX_BIN], "")?;
        let args: [&OsStr; 4] = [
            OsStr::new("-p"),
            self.root.as_os_str(),
            OsStr::new("-c"),
            self.config_path.as_os_str(),
        ];
        let stdout = self.root.join("stdout.log");
        let stderr = self.root.join("stderr.log");
        let mut server =
            ServerProcess::spawn("nginx", &binary, &args, &self.root, &stdout, &stderr)?;
        let pid_path = self.root.join("nginx.pid");
        let deadline = Instant::now() + process::START_DEADLINE;
        loop {
            if let Some(status) = server.poll_exit()? {
                return Err(HarnessError::StartFailed {
                    server: "nginx",
                    reason: format!("it exited ({status}) on restart"),
                    config: self.config_path.clone(),
                    logs: process::log_tails(&[&stderr, &self.error_log]),
                });
            }
            if pid_file_names(&pid_path, server.pid()) && port_accepts(self.port) {
                break;
            }
            if Instant::now() >= deadline {
                let _ = server.terminate(process::STOP_GRACE);
                return Err(HarnessError::StartFailed {
                    server: "nginx",
                    reason: format!("not ready {:?} after a restart", process::START_DEADLINE),
                    config: self.config_path.clone(),
                    logs: process::log_tails(&[&stderr, &self.error_log]),
                });
            }
            std::thread::sleep(process::POLL_INTERVAL);
        }
        self.pid = server.pid();
        self.process = Some(server);
        Ok(())
    }

    /// Stops nginx: SIGTERM to its process group, up to 5 s to exit, then SIGKILL; reaps the
    /// master; removes the temp dir. Dropping an `Nginx` does the same, ignoring errors.
    ///
    /// Besides a failure to stop or clean up, it reports a master process that had already
    /// exited on its own (quoting its logs): nginx died during the test.
    ///
    /// Blocks the calling thread for as long as that takes (usually a few milliseconds).
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        let stderr = self.root.join("stderr.log");
        process::shut_down(
            "nginx",
            self.pid,
            self.process.take(),
            self.dir.take(),
            &[&stderr, &self.error_log],
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// How long [`Nginx::worker_crash`] waits for the master to log a crash.
const CRASH_LOG_GRACE: Duration = Duration::from_millis(200);

/// nginx's `[alert] ...: worker process 123 exited on signal 11` line.
fn is_crash_line(line: &str) -> bool {
    line.contains("worker process") && line.contains("exited on signal")
}

fn pid_file_names(path: &Path, pid: u32) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        == Some(pid)
}

fn port_accepts(port: u16) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    TcpStream::connect_timeout(&addr.into(), Duration::from_millis(500)).is_ok()
}

pub(crate) fn read_text(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(config: &NginxConfig) -> RenderedConfig {
        config
            .render(Path::new("/srv/cph"), 8080, 3000)
            .expect("the shipped config renders")
    }

    #[test]
    fn the_default_is_the_shipped_file_with_its_placeholders_filled_in() {
        let rendered = render(&NginxConfig::default());
        assert_eq!(rendered.main, NGINX_CONF.replace("@DIR@", "/srv/cph"));
        assert_eq!(
            rendered.site,
            NGINX_SITE_CONF
                .replace("@CACHE_DIR@", "/srv/cph/cache")
                .replace("@LISTEN@", "127.0.0.1:8080")
                .replace("@ORIGIN@", "127.0.0.1:3000")
        );
        assert_eq!(unfilled_placeholder(&rendered.main), None);
        assert_eq!(unfilled_placeholder(&rendered.site), None);
        assert!(rendered.main.contains("include cache-purge.conf;"));
    }

    #[test]
    fn the_shipped_files_hold_what_the_harness_relies_on() {
        for line in [
            SHIPPED_LEVELS,
            SHIPPED_CACHE_KEY,
            SHIPPED_PURGE_LOCATION,
            SHIPPED_PURGE_KEY,
            SHIPPED_STATUS_HEADER,
        ] {
            assert_eq!(NGINX_SITE_CONF.matches(line).count(), 1, "{line}");
        }
        assert!(NGINX_SITE_CONF.contains(&format!("keys_zone={CACHE_ZONE}:16m")));
        assert!(NGINX_CONF.contains(&format!("load_module {CACHE_PURGE_MODULE};")));
        assert_eq!(unfilled_placeholder(NGINX_CONF), Some("@DIR@"));
    }

    #[test]
    fn a_custom_key_levels_and_prefix_change_only_their_lines() {
        let config = NginxConfig {
            purge: PurgeLocation::separate("/_cache.purge"),
            cache_key: "$host$uri$is_args$args".to_owned(),
            levels: "2".to_owned(),
            purge_key: None,
            keys_zone_megabytes: 64,
        };
        let site = render(&config).site;
        let default = render(&NginxConfig::default()).site;
        let changed: Vec<(&str, &str)> = default
            .lines()
            .zip(site.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(default.lines().count(), site.lines().count());
        assert_eq!(
            changed,
            [
                (
                    "proxy_cache_path /srv/cph/cache levels=1:2 keys_zone=cache_purge:16m \
                     inactive=60m use_temp_path=off;",
                    "proxy_cache_path /srv/cph/cache levels=2 keys_zone=cache_purge:64m \
                     inactive=60m use_temp_path=off;"
                ),
                (
                    "        proxy_cache_key \"$uri$is_args$args\";",
                    "        proxy_cache_key \"$host$uri$is_args$args\";"
                ),
                (
                    "    location ~ ^/purge(/.*)$ {",
                    "    location ~ ^/_cache\\.purge(/.*)$ {"
                ),
                (
                    "        proxy_cache_purge cache_purge \"$1$is_args$args\";",
                    "        proxy_cache_purge cache_purge \"$host$1$is_args$args\";"
                ),
            ]
        );
    }

    #[test]
    fn the_same_location_style_replaces_the_purge_location() {
        let site = render(&NginxConfig {
            purge: PurgeLocation::same("PURGE"),
            ..NginxConfig::default()
        })
        .site;
        assert!(!site.contains("location ~"), "{site}");
        assert!(!site.contains("separate-location"), "{site}");
        let cached_location = site
            .split("location / {")
            .nth(1)
            .and_then(|rest| rest.split("\n    }").next())
            .expect("location / is there");
        assert!(
            cached_location.contains(
                "add_header X-Cache-Status $upstream_cache_status always;\n            \
                 # Same-location style: SEGFAULTS the worker with Debian's module 2.3.\n            \
                 proxy_cache_purge PURGE from 127.0.0.1;"
            ),
            "{site}"
        );
        assert!(site.ends_with("    }\n}\n"), "{site}");
    }

    #[test]
    fn placeholders_are_found_and_missing_ones_are_errors() {
        assert_eq!(unfilled_placeholder("a @B_C@ d"), Some("@B_C@"));
        assert_eq!(unfilled_placeholder("mail@example.com @ x"), None);
        assert!(fill("listen @LISTEN@;", "x", &[("@ORIGIN@", "1")]).is_err());
        assert!(fill("@LISTEN@ @ORIGIN@", "x", &[("@LISTEN@", "1")]).is_err());
        assert!(replace_once("a a", "a", "b").is_err());
    }
}
