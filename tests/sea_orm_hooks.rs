//! SeaORM hooks, transactions and bulk helpers, end to end against real databases: SQLite
//! always, PostgreSQL and MariaDB on 127.0.0.1 where reachable (required with `CI=true`).
//! Each test runs its own purger (`Purger::scope`) with a memory backend and asserts the
//! exact URLs purged.

mod common;

use cache_purge_hooks::backend::{Cause, MemoryBackend, PurgeError};
use cache_purge_hooks::{Delivery, Purger, registry};
use common::TestDb;
use common::entities::{category, comment, page, post};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, Set};

fn pipeline(delivery: Delivery) -> (Purger, MemoryBackend) {
    let memory = MemoryBackend::new();
    let purger = Purger::builder()
        .delivery(delivery)
        .backend("memory", memory.clone())
        .build()
        .unwrap();
    (purger, memory)
}

/// What was purged since the last call, sorted and deduplicated.
async fn purged(purger: &Purger, memory: &MemoryBackend) -> Vec<String> {
    purger.flush().await;
    let urls = memory.url_set();
    memory.clear();
    urls
}

fn new_post(slug: &str, category_id: i32) -> post::ActiveModel {
    post::ActiveModel {
        slug: Set(slug.into()),
        title: Set(format!("Title of {slug}")),
        category_id: Set(category_id),
        published: Set(false),
        ..Default::default()
    }
}

fn selects(statements: &[String]) -> usize {
    statements
        .iter()
        .filter(|s| s.trim_start().to_uppercase().starts_with("SELECT"))
        .count()
}

