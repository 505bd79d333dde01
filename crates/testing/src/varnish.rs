//! A real varnishd in front of an [`Origin`].

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::background::off_thread;
use crate::error::{HarnessError, Result};
use crate::origin::Origin;
use crate::page::{Page, PageClient};
use crate::ports;
use crate::process::{self, ServerProcess};

const VARNISHD_BIN: &str = "/usr/sbin/varnishd";
const VARNISHADM_BIN: &str = "/usr/bin/varnishadm";
const VARNISHSTAT_BIN: &str = "/usr/bin/varnishstat";
/// Deadline of one `varnishadm` / `varnishstat` run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// The VCL of [`Varnish::start`]: the shipped `deploy/varnish/cache-purge.vcl` (Varnish 7,
/// `vcl 4.1`), the one the docs recommend. `@ORIGIN_PORT@` is replaced by the origin's port.
///
/// - `PURGE <url>` from 127.0.0.1 or ::1: looks the object up (same hash as a `GET` of that
///   URL with that `Host`) and removes it and its variants with `purge.hard()`: `200 Purged`,
///   or `404 Not in cache` when there was nothing; the `X-Purged` response header carries the
///   number of objects removed.
/// - `BAN` from 127.0.0.1 or ::1 with `X-Ban-Url: <regex>` (and optionally
///   `X-Ban-Host: <regex>`): adds the lurker-friendly ban
///   `obj.http.x-url ~ <regex> [&& obj.http.x-host ~ <host regex>]`: `200 Ban added`, or `400`
///   with varnishd's reason when the ban is invalid, or `400 X-Ban-Url header required`.
/// - Other clients get `405 Not allowed` for both.
/// - Every cached object remembers its URL and `Host` in `x-url`/`x-host` (for lurker-friendly
///   bans; removed from responses) and is kept as long as the origin's `Cache-Control` says
///   ([`Origin`] says 10 minutes).
/// - Responses carry `X-Cache: HIT` or `X-Cache: MISS`. `vcl_hash` is the default (URL and
///   `Host`).
pub const HARNESS_VCL: &str = include_str!("../deploy/varnish/cache-purge.vcl");

/// The VCL of [`Varnish::start_xkey`]: the shipped `deploy/varnish/cache-purge-xkey.vcl`,
/// which imports the xkey vmod (Debian's `varnish-modules`) and includes [`HARNESS_VCL`]
/// (written beside it as `cache-purge.vcl`), adding:
///
/// - `PURGE /` from 127.0.0.1 or ::1 with `xkey-purge: TAG`: removes every object whose
///   `xkey` response header holds TAG (`xkey.purge`), or with `xkey-soft: 1` marks them stale
///   (`xkey.softpurge`); `200 Invalidated` with the number of objects in `X-Purged`.
pub const HARNESS_XKEY_VCL: &str = include_str!("../deploy/varnish/cache-purge-xkey.vcl");

/// Where Debian's varnish-modules installs the xkey vmod (the multiarch directory varies).
fn xkey_vmod() -> Option<PathBuf> {
    let candidates = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("varnish/vmods/libvmod_xkey.so"))
        .chain([PathBuf::from("/usr/lib/varnish/vmods/libvmod_xkey.so")]);
    candidates.into_iter().find(|p| p.is_file())
}

/// The cache storage of an instance started without a size (`-s malloc,32m`).
const DEFAULT_STORAGE_MEGABYTES: usize = 32;

