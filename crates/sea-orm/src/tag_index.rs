//! The tag→URL index in the application's own database: [`SqlTagIndex`], a
//! [`TagIndex`] for nginx backends with `tags = "index"`, on SQLite, PostgreSQL and MySQL /
//! MariaDB.
//!
//! # The table
//!
//! Add [`Migration`] to your sea-orm-migration `Migrator` (feature `migration`), or call
//! [`create_table`]:
//!
//! | column | type | |
//! |---|---|---|
//! | `tag` | varchar(1024) not null (`ascii_bin` on MySQL) | the tag |
//! | `url` | varchar(2000) not null (`ascii_bin` on MySQL) | a URL whose cached response carries it |
//! | `expires_at` | big integer not null | when that response leaves the cache, Unix milliseconds |
//!
//! with the primary key `(tag, url)` and the index `idx_cache_purge_tag_index_expires` on
//! `expires_at`. Tags and URLs are ASCII (the engine normalises them), compared byte for byte.
//! A URL longer than 2000 characters cannot be recorded (`record` fails, and the caller keeps
//! that response out of the cache).
//!
//! # What it does
//!
//! - [`record`](TagIndex::record): per tag, deletes its expired rows, then inserts the URL
//!   or, for a URL already there, keeps the later expiry (an upsert); a tag holding
//!   `max_urls_per_tag` live URLs takes no new one ([`TagIndexErrorKind::Full`], see
//!   [`cache_purge_hooks_engine::tag_index`]). Every 1024 records, the expired rows of all
//!   tags are deleted too ([`SqlTagIndex::prune_expired`]).
//! - [`urls`](TagIndex::urls) and [`urls_of_each`](TagIndex::urls_of_each): delete the tags' expired rows
//!   and select the others, 500 tags per statement.
//! - [`forget`](TagIndex::forget): deletes the rows.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use cache_purge_hooks_engine::{PurgeUrl, Purger, Tag, TagIndex};
//! use cache_purge_hooks_sea_orm::tag_index::{self, SqlTagIndex};
//!
//! let db = sea_orm::Database::connect("sqlite::memory:").await?;
//! tag_index::create_table(&db).await?;
//! let index = Arc::new(SqlTagIndex::new(db.clone()));
//!
//! // The response side records what it served...
//! let tags = [Tag::parse("post:1")?, Tag::parse("posts")?];
//! index.record(&PurgeUrl::parse("/?page=7")?, &tags, Duration::from_secs(600)).await?;
//! assert_eq!(index.urls(&tags[..1]).await?.len(), 1);
//!
//! // ... and the purger's `tags = "index"` nginx backends look it up.
//! let purger = Purger::builder().tag_index(index).build()?;
//! # purger.shutdown(Duration::from_secs(1)).await?;
//! # Ok(())
//! # }
//! ```

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_purge_hooks_engine::tag_index::{
    DEFAULT_MAX_URLS_PER_TAG, TagIndex, TagIndexError, TagIndexErrorKind,
};
use cache_purge_hooks_engine::{PurgeUrl, Tag};
use sea_orm::sea_query::{Alias, ColumnDef, Index, IndexCreateStatement, Table};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};
#[cfg(feature = "migration")]
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

/// The table's name.
pub const TABLE: &str = "cache_purge_tag_index";
/// The name of the index on `expires_at`.
pub const EXPIRES_INDEX: &str = "idx_cache_purge_tag_index_expires";
/// The longest URL the table holds.
pub const MAX_URL_CHARS: usize = 2000;

/// URLs per `DELETE ... IN (...)` of [`TagIndex::forget`].
const FORGET_CHUNK: usize = 500;
/// Records between two prunes of every tag's expired rows.
const PRUNE_EVERY: u64 = 1024;

/// A [`TagIndex`] in a table of the application's database (see the
/// [module documentation](self)). Cheap to clone (the connection is a pool).
#[derive(Clone, Debug)]
pub struct SqlTagIndex {
    db: DatabaseConnection,
    max_urls_per_tag: usize,
    records: std::sync::Arc<AtomicU64>,
}

