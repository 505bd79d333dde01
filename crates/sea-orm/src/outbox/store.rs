//! Writing, claiming and settling outbox rows.

use std::time::Duration;

use cache_purge_hooks_engine::{InvalidTarget, Target};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    ExprTrait, IsolationLevel, QueryFilter, QueryOrder, QueryResult, QuerySelect, Statement,
    TransactionTrait, Value,
};

use super::entity::{self, Column, Entity};
use super::sql;

pub use cache_purge_hooks_engine::outbox::{MAX_TARGET_BYTES_PER_ROW, now_ms};

/// Errors stored in `last_error` are cut to this many characters.
pub const MAX_ERROR_CHARS: usize = 2000;

/// Rows per `INSERT` and ids per `IN (...)` list, far below every database's limit on bound
/// parameters (SQLite's is 32766, PostgreSQL's 65535).
const CHUNK: usize = 1000;

/// One outbox row as a worker sees it: what to purge on which backend.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxRow {
    /// The row's id, for [`complete`], [`fail`] and [`release`].
    pub id: i64,
    /// The backend to purge on.
    pub backend: String,
    /// What to purge. In [`dead`] listings, lines that no longer parse are left out (the
    /// row's `last_error` says why it died).
    pub targets: Vec<Target>,
    /// Failed deliveries so far.
    pub attempts: u32,
    /// When the purge was written (unix milliseconds).
    pub created_at: i64,
    /// When the row became claimable (its creation, or its last retry time).
    pub available_at: i64,
    /// The error of the last failed delivery.
    pub last_error: Option<String>,
    /// When the row was given up on; `None` for claimed rows.
    pub dead_at: Option<i64>,
}

/// The outbox of one backend, for a health endpoint or an admin page: [`status`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendOutboxStatus {
    /// The backend's name.
    pub backend: String,
    /// Rows waiting for a worker (not dead, not leased), those waiting out a retry
    /// backoff included.
    pub pending: u64,
    /// Of the `pending` rows, those not due yet (waiting out a backoff).
    pub retrying: u64,
    /// Rows leased by a worker right now (being delivered).
    pub in_flight: u64,
    /// Rows given up on.
    pub dead: u64,
    /// When the oldest row not dead was written (unix milliseconds): how far delivery lags.
    pub oldest_created_at: Option<i64>,
}

