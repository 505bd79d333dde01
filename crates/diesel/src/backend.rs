//! What differs between the databases: how the affected rows of a write are found.

use diesel::backend::Backend;
use diesel::query_builder::QueryFragment;

/// A Diesel backend the purging writes support: PostgreSQL (`postgres` feature), SQLite
/// (`sqlite`) and MySQL / MariaDB (`mysql`).
///
/// It says how a write finds the rows it affected ([`Strategy`](Self::Strategy)): from the
/// write itself with `RETURNING` ([`Returning`]) or, on MySQL, which has none, with `SELECT`s
/// in the write's transaction ([`SelectFirst`]). Sealed: implemented for Diesel's backends
/// only.
pub trait PurgeBackend: Backend + sealed::Sealed {
    /// [`Returning`] or [`SelectFirst`].
    type Strategy: Strategy;

    /// The suffix that locks the rows a `SELECT` reads until the transaction ends (empty where
    /// the database has no row locks: SQLite locks the whole database on the first write).
    #[doc(hidden)]
    const FOR_UPDATE: &'static str;

    /// The SQL of a fragment (binds left as placeholders, their values after ` -- binds: `),
    /// or `None` if it cannot be rendered.
    #[doc(hidden)]
    fn render<Q: QueryFragment<Self>>(fragment: &Q) -> Option<String>;
}

/// `debug_query`'s text, without the panic of `to_string` when a fragment fails to render.
#[cfg(any(feature = "postgres", feature = "sqlite", feature = "mysql"))]
fn render_with<DB, Q>(fragment: &Q) -> Option<String>
where
    DB: Backend + Default,
    DB::QueryBuilder: Default,
    Q: QueryFragment<DB>,
{
    use std::fmt::Write as _;
    let mut out = String::new();
    write!(out, "{}", diesel::debug_query::<DB, _>(fragment)).ok()?;
    Some(out)
}

/// How a write finds its rows: the sealed markers [`Returning`] and [`SelectFirst`].
pub trait Strategy: sealed::Sealed {}

/// The write returns its rows (`INSERT/UPDATE/DELETE ... RETURNING`): PostgreSQL, SQLite ≥
/// 3.35. An update that writes a URL field reads the old rows first (one `SELECT`, with
/// `FOR UPDATE` on PostgreSQL).
#[derive(Clone, Copy, Debug, Default)]
pub struct Returning;

/// The rows are read with `SELECT` in the write's transaction: MySQL and MariaDB, whose
/// Diesel backend has no `RETURNING`.
///
/// - insert: the rows from `LAST_INSERT_ID()` on (needs a single-column `AUTO_INCREMENT`
///   primary key that the insert generates);
/// - update: the rows the `WHERE` matches, read `FOR UPDATE` before the `UPDATE`, then again
///   by primary key afterwards (needs `#[derive(Identifiable)]` on the model);
/// - delete: the rows the `WHERE` matches, read `FOR UPDATE` before the `DELETE`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SelectFirst;

impl Strategy for Returning {}
impl Strategy for SelectFirst {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Returning {}
    impl Sealed for super::SelectFirst {}
    #[cfg(feature = "postgres")]
    impl Sealed for diesel::pg::Pg {}
    #[cfg(feature = "sqlite")]
    impl Sealed for diesel::sqlite::Sqlite {}
    #[cfg(feature = "mysql")]
    impl Sealed for diesel::mysql::Mysql {}
}

#[cfg(feature = "postgres")]
impl PurgeBackend for diesel::pg::Pg {
    type Strategy = Returning;
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    fn render<Q: QueryFragment<Self>>(fragment: &Q) -> Option<String> {
        render_with::<Self, Q>(fragment)
    }
}

#[cfg(feature = "sqlite")]
impl PurgeBackend for diesel::sqlite::Sqlite {
    type Strategy = Returning;
    const FOR_UPDATE: &'static str = "";
    fn render<Q: QueryFragment<Self>>(fragment: &Q) -> Option<String> {
        render_with::<Self, Q>(fragment)
    }
}

#[cfg(feature = "mysql")]
impl PurgeBackend for diesel::mysql::Mysql {
    type Strategy = SelectFirst;
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    fn render<Q: QueryFragment<Self>>(fragment: &Q) -> Option<String> {
        render_with::<Self, Q>(fragment)
    }
}
