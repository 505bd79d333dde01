//! MySQL and MariaDB on diesel-async connections: the rows are read with `SELECT`s in the
//! write's transaction.

use std::future::Future;

use cache_purge_hooks_engine::PurgeTargets;
use diesel::Identifiable;
use diesel::associations::HasTable;
use diesel::dsl::Find;
use diesel::query_builder::{
    AsQuery, DeleteStatement, InsertStatement, IntoUpdateTarget, QueryFragment, UpdateStatement,
};
use diesel::query_dsl::methods::FindDsl;
use diesel::result::{Error, QueryResult};
use diesel::{Selectable, SelectableHelper, Table};
use diesel_async::methods::{ExecuteDsl, LoadQuery};
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{AsyncOutboxConnection, AsyncPurgingWrite, stage};
use crate::backend::{PurgeBackend, SelectFirst};
use crate::deliver::{Plan, targets_of};
use crate::mysql::{check_single_key, inserted_rows_missing};
use crate::query::{
    FindWhere, IdOf, RESET_LAST_INSERT_ID, SELECT_EACH_CHUNK, Sel, SelectEach, SelectInserted,
    SelectRows,
};
use crate::write::{Changeset, Delete, Parts, Update, writes_url_field};

impl<'q, T, U, Op, C, M> AsyncPurgingWrite<'q, SelectFirst, C, M> for InsertStatement<T, U, Op>
where
    T: Table + HasTable<Table = T> + Send,
    T::PrimaryKey: QueryFragment<C::Backend> + Send,
    T::FromClause: QueryFragment<C::Backend> + Send,
    U: Send,
    Op: Send,
    C: AsyncOutboxConnection,
    C::Backend: PurgeBackend,
    M: PurgeTargets + Selectable<C::Backend> + Send + 'static,
    Self: ExecuteDsl<C> + 'q,
    diesel::query_builder::SqlQuery: ExecuteDsl<C>,
    SelectInserted<Sel<M, C::Backend>, T::FromClause, T::PrimaryKey>: LoadQuery<'q, C, M> + 'q,
{
    async fn write(self, conn: &mut C, _rows: bool) -> QueryResult<(usize, Vec<M>)> {
        let table = T::table();
        check_single_key::<C::Backend, T>(&table)?;
        let plan = Plan::current::<M>();
        let backends = plan.outbox_backends();
        let (source, backends_ref) = (plan.source, backends.as_ref());
        let ((n, rows), staged) = conn
            .transaction(async move |conn: &mut C| {
                diesel::sql_query(RESET_LAST_INSERT_ID)
                    .execute(conn)
                    .await?;
                let n = self.execute(conn).await?;
                let rows: Vec<M> = if n == 0 {
                    Vec::new()
                } else {
                    SelectInserted {
                        selection: M::as_select(),
                        from: table.from_clause(),
                        key: table.primary_key(),
                        limit: n.to_string(),
                    }
                    .load(conn)
                    .await?
                };
                if rows.len() < n {
                    inserted_rows_missing(source, n, rows.len());
                }
                let staged = stage(conn, source, backends_ref, targets_of(&rows)).await;
                Ok::<_, Error>(((n, rows), staged))
            })
            .await?;
        plan.finish_async(staged).await;
        Ok((n, rows))
    }
}

impl<'q, Tgt, T, W, CS, C, M> AsyncPurgingWrite<'q, SelectFirst, C, M>
    for Update<Tgt, Changeset<T, CS>>
