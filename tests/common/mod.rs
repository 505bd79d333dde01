//! Shared test support: fresh databases (SQLite always; PostgreSQL and MariaDB on 127.0.0.1
//! when reachable, and required when `CI=true`), made by `cache_purge_hooks_testing::db` and
//! given the test entities' tables here, and the test entities.
#![allow(dead_code)]

pub mod entities;

use cache_purge_hooks_testing::db;
pub use cache_purge_hooks_testing::db::TestDb;
use sea_orm::{ConnectionTrait, Schema};

/// Creates the test entities' tables; their statements are not counted as the test's.
async fn with_schema(test_db: TestDb) -> TestDb {
    let db = &test_db.db;
    let schema = Schema::new(db.get_database_backend());
    let backend = db.get_database_backend();
    for stmt in [
        schema.create_table_from_entity(entities::category::Entity),
        schema.create_table_from_entity(entities::post::Entity),
        schema.create_table_from_entity(entities::comment::Entity),
        schema.create_table_from_entity(entities::page::Entity),
    ] {
        db.execute(&stmt)
            .await
            .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
    }
    test_db.take_statements();
    test_db
}

pub async fn sqlite() -> TestDb {
    with_schema(db::sqlite().await).await
}

pub async fn postgres() -> Option<TestDb> {
    Some(with_schema(db::postgres().await?).await)
}

pub async fn mariadb() -> Option<TestDb> {
    Some(with_schema(db::mariadb().await?).await)
}

/// SQLite, plus PostgreSQL and MariaDB where reachable (required in CI).
pub async fn all_databases() -> Vec<TestDb> {
    let mut dbs = vec![sqlite().await];
    dbs.extend(postgres().await);
    dbs.extend(mariadb().await);
    dbs
}
