//! Scenario 8: memory with many distinct URLs queued. Each variant runs in a child process
//! of its own (a fresh peak RSS): a `Purger` whose one backend holds its first batch until
//! released (a cache that stopped answering), then `count` distinct URLs handed to it, 3 per
//! `try_purge` call (what a save hands over), the RSS and peak RSS (`VmRSS`, `VmHWM` from
//! /proc/self/status) read before and after, the spill file measured, then the backend
//! released and everything delivered and counted.
//!
//! Variants: the defaults (`queue_capacity` 100,000, `when_full = "spill"`), a queue large
//! enough to hold everything in memory (what a queued target costs), and the opt-in
//! `when_full = "coalesce"` (what widening does).

use std::time::{Duration, Instant};

use cache_purge_hooks::backend::{Backend, Capabilities, PurgeError};
use cache_purge_hooks::settings::QueueFull;
use cache_purge_hooks::{Delivery, Purger, Target};
use serde_json::{Value, json};

use crate::child::{self, Spec};
use crate::report::{Row, Table, grouped};
use crate::{Config, Context, Result, progress};

/// A backend that holds every purge call until released.
struct Held {
    released: tokio::sync::watch::Receiver<bool>,
}

#[cache_purge_hooks::async_trait]
impl Backend for Held {
    fn capabilities(&self) -> Capabilities {
        Capabilities::URL | Capabilities::EVERYTHING
    }
    async fn purge(&self, _batch: &[Target]) -> std::result::Result<(), PurgeError> {
        let mut released = self.released.clone();
        let _ = released.wait_for(|r| *r).await;
        Ok(())
    }
}

/// The child: queue `count` URLs behind a held backend, measure, release, deliver.
pub(crate) fn child(spec: &Spec) -> Result<Value> {
    let count = spec.number("count")?;
    let capacity = spec.number("capacity")?;
    let policy = spec.text("policy")?.to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting a tokio runtime")?;
    runtime.block_on(async move {
        let spill_dir =
            std::env::temp_dir().join(format!("cph-bench-spill-{}", std::process::id()));
        let (release, released) = tokio::sync::watch::channel(false);
        let mut builder = Purger::builder()
            .delivery(Delivery::Immediate)
            .backend("held", Held { released })
            .spill_dir(&spill_dir);
        if capacity > 0 {
            builder = builder.queue_capacity(capacity);
        }
        if policy == "coalesce" {
            builder = builder.when_full(QueueFull::Coalesce);
        }
        let purger = builder.build().context("building the Purger")?;
        let (rss_before, hwm_before) = child::rss();
        let started = Instant::now();
        let mut i = 0;
        while i < count {
            let k = 3.min(count - i);
            let targets = (i..i + k)
                .map(|j| Target::url(&format!("/posts/post-{j}")))
                .collect::<std::result::Result<Vec<_>, _>>()
                .context("a URL")?;
            purger.try_purge(targets);
            i += k;
        }
        let queue_seconds = started.elapsed().as_secs_f64();
        let (rss_queued, hwm_queued) = child::rss();
        let stats = purger
            .stats()
            .into_iter()
            .next()
            .ok_or("the Purger has no backend")?;
        let spilled_bytes = dir_size(&spill_dir);
        let started = Instant::now();
        let _ = release.send(true);
        purger.flush().await;
        let deliver_seconds = started.elapsed().as_secs_f64();
        let (_, hwm_end) = child::rss();
        let end = purger
            .stats()
            .into_iter()
            .next()
            .ok_or("the Purger has no backend")?;
        purger
            .shutdown(Duration::from_secs(10))
            .await
            .context("shutting the Purger down")?;
        let _ = std::fs::remove_dir_all(&spill_dir);
        Ok(json!({
            "count": count,
            "rss_before": rss_before, "hwm_before": hwm_before,
            "rss_queued": rss_queued, "hwm_queued": hwm_queued, "hwm_end": hwm_end,
            "queue_seconds": queue_seconds, "deliver_seconds": deliver_seconds,
            "queued": stats.queued, "in_spill": stats.in_spill, "spilled": stats.spilled,
            "peak_in_memory": stats.peak_in_memory, "spilled_bytes": spilled_bytes,
            "purged": end.purged, "deduplicated": end.deduplicated,
            "coalesced": end.coalesced, "dropped": end.dropped, "failed": end.failed,
            "batches": end.batches,
        }))
    })
}

