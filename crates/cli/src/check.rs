//! `cache-purge check`: diagnoses each configured backend the way a person would, server by
//! server, and says what to do about what it finds.
//!
//! The probes go through the library's own code wherever it has some: Varnish's admin port is
//! checked with [`AdminClient`] (the `cli` mode's client), and the HTTP purge endpoints of
//! Varnish and nginx with a one-server copy of the configured backend purging a URL nobody
//! caches, so what is checked is exactly the request the backend sends and the way it reads
//! the answer.

use std::path::Path;
use std::time::Duration;

use cache_purge_hooks_engine::Target;
use cache_purge_hooks_engine::backend::varnish::{AdminClient, CliError as AdminError};
use cache_purge_hooks_engine::backend::{
    AkamaiBackend, Backend, Cause, CloudFrontBackend, CloudflareBackend, FastlyBackend,
    NginxBackend, SetupError, VarnishBackend,
};
use cache_purge_hooks_engine::settings::{
    AkamaiSettings, BackendSettings, CloudFrontSettings, CloudflareSettings, FastlySettings,
    NginxMode, NginxSettings, ServerAddr, VarnishMode, VarnishSettings,
};
use futures::future::join_all;
use serde_json::json;

use crate::args::{CheckArgs, GlobalArgs};
use crate::describe::{self, BackendInfo};
use crate::error::CliError;
use crate::exit;
use crate::output::{Output, plural};
use crate::settings;

/// The path of the URL the HTTP probes purge, followed by a random part.
pub(crate) const PROBE_PATH: &str = "/__cache_purge_check/";

/// How a finding came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Works.
    Ok,
    /// Does not work: the backend will not purge.
    Fail,
    /// Nothing to check, or information only.
    Note,
}

/// One thing checked: a server, the secret file, the cache directory...
#[derive(Clone, Debug)]
pub(crate) struct Finding {
    /// What was checked: a server's address, `secret_file`, `cache_dir`, `settings`.
    pub(crate) subject: String,
    pub(crate) status: Status,
    /// What was found.
    pub(crate) message: String,
    /// What to do about it.
    pub(crate) hint: Option<String>,
}

impl Finding {
    fn ok(subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            status: Status::Ok,
            message: message.into(),
            hint: None,
        }
    }

    fn fail(subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: Status::Fail,
            ..Self::ok(subject, message)
        }
    }

    fn note(subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: Status::Note,
            ..Self::ok(subject, message)
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "subject": self.subject,
            "ok": self.status != Status::Fail,
            "status": match self.status {
                Status::Ok => "ok",
                Status::Fail => "fail",
                Status::Note => "note",
            },
            "message": self.message,
            "hint": self.hint,
        })
    }
}