/// Which dead rows [`retry_dead`] and [`delete_dead`] act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadRows<'a> {
    /// Every dead row.
    All,
    /// The dead rows of one backend.
    Backend(&'a str),
    /// The dead rows among these ids (ids of rows not dead are ignored).
    Ids(&'a [i64]),
}

/// Parses a row's stored targets (the shared format of
/// [`cache_purge_hooks_engine::outbox`]).
pub(crate) fn parse_targets(text: &str) -> Result<Vec<Target>, InvalidTarget> {
    cache_purge_hooks_engine::outbox::parse_stored_targets(text)
}

fn truncate_error(error: &str) -> String {
    match error.char_indices().nth(MAX_ERROR_CHARS) {
        Some((at, _)) => format!("{}…", &error[..at]),
        None => error.to_owned(),
    }
}

fn lease_end(now_ms: i64, lease: Duration) -> i64 {
    let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    now_ms.saturating_add(lease)
}

/// Writes a purge to the outbox: one row per backend holding every target (a purge whose
/// targets' text passes [`MAX_TARGET_BYTES_PER_ROW`] takes several rows per backend).
///
/// Pass the connection the entity was saved with: on a transaction the rows commit or roll
/// back with it. It is one multi-row `INSERT` (for purges up to 1000 rows), cheap inside a
/// transaction. Duplicate targets are stored once. Does nothing when `backends` or `targets`
/// is empty.
///
/// Fails when the table is missing (run [`Migration`](super::Migration)); on PostgreSQL a
/// failed statement aborts the enclosing transaction.
pub async fn enqueue<C, B>(
    conn: &C,
    backends: &[B],
    targets: &[Target],
    now_ms: i64,
) -> Result<(), DbErr>
where
    C: ConnectionTrait,
    B: AsRef<str>,
{
    enqueue_due(conn, backends, targets, now_ms, now_ms).await
}

/// [`enqueue`] with rows not claimable before `available_at_ms` (a delayed second purge).
pub async fn enqueue_due<C, B>(
    conn: &C,
    backends: &[B],
    targets: &[Target],
    now_ms: i64,
    available_at_ms: i64,
) -> Result<(), DbErr>
where
    C: ConnectionTrait,
    B: AsRef<str>,
{
    if backends.is_empty() || targets.is_empty() {
        return Ok(());
    }
    let chunks = cache_purge_hooks_engine::outbox::stored_targets(targets);
    let rows: Vec<(&str, &str)> = backends
        .iter()
        .flat_map(|b| chunks.iter().map(move |c| (b.as_ref(), c.as_str())))
        .collect();
    let db = conn.get_database_backend();
    for part in rows.chunks(CHUNK) {
        let mut values = Vec::with_capacity(part.len() * 5);
        for (backend, text) in part {
            values.extend([
                Value::from(*backend),
                Value::from(*text),
                Value::from(now_ms),
                Value::from(available_at_ms),
                Value::from(0i32),
            ]);
        }
        conn.execute_raw(Statement::from_sql_and_values(
            db,
            sql::insert(db, part.len())?,
            values,
        ))
        .await?;
    }
    Ok(())
}

fn row_from_claim(row: &QueryResult) -> Result<(OutboxRow, String), DbErr> {
    let attempts: i32 = row.try_get("", "attempts")?;
    let text: String = row.try_get("", "targets")?;
    Ok((
        OutboxRow {
            id: row.try_get("", "id")?,
            backend: row.try_get("", "backend")?,
            targets: Vec::new(),
            attempts: u32::try_from(attempts).unwrap_or(0),
            created_at: row.try_get("", "created_at")?,
            available_at: row.try_get("", "available_at")?,
            last_error: row.try_get("", "last_error")?,
            dead_at: None,
        },
        text,
    ))
}

/// Claims up to `limit` rows of `backend` for `worker_id`: rows not dead, due
/// (`available_at <= now_ms`) and not leased by another worker (no lease, or one that has
/// run out), oldest first (by `available_at`, then id). Each is leased until
/// `now_ms + lease`: no other claim returns it before then, so the worker must settle it
/// ([`complete`], [`fail`], [`release`]) in time. A worker that dies leaves its rows to be
/// claimed again when the lease runs out (delivery is at least once).
///
/// Concurrent claimers, in one process or many, never get the same row while its lease
/// holds. PostgreSQL: one `UPDATE` over a `SELECT ... FOR UPDATE SKIP LOCKED`. MySQL /
/// MariaDB (≥ 10.6): a `READ COMMITTED` transaction, `SELECT ... FOR UPDATE SKIP LOCKED`
/// then `UPDATE`. SQLite: one `UPDATE ... RETURNING` (SQLite ≥ 3.35), serialised by
/// SQLite's write lock.
///
/// A row whose targets do not parse is dead-lettered with the parse error instead of being
/// returned.
pub async fn claim(
    db: &DatabaseConnection,
    backend: &str,
    worker_id: &str,
    limit: u64,
    lease: Duration,
    now_ms: i64,
) -> Result<Vec<OutboxRow>, DbErr> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let until = lease_end(now_ms, lease);
    let db_backend = db.get_database_backend();
    let raw = match db_backend {
        DbBackend::Postgres => {
            let stmt = Statement::from_sql_and_values(
                db_backend,
                sql::CLAIM_POSTGRES,
                [
                    backend.into(),
                    now_ms.into(),
                    limit.into(),
                    until.into(),
                    worker_id.into(),
                ],
            );
            db.query_all_raw(stmt).await
        }
        DbBackend::Sqlite => {
            let stmt = Statement::from_sql_and_values(
                db_backend,
                sql::CLAIM_SQLITE,
                [
                    until.into(),
                    worker_id.into(),
                    backend.into(),
                    now_ms.into(),
                    now_ms.into(),
                    limit.into(),
                ],
            );
            db.query_all_raw(stmt).await
        }
        DbBackend::MySql => claim_mysql(db, backend, worker_id, limit, until, now_ms).await,
        #[allow(unreachable_patterns)]
        other => Err(DbErr::BackendNotSupported {
            db: other.as_str(),
            ctx: "cache purge outbox claim",
        }),
    }?;

    let mut rows = Vec::with_capacity(raw.len());
    let mut bad = Vec::new();
    for r in &raw {
        let (mut row, text) = row_from_claim(r)?;
        match parse_targets(&text) {
            Ok(targets) => {
                row.targets = targets;
                rows.push(row);
            }
            Err(e) => bad.push((row.id, e)),
        }
    }
    for (id, e) in bad {
        tracing::error!(
            target: "cache_purge_hooks",
            backend,
            id,
            error = %e,
            "outbox row holds an invalid target; it is dead-lettered"
        );
        bury(db, worker_id, &[id], &e.to_string(), now_ms).await?;
    }
    rows.sort_by_key(|r| (r.available_at, r.id));
    Ok(rows)
}

