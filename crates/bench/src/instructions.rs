//! Scenario 4c: the save path in instructions (valgrind's callgrind), repeatable on a noisy
//! 2-core machine where wall time is not (4b's spread).
//!
//! The bench re-runs itself as a child (`--child saves:variant=...,count=K`) under
//! `valgrind --tool=callgrind`: SQLite in memory, a current-thread tokio runtime, the tables
//! created, 20 saves to warm up, then `K` saves of one variant, then `flush`. Each variant
//! runs twice, with `K1` and `K2` saves; `(Ir(K2) - Ir(K1)) / (K2 - K1)` is the instructions
//! of one save, start-up and warm-up cancelled out. Every thread is counted (the Purger's
//! worker and sqlx's SQLite thread included): what the process spends per save.
//!
//! Variants: the entity without `CachePurge`; with its hooks and no Purger installed; with a
//! Purger (dummy backend, default after-commit delivery); with a Purger in outbox mode (the
//! hooks write an outbox row through the save's connection); and the floor of outbox mode:
//! without hooks, then the same outbox row by a fixed `INSERT` through the same connection
//! (its SQL text is written out here on purpose: the floor runs none of the library's code).

use std::path::{Path, PathBuf};
use std::time::Duration;

use cache_purge_hooks::backend::DummyBackend;
use cache_purge_hooks::{Delivery, Purger};
use sea_orm::{ConnectionTrait, Database, Schema, Statement, Value as SqlValue};
use serde_json::{Value, json};

use crate::child::{self, Spec};
use crate::report::{Table, grouped};
use crate::save_path::{insert_plain, insert_posts, plain_post, post};
use crate::{Config, Context, Result, progress};

/// The variants, in order: (id, what).
const VARIANTS: [(&str, &str); 5] = [
    ("plain", "entity without CachePurge (no hooks)"),
    ("hooks", "hooks, no Purger installed"),
    (
        "purger",
        "hooks + Purger (dummy backend, after-commit delivery)",
    ),
    (
        "outbox",
        "hooks + Purger in outbox mode (an outbox row in the save's transaction)",
    ),
    (
        "second-statement",
        "no hooks, then the same outbox row written by a fixed INSERT through the same connection (the floor of any outbox row)",
    ),
];

/// The outbox row of the `second-statement` variant: what the hooks write for a post (its
/// three URLs, one backend), by the fixed text of the outbox's one-row `INSERT`, with none of
/// the hooks' work. What SeaORM and sqlx take for any second statement of a save is the
/// floor of an outbox row written through the save's connection.
async fn insert_plain_and_outbox_row(
    db: &sea_orm::DatabaseConnection,
    tag: &str,
    range: std::ops::Range<usize>,
) -> Result<f64> {
    let started = std::time::Instant::now();
    for i in range {
        insert_plain(db, tag, i..i + 1).await?;
        let now = cache_purge_hooks::outbox::now_ms();
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            r#"INSERT INTO "cache_purge_outbox" ("backend", "targets", "created_at", "available_at", "attempts") VALUES (?, ?, ?, ?, ?)"#,
            [
                SqlValue::from("dummy"),
                SqlValue::from(format!(
                    "url /posts/plain-{tag}-{i}\nurl /\nurl /archive?category={}",
                    i % 10
                )),
                SqlValue::from(now),
                SqlValue::from(now),
                SqlValue::from(0i32),
            ],
        ))
        .await
        .context("inserting an outbox row")?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The child: `count` saves of `variant`, after a warm-up.