/// Runs `cache-purge check`.
pub(crate) fn run(global: &GlobalArgs, args: CheckArgs, out: &Output) -> Result<u8, CliError> {
    let loaded = settings::load(global)?;
    let all: Vec<(&String, &BackendSettings)> = loaded
        .settings
        .backends
        .iter()
        .map(|(name, b)| (name, &b.settings))
        .collect();
    let unknown: Vec<&String> = args
        .backend
        .iter()
        .filter(|name| !loaded.settings.backends.contains_key(*name))
        .collect();
    if !unknown.is_empty() {
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        return Err(CliError::usage(format!(
            "no backend named {} in {}",
            unknown
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
            loaded.source.describe()
        ))
        .with_hint(format!("the configured backends: {}", names.join(", "))));
    }
    let selected: Vec<(&String, &BackendSettings)> = all
        .into_iter()
        .filter(|(name, _)| args.backend.is_empty() || args.backend.contains(name))
        .collect();

    let routing = describe::routing(&loaded.settings);
    let runtime = crate::runtime()?;
    let reports: Vec<(BackendInfo, Vec<Finding>)> = runtime.block_on(join_all(
        selected.iter().map(|(name, backend)| async move {
            (
                describe::info(name, backend),
                check_backend(name, backend).await,
            )
        }),
    ));
    runtime.shutdown_timeout(Duration::from_millis(200));

    let failed = reports
        .iter()
        .filter(|(_, findings)| findings.iter().any(|f| f.status == Status::Fail))
        .count();
    if out.json {
        out.json(&json!({
            "ok": failed == 0,
            "settings": loaded.source.describe(),
            "backends": reports.iter().map(|(info, findings)| json!({
                "backend": info.name,
                "kind": info.kind,
                "mode": info.mode,
                "servers": info.servers,
                "ok": findings.iter().all(|f| f.status != Status::Fail),
                "findings": findings.iter().map(Finding::json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "routing": routing.as_ref().map(|rows| rows.iter().map(|r| json!({
                "backend": r.name,
                "hosts": r.hosts,
                "paths": r.paths,
            })).collect::<Vec<_>>()),
        }));
    } else {
        out.line(format!("settings: {}", loaded.source.describe()));
        for (info, findings) in &reports {
            let ok = findings.iter().all(|f| f.status != Status::Fail);
            out.line(format!(
                "{} {} ({})",
                out.mark(ok),
                out.bold(&info.name),
                info.label()
            ));
            for f in findings {
                let mark = match f.status {
                    Status::Ok => out.ok_mark(),
                    Status::Fail => out.fail_mark(),
                    Status::Note => out.note_mark(),
                };
                out.line(format!("    {mark} {}: {}", f.subject, f.message));
                if let Some(hint) = &f.hint {
                    out.line(format!("      hint: {hint}"));
                }
            }
        }
        match &routing {
            None => {
                out.line("routing: every target goes to every backend (no `hosts`, no `paths`)")
            }
            Some(rows) => {
                out.line("routing (an absolute URL goes to the backends of its host; a path where `paths` is):");
                let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
                for row in rows {
                    out.line(format!("    {:width$}  {}", row.name, row.label()));
                }
            }
        }
        let checked = plural(reports.len() as u64, "backend", "backends");
        if failed == 0 {
            out.line(format!("{checked} checked: all good"));
        } else {
            out.line(format!("{checked} checked: {failed} with problems"));
        }
    }
    Ok(if failed == 0 {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}

/// Every finding for one backend.
async fn check_backend(name: &str, settings: &BackendSettings) -> Vec<Finding> {
    match settings {
        BackendSettings::Varnish(v) => check_varnish(name, v).await,
        BackendSettings::Nginx(n) => check_nginx(name, n).await,
        BackendSettings::Cloudflare(c) => check_cloudflare(c).await,
        BackendSettings::Fastly(f) => check_fastly(f).await,
        BackendSettings::CloudFront(c) => check_cloudfront(c).await,
        BackendSettings::Akamai(a) => check_akamai(a).await,
        BackendSettings::Nats(n) => check_nats(n).await,
        BackendSettings::Log(_) => vec![Finding::note(
            "log",
            "nothing to check: this backend only logs what it would purge (target cache_purge_hooks, level info)",
        )],
        BackendSettings::Dummy(_) => vec![Finding::note(
            "dummy",
            "nothing to check: this backend discards every purge",
        )],
        BackendSettings::Memory(_) => vec![Finding::note(
            "memory",
            "nothing to check: this backend records purges in the process, for tests",
        )],
        other => vec![Finding::note(
            other.kind(),
            "this version of cache-purge cannot check this kind of backend",
        )],
    }
}

/// A backend that the library cannot set up: the reason, as one finding.
fn setup_failure(e: &SetupError) -> Finding {
    match e {
        SetupError::File {
            setting: "secret_file",
            ..
        } => Finding::fail("secret_file", e.to_string()).hint(
            "secret_file is the file given to varnishd -S (Debian: /etc/varnish/secret, \
             readable by root only); run as a user that can read it, or copy it with the \
             right owner",
        ),
        SetupError::File { setting, .. } | SetupError::Program { setting, .. } => {
            Finding::fail(*setting, e.to_string())
        }
        _ => Finding::fail("settings", e.to_string()),
    }
}

async fn check_varnish(_name: &str, settings: &VarnishSettings) -> Vec<Finding> {
    // The settings' values were checked when they were loaded; the constructor checks what
    // needs the local machine: the secret file, the varnishadm binary.
    if let Err(e) = VarnishBackend::new(settings) {
        return vec![setup_failure(&e)];
    }
    // Each address with its text, which the probes name in their findings.
    let servers: Vec<(ServerAddr, String)> = settings
        .servers_or_default()
        .into_iter()
        .map(|s| {
            let shown = s.to_string();
            (s, shown)
        })
        .collect();
    match settings.mode {
        VarnishMode::Http => {
            join_all(servers.iter().map(|(addr, shown)| {
                let mut one = settings.clone();
                one.servers = vec![addr.clone()];
                probe_varnish_http(one, shown)
            }))
            .await
        }
        VarnishMode::Varnishadm => {
            join_all(
                servers
                    .iter()
                    .map(|(_, shown)| probe_varnishadm(settings, shown)),
            )
            .await
        }
        _ => {
            let secret = match std::fs::read(&settings.secret_file) {
                Ok(secret) => secret,
                Err(e) => {
                    return vec![Finding::fail(
                        "secret_file",
                        format!("cannot read {}: {e}", settings.secret_file.display()),
                    )];
                }
            };
            join_all(
                servers
                    .iter()
                    .map(|(_, shown)| probe_admin(shown, &secret, settings.timeout)),
            )
            .await
        }
    }
}

/// Connects to an admin port, authenticates, and asks whether the child (the part that
/// serves and bans) runs.
async fn probe_admin(server: &str, secret: &[u8], timeout: Duration) -> Finding {
    let mut client = match AdminClient::connect(server, Some(secret), timeout).await {
        Ok(client) => client,
        Err(e) => return admin_failure(server, &e, timeout),
    };
    match client.command("status").await {
        Ok(reply) if reply.body.contains("running") => Finding::ok(
            server,
            format!(
                "admin port reachable, secret accepted, {}",
                reply.body.trim().to_lowercase()
            ),
        ),
        Ok(reply) => Finding::fail(
            server,
            format!(
                "authenticated, but the cache process is not running: {}",
                reply.body.trim()
            ),
        )
        .hint("bans cannot be added until it runs: `varnishadm start`, and see varnishd's log for why it stopped"),
        Err(e) => admin_failure(server, &e, timeout),
    }
}

fn admin_failure(server: &str, e: &AdminError, timeout: Duration) -> Finding {
    match e {
        AdminError::Connect(io) | AdminError::Io(io) => Finding::fail(server, format!("cannot connect to the admin port: {io}"))
            .hint(format!(
                "is varnishd running with -T {server}? servers lists the admin (-T) addresses, \
                 not the HTTP port"
            )),
        AdminError::Timeout(_) => Finding::fail(
            server,
            format!("no answer within {}", crate::output::human_duration(timeout)),
        )
        .hint("something accepts connections there but does not speak Varnish's admin protocol, or a firewall drops the packets"),
        AdminError::Auth(message) => Finding::fail(server, message.clone())
            .hint("secret_file must be the very file varnishd was started with (-S), byte for byte"),
        AdminError::Protocol(message) => {
            Finding::fail(server, format!("this is not Varnish's admin port: {message}")).hint(
                "servers lists the admin (-T) addresses, such as 127.0.0.1:6082, not the HTTP port",
            )
        }
        other => Finding::fail(server, other.to_string()),
    }
}

/// Runs `varnishadm -S secret -T server ping`, as the `varnishadm` mode would run its bans.
async fn probe_varnishadm(settings: &VarnishSettings, server: &str) -> Finding {
    let mut command = tokio::process::Command::new(&settings.varnishadm_bin);
    command
        .arg("-S")
        .arg(&settings.secret_file)
        .arg("-T")
        .arg(server)
        .arg("ping")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let bin = settings.varnishadm_bin.display();
    match tokio::time::timeout(settings.timeout, command.output()).await {
        Err(_) => Finding::fail(
            server,
            format!(
                "`{bin} ping` did not finish within {}",
                crate::output::human_duration(settings.timeout)
            ),
        ),
        Ok(Err(e)) => Finding::fail(server, format!("cannot run {bin}: {e}")),
        Ok(Ok(output)) if output.status.success() => Finding::ok(
            server,
            format!(
                "`varnishadm ping` answered: {}",
                String::from_utf8_lossy(&output.stdout).trim()
            ),
        ),
        Ok(Ok(output)) => {
            let said = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            let said = if said.is_empty() {
                String::from_utf8_lossy(&output.stdout).trim().to_owned()
            } else {
                said
            };
            Finding::fail(
                server,
                format!("`{bin} ping` failed ({}): {said}", output.status),
            )
            .hint("check that varnishd runs with -T at this address and -S with secret_file")
        }
    }
}

/// A URL no cache holds, so that probing purges nothing real.
fn probe_target() -> Target {
    let path = format!("{PROBE_PATH}{:016x}", fastrand::u64(..));
    Target::url(&path).unwrap_or(Target::Everything)
}

async fn probe_varnish_http(settings: VarnishSettings, server: &str) -> Finding {
    let backend = match VarnishBackend::new(&settings) {
        Ok(b) => b,
        Err(e) => return setup_failure(&e),
    };
    use cache_purge_hooks_engine::settings::VarnishHttpMethod;
    let ban = settings.http_method == VarnishHttpMethod::Ban;
    let refresh = settings.http_method == VarnishHttpMethod::Refresh;
    let what = if ban {
        format!("BAN with the regex in {}", settings.ban_header)
    } else if refresh {
        "refresh (GET with X-Cache-Purge-Refresh)".to_owned()
    } else {
        "PURGE".to_owned()
    };
    let target = probe_target();
    match backend.purge(std::slice::from_ref(&target)).await {
        Ok(()) if refresh && !backend.servers_without_refresh().is_empty() => Finding::fail(
            server,
            "the refresh of a probe URL was answered without X-Cache-Purge-Refresh: this VCL \
             has no refresh branch, so URLs are purged with PURGE and fetched again instead (visitors may get a miss meanwhile)",
        )
        .hint(
            "use deploy/varnish/cache-purge.vcl, whose vcl_recv sets req.hash_always_miss for a \
             GET with X-Cache-Purge-Refresh from the purgers ACL and whose vcl_miss purges the \
             stored variants (docs/varnish.md), or set http_method = \"purge\"",
        ),
        Ok(()) => Finding::ok(server, format!("{what} of a probe URL was accepted")),
        Err(e) => {
            let hint = http_hint(e.cause(), server).unwrap_or_else(|| {
                if ban {
                    format!(
                        "the VCL must answer BAN requests: std.ban(\"obj.http.x-url ~ \" + req.http.{}) in vcl_recv (deploy/varnish/cache-purge.vcl, docs/varnish.md)",
                        settings.ban_header
                    )
                } else {
                    "the VCL must answer PURGE requests from this host: return (purge) in vcl_recv, with an ACL that lists it (deploy/varnish/cache-purge.vcl, docs/varnish.md)".to_owned()
                }
            });
            Finding::fail(server, format!("{what} failed: {}", e.message())).hint(hint)
        }
    }
}

async fn check_nginx(_name: &str, settings: &NginxSettings) -> Vec<Finding> {
    if let Err(e) = NginxBackend::new(settings) {
        return vec![setup_failure(&e)];
    }
    match settings.mode {
        NginxMode::Files | NginxMode::Wipe => check_cache_dir(settings),
        _ => {
            let servers: Vec<(ServerAddr, String)> = settings
                .servers_or_default()
                .into_iter()
                .map(|s| {
                    let shown = s.to_string();
                    (s, shown)
                })
                .collect();
            join_all(servers.iter().map(|(addr, shown)| {
                let mut one = settings.clone();
                one.servers = vec![addr.clone()];
                probe_nginx_http(one, shown)
            }))
            .await
        }
    }
}

async fn probe_nginx_http(settings: NginxSettings, server: &str) -> Finding {
    let backend = match NginxBackend::new(&settings) {
        Ok(b) => b,
        Err(e) => return setup_failure(&e),
    };
    let target = probe_target();
    let request = format!(
        "{} {}{}",
        settings.method,
        settings
            .purge_prefix
            .as_ref()
            .map(|p| p.as_str())
            .unwrap_or(""),
        target.as_url().map(|u| u.as_str()).unwrap_or(PROBE_PATH)
    );
    match backend.purge(std::slice::from_ref(&target)).await {
        Ok(()) => Finding::ok(
            server,
            format!("`{request}` answered as ngx_cache_purge does (purged, or not cached)"),
        ),
        Err(e) => {
            let hint = http_hint(e.cause(), server)
                .or_else(|| nginx_hint(e.cause(), &settings))
                .unwrap_or_else(|| {
                    "see nginx's error log; deploy/nginx/cache-purge.conf is a working configuration (docs/nginx.md)".to_owned()
                });
            Finding::fail(server, format!("`{request}` failed: {}", e.message())).hint(hint)
        }
    }
}

/// Cloudflare: the token is valid and active, the zone is there for it, and `site_url` is
/// in the zone. Purges nothing.
async fn check_cloudflare(settings: &CloudflareSettings) -> Vec<Finding> {
    let backend = match CloudflareBackend::new(settings) {
        Ok(b) => b,
        Err(e) => return vec![setup_failure(&e)],
    };
    let zone_id = settings
        .zone_id
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let mut findings = Vec::new();
    match backend.check().await {
        Ok(zone) => {
            findings.push(Finding::ok(
                "api_token",
                format!("valid and {} (the API's token check)", zone.token_status),
            ));
            findings.push(Finding::ok(
                format!("zone {zone_id}"),
                format!("{} ({}), reachable with this token", zone.name, zone.status),
            ));
            if let Some(site) = &settings.site_url {
                let host = site.host().split(':').next().unwrap_or("");
                let name = zone.name.as_str();
                if host != name && !host.ends_with(&format!(".{name}")) {
                    findings.push(
                        Finding::fail(
                            "site_url",
                            format!("{site} is not in zone {name}: its purges would miss"),
                        )
                        .hint("set site_url to a host of this zone, or zone_id to the zone of this host"),
                    );
                }
            }
            let limit = backend.rate_limit();
            findings.push(Finding::note(
                "plan",
                format!(
                    "{}: at most {} purge requests per second here (bucket of {}), {} URLs per request",
                    settings.plan,
                    limit.per_second(),
                    limit.burst(),
                    backend.max_batch()
                ),
            ));
        }
        Err(e) => {
            let subject = match e.cause() {
                Cause::Authentication => "api_token".to_owned(),
                Cause::Misconfigured => format!("zone {zone_id}"),
                _ => e.server().unwrap_or("api.cloudflare.com").to_owned(),
            };
            let hint = match e.cause() {
                Cause::Authentication => Some(
                    "create a token with the Zone > Cache Purge > Purge permission (My Profile > API Tokens) and set api_token, or CACHE_PURGE__BACKENDS__<NAME>__API_TOKEN"
                        .to_owned(),
                ),
                Cause::Misconfigured => Some(
                    "zone_id is the 32 hexadecimal digits on the zone's Overview page (API section)"
                        .to_owned(),
                ),
                other => http_hint(other, e.server().unwrap_or("")),
            };
            let mut finding = Finding::fail(subject, e.message().to_owned());
            if let Some(hint) = hint {
                finding = finding.hint(hint);
            }
            findings.push(finding);
        }
    }
    findings
}

/// Fastly: the token can see the service. Purges nothing.
async fn check_fastly(settings: &FastlySettings) -> Vec<Finding> {
    let backend = match FastlyBackend::new(settings) {
        Ok(b) => b,
        Err(e) => return vec![setup_failure(&e)],
    };
    let service_id = settings
        .service_id
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    match backend.check().await {
        Ok(service) => vec![
            Finding::ok(
                format!("service {service_id}"),
                format!("`{}`, reachable with this token", service.name),
            ),
            Finding::note(
                "purges",
                if settings.soft {
                    "soft (Fastly-Soft-Purge: 1) for URLs and surrogate keys; purge-all is always hard"
                } else {
                    "hard; set soft = true to mark objects stale instead"
                },
            ),
        ],
        Err(e) => {
            let (subject, hint) = match e.cause() {
                Cause::Authentication => (
                    "api_token".to_owned(),
                    Some("use an API token with the purge_select scope (and purge_all to purge everything) for this service".to_owned()),
                ),
                Cause::Misconfigured => (
                    format!("service {service_id}"),
                    Some("service_id is the ID shown under the service's name in the Fastly console".to_owned()),
                ),
                other => (
                    e.server().unwrap_or("api.fastly.com").to_owned(),
                    http_hint(other, e.server().unwrap_or("")),
                ),
            };
            let mut finding = Finding::fail(subject, e.message().to_owned());
            if let Some(hint) = hint {
                finding = finding.hint(hint);
            }
            vec![finding]
        }
    }
}

/// Akamai: the credentials are accepted by the EdgeGrid gateway and Fast Purge answers (one
/// request with no objects). Purges nothing.
async fn check_akamai(settings: &AkamaiSettings) -> Vec<Finding> {
    let backend = match AkamaiBackend::new(settings) {
        Ok(b) => b,
        Err(e) => return vec![setup_failure(&e)],
    };
    let source = match &settings.edgerc {
        Some(path) => format!(
            "{} [{}]",
            path.display(),
            settings.section.as_ref().map_or("default", |s| s.as_str())
        ),
        None => "inline settings".to_owned(),
    };
    match backend.check().await {
        Ok(found) => {
            let mut findings = vec![Finding::ok(
                "credentials",
                format!("accepted by the EdgeGrid gateway ({source})"),
            )];
            let limit = backend.rate_limit();
            let urls = backend.url_rate_limit();
            findings.push(Finding::note(
                "limits",
                format!(
                    "{} purges on {}; at most {} requests per second here (bucket of {}), {} URLs per second \
                     (bucket of {}), bodies of at most 50,000 bytes; the account's bucket: {} requests, {} left",
                    found.action,
                    found.network,
                    limit.per_second(),
                    limit.burst(),
                    urls.per_second(),
                    urls.burst(),
                    found.rate_limit.map_or("?".to_owned(), |v| v.to_string()),
                    found.rate_limit_remaining.map_or("?".to_owned(), |v| v.to_string()),
                ),
            ));
            findings.push(Finding::note(
                "everything",
                if settings.cp_codes.is_empty() {
                    "not supported: set cp_codes = [12345] to purge everything by CP code"
                        .to_owned()
                } else {
                    format!(
                        "purges CP codes {}",
                        settings
                            .cp_codes
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
            ));
            findings
        }
        Err(e) => {
            let (subject, hint) = match e.cause() {
                Cause::Authentication => (
                    "credentials".to_owned(),
                    Some(format!(
                        "the API client's credentials ({source}) must be those of an API client with the CCU APIs \
                         (Fast Purge) service at READ-WRITE (Control Center > Identity & access > API clients)"
                    )),
                ),
                other => (
                    e.server().unwrap_or("akamaiapis.net").to_owned(),
                    http_hint(other, e.server().unwrap_or("")),
                ),
            };
            let mut finding = Finding::fail(subject, e.message().to_owned());
            if let Some(hint) = hint {
                finding = finding.hint(hint);
            }
            vec![finding]
        }
    }
}

/// CloudFront: the credentials are valid (the signature is accepted) and can read the
/// distribution, and `hosts` are the distribution's. Invalidates nothing.
async fn check_cloudfront(settings: &CloudFrontSettings) -> Vec<Finding> {
    let backend = match CloudFrontBackend::new(settings) {
        Ok(b) => b,
        Err(e) => return vec![setup_failure(&e)],
    };
    let id = settings
        .distribution_id
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    match backend.check().await {
        Ok(d) => {
            let mut findings = vec![
                Finding::ok(
                    "credentials",
                    "valid: the SigV4 signature and the access key were accepted",
                ),
                Finding::ok(
                    format!("distribution {id}"),
                    format!(
                        "{} ({}), reachable with these credentials",
                        d.domain_name, d.status
                    ),
                ),
            ];
            for host in &settings.hosts {
                let h = host.as_str();
                if !h.eq_ignore_ascii_case(&d.domain_name)
                    && !d.aliases.iter().any(|a| a.eq_ignore_ascii_case(h))
                {
                    findings.push(
                        Finding::fail(
                            "hosts",
                            format!(
                                "{h} is not a domain of distribution {id} (it serves {}{}): its URLs would be invalidated on the wrong site",
                                d.domain_name,
                                d.aliases
                                    .iter()
                                    .map(|a| format!(", {a}"))
                                    .collect::<String>()
                            ),
                        )
                        .hint("list in hosts only the distribution's domain name and alternate domain names (CNAMEs)"),
                    );
                }
            }
            findings.push(Finding::note(
                "limits",
                format!(
                    "at most {} paths and {} wildcard paths in progress{}",
                    settings.max_paths_in_progress,
                    settings.max_wildcards_in_progress,
                    if settings.wait {
                        "; each purge waits for Completed (wait = true)"
                    } else {
                        ""
                    }
                ),
            ));
            findings
        }
        Err(e) => {
            let (subject, hint) = match e.cause() {
                Cause::Authentication => (
                    "credentials".to_owned(),
                    Some(
                        "create an access key for an IAM user or role allowed cloudfront:CreateInvalidation, \
                         cloudfront:GetInvalidation and cloudfront:GetDistribution, and set access_key_id and \
                         secret_access_key (or CACHE_PURGE__BACKENDS__<NAME>__SECRET_ACCESS_KEY)"
                            .to_owned(),
                    ),
                ),
                Cause::Misconfigured => (
                    format!("distribution {id}"),
                    Some("distribution_id is the ID column of the CloudFront console (like EDFDVBD6EXAMPLE), not the domain name".to_owned()),
                ),
                other => (
                    e.server().unwrap_or("cloudfront.amazonaws.com").to_owned(),
                    http_hint(other, e.server().unwrap_or("")),
                ),
            };
            let mut finding = Finding::fail(subject, e.message().to_owned());
            if let Some(hint) = hint {
                finding = finding.hint(hint);
            }
            vec![finding]
        }
    }
}

/// Hints any HTTP purge endpoint deserves, from the failure's cause.
fn http_hint(cause: &Cause, server: &str) -> Option<String> {
    match cause {
        Cause::Unreachable => Some(format!(
            "nothing accepts connections on {server}: is the server running, and is this its HTTP address?"
        )),
        Cause::Timeout => Some(
            "the server accepted the connection but did not answer in time (timeout setting)"
                .to_owned(),
        ),
        Cause::Status(403) => Some("the purge location refuses this host: add its address to the location's allow list (or the VCL's purge ACL)".to_owned()),
        _ => None,
    }
}

/// Hints specific to ngx_cache_purge.
fn nginx_hint(cause: &Cause, settings: &NginxSettings) -> Option<String> {
    if *cause == Cause::ConnectionLost {
        // Connection closed with no answer: the worker died handling the request.
        Some(if settings.purge_prefix.is_none() {
            "nginx closed the connection without answering: its worker probably crashed. Debian's \
             libnginx-mod-http-cache-purge (ngx_cache_purge 2.3) segfaults with the same-location \
             syntax (`proxy_cache_purge PURGE from ...;` inside the proxied location). Use a \
             separate location, `location ~ ^/purge(/.*)$ { proxy_cache_purge ZONE \"$1$is_args$args\"; }`, \
             and set purge_prefix = \"/purge\" (deploy/nginx/cache-purge.conf, docs/nginx.md)"
                .to_owned()
        } else {
            "nginx closed the connection without answering: its worker probably crashed (see \
             \"worker process ... exited on signal\" in nginx's error log)"
                .to_owned()
        })
    } else if matches!(cause, Cause::Status(405 | 501)) {
        Some(match &settings.purge_prefix {
            None => "this location does not handle purges: load ngx_cache_purge and configure a purge location; with a separate `location ~ ^/purge(/.*)$`, set purge_prefix = \"/purge\"".to_owned(),
            Some(prefix) => format!(
                "no purge location answers under {prefix}: is ngx_cache_purge loaded (load_module ...ngx_http_cache_purge_module.so) and is `location ~ ^{prefix}(/.*)$ {{ proxy_cache_purge ZONE \"$1$is_args$args\"; }}` in this server?"
            ),
        })
    } else if matches!(cause, Cause::Status(400)) {
        Some("nginx refused the request itself; check host_header and purge_prefix".to_owned())
    } else {
        None
    }
}

/// `files` and `wipe` modes: the directory exists, can be listed, and this process can delete
/// in it (the cache's level directories are 0700, owned by nginx's worker user).
fn check_cache_dir(settings: &NginxSettings) -> Vec<Finding> {
    let Some(dir) = &settings.cache_dir else {
        return vec![Finding::fail("cache_dir", "not set; this mode needs it")];
    };
    let dir = dir.as_path();
    let shown = dir.display().to_string();
    let subject = format!("cache_dir {shown}");
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) => {
            return vec![
                Finding::fail(&subject, format!("cannot be used: {e}")).hint(
                    "set cache_dir to the directory of nginx's proxy_cache_path (nginx creates it when it starts)",
                ),
            ];
        }
    };
    if !meta.is_dir() {
        return vec![Finding::fail(&subject, "is not a directory")];
    }
    let mut findings = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            return vec![
                Finding::fail(&subject, format!("cannot be listed: {e}")).hint(user_hint()),
            ];
        }
    };
    let subdirs: Vec<_> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    match writable(dir) {
        Ok(()) => findings.push(Finding::ok(
            &subject,
            format!(
                "a directory this process can list and delete in ({})",
                plural(subdirs.len() as u64, "level directory", "level directories")
            ),
        )),
        Err(e) => findings
            .push(Finding::fail(&subject, format!("cannot delete in it: {e}")).hint(user_hint())),
    }
    if let Some(level) = subdirs.first()
        && let Err(e) = writable(level)
    {
        findings.push(
            Finding::fail(
                format!("level directory {}", level.display()),
                format!("cannot delete in it: {e}"),
            )
            .hint(user_hint()),
        );
    }
    if settings.mode == NginxMode::Files
        && let Ok(backend) = NginxBackend::new(settings)
        && let Ok(example) = Target::url("/")
        && let Some(url) = example.as_url()
        && let (Some(key), Some(file)) = (backend.cache_key(url), backend.cache_file(url))
    {
        findings.push(Finding::note(
            "key_template",
            format!(
                "`/` is keyed {:?} and would be the file {}; it must match the `KEY:` line nginx writes in its cache files (proxy_cache_key)",
                String::from_utf8_lossy(&key),
                file.display()
            ),
        ));
    }
    if settings.mode == NginxMode::Wipe {
        findings.push(Finding::note(
            "wipe",
            "every purge deletes the whole cache (that is what this mode is for)",
        ));
    }
    findings
}

fn user_hint() -> &'static str {
    "nginx's cache files are mode 0600 in 0700 directories owned by its worker user (www-data on Debian): run as that user, or root"
}

/// Whether this process can create and delete a file in `dir` (what unlinking a cache file
/// needs), tested with a file of its own.
fn writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".cache-purge-check-{:016x}", fastrand::u64(..)));
    std::fs::File::create(&probe)?;
    std::fs::remove_file(&probe)
}