where
    Tgt: IntoUpdateTarget<Table = T, WhereClause = W> + Send,
    T: Table + HasTable<Table = T> + Send + 'static,
    T::FromClause: Send + 'static,
    W: Send + Sync,
    CS: QueryFragment<C::Backend> + Send,
    C: AsyncOutboxConnection,
    C::Backend: PurgeBackend + 'static,
    M: PurgeTargets + Selectable<C::Backend> + Send + Sync + 'static,
    M::SelectExpression: QueryFragment<C::Backend>,
    SelectRows<Sel<M, C::Backend>, T::FromClause, W>: LoadQuery<'q, C, M> + 'q,
    W: Clone,
    UpdateStatement<T, W, CS>: AsQuery + ExecuteDsl<C>,
    for<'m> &'m M: Identifiable<Table = T>,
    for<'m> T: FindDsl<IdOf<'m, M>>,
    for<'m> Find<T, IdOf<'m, M>>: IntoUpdateTarget<Table = T>,
    for<'m> SelectEach<Sel<M, C::Backend>, T::FromClause, FindWhere<'m, T, M>>: LoadQuery<'m, C, M>,
{
    fn write(
        self,
        conn: &mut C,
        rows_wanted: bool,
    ) -> impl Future<Output = QueryResult<(usize, Vec<M>)>> + Send {
        let changeset = self.changeset.changeset;
        let target = self.target;
        let url_written = writes_url_field::<C::Backend, M, CS>(&changeset);
        async move {
            let plan = Plan::current::<M>();
            let backends = plan.outbox_backends();
            let (source, backends_ref) = (plan.source, backends.as_ref());
            let ((n, new), staged) = conn
                .transaction(async move |conn: &mut C| {
                    let parts = Parts::of(target);
                    let old: Vec<M> = SelectRows {
                        selection: M::as_select(),
                        from: parts.table.from_clause(),
                        where_clause: parts.where_clause.clone(),
                        suffix: <C::Backend as PurgeBackend>::FOR_UPDATE,
                    }
                    .load(conn)
                    .await?;
                    let n = diesel::update(parts)
                        .set(Changeset::new(changeset))
                        .execute(conn)
                        .await?;
                    let new: Vec<M> = if (rows_wanted || url_written) && !old.is_empty() {
                        select_each(conn, &old).await?
                    } else {
                        Vec::new()
                    };
                    let targets = targets_of(old.iter().chain(&new));
                    let staged = stage(conn, source, backends_ref, targets).await;
                    Ok::<_, Error>(((n, new), staged))
                })
                .await?;
            plan.finish_async(staged).await;
            Ok((n, new))
        }
    }
}

/// MySQL: reads `rows` again, each by its primary key.
async fn select_each<'m, C, M, T>(conn: &mut C, rows: &'m [M]) -> QueryResult<Vec<M>>
where
    C: AsyncConnection,
    C::Backend: PurgeBackend + 'static,
    T::FromClause: 'static,
    T: Table + HasTable<Table = T> + 'static,
    M: Selectable<C::Backend> + Send + 'static,
    &'m M: Identifiable<Table = T>,
    T: FindDsl<IdOf<'m, M>>,
    Find<T, IdOf<'m, M>>: IntoUpdateTarget<Table = T>,
    SelectEach<Sel<M, C::Backend>, T::FromClause, FindWhere<'m, T, M>>: LoadQuery<'m, C, M>,
{
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(SELECT_EACH_CHUNK) {
        let query = SelectEach {
            selection: M::as_select(),
            from: T::table().from_clause(),
            where_clauses: chunk
                .iter()
                .map(|row| T::table().find(row.id()).into_update_target().where_clause)
                .collect(),
        };
        out.extend(query.load::<M>(conn).await?);
    }
    Ok(out)
}

impl<'q, Tgt, T, W, C, M> AsyncPurgingWrite<'q, SelectFirst, C, M> for Delete<Tgt>
where
    Tgt: IntoUpdateTarget<Table = T, WhereClause = W> + Send,
    T: Table + HasTable<Table = T> + Send,
    T::FromClause: Send,
    W: Send + Sync,
    C: AsyncOutboxConnection,
    C::Backend: PurgeBackend,
    M: PurgeTargets + Selectable<C::Backend> + Send + 'static,
    SelectRows<Sel<M, C::Backend>, T::FromClause, W>: LoadQuery<'q, C, M> + 'q,
    W: Clone,
    DeleteStatement<T, W>: ExecuteDsl<C>,
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
            let ((n, old), staged) = conn
                .transaction(async move |conn: &mut C| {
                    let parts = Parts::of(target);
                    let old: Vec<M> = SelectRows {
                        selection: M::as_select(),
                        from: parts.table.from_clause(),
                        where_clause: parts.where_clause.clone(),
                        suffix: <C::Backend as PurgeBackend>::FOR_UPDATE,
                    }
                    .load(conn)
                    .await?;
                    let n = diesel::delete(parts).execute(conn).await?;
                    let staged = stage(conn, source, backends_ref, targets_of(&old)).await;
                    Ok::<_, Error>(((n, old), staged))
                })
                .await?;
            plan.finish_async(staged).await;
            Ok((n, old))
        }
    }
}
