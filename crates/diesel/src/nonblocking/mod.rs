//! Purging writes and transactions on diesel-async connections (feature `async`).

use std::future::Future;
use std::pin::Pin;

use cache_purge_hooks_engine::{AfterCommit, Target, Targets};
use diesel::QuerySource;
use diesel::query_builder::InsertStatement;
use diesel::result::{Error, QueryResult};
use diesel_async::AsyncConnection;
use diesel_async::methods::ExecuteDsl;

use crate::backend::PurgeBackend;
use crate::deliver::{OutboxRoute, Staged, outbox_failed, outbox_targets};
use crate::outbox::{self, NewRow, cache_purge_outbox};
use crate::sync::settle;
use crate::write::{Delete, Update};

#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod returning;
#[cfg(feature = "mysql")]
mod select_first;

/// [`PurgeDsl`](crate::PurgeDsl) for diesel-async connections: the same
/// `execute_and_purge::<Model>` and `get_results_and_purge::<Model>`, returning futures.
///
/// Import this trait or `PurgeDsl`, not both (like `diesel_async::RunQueryDsl` and
/// `diesel::RunQueryDsl`).
///
/// ```
/// # mod cache_purge_hooks { pub use cache_purge_hooks_engine::*; pub use cache_purge_hooks_macros::CachePurge; pub use cache_purge_hooks_diesel as diesel; }
/// # #[cfg(feature = "sqlite")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use cache_purge_hooks_engine::{backend::MemoryBackend, Purger};
/// use cache_purge_hooks_diesel::{self as purge, AsyncPurgeDsl};
/// use diesel::prelude::*;
/// use diesel::sqlite::SqliteConnection;
/// use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
/// use diesel_async::{AsyncConnection, SimpleAsyncConnection};
/// # diesel::table! { posts (id) { id -> Integer, slug -> Text } }
/// # #[derive(Queryable, Selectable, Insertable, cache_purge_hooks::CachePurge)]
/// # #[diesel(table_name = posts)]
/// # #[cache_purge(url = "/posts/{slug}")]
/// # struct Post { id: i32, slug: String }
///
/// let memory = MemoryBackend::new();
/// let purger = Purger::builder().backend("memory", memory.clone()).build()?;
/// let conn = &mut SyncConnectionWrapper::<SqliteConnection>::establish(":memory:").await?;
/// conn.batch_execute("CREATE TABLE posts (id INTEGER PRIMARY KEY, slug TEXT NOT NULL)").await?;
///
/// purger
///     .scope(async {
///         diesel::insert_into(posts::table)
///             .values(Post { id: 1, slug: "hello".into() })
///             .execute_and_purge::<Post>(conn)
///             .await
///     })
///     .await?;
/// purger.flush().await;
/// assert_eq!(memory.urls(), ["/posts/hello"]);
/// # Ok(()) }
/// # #[cfg(not(feature = "sqlite"))] fn main() {}
/// ```
pub trait AsyncPurgeDsl<Conn>: Sized {
    /// Runs the write and returns the number of rows it affected, purging their URLs (old and
    /// new ones for an update that changes a URL field).
    fn execute_and_purge<'q, M>(
        self,
        conn: &mut Conn,
    ) -> impl Future<Output = QueryResult<usize>> + Send
    where
        Conn: AsyncConnection,
        Conn::Backend: PurgeBackend,
        Self: AsyncPurgingWrite<'q, <Conn::Backend as PurgeBackend>::Strategy, Conn, M>,
    {
        let write = self.write(conn, false);
        async move { write.await.map(|(n, _)| n) }
    }

    /// Runs the write and returns the affected rows as `M` (the new values for an update),
    /// purging their URLs (old and new ones for an update that changes a URL field).
    fn get_results_and_purge<'q, M>(
        self,
        conn: &mut Conn,
    ) -> impl Future<Output = QueryResult<Vec<M>>> + Send
    where
        Conn: AsyncConnection,
        Conn::Backend: PurgeBackend,
        Self: AsyncPurgingWrite<'q, <Conn::Backend as PurgeBackend>::Strategy, Conn, M>,
    {
        let write = self.write(conn, true);
        async move { write.await.map(|(_, rows)| rows) }
    }
}

impl<T: QuerySource, U, Op, Conn> AsyncPurgeDsl<Conn> for InsertStatement<T, U, Op> {}
impl<Tgt, C, Conn> AsyncPurgeDsl<Conn> for Update<Tgt, C> {}
impl<Tgt, Conn> AsyncPurgeDsl<Conn> for Delete<Tgt> {}

/// A write that [`AsyncPurgeDsl`] can run on connection `Conn` with strategy `S`, reading the
/// affected rows as `M`: the diesel-async twin of [`PurgingWrite`](crate::PurgingWrite).
#[diagnostic::on_unimplemented(
    message = "this write cannot purge `{M}` on connection `{Conn}`",
    label = "needs `{M}` to match its table and the connection to be supported",
    note = "`{M}` must derive `Queryable`, `Selectable` and `CachePurge`, select from the table written (`#[diesel(table_name = ...)]`) and be `Send`",
    note = "on MySQL, an update also needs `#[derive(Identifiable)]` on `{M}` (its rows are read again by primary key)",
    note = "enable the cache-purge-hooks-diesel feature of the backend (`postgres`, `sqlite`, `mysql`); blocking connections use `PurgeDsl`"
)]
pub trait AsyncPurgingWrite<'q, S, Conn, M> {
    /// Runs the write; returns the affected row count and, when `rows` is asked for or the
    /// strategy has them anyway, the rows.
    #[doc(hidden)]
    fn write(
        self,
        conn: &mut Conn,
        rows: bool,
    ) -> impl Future<Output = QueryResult<(usize, Vec<M>)>> + Send;
}