pub(crate) fn child(spec: &Spec) -> Result<Value> {
    let count = spec.number("count")?;
    let variant = spec.text("variant")?.to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime")?;
    runtime.block_on(async move {
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
        let purger = match variant.as_str() {
            "purger" => Some(Delivery::AfterCommit),
            "outbox" => Some(Delivery::Outbox),
            _ => None,
        }
        .map(|delivery| {
            Purger::builder()
                .delivery(delivery)
                .backend("dummy", DummyBackend::new())
                .build()
                .context("building the Purger")
        })
        .transpose()?;
        let saves = |tag: &'static str, range: std::ops::Range<usize>| {
            let db = db.clone();
            let variant = variant.clone();
            let purger = purger.clone();
            async move {
                match (variant.as_str(), &purger) {
                    ("plain", _) => insert_plain(&db, tag, range).await,
                    ("second-statement", _) => insert_plain_and_outbox_row(&db, tag, range).await,
                    (_, Some(p)) => p.scope(insert_posts(&db, "p", tag, range)).await,
                    _ => insert_posts(&db, "h", tag, range).await,
                }
            }
        };
        saves("warm", 0..20).await?;
        saves("timed", 0..count).await?;
        if let Some(p) = &purger {
            p.flush().await;
            let _ = p.shutdown(Duration::from_secs(5)).await;
        }
        Ok(json!({ "count": count }))
    })
}

/// valgrind, if installed.
pub(crate) fn valgrind() -> Option<PathBuf> {
    crate::web::find_program("valgrind", &["/usr/bin/valgrind"])
}

/// The command that runs a child under callgrind, writing its counts to `out`.
///
/// `--fair-sched=yes`: valgrind runs one thread at a time, and with its default lock the
/// moment a waiting thread gets the CPU back varies from run to run, and so does how often the
/// tokio runtime parks and wakes while sqlx's SQLite thread works (thousands of instructions
/// a save: the same binary's row without hooks moved by up to 7,000 Ir a save between runs).
/// Round-robin scheduling makes the interleaving, and the counts, repeatable within about
/// 1,000 Ir a save.
pub(crate) fn callgrind(valgrind: &Path, out: &Path) -> Vec<String> {
    vec![
        valgrind.display().to_string(),
        "--tool=callgrind".to_owned(),
        "--fair-sched=yes".to_owned(),
        format!("--callgrind-out-file={}", out.display()),
        "--quiet".to_owned(),
    ]
}

/// Total instructions (`Ir`) of a callgrind output file (its `summary:` or `totals:` line).
pub(crate) fn total_ir(file: &Path) -> Result<u64> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no summary line in {}", file.display()).into())
}

/// Instructions of a child running `count` saves of `variant` under callgrind.
fn measure(valgrind: &Path, dir: &Path, variant: &str, count: usize) -> Result<u64> {
    let out = dir.join(format!("callgrind.{variant}.{count}.out"));
    let wrapper = callgrind(valgrind, &out);
    let spec = child::spec(
        "saves",
        &[
            ("variant", variant.to_owned()),
            ("count", count.to_string()),
        ],
    );
    child::run(&spec, &wrapper)?;
    total_ir(&out)
}