impl SqlTagIndex {
    /// An index in the `cache_purge_tag_index` table of this database ([`create_table`]
    /// makes it), with the default cap ([`DEFAULT_MAX_URLS_PER_TAG`]).
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            max_urls_per_tag: DEFAULT_MAX_URLS_PER_TAG,
            records: std::sync::Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sets the cap on the live URLs of one tag (at least 1).
    pub fn with_max_urls_per_tag(mut self, max: usize) -> Self {
        self.max_urls_per_tag = max.max(1);
        self
    }

    /// Deletes the expired rows of every tag; returns how many. [`record`](TagIndex::record)
    /// calls it every 1024 records; call it from a periodic job if you prefer.
    pub async fn prune_expired(&self) -> Result<u64, TagIndexError> {
        let sql = format!(
            "DELETE FROM {} WHERE {} <= ?",
            self.table(),
            q(self, "expires_at")
        );
        let result = self
            .db
            .execute_raw(self.statement(&sql, vec![now().into()]))
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected())
    }

    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    fn table(&self) -> String {
        q(self, TABLE)
    }

    /// A statement from SQL with `?` placeholders (numbered `$n` for PostgreSQL).
    fn statement(&self, sql: &str, values: Vec<Value>) -> Statement {
        let backend = self.backend();
        let sql = if backend == DbBackend::Postgres {
            let mut out = String::with_capacity(sql.len() + 8);
            let mut n = 0;
            for c in sql.chars() {
                if c == '?' {
                    n += 1;
                    out.push_str(&format!("${n}"));
                } else {
                    out.push(c);
                }
            }
            out
        } else {
            sql.to_owned()
        };
        Statement::from_sql_and_values(backend, sql, values)
    }

    /// The upsert that keeps the later expiry.
    fn upsert_sql(&self) -> String {
        let (t, tag, url, exp) = (
            self.table(),
            q(self, "tag"),
            q(self, "url"),
            q(self, "expires_at"),
        );
        match self.backend() {
            DbBackend::MySql => format!(
                "INSERT INTO {t} ({tag}, {url}, {exp}) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE {exp} = GREATEST({exp}, VALUES({exp}))"
            ),
            DbBackend::Postgres => format!(
                "INSERT INTO {t} ({tag}, {url}, {exp}) VALUES (?, ?, ?) \
                 ON CONFLICT ({tag}, {url}) DO UPDATE SET {exp} = GREATEST({t}.{exp}, EXCLUDED.{exp})"
            ),
            _ => format!(
                "INSERT INTO {t} ({tag}, {url}, {exp}) VALUES (?, ?, ?) \
                 ON CONFLICT ({tag}, {url}) DO UPDATE SET {exp} = MAX({exp}, excluded.{exp})"
            ),
        }
    }

    /// Records `url` for one tag; `false` when the tag is full.
    async fn record_one(
        &self,
        tag: &Tag,
        url: &PurgeUrl,
        now: i64,
        expiry: i64,
    ) -> Result<bool, TagIndexError> {
        let (t, tag_c, url_c, exp) = (
            self.table(),
            q(self, "tag"),
            q(self, "url"),
            q(self, "expires_at"),
        );
        self.db
            .execute_raw(self.statement(
                &format!("DELETE FROM {t} WHERE {tag_c} = ? AND {exp} <= ?"),
                vec![tag.as_str().into(), now.into()],
            ))
            .await
            .map_err(db_error)?;
        let row = self
            .db
            .query_one_raw(self.statement(
                &format!(
                    "SELECT COUNT(*) AS n, COUNT(CASE WHEN {url_c} = ? THEN 1 END) AS known \
                     FROM {t} WHERE {tag_c} = ?"
                ),
                vec![url.as_str().into(), tag.as_str().into()],
            ))
            .await
            .map_err(db_error)?;
        let (held, known) = match row {
            Some(row) => (
                row.try_get::<i64>("", "n").map_err(db_error)?,
                row.try_get::<i64>("", "known").map_err(db_error)?,
            ),
            None => (0, 0),
        };
        if known == 0 && usize::try_from(held).unwrap_or(usize::MAX) >= self.max_urls_per_tag {
            return Ok(false);
        }
        self.db
            .execute_raw(self.statement(
                &self.upsert_sql(),
                vec![tag.as_str().into(), url.as_str().into(), expiry.into()],
            ))
            .await
            .map_err(db_error)?;
        Ok(true)
    }
}

