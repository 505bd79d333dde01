//! Scenario 7: the fleet over NATS JetStream. How long from a save handing its purge to the
//! app's `Purger` until the last cache node has purged it, at a fixed rate (1,000 saves/s by
//! default), through the fleet (the app's `nats` backend → JetStream → one `cache-purge
//! agent` per node → the node's backend), beside direct fan-out from the app (the app's own
//! `Purger` with one backend per node) in the same run, with 3 and with 10 nodes.
//!
//! What is measured, exactly, per save (one URL each):
//!
//! - **start**: the `Instant` just before `Purger::try_purge` (`Delivery::Immediate`: what an
//!   after-commit scope does at COMMIT, without the database);
//! - **end**: the latest, over the nodes, of the `Instant` at which the node's backend
//!   acknowledged a batch holding the save's URL: a [`Stamped`] wrapper around the node's
//!   backend records it as the backend's `purge` returns `Ok` (the agent's ack to JetStream
//!   comes after that and is not included);
//! - **nodes**: with 3 nodes, each is a real nginx (its own cache, pages cached beforehand,
//!   ngx_cache_purge over HTTP, `NginxBackend` `http` mode); with 10 nodes, each is the
//!   `memory` backend (no cache behind: the figures are the fan-out's, NATS + agent, with no
//!   HTTP to a node);
//! - **agents**: every node's agent is the library's `fleet::Agent` (what `cache-purge agent`
//!   runs: its own NATS connection, durable consumer and `Purger`) running in this process, on
//!   the same tokio runtime as the saves, for 3 nodes as for 10: the clock is the same for
//!   the start and the end;
//! - the saves are paced on an open schedule (save `i` at `i / rate`); a save that starts late
//!   (the runtime busy) is measured from when it started, and the lateness is reported.
//!
//! Checks (strict, the run fails without them): every save purged on every node, nothing
//! failed or dead-lettered; on nginx, every purged page is a MISS on every node and sampled
//! neighbours still HITs. Latencies are printed, never asserted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_purge_hooks::backend::{Backend, Capabilities, MemoryBackend, NatsBackend, NginxBackend};
use cache_purge_hooks::fleet::{Agent, AgentSummary};
use cache_purge_hooks::settings::{AgentSettings, NatsSettings, NginxSettings};
use cache_purge_hooks::{Delivery, Purger, Target};
use cache_purge_hooks_testing::{Nats, Nginx, NginxConfig, Origin};

use crate::report::{Latency, Row, Table, duration, grouped};
use crate::{Context, Result, progress, web};

/// What the harness's nginx says about its cache.
const NGINX_CACHE_HEADER: &str = "x-cache-status";
/// How long after the last save every node must have purged everything.
const SETTLE: Duration = Duration::from_secs(20);
/// How long the agents have to create their consumers and see a first purge.
const AGENTS_READY: Duration = Duration::from_secs(30);

/// The counts of scenario 7.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FleetConfig {
    /// Saves per configuration.
    pub saves: usize,
    /// Saves per second.
    pub rate: u32,
    /// Neighbours checked (still cached) per node.
    pub check: usize,
}

/// When each node's backend acknowledged each save's URL: nanoseconds since `base`, plus 1
/// (0: not yet).
pub(crate) struct Stamps {
    base: Instant,
    /// `/f/<configuration>/`: the measured saves' URLs are this and the save's index.
    prefix: String,
    /// `[node][save]`.
    pub(crate) at: Vec<Vec<AtomicU64>>,
    /// Purges of a URL a node had already purged (at-least-once: possible, counted).
    pub(crate) duplicates: AtomicU64,
    /// Other URLs (the warm-up's) acknowledged, per node.
    others: Vec<AtomicU64>,
}

