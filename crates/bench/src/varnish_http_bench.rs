//! Scenario 1b: Varnish purged over HTTP (`PURGE <url>`, the shipped VCL's `purge.hard()`),
//! on a varnishd of its own (scenario 1's bans would slow its lookups):
//!
//! - ours: a `Purger` with the `VarnishBackend` in `http` mode (`http_method = "purge"`,
//!   default `concurrency` and `pipeline`: 8 keep-alive connections, 8 requests written at
//!   once on each), one `purge` call per URL, then `flush`;
//! - ours again with its worker on a current-thread runtime driven by a thread of its own
//!   (`PurgerBuilder::runtime`), away from the bench's multi-thread runtime;
//! - ours with `pipeline = 1`: one request per connection at a time, as before pipelining;
//! - the peers' way: one `PURGE` at a time on one kept-alive connection, blocking socket;
//! - a reference for HTTP/1.1 pipelining: the same connection, 16 `PURGE`s written at once
//!   and then their 16 answers read (a server's ceiling when a client's syscalls and round
//!   trips are amortised);
//! - **wrk** `-t1 -c16` with a Lua script over the same URL shape (each request a distinct
//!   cached URL): the load generator as the reference;
//! - the ceiling: wrk purging keys not cached (404: a lookup and nothing to remove).
//!
//! Every method has its own URLs, all cached before the first turn; the methods take turns
//! (a fifth of their URLs each, order rotating), as in scenario 2. Checks: every purged URL
//! a MISS fetched again from the origin, neighbours still HITs, the Purger's counters, wrk's
//! answers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cache_purge_hooks::backend::varnish::VarnishBackend;
use cache_purge_hooks::settings::{Pipeline, VarnishHttpMethod, VarnishMode, VarnishSettings};
use cache_purge_hooks::{Delivery, Purger};
use cache_purge_hooks_testing::{Origin, Varnish};

use crate::cpu::{CpuClock, CpuUsed};
use crate::report::{Row, Table, grouped};
use crate::{Config, Context, Result, check_interrupted, progress, verify_after, web};

const CACHE_HEADER: &str = "x-cache";
/// How many turns each method's URLs are purged in.
const TURNS: usize = 5;
/// Requests written at once by the pipelining reference: wrk's connection count.
const PIPELINE_DEPTH: usize = 16;

/// How a method purges.
enum Way {
    /// Ours.
    Purger(Purger),
    /// Blocking PURGEs on one kept connection, `depth` written at once and then their
    /// answers read (1: one at a time; more: HTTP/1.1 pipelining).
    KeepAlive {
        kept: Option<web::KeepAlive>,
        depth: usize,
    },
    /// wrk; `expect`: the status of a listed URL's answer.
    Wrk { bin: PathBuf, expect: u16 },
}

/// One method, its URLs and what was measured over its turns.
struct Method {
    id: &'static str,
    what: String,
    urls: Vec<String>,
    way: Way,
    cached: bool,
    seconds: f64,
    cpu: CpuUsed,
    statuses: BTreeMap<u16, u64>,
    extra: u64,
}

impl Method {
    /// A method purging `urls` its way (`cached`: whether they are warmed first).
    fn new(id: &'static str, what: String, urls: Vec<String>, way: Way, cached: bool) -> Method {
        Method {
            id,
            what,
            urls,
            way,
            cached,
            seconds: 0.0,
            cpu: CpuUsed::default(),
            statuses: BTreeMap::new(),
            extra: 0,
        }
    }