async fn claim_mysql(
    db: &DatabaseConnection,
    backend: &str,
    worker_id: &str,
    limit: i64,
    until: i64,
    now_ms: i64,
) -> Result<Vec<QueryResult>, DbErr> {
    let txn = db
        .begin_with_config(Some(IsolationLevel::ReadCommitted), None)
        .await?;
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::MySql,
            sql::CLAIM_MYSQL_SELECT,
            [backend.into(), now_ms.into(), now_ms.into(), limit.into()],
        ))
        .await?;
    if rows.is_empty() {
        txn.commit().await?;
        return Ok(rows);
    }
    let mut values: Vec<Value> = Vec::with_capacity(rows.len() + 2);
    values.push(until.into());
    values.push(worker_id.into());
    for row in &rows {
        values.push(row.try_get::<i64>("", "id")?.into());
    }
    let update = format!(
        "{}{}",
        sql::CLAIM_MYSQL_UPDATE,
        sql::placeholders(rows.len())
    );
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::MySql,
        update,
        values,
    ))
    .await?;
    txn.commit().await?;
    Ok(rows)
}

/// Rows among `ids` still leased to `worker_id` (a lease that ran out counts while nobody
/// else has claimed the row).
fn held(worker_id: &str, ids: &[i64]) -> Condition {
    Condition::all()
        .add(Column::Id.is_in(ids.iter().copied()))
        .add(Column::LockedBy.eq(worker_id))
        .add(Column::DeadAt.is_null())
}

/// Deletes delivered rows.
///
/// Only rows still held by `worker_id` are deleted: when this worker's lease ran out and
/// another worker claimed the row again, that worker's delivery (a duplicate, harmless for a
/// purge) settles it. Returns the number of rows deleted; fewer than `ids` means some
/// leases were lost.
pub async fn complete<C: ConnectionTrait>(
    db: &C,
    worker_id: &str,
    ids: &[i64],
) -> Result<u64, DbErr> {
    let mut done = 0;
    for part in ids.chunks(CHUNK) {
        done += Entity::delete_many()
            .filter(held(worker_id, part))
            .exec(db)
            .await?
            .rows_affected;
    }
    Ok(done)
}

/// Records a failed delivery of rows held by `worker_id`: `attempts + 1`, `last_error =
/// error` (cut to [`MAX_ERROR_CHARS`]), lease released. With `retry_at_ms` the rows are
/// claimable again from then; with `None` they are dead (`dead_at = now_ms`), listed by
/// [`dead`] until [`retry_dead`] or [`delete_dead`].
///
/// Deciding between the two (attempts so far, age, a permanent error) is the caller's: rows
/// carry [`OutboxRow::attempts`] and [`OutboxRow::created_at`]. Returns the number of rows
/// updated (those still held by `worker_id`).
pub async fn fail<C: ConnectionTrait>(
    db: &C,
    worker_id: &str,
    ids: &[i64],
    error: &str,
    retry_at_ms: Option<i64>,
    now_ms: i64,
) -> Result<u64, DbErr> {
    let Some(retry_at) = retry_at_ms else {
        return bury(db, worker_id, ids, error, now_ms).await;
    };
    let error = truncate_error(error);
    let mut done = 0;
    for part in ids.chunks(CHUNK) {
        done += Entity::update_many()
            .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
            .col_expr(Column::LastError, Expr::val(error.as_str()))
            .col_expr(Column::AvailableAt, Expr::val(retry_at))
            .col_expr(Column::LockedUntil, Expr::val(Option::<i64>::None))
            .col_expr(Column::LockedBy, Expr::val(Option::<String>::None))
            .filter(held(worker_id, part))
            .exec(db)
            .await?
            .rows_affected;
    }
    Ok(done)
}

