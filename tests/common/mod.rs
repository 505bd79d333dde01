//! Shared test support: fresh databases (SQLite always; PostgreSQL and MariaDB on 127.0.0.1
//! when reachable, and required when `CI=true`), and the test entities.
#![allow(dead_code)]

pub mod entities;
pub mod logs;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Schema};

pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432";
pub const MARIADB_URL: &str = "mysql://root@127.0.0.1:3306";

/// A database made for one test, dropped afterwards.
pub struct TestDb {
    pub db: DatabaseConnection,
    pub label: &'static str,
    /// Statements executed, for asserting that no extra query ran.
    pub statements: Arc<std::sync::Mutex<Vec<String>>>,
    cleanup: Option<(String, String)>,
    sqlite_file: Option<tempfile::TempDir>,
}

impl TestDb {
    /// The SQL statements run since the last call.
    pub fn take_statements(&self) -> Vec<String> {
        std::mem::take(&mut *self.statements.lock().unwrap())
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// A URL for another connection pool to this database (what another process would use).
    pub async fn url(&self) -> String {
        let backend = self.backend();
        let (sql, col) = match backend {
            DbBackend::Sqlite => (
                "SELECT file FROM pragma_database_list WHERE name = 'main'",
                "file",
            ),
            DbBackend::Postgres => ("SELECT current_database() AS name", "name"),
            _ => ("SELECT DATABASE() AS name", "name"),
        };
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(backend, sql))
            .await
            .unwrap()
            .unwrap();
        let value: String = row.try_get("", col).unwrap();
        match backend {
            DbBackend::Sqlite => format!("sqlite://{value}?mode=rw"),
            DbBackend::Postgres => format!("{POSTGRES_URL}/{value}"),
            _ => format!("{MARIADB_URL}/{value}"),
        }
    }

    pub async fn close(self) {
        let TestDb {
            db,
            cleanup,
            sqlite_file,
            ..
        } = self;
        let _ = db.close().await;
        if let Some((admin_url, name)) = cleanup
            && let Ok(admin) = Database::connect(&admin_url).await
        {
            let sql = if admin_url.starts_with("postgres") {
                format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")
            } else {
                format!("DROP DATABASE IF EXISTS `{name}`")
            };
            let _ = admin.execute_unprepared(&sql).await;
            let _ = admin.close().await;
        }
        drop(sqlite_file);
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique_name() -> String {
    format!(
        "cph_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("CACHE_PURGE_REQUIRE_DATABASES").is_ok_and(|v| v == "1")
}

async fn with_metrics(
    mut db: DatabaseConnection,
) -> (DatabaseConnection, Arc<std::sync::Mutex<Vec<String>>>) {
    let statements = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = statements.clone();
    db.set_metric_callback(move |info| {
        sink.lock().unwrap().push(info.statement.sql.clone());
    });
    (db, statements)
}

async fn create_schema(db: &DatabaseConnection) {
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
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
    let (db, statements) = with_metrics(Database::connect(url).await.unwrap()).await;
    create_schema(&db).await;
    statements.lock().unwrap().clear();
    TestDb {
        db,
        label: "sqlite",
        statements,
        cleanup: None,
        sqlite_file: Some(dir),
    }
}

async fn server_db(admin_base: &str, admin_db: &str, label: &'static str) -> Option<TestDb> {
    let admin_url = format!("{admin_base}/{admin_db}");
    let admin = match Database::connect(&admin_url).await {
        Ok(a) => a,
        Err(e) => {
            if required() {
                panic!("{label} at {admin_url} is required in CI but unreachable: {e}");
            }
            eprintln!("skipping {label}: {admin_url} unreachable ({e}); set CI=true to require it");
            return None;
        }
    };
    let name = unique_name();
    let create = if label == "postgres" {
        format!("CREATE DATABASE \"{name}\"")
    } else {
        format!("CREATE DATABASE `{name}`")
    };
    admin.execute_unprepared(&create).await.unwrap();
    admin.close().await.unwrap();
    let (db, statements) = with_metrics(
        Database::connect(format!("{admin_base}/{name}"))
            .await
            .unwrap(),
    )
    .await;
    create_schema(&db).await;
    statements.lock().unwrap().clear();
    Some(TestDb {
        db,
        label,
        statements,
        cleanup: Some((admin_url, name)),
        sqlite_file: None,
    })
}

pub async fn postgres() -> Option<TestDb> {
    server_db(POSTGRES_URL, "test", "postgres").await
}

pub async fn mariadb() -> Option<TestDb> {
    server_db(MARIADB_URL, "test", "mariadb").await
}

/// SQLite, plus PostgreSQL and MariaDB where reachable (required in CI).
pub async fn all_databases() -> Vec<TestDb> {
    let mut dbs = vec![sqlite().await];
    dbs.extend(postgres().await);
    dbs.extend(mariadb().await);
    dbs
}
