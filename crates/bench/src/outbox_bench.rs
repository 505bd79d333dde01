//! Scenario 10: the outbox drained by 1 and 2 worker processes, on PostgreSQL and MariaDB
//! (the test servers on 127.0.0.1: PostgreSQL as `postgres`, trust; MariaDB as `root`, no
//! password), with the dummy backend.
//!
//! For each server, a database of its own (`cph_bench_<pid>_<server>`, dropped at the end)
//! with the library's outbox table. Per run: `rows` rows are written (each a save's purge:
//! its page, `/` and an archive, as the hooks write them), then `workers` child processes
//! start (each: its own pool, a `Purger` with the `dummy` backend in outbox mode, and the
//! library's `OutboxWorker`, as an app process does), say they are ready, and are told to go
//! at once; the time is from "go" until the table is empty (polled every 10 ms).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cache_purge_hooks::backend::DummyBackend;
use cache_purge_hooks::sea_orm::outbox::{self, OutboxWorker};
use cache_purge_hooks::{Delivery, Purger};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ConnectionTrait, Database, DatabaseConnection, EntityTrait, PaginatorTrait, QueryOrder,
    QuerySelect,
};
use serde_json::{Value, json};

use crate::child::{self, Spec};
use crate::cpu::{self, CpuClock, CpuUsed};
use crate::report::{Row, Table, grouped};
use crate::{Config, Context, Result, progress};

/// The PostgreSQL the tests use (user `postgres`, trust), without a database.
const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432";
/// The MariaDB the tests use (user `root`, no password), without a database.
const MARIADB_URL: &str = "mysql://root@127.0.0.1:3306";

/// The backend's name in the rows and in the workers' Purger.
const BACKEND: &str = "dummy";

/// Whether any row is left: the lowest id, read from the primary key. The drain's polls use it
/// rather than [`count`], whose `COUNT(*)` reads every row version (dead ones included: the
/// test server runs without autovacuum), 6 to 9 ms of the server's CPU for 50,000 rows: at
/// this process's and the workers' poll rates, most of what the server spent in a drain.
async fn any_left(db: &DatabaseConnection) -> Result<bool> {
    let first: Option<i64> = outbox::entity::Entity::find()
        .select_only()
        .column(outbox::entity::Column::Id)
        .order_by_asc(outbox::entity::Column::Id)
        .limit(1)
        .into_tuple()
        .one(db)
        .await
        .context("looking for an outbox row")?;
    Ok(first.is_some())
}

/// Rows in the table.
async fn count(db: &DatabaseConnection) -> Result<u64> {
    outbox::entity::Entity::find()
        .count(db)
        .await
        .context("counting the outbox rows")
}

/// The child: a worker process. Says `READY`, waits for a line on stdin, then delivers until
/// the table is empty.
pub(crate) fn child(spec: &Spec) -> Result<Value> {
    let url = spec.text("url")?.to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting a tokio runtime")?;
    runtime.block_on(async move {
        let db = Database::connect(&url).await.context("connecting")?;
        let purger = Purger::builder()
            .delivery(Delivery::Outbox)
            .backend(BACKEND, DummyBackend::new())
            .build()
            .context("building the Purger")?;
        count(&db).await?;
        println!("READY");
        let mut line = String::new();
        tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line))
            .await
            .context("waiting for go")?
            .context("reading stdin")?;
        let started = Instant::now();
        let clock = CpuClock::start(None);
        let worker = OutboxWorker::builder(db.clone(), purger.clone())
            .poll_interval(Duration::from_millis(50))
            .start()
            .await
            .context("starting the outbox worker")?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while any_left(&db).await? && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        let cpu_seconds = clock.stop().own;
        let stats = worker.stop(Duration::from_secs(5)).await;
        let _ = purger.shutdown(Duration::from_secs(5)).await;
        let _ = db.close().await;
        Ok(json!({
            "delivered": stats.delivered, "failed": stats.failed, "dead": stats.dead,
            "lease_lost": stats.lease_lost, "seconds": seconds, "cpu_seconds": cpu_seconds,
        }))
    })
}

/// Writes `rows` rows, 500 per statement.
async fn fill(db: &DatabaseConnection, rows: usize, run: usize) -> Result<()> {
    let now = outbox::now_ms();
    let mut i = 0;
    while i < rows {
        let end = (i + 500).min(rows);
        let models = (i..end).map(|j| outbox::entity::ActiveModel {
            id: NotSet,
            backend: Set(BACKEND.to_owned()),
            targets: Set(format!(
                "url /posts/r{run}-{j}\nurl /\nurl /archive?category={}",
                j % 10
            )),
            created_at: Set(now),
            available_at: Set(now),
            locked_until: Set(None),
            locked_by: Set(None),
            attempts: Set(0),
            last_error: Set(None),
            dead_at: Set(None),
        });
        outbox::entity::Entity::insert_many(models)
            .exec(db)
            .await
            .context("writing outbox rows")?;
        i = end;
    }
    Ok(())
}

/// Starts `n` worker processes and waits for each to say `READY`.
fn start_workers(
    spec: &Spec,
    n: usize,
) -> Result<Vec<(Child, BufReader<std::process::ChildStdout>)>> {
    let mut children = Vec::new();
    for _ in 0..n {
        let mut cmd = child::command(spec, &[])?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut c = cmd.spawn().context("starting an outbox worker process")?;
        let stdout = c.stdout.take().ok_or("no stdout of the worker process")?;
        children.push((c, BufReader::new(stdout)));
    }
    for (c, out) in &mut children {
        let mut line = String::new();
        out.read_line(&mut line)
            .context("reading a worker's READY")?;
        if line.trim() != "READY" {
            let _ = c.kill();
            return Err(format!("an outbox worker process did not start: {line:?}").into());
        }
    }
    Ok(children)
}