/// Dead-letters rows held by `worker_id`.
async fn bury<C: ConnectionTrait>(
    db: &C,
    worker_id: &str,
    ids: &[i64],
    error: &str,
    now_ms: i64,
) -> Result<u64, DbErr> {
    let error = truncate_error(error);
    let mut done = 0;
    for part in ids.chunks(CHUNK) {
        done += Entity::update_many()
            .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
            .col_expr(Column::LastError, Expr::val(error.as_str()))
            .col_expr(Column::DeadAt, Expr::val(now_ms))
            .col_expr(Column::LockedUntil, Expr::val(Option::<i64>::None))
            .col_expr(Column::LockedBy, Expr::val(Option::<String>::None))
            .filter(held(worker_id, part))
            .exec(db)
            .await?
            .rows_affected;
    }
    Ok(done)
}

/// Gives rows held by `worker_id` back without counting an attempt (at shutdown, for rows
/// claimed but not delivered): they are claimable again at once. Returns the number of rows
/// released.
pub async fn release<C: ConnectionTrait>(
    db: &C,
    worker_id: &str,
    ids: &[i64],
) -> Result<u64, DbErr> {
    let mut done = 0;
    for part in ids.chunks(CHUNK) {
        done += Entity::update_many()
            .col_expr(Column::LockedUntil, Expr::val(Option::<i64>::None))
            .col_expr(Column::LockedBy, Expr::val(Option::<String>::None))
            .filter(held(worker_id, part))
            .exec(db)
            .await?
            .rows_affected;
    }
    Ok(done)
}

/// Lists dead rows, of one backend or all, oldest first, at most `limit`.
pub async fn dead<C: ConnectionTrait>(
    db: &C,
    backend: Option<&str>,
    limit: u64,
) -> Result<Vec<OutboxRow>, DbErr> {
    let mut query = Entity::find().filter(Column::DeadAt.is_not_null());
    if let Some(backend) = backend {
        query = query.filter(Column::Backend.eq(backend));
    }
    let models = query.order_by_asc(Column::Id).limit(limit).all(db).await?;
    Ok(models.into_iter().map(row_from_model).collect())
}

fn row_from_model(m: entity::Model) -> OutboxRow {
    OutboxRow {
        id: m.id,
        backend: m.backend,
        targets: m
            .targets
            .lines()
            .filter_map(|line| line.parse().ok())
            .collect(),
        attempts: u32::try_from(m.attempts).unwrap_or(0),
        created_at: m.created_at,
        available_at: m.available_at,
        last_error: m.last_error,
        dead_at: m.dead_at,
    }
}

fn dead_condition(which: DeadRows<'_>, ids: &[i64]) -> Condition {
    let cond = Condition::all().add(Column::DeadAt.is_not_null());
    match which {
        DeadRows::All => cond,
        DeadRows::Backend(b) => cond.add(Column::Backend.eq(b)),
        DeadRows::Ids(_) => cond.add(Column::Id.is_in(ids.iter().copied())),
    }
}

/// Each `DeadRows::Ids` list cut to `CHUNK` ids; one pass for the others.
fn dead_passes<'a>(which: DeadRows<'a>) -> Vec<&'a [i64]> {
    match which {
        DeadRows::Ids(ids) => ids.chunks(CHUNK).collect(),
        _ => vec![&[]],
    }
}

