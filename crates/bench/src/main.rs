//! `cache-purge-bench`: how fast cache-purge-hooks purges real Varnish and nginx caches, printed
//! beside references measured in the same run on the same servers (the seed
//! django-cache-purge-hooks' way, and the peers' way), and what a save pays for it.
//!
//! ```sh
//! cargo run --release -p cache-purge-hooks-bench            # full run (N = 10,000)
//! cargo run --release -p cache-purge-hooks-bench -- --quick # smoke run, well under a minute
//! ```
//!
//! The servers are the ones the test suite runs (`cache-purge-hooks-testing`: the shipped
//! configs in `deploy/`, on free loopback ports); they are stopped, by PID, when the run ends,
//! fails or is interrupted with Ctrl-C. Every scenario checks on the servers that what was
//! purged is gone and that neighbours are still cached: a benchmark that purges nothing would
//! be a lie, so a failed check makes the run exit with status 1. See docs/performance.md.
#![warn(missing_docs)]

mod cdn_bench;
mod child;
mod cpu;
mod fleet_bench;
mod instructions;
mod latency_bench;
mod memory_bench;
mod nginx_bench;
mod outbox_bench;
mod purge_instructions;
mod report;
mod save_path;
mod tags_bench;
mod varnish_bench;
mod varnish_http_bench;
mod web;
mod wrk;

use std::fmt::Display;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use cache_purge_hooks_testing::{Nginx, NginxConfig, Origin, Varnish};
use clap::{Parser, ValueEnum};
use serde_json::json;

use crate::report::{Table, grouped};

/// What can go wrong; every message says what was being done.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;
/// A result of this crate.
pub(crate) type Result<T> = std::result::Result<T, Error>;

/// Adds what was being done to an error.
pub(crate) trait Context<T> {
    /// `what: error`.
    fn context(self, what: impl Display) -> Result<T>;
    /// Same, with the description computed only on error.
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Display) -> Result<T> {
        self.map_err(|e| format!("{what}: {e}").into())
    }
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| format!("{}: {e}", what()).into())
    }
}

/// Set by Ctrl-C: the blocking loops (forks, unlinks) stop at their next step.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Fails once Ctrl-C was pressed.
pub(crate) fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        return Err("interrupted".into());
    }
    Ok(())
}

/// Progress, on stderr (stdout carries the tables or the JSON).
macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("  .. {}", format!($($arg)*)) };
}
pub(crate) use progress;

/// The scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// 1. Varnish bans: ours (batched, admin CLI) vs varnishadm per URL vs one ban per URL.
    Varnish,
    /// 1b. Varnish over HTTP (`PURGE`): ours (`http` mode) vs wrk -t1 -c16 vs keep-alive,
    ///     and wrk purging keys not cached (the ceiling).
    VarnishHttp,
    /// 2. nginx ngx_cache_purge over HTTP: ours vs a new connection per URL vs keep-alive.
    Nginx,
    /// 3. nginx `files` mode (unlink the cache files) vs a bare unlink.
    Files,
    /// 4. The save path: cost of `Purger::purge`, SeaORM inserts with and without hooks.
    Save,
    /// 5. Purges by tag on Varnish: bans on the tag header and xkey, vs FOSHttpCache's xkey
    ///    requests, beside the URL rate.
    Tags,
    /// 6. The CDN backends against enforcing fakes: Cloudflare per plan at its limit vs that
    ///    limit, Fastly URLs and surrogate keys, CloudFront through its paths in progress.
    Cdn,
    /// 7. The fleet over NATS JetStream: save → purged on every node, p50/p90/p99/max at a
    ///    fixed rate with 3 nginx nodes and 10 `memory` nodes, beside direct fan-out.
    Fleet,
    /// 4c. The save path in instructions (valgrind callgrind), with and without hooks, and in
    ///     outbox mode; 4d. our client's instructions per purge over HTTP (Varnish, nginx).
    Callgrind,
    /// 8. Peak RSS with many distinct URLs queued (a child process per variant).
    Memory,
    /// 9. Commit → purge acknowledged by a local nginx at a fixed save rate: p50/p90/p99/max.
    Latency,
    /// 10. Outbox drain rows/s with 1 and 2 worker processes, PostgreSQL and MariaDB.
    Outbox,
}

