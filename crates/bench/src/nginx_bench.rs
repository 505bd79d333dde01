//! Scenarios 2 and 3: nginx with Debian's ngx_cache_purge module (HTTP), and nginx's cache
//! files unlinked directly.
//!
//! Scenario 2, over HTTP to the separate purge location (`PURGE /purge/<path>`):
//! - ours: a `Purger` with the `NginxBackend` in `http` mode (default concurrency, keep-alive),
//!   and the same backend called directly with all URLs in one batch (no Purger);
//! - the seed: one blocking request per URL on a new connection each, as forked `curl`
//!   processes (over a sample) and as a sequential in-process client;
//! - the peers (Wagtail, FOSHttpCache without parallelism): one request at a time on one
//!   kept-alive connection, from a blocking socket and through reqwest.
//!
//! Scenario 3: ours in `files` mode (read the `KEY:` line, then unlink), beside ours over HTTP
//! and a bare unlink of the same kind of files (md5 → path → unlink, no key check, like
//! WordPress nginx-helper).
//!
//! Every method has its own URLs, all cached (and synced to disk) first. The methods then take
//! turns: each purges a fifth of its URLs, in an order rotating from turn to turn, so that
//! whatever else happens on the machine (another build, the kernel writing back) slows them
//! alike; each method's time is the sum of its turns. Afterwards the cache files of every
//! method's URLs are counted (ngx_cache_purge and the unlinks remove them), every purged URL
//! is fetched (a MISS), and the neighbours too (still HITs). nginx's access log says how each
//! purge request was answered (200 removed an entry, 404 found none).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_purge_hooks::backend::{Backend, NginxBackend};
use cache_purge_hooks::settings::{CacheDir, NginxMode, NginxSettings};
use cache_purge_hooks::{BackendStats, Delivery, Purger};
use cache_purge_hooks_testing::{Nginx, Origin};

use crate::cpu::{CpuClock, CpuUsed};
use crate::report::{Row, Table, grouped};
use crate::{Config, Context, Result, check_interrupted, progress, verify_after, web};

const CACHE_HEADER: &str = "x-cache-status";
const PURGE_PREFIX: &str = "/purge";
/// How many turns each method's URLs are purged in.
const TURNS: usize = 5;

/// The figures of scenario 2 and scenario 3 (each when asked for).
type Tables = (Option<Table>, Option<Table>);

/// How a method purges.
enum Way {
    /// Ours: a Purger (with an `http` or `files` backend); one `purge` call per URL, then
    /// `flush`, at each turn.
    Purger(Purger),
    /// Ours without the Purger: `Backend::purge` on the turn's URLs as one batch.
    Direct(NginxBackend),
    /// `curl -X PURGE` forked per URL.
    Curl(PathBuf),
    /// A blocking client opening a connection per URL.
    NewConnection,
    /// A blocking client keeping one connection (kept across turns).
    KeepAlive(Option<web::KeepAlive>),
    /// reqwest, one request at a time on its kept connection.
    Reqwest(reqwest::Client),
    /// md5 → path → unlink, in this process.
    Unlink,
    /// `wrk -t1 -c16` with a Lua script, one PURGE per URL (the load generator as the
    /// reference); `expect` is the status of a listed URL's answer (200 cached, 404 not).
    Wrk { bin: PathBuf, expect: u16 },
}

/// One method, its URLs and what was measured.
struct Method {
    id: &'static str,
    what: String,
    urls: Vec<String>,
    way: Way,
    seconds: f64,
    cpu: CpuUsed,
    /// HTTP statuses of the answers; for `Unlink`, 200 = a file removed, 404 = none there.
    statuses: BTreeMap<u16, u64>,
    /// A direct call's failure.
    failure: Option<String>,
    /// Whether its URLs are cached before purging (false: the ceiling of a PURGE that finds
    /// nothing to remove).
    cached: bool,
    /// wrk's requests beyond the list (keys never cached), over every turn.
    extra: u64,
}

impl Method {
    fn new(id: &'static str, what: impl Into<String>, urls: Vec<String>, way: Way) -> Method {
        Method {
            id,
            what: what.into(),
            urls,
            way,
            seconds: 0.0,
            cpu: CpuUsed::default(),
            statuses: BTreeMap::new(),
            failure: None,
            cached: true,
            extra: 0,
        }
    }

