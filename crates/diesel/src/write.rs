//! The `UPDATE` and `DELETE` builders, spelled like Diesel's own.

use std::marker::PhantomData;

use cache_purge_hooks_engine::PurgeTargets;
use diesel::associations::HasTable;
use diesel::dsl::Filter;
use diesel::query_builder::{AsChangeset, IntoUpdateTarget, QueryFragment, UpdateTarget};
use diesel::query_dsl::methods::FilterDsl;
use diesel::{Selectable, Table};

use crate::backend::PurgeBackend;

/// Starts an `UPDATE` that purges: [`diesel::update`] with the target kept, so that the rows
/// it changes can be read before the write (old URLs; MySQL).
///
/// Takes what [`diesel::update`] takes: a table, a table with `filter`s or `find`, or an
/// `Identifiable` model. Continue with [`set`](Update::set) (and [`filter`](Update::filter)),
/// then [`execute_and_purge`](crate::PurgeDsl::execute_and_purge) or
/// [`get_results_and_purge`](crate::PurgeDsl::get_results_and_purge):
///
/// ```
/// # mod cache_purge_hooks { pub use cache_purge_hooks_engine::*; pub use cache_purge_hooks_macros::CachePurge; pub use cache_purge_hooks_diesel as diesel; }
/// # #[cfg(feature = "sqlite")]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// # rt.block_on(async {
/// # use cache_purge_hooks_engine::{backend::MemoryBackend, Purger};
/// # use diesel::prelude::*;
/// # diesel::table! { posts (id) { id -> Integer, slug -> Text, published -> Bool } }
/// # #[derive(Queryable, Selectable, cache_purge_hooks::CachePurge)]
/// # #[diesel(table_name = posts)]
/// # #[cache_purge(url = "/posts/{slug}")]
/// # struct Post { id: i32, slug: String, published: bool }
/// # let memory = MemoryBackend::new();
/// # let purger = Purger::builder().backend("memory", memory.clone()).build()?;
/// # purger.scope(async {
/// # let conn = &mut SqliteConnection::establish(":memory:")?;
/// # diesel::sql_query("CREATE TABLE posts (id INTEGER PRIMARY KEY, slug TEXT NOT NULL, published BOOLEAN NOT NULL)").execute(conn)?;
/// # diesel::sql_query("INSERT INTO posts VALUES (1, 'hello-world', 1), (2, 'draft', 0)").execute(conn)?;
/// use cache_purge_hooks_diesel::{self as purge, PurgeDsl};
///
/// purge::update(posts::table.find(1))
///     .set(posts::slug.eq("hello-rust"))
///     .execute_and_purge::<Post>(conn)?; // purges /posts/hello-world and /posts/hello-rust
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// # }).await?;
/// # purger.flush().await;
/// # assert_eq!(memory.urls(), ["/posts/hello-world", "/posts/hello-rust"]);
/// # Ok(()) })
/// # }
/// # #[cfg(not(feature = "sqlite"))] fn main() {}
/// ```
#[must_use = "an update does nothing until `execute_and_purge` or `get_results_and_purge`"]
pub fn update<Tgt: IntoUpdateTarget>(target: Tgt) -> Update<Tgt, NoChangeset> {
    Update {
        target,
        changeset: NoChangeset,
    }
}

/// Starts a `DELETE` that purges: [`diesel::delete`] with the target kept, so that MySQL,
/// which has no `RETURNING`, can read the rows first.
///
/// ```
/// # mod cache_purge_hooks { pub use cache_purge_hooks_engine::*; pub use cache_purge_hooks_macros::CachePurge; pub use cache_purge_hooks_diesel as diesel; }
/// # #[cfg(feature = "sqlite")]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// # rt.block_on(async {
/// # use cache_purge_hooks_engine::{backend::MemoryBackend, Purger};
/// # use diesel::prelude::*;
/// # diesel::table! { posts (id) { id -> Integer, slug -> Text, published -> Bool } }
/// # #[derive(Queryable, Selectable, cache_purge_hooks::CachePurge)]
/// # #[diesel(table_name = posts)]
/// # #[cache_purge(url = "/posts/{slug}")]
/// # struct Post { id: i32, slug: String, published: bool }
/// # let memory = MemoryBackend::new();
/// # let purger = Purger::builder().backend("memory", memory.clone()).build()?;
/// # purger.scope(async {
/// # let conn = &mut SqliteConnection::establish(":memory:")?;
/// # diesel::sql_query("CREATE TABLE posts (id INTEGER PRIMARY KEY, slug TEXT NOT NULL, published BOOLEAN NOT NULL)").execute(conn)?;
/// # diesel::sql_query("INSERT INTO posts VALUES (1, 'hello-world', 1), (2, 'draft', 0)").execute(conn)?;
/// use cache_purge_hooks_diesel::{self as purge, PurgeDsl};
///
/// purge::delete(posts::table.filter(posts::published.eq(false)))
///     .execute_and_purge::<Post>(conn)?; // purges every deleted row's URLs
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// # }).await?;
/// # purger.flush().await;
/// # assert_eq!(memory.urls(), ["/posts/draft"]);
/// # Ok(()) })
/// # }
/// # #[cfg(not(feature = "sqlite"))] fn main() {}
/// ```
#[must_use = "a delete does nothing until `execute_and_purge` or `get_results_and_purge`"]
pub fn delete<Tgt: IntoUpdateTarget>(target: Tgt) -> Delete<Tgt> {
    Delete { target }
}

