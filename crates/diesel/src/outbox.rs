//! The durable outbox (`delivery = "outbox"`), written through Diesel.
//!
//! With an outbox purger installed, every purging write inserts its purge into the table
//! `cache_purge_outbox` **in the write's own transaction**: the purge exists if and only if
//! the change committed, and survives a crash between the COMMIT and the delivery. The table
//! and its row format are the ones of the SeaORM integration, so the SeaORM crate's
//! `OutboxWorker` (or the `cache-purge` command) delivers rows written by Diesel code, and
//! apps using both ORMs share one outbox:
//!
//! - one row per backend (a large purge takes several rows per backend, at most
//!   [`MAX_TARGET_BYTES_PER_ROW`] of targets each);
//! - `targets`: the targets in their stored form, which is `Target`'s `Display` (`url /a?b=1`,
//!   `prefix /blog/`, `tag x`, `everything`), one per line, each once;
//! - `created_at` and `available_at`: the time of the write in unix milliseconds; `attempts`
//!   0; the lease and error columns `NULL`.
//!
//! Create the table with your migrations from `docs/outbox.sql` (the section of your
//! database), or call [`create_table`] (the same SQL).
//!
//! ```
//! # #[cfg(feature = "sqlite")]
//! # fn main() -> diesel::QueryResult<()> {
//! use cache_purge_hooks_engine::Target;
//! use cache_purge_hooks_diesel::outbox::{self, cache_purge_outbox};
//! use diesel::prelude::*;
//!
//! let conn = &mut SqliteConnection::establish(":memory:").unwrap();
//! outbox::create_table(conn)?;
//!
//! let targets = [Target::url("/posts/hello").unwrap(), Target::url("/").unwrap()];
//! conn.transaction(|conn| outbox::enqueue(conn, &["varnish"], &targets, outbox::now_ms()))?;
//!
//! let stored: String = cache_purge_outbox::table
//!     .select(cache_purge_outbox::targets)
//!     .first(conn)?;
//! assert_eq!(stored, "url /posts/hello\nurl /");
//! # Ok(()) }
//! # #[cfg(not(feature = "sqlite"))] fn main() {}
//! ```

use cache_purge_hooks_engine::Target;

/// The row format shared with the SeaORM integration ([`cache_purge_hooks_engine::outbox`]): the
/// most target text one row holds, the time unit, and the targets' stored text.
pub use cache_purge_hooks_engine::outbox::{MAX_TARGET_BYTES_PER_ROW, now_ms, stored_targets};

diesel::table! {
    /// The outbox table: see `docs/outbox.sql` and the SeaORM integration's
    /// `outbox` module for what each column means.
    cache_purge_outbox (id) {
        /// Auto-increment id.
        id -> BigInt,
        /// The backend's name.
        backend -> Text,
        /// The stored targets, one per line.
        targets -> Text,
        /// When the row was written (unix milliseconds).
        created_at -> BigInt,
        /// Not claimable before this time.
        available_at -> BigInt,
        /// The end of the lease of the worker delivering the row.
        locked_until -> Nullable<BigInt>,
        /// The worker holding the lease.
        locked_by -> Nullable<Text>,
        /// Failed deliveries so far.
        attempts -> Integer,
        /// The error of the last failed delivery.
        last_error -> Nullable<Text>,
        /// When the row was given up on.
        dead_at -> Nullable<BigInt>,
    }
}

/// One row to insert: backend, targets, created_at, available_at, attempts.
#[doc(hidden)]
pub type NewRow = (
    diesel::dsl::Eq<cache_purge_outbox::backend, String>,
    diesel::dsl::Eq<cache_purge_outbox::targets, String>,
    diesel::dsl::Eq<cache_purge_outbox::created_at, i64>,
    diesel::dsl::Eq<cache_purge_outbox::available_at, i64>,
    diesel::dsl::Eq<cache_purge_outbox::attempts, i32>,
);

fn new_rows<B: AsRef<str>>(
    backends: &[B],
    chunks: &[String],
    now_ms: i64,
    available_at_ms: i64,
) -> Vec<NewRow> {
    use cache_purge_outbox as o;
    use diesel::ExpressionMethods;
    backends
        .iter()
        .flat_map(|b| {
            chunks.iter().map(move |c| {
                (
                    o::backend.eq(b.as_ref().to_owned()),
                    o::targets.eq(c.clone()),
                    o::created_at.eq(now_ms),
                    o::available_at.eq(available_at_ms),
                    o::attempts.eq(0),
                )
            })
        })
        .collect()
}