/// A real varnishd caching an [`Origin`] (or any HTTP server on a loopback port:
/// [`Varnish::start_in_front_of`]), with its HTTP port and its admin CLI (`-T`, with a
/// secret file) on free loopback ports.
///
/// It runs as
///
/// ```text
/// varnishd -F -n DIR/varnish -a 127.0.0.1:<http> -T 127.0.0.1:<admin> -S DIR/secret
///          -f DIR/harness.vcl -s malloc,32m -l 16m -p ban_lurker_sleep=0.01
///          -p thread_pools=1 -p thread_pool_min=10
/// ```
///
/// where `harness.vcl` is [`HARNESS_VCL`] (the shipped `deploy/varnish/cache-purge.vcl`) or
/// the VCL given to [`Varnish::start_with_vcl`], with `@ORIGIN_PORT@` filled in.
///
/// The thread and log-space settings only keep each instance small. `ban_lurker_age` keeps
/// its default of 60 s: the lurker leaves a new ban alone that long, so during a test every ban
/// keeps its expression on [`Varnish::ban_list`] (a ban the lurker has completed loses it). To
/// watch the lurker complete lurker-friendly (`obj.*`) bans, set it to 0 at run time:
/// [`varnishadm(&["param.set", "ban_lurker_age", "0"])`](Varnish::varnishadm).
///
/// Started as root, varnishd switches to the users `varnish` and `vcache` (so its temp dir is
/// mode 0755 and the VCL 0644) and compiles the VCL with gcc. [`Varnish::stop`] (or dropping
/// it) stops the whole process group (manager and child) and removes the temp dir.
#[derive(Debug)]
pub struct Varnish {
    // Field order matters for Drop: the process stops before its temp dir is removed.
    process: Option<ServerProcess>,
    dir: Option<tempfile::TempDir>,
    pid: u32,
    http_port: u16,
    admin_port: u16,
    root: PathBuf,
    workdir: PathBuf,
    secret_file: PathBuf,
    vcl_path: PathBuf,
    varnishadm: PathBuf,
    varnishstat: PathBuf,
    /// The time column of varnishd's own initial ban, as printed by `ban.list` at start.
    initial_ban: Option<String>,
    client: PageClient,
}

/// One entry of varnishd's ban list (see [`Varnish::bans`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Ban {
    /// When the ban was added, in seconds since the Unix epoch.
    pub time: f64,
    /// How many cached objects still point at this ban (objects cached while it was the
    /// newest one).
    pub refs: u64,
    /// Whether varnishd has completed the ban (the `C` flag): tested against every older
    /// object, or superseded by an identical newer ban. Its expression is then empty.
    pub completed: bool,
    /// The ban expression, like `obj.http.x-url ~ ^/b$`; empty once completed.
    pub expression: String,
}

impl Varnish {
    /// Starts varnishd with [`HARNESS_VCL`] in front of `origin` and waits (up to 30 s) until
    /// it is ready: an HTTP request to its port gets a response, its admin port accepts
    /// connections, and `varnishadm status` reports the child running.
    ///
    /// The blocking work runs on its own thread, so this works on any Tokio runtime flavour;
    /// see [`Varnish::start_blocking`] for synchronous tests.
    ///
    /// Fails with [`HarnessError::MissingBinary`] (naming the `apt-get install` command) when
    /// varnishd, varnishadm, varnishstat or gcc is missing, and with
    /// [`HarnessError::StartFailed`] (quoting varnishd's output, which includes VCL compile
    /// errors) when it does not start. A port taken by someone else in the meantime is retried
    /// with new ports.
    pub async fn start(origin: &Origin) -> Result<Varnish> {
        Varnish::start_with_vcl(origin, HARNESS_VCL).await
    }

    /// Like [`Varnish::start`] with your own VCL; every `@ORIGIN_PORT@` in it is replaced by
    /// the origin's port.
    pub async fn start_with_vcl(origin: &Origin, vcl: &str) -> Result<Varnish> {
        let origin_port = origin.port();
        let vcl = vcl.to_owned();
        off_thread("cph-varnish-start", move || {
            Varnish::start_on_port(origin_port, &vcl)
        })
        .await
    }

    /// Like [`Varnish::start`] with `megabytes` of cache storage (`-s malloc,<megabytes>m`)
    /// instead of 32: the default holds about 50,000 small pages, and a run that caches more
    /// would see varnishd evict some (`MAIN.n_lru_nuked`), so that a MISS no longer proves a
    /// purge.
    pub async fn start_with_storage(origin: &Origin, megabytes: usize) -> Result<Varnish> {
        let origin_port = origin.port();
        off_thread("cph-varnish-start", move || {
            Varnish::start_sized(origin_port, HARNESS_VCL, megabytes)
        })
        .await
    }

