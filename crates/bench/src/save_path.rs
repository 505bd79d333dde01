//! Scenario 4: what a save pays.
//!
//! - 4a: the cost of one `Purger::purge` call queueing 3 URLs (what a hook does), with a
//!   `dummy` backend, over many calls; beside the cost of cloning the targets alone, and the
//!   seed's cost per save (3 blocking purges, from scenarios 1 and 2 of the same run).
//! - 4b: SeaORM inserts per second on SQLite (in memory) for an entity with
//!   `#[derive(CachePurge)]` and `active_model_behavior!()`, with a Purger whose backend takes
//!   50 ms per purge call, beside the same inserts with no Purger installed and with an
//!   entity without hooks. Variants are interleaved over the rounds; medians are printed.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_purge_hooks::backend::{Backend, Capabilities, DummyBackend, PurgeError};
use cache_purge_hooks::{Purger, Target};
use sea_orm::{ActiveModelTrait, ConnectionTrait, Database, DatabaseConnection, Schema, Set};

use crate::report::{Row, Table, grouped};
use crate::{Config, Context, Result, progress};

/// The entities: the tests' `post` (three URL templates), and the same table shape without
/// hooks.
pub(crate) mod entities {
    /// A post that purges `/posts/{slug}`, `/` and `/archive?category={category_id}`.
    pub(crate) mod post {
        use cache_purge_hooks::CachePurge;
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, CachePurge)]
        #[sea_orm(table_name = "posts")]
        #[cache_purge(
            url = "/posts/{slug}",
            url = "/",
            url = "/archive?category={category_id}"
        )]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i32,
            #[sea_orm(unique)]
            pub slug: String,
            pub title: String,
            pub category_id: i32,
            pub published: bool,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        cache_purge_hooks::sea_orm::active_model_behavior!();
    }

    /// The same columns, no `CachePurge`, SeaORM's default behaviour (no hooks).
    pub(crate) mod plain_post {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "plain_posts")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i32,
            #[sea_orm(unique)]
            pub slug: String,
            pub title: String,
            pub category_id: i32,
            pub published: bool,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

pub(crate) use entities::{plain_post, post};

/// A cache that takes `delay` to answer every purge call (one URL per call).
struct SlowBackend {
    delay: Duration,
    calls: Arc<AtomicU64>,
}

