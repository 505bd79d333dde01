//! The outbox table's schema: [`Migration`] for sea-orm-migration, [`create_table`] for
//! everything else.

use sea_orm::sea_query::{Alias, ColumnDef, Index, IndexCreateStatement, Table};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
#[cfg(feature = "migration")]
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

use super::entity::{Column, Entity};

/// The name of the claim index on `(backend, dead_at, available_at, id)`.
pub(crate) const CLAIM_INDEX: &str = "idx_cache_purge_outbox_claim";

/// PostgreSQL's `fillfactor` of the outbox table: the share of each heap page that inserts
/// fill, the rest kept for the claim's `UPDATE` of the lease columns. With room on its page
/// and no indexed column changed (the claim index has no lease column), the new row version
/// is a HOT update: no new entry in either index. At the default 100 every page is full, so
/// each claimed row moves to another page and gets new entries in both indexes.
///
/// The old versions stay until the claim commits, so a page must hold each row twice, the
/// second time with `locked_until` and `locked_by` set. 30 is enough for the smallest rows
/// (one short URL) leased by the longest default worker id (a 64-character host name, a
/// 7-digit pid); 40 and 50 were not (measured on PostgreSQL 15, `outbox_store.rs` checks it).
pub(crate) const POSTGRES_FILLFACTOR: u8 = 30;

/// Creates the `cache_purge_outbox` table and its index: add it to your `Migrator` (feature
/// `migration`, on by default).
///
/// ```
/// use sea_orm_migration::prelude::*;
///
/// pub struct Migrator;
///
/// #[async_trait::async_trait]
/// impl MigratorTrait for Migrator {
///     fn migrations() -> Vec<Box<dyn MigrationTrait>> {
///         vec![
///             // ... your own migrations ...
///             Box::new(cache_purge_hooks_sea_orm::outbox::Migration),
///         ]
///     }
/// }
/// ```
///
/// Its name is `m20261125_000100_cache_purge_outbox` (what `seaql_migrations` records).
/// `up` creates the table only if it does not exist yet (so a table made from
/// `docs/outbox.sql` is kept); `down` drops it, with any purge still waiting in it.
#[cfg(feature = "migration")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Migration;

#[cfg(feature = "migration")]
impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000100_cache_purge_outbox"
    }
}

#[cfg(feature = "migration")]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_table(manager.get_connection()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_table(manager.get_connection()).await
    }
}

/// Creates the `cache_purge_outbox` table and its claim index unless they exist: what
/// [`Migration`] runs, for applications without sea-orm-migration (and tests).
///
/// The same schema as plain SQL for each database is in `docs/outbox.sql`.
pub async fn create_table<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    for stmt in create_statements(conn.get_database_backend()) {
        conn.execute_raw(stmt)
            .await
            .map_err(|e| DbErr::Migration(format!("creating the cache purge outbox table: {e}")))?;
    }
    Ok(())
}

/// Drops the `cache_purge_outbox` table if it exists, with any purge still waiting in it.
pub async fn drop_table<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    conn.execute(&Table::drop().table(Entity).if_exists().to_owned())
        .await
        .map(drop)
}

fn claim_index() -> IndexCreateStatement {
    Index::create()
        .name(CLAIM_INDEX)
        .table(Entity)
        .col(Column::Backend)
        .col(Column::DeadAt)
        .col(Column::AvailableAt)
        .col(Column::Id)
        .to_owned()
}

/// The DDL for one database: `CREATE TABLE IF NOT EXISTS`, then (except on MySQL, where the
/// index is part of the table's definition, MySQL having no `CREATE INDEX IF NOT EXISTS`)
/// `CREATE INDEX IF NOT EXISTS`.
pub(crate) fn create_statements(backend: DbBackend) -> Vec<Statement> {
    let mut targets = ColumnDef::new(Column::Targets);
    if backend == DbBackend::MySql {
        // TEXT holds 64 KiB in MySQL; one target may be longer than a row's usual share.
        targets.custom(Alias::new("mediumtext"));
    } else {
        targets.text();
    }
    let mut table = Table::create();
    table
        .table(Entity)
        .if_not_exists()
        .col(
            ColumnDef::new(Column::Id)
                .big_integer()
                .not_null()
                .auto_increment()
                .primary_key(),
        )
        .col(ColumnDef::new(Column::Backend).string_len(255).not_null())
        .col(targets.not_null())
        .col(ColumnDef::new(Column::CreatedAt).big_integer().not_null())
        .col(ColumnDef::new(Column::AvailableAt).big_integer().not_null())
        .col(ColumnDef::new(Column::LockedUntil).big_integer().null())
        .col(ColumnDef::new(Column::LockedBy).string_len(255).null())
        .col(
            ColumnDef::new(Column::Attempts)
                .integer()
                .not_null()
                .default(0),
        )
        .col(ColumnDef::new(Column::LastError).text().null())
        .col(ColumnDef::new(Column::DeadAt).big_integer().null());
    if backend == DbBackend::MySql {
        table.index(&mut claim_index());
        vec![backend.build(&table)]
    } else {
        let mut statements = vec![
            backend.build(&table),
            backend.build(&claim_index().if_not_exists().to_owned()),
        ];
        if backend == DbBackend::Postgres {
            // A statement of its own rather than `WITH (...)` in the CREATE, so that a table
            // made earlier gets it too (for the pages written from then on).
            statements.push(Statement::from_string(
                backend,
                format!(
                    r#"ALTER TABLE "cache_purge_outbox" SET (fillfactor = {POSTGRES_FILLFACTOR})"#
                ),
            ));
        }
        statements
    }
}
