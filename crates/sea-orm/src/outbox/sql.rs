//! The claim statements, written out per database: they use what each database has for
//! handing rows to one worker at a time.
//!
//! The filter is the same everywhere: rows of one backend, not dead, due, with no running
//! lease; taken oldest first, in `(available_at, id)` order, which is the order of the claim
//! index `(backend, dead_at, available_at, id)` within one backend's live rows, so the
//! database reads the first few index entries instead of sorting every waiting row
//! (checked with `EXPLAIN` by `tests/outbox_store.rs`). How to say so differs:
//! PostgreSQL uses the index order only when the `ORDER BY` names `dead_at` too (its
//! `IS NULL` is no equality to the planner), MariaDB only when it does not (it sorts
//! otherwise), SQLite either way.

/// PostgreSQL: one statement. The CTE (always evaluated once, as it locks rows) takes the
/// rows with `FOR UPDATE SKIP LOCKED`, so concurrent claimers skip each other's rows instead
/// of waiting; the row locks are re-checked against the newest row version, so a row another
/// worker has just leased is left out.
///
/// `$1` backend, `$2` now, `$3` limit, `$4` lease end, `$5` worker.
pub(crate) const CLAIM_POSTGRES: &str = r#"WITH picked AS (
    SELECT "id" FROM "cache_purge_outbox"
    WHERE "backend" = $1 AND "dead_at" IS NULL AND "available_at" <= $2
      AND ("locked_until" IS NULL OR "locked_until" <= $2)
    ORDER BY "dead_at", "available_at", "id"
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE "cache_purge_outbox" AS o SET "locked_until" = $4, "locked_by" = $5
FROM picked WHERE o."id" = picked."id"
RETURNING o."id", o."backend", o."targets", o."created_at", o."available_at", o."attempts", o."last_error""#;

/// MySQL / MariaDB (≥ 10.6, MySQL ≥ 8.0), step 1 of 2 in a `READ COMMITTED` transaction
/// (no gap locks that would hold up inserts): lock the rows, skipping those locked by other
/// claimers. MariaDB has no `UPDATE ... RETURNING`.
///
/// Parameters: backend, now, now, limit.
pub(crate) const CLAIM_MYSQL_SELECT: &str = "SELECT `id`, `backend`, `targets`, `created_at`, \
`available_at`, `attempts`, `last_error` FROM `cache_purge_outbox` \
WHERE `backend` = ? AND `dead_at` IS NULL AND `available_at` <= ? \
AND (`locked_until` IS NULL OR `locked_until` <= ?) \
ORDER BY `available_at`, `id` LIMIT ? FOR UPDATE SKIP LOCKED";

/// MySQL / MariaDB, step 2: lease the locked rows, then COMMIT. Followed by
/// `WHERE id IN (?, ...)`.
///
/// Parameters: lease end, worker, then the ids.
pub(crate) const CLAIM_MYSQL_UPDATE: &str =
    "UPDATE `cache_purge_outbox` SET `locked_until` = ?, `locked_by` = ? WHERE `id` IN ";

/// SQLite: one statement. SQLite has one writer at a time and a writing statement takes the
/// write lock before it reads anything, so the `SELECT` inside sees no row that another
/// claimer leases at the same time (which waits on the busy timeout). `RETURNING` needs
/// SQLite ≥ 3.35 (the `sqlx-sqlite` feature bundles a newer one).
///
/// Parameters: lease end, worker, backend, now, now, limit.
pub(crate) const CLAIM_SQLITE: &str = r#"UPDATE "cache_purge_outbox" SET "locked_until" = ?, "locked_by" = ?
WHERE "id" IN (
    SELECT "id" FROM "cache_purge_outbox"
    WHERE "backend" = ? AND "dead_at" IS NULL AND "available_at" <= ?
      AND ("locked_until" IS NULL OR "locked_until" <= ?)
    ORDER BY "available_at", "id"
    LIMIT ?
)
RETURNING "id", "backend", "targets", "created_at", "available_at", "attempts", "last_error""#;