async fn for_each_db<F, Fut>(test: F)
where
    F: Fn(TestDb, Purger, MemoryBackend) -> Fut,
    Fut: std::future::Future<Output = TestDb>,
{
    for db in common::all_databases().await {
        let label = db.label;
        let (purger, memory) = pipeline(Delivery::AfterCommit);
        eprintln!("-- on {label}");
        let db = purger.scope(test(db, purger.clone(), memory)).await;
        db.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_update_save_delete_purge_exactly_the_rows_urls() {
    for_each_db(|t, purger, memory| async move {
        let db = &t.db;
        let p = new_post("hello", 7).insert(db).await.unwrap();
        assert_eq!(
            purged(&purger, &memory).await,
            ["/", "/archive?category=7", "/posts/hello"],
            "{}",
            t.label
        );

        // An update that writes no URL field: the same URLs, and no extra SELECT.
        t.take_statements();
        let mut am: post::ActiveModel = p.clone().into();
        am.title = Set("New title".into());
        let p = am.update(db).await.unwrap();
        let statements = t.take_statements();
        let expected_selects = if db.support_returning() { 0 } else { 1 }; // the UPDATE's own read-back
        assert_eq!(
            selects(&statements),
            expected_selects,
            "{}: {statements:?}",
            t.label
        );
        assert_eq!(
            purged(&purger, &memory).await,
            ["/", "/archive?category=7", "/posts/hello"]
        );

        // save() on a new and on a loaded row.
        let saved = new_post("saved", 7).save(db).await.unwrap();
        assert_eq!(
            purged(&purger, &memory).await,
            ["/", "/archive?category=7", "/posts/saved"]
        );
        let mut saved = saved;
        saved.published = Set(true);
        saved.save(db).await.unwrap();
        assert_eq!(
            purged(&purger, &memory).await,
            ["/", "/archive?category=7", "/posts/saved"]
        );

        // Delete of a loaded model: its URLs, no extra SELECT.
        t.take_statements();
        post::ActiveModel::from(p).delete(db).await.unwrap();
        assert_eq!(selects(&t.take_statements()), 0);
        assert_eq!(
            purged(&purger, &memory).await,
            ["/", "/archive?category=7", "/posts/hello"]
        );
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_a_url_field_purges_old_and_new_urls() {
    for_each_db(|t, purger, memory| async move {
        let db = &t.db;
        let p = new_post("old-slug", 1).insert(db).await.unwrap();
        purged(&purger, &memory).await;

        let mut am: post::ActiveModel = p.into();
        am.slug = Set("new-slug".into());
        am.category_id = Set(2);
        am.update(db).await.unwrap();
        assert_eq!(
            purged(&purger, &memory).await,
            [
                "/",
                "/archive?category=1",
                "/archive?category=2",
                "/posts/new-slug",
                "/posts/old-slug"
            ],
            "{}",
            t.label
        );

        // A partial ActiveModel (primary key + new slug only) still finds the old URL.
        let id = post::Entity::find().one(db).await.unwrap().unwrap().id;
        post::ActiveModel {
            id: Set(id),
            slug: Set("third".into()),
            ..Default::default()
        }
        .update(db)
        .await
        .unwrap();
        assert_eq!(
            purged(&purger, &memory).await,
            [
                "/",
                "/archive?category=2",
                "/posts/new-slug",
                "/posts/third"
            ]
        );
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_given_only_the_primary_key_purges_the_stored_rows_urls() {
    for_each_db(|t, purger, memory| async move {
        let db = &t.db;
        let c = category::ActiveModel {
            slug: Set("tea".into()),
            name: Set("Tea".into()),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap();
        assert_eq!(purged(&purger, &memory).await, ["/", "/categories/tea"]);

        let res = category::ActiveModel {
            id: Set(c.id),
            ..Default::default()
        }
        .delete(db)
        .await
        .unwrap();
        assert_eq!(res.rows_affected, 1);
        assert_eq!(
            purged(&purger, &memory).await,
            ["/", "/categories/tea"],
            "{}",
            t.label
        );
        assert!(
            category::Entity::find_by_id(c.id)
                .one(db)
                .await
                .unwrap()
                .is_none()
        );

        // Deleting a row that does not exist purges nothing and fails nothing.
        category::ActiveModel {
            id: Set(c.id),
            ..Default::default()
        }
        .delete(db)
        .await
        .unwrap();
        assert!(purged(&purger, &memory).await.is_empty());
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_helpers_purge_every_affected_row() {
    use cache_purge_hooks::sea_orm::bulk;
    for_each_db(|t, purger, memory| async move {
        let db = &t.db;
        let rows = bulk::insert_many(db, [new_post("a", 1), new_post("b", 1), new_post("c", 2)])
            .await
            .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            purged(&purger, &memory).await,
            [
                "/",
                "/archive?category=1",
                "/archive?category=2",
                "/posts/a",
                "/posts/b",
                "/posts/c"
            ],
            "{}",
            t.label
        );

        // An update of a non-URL field: the affected rows' URLs only.
        let rows = bulk::update_many::<post::Entity, _>(db, post::Column::CategoryId.eq(1), |u| {
            u.col_expr(post::Column::Published, Expr::value(true))
        })
        .await
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.published));
        assert_eq!(
            purged(&purger, &memory).await,
            ["/", "/archive?category=1", "/posts/a", "/posts/b"]
        );

        // An update of a URL field: old and new URLs.
        bulk::update_many::<post::Entity, _>(db, post::Column::Slug.eq("c"), |u| {
            u.col_expr(post::Column::Slug, Expr::value("c2"))
        })
        .await
        .unwrap();
        assert_eq!(
            purged(&purger, &memory).await,
            ["/", "/archive?category=2", "/posts/c", "/posts/c2"]
        );

        let gone = bulk::delete_many::<post::Entity, _>(db, post::Column::CategoryId.eq(1))
            .await
            .unwrap();
        assert_eq!(gone.len(), 2);
        assert_eq!(
            purged(&purger, &memory).await,
            ["/", "/archive?category=1", "/posts/a", "/posts/b"]
        );

        // Nothing matched: nothing purged.
        bulk::delete_many::<post::Entity, _>(db, post::Column::CategoryId.eq(99))
            .await
            .unwrap();
        assert!(purged(&purger, &memory).await.is_empty());
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_purge_after_commit_and_never_after_rollback() {
    use cache_purge_hooks::sea_orm::transaction;
    for_each_db(|t, purger, memory| async move {
        let db = &t.db;
        let p = new_post("draft", 1).insert(db).await.unwrap();
        purged(&purger, &memory).await;

        // Rolled back: nothing.
        let res = transaction(db, |txn| {
            let p = p.clone();
            Box::pin(async move {
                let mut am: post::ActiveModel = p.into();
                am.slug = Set("renamed".into());
                am.update(txn).await?;
                Err::<(), _>(DbErr::Custom("abort".into()))
            })
        })
        .await;
        assert!(res.is_err());
        assert!(purged(&purger, &memory).await.is_empty(), "{}", t.label);
        assert_eq!(
            post::Entity::find_by_id(p.id)
                .one(db)
                .await
                .unwrap()
                .unwrap()
                .slug,
            "draft"
        );

        // Committed: nothing before COMMIT, everything after.
        let (inner_purger, inner_memory) = (purger.clone(), memory.clone());
        transaction(db, |txn| {
            let p = p.clone();
            Box::pin(async move {
                let mut am: post::ActiveModel = p.into();
                am.slug = Set("published".into());
                am.update(txn).await?;
                inner_purger.flush().await;
                assert!(inner_memory.urls().is_empty(), "purged before COMMIT");
                Ok::<(), DbErr>(())
            })
        })
        .await
        .unwrap();
        assert_eq!(
            purged(&purger, &memory).await,
            [
                "/",
                "/archive?category=1",
                "/posts/draft",
                "/posts/published"
            ]
        );

        // Nested: the savepoint's rollback drops its purges only.
        transaction(db, |txn| {
            Box::pin(async move {
                new_post("kept", 3).insert(txn).await?;
                let inner = transaction(txn, |sp| {
                    Box::pin(async move {
                        new_post("dropped", 4).insert(sp).await?;
                        Err::<(), _>(DbErr::Custom("undo savepoint".into()))
                    })
                })
                .await;
                assert!(inner.is_err());
                Ok::<(), DbErr>(())
            })
        })
        .await
        .unwrap();
        assert_eq!(
            purged(&purger, &memory).await,
            ["/", "/archive?category=3", "/posts/kept"]
        );
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_delivery_does_not_wait_for_commit() {
    let t = common::sqlite().await;
    let (purger, memory) = pipeline(Delivery::Immediate);
    let (p2, m2) = (purger.clone(), memory.clone());
    purger
        .scope(async {
            cache_purge_hooks::sea_orm::transaction(&t.db, |txn| {
                Box::pin(async move {
                    new_post("now", 1).insert(txn).await?;
                    p2.flush().await;
                    assert_eq!(m2.url_set(), ["/", "/archive?category=1", "/posts/now"]);
                    Ok::<(), DbErr>(())
                })
            })
            .await
            .unwrap();
        })
        .await;
    t.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_cache_or_a_missing_purger_never_fails_the_save() {
    let t = common::sqlite().await;
    // No purger at all (nothing installed in this test binary, no scope): saves work.
    let p = new_post("unpurged", 1).insert(&t.db).await.unwrap();
    post::ActiveModel::from(p).delete(&t.db).await.unwrap();

    let (purger, memory) = pipeline(Delivery::AfterCommit);
    memory.fail_with(Some(PurgeError::new(Cause::Unreachable, "cache is down")));
    purger
        .scope(async {
            let p = new_post("doomed", 1).insert(&t.db).await.unwrap();
            let mut am: post::ActiveModel = p.into();
            am.slug = Set("still-saved".into());
            am.update(&t.db).await.unwrap();
        })
        .await;
    purger.flush().await;
    assert!(memory.urls().is_empty());
    assert!(memory.records().iter().all(|r| r.failed) && !memory.records().is_empty());
    let stats = &purger.stats()[0];
    assert!(stats.failed >= 3, "{stats:?}");
    assert_eq!(
        post::Entity::find().one(&t.db).await.unwrap().unwrap().slug,
        "still-saved"
    );
    t.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_functions_and_registered_resolvers_purge_through_hooks() {
    registry::replace::<comment::Model, _, _>(|c: &comment::Model| {
        vec![
            format!("/posts/{}", c.post_slug),
            format!("/posts/{}/comments", c.post_slug),
        ]
    });
    for_each_db(|t, purger, memory| async move {
        let db = &t.db;
        let c = comment::ActiveModel {
            post_slug: Set("hello".into()),
            text: Set("  hi  ".into()),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap();
        assert_eq!(c.text, "hi", "the entity's own before_save ran");
        assert_eq!(
            purged(&purger, &memory).await,
            ["/posts/hello", "/posts/hello/comments"]
        );

        // Resolver fields are unknown: any written field loads the old row.
        let pg = page::ActiveModel {
            path: Set("/about".into()),
            body: Set("v1".into()),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap();
        assert_eq!(purged(&purger, &memory).await, ["/about", "/sitemap.xml"]);
        let mut am: page::ActiveModel = pg.into();
        am.path = Set("/about-us".into());
        am.update(db).await.unwrap();
        assert_eq!(
            purged(&purger, &memory).await,
            ["/about", "/about-us", "/sitemap.xml"],
            "{}",
            t.label
        );
        t
    })
    .await;
}