impl Stamps {
    /// Stamps for `saves` URLs `prefix<i>` on `nodes` nodes, in nanoseconds since `base`.
    pub(crate) fn new(base: Instant, prefix: String, nodes: usize, saves: usize) -> Stamps {
        Stamps {
            base,
            prefix,
            at: (0..nodes)
                .map(|_| (0..saves).map(|_| AtomicU64::new(0)).collect())
                .collect(),
            duplicates: AtomicU64::new(0),
            others: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64 + 1
    }

    fn stamp(&self, node: usize, batch: &[Target]) {
        let now = self.now();
        for target in batch {
            let index = target
                .as_url()
                .and_then(|u| u.path().strip_prefix(self.prefix.as_str()))
                .and_then(|i| i.parse::<usize>().ok());
            match index.and_then(|i| self.at[node].get(i)) {
                Some(slot) => {
                    if slot
                        .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_err()
                    {
                        self.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => {
                    self.others[node].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Saves purged on this node.
    fn purged_on(&self, node: usize) -> usize {
        self.at[node]
            .iter()
            .filter(|a| a.load(Ordering::Relaxed) != 0)
            .count()
    }

    /// Whether every save was purged on every node.
    pub(crate) fn all_purged(&self) -> bool {
        (0..self.at.len()).all(|n| self.purged_on(n) == self.at[n].len())
    }
}

/// A node's backend that records, in [`Stamps`], when each batch was acknowledged.
pub(crate) struct Stamped {
    /// The node's real backend.
    pub(crate) inner: Box<dyn Backend>,
    /// Its index in the stamps.
    pub(crate) node: usize,
    /// Where acknowledgements are recorded.
    pub(crate) stamps: Arc<Stamps>,
}

#[cache_purge_hooks::async_trait]
impl Backend for Stamped {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }
    fn max_concurrency(&self) -> usize {
        self.inner.max_concurrency()
    }
    async fn purge(
        &self,
        batch: &[Target],
    ) -> std::result::Result<(), cache_purge_hooks::backend::PurgeError> {
        self.inner.purge(batch).await?;
        self.stamps.stamp(self.node, batch);
        Ok(())
    }
}

/// What the nodes are.
enum Nodes<'a> {
    /// Real nginx, one per node.
    Nginx(&'a [Nginx]),
    /// The `memory` backend, this many.
    Memory(usize),
}

impl Nodes<'_> {
    fn count(&self) -> usize {
        match self {
            Nodes::Nginx(n) => n.len(),
            Nodes::Memory(n) => *n,
        }
    }

    fn backend(&self, node: usize) -> Result<Box<dyn Backend>> {
        Ok(match self {
            Nodes::Nginx(nginx) => {
                let mut settings = NginxSettings::default();
                settings.servers = vec![nginx[node].addr().parse().context("nginx's address")?];
                settings.purge_prefix = Some("/purge".parse().context("the purge prefix")?);
                settings.timeout = Duration::from_secs(5);
                Box::new(NginxBackend::new(&settings).context("NginxBackend::new")?)
            }
            Nodes::Memory(_) => Box::new(MemoryBackend::new()),
        })
    }

    fn stamped(&self, node: usize, stamps: &Arc<Stamps>) -> Result<Stamped> {
        Ok(Stamped {
            inner: self.backend(node)?,
            node,
            stamps: Arc::clone(stamps),
        })
    }
}

/// How the app reaches the nodes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    /// The app's `nats` backend, one agent per node.
    Fleet,
    /// The app's Purger with one backend per node.
    Direct,
}

/// One configuration's outcome.
struct Outcome {
    /// Per save, seconds from the call to the last node's ack (saves purged everywhere).
    latencies: Vec<f64>,
    /// Saves purged on every node.
    complete: usize,
    /// Per node, saves purged.
    per_node: Vec<usize>,
    duplicates: u64,
    /// Seconds from the first save's call to the last's.
    sending: f64,
    /// Lateness of the saves against their schedule (seconds): p99 and max.
    late_p99: f64,
    late_max: f64,
    /// The app Purger's failures and drops.
    app_failed: u64,
    app_dropped: u64,
    /// The agents' summaries (fleet only).
    agents: Vec<AgentSummary>,
    /// NATS messages the app published (fleet: its backend's batches).
    app_batches: u64,
}

/// Runs scenario 7: 3 real nginx nodes, then 10 `memory` nodes; fleet then direct for each.
pub(crate) async fn run(fleet: FleetConfig) -> Result<Table> {
    let mut table = Table::new(
        "fleet",
        format!(
            "7. Fleet over NATS JetStream: save → purged on every node, {} saves per configuration at {} saves/s; agents in this process",
            grouped(fleet.saves as u64),
            grouped(u64::from(fleet.rate)),
        ),
        "save",
    );
    progress!("starting nats-server -js, the origin and 3 nginx on free loopback ports");
    let nats = Nats::start()
        .await
        .context("starting nats-server (cache-purge-hooks-testing)")?;
    if nats.is_shared() {
        table.notes.push(format!(
            "nats-server is not installed: the machine's shared server on {} was used",
            nats.addr()
        ));
    }
    let origin = Origin::start().context("starting the origin server")?;
    let started =
        futures::future::join_all((0..3).map(|_| Nginx::start(&origin, NginxConfig::default())))
            .await;
    let mut nginx = Vec::new();
    for n in started {
        nginx.push(n.context("starting nginx (cache-purge-hooks-testing)")?);
    }

    for (label, nodes) in [("3", Nodes::Nginx(&nginx)), ("10", Nodes::Memory(10))] {
        for way in [Way::Fleet, Way::Direct] {
            let (id, what) = match (label, way) {
                ("3", Way::Fleet) => (
                    "fleet-3-nginx",
                    "fleet: nats backend → JetStream → 3 agents → NginxBackend `http` on 3 real nginx",
                ),
                ("3", _) => (
                    "direct-3-nginx",
                    "direct fan-out: the app's Purger with 3 NginxBackends `http` (one per nginx)",
                ),
                (_, Way::Fleet) => (
                    "fleet-10-memory",
                    "fleet: nats backend → JetStream → 10 agents → `memory` backend each",
                ),
                _ => (
                    "direct-10-memory",
                    "direct fan-out: the app's Purger with 10 `memory` backends",
                ),
            };
            let key = id.replace('-', "");
            let pages = web::paths(&format!("/f/{key}"), fleet.saves);
            let neighbours = web::neighbours(&pages, fleet.check);
            if let Nodes::Nginx(nginx) = &nodes {
                let client = web::client(16)?;
                let all: Vec<String> = pages.iter().chain(&neighbours).cloned().collect();
                progress!(
                    "fleet: warming {} pages on each of {} nginx",
                    grouped(all.len() as u64),
                    nginx.len()
                );
                for n in nginx.iter() {
                    web::warm(
                        &client,
                        &format!("http://{}", n.addr()),
                        NGINX_CACHE_HEADER,
                        &all,
                    )
                    .await?;
                }
            }
            progress!("fleet: {what}, {} saves", grouped(fleet.saves as u64));
            let outcome = measure(&nats, &nodes, way, &key, &pages, fleet).await?;
            report(&mut table, id, what, &outcome, fleet, way);
            if let Nodes::Nginx(nginx) = &nodes {
                verify(&mut table, id, nginx, &pages, &neighbours).await?;
            }
        }
    }
    table.notes.push(
        "latency = from the Instant before Purger::try_purge (Delivery::Immediate) to the Instant the last node's backend acknowledged the URL (the wrapped backend's purge returned Ok; the agent's ack to JetStream comes after); one URL per save".to_owned(),
    );
    table.notes.push(
        "3 nodes: 3 real nginx (each its own cache, pages cached first, ngx_cache_purge over HTTP); 10 nodes: the `memory` backend (no HTTP to a node: the time is the app's publish, JetStream and the agent)".to_owned(),
    );
    table.notes.push(
        "every agent is fleet::Agent (the code `cache-purge agent` runs, with its own NATS connection, durable consumer and Purger) in this process, on the same tokio runtime as the saves and the direct fan-out, for 3 and 10 nodes; nats-server, nginx and this process share the machine's CPUs".to_owned(),
    );
    table.notes.push(
        "saves/s = saves over the seconds from the first save to the last (the schedule's pace); the count is every save purged on every node".to_owned(),
    );
    for n in nginx {
        n.stop().context("stopping nginx")?;
    }
    nats.stop().context("stopping nats-server")?;
    Ok(table)
}

/// One configuration: sets the nodes (and, for the fleet, their agents) up, makes the saves at
/// the rate, waits until every node purged every save (or [`SETTLE`] passed) and tears down.
async fn measure(
    nats: &Nats,
    nodes: &Nodes<'_>,
    way: Way,
    key: &str,
    pages: &[String],
    fleet: FleetConfig,
) -> Result<Outcome> {
    let count = nodes.count();
    let base = Instant::now();
    let stamps = Arc::new(Stamps::new(base, format!("/f/{key}/"), count, pages.len()));
    let targets = crate::targets(pages)?;

    let mut agents = Vec::new();
    let app = match way {
        Way::Direct => {
            let mut builder = Purger::builder().delivery(Delivery::Immediate);
            for node in 0..count {
                builder = builder.backend(format!("node-{node}"), nodes.stamped(node, &stamps)?);
            }
            builder.build().context("building the app's Purger")?
        }
        Way::Fleet => {
            let mut publish = NatsSettings::default();
            publish.servers = vec![nats.addr().parse().context("nats-server's address")?];
            publish.stream = Nats::unique_name("CPH_BENCH_")
                .parse()
                .context("a stream name")?;
            publish.subject_prefix = Nats::unique_name("cph-bench-")
                .parse()
                .context("a subject prefix")?;
            publish.timeout = Duration::from_secs(5);
            // The stream exists before the agents look for it.
            NatsBackend::new(&publish)
                .context("NatsBackend::new")?
                .purge(&[Target::url(&format!("/f/{key}/w/create")).context("a URL")?])
                .await
                .context("creating the stream (first publish)")?;
            let bucket = Nats::unique_name("cph_bench_nodes_");
            for node in 0..count {
                let mut settings = AgentSettings::default();
                settings.node = Some(
                    format!("bench-{key}-{node}")
                        .parse()
                        .context("a node name")?,
                );
                settings.servers = publish.servers.clone();
                settings.stream = publish.stream.clone();
                settings.subject_prefix = publish.subject_prefix.clone();
                settings.state_bucket = bucket.parse().context("a bucket name")?;
                settings.timeout = Duration::from_secs(5);
                let purger = Purger::builder()
                    .delivery(Delivery::Immediate)
                    .backend("node", nodes.stamped(node, &stamps)?)
                    .build()
                    .context("building an agent's Purger")?;
                let agent = Agent::new(settings, purger).context("Agent::new")?;
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let task = tokio::spawn(agent.run(async move {
                    let _ = stopped.await;
                }));
                agents.push((stop, task));
            }
            Purger::builder()
                .delivery(Delivery::Immediate)
                .backend(
                    "fleet",
                    NatsBackend::new(&publish).context("NatsBackend::new")?,
                )
                .build()
                .context("building the app's Purger")?
        }
    };

    // Warm-up: purges outside the measured set until every node has seen one (the agents'
    // consumers start from "now": a purge published before a consumer exists is not theirs).
    let ready_by = Instant::now() + AGENTS_READY;
    let mut k = 0u64;
    while stamps.others.iter().any(|o| o.load(Ordering::Relaxed) == 0) {
        if Instant::now() > ready_by {
            return Err(format!(
                "fleet: the nodes did not all see a warm-up purge within {AGENTS_READY:?} (agents not consuming?)"
            )
            .into());
        }
        crate::check_interrupted()?;
        app.try_purge([Target::url(&format!("/f/{key}/w/{k}")).context("a URL")?]);
        k += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.flush().await;
    // A few more, at the rate, so that connections and consumers are warm.
    for i in 0..50 {
        app.try_purge([Target::url(&format!("/f/{key}/w/r{i}")).context("a URL")?]);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    app.flush().await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The saves, on an open schedule.
    let period = Duration::from_secs_f64(1.0 / f64::from(fleet.rate.max(1)));
    let mut sent = vec![0u64; targets.len()];
    let mut late = Vec::with_capacity(targets.len());
    let start = tokio::time::Instant::now() + Duration::from_millis(10);
    for (i, target) in targets.into_iter().enumerate() {
        let due = start + period * i as u32;
        tokio::time::sleep_until(due).await;
        let now = tokio::time::Instant::now();
        sent[i] = stamps.now();
        app.try_purge([target]);
        late.push(now.saturating_duration_since(due).as_secs_f64());
    }
    let sending = Duration::from_nanos(sent.last().copied().unwrap_or(0).saturating_sub(sent[0]))
        .as_secs_f64();

    let settle_by = Instant::now() + SETTLE;
    while !stamps.all_purged() && Instant::now() < settle_by {
        crate::check_interrupted()?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    app.flush().await;

    let app_stats = app.stats();
    let app_failed = app_stats.iter().map(|s| s.failed + s.dead).sum();
    let app_dropped = app_stats.iter().map(|s| s.dropped).sum();
    let app_batches = app_stats.iter().map(|s| s.batches).sum();
    app.shutdown(Duration::from_secs(10))
        .await
        .context("shutting the app's Purger down")?;
    // Every agent told to stop first: each finishes its pull (up to a second) meanwhile.
    let mut tasks = Vec::new();
    for (stop, task) in agents {
        let _ = stop.send(());
        tasks.push(task);
    }
    let mut summaries = Vec::new();
    for task in tasks {
        let summary = tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .context("waiting for an agent to stop")?
            .context("an agent's task")?
            .context("an agent")?;
        summaries.push(summary);
    }

    let mut latencies = Vec::with_capacity(sent.len());
    let mut complete = 0;
    for (i, &t0) in sent.iter().enumerate() {
        let last = (0..count)
            .map(|n| stamps.at[n][i].load(Ordering::Relaxed))
            .try_fold(0u64, |acc, t| (t != 0).then_some(acc.max(t)));
        if let Some(last) = last {
            complete += 1;
            latencies.push(last.saturating_sub(t0) as f64 / 1e9);
        }
    }
    let late_stats = Latency::of(&mut late);
    Ok(Outcome {
        latencies,
        complete,
        per_node: (0..count).map(|n| stamps.purged_on(n)).collect(),
        duplicates: stamps.duplicates.load(Ordering::Relaxed),
        sending,
        late_p99: late_stats.map_or(0.0, |l| l.p99),
        late_max: late_stats.map_or(0.0, |l| l.max),
        app_failed,
        app_dropped,
        agents: summaries,
        app_batches,
    })
}

/// The row and checks of one configuration.
fn report(
    table: &mut Table,
    id: &'static str,
    what: &str,
    o: &Outcome,
    fleet: FleetConfig,
    way: Way,
) {
    let mut latencies = o.latencies.clone();
    let mut row = Row::measured(id, what, o.complete as u64, o.sending);
    if let Some(l) = Latency::of(&mut latencies) {
        row = row.latency(l);
    }
    table.rows.push(row);
    let n = fleet.saves;
    table.check(
        o.complete == n && o.per_node.iter().all(|&p| p == n),
        true,
        format!(
            "{id}: {}/{} saves purged on every node (per node: {}); {} duplicate purge(s)",
            grouped(o.complete as u64),
            grouped(n as u64),
            o.per_node
                .iter()
                .map(|p| grouped(*p as u64))
                .collect::<Vec<_>>()
                .join(", "),
            o.duplicates,
        ),
    );
    table.check(
        o.app_failed == 0 && o.app_dropped == 0,
        true,
        format!(
            "{id}: the app's Purger: {} failed, {} dropped ({} batch(es) sent)",
            o.app_failed,
            o.app_dropped,
            grouped(o.app_batches),
        ),
    );
    if way == Way::Fleet {
        let dead: u64 = o.agents.iter().map(|a| a.dead_lettered).sum();
        let retried: u64 = o.agents.iter().map(|a| a.retried).sum();
        let messages: u64 = o.agents.iter().map(|a| a.purged).sum();
        table.check(
            dead == 0,
            true,
            format!(
                "{id}: the agents: {} message(s) purged and acked in all, {retried} retried, {dead} dead-lettered",
                grouped(messages)
            ),
        );
    }
    table.notes.push(format!(
        "{id}: saves started late against the schedule by {} at p99, {} at most",
        duration(o.late_p99),
        duration(o.late_max)
    ));
}

/// On every nginx: every purged page is a MISS, every sampled neighbour still a HIT.
async fn verify(
    table: &mut Table,
    id: &str,
    nginx: &[Nginx],
    pages: &[String],
    neighbours: &[String],
) -> Result<()> {
    let client = web::client(16)?;
    let mut misses = Vec::new();
    let mut hits = Vec::new();
    let mut failures = Vec::new();
    for n in nginx {
        let base = format!("http://{}", n.addr());
        let gets = web::get_all(&client, &base, NGINX_CACHE_HEADER, pages, 8).await;
        misses.push(gets.misses);
        failures.extend(gets.first_failure);
        let gets = web::get_all(&client, &base, NGINX_CACHE_HEADER, neighbours, 8).await;
        hits.push(gets.hits);
        failures.extend(gets.first_failure);
    }
    let first_failure = failures
        .first()
        .map(|f| format!("; a GET failed: {f}"))
        .unwrap_or_default();
    table.check(
        misses.iter().all(|&m| m == pages.len()) && failures.is_empty(),
        true,
        format!(
            "{id}: after the run, purged pages that are MISSes per nginx: {} of {}{first_failure}",
            misses
                .iter()
                .map(|m| grouped(*m as u64))
                .collect::<Vec<_>>()
                .join(", "),
            grouped(pages.len() as u64),
        ),
    );
    table.check(
        hits.iter().all(|&h| h == neighbours.len()),
        true,
        format!(
            "{id}: neighbours (`<page>-keep`) still HITs per nginx: {} of {}",
            hits.iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            neighbours.len(),
        ),
    );
    Ok(())
}
