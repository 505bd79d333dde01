//! Shared test support: a private database per test (SQLite always; PostgreSQL and MariaDB on
//! 127.0.0.1 when reachable, and required when `CI=true` or
//! `CACHE_PURGE_REQUIRE_DATABASES=1`), the test schema and models, and a purge pipeline with a
//! memory backend.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cache_purge_hooks_engine::backend::MemoryBackend;
use cache_purge_hooks_engine::{Delivery, Purger};
use cache_purge_hooks_macros::CachePurge;
use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::prelude::*;

pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432";
pub const MARIADB_URL: &str = "mysql://root@127.0.0.1:3306";

diesel::table! {
    posts (id) {
        id -> Integer,
        slug -> Text,
        title -> Text,
        category_id -> Integer,
        published -> Bool,
    }
}

diesel::table! {
    pages (id) {
        id -> Integer,
        path_slug -> Text,
        body -> Text,
    }
}

diesel::table! {
    tags (post_id, name) {
        post_id -> Integer,
        name -> Text,
    }
}

/// A blog post: a path URL, the home page, and a feed URL with a query value.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Insertable, CachePurge)]
#[diesel(table_name = posts)]
#[cache_purge(
    url = "/posts/{slug}",
    url = "/",
    url = "/feed.xml?category={category_id}"
)]
pub struct Post {
    pub id: i32,
    pub slug: String,
    pub title: String,
    pub category_id: i32,
    pub published: bool,
}

/// What an insert gives (the id is generated).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = posts)]
pub struct NewPost<'a> {
    pub slug: &'a str,
    pub title: &'a str,
    pub category_id: i32,
    pub published: bool,
}

pub fn new_post(slug: &str, category_id: i32) -> NewPost<'_> {
    NewPost {
        slug,
        title: "A title",
        category_id,
        published: false,
    }
}

/// A changeset struct: `None` fields are left alone.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = posts)]
pub struct PostForm {
    pub slug: Option<String>,
    pub title: Option<String>,
}

/// A field whose column has another name: the URL field check cannot map it, so every
/// update reads the old row.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Insertable, CachePurge)]
#[diesel(table_name = pages)]
#[cache_purge(url = "/pages/{slug}")]
pub struct Page {
    pub id: i32,
    #[diesel(column_name = path_slug)]
    pub slug: String,
    pub body: String,
}

/// A composite primary key (no AUTO_INCREMENT on MySQL).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, CachePurge)]
#[diesel(table_name = tags)]
#[cache_purge(url = "/tags/{name}")]
pub struct Tag {
    pub post_id: i32,
    pub name: String,
}

/// The SQL statements run on a connection, for asserting which reads a write made.
#[derive(Clone, Default)]
pub struct Statements(Arc<Mutex<Vec<String>>>);

impl Statements {
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Instrumentation for Statements {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            self.0.lock().unwrap().push(query.to_string());
        }
    }
}