/// Measures purge throughput against real nginx and varnishd started on free loopback ports,
/// beside references measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "cache-purge-bench", version)]
struct Args {
    /// Cached URLs each method purges in scenarios 1-3 [default: 10000; --quick: 300].
    #[arg(long, value_name = "N")]
    urls: Option<usize>,
    /// URLs purged by the forking references (varnishadm, curl: one process per URL)
    /// [default: 300; --quick: 50].
    #[arg(long, value_name = "N")]
    fork_sample: Option<usize>,
    /// Purged URLs checked (HIT) before purging, and neighbours checked (still HIT) after;
    /// every purged URL is checked (MISS) after [default: 50; --quick: 20].
    #[arg(long, value_name = "N")]
    check: Option<usize>,
    /// `Purger::purge` calls per round in scenario 4a [default: 1000000; --quick: 20000].
    #[arg(long, value_name = "N")]
    purge_calls: Option<usize>,
    /// SeaORM inserts per round and variant in scenario 4b [default: 10000; --quick: 300].
    #[arg(long, value_name = "N")]
    inserts: Option<usize>,
    /// Keep-alive connections of our nginx backend in scenario 2 (its `concurrency` setting)
    /// [default: the backend's default, 8].
    #[arg(long, value_name = "N")]
    nginx_concurrency: Option<usize>,
    /// Keep-alive connections of our Varnish backend in scenario 1b (its `concurrency`
    /// setting) [default: the backend's default, 8].
    #[arg(long, value_name = "N")]
    varnish_concurrency: Option<usize>,
    /// Do not `sync` after warming nginx: purge cache files still in the page cache (never
    /// written to disk), which unlink much faster than files that reached the disk, as files
    /// cached for more than ~30 s have (the kernel's writeback).
    #[arg(long)]
    no_sync: bool,
    /// Rounds of scenario 4 (variants interleaved; the median is printed).
    #[arg(long, value_name = "N", default_value_t = 3)]
    rounds: usize,
    /// Saves per configuration of scenario 7 (the fleet) [default: 5000; --quick: 300].
    #[arg(long, value_name = "N")]
    fleet_saves: Option<usize>,
    /// Saves per second of scenario 7, on a fixed schedule [default: 1000].
    #[arg(long, value_name = "N", default_value_t = 1000)]
    fleet_rate: u32,
    /// Distinct URLs queued in scenario 8 [default: 1000000; --quick: 20000].
    #[arg(long, value_name = "N")]
    queued_urls: Option<usize>,
    /// Saves per variant in scenario 4c: Ir of N + 100 saves minus Ir of 100 [default:
    /// 1000; --quick: 20].
    #[arg(long, value_name = "N")]
    callgrind_saves: Option<usize>,
    /// Saves in scenario 9 [default: 5000; --quick: 300].
    #[arg(long, value_name = "N")]
    latency_saves: Option<usize>,
    /// Saves per second in scenario 9, on a fixed schedule.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    latency_rate: u32,
    /// Outbox rows drained per run in scenario 10 [default: 50000; --quick: 1000].
    #[arg(long, value_name = "N")]
    outbox_rows: Option<usize>,
    /// Internal: run a measurement child (`TASK:key=value,...`) and exit.
    #[arg(long, hide = true, value_name = "SPEC")]
    child: Option<String>,
    /// A smoke run with small counts: finishes well under a minute.
    #[arg(long)]
    quick: bool,
    /// Run only these scenarios (comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "SCENARIO")]
    only: Vec<Scenario>,
    /// Print one JSON document on stdout instead of the tables (progress stays on stderr).
    #[arg(long)]
    json: bool,
}

/// The counts of a run, with the defaults resolved.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// URLs per method, scenarios 1-3.
    pub urls: usize,
    /// URLs per forking reference.
    pub fork_sample: usize,
    /// Sampled URLs and neighbours checked.
    pub check: usize,
    /// Purge calls per round, 4a.
    pub purge_calls: usize,
    /// Inserts per round and variant, 4b.
    pub inserts: usize,
    /// Rounds of scenario 4.
    pub rounds: usize,
    /// Our nginx backend's `concurrency`, when not its default.
    pub nginx_concurrency: Option<usize>,
    /// Our Varnish backend's `concurrency` in `http` mode, when not its default.
    pub varnish_concurrency: Option<usize>,
    /// Whether to `sync` the freshly written nginx cache files before measuring.
    pub sync: bool,
    /// Scenario 7's counts.
    pub fleet: fleet_bench::FleetConfig,
    /// Distinct URLs queued, scenario 8.
    pub queued_urls: usize,
    /// Saves of the two callgrind runs per variant, scenario 4c: (fewer, more).
    pub callgrind_saves: (usize, usize),
    /// Purges of the two callgrind runs per backend, scenario 4d: (fewer, more).
    pub callgrind_purges: (usize, usize),
    /// How often each callgrind run of scenario 4c is repeated (its fewest instructions
    /// taken).
    pub callgrind_repeats: usize,
    /// Saves, scenario 9.
    pub latency_saves: usize,
    /// Saves per second, scenario 9.
    pub latency_rate: u32,
    /// Rows per drain, scenario 10.
    pub outbox_rows: usize,
}