    /// Marks the method's URLs as never cached.
    fn uncached(mut self) -> Method {
        self.cached = false;
        self
    }

    /// The URLs of turn `turn`.
    fn chunk(&self, turn: usize) -> Vec<String> {
        let n = self.urls.len();
        self.urls[turn * n / TURNS..(turn + 1) * n / TURNS].to_vec()
    }

    /// Purges turn `turn`'s URLs, adding the time and CPU spent.
    async fn turn(&mut self, turn: usize, ctx: &Ctx) -> Result<()> {
        let chunk = self.chunk(turn);
        if chunk.is_empty() {
            return Ok(());
        }
        let clock = CpuClock::start(Some(ctx.server_group));
        let started = Instant::now();
        // wrk times itself (from its first request to the last answer, without its start).
        let mut timed_by_wrk = None;
        let statuses = match &mut self.way {
            Way::Purger(purger) => {
                for t in crate::targets(&chunk)? {
                    purger.try_purge([t]);
                }
                purger.flush().await;
                BTreeMap::new()
            }
            Way::Direct(backend) => {
                if let Err(e) = backend.purge(&crate::targets(&chunk)?).await {
                    self.failure.get_or_insert(e.to_string());
                }
                BTreeMap::new()
            }
            Way::Curl(curl) => {
                let curl = curl.clone();
                let urls: Vec<String> = chunk
                    .iter()
                    .map(|u| format!("{}{PURGE_PREFIX}{u}", ctx.base))
                    .collect();
                blocking(move || {
                    let mut statuses = BTreeMap::new();
                    for url in &urls {
                        check_interrupted()?;
                        *statuses.entry(web::curl_purge(&curl, url)?).or_insert(0) += 1;
                    }
                    Ok(statuses)
                })
                .await?
            }
            Way::NewConnection => {
                let addr = ctx.addr;
                blocking(move || {
                    let mut statuses = BTreeMap::new();
                    for u in &chunk {
                        check_interrupted()?;
                        let target = format!("{PURGE_PREFIX}{u}");
                        let status = web::purge_on_new_connection(addr, &target)
                            .with_context(|| format!("PURGE {target}"))?;
                        *statuses.entry(status).or_insert(0) += 1;
                    }
                    Ok(statuses)
                })
                .await?
            }
            Way::KeepAlive(kept) => {
                let mut client = kept.take().unwrap_or_else(|| web::KeepAlive::new(ctx.addr));
                let (client, statuses) = blocking(move || {
                    let mut statuses = BTreeMap::new();
                    for u in &chunk {
                        check_interrupted()?;
                        let target = format!("{PURGE_PREFIX}{u}");
                        let status = client
                            .purge(&target)
                            .with_context(|| format!("PURGE {target}"))?;
                        *statuses.entry(status).or_insert(0) += 1;
                    }
                    Ok((client, statuses))
                })
                .await?;
                *kept = Some(client);
                statuses
            }
            Way::Reqwest(client) => {
                let method = reqwest::Method::from_bytes(b"PURGE").context("the PURGE method")?;
                let mut statuses = BTreeMap::new();
                for u in &chunk {
                    check_interrupted()?;
                    let url = format!("{}{PURGE_PREFIX}{u}", ctx.base);
                    let response = client
                        .request(method.clone(), &url)
                        .send()
                        .await
                        .with_context(|| format!("PURGE {url}"))?;
                    let status = response.status().as_u16();
                    let _ = response.bytes().await;
                    *statuses.entry(status).or_insert(0) += 1;
                }
                statuses
            }
            Way::Unlink => {
                let probe = Arc::clone(&ctx.probe);
                let targets = crate::targets(&chunk)?;
                blocking(move || {
                    let mut statuses = BTreeMap::new();
                    for t in &targets {
                        check_interrupted()?;
                        let Some(path) = t.as_url().and_then(|u| probe.cache_file(u)) else {
                            continue;
                        };
                        let outcome = match std::fs::remove_file(&path) {
                            Ok(()) => 200,
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 404,
                            Err(e) => {
                                return Err(format!("unlinking {}: {e}", path.display()).into());
                            }
                        };
                        *statuses.entry(outcome).or_insert(0) += 1;
                    }
                    Ok(statuses)
                })
                .await?
            }
            Way::Wrk { bin, expect } => {
                let (bin, expect, base) = (bin.clone(), *expect, ctx.base.clone());
                let targets: Vec<String> =
                    chunk.iter().map(|u| format!("{PURGE_PREFIX}{u}")).collect();
                let extra = format!("{PURGE_PREFIX}/n/wrk-extra/{}/{turn}", self.id);
                let outcome = blocking(move || {
                    crate::wrk::run(&bin, &base, "PURGE", &targets, &extra, expect)
                })
                .await?;
                timed_by_wrk = Some(outcome.seconds);
                self.extra += outcome.extra;
                outcome.statuses
            }
        };
        self.seconds += timed_by_wrk.unwrap_or_else(|| started.elapsed().as_secs_f64());
        let used = clock.stop();
        self.cpu.own += used.own;
        self.cpu.server = Some(self.cpu.server.unwrap_or(0.0) + used.server.unwrap_or(0.0));
        for (status, n) in statuses {
            *self.statuses.entry(status).or_insert(0) += n;
        }
        Ok(())
    }