/// An `UPDATE` being built by [`update`]: `.set(...)`, `.filter(...)`, then run it with
/// [`PurgeDsl`](crate::PurgeDsl) (or `AsyncPurgeDsl` with diesel-async).
#[derive(Clone, Debug)]
#[must_use = "an update does nothing until `execute_and_purge` or `get_results_and_purge`"]
pub struct Update<Tgt, C> {
    pub(crate) target: Tgt,
    pub(crate) changeset: C,
}

/// The state of an [`Update`] before [`set`](Update::set).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoChangeset;

/// The `SET` clause of an [`Update`]: what `.set(...)` was given, already turned into
/// Diesel's changeset.
#[derive(Clone, Debug)]
pub struct Changeset<T, C> {
    pub(crate) changeset: C,
    table: PhantomData<T>,
}

impl<Tgt> Update<Tgt, NoChangeset> {
    /// The `SET` clause, as in Diesel's `UpdateStatement::set`: a column assignment
    /// (`posts::slug.eq("x")`), a tuple of them, or an `AsChangeset` struct.
    pub fn set<V>(self, values: V) -> Update<Tgt, Changeset<V::Target, V::Changeset>>
    where
        V: AsChangeset,
    {
        Update {
            target: self.target,
            changeset: Changeset::new(values.as_changeset()),
        }
    }
}

impl<Tgt, C> Update<Tgt, C> {
    /// Narrows the rows updated, as Diesel's `filter`: `update(posts).filter(...)` is
    /// `update(posts.filter(...))`.
    pub fn filter<P>(self, predicate: P) -> Update<Filter<Tgt, P>, C>
    where
        Tgt: FilterDsl<P>,
    {
        Update {
            target: self.target.filter(predicate),
            changeset: self.changeset,
        }
    }
}

/// A `DELETE` being built by [`delete`]: `.filter(...)`, then run it with
/// [`PurgeDsl`](crate::PurgeDsl) (or `AsyncPurgeDsl` with diesel-async).
#[derive(Clone, Debug)]
#[must_use = "a delete does nothing until `execute_and_purge` or `get_results_and_purge`"]
pub struct Delete<Tgt> {
    pub(crate) target: Tgt,
}

impl<Tgt> Delete<Tgt> {
    /// Narrows the rows deleted, as Diesel's `filter`.
    pub fn filter<P>(self, predicate: P) -> Delete<Filter<Tgt, P>>
    where
        Tgt: FilterDsl<P>,
    {
        Delete {
            target: self.target.filter(predicate),
        }
    }
}

impl<T, C> Changeset<T, C> {
    pub(crate) fn new(changeset: C) -> Self {
        Changeset {
            changeset,
            table: PhantomData,
        }
    }
}

/// Hands a changeset made by [`Update::set`] back to Diesel's `set`.
impl<T: Table, C> AsChangeset for Changeset<T, C> {
    type Target = T;
    type Changeset = C;

    fn as_changeset(self) -> C {
        self.changeset
    }
}

/// An update target taken apart (table and `WHERE` clause) and put back together, so that the
/// `WHERE` clause can serve a `SELECT` before Diesel's statement takes it.
#[derive(Debug)]
pub struct Parts<T, W> {
    pub(crate) table: T,
    pub(crate) where_clause: W,
}

impl<T: Table, W> Parts<T, W> {
    pub(crate) fn of<Tgt>(target: Tgt) -> Self
    where
        Tgt: IntoUpdateTarget<Table = T, WhereClause = W>,
    {
        let UpdateTarget {
            table,
            where_clause,
        } = target.into_update_target();
        Parts {
            table,
            where_clause,
        }
    }
}

impl<T: Table + HasTable<Table = T>, W> HasTable for Parts<T, W> {
    type Table = T;

    fn table() -> T {
        T::table()
    }
}

impl<T: Table + HasTable<Table = T>, W> IntoUpdateTarget for Parts<T, W> {
    type WhereClause = W;

    fn into_update_target(self) -> UpdateTarget<T, W> {
        UpdateTarget {
            table: self.table,
            where_clause: self.where_clause,
        }
    }
}

/// Whether an update with this changeset may change `M`'s targets, so that its old rows must
/// be read first.
///
/// `M::URL_FIELDS` names Rust fields; a field counts as written when its name, quoted as a
/// column, appears in the rendered `SET` clause. The check errs on the side of reading: a
/// resolver without `fields(...)` (no `URL_FIELDS`), a field that is not among the model's
/// selected columns (renamed with `#[diesel(column_name = ...)]`), or a `SET` clause that
/// cannot be rendered all count as written.
pub(crate) fn writes_url_field<DB, M, C>(changeset: &C) -> bool
where
    DB: PurgeBackend,
    M: PurgeTargets + Selectable<DB>,
    C: QueryFragment<DB>,
    M::SelectExpression: QueryFragment<DB>,
{
    let Some(fields) = M::URL_FIELDS else {
        return true;
    };
    if fields.is_empty() {
        return false;
    }
    let (Some(set), Some(columns)) = (DB::render(changeset), DB::render(&M::construct_selection()))
    else {
        return true;
    };
    // Only the SQL: the bind values (after ` -- binds: `) could name anything.
    let set = set.split(" -- binds: ").next().unwrap_or_default();
    let columns = columns.split(" -- binds: ").next().unwrap_or_default();
    // Diesel quotes identifiers with `"` (PostgreSQL) or backticks (SQLite, MySQL).
    let mentions = |sql: &str, field: &str| {
        sql.contains(&format!("\"{field}\"")) || sql.contains(&format!("`{field}`"))
    };
    fields
        .iter()
        .any(|field| !mentions(columns, field) || mentions(set, field))
}
