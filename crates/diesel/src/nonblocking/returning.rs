//! `RETURNING` backends (PostgreSQL, SQLite) on diesel-async connections.

use std::future::Future;

use cache_purge_hooks_engine::PurgeTargets;
use diesel::associations::HasTable;
use diesel::dsl::Returning as WithReturning;
use diesel::query_builder::{
    AsQuery, DeleteStatement, InsertStatement, IntoUpdateTarget, Query, QueryFragment,
    UpdateStatement,
};
use diesel::result::{Error, QueryResult};
use diesel::{Selectable, SelectableHelper, Table};
use diesel_async::RunQueryDsl;
use diesel_async::methods::LoadQuery;

use super::{AsyncOutboxConnection, AsyncPurgingWrite, stage};
use crate::backend::{PurgeBackend, Returning};
use crate::deliver::{Plan, targets_of};
use crate::query::{Sel, SelectRows};
use crate::write::{Changeset, Delete, Parts, Update, writes_url_field};

impl<'q, T, U, Op, C, M> AsyncPurgingWrite<'q, Returning, C, M> for InsertStatement<T, U, Op>
where
    T: Table + HasTable<Table = T> + Send,
    U: Send,
    Op: Send,
    T::FromClause: Send,
    C: AsyncOutboxConnection,
    C::Backend: PurgeBackend,
    M: PurgeTargets + Selectable<C::Backend> + Send + 'static,
    WithReturning<InsertStatement<T, U, Op>, Sel<M, C::Backend>>: Query + LoadQuery<'q, C, M> + 'q,
    T: 'q,
    U: 'q,
    Op: 'q,
    C::Backend: 'static,
{
    async fn write(self, conn: &mut C, _rows: bool) -> QueryResult<(usize, Vec<M>)> {
        let plan = Plan::current::<M>();
        let backends = plan.outbox_backends();
        let (source, backends_ref) = (plan.source, backends.as_ref());
        let (rows, staged) = conn
            .transaction(async move |conn: &mut C| {
                let rows: Vec<M> = self.returning(M::as_returning()).get_results(conn).await?;
                let staged = stage(conn, source, backends_ref, targets_of(&rows)).await;
                Ok::<_, Error>((rows, staged))
            })
            .await?;
        plan.finish_async(staged).await;
        Ok((rows.len(), rows))
    }
}

impl<'q, Tgt, T, W, CS, C, M> AsyncPurgingWrite<'q, Returning, C, M>
    for Update<Tgt, Changeset<T, CS>>
where
    Tgt: IntoUpdateTarget<Table = T, WhereClause = W> + Send,
    T: Table + HasTable<Table = T> + Send,
    T::FromClause: Send,
    W: Send + Sync,
    CS: QueryFragment<C::Backend> + Send,
    C: AsyncOutboxConnection,
    C::Backend: PurgeBackend,
    M: PurgeTargets + Selectable<C::Backend> + Send + 'static,
    M::SelectExpression: QueryFragment<C::Backend>,
    SelectRows<Sel<M, C::Backend>, T::FromClause, W>: LoadQuery<'q, C, M> + 'q,
    W: Clone,
    UpdateStatement<T, W, CS>: AsQuery,
    WithReturning<UpdateStatement<T, W, CS>, Sel<M, C::Backend>>: Query + LoadQuery<'q, C, M> + 'q,
    T: 'q,
    W: 'q,
    CS: 'q,
    C::Backend: 'static,
{
    fn write(
        self,
        conn: &mut C,
        _rows: bool,
    ) -> impl Future<Output = QueryResult<(usize, Vec<M>)>> + Send {
        let changeset = self.changeset.changeset;
        let target = self.target;
        let read_old = writes_url_field::<C::Backend, M, CS>(&changeset);
        async move {
            let plan = Plan::current::<M>();
            let backends = plan.outbox_backends();
            let (source, backends_ref) = (plan.source, backends.as_ref());
            let (rows, staged) = conn
                .transaction(async move |conn: &mut C| {
                    let parts = Parts::of(target);
                    let old: Vec<M> = if read_old {
                        SelectRows {
                            selection: M::as_select(),
                            from: parts.table.from_clause(),
                            where_clause: parts.where_clause.clone(),
                            suffix: <C::Backend as PurgeBackend>::FOR_UPDATE,
                        }
                        .load(conn)
                        .await?
                    } else {
                        Vec::new()
                    };
                    let rows: Vec<M> = diesel::update(parts)
                        .set(Changeset::new(changeset))
                        .returning(M::as_returning())
                        .get_results(conn)
                        .await?;
                    let targets = targets_of(old.iter().chain(&rows));
                    let staged = stage(conn, source, backends_ref, targets).await;
                    Ok::<_, Error>((rows, staged))
                })
                .await?;
            plan.finish_async(staged).await;
            Ok((rows.len(), rows))
        }
    }
}

impl<'q, Tgt, T, W, C, M> AsyncPurgingWrite<'q, Returning, C, M> for Delete<Tgt>
where
    Tgt: IntoUpdateTarget<Table = T, WhereClause = W> + Send,
    T: Table + HasTable<Table = T>,
    C: AsyncOutboxConnection,
    C::Backend: PurgeBackend,
    M: PurgeTargets + Selectable<C::Backend> + Send + 'static,
    Sel<M, C::Backend>: diesel::SelectableExpression<T>,
    WithReturning<DeleteStatement<T, W>, Sel<M, C::Backend>>: Query + LoadQuery<'q, C, M> + 'q,
    T: 'q,
    W: 'q,
    C::Backend: 'static,
{
    fn write(
        self,
        conn: &mut C,
        _rows: bool,
    ) -> impl Future<Output = QueryResult<(usize, Vec<M>)>> + Send {
        let target = self.target;
        async move {
            let plan = Plan::current::<M>();
            let backends = plan.outbox_backends();
            let (source, backends_ref) = (plan.source, backends.as_ref());
            let (rows, staged) = conn
                .transaction(async move |conn: &mut C| {
                    let rows: Vec<M> = diesel::delete(target)
                        .returning(M::as_returning())
                        .get_results(conn)
                        .await?;
                    let staged = stage(conn, source, backends_ref, targets_of(&rows)).await;
                    Ok::<_, Error>((rows, staged))
                })
                .await?;
            plan.finish_async(staged).await;
            Ok((rows.len(), rows))
        }
    }
}