    /// The Purger's counters, for a method that has one.
    fn purger_stats(&self) -> Option<BackendStats> {
        match &self.way {
            Way::Purger(p) => p.stats().into_iter().next(),
            _ => None,
        }
    }

    fn row(&self) -> Row {
        let row =
            Row::measured(self.id, &self.what, self.urls.len() as u64, self.seconds).cpu(self.cpu);
        if self.id.starts_with("ours") && !self.id.contains("direct") {
            row.ours()
        } else {
            row
        }
    }
}

/// What every method needs.
struct Ctx {
    base: String,
    addr: SocketAddr,
    server_group: u32,
    probe: Arc<NginxBackend>,
}

/// Runs a blocking loop on tokio's blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("a blocking loop")?
}

/// Runs scenario 2 (`http`) and/or 3 (`files`) on one nginx.
pub(crate) async fn run(
    config: &Config,
    nginx: &Nginx,
    origin: &Origin,
    http: bool,
    files: bool,
) -> Result<Tables> {
    let client = web::client(16)?;
    let ctx = Ctx {
        base: format!("http://{}", nginx.addr()),
        addr: nginx.addr().parse().context("parsing nginx's address")?,
        server_group: nginx.pid(),
        probe: Arc::new(files_backend(nginx).context("a files-mode NginxBackend as a probe")?),
    };
    let n = config.urls;

    let mut settings = NginxSettings::default();
    settings.servers = vec![nginx.addr().parse().context("nginx's address")?];
    settings.purge_prefix = Some(PURGE_PREFIX.parse().context("the purge prefix")?);
    if let Some(c) = config.nginx_concurrency {
        settings.concurrency =
            std::num::NonZeroUsize::new(c).ok_or("--nginx-concurrency must be at least 1")?;
    }
    let concurrency = settings.concurrency;
    let pipeline = settings.pipeline;
    let purger = |backend: NginxBackend| {
        Purger::builder()
            .delivery(Delivery::Immediate)
            .backend("nginx", backend)
            .build()
            .context("building the Purger")
    };
    let http_backend = || NginxBackend::new(&settings).context("NginxBackend::new");

    let mut methods: Vec<Method> = Vec::new();
    if http {
        methods.push(Method::new(
            "ours-http",
            format!(
                "Purger + NginxBackend `http` ({concurrency} keep-alive connections, pipeline {pipeline})"
            ),
            web::paths("/n/ours", n),
            Way::Purger(purger(http_backend()?)?),
        ));
        methods.push(Method::new(
            "ours-direct",
            "the same backend called directly, one batch per turn, no Purger",
            web::paths("/n/direct", n),
            Way::Direct(http_backend()?),
        ));
        let curl = web::find_program("curl", &["/usr/bin/curl"])
            .ok_or("curl not found (the seed's reference forks it): apt-get install -y curl")?;
        methods.push(Method::new(
            "seed-curl",
            "seed: fork `curl -s -o /dev/null -X PURGE` per URL",
            web::paths("/n/curl", config.fork_sample),
            Way::Curl(curl),
        ));
        methods.push(Method::new(
            "seed-new-connection",
            "seed in process: blocking PURGE, new connection per URL, sequential",
            web::paths("/n/fresh", n),
            Way::NewConnection,
        ));
        methods.push(Method::new(
            "peer-keepalive",
            "peers: sequential PURGE, one kept-alive connection, blocking socket",
            web::paths("/n/keep", n),
            Way::KeepAlive(None),
        ));
        methods.push(Method::new(
            "keepalive-reqwest",
            "sequential PURGE, one kept-alive connection, reqwest (async)",
            web::paths("/n/keepasync", n),
            Way::Reqwest(web::client(1)?),
        ));
        let bin = crate::wrk::find()?;
        methods.push(Method::new(
            "wrk",
            format!(
                "wrk -t{} -c{}, Lua script: one PURGE per cached URL (the load generator)",
                crate::wrk::THREADS,
                crate::wrk::CONNECTIONS
            ),
            web::paths("/n/wrk", n),
            Way::Wrk {
                bin: bin.clone(),
                expect: 200,
            },
        ));
        methods.push(
            Method::new(
                "wrk-not-cached",
                format!(
                    "ceiling: wrk -t{} -c{}, PURGE of keys not cached (404: nothing to unlink)",
                    crate::wrk::THREADS,
                    crate::wrk::CONNECTIONS
                ),
                web::paths("/n/wrkmiss", n),
                Way::Wrk { bin, expect: 404 },
            )
            .uncached(),
        );
    }
    if files {
        methods.push(Method::new(
            "ours-files",
            "Purger + NginxBackend `files` (check the KEY line, unlink)",
            web::paths("/n/files", n),
            Way::Purger(purger(
                files_backend(nginx).context("NginxBackend::new (files)")?,
            )?),
        ));
        methods.push(Method::new(
            "bare-unlink",
            "bare unlink per URL: md5 → path → unlink, no KEY check (nginx-helper)",
            web::paths("/n/unlink", n),
            Way::Unlink,
        ));
    }

    // Where nginx keeps each URL (to count the files a method removed).
    let files_of = |urls: &[String]| -> Result<Vec<PathBuf>> {
        crate::targets(urls)?
            .iter()
            .map(|t| {
                t.as_url()
                    .and_then(|u| ctx.probe.cache_file(u))
                    .ok_or_else(|| format!("no cache file for {t}").into())
            })
            .collect()
    };
    let existing = |paths: &[PathBuf]| paths.iter().filter(|p| p.exists()).count();
    let neighbours = |set: &[String]| web::neighbours(set, config.check);

    let mut all: Vec<String> = Vec::new();
    for m in methods.iter().filter(|m| m.cached) {
        all.extend(m.urls.iter().cloned());
        all.extend(neighbours(&m.urls));
    }
    progress!("nginx: warming {} URLs", grouped(all.len() as u64));
    web::warm(&client, &ctx.base, CACHE_HEADER, &all).await?;
    // The cache files were just written and are still only in the page cache. A page cached
    // in production has been there longer than the kernel's writeback delay (30 s), so its
    // file is on disk, and unlinking it costs far more (the filesystem frees its blocks).
    // Sync them, so that every method purges files on disk (and none pays for a writeback
    // starting in the middle of its turn).
    let sync_note = if config.sync {
        progress!("nginx: sync");
        blocking(web::sync)
            .await
            .map_err(|e| format!("sync after warming nginx: {e} (or run with --no-sync)"))?;
        "synced to disk after warming (as the files of pages cached for more than ~30 s are)"
    } else {
        "NOT synced (--no-sync): still in the page cache, which unlinks much faster"
    };

    let mut before = Vec::new();
    for m in methods.iter().filter(|m| m.cached) {
        let files = files_of(&m.urls)?;
        let sample = web::sample(&m.urls, config.check);
        let gets = web::get_all(&client, &ctx.base, CACHE_HEADER, &sample, 8).await;
        before.push((
            m.id,
            gets.hits == sample.len() && existing(&files) == files.len(),
            format!(
                "{}: before purging, {}/{} sampled URLs are HITs and {}/{} cache files exist",
                m.id,
                gets.hits,
                sample.len(),
                grouped(existing(&files) as u64),
                grouped(files.len() as u64)
            ),
        ));
    }

    progress!("nginx: {} methods take {TURNS} turns each", methods.len());
    for turn in 0..TURNS {
        for k in 0..methods.len() {
            let i = (turn + k) % methods.len();
            methods[i].turn(turn, &ctx).await?;
        }
    }

    // The checks: files gone, every purged URL a MISS, neighbours HITs.
    let mut checks: BTreeMap<&'static str, Table> = BTreeMap::new();
    for m in &methods {
        let mut t = Table::new("scratch", "", "URL");
        if !m.cached {
            t.check(
                m.statuses.get(&404).copied().unwrap_or(0) >= m.urls.len() as u64,
                true,
                format!(
                    "{}: answers {} (404: not in the cache)",
                    m.id,
                    describe(&m.statuses)
                ),
            );
            checks.insert(m.id, t);
            continue;
        }
        if let Some((_, ok, what)) = before.iter().find(|(id, ..)| *id == m.id) {
            t.check(*ok, true, what.clone());
        }
        match (&m.way, m.purger_stats()) {
            (Way::Purger(_), Some(stats)) => t.check(
                stats.purged == m.urls.len() as u64 && stats.failed == 0,
                true,
                format!(
                    "{}: the Purger counted {} purged, {} failed",
                    m.id,
                    grouped(stats.purged),
                    stats.failed
                ),
            ),
            (Way::Direct(_), _) => t.check(
                m.failure.is_none(),
                true,
                format!(
                    "{}: {}",
                    m.id,
                    m.failure.as_deref().unwrap_or("every call returned Ok")
                ),
            ),
            (Way::Unlink, _) => t.check(
                m.statuses.get(&200).copied().unwrap_or(0) == m.urls.len() as u64,
                true,
                format!(
                    "{}: {} of {} files removed",
                    m.id,
                    grouped(m.statuses.get(&200).copied().unwrap_or(0)),
                    grouped(m.urls.len() as u64)
                ),
            ),
            _ => t.check(
                m.statuses.get(&200).copied().unwrap_or(0) == m.urls.len() as u64,
                true,
                format!("{}: answers {}", m.id, describe(&m.statuses)),
            ),
        }
        let files = files_of(&m.urls)?;
        let left = existing(&files);
        t.check(
            left == 0,
            true,
            format!(
                "{}: after purging, {}/{} cache files are gone",
                m.id,
                grouped((files.len() - left) as u64),
                grouped(files.len() as u64)
            ),
        );
        checks.insert(m.id, t);
    }
    for m in methods.iter().filter(|m| m.cached) {
        if let Some(t) = checks.get_mut(m.id) {
            verify_after(
                t,
                m.id,
                (&client, &ctx.base, CACHE_HEADER, origin),
                &m.urls,
                &neighbours(&m.urls),
                true,
            )
            .await;
        }
    }
    let log = nginx.access_log();
    for m in &mut methods {
        if let Way::Purger(p) = &m.way {
            p.shutdown(Duration::from_secs(10))
                .await
                .context("shutting a Purger down")?;
        }
    }

    let table_of = |key: &'static str, title: String, ids: &[&str]| {
        let mut table = Table::new(key, title, "URL");
        for id in ids {
            if let Some(m) = methods.iter().find(|m| m.id == *id) {
                table.rows.push(m.row());
            }
        }
        for id in ids {
            if let Some(t) = checks.get(id) {
                table.checks.extend(t.checks.iter().cloned());
            }
        }
        table
    };
    let turns_note = format!(
        "each method's figure is the sum of {TURNS} turns; the methods took turns in an order \
         rotating from turn to turn"
    );
    let mut http_table = None;
    if http {
        let mut table = table_of(
            "nginx-http",
            format!(
                "2. nginx ngx_cache_purge over HTTP: {} cached URLs per method, nginx {}",
                grouped(n as u64),
                nginx.addr()
            ),
            &[
                "ours-http",
                "ours-direct",
                "seed-curl",
                "seed-new-connection",
                "peer-keepalive",
                "keepalive-reqwest",
                "wrk",
                "wrk-not-cached",
            ],
        );
        let extra: u64 = methods
            .iter()
            .filter(|m| matches!(m.way, Way::Wrk { .. }))
            .map(|m| m.extra)
            .sum();
        table.notes.push(format!(
            "wrk ({}) is timed by its script, from its first request to the answer completing \
             its URLs (its start and connects are not in its figure); once the list was \
             exhausted its other connections sent {} PURGE(s) of keys never cached (404), \
             answered meanwhile; CPU here includes wrk's (a reaped child)",
            crate::wrk::version(),
            grouped(extra)
        ));
        table.notes.push(format!(
            "nginx's access log for ours: {} (200 = an entry removed, 404 = none)",
            describe(&purge_log(&log, &format!("{PURGE_PREFIX}/n/ours/")))
        ));
        table.notes.push(format!(
            "the forked-curl rate is over {} URLs; nginx runs one worker process (the shipped \
             nginx.conf); its cache files were {sync_note}",
            config.fork_sample
        ));
        table.notes.push(turns_note.clone());
        http_table = Some(table);
    }
    let mut files_table = None;
    if files {
        let mut table = table_of(
            "nginx-files",
            format!(
                "3. nginx `files` mode (unlink the cache files): {} cached URLs per method",
                grouped(n as u64)
            ),
            &["ours-files", "ours-http", "bare-unlink"],
        );
        // Ours over HTTP is shown for comparison; the table's own "ours" is the files mode.
        for row in &mut table.rows {
            if row.id == "ours-http" {
                row.ours = false;
                row.what = format!("{} (table 2, same run)", row.what);
            }
        }
        table.checks.retain(|c| !c.what.starts_with("ours-http"));
        table.notes.push(format!(
            "the cache files are nginx's own ({}), levels=1:2, key \"$uri$is_args$args\", \
             {sync_note}; this process runs as uid {}",
            nginx.cache_dir().display(),
            uid()
        ));
        table.notes.push(turns_note);
        files_table = Some(table);
    }
    Ok((http_table, files_table))
}

