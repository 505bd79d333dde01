//! `cache-purge outbox`: looks after the `cache_purge_outbox` table of the `outbox` delivery
//! mode: counts, dead rows (list, revive, delete) and draining it with the settings'
//! backends. Every database operation is the library's own
//! ([`cache_purge_hooks_sea_orm::outbox`]).

use std::time::Duration;

use cache_purge_hooks_engine::backend::PurgeError;
use cache_purge_hooks_engine::{Delivery, PurgerBuilder, Settings};
use cache_purge_hooks_sea_orm::outbox::{
    self, BackendOutboxStatus, DeadRows, OutboxRow, OutboxWorker,
};
use sea_orm::{Database, DatabaseConnection};
use serde_json::json;

use crate::args::{DeadSelection, GlobalArgs, OutboxArgs, OutboxCommand};
use crate::error::CliError;
use crate::exit;
use crate::output::{self, Output, human_duration, plural, some_of};
use crate::settings;

/// Runs `cache-purge outbox ...`.
pub(crate) fn run(global: &GlobalArgs, args: OutboxArgs, out: &Output) -> Result<u8, CliError> {
    let Some(url) = args
        .database_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
    else {
        return Err(CliError::usage("no database given")
            .with_hint("pass --database-url URL or set DATABASE_URL (sqlite://app.db, postgres://user@host/db, mysql://user@host/db)"));
    };
    let runtime = crate::runtime()?;
    let result = runtime.block_on(async {
        let db = connect(url).await?;
        let result = match args.command {
            OutboxCommand::Status => status(global, &db, out).await,
            OutboxCommand::Dead { backend, limit } => {
                dead(&db, backend.as_deref(), limit, out).await
            }
            OutboxCommand::Retry(which) => revive(&db, &which, out).await,
            OutboxCommand::DeleteDead(which) => delete(&db, &which, out).await,
            OutboxCommand::Drain { timeout } => drain(global, &db, timeout, out).await,
        };
        // Closing only returns the pool's connections; a failure changes nothing done.
        let _ = db.close().await;
        result
    });
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot have a password, which this one has.
            let _ = parsed.set_password(Some("****"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Connects and checks that the outbox table is there.
async fn connect(url: &str) -> Result<DatabaseConnection, CliError> {
    let db = Database::connect(url)
        .await
        .map_err(|e| CliError::failed(format!("cannot connect to {}: {e}", redacted(url))))?;
    if !outbox::table_exists(&db).await {
        let _ = db.close().await;
        return Err(CliError::failed(format!(
            "{} has no table `cache_purge_outbox`",
            redacted(url)
        ))
        .with_hint(
            "add cache_purge_hooks::sea_orm::outbox::Migration to your Migrator, or run docs/outbox.sql",
        ));
    }
    Ok(db)
}

fn db_error(what: &str, e: sea_orm::DbErr) -> CliError {
    CliError::failed(format!("cannot {what}: {e}"))
}

/// The settings, when they can be read: the outbox commands that only read the table still
/// work without them.
fn optional_settings(global: &GlobalArgs) -> Result<Option<Settings>, CliError> {
    match settings::load(global) {
        Ok(loaded) => Ok(Some(loaded.settings)),
        // An explicit --config that is wrong is a mistake worth stopping for.
        Err(e) if global.config.is_some() => Err(e),
        Err(_) => Ok(None),
    }
}

async fn status(
    global: &GlobalArgs,
    db: &DatabaseConnection,
    out: &Output,
) -> Result<u8, CliError> {
    let now = outbox::now_ms();
    let mut rows = outbox::status(db, now)
        .await
        .map_err(|e| db_error("count the outbox rows", e))?;
    let settings = optional_settings(global)?;
    let configured: Vec<String> = settings
        .as_ref()
        .map(|s| s.backends.keys().cloned().collect())
        .unwrap_or_default();
    // Configured backends with no row are listed too, with zeros: "nothing waiting".
    for name in &configured {
        if !rows.iter().any(|r| &r.backend == name) {
            let mut empty = BackendOutboxStatus::default();
            empty.backend = name.clone();
            rows.push(empty);
        }
    }
    rows.sort_by(|a, b| a.backend.cmp(&b.backend));
    let orphans: Vec<&str> = rows
        .iter()
        .filter(|r| settings.is_some() && !configured.contains(&r.backend))
        .map(|r| r.backend.as_str())
        .collect();
    let age = |r: &BackendOutboxStatus| {
        r.oldest_created_at
            .map(|t| Duration::from_millis(u64::try_from(now.saturating_sub(t)).unwrap_or(0)))
    };
    if out.json {
        out.json(&json!({
            "backends": rows.iter().map(|r| json!({
                "backend": r.backend,
                "pending": r.pending,
                "retrying": r.retrying,
                "in_flight": r.in_flight,
                "dead": r.dead,
                "oldest_age_ms": age(r).map(|d| d.as_millis() as u64),
                "configured": settings.is_none() || configured.contains(&r.backend),
            })).collect::<Vec<_>>(),
            "delivery": settings.as_ref().map(|s| delivery_name(s.delivery)),
        }));
        return Ok(exit::SUCCESS);
    }
    if rows.is_empty() {
        out.line("the outbox is empty");
    } else {
        let width = rows
            .iter()
            .map(|r| r.backend.len())
            .max()
            .unwrap_or(0)
            .max("backend".len());
        out.line(format!(
            "{:<width$}  {:>8}  {:>8}  {:>9}  {:>6}  oldest",
            "backend", "pending", "retrying", "in flight", "dead"
        ));
        for r in &rows {
            out.line(format!(
                "{:<width$}  {:>8}  {:>8}  {:>9}  {:>6}  {}",
                r.backend,
                r.pending,
                r.retrying,
                r.in_flight,
                r.dead,
                age(r).map(human_duration).unwrap_or_else(|| "-".to_owned()),
            ));
        }
    }
    if let Some(s) = &settings
        && s.delivery != Delivery::Outbox
    {
        output::note(format!(
            "the settings say delivery = \"{}\": saves do not write to the outbox",
            delivery_name(s.delivery)
        ));
    }
    for name in orphans {
        output::note(format!(
            "no configured backend is named `{name}`: no worker with these settings delivers its rows (`cache-purge outbox delete-dead` only removes dead rows)"
        ));
    }
    Ok(exit::SUCCESS)
}

fn delivery_name(d: Delivery) -> &'static str {
    match d {
        Delivery::Immediate => "immediate",
        Delivery::Outbox => "outbox",
        _ => "after_commit",
    }
}

async fn dead(
    db: &DatabaseConnection,
    backend: Option<&str>,
    limit: u64,
    out: &Output,
) -> Result<u8, CliError> {
    let rows = outbox::dead(db, backend, limit)
        .await
        .map_err(|e| db_error("list the dead rows", e))?;
    let now = outbox::now_ms();
    let ago = |t: Option<i64>| {
        t.map(|t| Duration::from_millis(u64::try_from(now.saturating_sub(t)).unwrap_or(0)))
    };
    if out.json {
        out.json(&json!({
            "dead": rows.iter().map(|r: &OutboxRow| json!({
                "id": r.id,
                "backend": r.backend,
                "attempts": r.attempts,
                "created_at_ms": r.created_at,
                "dead_at_ms": r.dead_at,
                "last_error": r.last_error,
                "targets": r.targets.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }));
        return Ok(exit::SUCCESS);
    }
    if rows.is_empty() {
        out.line("no dead rows");
        return Ok(exit::SUCCESS);
    }
    for r in &rows {
        out.line(format!(
            "#{} {} — {}, given up {} ago after {}",
            r.id,
            out.bold(&r.backend),
            plural(r.targets.len() as u64, "target", "targets"),
            ago(r.dead_at)
                .map(human_duration)
                .unwrap_or_else(|| "?".to_owned()),
            plural(u64::from(r.attempts), "attempt", "attempts"),
        ));
        if let Some(e) = &r.last_error {
            out.line(format!("    error: {e}"));
        }
        out.line(format!("    {}", some_of(&r.targets, 5)));
    }
    if rows.len() as u64 == limit {
        output::note(format!("showing the oldest {limit}; --limit shows more"));
    }
    out.line("revive with `cache-purge outbox retry --id ID` (or --backend, --all); drop with `cache-purge outbox delete-dead`");
    Ok(exit::SUCCESS)
}

fn selection(which: &DeadSelection) -> DeadRows<'_> {
    if which.all {
        DeadRows::All
    } else if let Some(backend) = &which.backend {
        DeadRows::Backend(backend)
    } else {
        DeadRows::Ids(&which.id)
    }
}

async fn revive(
    db: &DatabaseConnection,
    which: &DeadSelection,
    out: &Output,
) -> Result<u8, CliError> {
    let n = outbox::retry_dead(db, selection(which), outbox::now_ms())
        .await
        .map_err(|e| db_error("revive the dead rows", e))?;
    if out.json {
        out.json(&json!({ "revived": n }));
    } else {
        out.line(format!(
            "{} revived: deliverable now, with fresh attempts",
            plural(n, "dead row", "dead rows")
        ));
    }
    Ok(exit::SUCCESS)
}

async fn delete(
    db: &DatabaseConnection,
    which: &DeadSelection,
    out: &Output,
) -> Result<u8, CliError> {
    let n = outbox::delete_dead(db, selection(which))
        .await
        .map_err(|e| db_error("delete the dead rows", e))?;
    if out.json {
        out.json(&json!({ "deleted": n }));
    } else {
        out.line(format!("{} deleted", plural(n, "dead row", "dead rows")));
    }
    Ok(exit::SUCCESS)
}

/// Rows of these backends still to deliver: pending (due or backing off) or in flight.
fn undelivered(rows: &[BackendOutboxStatus], backends: &[&str]) -> u64 {
    rows.iter()
        .filter(|r| backends.contains(&r.backend.as_str()))
        .map(|r| r.pending + r.in_flight)
        .sum()
}

async fn drain(
    global: &GlobalArgs,
    db: &DatabaseConnection,
    timeout: Duration,
    out: &Output,
) -> Result<u8, CliError> {
    let loaded = settings::load(global)?;
    let purger = PurgerBuilder::from_settings(&loaded.settings)?
        .delivery(Delivery::Outbox)
        .build()?;
    let names: Vec<String> = purger
        .backend_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let backends: Vec<&str> = names.iter().map(String::as_str).collect();
    let count = || async {
        outbox::status(db, outbox::now_ms())
            .await
            .map_err(|e| db_error("count the outbox rows", e))
    };
    let before = undelivered(&count().await?, &backends);
    let worker = OutboxWorker::builder(db.clone(), purger.clone())
        .worker_id(format!(
            "cache-purge-cli:{}:{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "host".to_owned()),
            std::process::id()
        ))
        .poll_interval(Duration::from_millis(200))
        .start()
        .await
        .map_err(|e| db_error("start the outbox worker", e))?;
    let started = tokio::time::Instant::now();
    let mut left = before;
    while left > 0 && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(200)).await;
        left = undelivered(&count().await?, &backends);
    }
    let stats = worker.stop(Duration::from_secs(5)).await;
    let _ = purger.shutdown(Duration::from_secs(1)).await;
    let last_errors: Vec<(String, PurgeError)> = purger
        .stats()
        .into_iter()
        .filter_map(|s| Some((s.backend, s.last_error?)))
        .collect();
    let rows = count().await?;
    left = undelivered(&rows, &backends);
    let dead: u64 = rows
        .iter()
        .filter(|r| backends.contains(&r.backend.as_str()))
        .map(|r| r.dead)
        .sum();
    let drained = left == 0;
    if out.json {
        out.json(&json!({
            "ok": drained,
            "delivered": stats.delivered,
            "failed_attempts": stats.failed,
            "dead_now": stats.dead,
            "left": left,
            "dead_total": dead,
            "backends": backends,
            "last_errors": last_errors
                .iter()
                .map(|(b, e)| json!({"backend": b, "error": output::error_json(e)}))
                .collect::<Vec<_>>(),
        }));
    } else {
        out.line(format!(
            "{} {} delivered, {} given up on, {} left (of {} waiting at the start) in {}",
            out.mark(drained),
            plural(stats.delivered, "row", "rows"),
            stats.dead,
            left,
            before,
            human_duration(started.elapsed()),
        ));
        if !drained {
            out.line(format!(
                "    {} not drained within {}; --timeout gives more time",
                out.fail_mark(),
                human_duration(timeout)
            ));
        }
        for (b, e) in &last_errors {
            out.line(format!("    {} {b}: last error: {e}", out.fail_mark()));
        }
        if dead > 0 {
            out.line(format!(
                "    {} in the outbox; see `cache-purge outbox dead`",
                plural(dead, "dead row", "dead rows")
            ));
        }
    }
    Ok(if drained {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redacted("postgres://app:s3cret@db.internal/app"),
            "postgres://app:****@db.internal/app"
        );
        assert_eq!(redacted("sqlite://app.db"), "sqlite://app.db");
    }
}