/// Bytes of the files under `dir` (0 when absent).
fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Runs scenario 8.
pub(crate) async fn run(config: &Config) -> Result<Table> {
    let n = config.queued_urls;
    let mut table = Table::new(
        "memory",
        format!(
            "8. Memory: {} distinct URLs queued behind a cache that holds its first batch (a child process per variant)",
            grouped(n as u64)
        ),
        "URL",
    );
    let variants: [(&'static str, &str, usize, &str); 3] = [
        (
            "default",
            "defaults: queue_capacity 100,000, when_full = \"spill\"",
            0,
            "spill",
        ),
        (
            "in-memory",
            "queue_capacity ≥ count: all in memory",
            n + 16,
            "spill",
        ),
        (
            "coalesce",
            "queue_capacity 100,000, when_full = \"coalesce\" (opt-in)",
            0,
            "coalesce",
        ),
    ];
    let mut per_target = None;
    for (id, what, capacity, policy) in variants {
        progress!(
            "memory: {id}, {} URLs in a child process",
            grouped(n as u64)
        );
        let spec = child::spec(
            "memory",
            &[
                ("count", n.to_string()),
                ("capacity", capacity.to_string()),
                ("policy", policy.to_owned()),
            ],
        );
        let v = tokio::task::spawn_blocking(move || child::run(&spec, &[]))
            .await
            .context("the memory child")??;
        let get = |k: &str| v[k].as_f64().unwrap_or(0.0);
        table.rows.push(Row::measured(
            id,
            format!("{what}: try_purge, 3 URLs per call"),
            n as u64,
            get("queue_seconds"),
        ));
        let grown = get("rss_queued") - get("rss_before");
        table.measure(
            id,
            format!("{id}: peak RSS (VmHWM) before queueing"),
            get("hwm_before"),
            "bytes",
        );
        table.measure(
            id,
            format!("{id}: peak RSS with {} queued", grouped(n as u64)),
            get("hwm_queued"),
            "bytes",
        );
        table.measure(
            id,
            format!("{id}: RSS growth while queueing"),
            grown,
            "bytes",
        );
        table.measure(
            id,
            format!("{id}: spill file on disk"),
            get("spilled_bytes"),
            "bytes",
        );
        table.measure(
            id,
            format!("{id}: peak RSS at the end (after delivery)"),
            get("hwm_end"),
            "bytes",
        );
        if id == "in-memory" {
            per_target = Some(grown / n as f64);
            table.measure(
                "bytes-per-target",
                "in-memory: RSS growth per queued URL",
                grown / n as f64,
                "bytes",
            );
        }
        let accounted = get("purged") + get("deduplicated");
        let widened = get("coalesced") + get("dropped");
        let strict = id != "coalesce";
        table.check(
            accounted as usize == n && widened == 0.0 && get("failed") == 0.0,
            strict,
            format!(
                "{id}: {} of {} URLs delivered one by one (purged or deduplicated), {} coalesced into a purge of everything or dropped; {} spilled to disk, at most {} in memory",
                grouped(accounted as u64),
                grouped(n as u64),
                grouped(widened as u64),
                grouped(get("spilled") as u64),
                grouped(get("peak_in_memory") as u64),
            ),
        );
        table.notes.push(format!(
            "{id}: delivering everything once released took {}",
            crate::report::duration(get("deliver_seconds"))
        ));
    }
    if let Some(b) = per_target {
        table.notes.push(format!(
            "a queued URL `/posts/post-N` costs about {b:.0} bytes of RSS in memory (the Target, its share of the call's Arc, the queue's slot, allocator overhead); the spill file stores it as a line (`url /posts/post-N`)"
        ));
    }
    table.notes.push(
        "`coalesce` is the opt-in widening: its check is information, not required".to_owned(),
    );
    Ok(table)
}
