//! Scenario 9: commit → purge acknowledged by a local nginx, at a fixed save rate.
//!
//! SeaORM inserts of the tests' `post` entity (its hooks resolve `/posts/{slug}`, `/` and
//! `/archive?category=N`) on SQLite in memory, one every `1 / rate` seconds on an open
//! schedule, with a `Purger` (default after-commit delivery) whose `NginxBackend` (`http`,
//! the shipped purge location) is wrapped in scenario 7's recorder: the end of a save's
//! latency is the `Instant` at which the backend's `purge` of a batch holding its
//! `/posts/<slug>` returned `Ok` (ngx_cache_purge answered). The start is the COMMIT: the
//! `Instant` the insert returned (its implicit transaction committed; the hooks handed the
//! purge over at that COMMIT). Each page is cached beforehand, so each purge removes a file.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cache_purge_hooks::Purger;
use cache_purge_hooks::backend::NginxBackend;
use cache_purge_hooks::settings::NginxSettings;
use cache_purge_hooks_testing::{Nginx, NginxConfig, Origin};
use sea_orm::{ActiveModelTrait, ConnectionTrait, Database, Schema, Set};

use crate::fleet_bench::{Stamped, Stamps};
use crate::report::{Latency, Row, Table, duration, grouped};
use crate::save_path::post;
use crate::{Config, Context, Result, progress, verify_after, web};

const CACHE_HEADER: &str = "x-cache-status";

/// Runs scenario 9.
pub(crate) async fn run(config: &Config, origin: &Origin) -> Result<Table> {
    let saves = config.latency_saves;
    let rate = config.latency_rate;
    let nginx = Nginx::start(origin, NginxConfig::default())
        .await
        .context("starting nginx (cache-purge-hooks-testing)")?;
    let outcome = measure(config, origin, &nginx, saves, rate).await;
    nginx.stop().context("stopping nginx (latency)")?;
    outcome
}