    /// Purges turn `turn`'s fifth of the URLs, adding the time, CPU and statuses.
    async fn turn(&mut self, turn: usize, base: &str, server_group: u32) -> Result<()> {
        let n = self.urls.len();
        let chunk = self.urls[turn * n / TURNS..(turn + 1) * n / TURNS].to_vec();
        if chunk.is_empty() {
            return Ok(());
        }
        let clock = CpuClock::start(Some(server_group));
        let started = Instant::now();
        let mut timed_by_wrk = None;
        let statuses = match &mut self.way {
            Way::Purger(purger) => {
                for t in crate::targets(&chunk)? {
                    purger.try_purge([t]);
                }
                purger.flush().await;
                BTreeMap::new()
            }
            Way::KeepAlive { kept, depth } => {
                let depth = *depth;
                let addr = base
                    .trim_start_matches("http://")
                    .parse()
                    .context("varnishd's address")?;
                let mut client = kept.take().unwrap_or_else(|| web::KeepAlive::new(addr));
                let (client, statuses) = tokio::task::spawn_blocking(move || -> Result<_> {
                    let mut statuses = BTreeMap::new();
                    for window in chunk.chunks(depth) {
                        check_interrupted()?;
                        for status in client
                            .pipeline(window)
                            .with_context(|| format!("PURGE {} ({depth} at once)", window[0]))?
                        {
                            *statuses.entry(status).or_insert(0u64) += 1;
                        }
                    }
                    Ok((client, statuses))
                })
                .await
                .context("the keep-alive loop")??;
                *kept = Some(client);
                statuses
            }
            Way::Wrk { bin, expect } => {
                let (bin, expect, base) = (bin.clone(), *expect, base.to_owned());
                let extra = format!("/v/wrk-extra/{}/{turn}", self.id);
                let outcome = tokio::task::spawn_blocking(move || {
                    crate::wrk::run(&bin, &base, "PURGE", &chunk, &extra, expect)
                })
                .await
                .context("running wrk")??;
                timed_by_wrk = Some(outcome.seconds);
                self.extra += outcome.extra;
                outcome.statuses
            }
        };
        self.seconds += timed_by_wrk.unwrap_or_else(|| started.elapsed().as_secs_f64());
        let used = clock.stop();
        self.cpu.own += used.own;
        self.cpu.server = Some(self.cpu.server.unwrap_or(0.0) + used.server.unwrap_or(0.0));
        self.cpu.own_switches += used.own_switches;
        if let Some(turn) = used.server_scheduling {
            let sum = self.cpu.server_scheduling.get_or_insert_default();
            sum.waited += turn.waited;
            sum.runs += turn.runs;
        }
        for (s, k) in statuses {
            *self.statuses.entry(s).or_insert(0) += k;
        }
        Ok(())
    }
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

/// The cache storage 1b's varnishd needs, in megabytes: every cached method's URLs and
/// their neighbours at 2 KiB each (a small page took about 600 bytes of the harness's 32 MB),
/// and never less than those 32. With 32 MB, `--urls 50000` had varnishd evict 90,000
/// objects.
pub(crate) fn storage(config: &Config) -> usize {
    // Six methods cache their URLs (the seventh purges keys never cached).
    let objects = 6 * (config.urls + config.check);
    objects.div_ceil(512).max(32)
}

/// Runs scenario 1b on `varnish` (a varnishd of its own, the shipped VCL).
pub(crate) async fn run(config: &Config, origin: &Origin, varnish: &Varnish) -> Result<Table> {
    let client = web::client(16)?;
    let base = format!("http://{}", varnish.http_addr());
    let n = config.urls;
    let mut settings = VarnishSettings::default();
    settings.mode = VarnishMode::Http;
    settings.http_method = VarnishHttpMethod::Purge;
    settings.servers = vec![
        varnish
            .http_addr()
            .parse()
            .context("varnishd's HTTP address")?,
    ];
    settings.timeout = Duration::from_secs(5);
    if let Some(c) = config.varnish_concurrency {
        settings.concurrency =
            std::num::NonZeroUsize::new(c).ok_or("--varnish-concurrency must be at least 1")?;
    }
    let concurrency = settings.concurrency;
    let pipeline = settings.pipeline;
    let mut unpipelined = settings.clone();
    unpipelined.pipeline = Pipeline::new(1).context("pipeline = 1")?;
    let purger_unpipelined = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend(
            "varnish",
            VarnishBackend::new(&unpipelined).context("VarnishBackend::new (http, pipeline 1)")?,
        )
        .build()
        .context("building the Purger with pipeline = 1")?;
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend(
            "varnish",
            VarnishBackend::new(&settings).context("VarnishBackend::new (http)")?,
        )
        .build()
        .context("building the Purger")?;
    // The same Purger with its worker on a current-thread runtime of its own, driven by a
    // thread of its own (`PurgerBuilder::runtime`), away from this multi-thread runtime.
    let delivery = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("a runtime for delivery")?;
    let delivery_handle = delivery.handle().clone();
    let (stop_delivery, delivery_stopped) = tokio::sync::oneshot::channel::<()>();
    let delivery_thread = std::thread::Builder::new()
        .name("cph-delivery".into())
        .spawn(move || {
            let _ = delivery.block_on(delivery_stopped);
        })
        .context("a thread for delivery")?;
    let purger_own_runtime = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend(
            "varnish",
            VarnishBackend::new(&settings).context("VarnishBackend::new (http)")?,
        )
        .runtime(delivery_handle)
        .build()
        .context("building the Purger on a runtime of its own")?;
    let wrk = crate::wrk::find()?;
    let mut methods = vec![
        Method::new(
            "ours",
            format!(
                "Purger + VarnishBackend `http`, PURGE ({concurrency} keep-alive connections, pipeline {pipeline})"
            ),
            web::paths("/vh/ours", n),
            Way::Purger(purger),
            true,
        ),
        Method::new(
            "ours-own-runtime",
            "ours, its worker on a current-thread runtime and thread of its own (PurgerBuilder::runtime)"
                .to_owned(),
            web::paths("/vh/own", n),
            Way::Purger(purger_own_runtime),
            true,
        ),
        Method::new(
            "ours-pipeline-1",
            format!(
                "ours with pipeline = 1: one PURGE per connection at a time, {concurrency} connections"
            ),
            web::paths("/vh/unpiped", n),
            Way::Purger(purger_unpipelined),
            true,
        ),
        Method::new(
            "peer-keepalive",
            "peers: sequential PURGE, one kept-alive connection, blocking socket".to_owned(),
            web::paths("/vh/keep", n),
            Way::KeepAlive {
                kept: None,
                depth: 1,
            },
            true,
        ),
        Method::new(
            "pipelined",
            format!(
                "reference: PURGEs pipelined {PIPELINE_DEPTH} deep on one kept-alive connection, blocking socket"
            ),
            web::paths("/vh/pipe", n),
            Way::KeepAlive {
                kept: None,
                depth: PIPELINE_DEPTH,
            },
            true,
        ),
        Method::new(
            "wrk",
            format!(
                "wrk -t{} -c{}, Lua script: one PURGE per cached URL (the load generator)",
                crate::wrk::THREADS,
                crate::wrk::CONNECTIONS
            ),
            web::paths("/vh/wrk", n),
            Way::Wrk {
                bin: wrk.clone(),
                expect: 200,
            },
            true,
        ),
        Method::new(
            "wrk-not-cached",
            format!(
                "ceiling: wrk -t{} -c{}, PURGE of keys not cached (404: a lookup, nothing removed)",
                crate::wrk::THREADS,
                crate::wrk::CONNECTIONS
            ),
            web::paths("/vh/wrkmiss", n),
            Way::Wrk {
                bin: wrk,
                expect: 404,
            },
            false,
        ),
    ];
    let neighbours = |set: &[String]| web::neighbours(set, config.check);
    let mut table = Table::new(
        "varnish-http",
        format!(
            "1b. Varnish HTTP PURGE (purge.hard in the shipped VCL): {} cached URLs per method, varnishd {}",
            grouped(n as u64),
            varnish.http_addr()
        ),
        "URL",
    );
    let mut all = Vec::new();
    for m in methods.iter().filter(|m| m.cached) {
        all.extend(m.urls.iter().cloned());
        all.extend(neighbours(&m.urls));
    }
    progress!(
        "varnishd (http): warming {} URLs",
        grouped(all.len() as u64)
    );
    web::warm(&client, &base, CACHE_HEADER, &all).await?;
    for m in methods.iter().filter(|m| m.cached) {
        let sample = web::sample(&m.urls, config.check);
        let gets = web::get_all(&client, &base, CACHE_HEADER, &sample, 8).await;
        table.check(
            gets.hits == sample.len(),
            true,
            format!(
                "{}: before purging, {}/{} sampled URLs are HITs",
                m.id,
                gets.hits,
                sample.len()
            ),
        );
    }
    progress!(
        "varnishd (http): {} methods take {TURNS} turns each",
        methods.len()
    );
    for turn in 0..TURNS {
        for k in 0..methods.len() {
            let i = (turn + k) % methods.len();
            methods[i].turn(turn, &base, varnish.pid()).await?;
        }
    }
    for m in &methods {
        match &m.way {
            Way::Purger(p) => {
                let (purged, failed) = p
                    .stats()
                    .into_iter()
                    .next()
                    .map_or((0, 0), |s| (s.purged, s.failed));
                table.check(
                    purged == n as u64 && failed == 0,
                    true,
                    format!(
                        "{}: the Purger counted {} purged, {failed} failed",
                        m.id,
                        grouped(purged),
                    ),
                );
            }
            _ => {
                let expect = if m.cached { 200 } else { 404 };
                table.check(
                    m.statuses.get(&expect).copied().unwrap_or(0) >= n as u64,
                    true,
                    format!("{}: answers {}", m.id, describe(&m.statuses)),
                );
            }
        }
    }
    for m in methods.iter().filter(|m| m.cached) {
        verify_after(
            &mut table,
            m.id,
            (&client, &base, CACHE_HEADER, origin),
            &m.urls,
            &neighbours(&m.urls),
            true,
        )
        .await;
    }
    for m in &methods {
        table.rows.push({
            let row = Row::measured(m.id, &m.what, m.urls.len() as u64, m.seconds).cpu(m.cpu);
            if m.id == "ours" { row.ours() } else { row }
        });
    }
    // Where the time goes when neither side is on a CPU: how often each side was switched
    // out, and how long varnishd's threads waited for a CPU while they had work.
    let scheduling: Vec<String> = methods
        .iter()
        .map(|m| {
            let n = m.urls.len().max(1) as f64;
            let server = m.cpu.server_scheduling.map_or("-".to_owned(), |s| {
                format!(
                    "{:.2} runs, {:.1} µs waiting",
                    s.runs as f64 / n,
                    s.waited * 1e6 / n
                )
            });
            format!(
                "{} {:.2} switches here, varnishd {server}",
                m.id,
                m.cpu.own_switches as f64 / n
            )
        })
        .collect();
    table.notes.push(format!(
        "scheduling per URL (context switches of this process and its reaped children; \
         varnishd's threads put on a CPU, and their time runnable waiting for one): {}",
        scheduling.join("; ")
    ));
    let extra: u64 = methods.iter().map(|m| m.extra).sum();
    table.notes.push(format!(
        "wrk ({}) is timed by its script, from its first request to the answer completing its \
         URLs; once its list was exhausted its other connections sent {} PURGE(s) of keys never \
         cached (404); CPU here includes wrk's (a reaped child)",
        crate::wrk::version(),
        grouped(extra)
    ));
    table.notes.push(format!(
        "each method's figure is the sum of {TURNS} turns; the methods took turns in an order \
         rotating from turn to turn; varnishd of its own (no bans on its list)"
    ));
    crate::check_not_evicted(&mut table, varnish)?;
    for m in methods {
        if let Way::Purger(p) = m.way {
            p.shutdown(Duration::from_secs(10))
                .await
                .context("shutting the Purger down")?;
        }
    }
    let _ = stop_delivery.send(());
    let _ = delivery_thread.join();
    Ok(table)
}
