//! `RETURNING` backends (PostgreSQL, SQLite): the write returns its rows.

use cache_purge_hooks_engine::PurgeTargets;
use diesel::associations::HasTable;
use diesel::dsl::Returning as WithReturning;
use diesel::query_builder::{
    AsQuery, DeleteStatement, InsertStatement, IntoUpdateTarget, Query, QueryFragment,
    UpdateStatement,
};
use diesel::query_dsl::LoadQuery;
use diesel::result::QueryResult;
use diesel::{RunQueryDsl, Selectable, SelectableHelper, Table};

use super::{OutboxConnection, PurgingWrite, run};
use crate::backend::{PurgeBackend, Returning};
use crate::deliver::targets_of;
use crate::query::{Sel, SelectRows};
use crate::write::{Changeset, Delete, Parts, Update, writes_url_field};

impl<'q, T, U, Op, C, M> PurgingWrite<'q, Returning, C, M> for InsertStatement<T, U, Op>
where
    T: Table + HasTable<Table = T>,
    C: OutboxConnection,
    C::Backend: PurgeBackend,
    M: PurgeTargets + Selectable<C::Backend> + 'static,
    WithReturning<InsertStatement<T, U, Op>, Sel<M, C::Backend>>: Query + LoadQuery<'q, C, M>,
{
    fn write(self, conn: &mut C, _rows: bool) -> QueryResult<(usize, Vec<M>)> {
        run::<C, M, _>(conn, |conn| {
            let rows: Vec<M> = self.returning(M::as_returning()).get_results(conn)?;
            let targets = targets_of(&rows);
            Ok(((rows.len(), rows), targets))
        })
    }
}

impl<'q, Tgt, T, W, CS, C, M> PurgingWrite<'q, Returning, C, M> for Update<Tgt, Changeset<T, CS>>
where
    Tgt: IntoUpdateTarget<Table = T, WhereClause = W>,
    T: Table + HasTable<Table = T>,
    C: OutboxConnection,
    C::Backend: PurgeBackend,
    M: PurgeTargets + Selectable<C::Backend> + 'static,
    M::SelectExpression: QueryFragment<C::Backend>,
    CS: QueryFragment<C::Backend>,
    SelectRows<Sel<M, C::Backend>, T::FromClause, W>: LoadQuery<'q, C, M>,
    W: Clone,
    UpdateStatement<T, W, CS>: AsQuery,
    WithReturning<UpdateStatement<T, W, CS>, Sel<M, C::Backend>>: Query + LoadQuery<'q, C, M>,
{
    fn write(self, conn: &mut C, _rows: bool) -> QueryResult<(usize, Vec<M>)> {
        let changeset = self.changeset.changeset;
        let target = self.target;
        let read_old = writes_url_field::<C::Backend, M, CS>(&changeset);
        run::<C, M, _>(conn, |conn| {
            let parts = Parts::of(target);
            let old: Vec<M> = if read_old {
                SelectRows {
                    selection: M::as_select(),
                    from: parts.table.from_clause(),
                    where_clause: parts.where_clause.clone(),
                    suffix: <C::Backend as PurgeBackend>::FOR_UPDATE,
                }
                .load(conn)?
            } else {
                Vec::new()
            };
            let rows: Vec<M> = diesel::update(parts)
                .set(Changeset::new(changeset))
                .returning(M::as_returning())
                .get_results(conn)?;
            let targets = targets_of(old.iter().chain(&rows));
            Ok(((rows.len(), rows), targets))
        })
    }
}

impl<'q, Tgt, T, W, C, M> PurgingWrite<'q, Returning, C, M> for Delete<Tgt>
where
    Tgt: IntoUpdateTarget<Table = T, WhereClause = W>,
    T: Table + HasTable<Table = T>,
    C: OutboxConnection,
    C::Backend: PurgeBackend,
    M: PurgeTargets + Selectable<C::Backend> + 'static,
    Sel<M, C::Backend>: diesel::SelectableExpression<T>,
    WithReturning<DeleteStatement<T, W>, Sel<M, C::Backend>>: Query + LoadQuery<'q, C, M>,
{
    fn write(self, conn: &mut C, _rows: bool) -> QueryResult<(usize, Vec<M>)> {
        let target = self.target;
        run::<C, M, _>(conn, |conn| {
            let rows: Vec<M> = diesel::delete(target)
                .returning(M::as_returning())
                .get_results(conn)?;
            let targets = targets_of(&rows);
            Ok(((rows.len(), rows), targets))
        })
    }
}