/// A quoted identifier for this database.
fn q(index: &SqlTagIndex, name: &str) -> String {
    match index.backend() {
        DbBackend::MySql => format!("`{name}`"),
        _ => format!("\"{name}\""),
    }
}

fn now() -> i64 {
    cache_purge_hooks_engine::outbox::now_ms()
}

/// `?, ?, ?` for `n` values.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn db_error(e: DbErr) -> TagIndexError {
    let kind = match &e {
        DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout) => TagIndexErrorKind::Timeout,
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => TagIndexErrorKind::Unreachable,
        _ => TagIndexErrorKind::Storage,
    };
    TagIndexError::new(kind, format!("{TABLE}: {e}")).with_source(e)
}

#[async_trait::async_trait]
impl TagIndex for SqlTagIndex {
    async fn record(
        &self,
        url: &PurgeUrl,
        tags: &[Tag],
        expires_in: Duration,
    ) -> Result<(), TagIndexError> {
        if expires_in.is_zero() || tags.is_empty() {
            return Ok(());
        }
        if url.as_str().len() > MAX_URL_CHARS {
            return Err(TagIndexError::new(
                TagIndexErrorKind::Storage,
                format!("{url}: longer than the {MAX_URL_CHARS} characters {TABLE} holds"),
            ));
        }
        if self.records.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune_expired().await?;
        }
        let now = now();
        let expiry = now.saturating_add(i64::try_from(expires_in.as_millis()).unwrap_or(i64::MAX));
        let mut full = None;
        for tag in tags {
            if !self.record_one(tag, url, now, expiry).await? {
                cache_purge_hooks_engine::tag_index::warn_full(tag, url, self.max_urls_per_tag);
                full.get_or_insert_with(|| tag.clone());
            }
        }
        match full {
            None => Ok(()),
            Some(tag) => Err(TagIndexError::full(&tag, self.max_urls_per_tag, url)),
        }
    }

    async fn urls(&self, tags: &[Tag]) -> Result<Vec<PurgeUrl>, TagIndexError> {
        let mut seen = HashSet::new();
        Ok(self
            .urls_of_each(tags)
            .await?
            .into_iter()
            .flatten()
            .filter(|url| seen.insert(url.clone()))
            .collect())
    }

    /// One `DELETE` of the tags' expired rows and one `SELECT` of the others, for every tag.
    async fn urls_of_each(&self, tags: &[Tag]) -> Result<Vec<Vec<PurgeUrl>>, TagIndexError> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let mut out: Vec<Vec<PurgeUrl>> = vec![Vec::new(); tags.len()];
        let (t, tag_c, url_c, exp) = (
            self.table(),
            q(self, "tag"),
            q(self, "url"),
            q(self, "expires_at"),
        );
        // Chunked like `forget`, so that no statement holds more parameters than a database
        // takes (SQLite's default limit is 32,766).
        for (chunk_no, chunk) in tags.chunks(FORGET_CHUNK).enumerate() {
            let now = now();
            let mut values: Vec<Value> = chunk.iter().map(|t| t.as_str().into()).collect();
            values.push(now.into());
            let in_tags = placeholders(chunk.len());
            self.db
                .execute_raw(self.statement(
                    &format!("DELETE FROM {t} WHERE {tag_c} IN ({in_tags}) AND {exp} <= ?"),
                    values.clone(),
                ))
                .await
                .map_err(db_error)?;
            let rows = self
                .db
                .query_all_raw(self.statement(
                    &format!(
                        "SELECT {tag_c} AS tag, {url_c} AS url FROM {t} WHERE {tag_c} IN ({in_tags}) AND {exp} > ?"
                    ),
                    values,
                ))
                .await
                .map_err(db_error)?;
            let position: std::collections::HashMap<&str, usize> = chunk
                .iter()
                .enumerate()
                .map(|(i, tag)| (tag.as_str(), chunk_no * FORGET_CHUNK + i))
                .collect();
            for row in rows {
                let tag: String = row.try_get("", "tag").map_err(db_error)?;
                let text: String = row.try_get("", "url").map_err(db_error)?;
                let Some(&i) = position.get(tag.as_str()) else {
                    continue;
                };
                match PurgeUrl::parse(&text) {
                    Ok(url) => out[i].push(url),
                    Err(e) => tracing::warn!(
                        target: "cache_purge_hooks",
                        %e,
                        "tag index: a row's url is not a URL (written by something else?); skipped"
                    ),
                }
            }
        }
        Ok(out)
    }

    async fn forget(&self, tag: &Tag, urls: &[PurgeUrl]) -> Result<(), TagIndexError> {
        let (t, tag_c, url_c) = (self.table(), q(self, "tag"), q(self, "url"));
        for chunk in urls.chunks(FORGET_CHUNK) {
            let mut values: Vec<Value> = vec![tag.as_str().into()];
            values.extend(chunk.iter().map(|u| Value::from(u.as_str())));
            self.db
                .execute_raw(self.statement(
                    &format!(
                        "DELETE FROM {t} WHERE {tag_c} = ? AND {url_c} IN ({})",
                        placeholders(chunk.len())
                    ),
                    values,
                ))
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }
}