    /// Like [`Varnish::start`] with [`HARNESS_XKEY_VCL`]: tags purged through the xkey vmod.
    /// Fails with [`HarnessError::MissingFile`] (naming the `apt-get install` command) when
    /// varnish-modules is not installed.
    pub async fn start_xkey(origin: &Origin) -> Result<Varnish> {
        if xkey_vmod().is_none() {
            return Err(HarnessError::MissingFile {
                what: "the xkey vmod of varnish-modules".to_owned(),
                path: PathBuf::from("/usr/lib/<arch>/varnish/vmods/libvmod_xkey.so"),
            });
        }
        Varnish::start_with_vcl(origin, HARNESS_XKEY_VCL).await
    }

    /// Like [`Varnish::start_xkey`] with `megabytes` of cache storage instead of 32 (see
    /// [`Varnish::start_with_storage`]), for runs that cache more than about 50,000 tagged
    /// pages.
    pub async fn start_xkey_with_storage(origin: &Origin, megabytes: usize) -> Result<Varnish> {
        if xkey_vmod().is_none() {
            return Err(HarnessError::MissingFile {
                what: "the xkey vmod of varnish-modules".to_owned(),
                path: PathBuf::from("/usr/lib/<arch>/varnish/vmods/libvmod_xkey.so"),
            });
        }
        let origin_port = origin.port();
        off_thread("cph-varnish-start", move || {
            Varnish::start_sized(origin_port, HARNESS_XKEY_VCL, megabytes)
        })
        .await
    }

    /// [`Varnish::start`] for synchronous code: blocks the calling thread until varnishd is
    /// ready.
    pub fn start_blocking(origin: &Origin) -> Result<Varnish> {
        Varnish::start_on_port(origin.port(), HARNESS_VCL)
    }

    /// [`Varnish::start_with_vcl`] for synchronous code.
    pub fn start_with_vcl_blocking(origin: &Origin, vcl: &str) -> Result<Varnish> {
        Varnish::start_on_port(origin.port(), vcl)
    }

    /// Like [`Varnish::start`] (with [`HARNESS_VCL`]), in front of any HTTP server listening
    /// on `127.0.0.1:origin_port` (an application under test, say), which must be running by
    /// the first request.
    pub async fn start_in_front_of(origin_port: u16) -> Result<Varnish> {
        off_thread("cph-varnish-start", move || {
            Varnish::start_on_port(origin_port, HARNESS_VCL)
        })
        .await
    }

    /// [`Varnish::start_in_front_of`] for synchronous code.
    pub fn start_in_front_of_blocking(origin_port: u16) -> Result<Varnish> {
        Varnish::start_on_port(origin_port, HARNESS_VCL)
    }

    fn start_on_port(origin_port: u16, vcl: &str) -> Result<Varnish> {
        Varnish::start_sized(origin_port, vcl, DEFAULT_STORAGE_MEGABYTES)
    }

