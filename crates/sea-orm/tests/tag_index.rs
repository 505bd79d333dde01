//! The SQL tag index (`cache_purge_hooks_sea_orm::tag_index`) against real databases: SQLite
//! always, PostgreSQL and MariaDB on 127.0.0.1 where reachable (required with `CI=true`);
//! and on SQLite behind a real nginx, purging a tag end to end in `http` and `files` modes.

use std::sync::Arc;
use std::time::Duration;

use cache_purge_hooks_engine::backend::NginxBackend;
use cache_purge_hooks_engine::settings::{CacheDir, NginxMode, NginxSettings, NginxTags};
use cache_purge_hooks_engine::tag_index::TagIndexErrorKind;
use cache_purge_hooks_engine::{Delivery, PurgeUrl, Purger, Tag, TagIndex, Target};
use cache_purge_hooks_sea_orm::outbox::sea_orm_migration::MigrationTrait;
use cache_purge_hooks_sea_orm::tag_index::{self, SqlTagIndex};
use cache_purge_hooks_testing::db::{TestDb, all_databases, sqlite};
use cache_purge_hooks_testing::{Nginx, NginxConfig, Origin, assert_cached, assert_purged, warm};
use sea_orm::{ConnectionTrait, Statement};

fn tag(t: &str) -> Tag {
    Tag::parse(t).unwrap()
}

fn url(u: &str) -> PurgeUrl {
    PurgeUrl::parse(u).unwrap()
}

const HOUR: Duration = Duration::from_secs(3600);

async fn indexed(db: &TestDb) -> SqlTagIndex {
    tag_index::create_table(&db.db)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", db.label));
    // Twice: `IF NOT EXISTS`.
    tag_index::create_table(&db.db)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", db.label));
    SqlTagIndex::new(db.db.clone())
}