/// `(?, ?, ...)` with `n` placeholders (`n` ≥ 1).
pub(crate) fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(2 + 3 * n);
    s.push('(');
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s.push(')');
    s
}

/// The enqueue `INSERT` of one row, PostgreSQL. Written out rather than built with sea-query
/// on every save: building it was about a tenth of what an outbox row adds to a save (4c).
///
/// Parameters: backend, targets, created_at, available_at, attempts.
const INSERT_ONE_POSTGRES: &str = r#"INSERT INTO "cache_purge_outbox" ("backend", "targets", "created_at", "available_at", "attempts") VALUES ($1, $2, $3, $4, $5)"#;

/// [`INSERT_ONE_POSTGRES`] for SQLite.
const INSERT_ONE_SQLITE: &str = r#"INSERT INTO "cache_purge_outbox" ("backend", "targets", "created_at", "available_at", "attempts") VALUES (?, ?, ?, ?, ?)"#;

/// [`INSERT_ONE_POSTGRES`] for MySQL / MariaDB.
const INSERT_ONE_MYSQL: &str = "INSERT INTO `cache_purge_outbox` (`backend`, `targets`, `created_at`, `available_at`, `attempts`) VALUES (?, ?, ?, ?, ?)";

/// The enqueue `INSERT` of `rows` rows (≥ 1) in `db`'s dialect, five parameters a row
/// (backend, targets, created_at, available_at, attempts): the text is fixed for one row, the
/// common case of a save with one backend. A database without a text here is refused, as the
/// claim refuses it (`DbErr::BackendNotSupported`), rather than sent another dialect's text.
pub(crate) fn insert(
    db: sea_orm::DbBackend,
    rows: usize,
) -> Result<std::borrow::Cow<'static, str>, sea_orm::DbErr> {
    use sea_orm::DbBackend;
    use std::fmt::Write as _;
    let one = match db {
        DbBackend::Postgres => INSERT_ONE_POSTGRES,
        DbBackend::MySql => INSERT_ONE_MYSQL,
        DbBackend::Sqlite => INSERT_ONE_SQLITE,
        #[allow(unreachable_patterns)]
        other => {
            return Err(sea_orm::DbErr::BackendNotSupported {
                db: other.as_str(),
                ctx: "cache purge outbox enqueue",
            });
        }
    };
    if rows <= 1 {
        return Ok(one.into());
    }
    // The one-row text up to its `VALUES `, then one group of placeholders a row.
    let head = one
        .find(" VALUES ")
        .map_or(one, |at| &one[..at + " VALUES ".len()]);
    let mut sql = String::with_capacity(head.len() + rows * 32);
    sql.push_str(head);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        if db == DbBackend::Postgres {
            let n = row * 5;
            // Writing to a String cannot fail.
            let _ = write!(
                sql,
                "(${}, ${}, ${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5
            );
        } else {
            sql.push_str("(?, ?, ?, ?, ?)");
        }
    }
    Ok(sql.into())
}

#[cfg(test)]
mod tests {
    use sea_orm::DbBackend;

    use super::insert;

    #[test]
    fn the_insert_has_five_placeholders_a_row_in_each_dialect() {
        assert_eq!(
            insert(DbBackend::Postgres, 2).expect("a dialect with a text"),
            r#"INSERT INTO "cache_purge_outbox" ("backend", "targets", "created_at", "available_at", "attempts") VALUES ($1, $2, $3, $4, $5), ($6, $7, $8, $9, $10)"#
        );
        assert_eq!(
            insert(DbBackend::MySql, 3).expect("a dialect with a text"),
            "INSERT INTO `cache_purge_outbox` (`backend`, `targets`, `created_at`, `available_at`, `attempts`) VALUES (?, ?, ?, ?, ?), (?, ?, ?, ?, ?), (?, ?, ?, ?, ?)"
        );
        assert_eq!(
            insert(DbBackend::Sqlite, 1).expect("a dialect with a text"),
            r#"INSERT INTO "cache_purge_outbox" ("backend", "targets", "created_at", "available_at", "attempts") VALUES (?, ?, ?, ?, ?)"#
        );
    }
}
