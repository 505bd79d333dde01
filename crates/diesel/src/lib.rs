//! Diesel integration of [cache-purge-hooks](https://docs.rs/cache-purge-hooks): writes that
//! purge the cached URLs of every row they affect.
//!
//! Diesel has no save hooks; a purging write is a Diesel write run with
//! `execute_and_purge::<Model>` (or `get_results_and_purge::<Model>`) instead of `execute`
//! (`get_results`). `Model` is your `Queryable + Selectable` struct with
//! `#[derive(CachePurge)]`: each affected row is read into it, from the write itself with
//! `RETURNING` (PostgreSQL, SQLite ≥ 3.35) or with `SELECT`s in the write's transaction
//! (MySQL, MariaDB), and its URLs are purged.
//!
//! - **Inserts** are Diesel's own statements: `diesel::insert_into(posts).values(..)`.
//! - **Updates and deletes** start from [`update`] and [`delete`], which take what
//!   `diesel::update` and `diesel::delete` take. Diesel keeps the `WHERE` clause of its
//!   statements private; these builders keep the target so that the rows can be read before
//!   the write: the old URLs of an update that changes a URL field, and on MySQL every row.
//! - **Transactions**: [`transaction`] (and `async_transaction`) hold every purge back until
//!   the COMMIT, and drop them on rollback.
//! - **The outbox**: with `delivery = "outbox"`, the purge is an [`outbox`] row written in the
//!   write's transaction, in the table and format of the SeaORM integration, whose
//!   `OutboxWorker` delivers it.
//! - **diesel-async** (feature `async`): the same methods through `AsyncPurgeDsl`, and
//!   `async_transaction`.
//!
//! ```
//! # mod cache_purge_hooks { pub use cache_purge_hooks_engine::*; pub use cache_purge_hooks_macros::CachePurge; pub use cache_purge_hooks_diesel as diesel; }
//! # #[cfg(feature = "sqlite")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cache_purge_hooks::CachePurge;
//! use cache_purge_hooks_engine::{backend::MemoryBackend, Purger};
//! use cache_purge_hooks_diesel::{self as purge, PurgeDsl};
//! use diesel::prelude::*;
//!
//! diesel::table! {
//!     posts (id) {
//!         id -> Integer,
//!         slug -> Text,
//!         title -> Text,
//!     }
//! }
//!
//! #[derive(Queryable, Selectable, Insertable, CachePurge)]
//! #[diesel(table_name = posts)]
//! #[cache_purge(url = "/posts/{slug}", url = "/")]
//! struct Post {
//!     id: i32,
//!     slug: String,
//!     title: String,
//! }
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! # let _guard = rt.enter();
//! // At start-up: `cache_purge_hooks::init()?` reads the settings and installs the purger;
//! // here, a memory backend to see what is purged.
//! let memory = MemoryBackend::new();
//! let purger = Purger::builder().backend("memory", memory.clone()).build()?;
//! purger.install();
//!
//! let conn = &mut SqliteConnection::establish(":memory:")?;
//! # diesel::sql_query("CREATE TABLE posts (id INTEGER PRIMARY KEY, slug TEXT NOT NULL, title TEXT NOT NULL)").execute(conn)?;
//! diesel::insert_into(posts::table)
//!     .values(Post { id: 1, slug: "hello-world".into(), title: "Hello".into() })
//!     .execute_and_purge::<Post>(conn)?; // purges /posts/hello-world and /
//!
//! purge::update(posts::table.find(1))
//!     .set(posts::slug.eq("hello-rust"))
//!     .execute_and_purge::<Post>(conn)?; // old and new: /posts/hello-world, /posts/hello-rust, /
//!
//! purge::delete(posts::table.filter(posts::title.eq("Hello")))
//!     .execute_and_purge::<Post>(conn)?; // every deleted row: /posts/hello-rust, /
//!
//! # rt.block_on(purger.flush());
//! # let mut urls = memory.urls(); urls.sort(); urls.dedup();
//! # assert_eq!(urls, ["/", "/posts/hello-rust", "/posts/hello-world"]);
//! # Purger::uninstall();
//! # Ok(()) }
//! # #[cfg(not(feature = "sqlite"))] fn main() {}
//! ```
//!
//! # What each write reads and purges
//!
//! | write | PostgreSQL, SQLite | MySQL, MariaDB |
//! |---|---|---|
//! | `insert_into(..).values(..)` | `INSERT ... RETURNING`: each new row | `INSERT`, then the rows from `LAST_INSERT_ID()` on |
//! | [`update`] writing no URL field | `UPDATE ... RETURNING`: each row | `SELECT ... FOR UPDATE`, `UPDATE` |
//! | [`update`] writing a URL field | `SELECT` (`FOR UPDATE` on PostgreSQL) of the old rows, `UPDATE ... RETURNING`: old and new URLs | `SELECT ... FOR UPDATE`, `UPDATE`, `SELECT` by primary key: old and new URLs |
//! | [`delete`] | `DELETE ... RETURNING`: each deleted row | `SELECT ... FOR UPDATE`, `DELETE` |
//!
//! Every call runs in a transaction of its own (a savepoint inside yours), so the write and
//! its reads see the same rows, and a failure leaves nothing half done. Whether an update
//! writes a URL field is decided from `PurgeTargets::URL_FIELDS` and the `SET` clause; when in
//! doubt (a resolver without `fields(...)`, a field renamed with
//! `#[diesel(column_name = ...)]`) the old rows are read.
//!
//! # Failures
//!
//! A purge never fails the write: delivery happens afterwards, on the purger's workers (with
//! retries) or the outbox worker; a failed outbox `INSERT` (missing table) is logged and the
//! purge sent directly. A database error of the write itself is returned as usual and purges
//! nothing. Usage the crate cannot serve is an error before anything is written (an insert on
//! MySQL into a table with a composite primary key).
//!
//! # MySQL and MariaDB
//!
//! Diesel's MySQL backend has no `RETURNING`, so the affected rows are read with `SELECT`s in
//! the write's transaction (see [`SelectFirst`]): an update needs `#[derive(Identifiable)]` on
//! the model (its rows are read again by primary key), and an insert finds its rows from
//! `LAST_INSERT_ID()`, which needs a single-column `AUTO_INCREMENT` key generated by the
//! insert (InnoDB gives one multi-row `INSERT` consecutive values). Rows inserted with
//! explicit keys, or updated by an upsert, are not found: the write stands and the miss is
//! logged.
#![warn(missing_docs)]
// On docs.rs (nightly), items behind a cargo feature say which one.
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without a backend feature, only the backend-independent parts are built.
#![cfg_attr(
    not(any(feature = "postgres", feature = "sqlite", feature = "mysql")),
    allow(dead_code, unused_imports)
)]

mod backend;
mod deliver;
#[cfg(feature = "mysql")]
mod mysql;
pub mod outbox;
mod query;
mod sync;
mod write;

pub use backend::{PurgeBackend, Returning, SelectFirst, Strategy};
pub use sync::{OutboxConnection, PurgeDsl, PurgingWrite, transaction};
pub use write::{Changeset, Delete, NoChangeset, Update, delete, update};

#[cfg(feature = "async")]
mod nonblocking;
#[cfg(feature = "async")]
pub use nonblocking::{
    AsyncOutboxConnection, AsyncPurgeDsl, AsyncPurgingWrite, TransactionFuture, async_transaction,
};