/// A diesel-async connection the outbox rows can be written through: every connection of a
/// supported backend (implemented automatically).
pub trait AsyncOutboxConnection: AsyncConnection {
    /// [`outbox::async_enqueue`] on this connection.
    #[doc(hidden)]
    fn enqueue_outbox(
        &mut self,
        backends: &[String],
        targets: &[Target],
        now_ms: i64,
        available_at_ms: i64,
    ) -> impl Future<Output = QueryResult<()>> + Send;
}

impl<C> AsyncOutboxConnection for C
where
    C: AsyncConnection,
    diesel::dsl::Values<diesel::dsl::insert_into<cache_purge_outbox::table>, NewRow>: ExecuteDsl<C>,
{
    fn enqueue_outbox(
        &mut self,
        backends: &[String],
        targets: &[Target],
        now_ms: i64,
        available_at_ms: i64,
    ) -> impl Future<Output = QueryResult<()>> + Send {
        outbox::async_enqueue_due(self, backends, targets, now_ms, available_at_ms)
    }
}

/// [`stage`](crate::sync) on an async connection: outbox rows in a savepoint, or the targets
/// kept for after COMMIT.
pub(crate) async fn stage<C: AsyncOutboxConnection>(
    conn: &mut C,
    source: &'static str,
    outbox_backends: Option<&OutboxRoute>,
    targets: Targets,
) -> Staged {
    if targets.is_empty() && targets.rejected().is_empty() {
        return Staged::Nothing;
    }
    let Some(route) = outbox_backends else {
        return Staged::Send(targets);
    };
    let valid = outbox_targets(source, targets);
    if valid.is_empty() {
        return Staged::Nothing;
    }
    let rows = &valid;
    let now = outbox::now_ms();
    let written = conn
        .transaction(async move |c: &mut C| {
            for due in route.due_times(now) {
                c.enqueue_outbox(&route.backends, rows, now, due).await?;
            }
            Ok::<_, diesel::result::Error>(())
        })
        .await;
    match written {
        Ok(()) => Staged::Outbox,
        Err(e) => {
            outbox_failed(source, &e, valid.len());
            Staged::Send(valid.into_iter().collect())
        }
    }
}

/// The boxed future an [`async_transaction`] body returns: `Box::pin(async move { ... })`.
pub type TransactionFuture<'r, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'r>>;

/// Runs `f` in a database transaction of a diesel-async connection, like
/// `AsyncConnection::transaction`, holding back every purge made inside it until the COMMIT
/// has succeeded; on rollback they are discarded. The body returns a boxed future:
///
/// ```
/// # mod cache_purge_hooks { pub use cache_purge_hooks_engine::*; pub use cache_purge_hooks_macros::CachePurge; pub use cache_purge_hooks_diesel as diesel; }
/// # #[cfg(feature = "sqlite")]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// # rt.block_on(async {
/// # use cache_purge_hooks_engine::{backend::MemoryBackend, Purger};
/// # use diesel::prelude::*;
/// # use diesel_async::{AsyncConnection, RunQueryDsl};
/// # use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
/// # diesel::table! { posts (id) { id -> Integer, slug -> Text } }
/// # #[derive(Queryable, Selectable, cache_purge_hooks::CachePurge)]
/// # #[diesel(table_name = posts)]
/// # #[cache_purge(url = "/posts/{slug}")]
/// # struct Post { id: i32, slug: String }
/// # let memory = MemoryBackend::new();
/// # let purger = Purger::builder().backend("memory", memory.clone()).build()?;
/// # purger.scope(async {
/// # let conn = &mut SyncConnectionWrapper::<SqliteConnection>::establish(":memory:").await?;
/// # diesel::sql_query("CREATE TABLE posts (id INTEGER PRIMARY KEY, slug TEXT NOT NULL)").execute(conn).await?;
/// # diesel::sql_query("INSERT INTO posts VALUES (1, 'hello-world')").execute(conn).await?;
/// use cache_purge_hooks_diesel::{self as purge, AsyncPurgeDsl};
///
/// purge::async_transaction(conn, |conn| {
///     Box::pin(async move {
///         purge::update(posts::table.find(1))
///             .set(posts::slug.eq("hello-rust"))
///             .execute_and_purge::<Post>(conn)
///             .await
///     })
/// })
/// .await?; // after the COMMIT: /posts/hello-world and /posts/hello-rust
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// # }).await?;
/// # purger.flush().await;
/// # assert_eq!(memory.urls(), ["/posts/hello-world", "/posts/hello-rust"]);
/// # Ok(()) })
/// # }
/// # #[cfg(not(feature = "sqlite"))] fn main() {}
/// ```
///
/// Purges are held for the current tokio task only: tasks spawned inside are not covered.
/// See [`transaction`](crate::transaction) for the rest.
pub async fn async_transaction<C, T, E, F>(conn: &mut C, f: F) -> Result<T, E>
where
    C: AsyncConnection,
    F: for<'r> FnOnce(&'r mut C) -> TransactionFuture<'r, T, E> + Send,
    E: From<Error> + Send,
    T: Send,
{
    let (result, pending) =
        AfterCommit::run(conn.transaction(async move |c: &mut C| f(c).await)).await;
    settle(result.is_ok(), pending);
    result
}