#[cache_purge_hooks::async_trait]
impl Backend for SlowBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities::URL
    }
    async fn purge(&self, _batch: &[Target]) -> std::result::Result<(), PurgeError> {
        tokio::time::sleep(self.delay).await;
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The variants of 4b: slow backend, no Purger, no hooks, outbox.
const VARIANTS: usize = 4;

/// Inserts per turn of a variant in 4b.
const BLOCK: usize = 250;

/// How long the slow backend takes per call.
const SLOW: Duration = Duration::from_millis(50);

/// Runs scenario 4. `seed_varnish` and `seed_nginx` are the seconds per URL of the seed's
/// ways measured in scenarios 1 and 2 of this run, when they ran.
pub(crate) async fn run(
    config: &Config,
    seed_varnish: Option<f64>,
    seed_nginx: Option<f64>,
) -> Result<Vec<Table>> {
    Ok(vec![
        purge_call(config, seed_varnish, seed_nginx).await?,
        inserts(config).await?,
    ])
}

/// 4a.
async fn purge_call(
    config: &Config,
    seed_varnish: Option<f64>,
    seed_nginx: Option<f64>,
) -> Result<Table> {
    let calls = config.purge_calls;
    progress!(
        "save path: {} Purger::purge calls x {} round(s)",
        grouped(calls as u64),
        config.rounds
    );
    let pool: Vec<[Target; 3]> = (0..calls.min(65_536))
        .map(|i| {
            Ok([
                Target::url(&format!("/posts/post-{i}"))?,
                Target::url("/")?,
                Target::url(&format!("/archive?category={}", i % 10))?,
            ])
        })
        .collect::<std::result::Result<_, cache_purge_hooks::InvalidTarget>>()
        .context("building targets")?;
    let (mut clone_only, mut purge_only, mut whole) = (Vec::new(), Vec::new(), Vec::new());
    let mut delivered = 0;
    let mut coalesced = 0;
    for _ in 0..config.rounds {
        let started = Instant::now();
        for i in 0..calls {
            black_box(pool[i % pool.len()].clone());
        }
        clone_only.push(started.elapsed().as_secs_f64());

        // Room for every target: a full queue (default 100,000) takes another path
        // (coalescing into one purge of everything), which a tight loop would reach.
        let purger = Purger::builder()
            .backend("dummy", DummyBackend::new())
            .queue_capacity(3 * calls + 16)
            .build()
            .context("building the Purger")?;
        let started = Instant::now();
        for i in 0..calls {
            purger.try_purge(pool[i % pool.len()].clone());
        }
        purge_only.push(started.elapsed().as_secs_f64());
        purger.flush().await;
        whole.push(started.elapsed().as_secs_f64());
        let stats = purger.stats();
        delivered = stats
            .iter()
            .map(|s| s.purged + s.deduplicated + s.coalesced + s.dropped)
            .sum::<u64>();
        coalesced = stats.iter().map(|s| s.coalesced + s.dropped).sum::<u64>();
        purger
            .shutdown(Duration::from_secs(10))
            .await
            .context("shutting the Purger down")?;
    }
    let mut table = Table::new(
        "save-path-purge-call",
        "4a. What a save pays to queue its purges: Purger::purge with 3 URLs",
        "call",
    );
    table.rows.push(
        Row::measured(
            "ours",
            "Purger::purge(3 targets): queue for the worker (dummy backend)",
            calls as u64,
            median(&purge_only),
        )
        .ours(),
    );
    table.rows.push(Row::measured(
        "ours-whole-pipeline",
        "the same calls, then flush: dedupe + batch + deliver in the worker",
        calls as u64,
        median(&whole),
    ));
    table.rows.push(Row::measured(
        "clone-only",
        "cloning the 3 targets alone (part of each call above)",
        calls as u64,
        median(&clone_only),
    ));
    if let Some(s) = seed_varnish {
        table.rows.push(Row::derived(
            "seed-save-varnish",
            "seed: a save blocks on 3 varnishadm forks (3 × table 1's seed row)",
            1.0 / (3.0 * s),
        ));
    }
    if let Some(s) = seed_nginx {
        table.rows.push(Row::derived(
            "seed-save-nginx",
            "seed: a save blocks on 3 PURGEs, new connection each (3 × table 2's row)",
            1.0 / (3.0 * s),
        ));
    }
    table.check(
        delivered == 3 * calls as u64 && coalesced == 0,
        true,
        format!(
            "last round: the dummy backend's worker accounted for {} of {} targets \
             (purged or deduplicated; {} coalesced or dropped by a full queue)",
            grouped(delivered),
            grouped(3 * calls as u64),
            grouped(coalesced)
        ),
    );
    table.notes.push(format!(
        "median of {} round(s); {} distinct triples cycled; the Purger's worker runs on the \
         other core meanwhile; the seed rows are a save's wait, derived from this run's figures",
        config.rounds,
        grouped(pool.len() as u64)
    ));
    Ok(table)
}

/// 4b.
async fn inserts(config: &Config) -> Result<Table> {
    let n = config.inserts;
    progress!(
        "save path: {} SeaORM inserts x 4 variants x {} round(s)",
        grouped(n as u64),
        config.rounds
    );
    let db = Database::connect("sqlite::memory:")
        .await
        .context("opening SQLite in memory")?;
    let schema = Schema::new(db.get_database_backend());
    db.execute(&schema.create_table_from_entity(post::Entity))
        .await
        .context("creating the posts table")?;
    db.execute(&schema.create_table_from_entity(plain_post::Entity))
        .await
        .context("creating the plain_posts table")?;
    cache_purge_hooks::sea_orm::outbox::create_table(&db)
        .await
        .context("creating the outbox table")?;

    let mut table = Table::new(
        "save-path-inserts",
        format!(
            "4b. SeaORM inserts on SQLite (in memory): {} per round, a slow cache vs none",
            grouped(n as u64)
        ),
        "insert",
    );
    let (mut slow, mut no_purger, mut no_hooks, mut outbox) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..config.rounds {
        // Hooks, a Purger whose backend takes 50 ms per purge call: one per round.
        let calls = Arc::new(AtomicU64::new(0));
        let purger = Purger::builder()
            .backend(
                "slow",
                SlowBackend {
                    delay: SLOW,
                    calls: Arc::clone(&calls),
                },
            )
            .build()
            .context("building the Purger")?;
        // Outbox mode: the hooks write a row through the save's connection (no worker runs:
        // the rows stay, which is what a save pays).
        let outbox_purger = Purger::builder()
            .delivery(cache_purge_hooks::Delivery::Outbox)
            .backend("dummy", DummyBackend::new())
            .build()
            .context("building the outbox Purger")?;
        // The variants take turns by blocks of BLOCK inserts (in an order rotating from
        // block to block), so that whatever else runs on the machine meanwhile slows them
        // alike.
        let mut seconds = [0.0f64; VARIANTS];
        let mut done = 0;
        let mut block = 0;
        while done < n {
            let size = BLOCK.min(n - done);
            let range = done..done + size;
            for k in 0..VARIANTS {
                let variant = (block + k) % VARIANTS;
                let tag = format!("{round}");
                seconds[variant] += match variant {
                    0 => {
                        purger
                            .scope(insert_posts(&db, "slow", &tag, range.clone()))
                            .await?
                    }
                    // Hooks, no Purger installed (they resolve the URLs and drop them).
                    1 => insert_posts(&db, "none", &tag, range.clone()).await?,
                    // No hooks at all.
                    2 => insert_plain(&db, &tag, range.clone()).await?,
                    _ => {
                        outbox_purger
                            .scope(insert_posts(&db, "outbox", &tag, range.clone()))
                            .await?
                    }
                };
            }
            done += size;
            block += 1;
        }
        slow.push(seconds[0]);
        no_purger.push(seconds[1]);
        no_hooks.push(seconds[2]);
        outbox.push(seconds[3]);
        let _ = outbox_purger.shutdown(Duration::from_millis(100)).await;
        let handed = handed_over(&purger);
        let sent = calls.load(Ordering::Relaxed);
        table.check(
            handed == 3 * n as u64,
            true,
            format!(
                "round {}: the hooks handed {} of {} targets (3 per insert) to the Purger; the \
                 slow backend had answered {} purge call(s) when the inserts ended",
                round + 1,
                grouped(handed),
                grouped(3 * n as u64),
                grouped(sent)
            ),
        );
        // What is still queued is abandoned: the point is that the saves did not wait for it.
        let _ = purger.shutdown(Duration::from_millis(100)).await;
    }
    table.rows.push(
        Row::measured(
            "ours",
            format!(
                "hooks + Purger, backend taking {} ms per purge call",
                SLOW.as_millis()
            ),
            n as u64,
            median(&slow),
        )
        .ours(),
    );
    table.rows.push(Row::measured(
        "no-purger",
        "hooks, no Purger installed",
        n as u64,
        median(&no_purger),
    ));
    table.rows.push(Row::measured(
        "no-hooks",
        "entity without CachePurge (no hooks)",
        n as u64,
        median(&no_hooks),
    ));
    table.rows.push(Row::measured(
        "outbox",
        "hooks + Purger, delivery = \"outbox\" (a row in the save's transaction)",
        n as u64,
        median(&outbox),
    ));
    let per_round = |secs: &[f64]| {
        secs.iter()
            .map(|s| grouped((n as f64 / s).round() as u64))
            .collect::<Vec<_>>()
            .join(", ")
    };
    table.notes.push(format!(
        "inserts/s by round: ours {}; no Purger {}; no hooks {}; outbox {}",
        per_round(&slow),
        per_round(&no_purger),
        per_round(&no_hooks),
        per_round(&outbox)
    ));
    let secs = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.6}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    table.notes.push(format!(
        "seconds by round: ours {}; no-purger {}; no-hooks {}; outbox {}",
        secs(&slow),
        secs(&no_purger),
        secs(&no_hooks),
        secs(&outbox)
    ));
    table.notes.push(format!(
        "median of {} round(s); in each, the variants take turns every {BLOCK} inserts \
         (order rotating); one connection, inserts one after another; each insert's hook \
         resolves 3 URLs",
        config.rounds
    ));
    Ok(table)
}