// ----- the schema ---------------------------------------------------------------------------

/// Creates the `cache_purge_tag_index` table: add it to your `Migrator` (feature
/// `migration`, on by default), after your own migrations.
///
/// Its name is `m20261201_000100_cache_purge_tag_index`. `up` creates the table only if it
/// does not exist yet; `down` drops it (the next responses fill it again).
#[cfg(feature = "migration")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Migration;

#[cfg(feature = "migration")]
impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000100_cache_purge_tag_index"
    }
}

#[cfg(feature = "migration")]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_table(manager.get_connection()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_table(manager.get_connection()).await
    }
}

/// Creates the `cache_purge_tag_index` table and its index unless they exist: what
/// [`Migration`] runs, for applications without sea-orm-migration (and tests).
pub async fn create_table<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    for stmt in create_statements(conn.get_database_backend()) {
        conn.execute_raw(stmt).await.map_err(|e| {
            DbErr::Migration(format!("creating the cache purge tag index table: {e}"))
        })?;
    }
    Ok(())
}

/// Drops the `cache_purge_tag_index` table if it exists.
pub async fn drop_table<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    conn.execute(
        &Table::drop()
            .table(Alias::new(TABLE))
            .if_exists()
            .to_owned(),
    )
    .await
    .map(drop)
}

fn expires_index() -> IndexCreateStatement {
    Index::create()
        .name(EXPIRES_INDEX)
        .table(Alias::new(TABLE))
        .col(Alias::new("expires_at"))
        .to_owned()
}

/// The DDL for one database (on MySQL the index is part of the table, MySQL having no
/// `CREATE INDEX IF NOT EXISTS`).
fn create_statements(backend: DbBackend) -> Vec<Statement> {
    let mut tag = ColumnDef::new(Alias::new("tag"));
    let mut url = ColumnDef::new(Alias::new("url"));
    if backend == DbBackend::MySql {
        // One byte per character, compared byte for byte (URLs are case-sensitive), and the
        // primary key (1024 + 2000 bytes) within InnoDB's 3072.
        tag.custom(Alias::new(
            "varchar(1024) CHARACTER SET ascii COLLATE ascii_bin",
        ));
        url.custom(Alias::new(format!(
            "varchar({MAX_URL_CHARS}) CHARACTER SET ascii COLLATE ascii_bin"
        )));
    } else {
        tag.string_len(1024);
        url.string_len(MAX_URL_CHARS as u32);
    }
    let mut table = Table::create();
    table
        .table(Alias::new(TABLE))
        .if_not_exists()
        .col(tag.not_null())
        .col(url.not_null())
        .col(
            ColumnDef::new(Alias::new("expires_at"))
                .big_integer()
                .not_null(),
        )
        .primary_key(
            Index::create()
                .col(Alias::new("tag"))
                .col(Alias::new("url")),
        );
    if backend == DbBackend::MySql {
        table.index(&mut expires_index());
        vec![backend.build(&table)]
    } else {
        vec![
            backend.build(&table),
            backend.build(&expires_index().if_not_exists().to_owned()),
        ]
    }
}