impl Args {
    fn config(&self) -> Result<Config> {
        let pick = |given: Option<usize>, full: usize, quick: usize| {
            given.unwrap_or(if self.quick { quick } else { full })
        };
        let config = Config {
            urls: pick(self.urls, 10_000, 300),
            fork_sample: pick(self.fork_sample, 300, 50),
            check: pick(self.check, 50, 20),
            purge_calls: pick(self.purge_calls, 1_000_000, 20_000),
            inserts: pick(self.inserts, 10_000, 300),
            rounds: self.rounds,
            nginx_concurrency: self.nginx_concurrency,
            varnish_concurrency: self.varnish_concurrency,
            sync: !self.no_sync,
            fleet: fleet_bench::FleetConfig {
                saves: pick(self.fleet_saves, 5_000, 300),
                rate: self.fleet_rate,
                check: pick(self.check, 50, 20),
            },
            queued_urls: pick(self.queued_urls, 1_000_000, 20_000),
            callgrind_saves: {
                let (base, more) = if self.quick { (5, 20) } else { (100, 1_000) };
                (base, base + self.callgrind_saves.unwrap_or(more))
            },
            callgrind_purges: if self.quick { (20, 120) } else { (100, 1_100) },
            callgrind_repeats: if self.quick { 1 } else { 3 },
            latency_saves: pick(self.latency_saves, 5_000, 300),
            latency_rate: self.latency_rate,
            outbox_rows: pick(self.outbox_rows, 50_000, 1_000),
        };
        if config.latency_rate == 0 || config.latency_rate > 100_000 {
            return Err("--latency-rate must be between 1 and 100000".into());
        }
        if config.fleet.rate == 0 || config.fleet.rate > 100_000 {
            return Err("--fleet-rate must be between 1 and 100000".into());
        }
        if self.nginx_concurrency == Some(0) {
            return Err("--nginx-concurrency must be at least 1".into());
        }
        if self.varnish_concurrency == Some(0) {
            return Err("--varnish-concurrency must be at least 1".into());
        }
        for (name, value) in [
            ("--urls", config.urls),
            ("--fork-sample", config.fork_sample),
            ("--check", config.check),
            ("--purge-calls", config.purge_calls),
            ("--inserts", config.inserts),
            ("--rounds", config.rounds),
            ("--fleet-saves", config.fleet.saves),
            ("--queued-urls", config.queued_urls),
            (
                "--callgrind-saves",
                config.callgrind_saves.1 - config.callgrind_saves.0,
            ),
            ("--latency-saves", config.latency_saves),
            ("--outbox-rows", config.outbox_rows),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1").into());
            }
        }
        if config.urls > 100_000 {
            // The harness's nginx keys_zone holds ~128,000 keys, and every method has its own
            // set of URLs; Varnish's storage is 32 MB.
            return Err("--urls must be at most 100000 (the harness servers' cache sizes)".into());
        }
        Ok(config)
    }

    fn runs(&self, s: Scenario) -> bool {
        self.only.is_empty() || self.only.contains(&s)
    }
}

/// The machine the figures come from.
struct Machine {
    cpus: usize,
    cpu_model: String,
    kernel: String,
    load_at_start: String,
    nginx: String,
    varnishd: String,
    curl: String,
    wrk: String,
    build: &'static str,
}