/// Writes a purge to the outbox through `conn`: one row per backend holding every target
/// (several for a purge past [`MAX_TARGET_BYTES_PER_ROW`]), one `INSERT` per row. Call it inside the transaction of
/// the change, so that the purge commits or rolls back with it; the purging writes do.
///
/// Does nothing when `backends` or `targets` is empty. Fails when the table is missing.
pub fn enqueue<C, B>(
    conn: &mut C,
    backends: &[B],
    targets: &[Target],
    now_ms: i64,
) -> diesel::QueryResult<()>
where
    C: diesel::Connection,
    B: AsRef<str>,
    diesel::dsl::Values<diesel::dsl::insert_into<cache_purge_outbox::table>, NewRow>:
        diesel::query_dsl::methods::ExecuteDsl<C>,
{
    enqueue_due(conn, backends, targets, now_ms, now_ms)
}

/// [`enqueue`] with rows not due before `available_at_ms` (a delayed second purge).
pub fn enqueue_due<C, B>(
    conn: &mut C,
    backends: &[B],
    targets: &[Target],
    now_ms: i64,
    available_at_ms: i64,
) -> diesel::QueryResult<()>
where
    C: diesel::Connection,
    B: AsRef<str>,
    diesel::dsl::Values<diesel::dsl::insert_into<cache_purge_outbox::table>, NewRow>:
        diesel::query_dsl::methods::ExecuteDsl<C>,
{
    if backends.is_empty() || targets.is_empty() {
        return Ok(());
    }
    let chunks = stored_targets(targets);
    let rows = new_rows(backends, &chunks, now_ms, available_at_ms);
    // One row per statement: a purge is one row per backend (more only past
    // MAX_TARGET_BYTES_PER_ROW), and every backend can insert single rows (async SQLite cannot
    // batch).
    for row in rows {
        let insert = diesel::insert_into(cache_purge_outbox::table).values(row);
        diesel::RunQueryDsl::execute(insert, conn)?;
    }
    Ok(())
}

/// [`enqueue`] on a diesel-async connection.
#[cfg(feature = "async")]
pub async fn async_enqueue<C, B>(
    conn: &mut C,
    backends: &[B],
    targets: &[Target],
    now_ms: i64,
) -> diesel::QueryResult<()>
where
    C: diesel_async::AsyncConnection,
    B: AsRef<str> + Sync,
    diesel::dsl::Values<diesel::dsl::insert_into<cache_purge_outbox::table>, NewRow>:
        diesel_async::methods::ExecuteDsl<C>,
{
    async_enqueue_due(conn, backends, targets, now_ms, now_ms).await
}

/// [`async_enqueue`] with rows not due before `available_at_ms` (a delayed second purge).
#[cfg(feature = "async")]
pub async fn async_enqueue_due<C, B>(
    conn: &mut C,
    backends: &[B],
    targets: &[Target],
    now_ms: i64,
    available_at_ms: i64,
) -> diesel::QueryResult<()>
where
    C: diesel_async::AsyncConnection,
    B: AsRef<str> + Sync,
    diesel::dsl::Values<diesel::dsl::insert_into<cache_purge_outbox::table>, NewRow>:
        diesel_async::methods::ExecuteDsl<C>,
{
    if backends.is_empty() || targets.is_empty() {
        return Ok(());
    }
    let chunks = stored_targets(targets);
    let rows = new_rows(backends, &chunks, now_ms, available_at_ms);
    for row in rows {
        let insert = diesel::insert_into(cache_purge_outbox::table).values(row);
        diesel_async::RunQueryDsl::execute(insert, conn).await?;
    }
    Ok(())
}

/// The `CREATE TABLE` (and `CREATE INDEX`) statements of `docs/outbox.sql` for one database.
pub fn create_statements(backend: OutboxDatabase) -> &'static [&'static str] {
    match backend {
        OutboxDatabase::Postgres => &[POSTGRES_TABLE, INDEX, POSTGRES_FILLFACTOR],
        OutboxDatabase::Mysql => &[MYSQL_TABLE],
        OutboxDatabase::Sqlite => &[SQLITE_TABLE, INDEX],
    }
}

/// The databases of [`create_statements`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutboxDatabase {
    /// PostgreSQL.
    Postgres,
    /// MySQL ≥ 8.0, MariaDB ≥ 10.6.
    Mysql,
    /// SQLite ≥ 3.35.
    Sqlite,
}

/// The [`OutboxDatabase`] of a Diesel backend.
pub trait OutboxBackend: crate::PurgeBackend {
    /// Which `docs/outbox.sql` section applies.
    const DATABASE: OutboxDatabase;
}