    fn start_sized(origin_port: u16, vcl: &str, storage_megabytes: usize) -> Result<Varnish> {
        let varnishd = process::find_binary("varnishd", &[VARNISHD_BIN], "")?;
        let varnishadm = process::find_binary("varnishadm", &[VARNISHADM_BIN], "")?;
        let varnishstat = process::find_binary("varnishstat", &[VARNISHSTAT_BIN], "")?;
        process::find_binary(
            "gcc",
            &["/usr/bin/gcc"],
            "varnishd compiles VCL to C and needs gcc at run time",
        )?;

        let dir = process::server_temp_dir("cph-varnish-")?;
        let root = dir.path().to_path_buf();
        let workdir = root.join("varnish");
        let secret_file = root.join("secret");
        let vcl_path = root.join("harness.vcl");
        let stdout_path = root.join("stdout.log");
        let stderr_path = root.join("stderr.log");
        process::write_file(&secret_file, &new_secret()?, 0o600)?;
        process::write_file(
            &vcl_path,
            vcl.replace("@ORIGIN_PORT@", &origin_port.to_string())
                .as_bytes(),
            0o644,
        )?;
        // Beside it, for VCL that includes it (`include "./cache-purge.vcl";`, as the shipped
        // xkey VCL does).
        process::write_file(
            &root.join("cache-purge.vcl"),
            HARNESS_VCL
                .replace("@ORIGIN_PORT@", &origin_port.to_string())
                .as_bytes(),
            0o644,
        )?;

        let mut attempt = 0;
        loop {
            attempt += 1;
            let http_port = ports::free_port()?;
            let admin_port = ports::free_port()?;
            // A workdir left by a failed attempt would confuse varnishadm -n.
            let _ = std::fs::remove_dir_all(&workdir);
            let args: Vec<OsString> = vec![
                "-F".into(),
                "-n".into(),
                workdir.clone().into(),
                "-a".into(),
                format!("127.0.0.1:{http_port}").into(),
                "-T".into(),
                format!("127.0.0.1:{admin_port}").into(),
                "-S".into(),
                secret_file.clone().into(),
                "-f".into(),
                vcl_path.clone().into(),
                "-s".into(),
                format!("malloc,{storage_megabytes}m").into(),
                "-l".into(),
                "16m".into(),
                "-p".into(),
                "ban_lurker_sleep=0.01".into(),
                "-p".into(),
                "thread_pools=1".into(),
                "-p".into(),
                "thread_pool_min=10".into(),
            ];
            let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
            let mut server = ServerProcess::spawn(
                "varnishd",
                &varnishd,
                &args,
                &root,
                &stdout_path,
                &stderr_path,
            )?;
            let logs = [stdout_path.as_path(), stderr_path.as_path()];
            let deadline = Instant::now() + process::START_DEADLINE;
            let mut http_ok = false;
            let mut admin_ok = false;
            let mut last_status = String::new();
            let outcome: std::result::Result<Option<String>, String> = loop {
                if let Some(status) = server.poll_exit()? {
                    break Err(format!("it exited ({status}) before it was ready"));
                }
                http_ok = http_ok || http_answers(http_port);
                admin_ok = admin_ok || port_accepts(admin_port);
                if http_ok && admin_ok {
                    // Confirms the instance on those ports is this one (varnishadm finds the
                    // admin address through the workdir) and that its child runs.
                    match process::run_command(
                        &varnishadm,
                        &[
                            OsStr::new("-n"),
                            workdir.as_os_str(),
                            OsStr::new("-t"),
                            OsStr::new("5"),
                            OsStr::new("status"),
                        ],
                        COMMAND_TIMEOUT,
                    ) {
                        Ok(out) if out.stdout.contains("running") => {
                            break initial_ban_time(&varnishadm, &workdir);
                        }
                        Ok(out) => last_status = out.stdout.trim().to_owned(),
                        Err(e) => last_status = e.to_string(),
                    }
                }
                if Instant::now() >= deadline {
                    break Err(format!(
                        "not ready after {:?} (HTTP port {http_port} answering: {http_ok}, \
                         admin port {admin_port} accepting: {admin_ok}, varnishadm status: \
                         {last_status:?})",
                        process::START_DEADLINE
                    ));
                }
                std::thread::sleep(process::POLL_INTERVAL);
            };
            match outcome {
                Ok(initial_ban) => {
                    tracing::debug!(pid = server.pid(), http_port, admin_port, dir = %root.display(), "varnishd ready");
                    let client = PageClient::new(http_port, "x-cache")?;
                    return Ok(Varnish {
                        pid: server.pid(),
                        process: Some(server),
                        dir: Some(dir),
                        http_port,
                        admin_port,
                        root,
                        workdir,
                        secret_file,
                        vcl_path,
                        varnishadm,
                        varnishstat,
                        initial_ban,
                        client,
                    });
                }
                Err(reason) => {
                    let _ = server.terminate(process::STOP_GRACE);
                    if process::mentions_port_taken(&logs) && attempt < process::PORT_ATTEMPTS {
                        tracing::debug!(
                            http_port,
                            admin_port,
                            attempt,
                            "varnishd: port taken, retrying"
                        );
                        for log in logs {
                            let _ = std::fs::remove_file(log);
                        }
                        continue;
                    }
                    return Err(HarnessError::StartFailed {
                        server: "varnishd",
                        reason,
                        config: vcl_path.clone(),
                        logs: process::log_tails(&logs),
                    });
                }
            }
        }
    }

