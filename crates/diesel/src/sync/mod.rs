//! Purging writes and transactions on Diesel's (blocking) connections.

use cache_purge_hooks_engine::{AfterCommit, Delivery, Purger, Target, Targets};
use diesel::QuerySource;
use diesel::connection::Connection;
use diesel::query_builder::InsertStatement;
use diesel::query_dsl::methods::ExecuteDsl;
use diesel::result::{Error, QueryResult};

use crate::backend::PurgeBackend;
use crate::deliver::{OutboxRoute, Plan, Staged, outbox_failed, outbox_targets};
use crate::outbox::{self, NewRow, cache_purge_outbox};
use crate::write::{Delete, Update};

#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod returning;
#[cfg(feature = "mysql")]
mod select_first;

/// Runs writes and purges the URLs of every row they affect: `execute_and_purge::<Model>` and
/// `get_results_and_purge::<Model>`, the purging `execute` and `get_results`.
///
/// Implemented for Diesel's `insert_into(..).values(..)` statements and for the
/// [`update`](crate::update) and [`delete`](crate::delete) builders of this crate. `Model` is
/// the `Queryable + Selectable + CachePurge` struct whose URLs are purged: each affected row
/// is read into it (with `RETURNING`, or `SELECT` on MySQL) and its targets are resolved.
///
/// Each call runs in a transaction of its own (a savepoint inside yours), so that the write,
/// the rows read for it and, with `delivery = "outbox"`, the outbox rows commit together.
/// The purge is handed over after that commit: inside [`transaction`] it then waits for the
/// outer COMMIT. Nothing about the purge can fail the write: delivery happens later, on the
/// purger's workers or the outbox worker.
///
/// For diesel-async connections, use `AsyncPurgeDsl` (feature `async`) instead (same
/// methods, returning futures); import one or the other, like `diesel::RunQueryDsl` and
/// `diesel_async::RunQueryDsl`.
pub trait PurgeDsl<Conn>: Sized {
    /// Runs the write and returns the number of rows it affected, purging their URLs (old and
    /// new ones for an update that changes a URL field).
    fn execute_and_purge<'q, M>(self, conn: &mut Conn) -> QueryResult<usize>
    where
        Conn: Connection,
        Conn::Backend: PurgeBackend,
        Self: PurgingWrite<'q, <Conn::Backend as PurgeBackend>::Strategy, Conn, M>,
    {
        self.write(conn, false).map(|(n, _)| n)
    }

    /// Runs the write and returns the affected rows as `M` (the new values for an update),
    /// purging their URLs (old and new ones for an update that changes a URL field).
    fn get_results_and_purge<'q, M>(self, conn: &mut Conn) -> QueryResult<Vec<M>>
    where
        Conn: Connection,
        Conn::Backend: PurgeBackend,
        Self: PurgingWrite<'q, <Conn::Backend as PurgeBackend>::Strategy, Conn, M>,
    {
        self.write(conn, true).map(|(_, rows)| rows)
    }
}

impl<T: QuerySource, U, Op, Conn> PurgeDsl<Conn> for InsertStatement<T, U, Op> {}
impl<Tgt, C, Conn> PurgeDsl<Conn> for Update<Tgt, C> {}
impl<Tgt, Conn> PurgeDsl<Conn> for Delete<Tgt> {}

/// A write that [`PurgeDsl`] can run on connection `Conn` with strategy `S`, reading the
/// affected rows as `M`. Implemented by this crate for every supported combination; the
/// bounds of its impls are what a write needs.
#[diagnostic::on_unimplemented(
    message = "this write cannot purge `{M}` on connection `{Conn}`",
    label = "needs `{M}` to match its table and the connection to be supported",
    note = "`{M}` must derive `Queryable`, `Selectable` and `CachePurge`, and select from the table written (`#[diesel(table_name = ...)]`)",
    note = "on MySQL, an update also needs `#[derive(Identifiable)]` on `{M}` (its rows are read again by primary key)",
    note = "enable the cache-purge-hooks-diesel feature of the backend (`postgres`, `sqlite`, `mysql`); diesel-async connections use `AsyncPurgeDsl`"
)]
pub trait PurgingWrite<'q, S, Conn, M> {
    /// Runs the write; returns the affected row count and, when `rows` is asked for or the
    /// strategy has them anyway, the rows.
    #[doc(hidden)]
    fn write(self, conn: &mut Conn, rows: bool) -> QueryResult<(usize, Vec<M>)>;
}

/// A connection the outbox rows can be written through: every Diesel connection of a
/// supported backend (implemented automatically).
pub trait OutboxConnection: Connection {
    /// [`outbox::enqueue`] on this connection.
    #[doc(hidden)]
    fn enqueue_outbox(
        &mut self,
        backends: &[String],
        targets: &[Target],
        now_ms: i64,
        available_at_ms: i64,
    ) -> QueryResult<()>;
}

impl<C> OutboxConnection for C
where
    C: Connection,
    diesel::dsl::Values<diesel::dsl::insert_into<cache_purge_outbox::table>, NewRow>: ExecuteDsl<C>,
{
    fn enqueue_outbox(
        &mut self,
        backends: &[String],
        targets: &[Target],
        now_ms: i64,
        available_at_ms: i64,
    ) -> QueryResult<()> {
        outbox::enqueue_due(self, backends, targets, now_ms, available_at_ms)
    }
}