/// Targets the Purger has accounted for (queued, delivered or deduplicated), read until two
/// snapshots agree (the worker updates the counters one after the other).
fn handed_over(purger: &Purger) -> u64 {
    let read = || {
        purger
            .stats()
            .iter()
            .map(|s| s.queued + s.purged + s.deduplicated + s.dropped + s.coalesced + s.dead)
            .sum::<u64>()
    };
    let mut last = read();
    for _ in 0..10 {
        let now = read();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// Inserts posts (`variant-round-i` slugs) one after another; returns the seconds.
pub(crate) async fn insert_posts(
    db: &DatabaseConnection,
    variant: &str,
    round: &str,
    range: std::ops::Range<usize>,
) -> Result<f64> {
    let started = Instant::now();
    for i in range {
        post::ActiveModel {
            slug: Set(format!("{variant}-{round}-{i}")),
            title: Set(format!("Post {i}")),
            category_id: Set((i % 10) as i32),
            published: Set(true),
            ..Default::default()
        }
        .insert(db)
        .await
        .context("inserting a post")?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Inserts plain posts (no hooks) one after another; returns the seconds.
pub(crate) async fn insert_plain(
    db: &DatabaseConnection,
    round: &str,
    range: std::ops::Range<usize>,
) -> Result<f64> {
    let started = Instant::now();
    for i in range {
        plain_post::ActiveModel {
            slug: Set(format!("plain-{round}-{i}")),
            title: Set(format!("Post {i}")),
            category_id: Set((i % 10) as i32),
            published: Set(true),
            ..Default::default()
        }
        .insert(db)
        .await
        .context("inserting a plain post")?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The median (the mean of the middle two for an even count).
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