    /// The HTTP port (`-a`).
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// `"127.0.0.1:<http port>"`.
    pub fn http_addr(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    /// The admin CLI port (`-T`).
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The admin CLI address (`-T`), `"127.0.0.1:<port>"`.
    pub fn admin_addr(&self) -> String {
        format!("127.0.0.1:{}", self.admin_port)
    }

    /// The secret file (`-S`): 32 random lower-case hex characters and a newline, mode 0600.
    pub fn secret_file(&self) -> &Path {
        &self.secret_file
    }

    /// The server's temp dir, holding the secret, the VCL, varnishd's output and the
    /// workdir.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The working directory (`-n`), an absolute path.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The VCL file varnishd was started with (`-f`).
    pub fn vcl_path(&self) -> &Path {
        &self.vcl_path
    }

    /// The PID of the varnishd manager process (also its process group ID).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `GET path_and_query` (which must start with `/`) through Varnish, with
    /// `Host: 127.0.0.1:<http port>`.
    ///
    /// Uses a reqwest client with no proxy, no redirects and a 10 s timeout, so it needs a
    /// Tokio runtime with I/O and time enabled (as `#[tokio::test]` provides).
    pub async fn get(&self, path_and_query: &str) -> Result<Page> {
        self.client.request("GET", path_and_query, &[]).await
    }

    /// `GET path_and_query` with the given `Host` header (Varnish hashes URL and `Host`).
    pub async fn get_with_host(&self, host: &str, path_and_query: &str) -> Result<Page> {
        self.client
            .request("GET", path_and_query, &[("host", host)])
            .await
    }

    /// Any request through Varnish, like `request("BAN", "/", &[("X-Ban-Url", "^/a$")])`.
    /// The response comes back as a [`Page`] whatever its status; an error means no response
    /// at all.
    pub async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Page> {
        self.client.request(method, path_and_query, headers).await
    }

    /// Runs `/usr/bin/varnishadm -n <workdir> <args...>` (no shell: each argument is passed
    /// as is) and returns its stdout. Fails with [`HarnessError::Command`], quoting status,
    /// stdout and stderr, when varnishadm exits non-zero (a CLI status other than 200), and
    /// kills it after 15 s.
    pub fn varnishadm(&self, args: &[&str]) -> Result<String> {
        let mut argv: Vec<&OsStr> = vec![OsStr::new("-n"), self.workdir.as_os_str()];
        argv.extend(args.iter().map(OsStr::new));
        Ok(process::run_command(&self.varnishadm, &argv, COMMAND_TIMEOUT)?.stdout)
    }

    /// The ban list as varnishd reports it (read with the real `varnishadm ban.list`, an
    /// independent check of what a client sent): the expression of each ban, oldest first,
    /// like `"obj.http.x-url ~ ^/b$"`.
    ///
    /// `ban.list` prints `<time> <refs> <C|->  <expression>` per ban, newest first; only the
    /// expressions are kept, in the opposite order. Left out: varnishd's own initial ban
    /// (completed, with an empty expression, present from the start until varnishd trims it),
    /// recognised by the time it had at start.
    ///
    /// Two things varnishd does on its own: it deletes the oldest bans once no cached object
    /// predates them (the newest ban always stays), and it empties the expression of a ban it
    /// has *completed* (tested against every object older than it: done by the ban lurker
    /// after `ban_lurker_age`, 60 s by default, and to an older duplicate when an identical
    /// ban is added, as `ban_dups` is on). A completed ban is listed as `""`; see
    /// [`Varnish::bans`] for the flags.
    ///
    /// Fails with [`HarnessError::BanListTruncated`] when the output was cut at `cli_limit`
    /// (48 KB by default, several hundred bans); count bans with [`Varnish::ban_count`].
    pub fn ban_list(&self) -> Result<Vec<String>> {
        Ok(self.bans()?.into_iter().map(|b| b.expression).collect())
    }

    /// The ban list with every column, oldest first, without varnishd's initial ban (see
    /// [`Varnish::ban_list`]).
    pub fn bans(&self) -> Result<Vec<Ban>> {
        let out = self.varnishadm(&["ban.list"])?;
        if out.contains("[response was truncated]") {
            return Err(HarnessError::BanListTruncated { bytes: out.len() });
        }
        let parsed = parse_ban_list(&out).map_err(|detail| HarnessError::UnexpectedOutput {
            command: format!("varnishadm -n {} ban.list", self.workdir.display()),
            detail,
            output: out.clone(),
        })?;
        Ok(parsed
            .into_iter()
            .filter(|(time, _)| Some(time) != self.initial_ban.as_ref())
            .map(|(_, ban)| ban)
            .collect())
    }

    /// How many bans are on varnishd's list, from the `MAIN.bans` counter
    /// (`varnishstat -n <workdir> -1`), which, unlike `ban.list`, is never truncated.
    ///
    /// Like [`Varnish::ban_list`], it leaves out varnishd's initial ban while that is still on
    /// the list, so the two agree: the initial ban is the oldest, varnishd only ever deletes
    /// bans from the old end of the list, so it is there exactly while `MAIN.bans_deleted` is
    /// 0.
    pub fn ban_count(&self) -> Result<u64> {
        let stats = self.stats(&["MAIN.bans", "MAIN.bans_deleted"])?;
        let bans = stats[0];
        let deleted = stats[1];
        Ok(if deleted == 0 && self.initial_ban.is_some() {
            bans.saturating_sub(1)
        } else {
            bans
        })
    }

    /// The value of one varnishstat counter, like `"MAIN.bans"`, `"MAIN.n_object"` or
    /// `"MAIN.backend_req"` (`varnishstat -n <workdir> -1 -f <name>`).
    pub fn stat(&self, name: &str) -> Result<u64> {
        Ok(self.stats(&[name])?[0])
    }

    fn stats(&self, names: &[&str]) -> Result<Vec<u64>> {
        let mut argv: Vec<&OsStr> = vec![
            OsStr::new("-n"),
            self.workdir.as_os_str(),
            OsStr::new("-t"),
            OsStr::new("5"),
            OsStr::new("-1"),
        ];
        for name in names {
            argv.push(OsStr::new("-f"));
            argv.push(OsStr::new(name));
        }
        let out = process::run_command(&self.varnishstat, &argv, COMMAND_TIMEOUT)?.stdout;
        names
            .iter()
            .map(|name| {
                out.lines()
                    .find_map(|line| {
                        let mut fields = line.split_whitespace();
                        (fields.next() == Some(name))
                            .then(|| fields.next()?.parse::<u64>().ok())
                            .flatten()
                    })
                    .ok_or_else(|| HarnessError::UnexpectedOutput {
                        command: process::command_line(&self.varnishstat, &argv),
                        detail: format!("no counter {name}"),
                        output: out.clone(),
                    })
            })
            .collect()
    }

    /// Stops varnishd: SIGTERM to its process group (manager and child), up to 5 s to exit,
    /// then SIGKILL; reaps the manager; removes the temp dir. Dropping a `Varnish` does the
    /// same, ignoring errors.
    ///
    /// Besides a failure to stop or clean up, it reports a manager process that had already
    /// exited on its own (quoting its output): varnishd died during the test.
    ///
    /// Blocks the calling thread for as long as that takes (usually well under a second).
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        let stdout = self.root.join("stdout.log");
        let stderr = self.root.join("stderr.log");
        process::shut_down(
            "varnishd",
            self.pid,
            self.process.take(),
            self.dir.take(),
            &[&stdout, &stderr],
        )
    }
}

