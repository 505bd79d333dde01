//! MySQL and MariaDB: no `RETURNING`, the rows are read with `SELECT`s in the write's
//! transaction.

use cache_purge_hooks_engine::PurgeTargets;
use diesel::Identifiable;
use diesel::associations::HasTable;
use diesel::connection::Connection;
use diesel::dsl::Find;
use diesel::query_builder::{
    AsQuery, DeleteStatement, InsertStatement, IntoUpdateTarget, QueryFragment, UpdateStatement,
};
use diesel::query_dsl::LoadQuery;
use diesel::query_dsl::methods::{ExecuteDsl, FindDsl};
use diesel::result::QueryResult;
use diesel::{RunQueryDsl, Selectable, SelectableHelper, Table};

use super::{OutboxConnection, PurgingWrite, run};
use crate::backend::{PurgeBackend, SelectFirst};
use crate::deliver::targets_of;
use crate::mysql::{check_single_key, inserted_rows_missing};
use crate::query::{
    FindWhere, IdOf, RESET_LAST_INSERT_ID, SELECT_EACH_CHUNK, Sel, SelectEach, SelectInserted,
    SelectRows,
};
use crate::write::{Changeset, Delete, Parts, Update, writes_url_field};

impl<'q, T, U, Op, C, M> PurgingWrite<'q, SelectFirst, C, M> for InsertStatement<T, U, Op>
where
    T: Table + HasTable<Table = T>,
    T::PrimaryKey: QueryFragment<C::Backend>,
    T::FromClause: QueryFragment<C::Backend>,
    C: OutboxConnection,
    C::Backend: PurgeBackend,
    M: PurgeTargets + Selectable<C::Backend> + 'static,
    Self: ExecuteDsl<C>,
    diesel::query_builder::SqlQuery: ExecuteDsl<C>,
    SelectInserted<Sel<M, C::Backend>, T::FromClause, T::PrimaryKey>: LoadQuery<'q, C, M>,
{
    fn write(self, conn: &mut C, _rows: bool) -> QueryResult<(usize, Vec<M>)> {
        let table = T::table();
        check_single_key::<C::Backend, T>(&table)?;
        run::<C, M, _>(conn, |conn| {
            diesel::sql_query(RESET_LAST_INSERT_ID).execute(conn)?;
            let n = self.execute(conn)?;
            let rows: Vec<M> = if n == 0 {
                Vec::new()
            } else {
                SelectInserted {
                    selection: M::as_select(),
                    from: table.from_clause(),
                    key: table.primary_key(),
                    limit: n.to_string(),
                }
                .load(conn)?
            };
            if rows.len() < n {
                inserted_rows_missing(std::any::type_name::<M>(), n, rows.len());
            }
            let targets = targets_of(&rows);
            Ok(((n, rows), targets))
        })
    }
}

impl<'q, Tgt, T, W, CS, C, M> PurgingWrite<'q, SelectFirst, C, M> for Update<Tgt, Changeset<T, CS>>
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
    UpdateStatement<T, W, CS>: AsQuery + ExecuteDsl<C>,
    for<'m> &'m M: Identifiable<Table = T>,
    for<'m> T: FindDsl<IdOf<'m, M>>,
    for<'m> Find<T, IdOf<'m, M>>: IntoUpdateTarget<Table = T>,
    for<'m> SelectEach<Sel<M, C::Backend>, T::FromClause, FindWhere<'m, T, M>>: LoadQuery<'m, C, M>,
{
    fn write(self, conn: &mut C, rows_wanted: bool) -> QueryResult<(usize, Vec<M>)> {
        let changeset = self.changeset.changeset;
        let target = self.target;
        let url_written = writes_url_field::<C::Backend, M, CS>(&changeset);
        run::<C, M, _>(conn, |conn| {
            let parts = Parts::of(target);
            let old: Vec<M> = SelectRows {
                selection: M::as_select(),
                from: parts.table.from_clause(),
                where_clause: parts.where_clause.clone(),
                suffix: <C::Backend as PurgeBackend>::FOR_UPDATE,
            }
            .load(conn)?;
            let n = diesel::update(parts)
                .set(Changeset::new(changeset))
                .execute(conn)?;
            let new: Vec<M> = if (rows_wanted || url_written) && !old.is_empty() {
                select_each(conn, &old)?
            } else {
                Vec::new()
            };
            let targets = targets_of(old.iter().chain(&new));
            Ok(((n, new), targets))
        })
    }
}

/// MySQL: reads `rows` again, each by its primary key.
fn select_each<'m, C, M, T>(conn: &mut C, rows: &'m [M]) -> QueryResult<Vec<M>>
where
    C: Connection,
    C::Backend: PurgeBackend,
    T: Table + HasTable<Table = T>,
    M: Selectable<C::Backend>,
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
        out.extend(query.load::<M>(conn)?);
    }
    Ok(out)
}

impl<'q, Tgt, T, W, C, M> PurgingWrite<'q, SelectFirst, C, M> for Delete<Tgt>
where
    Tgt: IntoUpdateTarget<Table = T, WhereClause = W>,
    T: Table + HasTable<Table = T>,
    C: OutboxConnection,
    C::Backend: PurgeBackend,
    M: PurgeTargets + Selectable<C::Backend> + 'static,
    SelectRows<Sel<M, C::Backend>, T::FromClause, W>: LoadQuery<'q, C, M>,
    W: Clone,
    DeleteStatement<T, W>: ExecuteDsl<C>,
{
    fn write(self, conn: &mut C, _rows: bool) -> QueryResult<(usize, Vec<M>)> {
        let target = self.target;
        run::<C, M, _>(conn, |conn| {
            let parts = Parts::of(target);
            let old: Vec<M> = SelectRows {
                selection: M::as_select(),
                from: parts.table.from_clause(),
                where_clause: parts.where_clause.clone(),
                suffix: <C::Backend as PurgeBackend>::FOR_UPDATE,
            }
            .load(conn)?;
            let n = diesel::delete(parts).execute(conn)?;
            let targets = targets_of(&old);
            Ok(((n, old), targets))
        })
    }
}
