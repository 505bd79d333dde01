//! Fresh SeaORM databases for tests (feature `sea-orm`): SQLite always; PostgreSQL and MariaDB
//! on 127.0.0.1 when they are reachable, and required when `CI=true`.
//!
//! Every call makes a new, empty database with a unique name (a temp file for SQLite,
//! `CREATE DATABASE cph_<pid>_<n>` on the servers), connected through a pool whose statements
//! are recorded ([`TestDb::take_statements`], through SeaORM's metric callback), and
//! [`TestDb::close`] drops it again. The tables are the caller's: create them, then call
//! `take_statements()` so that the schema's statements are not counted as the test's.
//!
//! | database   | where                                                              |
//! |------------|--------------------------------------------------------------------|
//! | SQLite     | a file in a temp dir ([`sqlite`])                                 |
//! | PostgreSQL | [`POSTGRES_URL`]: user `postgres`, trust auth, database `test` to connect to ([`postgres`]) |
//! | MariaDB    | [`MARIADB_URL`]: user `root`, empty password, database `test` to connect to ([`mariadb`]) |
//!
//! A server that cannot be reached is skipped with a note on stderr ([`postgres`] and
//! [`mariadb`] return `None`), unless `CI` is `true` (or `1`) or
//! `CACHE_PURGE_REQUIRE_DATABASES=1`: then it panics, so that a CI run never passes without
//! them.
//!
//! ```no_run
//! use cache_purge_hooks_testing::db;
//! use sea_orm::ConnectionTrait;
//!
//! # async fn example() {
//! for db in db::all_databases().await {
//!     // The schema is the caller's.
//!     db.db
//!         .execute_unprepared("CREATE TABLE pages (id INTEGER PRIMARY KEY, path TEXT)")
//!         .await
//!         .unwrap_or_else(|e| panic!("{}: {e}", db.label));
//!     db.take_statements();
//!
//!     // ... the test, against db.db, then for instance:
//!     assert_eq!(db.take_statements().len(), 1, "{}: one query expected", db.label);
//!     db.close().await;
//! }
//! # }
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};

/// The PostgreSQL server the tests use (append `/database`).
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432";
/// The MariaDB (or MySQL) server the tests use (append `/database`).
pub const MARIADB_URL: &str = "mysql://root@127.0.0.1:3306";

/// A database made for one test, dropped by [`close`](TestDb::close).
pub struct TestDb {
    /// The connection pool to the database.
    pub db: DatabaseConnection,
    /// `"sqlite"`, `"postgres"` or `"mariadb"`, for assertion messages.
    pub label: &'static str,
    /// Statements executed, for asserting that no extra query ran.
    pub statements: Arc<Mutex<Vec<String>>>,
    cleanup: Option<(String, String)>,
    sqlite_file: Option<tempfile::TempDir>,
}

impl TestDb {
    /// The SQL statements run since the last call.
    pub fn take_statements(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .statements
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// The kind of database.
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
            .query_one_raw(Statement::from_string(backend, sql))
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

    /// Closes the pool and drops the database (deletes the SQLite file).
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

/// Whether PostgreSQL and MariaDB must be reachable: `CI=true` (or `1`), or
/// `CACHE_PURGE_REQUIRE_DATABASES=1`.
pub fn databases_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("CACHE_PURGE_REQUIRE_DATABASES").is_ok_and(|v| v == "1")
}

fn with_metrics(mut db: DatabaseConnection) -> (DatabaseConnection, Arc<Mutex<Vec<String>>>) {
    let statements = Arc::new(Mutex::new(Vec::new()));
    let sink = statements.clone();
    db.set_metric_callback(move |info| {
        sink.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(info.statement.sql.clone());
    });
    (db, statements)
}

/// A new, empty SQLite database in a temp dir.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
    let (db, statements) = with_metrics(Database::connect(url).await.unwrap());
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
            if databases_required() {
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
    );
    Some(TestDb {
        db,
        label,
        statements,
        cleanup: Some((admin_url, name)),
        sqlite_file: None,
    })
}

/// A new, empty database on the PostgreSQL at [`POSTGRES_URL`]; `None` (with a note on
/// stderr) when it is unreachable, a panic then if [`databases_required`].
pub async fn postgres() -> Option<TestDb> {
    server_db(POSTGRES_URL, "test", "postgres").await
}

/// A new, empty database on the MariaDB at [`MARIADB_URL`]; `None` (with a note on stderr)
/// when it is unreachable, a panic then if [`databases_required`].
pub async fn mariadb() -> Option<TestDb> {
    server_db(MARIADB_URL, "test", "mariadb").await
}

/// SQLite, plus PostgreSQL and MariaDB where reachable (required in CI), each new and empty.
pub async fn all_databases() -> Vec<TestDb> {
    let mut dbs = vec![sqlite().await];
    dbs.extend(postgres().await);
    dbs.extend(mariadb().await);
    dbs
}