/// Inside the write's transaction: writes the outbox rows (in a savepoint, so that a missing
/// table cannot abort the write's transaction), or keeps the targets to send after COMMIT.
pub(crate) fn stage<C: OutboxConnection>(
    conn: &mut C,
    plan: &Plan,
    outbox_backends: Option<&OutboxRoute>,
    targets: Targets,
) -> Staged {
    if targets.is_empty() && targets.rejected().is_empty() {
        return Staged::Nothing;
    }
    let Some(route) = outbox_backends else {
        return Staged::Send(targets);
    };
    let valid = outbox_targets(plan.source, targets);
    if valid.is_empty() {
        return Staged::Nothing;
    }
    let now = outbox::now_ms();
    let written = conn.transaction(|c| {
        for due in route.due_times(now) {
            c.enqueue_outbox(&route.backends, &valid, now, due)?;
        }
        Ok::<_, diesel::result::Error>(())
    });
    match written {
        Ok(()) => Staged::Outbox,
        Err(e) => {
            outbox_failed(plan.source, &e, valid.len());
            Staged::Send(valid.into_iter().collect())
        }
    }
}

/// Runs `body` (the write and its reads) in a transaction with the staging of its targets,
/// then hands them over once it committed.
pub(crate) fn run<C, M, R>(
    conn: &mut C,
    body: impl FnOnce(&mut C) -> QueryResult<(R, Targets)>,
) -> QueryResult<R>
where
    C: OutboxConnection,
    M: 'static,
{
    let plan = Plan::current::<M>();
    let backends = plan.outbox_backends();
    let (out, staged) = conn.transaction(|conn| {
        let (out, targets) = body(conn)?;
        let staged = stage(conn, &plan, backends.as_ref(), targets);
        Ok::<_, Error>((out, staged))
    })?;
    plan.finish(staged);
    Ok(out)
}

/// Runs `f` in a database transaction, like Diesel's `Connection::transaction`, holding back
/// every purge made inside it until the COMMIT has succeeded. On rollback (`f` returned
/// `Err`, or the COMMIT failed) the purges are discarded.
///
/// Nested calls (savepoints) hand their purges to the enclosing transaction. With
/// `delivery = "outbox"` the purging writes inside store their purges in the transaction
/// itself; the outbox worker is woken after the COMMIT. With `delivery = "immediate"`
/// nothing is held back.
///
/// Purges are held for the current thread (and tokio task) only: work handed to other
/// threads inside `f` is not covered.
///
/// ```
/// # mod cache_purge_hooks { pub use cache_purge_hooks_engine::*; pub use cache_purge_hooks_macros::CachePurge; pub use cache_purge_hooks_diesel as diesel; }
/// # #[cfg(feature = "sqlite")]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// # rt.block_on(async {
/// use cache_purge_hooks_engine::{backend::MemoryBackend, Purger};
/// use cache_purge_hooks_diesel::{self as purge, PurgeDsl};
/// use diesel::prelude::*;
/// # diesel::table! { posts (id) { id -> Integer, slug -> Text } }
/// # #[derive(Queryable, Selectable, cache_purge_hooks::CachePurge)]
/// # #[diesel(table_name = posts)]
/// # #[cache_purge(url = "/posts/{slug}")]
/// # struct Post { id: i32, slug: String }
///
/// let memory = MemoryBackend::new();
/// let purger = Purger::builder().backend("memory", memory.clone()).build()?;
/// purger.scope(async {
///     let conn = &mut SqliteConnection::establish(":memory:")?;
///     # diesel::sql_query("CREATE TABLE posts (id INTEGER PRIMARY KEY, slug TEXT NOT NULL)").execute(conn)?;
///     # diesel::sql_query("INSERT INTO posts VALUES (1, 'hello')").execute(conn)?;
///     // Rolled back: nothing purged.
///     let _ = purge::transaction(conn, |conn| {
///         purge::update(posts::table.find(1))
///             .set(posts::slug.eq("draft"))
///             .execute_and_purge::<Post>(conn)?;
///         Err::<(), _>(diesel::result::Error::RollbackTransaction)
///     });
///     // Committed: /posts/hello and /posts/renamed, after the COMMIT.
///     purge::transaction(conn, |conn| {
///         purge::update(posts::table.find(1))
///             .set(posts::slug.eq("renamed"))
///             .execute_and_purge::<Post>(conn)
///     })?;
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })
/// .await?;
/// purger.flush().await;
/// assert_eq!(memory.urls(), ["/posts/hello", "/posts/renamed"]);
/// # Ok(()) })
/// # }
/// # #[cfg(not(feature = "sqlite"))] fn main() {}
/// ```
pub fn transaction<C, T, E, F>(conn: &mut C, f: F) -> Result<T, E>
where
    C: Connection,
    F: FnOnce(&mut C) -> Result<T, E>,
    E: From<Error>,
{
    let (result, pending) = run_now(AfterCommit::run(async { conn.transaction(f) }));
    settle(result.is_ok(), pending);
    result
}

/// COMMIT or rollback: releases or discards the held purges, and wakes the outbox worker.
pub(crate) fn settle(committed: bool, pending: AfterCommit) {
    if committed {
        pending.commit();
        if let Some(p) = Purger::current()
            && p.delivery() == Delivery::Outbox
        {
            // As SeaORM's: wakes the worker, and counts the worker's claim cycles from this
            // COMMIT for a read-your-writes watch (rows are visible only now).
            p.outbox_written();
        }
    } else {
        pending.discard();
    }
}

/// Runs a future that never waits (a synchronous body inside an [`AfterCommit`] scope) on
/// this thread, without an executor: it is ready at its first poll.
fn run_now<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        // Unreachable: nothing in the body awaits.
        std::thread::yield_now();
    }
}