/// Brings dead rows back: not dead, `attempts = 0`, claimable from `now_ms` (their
/// `last_error` is kept until the next attempt). Returns the number of rows revived.
pub async fn retry_dead<C: ConnectionTrait>(
    db: &C,
    which: DeadRows<'_>,
    now_ms: i64,
) -> Result<u64, DbErr> {
    let mut done = 0;
    for ids in dead_passes(which) {
        done += Entity::update_many()
            .col_expr(Column::DeadAt, Expr::val(Option::<i64>::None))
            .col_expr(Column::Attempts, Expr::val(0i32))
            .col_expr(Column::AvailableAt, Expr::val(now_ms))
            .col_expr(Column::LockedUntil, Expr::val(Option::<i64>::None))
            .col_expr(Column::LockedBy, Expr::val(Option::<String>::None))
            .filter(dead_condition(which, ids))
            .exec(db)
            .await?
            .rows_affected;
    }
    Ok(done)
}

/// Deletes dead rows for good. Returns the number of rows deleted.
pub async fn delete_dead<C: ConnectionTrait>(db: &C, which: DeadRows<'_>) -> Result<u64, DbErr> {
    let mut done = 0;
    for ids in dead_passes(which) {
        done += Entity::delete_many()
            .filter(dead_condition(which, ids))
            .exec(db)
            .await?
            .rows_affected;
    }
    Ok(done)
}

const STATUS: &str = "SELECT backend, \
COUNT(CASE WHEN dead_at IS NULL AND (locked_until IS NULL OR locked_until <= ?) THEN 1 END) AS pending, \
COUNT(CASE WHEN dead_at IS NULL AND (locked_until IS NULL OR locked_until <= ?) AND available_at > ? THEN 1 END) AS retrying, \
COUNT(CASE WHEN dead_at IS NULL AND locked_until > ? THEN 1 END) AS in_flight, \
COUNT(dead_at) AS dead, \
MIN(CASE WHEN dead_at IS NULL THEN created_at END) AS oldest_created_at \
FROM cache_purge_outbox GROUP BY backend ORDER BY backend";

/// `?` placeholders as PostgreSQL's `$1`, `$2`, ...
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Counts rows per backend (backends with no row are not listed), sorted by backend name.
/// One `GROUP BY` over the table.
pub async fn status<C: ConnectionTrait>(
    db: &C,
    now_ms: i64,
) -> Result<Vec<BackendOutboxStatus>, DbErr> {
    let backend = db.get_database_backend();
    let sql = if backend == DbBackend::Postgres {
        numbered(STATUS)
    } else {
        STATUS.to_owned()
    };
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [now_ms.into(), now_ms.into(), now_ms.into(), now_ms.into()],
        ))
        .await?;
    let count = |row: &QueryResult, col: &str| -> Result<u64, DbErr> {
        let n: i64 = row.try_get("", col)?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    rows.iter()
        .map(|row| {
            Ok(BackendOutboxStatus {
                backend: row.try_get("", "backend")?,
                pending: count(row, "pending")?,
                retrying: count(row, "retrying")?,
                in_flight: count(row, "in_flight")?,
                dead: count(row, "dead")?,
                oldest_created_at: row.try_get("", "oldest_created_at")?,
            })
        })
        .collect::<Result<_, DbErr>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_cut_on_a_character_boundary() {
        let e = "é".repeat(MAX_ERROR_CHARS + 5);
        let cut = truncate_error(&e);
        assert_eq!(cut.chars().count(), MAX_ERROR_CHARS + 1);
        assert_eq!(truncate_error("short"), "short");
    }

    #[test]
    fn postgres_placeholders_are_numbered() {
        assert_eq!(numbered("a = ? AND b = ?"), "a = $1 AND b = $2");
        assert_eq!(sql::placeholders(3), "(?, ?, ?)");
    }

    #[test]
    fn leases_saturate() {
        assert_eq!(lease_end(i64::MAX - 1, Duration::from_secs(5)), i64::MAX);
        assert_eq!(lease_end(1000, Duration::from_millis(1500)), 2500);
    }
}
