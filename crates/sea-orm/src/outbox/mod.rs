//! The storage of the durable outbox delivery mode: purges written as rows of the
//! `cache_purge_outbox` table in the transaction of the save that caused them, claimed,
//! delivered and deleted by workers.
//!
//! - **Writing.** [`enqueue`] inserts one row per backend through the connection the save
//!   used, so the purge commits or rolls back with the entity's transaction.
//! - **Claiming.** [`claim`] leases a worker the oldest due rows of one backend. Several
//!   processes share one outbox: PostgreSQL and MySQL / MariaDB take rows with
//!   `FOR UPDATE SKIP LOCKED`, SQLite under its single write lock, so a row is in one
//!   worker's hands at a time. A worker that dies (even `SIGKILL`) leaves its rows claimable
//!   again when their lease runs out: delivery is at least once.
//! - **Settling.** [`complete`] deletes delivered rows; [`fail`] counts an attempt and sets a
//!   retry time, or dead-letters the rows; [`release`] gives rows back untouched (shutdown).
//!   State is per backend (one row per purge and backend), so a purge that reached Varnish
//!   but not nginx is retried for nginx only.
//! - **Delivering.** [`OutboxWorker`] does all of the above for every backend of a
//!   [`Purger`](cache_purge_hooks_engine::Purger) whose settings say `delivery = "outbox"`:
//!   the save hooks then write rows instead of sending, and the worker delivers them.
//! - **Dead letters and health.** [`dead`] lists dead rows, [`retry_dead`] revives them,
//!   [`delete_dead`] drops them; [`status`] counts rows per backend.
//!
//! Every time is in unix milliseconds and passed in ([`now_ms`] gives the current one), so
//! that tests control time. Errors are SeaORM's [`DbErr`](sea_orm::DbErr).
//!
//! # The table
//!
//! Add [`Migration`] to your sea-orm-migration `Migrator`, or call [`create_table`], or run
//! the SQL of `docs/outbox.sql` (PostgreSQL, MySQL / MariaDB, SQLite):
//!
//! | column | type | |
//! |---|---|---|
//! | `id` | big integer, auto-increment, primary key | |
//! | `backend` | varchar(255) not null | the backend's name |
//! | `targets` | text not null (`mediumtext` on MySQL) | stored targets, one per line |
//! | `created_at` | big integer not null | when written |
//! | `available_at` | big integer not null | not claimable before (retry backoff) |
//! | `locked_until` | big integer null | lease end |
//! | `locked_by` | varchar(255) null | the worker holding the lease |
//! | `attempts` | integer not null default 0 | failed deliveries |
//! | `last_error` | text null | the last failure |
//! | `dead_at` | big integer null | when dead-lettered |
//!
//! with the index `idx_cache_purge_outbox_claim` on `(backend, dead_at, available_at, id)`,
//! which [`claim`] reads in order.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use cache_purge_hooks_engine::Target;
//! use cache_purge_hooks_sea_orm::outbox;
//! use sea_orm::{Database, TransactionTrait};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sea_orm::DbErr> {
//! let db = Database::connect("sqlite::memory:").await?;
//! outbox::create_table(&db).await?;
//!
//! // In the save's transaction: the purge is stored only if the transaction commits.
//! let txn = db.begin().await?;
//! let targets = [Target::url("/posts/hello").unwrap(), Target::url("/").unwrap()];
//! outbox::enqueue(&txn, &["varnish", "nginx"], &targets, outbox::now_ms()).await?;
//! txn.commit().await?;
//!
//! // A worker of the `varnish` backend.
//! let worker = "web-1:4242";
//! let rows = outbox::claim(&db, "varnish", worker, 100, Duration::from_secs(30), outbox::now_ms()).await?;
//! assert_eq!(rows.len(), 1);
//! assert_eq!(rows[0].targets, targets);
//! // ... deliver rows[0].targets to Varnish, then:
//! let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
//! outbox::complete(&db, worker, &ids).await?;
//!
//! // The nginx row is still waiting.
//! let status = outbox::status(&db, outbox::now_ms()).await?;
//! assert_eq!((status[0].backend.as_str(), status[0].pending), ("nginx", 1));
//! # Ok(())
//! # }
//! ```
//!
//! # Leases and settling
//!
//! [`complete`], [`fail`] and [`release`] act only on rows still held by the worker that
//! calls them (`locked_by`), and return how many they settled. A worker whose lease ran out
//! while another worker claimed the row again therefore settles nothing: the second worker's
//! delivery (a duplicate purge, harmless) settles the row. Choose a lease well above the
//! longest delivery, and worker ids unique across processes (host and process id, say).

pub mod entity;
mod migration;
mod sql;
mod store;
mod worker;

#[cfg(feature = "migration")]
pub use migration::Migration;
pub use migration::{create_table, drop_table};
pub use store::{
    BackendOutboxStatus, DeadRows, MAX_ERROR_CHARS, MAX_TARGET_BYTES_PER_ROW, OutboxRow, claim,
    complete, dead, delete_dead, enqueue, enqueue_due, fail, now_ms, release, retry_dead, status,
};

pub use worker::{OutboxWorker, OutboxWorkerBuilder, OutboxWorkerStats, table_exists};

/// The sea-orm-migration crate [`Migration`] is written for (its `MigrationTrait`), for
/// running it without a direct dependency of your own.
#[cfg(feature = "migration")]
pub use sea_orm_migration;