/// Scenario 9 on a started nginx.
async fn measure(
    config: &Config,
    origin: &Origin,
    nginx: &Nginx,
    saves: usize,
    rate: u32,
) -> Result<Table> {
    let client = web::client(16)?;
    let base = format!("http://{}", nginx.addr());
    let pages: Vec<String> = (0..saves).map(|i| format!("/posts/lat-{i}")).collect();
    let neighbours = web::neighbours(&pages, config.check);
    let mut warm = pages.clone();
    warm.extend(neighbours.iter().cloned());
    progress!(
        "latency: warming {} pages on nginx",
        grouped(warm.len() as u64)
    );
    web::warm(&client, &base, CACHE_HEADER, &warm).await?;

    let db = Database::connect("sqlite::memory:")
        .await
        .context("opening SQLite in memory")?;
    let schema = Schema::new(db.get_database_backend());
    db.execute(&schema.create_table_from_entity(post::Entity))
        .await
        .context("creating the posts table")?;

    let clock = Instant::now();
    let stamps = Arc::new(Stamps::new(clock, "/posts/lat-".to_owned(), 1, saves));
    let mut settings = NginxSettings::default();
    settings.servers = vec![nginx.addr().parse().context("nginx's address")?];
    settings.purge_prefix = Some("/purge".parse().context("the purge prefix")?);
    settings.timeout = Duration::from_secs(5);
    let purger = Purger::builder()
        .backend(
            "nginx",
            Stamped {
                inner: Box::new(NginxBackend::new(&settings).context("NginxBackend::new")?),
                node: 0,
                stamps: Arc::clone(&stamps),
            },
        )
        .build()
        .context("building the Purger")?;
    // A warm-up save (its own page), so that the connection is open.
    purger
        .scope(insert(&db, "lat-warm", 0))
        .await
        .context("the warm-up save")?;
    purger.flush().await;

    progress!("latency: {} saves at {rate}/s", grouped(saves as u64));
    let mut commits = vec![0u64; saves];
    let mut late = Vec::with_capacity(saves);
    let mut insert_took = Vec::with_capacity(saves);
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let first = Instant::now();
    for (i, commit) in commits.iter_mut().enumerate() {
        let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
        tokio::time::sleep_until(due).await;
        late.push(
            tokio::time::Instant::now()
                .saturating_duration_since(due)
                .as_secs_f64(),
        );
        let before = Instant::now();
        purger
            .scope(insert(&db, &format!("lat-{i}"), i))
            .await
            .context("a save")?;
        let committed = Instant::now();
        insert_took.push((committed - before).as_secs_f64());
        *commit = (committed - clock).as_nanos() as u64 + 1;
    }
    let sending = first.elapsed().as_secs_f64();
    let settle = Instant::now() + Duration::from_secs(20);
    while !stamps.all_purged() && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    purger.flush().await;
    let stats = purger
        .stats()
        .into_iter()
        .next()
        .ok_or("the Purger has no backend")?;
    purger
        .shutdown(Duration::from_secs(10))
        .await
        .context("shutting the Purger down")?;

    let mut latencies = Vec::with_capacity(saves);
    let mut before_commit = 0;
    for (i, commit) in commits.iter().enumerate() {
        let acked = stamps.at[0][i].load(Ordering::Relaxed);
        if acked == 0 {
            continue;
        }
        if acked < *commit {
            before_commit += 1;
        }
        latencies.push(acked.saturating_sub(*commit) as f64 / 1e9);
    }
    let purged = latencies.len();
    let mut table = Table::new(
        "latency",
        format!(
            "9. Commit → purge acknowledged by a local nginx: {} saves at {rate}/s, SQLite in memory, nginx {}",
            grouped(saves as u64),
            nginx.addr()
        ),
        "save",
    );
    let mut row = Row::measured(
        "ours",
        "SeaORM insert (hooks, after-commit) → Purger → NginxBackend `http` → 200 from ngx_cache_purge",
        saves as u64,
        sending,
    )
    .ours();
    if let Some(l) = Latency::of(&mut latencies) {
        row = row.latency(l);
    }
    table.rows.push(row);
    if let Some(l) = Latency::of(&mut late) {
        table.notes.push(format!(
            "saves started late against their schedule by p99 {} and at most {} (the runtime was busy)",
            duration(l.p99),
            duration(l.max)
        ));
    }
    if let Some(l) = Latency::of(&mut insert_took) {
        table.notes.push(format!(
            "an insert (not in the figure) took p50 {} and p99 {}; {} purge(s) acknowledged before the insert returned (counted as 0)",
            duration(l.p50),
            duration(l.p99),
            before_commit
        ));
    }
    table.notes.push(format!(
        "the backend sent {} batch(es) for {} targets (3 per save: the post's page, `/` and its archive, deduplicated while queued); nginx's cache files were not synced",
        grouped(stats.batches),
        grouped(3 * saves as u64)
    ));
    table.check(
        purged == saves && stats.failed == 0,
        true,
        format!(
            "{} of {} saves' pages acknowledged by nginx, {} failed",
            grouped(purged as u64),
            grouped(saves as u64),
            stats.failed
        ),
    );
    verify_after(
        &mut table,
        "latency",
        (&client, &base, CACHE_HEADER, origin),
        &pages,
        &neighbours,
        true,
    )
    .await;
    Ok(table)
}

/// One post saved with slug `slug` (its hooks purge `/posts/<slug>`, `/`, an archive).
async fn insert(db: &sea_orm::DatabaseConnection, slug: &str, i: usize) -> Result<()> {
    post::ActiveModel {
        slug: Set(slug.to_owned()),
        title: Set(format!("Post {i}")),
        category_id: Set((i % 10) as i32),
        published: Set(true),
        ..Default::default()
    }
    .insert(db)
    .await
    .context("inserting a post")?;
    Ok(())
}