/// Runs scenario 4c. `wall` is 4b's figures (inserts/s per round by variant id), for the
/// wall-time ratios and their spread beside the instruction counts.
pub(crate) async fn run(config: &Config, wall: Option<&Table>) -> Result<Table> {
    let (k1, k2) = config.callgrind_saves;
    let mut table = Table::new(
        "save-path-instructions",
        format!(
            "4c. The save path in instructions (callgrind): SQLite in memory, Ir of {} saves minus Ir of {}, per save",
            grouped(k2 as u64),
            grouped(k1 as u64)
        ),
        "save",
    );
    let Some(valgrind) = valgrind() else {
        table
            .notes
            .push("skipped: valgrind not installed (apt-get install -y valgrind)".to_owned());
        return Ok(table);
    };
    let dir = std::env::temp_dir().join(format!("cph-bench-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let repeats = config.callgrind_repeats.max(1);
    let mut per_save = Vec::new();
    let mut spreads = Vec::new();
    for (id, _) in VARIANTS {
        progress!("callgrind: {id}, {k1} and {k2} saves, {repeats} time(s) each");
        let (v, d) = (valgrind.clone(), dir.clone());
        let (a, b) = tokio::task::spawn_blocking(move || -> Result<(Vec<u64>, Vec<u64>)> {
            let mut a = Vec::new();
            let mut b = Vec::new();
            for _ in 0..repeats {
                a.push(measure(&v, &d, id, k1)?);
                b.push(measure(&v, &d, id, k2)?);
            }
            Ok((a, b))
        })
        .await
        .context("the callgrind runs")??;
        let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / (k2 - k1) as f64;
        let fewest = |runs: &[u64]| runs.iter().copied().min().unwrap_or(0);
        let most = |runs: &[u64]| runs.iter().copied().max().unwrap_or(0);
        per_save.push(per(fewest(&a), fewest(&b)));
        spreads.push(format!(
            "{id} {}–{}",
            grouped(per(most(&a), fewest(&b)) as u64),
            grouped(per(fewest(&a), most(&b)) as u64)
        ));
    }
    if repeats > 1 {
        table.notes.push(format!(
            "each count run {repeats} times and its fewest instructions taken (what varies is how often a thread parks and is woken again, which only adds); Ir per save from any pairing of the runs: {}",
            spreads.join("; ")
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    for ((id, what), ir) in VARIANTS.iter().zip(&per_save) {
        table.measure(id, format!("{what}: Ir per save"), *ir, "Ir");
    }
    let plain = per_save[0].max(1.0);
    let ratios = [
        (
            "hooks-over-plain",
            "hooks (no Purger) ÷ no hooks, in instructions",
            per_save[1],
        ),
        (
            "purger-over-plain",
            "hooks + Purger ÷ no hooks, in instructions",
            per_save[2],
        ),
        (
            "outbox-over-plain",
            "hooks + Purger, outbox mode ÷ no hooks, in instructions",
            per_save[3],
        ),
    ];
    for (id, what, ir) in ratios {
        table.measure(id, what, ir / plain, "×");
    }
    table.measure(
        "second-statement-over-plain",
        "no hooks + a fixed outbox INSERT ÷ no hooks, in instructions: the floor of outbox mode",
        per_save[4] / plain,
        "×",
    );
    table.measure(
        "outbox-over-floor",
        "outbox mode ÷ that floor, in instructions: what the hooks add beyond the statement",
        per_save[3] / per_save[4].max(1.0),
        "×",
    );
    table.measure(
        "outbox-over-purger",
        "outbox mode ÷ after-commit delivery, in instructions",
        per_save[3] / per_save[2].max(1.0),
        "×",
    );
    if let Some(wall) = wall {
        // 4b's rounds, as wall-time ratios with their spread.
        let rounds = |id: &str| -> Vec<f64> {
            wall.notes
                .iter()
                .find_map(|n| n.strip_prefix("seconds by round: "))
                .and_then(|n| {
                    n.split("; ")
                        .find_map(|part| part.strip_prefix(&format!("{id} ")))
                        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
                })
                .unwrap_or_default()
        };
        let base = rounds("no-hooks");
        for (id, what) in [
            (
                "ours",
                "hooks + Purger (slow backend) ÷ no hooks, wall time (4b)",
            ),
            (
                "outbox",
                "hooks + Purger, outbox mode ÷ no hooks, wall time (4b)",
            ),
        ] {
            let r: Vec<f64> = rounds(id)
                .iter()
                .zip(&base)
                .map(|(a, b)| a / b.max(1e-12))
                .collect();
            if r.is_empty() {
                continue;
            }
            let mut sorted = r.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[sorted.len() / 2];
            table.notes.push(format!(
                "{what}: median {median:.3} over {} round(s), from {:.3} to {:.3}",
                r.len(),
                sorted[0],
                sorted[sorted.len() - 1]
            ));
        }
    }
    table.notes.push(
        "every thread of the child is counted (tokio, the Purger's worker, sqlx's SQLite thread); a current-thread runtime; the same binary as the rest of the run"
            .to_owned(),
    );
    Ok(table)
}