/// A database made for one test, dropped afterwards.
pub struct TestDb<C> {
    pub conn: C,
    pub label: &'static str,
    /// A URL for another connection to the same database.
    pub url: String,
    pub statements: Statements,
    cleanup: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl<C> Drop for TestDb<C> {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.cleanup.take() else {
            return;
        };
        if admin_url.starts_with("postgres") {
            if let Ok(mut admin) = PgConnection::establish(&admin_url) {
                let _ =
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut admin);
            }
        } else if let Ok(mut admin) = MysqlConnection::establish(&admin_url) {
            let _ =
                diesel::sql_query(format!("DROP DATABASE IF EXISTS `{name}`")).execute(&mut admin);
        }
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique_name() -> String {
    format!(
        "cphd_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("CACHE_PURGE_REQUIRE_DATABASES").is_ok_and(|v| v == "1")
}

const SQLITE_SCHEMA: &[&str] = &[
    "CREATE TABLE posts (id INTEGER PRIMARY KEY AUTOINCREMENT, slug TEXT NOT NULL UNIQUE, \
     title TEXT NOT NULL, category_id INTEGER NOT NULL, published BOOLEAN NOT NULL DEFAULT 0)",
    "CREATE TABLE pages (id INTEGER PRIMARY KEY AUTOINCREMENT, path_slug TEXT NOT NULL, body TEXT NOT NULL)",
    "CREATE TABLE tags (post_id INTEGER NOT NULL, name TEXT NOT NULL, PRIMARY KEY (post_id, name))",
];

const POSTGRES_SCHEMA: &[&str] = &[
    "CREATE TABLE posts (id SERIAL PRIMARY KEY, slug TEXT NOT NULL UNIQUE, title TEXT NOT NULL, \
     category_id INTEGER NOT NULL, published BOOLEAN NOT NULL DEFAULT false)",
    "CREATE TABLE pages (id SERIAL PRIMARY KEY, path_slug TEXT NOT NULL, body TEXT NOT NULL)",
    "CREATE TABLE tags (post_id INTEGER NOT NULL, name TEXT NOT NULL, PRIMARY KEY (post_id, name))",
];

const MYSQL_SCHEMA: &[&str] = &[
    "CREATE TABLE posts (id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY, slug VARCHAR(191) NOT NULL UNIQUE, \
     title VARCHAR(255) NOT NULL, category_id INTEGER NOT NULL, published BOOLEAN NOT NULL DEFAULT false)",
    "CREATE TABLE pages (id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY, path_slug VARCHAR(255) NOT NULL, \
     body TEXT NOT NULL)",
    "CREATE TABLE tags (post_id INTEGER NOT NULL, name VARCHAR(191) NOT NULL, PRIMARY KEY (post_id, name))",
];

fn create_schema<C: Connection>(conn: &mut C, schema: &[&str]) {
    for sql in schema {
        conn.batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

pub fn sqlite() -> TestDb<SqliteConnection> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.db").display().to_string();
    let mut conn = SqliteConnection::establish(&path).unwrap();
    conn.batch_execute("PRAGMA busy_timeout = 5000").unwrap();
    create_schema(&mut conn, SQLITE_SCHEMA);
    let statements = Statements::default();
    conn.set_instrumentation(statements.clone());
    TestDb {
        conn,
        label: "sqlite",
        url: path,
        statements,
        cleanup: None,
        _dir: Some(dir),
    }
}

fn reach<C: Connection>(admin_url: &str, label: &str) -> Option<C> {
    match C::establish(admin_url) {
        Ok(c) => Some(c),
        Err(e) => {
            if required() {
                panic!("{label} at {admin_url} is required in CI but unreachable: {e}");
            }
            eprintln!("skipping {label}: {admin_url} unreachable ({e}); set CI=true to require it");
            None
        }
    }
}

pub fn postgres() -> Option<TestDb<PgConnection>> {
    let admin_url = format!("{POSTGRES_URL}/test");
    let mut admin = reach::<PgConnection>(&admin_url, "postgres")?;
    let name = unique_name();
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .unwrap();
    let url = format!("{POSTGRES_URL}/{name}");
    let mut conn = PgConnection::establish(&url).unwrap();
    create_schema(&mut conn, POSTGRES_SCHEMA);
    let statements = Statements::default();
    conn.set_instrumentation(statements.clone());
    Some(TestDb {
        conn,
        label: "postgres",
        url,
        statements,
        cleanup: Some((admin_url, name)),
        _dir: None,
    })
}

pub fn mysql() -> Option<TestDb<MysqlConnection>> {
    let admin_url = format!("{MARIADB_URL}/test");
    let mut admin = reach::<MysqlConnection>(&admin_url, "mariadb")?;
    let name = unique_name();
    diesel::sql_query(format!("CREATE DATABASE `{name}`"))
        .execute(&mut admin)
        .unwrap();
    let url = format!("{MARIADB_URL}/{name}");
    let mut conn = MysqlConnection::establish(&url).unwrap();
    create_schema(&mut conn, MYSQL_SCHEMA);
    let statements = Statements::default();
    conn.set_instrumentation(statements.clone());
    Some(TestDb {
        conn,
        label: "mariadb",
        url,
        statements,
        cleanup: Some((admin_url, name)),
        _dir: None,
    })
}

/// A purge pipeline with one memory backend, and the runtime its workers run on.
pub struct Pipeline {
    pub rt: tokio::runtime::Runtime,
    pub purger: Purger,
    pub memory: MemoryBackend,
}

impl Pipeline {
    pub fn new() -> Self {
        Self::with(Delivery::AfterCommit)
    }

    pub fn with(delivery: Delivery) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let memory = MemoryBackend::new();
        let purger = rt.block_on(async {
            Purger::builder()
                .backend("memory", memory.clone())
                .delivery(delivery)
                .build()
                .unwrap()
        });
        Pipeline { rt, purger, memory }
    }

    /// Runs blocking Diesel code with this pipeline's purger as `Purger::current()`.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        self.rt.block_on(self.purger.scope(async { f() }))
    }

    /// Every URL purged since the last call, sorted and without duplicates.
    pub fn purged(&self) -> Vec<String> {
        self.rt.block_on(self.purger.flush());
        let mut urls = self.memory.take_urls();
        urls.sort();
        urls.dedup();
        urls
    }
}

/// Sorted, as `Pipeline::purged` returns them.
pub fn urls(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.sort();
    v.dedup();
    v
}

/// Runs a test body once per database: `sqlite`, `postgres` and `mariadb` tests of the same
/// name, each with a fresh database (`$db: TestDb<_>`), the servers skipped when unreachable
/// outside CI.
#[macro_export]
macro_rules! on_every_database {
    ($(#[$meta:meta])* fn $name:ident($db:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn sqlite() {
                #[allow(unused_mut)]
                let mut $db = $crate::common::sqlite();
                $body
            }

            #[test]
            fn postgres() {
                let Some(mut $db) = $crate::common::postgres() else { return };
                let _ = &mut $db;
                $body
            }

            #[test]
            fn mariadb() {
                let Some(mut $db) = $crate::common::mysql() else { return };
                let _ = &mut $db;
                $body
            }
        }
    };
}
