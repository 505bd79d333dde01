//! The statements the writes run besides the user's own: reading the rows a write affects.
//!
//! Built from public Diesel pieces (a model's `Selectable` selection, a table's `FROM`
//! clause, an update target's `WHERE` clause), so they bind values and quote identifiers
//! exactly as Diesel does.

use diesel::backend::Backend;
use diesel::dsl::AsSelect;
use diesel::expression::Expression;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;

/// The selection of a model's columns.
pub(crate) type Sel<M, DB> = AsSelect<M, DB>;

/// The primary key value of a borrowed `Identifiable` model.
#[cfg(feature = "mysql")]
pub(crate) type IdOf<'m, M> = <&'m M as diesel::Identifiable>::Id;

/// The `WHERE` clause of `table.find(id)`.
#[cfg(feature = "mysql")]
pub(crate) type FindWhere<'m, T, M> =
    <diesel::dsl::Find<T, IdOf<'m, M>> as diesel::query_builder::IntoUpdateTarget>::WhereClause;

/// `SELECT <selection> FROM <from> <where> <suffix>`: the rows an `UPDATE` or `DELETE` with
/// this `WHERE` clause is about to change (`suffix` = `FOR UPDATE` where rows can be locked).
///
/// The `WHERE` clause is a clone of the update target's, which the write itself then uses.
#[derive(Debug)]
pub struct SelectRows<S, F, W> {
    pub(crate) selection: S,
    pub(crate) from: F,
    pub(crate) where_clause: W,
    pub(crate) suffix: &'static str,
}

impl<S, F, W, DB> QueryFragment<DB> for SelectRows<S, F, W>
where
    DB: Backend,
    S: QueryFragment<DB>,
    F: QueryFragment<DB>,
    W: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("SELECT ");
        self.selection.walk_ast(out.reborrow())?;
        out.push_sql(" FROM ");
        self.from.walk_ast(out.reborrow())?;
        self.where_clause.walk_ast(out.reborrow())?;
        out.push_sql(self.suffix);
        Ok(())
    }
}

impl<S, F, W> QueryId for SelectRows<S, F, W> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<S: Expression, F, W> Query for SelectRows<S, F, W> {
    type SqlType = S::SqlType;
}

impl<S, F, W, Conn> diesel::RunQueryDsl<Conn> for SelectRows<S, F, W> {}

#[cfg(feature = "mysql")]
pub(crate) use mysql::*;

/// The statements only MySQL needs.
#[cfg(feature = "mysql")]
mod mysql {
    use super::*;

    /// MySQL, after an `INSERT`: `SELECT <selection> FROM <from> WHERE LAST_INSERT_ID() > 0 AND
    /// <key> >= LAST_INSERT_ID() ORDER BY <key> LIMIT <limit>`, the rows the insert generated
    /// (InnoDB hands a multi-row `INSERT` consecutive `AUTO_INCREMENT` values).
    #[derive(Debug)]
    pub struct SelectInserted<S, F, K> {
        pub(crate) selection: S,
        pub(crate) from: F,
        pub(crate) key: K,
        pub(crate) limit: String,
    }

    impl<S, F, K, DB> QueryFragment<DB> for SelectInserted<S, F, K>
    where
        DB: Backend,
        S: QueryFragment<DB>,
        F: QueryFragment<DB>,
        K: QueryFragment<DB>,
    {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
            out.push_sql("SELECT ");
            self.selection.walk_ast(out.reborrow())?;
            out.push_sql(" FROM ");
            self.from.walk_ast(out.reborrow())?;
            out.push_sql(" WHERE LAST_INSERT_ID() > 0 AND ");
            self.key.walk_ast(out.reborrow())?;
            out.push_sql(" >= LAST_INSERT_ID() ORDER BY ");
            self.key.walk_ast(out.reborrow())?;
            out.push_sql(" LIMIT ");
            out.push_sql(&self.limit);
            Ok(())
        }
    }

    impl<S, F, K> QueryId for SelectInserted<S, F, K> {
        type QueryId = ();
        const HAS_STATIC_QUERY_ID: bool = false;
    }

    impl<S: Expression, F, K> Query for SelectInserted<S, F, K> {
        type SqlType = S::SqlType;
    }

    impl<S, F, K, Conn> diesel::RunQueryDsl<Conn> for SelectInserted<S, F, K> {}

    /// MySQL, after an `UPDATE`: the rows again, each found by its own primary key
    /// (`SELECT ... WHERE <row 1's key> UNION ALL SELECT ... WHERE <row 2's key> ...`), since the
    /// update may have changed the columns its `WHERE` tested.
    #[derive(Debug)]
    pub struct SelectEach<S, F, W> {
        pub(crate) selection: S,
        pub(crate) from: F,
        pub(crate) where_clauses: Vec<W>,
    }

    impl<S, F, W, DB> QueryFragment<DB> for SelectEach<S, F, W>
    where
        DB: Backend,
        S: QueryFragment<DB>,
        F: QueryFragment<DB>,
        W: QueryFragment<DB>,
    {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
            for (i, where_clause) in self.where_clauses.iter().enumerate() {
                if i > 0 {
                    out.push_sql(" UNION ALL ");
                }
                out.push_sql("SELECT ");
                self.selection.walk_ast(out.reborrow())?;
                out.push_sql(" FROM ");
                self.from.walk_ast(out.reborrow())?;
                where_clause.walk_ast(out.reborrow())?;
            }
            Ok(())
        }
    }

    impl<S, F, W> QueryId for SelectEach<S, F, W> {
        type QueryId = ();
        const HAS_STATIC_QUERY_ID: bool = false;
    }

    impl<S: Expression, F, W> Query for SelectEach<S, F, W> {
        type SqlType = S::SqlType;
    }

    impl<S, F, W, Conn> diesel::RunQueryDsl<Conn> for SelectEach<S, F, W> {}

    /// How many rows [`SelectEach`] reads per statement.
    pub(crate) const SELECT_EACH_CHUNK: usize = 200;

    /// MySQL, before an `INSERT`: `DO LAST_INSERT_ID(0)`, so that an insert that generates no
    /// `AUTO_INCREMENT` value (explicit keys) is told apart from one that does.
    pub(crate) const RESET_LAST_INSERT_ID: &str = "DO LAST_INSERT_ID(0)";
}