impl Drop for Varnish {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Parses `ban.list` output: a `Present bans:` line, then `<time> <refs> <C|->  <spec>` per
/// ban, newest first. Returns each ban with its time column as printed, oldest first.
fn parse_ban_list(out: &str) -> std::result::Result<Vec<(String, Ban)>, String> {
    let mut lines = out.lines();
    match lines.next() {
        Some(first) if first.trim() == "Present bans:" => {}
        _ => return Err("expected a first line \"Present bans:\"".to_owned()),
    }
    let mut bans = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        // "%10.6f %5ju %s" then two spaces then the expression (which may contain spaces).
        let bad = || format!("cannot read the ban line {line:?}");
        let (time_text, rest) = line.trim_start().split_once(' ').ok_or_else(bad)?;
        let (refs, rest) = rest.trim_start().split_once(' ').ok_or_else(bad)?;
        let time = time_text.parse::<f64>().map_err(|_| bad())?;
        let refs = refs.parse::<u64>().map_err(|_| bad())?;
        let mut chars = rest.chars();
        let completed = match chars.next() {
            Some('C') => true,
            Some('-') => false,
            _ => return Err(bad()),
        };
        let spec = chars.as_str();
        let expression = spec.strip_prefix("  ").unwrap_or(spec.trim_start());
        bans.push((
            time_text.to_owned(),
            Ban {
                time,
                refs,
                completed,
                expression: expression.to_owned(),
            },
        ));
    }
    bans.reverse();
    Ok(bans)
}