impl Machine {
    fn probe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: read("/proc/cpuinfo")
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
                .unwrap_or_else(|| "unknown".to_owned()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load_at_start: load_average(),
            nginx: web::first_line("nginx", &["/usr/sbin/nginx"], &["-v"]),
            varnishd: web::first_line("varnishd", &["/usr/sbin/varnishd"], &["-V"]),
            curl: web::first_line("curl", &["/usr/bin/curl"], &["--version"]),
            wrk: wrk::version(),
            build: if cfg!(debug_assertions) {
                "debug (figures are not representative: use --release)"
            } else {
                "release"
            },
        }
    }

    fn render(&self, config: &Config) -> String {
        format!(
            "cache-purge-bench {}\n\
             machine: {} CPUs ({}), Linux {}, loopback only; load average at start: {}\n\
             nginx:   {}\n\
             varnish: {}\n\
             curl:    {}\n\
             wrk:     {}\n\
             build:   {}\n\
             counts:  {} URLs per method, {} per forking reference, {} checked; \
             {} purge calls and {} inserts per round, {} round(s); nginx cache files {}\n",
            env!("CARGO_PKG_VERSION"),
            self.cpus,
            self.cpu_model,
            self.kernel,
            self.load_at_start,
            self.nginx,
            self.varnishd,
            self.curl,
            self.wrk,
            self.build,
            grouped(config.urls as u64),
            grouped(config.fork_sample as u64),
            config.check,
            grouped(config.purge_calls as u64),
            grouped(config.inserts as u64),
            config.rounds,
            if config.sync {
                "synced to disk before purging"
            } else {
                "NOT synced (--no-sync): still in the page cache"
            },
        )
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "cpus": self.cpus,
            "cpu_model": self.cpu_model,
            "kernel": self.kernel,
            "load_average_at_start": self.load_at_start,
            "nginx": self.nginx,
            "varnishd": self.varnishd,
            "curl": self.curl,
            "wrk": self.wrk,
            "build": self.build,
        })
    }
}