/// A `files`-mode backend for the harness's nginx (the shipped key and levels).
fn files_backend(nginx: &Nginx) -> Result<NginxBackend> {
    let mut s = NginxSettings::default();
    s.mode = NginxMode::Files;
    s.cache_dir = Some(CacheDir::new(nginx.cache_dir()).context("the cache directory")?);
    s.key_template = Some("$uri$is_args$args".parse().context("the key template")?);
    s.levels = "1:2".parse().context("the levels")?;
    s.timeout = Duration::from_secs(5);
    NginxBackend::new(&s).map_err(|e| e.to_string().into())
}

/// `10,000 × 200, 3 × 404`.
fn describe(statuses: &BTreeMap<u16, u64>) -> String {
    if statuses.is_empty() {
        return "none".to_owned();
    }
    statuses
        .iter()
        .map(|(s, n)| format!("{} × {s}", grouped(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The statuses of the `PURGE` lines of nginx's access log (`METHOD URI STATUS cache=...`)
/// whose URI starts with `prefix`.
fn purge_log(log: &str, prefix: &str) -> BTreeMap<u16, u64> {
    let mut statuses = BTreeMap::new();
    for line in log.lines() {
        let mut words = line.split(' ');
        if words.next() != Some("PURGE") {
            continue;
        }
        if !words.next().is_some_and(|u| u.starts_with(prefix)) {
            continue;
        }
        if let Some(status) = words.next().and_then(|s| s.parse::<u16>().ok()) {
            *statuses.entry(status).or_insert(0) += 1;
        }
    }
    statuses
}

/// This process's user id (from /proc: no libc call needed).
fn uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        })
        .unwrap_or_else(|| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_lines_are_counted_by_prefix() {
        let log = "GET /n/ours/1 200 cache=MISS\n\
                   PURGE /purge/n/ours/1 200 cache=-\n\
                   PURGE /purge/n/ours/2 404 cache=-\n\
                   PURGE /purge/n/keep/2 200 cache=-\n";
        let counts = purge_log(log, "/purge/n/ours/");
        assert_eq!(describe(&counts), "1 × 200, 1 × 404");
    }
}