/// Runs scenario 10.
pub(crate) async fn run(config: &Config) -> Result<Table> {
    let rows = config.outbox_rows;
    let mut table = Table::new(
        "outbox",
        format!(
            "10. Outbox drain: {} rows (3 targets each), dummy backend, worker processes",
            grouped(rows as u64)
        ),
        "row",
    );
    let mut run_no = 0;
    for (label, base) in [("postgres", POSTGRES_URL), ("mariadb", MARIADB_URL)] {
        let admin_url = format!("{base}/test");
        let admin = match Database::connect(&admin_url).await {
            Ok(a) => a,
            Err(e) => {
                table
                    .notes
                    .push(format!("skipped {label}: {admin_url} unreachable ({e})"));
                continue;
            }
        };
        let name = format!("cph_bench_{}_{label}", std::process::id());
        let (create, drop) = if label == "postgres" {
            (
                format!("CREATE DATABASE \"{name}\""),
                format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            )
        } else {
            (
                format!("CREATE DATABASE `{name}`"),
                format!("DROP DATABASE IF EXISTS `{name}`"),
            )
        };
        admin
            .execute_unprepared(&create)
            .await
            .with_context(|| format!("{label}: {create}"))?;
        let url = format!("{base}/{name}");
        let outcome = drain_runs(&mut table, label, &url, rows, &mut run_no).await;
        let _ = admin.execute_unprepared(&drop).await;
        let _ = admin.close().await;
        outcome?;
    }
    table.notes.push(
        "each worker process: its own connection pool, Purger (`dummy` backend, outbox mode) and OutboxWorker (claims of 500 rows, poll every 50 ms); timed from \"go\" to an empty table, this process polling for a row left (the lowest id) every 10 ms, each worker every 20 ms; CPU here: the worker processes' (all their threads) from \"go\" until each saw the table empty; CPU server: the database server's processes (PostgreSQL: the postmaster, its backends and those it reaped) over the timed span, this process's polling included".to_owned(),
    );
    Ok(table)
}

/// The runs with 1 and 2 workers on one server's database at `url`.
async fn drain_runs(
    table: &mut Table,
    label: &'static str,
    url: &str,
    rows: usize,
    run_no: &mut usize,
) -> Result<()> {
    let db = Database::connect(url)
        .await
        .with_context(|| format!("connecting to {label}"))?;
    outbox::create_table(&db)
        .await
        .with_context(|| format!("{label}: creating the outbox table"))?;
    let server = match label {
        "postgres" => cpu::server_pid(&["postgres"]),
        _ => cpu::server_pid(&["mariadbd", "mysqld"]),
    };
    for workers in [1usize, 2] {
        *run_no += 1;
        progress!(
            "outbox: {label}, {} rows, {workers} worker process(es)",
            grouped(rows as u64)
        );
        fill(&db, rows, *run_no).await?;
        let spec = child::spec("outbox", &[("url", url.to_owned())]);
        let mut children = tokio::task::spawn_blocking({
            let spec = spec.clone();
            move || start_workers(&spec, workers)
        })
        .await
        .context("starting the worker processes")??;
        let clock = CpuClock::start_tree(server);
        let started = Instant::now();
        for (c, _) in &mut children {
            if let Some(stdin) = c.stdin.as_mut() {
                let _ = stdin.write_all(b"go\n");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while any_left(&db).await? && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        let server_cpu = clock.stop().server;
        let left = count(&db).await?;
        let results = tokio::task::spawn_blocking(move || -> Result<Vec<Value>> {
            let mut results = Vec::new();
            for (c, mut stdout) in children {
                // READY was read from stdout already: the result line is in the rest.
                let mut rest = Vec::new();
                stdout
                    .read_to_end(&mut rest)
                    .context("reading a worker's result")?;
                let mut out = c
                    .wait_with_output()
                    .context("waiting for a worker process")?;
                out.stdout = rest;
                results.push(child::result_of(&spec, &out)?);
            }
            Ok(results)
        })
        .await
        .context("the worker processes")??;
        let sum = |k: &str| {
            results
                .iter()
                .map(|r| r[k].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        let id: &'static str = match (label, workers) {
            ("postgres", 1) => "postgres-1",
            ("postgres", _) => "postgres-2",
            (_, 1) => "mariadb-1",
            _ => "mariadb-2",
        };
        let workers_cpu = results
            .iter()
            .map(|r| r["cpu_seconds"].as_f64().unwrap_or(0.0))
            .sum::<f64>();
        table.rows.push(
            Row::measured(
                id,
                format!("{label}: {workers} worker process(es)"),
                rows as u64,
                seconds,
            )
            .cpu(CpuUsed {
                own: workers_cpu,
                server: server_cpu,
                ..CpuUsed::default()
            }),
        );
        let per_worker: Vec<String> = results
            .iter()
            .map(|r| grouped(r["delivered"].as_u64().unwrap_or(0)))
            .collect();
        table.check(
            left == 0 && sum("delivered") >= rows as u64 && sum("dead") == 0,
            true,
            format!(
                "{label}, {workers} worker(s): {} rows left, {} delivered ({}), {} failed, {} dead, {} delivered twice (lease lost)",
                grouped(left),
                grouped(sum("delivered")),
                per_worker.join(" + "),
                sum("failed"),
                sum("dead"),
                sum("lease_lost")
            ),
        );
    }
    let _ = db.close().await;
    Ok(())
}