#[cfg(feature = "postgres")]
impl OutboxBackend for diesel::pg::Pg {
    const DATABASE: OutboxDatabase = OutboxDatabase::Postgres;
}

#[cfg(feature = "mysql")]
impl OutboxBackend for diesel::mysql::Mysql {
    const DATABASE: OutboxDatabase = OutboxDatabase::Mysql;
}

#[cfg(feature = "sqlite")]
impl OutboxBackend for diesel::sqlite::Sqlite {
    const DATABASE: OutboxDatabase = OutboxDatabase::Sqlite;
}

/// Creates the `cache_purge_outbox` table and its index unless they exist, with the SQL of
/// `docs/outbox.sql`: for apps and tests without their own migration of it.
pub fn create_table<C>(conn: &mut C) -> diesel::QueryResult<()>
where
    C: diesel::Connection,
    C::Backend: OutboxBackend,
{
    for sql in create_statements(<C::Backend as OutboxBackend>::DATABASE) {
        conn.batch_execute(sql)?;
    }
    Ok(())
}

/// [`create_table`] on a diesel-async connection.
#[cfg(feature = "async")]
pub async fn async_create_table<C>(conn: &mut C) -> diesel::QueryResult<()>
where
    C: diesel_async::AsyncConnection,
    C::Backend: OutboxBackend,
{
    for sql in create_statements(<C::Backend as OutboxBackend>::DATABASE) {
        conn.batch_execute(sql).await?;
    }
    Ok(())
}

const POSTGRES_TABLE: &str = "CREATE TABLE IF NOT EXISTS cache_purge_outbox (
    id           bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL PRIMARY KEY,
    backend      varchar(255) NOT NULL,
    targets      text NOT NULL,
    created_at   bigint NOT NULL,
    available_at bigint NOT NULL,
    locked_until bigint NULL,
    locked_by    varchar(255) NULL,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text NULL,
    dead_at      bigint NULL
)";

const MYSQL_TABLE: &str = "CREATE TABLE IF NOT EXISTS cache_purge_outbox (
    id           bigint NOT NULL PRIMARY KEY AUTO_INCREMENT,
    backend      varchar(255) NOT NULL,
    targets      mediumtext NOT NULL,
    created_at   bigint NOT NULL,
    available_at bigint NOT NULL,
    locked_until bigint NULL,
    locked_by    varchar(255) NULL,
    attempts     int NOT NULL DEFAULT 0,
    last_error   text NULL,
    dead_at      bigint NULL,
    KEY idx_cache_purge_outbox_claim (backend, dead_at, available_at, id)
)";

const SQLITE_TABLE: &str = "CREATE TABLE IF NOT EXISTS cache_purge_outbox (
    id           integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    backend      varchar(255) NOT NULL,
    targets      text NOT NULL,
    created_at   integer NOT NULL,
    available_at integer NOT NULL,
    locked_until integer NULL,
    locked_by    varchar(255) NULL,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text NULL,
    dead_at      integer NULL
)";

/// Room on each heap page for the claim's new row version, so that it is a HOT update (no
/// new index entries): see `docs/outbox.sql`. Its own statement, so that an existing table
/// gets it too.
const POSTGRES_FILLFACTOR: &str = "ALTER TABLE cache_purge_outbox SET (fillfactor = 30);";

const INDEX: &str = "CREATE INDEX IF NOT EXISTS idx_cache_purge_outbox_claim
    ON cache_purge_outbox (backend, dead_at, available_at, id)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_targets_are_display_forms_one_per_line_each_once() {
        let t = |u: &str| Target::url(u).unwrap();
        let targets = [t("/a"), t("/b?x=1"), t("/a"), Target::tag("blog").unwrap()];
        assert_eq!(stored_targets(&targets), ["url /a\nurl /b?x=1\ntag blog"]);
        // And `Target` parses every line back.
        for line in stored_targets(&targets)[0].lines() {
            let parsed: Target = line.parse().unwrap();
            assert!(targets.contains(&parsed));
        }
    }

    #[test]
    fn the_ddl_is_the_one_of_docs_outbox_sql() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/outbox.sql"
        ))
        .unwrap();
        let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let doc = squash(&doc);
        for sql in [
            POSTGRES_TABLE,
            MYSQL_TABLE,
            SQLITE_TABLE,
            INDEX,
            POSTGRES_FILLFACTOR,
        ] {
            assert!(doc.contains(&squash(sql)), "not in docs/outbox.sql: {sql}");
        }
    }
}