/// The first three fields of /proc/loadavg.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(spec) = &args.child {
        return child::main(spec);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cache-purge-bench: cannot start the tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async move {
        // On a worker thread, like the request handlers that save entities in an app (and
        // so that awaiting a socket does not hop between the main thread and the workers).
        let mut task = tokio::spawn(async move { run(&args).await });
        tokio::select! {
            joined = &mut task => joined
                .unwrap_or_else(|e| Err(format!("the benchmark task failed: {e}").into())),
            _ = tokio::signal::ctrl_c() => {
                INTERRUPTED.store(true, Ordering::Relaxed);
                // Dropping the task's future stops the servers (by PID, in their Drop).
                task.abort();
                let _ = task.await;
                Err("interrupted (servers stopped)".into())
            }
        }
    });
    // Whatever was still running (a blocking loop) sees INTERRUPTED and ends.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!(
                "cache-purge-bench: a check failed (see FAIL above): the figures are not valid"
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("cache-purge-bench: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs the selected scenarios; `Ok(false)` when a strict check failed.
async fn run(args: &Args) -> Result<bool> {
    let config = args.config()?;
    let machine = Machine::probe();
    if !args.json {
        print!("{}", machine.render(&config));
    }
    let print = |t: &Table| {
        if !args.json {
            print!("{}", t.render());
        }
    };

    let needs_varnish = args.runs(Scenario::Varnish);
    let needs_nginx = args.runs(Scenario::Nginx) || args.runs(Scenario::Files);
    let needs_xkey = args.runs(Scenario::Tags);
    let origin = if needs_varnish
        || needs_nginx
        || needs_xkey
        || args.runs(Scenario::VarnishHttp)
        || args.runs(Scenario::Latency)
    {
        Some(Origin::start().context("starting the origin server")?)
    } else {
        None
    };
    let mut tables: Vec<Table> = Vec::new();
    let mut seed_varnish_per_url = None;
    let mut seed_nginx_per_url = None;

    if let Some(origin) = &origin {
        progress!("starting varnishd and nginx on free loopback ports");
        let (varnish, nginx) = tokio::join!(
            async {
                if needs_varnish {
                    Varnish::start(origin).await.map(Some)
                } else {
                    Ok(None)
                }
            },
            async {
                if needs_nginx {
                    Nginx::start(origin, NginxConfig::default()).await.map(Some)
                } else {
                    Ok(None)
                }
            },
        );
        let varnish = varnish.context("starting varnishd (cache-purge-hooks-testing)")?;
        let nginx = nginx.context("starting nginx (cache-purge-hooks-testing)")?;

        if let Some(varnish) = &varnish {
            let t = varnish_bench::run(&config, origin, varnish).await?;
            seed_varnish_per_url = t.row("seed-varnishadm").map(|r| r.seconds_per_op());
            print(&t);
            tables.push(t);
        }
        if let Some(nginx) = &nginx {
            let (http, files) = nginx_bench::run(
                &config,
                nginx,
                origin,
                args.runs(Scenario::Nginx),
                args.runs(Scenario::Files),
            )
            .await?;
            if let Some(t) = http {
                seed_nginx_per_url = t.row("seed-new-connection").map(|r| r.seconds_per_op());
                print(&t);
                tables.push(t);
            }
            if let Some(t) = files {
                print(&t);
                tables.push(t);
            }
        }
        // Stopped explicitly (rather than dropped) to report a server that died meanwhile.
        if let Some(v) = varnish {
            v.stop().context("stopping varnishd")?;
        }
        if let Some(n) = nginx {
            n.stop().context("stopping nginx")?;
        }
        if args.runs(Scenario::VarnishHttp) {
            progress!("starting varnishd for HTTP purges");
            let varnish = Varnish::start_with_storage(origin, varnish_http_bench::storage(&config))
                .await
                .context("starting varnishd (cache-purge-hooks-testing)")?;
            let t = varnish_http_bench::run(&config, origin, &varnish).await?;
            print(&t);
            tables.push(t);
            varnish.stop().context("stopping varnishd (http)")?;
        }
        if needs_xkey {
            progress!("starting varnishd with the xkey VCL");
            let varnish = Varnish::start_xkey_with_storage(origin, tags_bench::storage(&config))
                .await
                .context("starting varnishd with xkey (cache-purge-hooks-testing)")?;
            let t = tags_bench::run(&config, origin, &varnish).await?;
            print(&t);
            tables.push(t);
            varnish.stop().context("stopping varnishd (xkey)")?;
            progress!("starting nginx for the tag index");
            let nginx = Nginx::start(origin, tags_bench::nginx_config(&config))
                .await
                .context("starting nginx (cache-purge-hooks-testing)")?;
            let t = tags_bench::run_nginx(&config, origin, &nginx).await?;
            print(&t);
            tables.push(t);
            nginx.stop().context("stopping nginx (tag index)")?;
        }
        if args.runs(Scenario::Latency) {
            let t = latency_bench::run(&config, origin).await?;
            print(&t);
            tables.push(t);
        }
        progress!("servers stopped");
    }

    if args.runs(Scenario::Cdn) {
        let t = cdn_bench::run(&config, args.quick).await?;
        print(&t);
        tables.push(t);
    }

    if args.runs(Scenario::Fleet) {
        let t = fleet_bench::run(config.fleet).await?;
        print(&t);
        tables.push(t);
    }

    if args.runs(Scenario::Save) {
        for t in save_path::run(&config, seed_varnish_per_url, seed_nginx_per_url).await? {
            print(&t);
            tables.push(t);
        }
    }
    if args.runs(Scenario::Callgrind) {
        let wall = tables.iter().find(|t| t.key == "save-path-inserts");
        let t = instructions::run(&config, wall).await?;
        print(&t);
        tables.push(t);
        let t = purge_instructions::run(&config).await?;
        print(&t);
        tables.push(t);
    }
    if args.runs(Scenario::Memory) {
        let t = memory_bench::run(&config).await?;
        print(&t);
        tables.push(t);
    }
    if args.runs(Scenario::Outbox) {
        let t = outbox_bench::run(&config).await?;
        print(&t);
        tables.push(t);
    }

    let passed = tables.iter().all(Table::passed);
    let load_at_end = load_average();
    if args.json {
        let doc = json!({
            "machine": machine.to_json(),
            "load_average_at_end": load_at_end,
            "config": {
                "urls": config.urls,
                "fork_sample": config.fork_sample,
                "check": config.check,
                "purge_calls": config.purge_calls,
                "inserts": config.inserts,
                "rounds": config.rounds,
                "nginx_concurrency": config.nginx_concurrency,
                "varnish_concurrency": config.varnish_concurrency,
                "sync_nginx_cache_files": config.sync,
                "fleet_saves": config.fleet.saves,
                "fleet_rate": config.fleet.rate,
                "queued_urls": config.queued_urls,
                "callgrind_saves": [config.callgrind_saves.0, config.callgrind_saves.1],
                "callgrind_purges": [config.callgrind_purges.0, config.callgrind_purges.1],
                "callgrind_repeats": config.callgrind_repeats,
                "latency_saves": config.latency_saves,
                "latency_rate": config.latency_rate,
                "outbox_rows": config.outbox_rows,
            },
            "scenarios": tables.iter().map(Table::to_json).collect::<Vec<_>>(),
            "checks_passed": passed,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).context("writing the JSON report")?
        );
    } else {
        println!("\nload average at end: {load_at_end}");
        println!(
            "checks: {}",
            if passed {
                "all passed"
            } else {
                "SOME FAILED (see FAIL above)"
            }
        );
    }
    Ok(passed)
}

/// The URLs as targets.
pub(crate) fn targets(urls: &[String]) -> Result<Vec<cache_purge_hooks::Target>> {
    urls.iter()
        .map(|u| cache_purge_hooks::Target::url(u).with_context(|| format!("invalid URL {u}")))
        .collect()
}

/// Ours: a [`Purger`](cache_purge_hooks::Purger) with one backend, one `purge` call per URL
/// (as saves make them), then `flush`. Returns the seconds from the first call to the end of
/// the flush, and the backend's counters.
pub(crate) async fn through_purger<B: cache_purge_hooks::backend::Backend>(
    backend: B,
    urls: &[String],
) -> Result<(f64, cache_purge_hooks::BackendStats)> {
    through_purger_targets(backend, targets(urls)?).await
}

/// [`through_purger`] with any targets (tags, say).
pub(crate) async fn through_purger_targets<B: cache_purge_hooks::backend::Backend>(
    backend: B,
    targets: Vec<cache_purge_hooks::Target>,
) -> Result<(f64, cache_purge_hooks::BackendStats)> {
    let purger = cache_purge_hooks::Purger::builder()
        .delivery(cache_purge_hooks::Delivery::Immediate)
        .backend("bench", backend)
        .build()
        .context("building the Purger")?;
    let started = std::time::Instant::now();
    for t in targets {
        purger.try_purge([t]);
    }
    purger.flush().await;
    let seconds = started.elapsed().as_secs_f64();
    let stats = purger
        .stats()
        .into_iter()
        .next()
        .ok_or("the Purger has no backend")?;
    purger
        .shutdown(std::time::Duration::from_secs(10))
        .await
        .context("shutting the Purger down")?;
    Ok((seconds, stats))
}

/// Checks that `varnish` evicted no object for lack of space (`MAIN.n_lru_nuked` is 0), so
/// that a MISS after a purge proves the purge; returns the count, for a note.
pub(crate) fn check_not_evicted(table: &mut Table, varnish: &Varnish) -> Result<u64> {
    let nuked = varnish
        .stat("MAIN.n_lru_nuked")
        .context("reading MAIN.n_lru_nuked")?;
    table.check(
        nuked == 0,
        true,
        format!(
            "no object was evicted for lack of space (n_lru_nuked = {nuked}): a MISS means purged"
        ),
    );
    Ok(nuked)
}

/// Checks after a method ran: every URL of `set` is a MISS, fetched from the origin a second
/// time (the first was the warming GET), and every neighbour still a HIT. `strict_neighbours = false` for a method known to purge
/// neighbours too (the seed's unanchored regex): reported, not failed.
pub(crate) async fn verify_after(
    table: &mut Table,
    label: &str,
    cache: (&reqwest::Client, &str, &str, &Origin),
    set: &[String],
    neighbours: &[String],
    strict_neighbours: bool,
) {
    let (client, base, header, origin) = cache;
    let started = std::time::Instant::now();
    let gets = web::get_all(client, base, header, set, 8).await;
    let took = started.elapsed().as_secs_f64();
    let failed = match &gets.first_failure {
        Some(f) => format!("; {} GETs failed, first: {f}", gets.failed),
        None => String::new(),
    };
    // Warmed once, fetched once more by the GET just made: 2 fetches each.
    let refetched = set.iter().filter(|p| origin.fetches(p) == 2).count();
    table.check(
        gets.misses == set.len() && refetched == set.len(),
        true,
        format!(
            "{label}: after purging, {}/{} purged URLs are MISSes, {}/{} fetched from the \
             origin a second time (GETs took {}){failed}",
            grouped(gets.misses as u64),
            grouped(set.len() as u64),
            grouped(refetched as u64),
            grouped(set.len() as u64),
            report::duration(took)
        ),
    );
    let gets = web::get_all(client, base, header, neighbours, 8).await;
    let explain = if strict_neighbours || gets.hits == neighbours.len() {
        ""
    } else {
        " (its unanchored, unescaped regex `/x/1` also matches `/x/1-keep`, `/x/10`...)"
    };
    table.check(
        gets.hits == neighbours.len(),
        strict_neighbours,
        format!(
            "{label}: {}/{} neighbours (`<purged URL>-keep`) are still HITs{explain}",
            gets.hits,
            neighbours.len()
        ),
    );
}
