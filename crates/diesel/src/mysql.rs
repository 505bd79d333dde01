//! What MySQL needs besides the statements: checks and messages.

use diesel::Table;
use diesel::query_builder::QueryFragment;
use diesel::result::{Error, QueryResult};

use crate::backend::PurgeBackend;

/// The error of an insert on MySQL into a table whose primary key is not one column.
pub(crate) fn composite_key_error(table: &str) -> Error {
    Error::QueryBuilderError(
        format!(
            "cache-purge-hooks: on MySQL, which has no RETURNING, the rows an insert \
             creates are found from LAST_INSERT_ID(), which needs a single-column \
             AUTO_INCREMENT primary key; the primary key of {table} has several columns. \
             Insert with `execute` and purge the rows' URLs yourself."
        )
        .into(),
    )
}

/// Checks, before a MySQL insert, that the table's primary key is one column.
pub(crate) fn check_single_key<DB, T>(table: &T) -> QueryResult<()>
where
    DB: PurgeBackend,
    T: Table,
    T::PrimaryKey: QueryFragment<DB>,
    T::FromClause: QueryFragment<DB>,
{
    let key = DB::render(&table.primary_key()).unwrap_or_default();
    let key = key.split(" -- binds: ").next().unwrap_or_default();
    if key.contains(',') {
        let name = DB::render(&table.from_clause()).unwrap_or_default();
        let name = name.split(" -- binds: ").next().unwrap_or_default();
        return Err(composite_key_error(name));
    }
    Ok(())
}

/// Logs a MySQL insert whose rows were not all found again.
pub(crate) fn inserted_rows_missing(source: &str, inserted: usize, found: usize) {
    tracing::error!(
        target: "cache_purge_hooks",
        source,
        inserted,
        found,
        "MySQL insert: not every inserted row was found from LAST_INSERT_ID() (rows with \
         explicit keys, an upsert that updated, or interleaved AUTO_INCREMENT values); the \
         URLs of the rows not found are not purged"
    );
}