/// `kind = "nats"`: the servers answer, and the stream exists with the settings (or will be
/// created on the first purge).
async fn check_nats(n: &cache_purge_hooks_engine::settings::NatsSettings) -> Vec<Finding> {
    use cache_purge_hooks_engine::backend::nats::{connect, stream_config, stream_differences};
    let servers: Vec<String> = n
        .servers_or_default()
        .iter()
        .map(ToString::to_string)
        .collect();
    let subject = servers.join(", ");
    let client = match connect(n, "cache-purge check").await {
        Ok(client) => client,
        Err(e) => {
            return vec![
                Finding::fail(subject, e.to_string())
                    .hint("is nats-server running with JetStream (-js) and listening there?"),
            ];
        }
    };
    let mut findings = vec![Finding::ok(subject, "connected")];
    let mut js = async_nats::jetstream::new(client);
    js.set_timeout(n.timeout);
    let name = n.stream.as_str();
    match js.get_stream(name).await {
        Ok(mut stream) => match stream.info().await {
            Ok(info) => {
                let differences = stream_differences(&info.config, &stream_config(n));
                if differences.is_empty() {
                    findings.push(Finding::ok(
                        format!("stream {name}"),
                        format!(
                            "exists as configured: {} messages, sequences {}..{}, subject {}",
                            info.state.messages,
                            info.state.first_sequence,
                            info.state.last_sequence,
                            n.subject()
                        ),
                    ));
                } else {
                    findings.push(
                        Finding::fail(
                            format!("stream {name}"),
                            format!("exists with other settings: {}", differences.join(", ")),
                        )
                        .hint("every publish fails until the stream or the settings change (nats stream edit)"),
                    );
                }
            }
            Err(e) => findings.push(Finding::fail(format!("stream {name}"), e.to_string())),
        },
        Err(_) if n.create_stream => findings.push(Finding::note(
            format!("stream {name}"),
            "does not exist yet: the first purge creates it (create_stream = true)",
        )),
        Err(e) => findings.push(
            Finding::fail(format!("stream {name}"), format!("does not exist ({e})"))
                .hint("create it, or set create_stream = true"),
        ),
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache_purge_hooks_engine::backend::PurgeError;

    #[test]
    fn probe_urls_are_unique_and_under_the_probe_path() {
        let a = probe_target().to_string();
        let b = probe_target().to_string();
        assert!(a.starts_with(&format!("url {PROBE_PATH}")), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn the_debian_same_location_crash_is_named() {
        let e = PurgeError::new(
            Cause::ConnectionLost,
            "request failed: connection closed before message completed",
        )
        .on_server("h:80");
        let hint = nginx_hint(e.cause(), &NginxSettings::default()).unwrap();
        assert!(hint.contains("same-location"), "{hint}");
        assert!(hint.contains("purge_prefix = \"/purge\""), "{hint}");
    }
}