async fn rows(db: &TestDb) -> i64 {
    let row = db
        .db
        .query_one_raw(Statement::from_string(
            db.backend(),
            "SELECT COUNT(*) AS n FROM cache_purge_tag_index",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn record_lookup_and_forget_on_every_database() {
    for db in all_databases().await {
        let label = db.label;
        let index = indexed(&db).await;
        index
            .record(&url("/posts/1"), &[tag("post:1"), tag("posts")], HOUR)
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        index
            .record(&url("/?page=7"), &[tag("post:1"), tag("posts")], HOUR)
            .await
            .unwrap();
        // Again, shorter: the later expiry is kept (an upsert, not a second row).
        index
            .record(&url("/?page=7"), &[tag("post:1")], Duration::from_millis(1))
            .await
            .unwrap();
        index
            .record(&url("/Posts/1"), &[tag("post:10")], HOUR)
            .await
            .unwrap();
        let mut one = index.urls(&[tag("post:1")]).await.unwrap();
        one.sort();
        assert_eq!(one, [url("/?page=7"), url("/posts/1")], "{label}");
        // Case matters: /Posts/1 is another URL, of another tag.
        assert_eq!(
            index.urls(&[tag("post:10")]).await.unwrap(),
            [url("/Posts/1")],
            "{label}"
        );
        assert_eq!(
            index
                .urls(&[tag("post:1"), tag("posts")])
                .await
                .unwrap()
                .len(),
            2,
            "{label}: deduplicated"
        );
        index
            .forget(&tag("post:1"), &[url("/posts/1"), url("/?page=7")])
            .await
            .unwrap();
        assert!(
            index.urls(&[tag("post:1")]).await.unwrap().is_empty(),
            "{label}"
        );
        assert_eq!(
            index.urls(&[tag("posts")]).await.unwrap().len(),
            2,
            "{label}"
        );
        assert_eq!(rows(&db).await, 3, "{label}");
        db.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_of_tags_is_looked_up_and_forgotten_tag_by_tag_in_one_go() {
    for db in all_databases().await {
        let label = db.label;
        let index = indexed(&db).await;
        index
            .record(&url("/posts/1"), &[tag("post:1"), tag("posts")], HOUR)
            .await
            .unwrap();
        index
            .record(&url("/?page=2"), &[tag("posts")], HOUR)
            .await
            .unwrap();
        let mut lists = index
            .urls_of_each(&[tag("posts"), tag("none"), tag("post:1")])
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        lists.iter_mut().for_each(|l| l.sort());
        assert_eq!(
            lists,
            [
                vec![url("/?page=2"), url("/posts/1")],
                vec![],
                vec![url("/posts/1")]
            ],
            "{label}: one list per tag, in order; a URL under two tags is in both"
        );
        index
            .forget_each(&[(tag("post:1"), vec![url("/posts/1")])])
            .await
            .unwrap();
        assert!(index.urls(&[tag("post:1")]).await.unwrap().is_empty());
        assert_eq!(index.urls(&[tag("posts")]).await.unwrap().len(), 2);
        db.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_recorded_for_1s_is_not_returned_after_it_expired() {
    for db in all_databases().await {
        let label = db.label;
        let index = indexed(&db).await;
        index
            .record(&url("/short"), &[tag("x")], Duration::from_secs(1))
            .await
            .unwrap();
        index
            .record(&url("/long"), &[tag("x")], HOUR)
            .await
            .unwrap();
        assert_eq!(index.urls(&[tag("x")]).await.unwrap().len(), 2, "{label}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            index.urls(&[tag("x")]).await.unwrap(),
            [url("/long")],
            "{label}"
        );
        // The lookup deleted the expired row.
        assert_eq!(rows(&db).await, 1, "{label}");
        index
            .record(&url("/other"), &[tag("y")], Duration::from_millis(10))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(index.prune_expired().await.unwrap(), 1, "{label}");
        db.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_tag_refuses_new_urls_and_drops_none() {
    for db in all_databases().await {
        let label = db.label;
        let index = indexed(&db).await.with_max_urls_per_tag(2);
        index.record(&url("/a"), &[tag("x")], HOUR).await.unwrap();
        index.record(&url("/b"), &[tag("x")], HOUR).await.unwrap();
        let err = index
            .record(&url("/c"), &[tag("x"), tag("y")], HOUR)
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            &TagIndexErrorKind::Full {
                tag: tag("x"),
                max: 2
            },
            "{label}"
        );
        assert_eq!(
            index.urls(&[tag("y")]).await.unwrap(),
            [url("/c")],
            "{label}"
        );
        assert_eq!(index.urls(&[tag("x")]).await.unwrap().len(), 2, "{label}");
        // A URL the tag holds is refreshed, not refused.
        index.record(&url("/b"), &[tag("x")], HOUR).await.unwrap();
        db.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_migration_creates_and_drops_the_table() {
    let db = sqlite().await;
    let manager = cache_purge_hooks_sea_orm::outbox::sea_orm_migration::SchemaManager::new(&db.db);
    tag_index::Migration.up(&manager).await.unwrap();
    let index = SqlTagIndex::new(db.db.clone());
    index.record(&url("/a"), &[tag("x")], HOUR).await.unwrap();
    assert_eq!(index.urls(&[tag("x")]).await.unwrap(), [url("/a")]);
    tag_index::Migration.down(&manager).await.unwrap();
    // Without the table: a typed error, never a panic.
    let err = SqlTagIndex::new(db.db.clone())
        .urls(&[tag("x")])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &TagIndexErrorKind::Storage, "{err}");
    db.close().await;
}

async fn nginx_on_sqlite(files: bool) {
    let db = sqlite().await;
    let index = Arc::new(indexed(&db).await);
    let origin = Origin::start().unwrap();
    let nginx = Nginx::start(&origin, NginxConfig::default()).await.unwrap();
    let mut settings = NginxSettings::default();
    settings.tags = NginxTags::Index;
    if files {
        settings.mode = NginxMode::Files;
        settings.cache_dir = Some(CacheDir::new(nginx.cache_dir()).unwrap());
        settings.key_template = Some("$uri$is_args$args".parse().unwrap());
    } else {
        settings.servers = vec![nginx.addr().parse().unwrap()];
        settings.purge_prefix = Some("/purge".parse().unwrap());
    }
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("nginx", NginxBackend::new(&settings).unwrap())
        .tag_index(index.clone())
        .build()
        .unwrap();

    warm(&nginx, &["/posts/1", "/?page=7", "/posts/10", "/posts/2"]).await;
    for (page, tags) in [
        ("/posts/1", &["post:1", "posts"][..]),
        ("/?page=7", &["post:1", "posts"][..]),
        ("/posts/10", &["post:10"][..]),
        ("/posts/2", &["post:2"][..]),
    ] {
        let tags: Vec<Tag> = tags.iter().map(|t| tag(t)).collect();
        index.record(&url(page), &tags, HOUR).await.unwrap();
    }
    purger.purge([Target::tag("post:1").unwrap()]).await;
    purger.flush().await;
    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.failed), (1, 0), "{stats:?}");
    assert_purged(&nginx, &origin, "/posts/1").await;
    assert_purged(&nginx, &origin, "/?page=7").await;
    assert_cached(&nginx, "/posts/10").await;
    assert_cached(&nginx, "/posts/2").await;
    assert!(index.urls(&[tag("post:1")]).await.unwrap().is_empty());
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
    db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_http_mode_purges_a_tag_through_the_sqlite_index() {
    nginx_on_sqlite(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_files_mode_purges_a_tag_through_the_sqlite_index() {
    nginx_on_sqlite(true).await;
}