/// The time column of the oldest ban on the list: at start, varnishd's initial ban.
fn initial_ban_time(
    varnishadm: &Path,
    workdir: &Path,
) -> std::result::Result<Option<String>, String> {
    let out = process::run_command(
        varnishadm,
        &[
            OsStr::new("-n"),
            workdir.as_os_str(),
            OsStr::new("ban.list"),
        ],
        COMMAND_TIMEOUT,
    )
    .map_err(|e| e.to_string())?;
    let bans = parse_ban_list(&out.stdout)?;
    Ok(bans.into_iter().next().map(|(time, _)| time))
}

/// 16 random bytes from /dev/urandom as 32 lower-case hex characters and a newline.
fn new_secret() -> Result<Vec<u8>> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| HarnessError::io("reading 16 bytes from /dev/urandom", e))?;
    let mut secret = String::with_capacity(33);
    for b in bytes {
        let _ = write!(secret, "{b:02x}");
    }
    secret.push('\n');
    Ok(secret.into_bytes())
}

fn port_accepts(port: u16) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    TcpStream::connect_timeout(&addr.into(), Duration::from_millis(500)).is_ok()
}

/// Whether varnishd's HTTP port answers. The probe is a request line varnishd's HTTP parser
/// rejects with `400 Bad Request` itself, before any VCL runs, so it never reaches the origin
/// (a real `GET` would count as a fetch) whatever the VCL does.
fn http_answers(port: u16) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr.into(), Duration::from_millis(500))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"HARNESS-READY-PROBE\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 5];
    stream.read_exact(&mut buf).is_ok() && &buf == b"HTTP/"
}

#[cfg(test)]
mod tests {
    use super::parse_ban_list;

    #[test]
    fn parses_ban_list_oldest_first() {
        let out = "Present bans:\n\
                   1795600645.099136     0 -  obj.http.x-url ~ ^/b$ && obj.http.x-host ~ a b\n\
                   1795600644.000000     3 C  \n\
                   1795600643.365677     2 C  \n\n";
        let bans = parse_ban_list(out).unwrap();
        let summary: Vec<(&str, u64, bool, &str)> = bans
            .iter()
            .map(|(t, b)| (t.as_str(), b.refs, b.completed, b.expression.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("1795600643.365677", 2, true, ""),
                ("1795600644.000000", 3, true, ""),
                (
                    "1795600645.099136",
                    0,
                    false,
                    "obj.http.x-url ~ ^/b$ && obj.http.x-host ~ a b"
                ),
            ]
        );
        assert!((bans[2].1.time - 1_795_600_645.099_136).abs() < 1e-6);
    }

    #[test]
    fn the_shipped_vcl_has_the_origin_port_as_its_only_placeholder() {
        let vcl = super::HARNESS_VCL;
        assert!(vcl.starts_with("vcl 4.1;\n"));
        assert!(
            vcl.contains("backend origin { .host = \"127.0.0.1\"; .port = \"@ORIGIN_PORT@\"; }")
        );
        assert_eq!(vcl.replace("@ORIGIN_PORT@", "").matches('@').count(), 0);
        // What the backends rely on: PURGE, BAN with X-Ban-Url / X-Ban-Host, and the object
        // headers of lurker-friendly bans.
        for needle in [
            "req.method == \"PURGE\"",
            "req.method == \"BAN\"",
            "req.http.X-Ban-Url",
            "req.http.X-Ban-Host",
            "set beresp.http.x-url = bereq.url;",
            "set beresp.http.x-host = bereq.http.host;",
        ] {
            assert!(vcl.contains(needle), "{needle}");
        }
    }

    #[test]
    fn rejects_unexpected_output() {
        assert!(parse_ban_list("hello").is_err());
        assert!(parse_ban_list("Present bans:\nnonsense line\n").is_err());
        assert!(parse_ban_list("Present bans:\n1.0 x -  a\n").is_err());
    }
}
