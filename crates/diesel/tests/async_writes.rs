//! The same guarantees on diesel-async connections: `AsyncPgConnection`,
//! `AsyncMysqlConnection` (MariaDB) and `SyncConnectionWrapper<SqliteConnection>`.
#![cfg(feature = "async")]

mod common;

use std::time::Duration;

use cache_purge_hooks_diesel::outbox::{self, cache_purge_outbox};
use cache_purge_hooks_diesel::{self as purge, AsyncPurgeDsl};
use cache_purge_hooks_engine::backend::{Cause, MemoryBackend, PurgeError};
use cache_purge_hooks_engine::{Delivery, Purger};
use common::{NewPost, Post, new_post, posts, urls};
use diesel::prelude::*;
use diesel::result::Error;
use diesel_async::RunQueryDsl;

struct Pipeline {
    purger: Purger,
    memory: MemoryBackend,
}

impl Pipeline {
    fn with(delivery: Delivery) -> Self {
        let memory = MemoryBackend::new();
        let purger = Purger::builder()
            .backend("memory", memory.clone())
            .delivery(delivery)
            .build()
            .unwrap();
        Pipeline { purger, memory }
    }

    async fn purged(&self) -> Vec<String> {
        self.purger.flush().await;
        let mut urls = self.memory.take_urls();
        urls.sort();
        urls.dedup();
        urls
    }
}

fn three(a: &'static str, b: &'static str, c: &'static str) -> Vec<NewPost<'static>> {
    vec![new_post(a, 1), new_post(b, 1), new_post(c, 2)]
}

macro_rules! on_every_async_database {
    ($(#[$meta:meta])* fn $name:ident($conn:ident, $label:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use diesel_async::AsyncConnection;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = common::sqlite();
                let mut c = diesel_async::sync_connection_wrapper::SyncConnectionWrapper::<
                    diesel::SqliteConnection,
                >::establish(&db.url)
                .await
                .unwrap();
                let $conn = &mut c;
                let $label = db.label;
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = common::postgres() else { return };
                let mut c = diesel_async::AsyncPgConnection::establish(&db.url).await.unwrap();
                let $conn = &mut c;
                let $label = db.label;
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mariadb() {
                let Some(db) = common::mysql() else { return };
                let mut c = diesel_async::AsyncMysqlConnection::establish(&db.url).await.unwrap();
                let $conn = &mut c;
                let $label = db.label;
                $body
            }
        }
    };
}

on_every_async_database! {
    /// Inserts, slug changes and deletes purge every affected row, old and new URLs.
    fn writes_purge_every_affected_row(conn, _label) {
        let p = Pipeline::with(Delivery::AfterCommit);
        // (Diesel cannot batch-insert with RETURNING on async SQLite: one row at a time here;
        // `bulk_insert` below covers multi-row inserts on PostgreSQL and MariaDB.)
        for (slug, category) in [("a", 1), ("b", 1), ("c", 2)] {
            let rows = p.purger.scope(
                diesel::insert_into(posts::table)
                    .values(new_post(slug, category))
                    .get_results_and_purge::<Post>(conn),
            ).await.unwrap();
            assert_eq!(rows.len(), 1);
        }
        assert_eq!(
            p.purged().await,
            urls(&["/posts/a", "/posts/b", "/posts/c", "/", "/feed.xml?category=1", "/feed.xml?category=2"])
        );

        let updated = p.purger.scope(
            purge::update(posts::table.filter(posts::slug.eq("a")))
                .set(posts::slug.eq("a2"))
                .get_results_and_purge::<Post>(conn),
        ).await.unwrap();
        assert_eq!(updated.iter().map(|r| r.slug.as_str()).collect::<Vec<_>>(), ["a2"]);
        assert_eq!(p.purged().await, urls(&["/posts/a", "/posts/a2", "/", "/feed.xml?category=1"]));

        let n = p.purger.scope(
            purge::update(posts::table.filter(posts::category_id.eq(1)))
                .set(posts::title.eq("New"))
                .execute_and_purge::<Post>(conn),
        ).await.unwrap();
        assert_eq!(n, 2);
        assert_eq!(p.purged().await, urls(&["/posts/a2", "/posts/b", "/", "/feed.xml?category=1"]));

        let n = p.purger.scope(
            purge::delete(posts::table.filter(posts::category_id.eq(1))).execute_and_purge::<Post>(conn),
        ).await.unwrap();
        assert_eq!(n, 2);
        assert_eq!(p.purged().await, urls(&["/posts/a2", "/posts/b", "/", "/feed.xml?category=1"]));
        let left: Vec<String> = posts::table.select(posts::slug).load(conn).await.unwrap();
        assert_eq!(left, ["c"]);
    }
}

on_every_async_database! {
    /// `async_transaction`: nothing on rollback, everything after the COMMIT.
    fn transaction_purges_after_commit_only(conn, _label) {
        let p = Pipeline::with(Delivery::AfterCommit);
        let rolled_back: Result<(), Error> = p.purger.scope(purge::async_transaction(conn, |conn| {
            Box::pin(async move {
                diesel::insert_into(posts::table)
                    .values(new_post("never", 1))
                    .execute_and_purge::<Post>(conn)
                    .await?;
                Err(Error::RollbackTransaction)
            })
        })).await;
        assert!(rolled_back.is_err());
        assert!(p.purged().await.is_empty());

        let memory = p.memory.clone();
        p.purger.scope(purge::async_transaction(conn, |conn| {
            Box::pin(async move {
                diesel::insert_into(posts::table)
                    .values(new_post("hello-world", 1))
                    .execute_and_purge::<Post>(conn)
                    .await?;
                purge::update(posts::table.filter(posts::slug.eq("hello-world")))
                    .set(posts::slug.eq("hello-rust"))
                    .execute_and_purge::<Post>(conn)
                    .await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
                assert!(memory.urls().is_empty(), "nothing purged before COMMIT");
                Ok::<_, Error>(())
            })
        })).await.unwrap();
        assert_eq!(
            p.purged().await,
            urls(&["/posts/hello-world", "/posts/hello-rust", "/", "/feed.xml?category=1"])
        );
        let slugs: Vec<String> = posts::table.select(posts::slug).load(conn).await.unwrap();
        assert_eq!(slugs, ["hello-rust"]);
    }
}

on_every_async_database! {
    /// Outbox mode writes the row in the write's transaction; a rollback leaves none.
    fn outbox_rows_follow_the_transaction(conn, _label) {
        let p = Pipeline::with(Delivery::Outbox);
        outbox::async_create_table(conn).await.unwrap();
        let _ = p.purger.scope(purge::async_transaction(conn, |conn| {
            Box::pin(async move {
                diesel::insert_into(posts::table)
                    .values(new_post("never", 1))
                    .execute_and_purge::<Post>(conn)
                    .await?;
                Err::<(), _>(Error::RollbackTransaction)
            })
        })).await;
        p.purger.scope(
            diesel::insert_into(posts::table)
                .values(new_post("hello", 3))
                .execute_and_purge::<Post>(conn),
        ).await.unwrap();
        let stored: Vec<(String, String)> = cache_purge_outbox::table
            .select((cache_purge_outbox::backend, cache_purge_outbox::targets))
            .load(conn)
            .await
            .unwrap();
        assert_eq!(
            stored,
            [("memory".to_owned(), "url /posts/hello\nurl /\nurl /feed.xml?category=3".to_owned())]
        );
        assert!(p.purged().await.is_empty());
    }
}

on_every_async_database! {
    /// A failing backend never fails the write.
    fn write_succeeds_when_the_backend_fails(conn, _label) {
        let p = Pipeline::with(Delivery::Immediate);
        p.memory.fail_with(Some(PurgeError::new(Cause::Unreachable, "cache down")));
        let rows = p.purger.scope(
            diesel::insert_into(posts::table)
                .values(new_post("saved", 1))
                .get_results_and_purge::<Post>(conn),
        ).await.unwrap();
        assert_eq!(rows[0].slug, "saved");
        p.purger.flush().await;
        assert!(!p.memory.records().is_empty());
        assert!(p.memory.records().iter().all(|r| r.failed));
    }
}

macro_rules! bulk_insert_test {
    ($name:ident, $db:expr, $conn_ty:ty) => {
        /// A multi-row insert purges every row.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            use diesel_async::AsyncConnection;
            let Some(db) = $db else { return };
            let conn = &mut <$conn_ty>::establish(&db.url).await.unwrap();
            let p = Pipeline::with(Delivery::AfterCommit);
            let rows = p
                .purger
                .scope(
                    diesel::insert_into(posts::table)
                        .values(three("a", "b", "c"))
                        .get_results_and_purge::<Post>(conn),
                )
                .await
                .unwrap();
            assert_eq!(rows.len(), 3);
            assert_eq!(
                p.purged().await,
                urls(&[
                    "/posts/a",
                    "/posts/b",
                    "/posts/c",
                    "/",
                    "/feed.xml?category=1",
                    "/feed.xml?category=2"
                ])
            );
        }
    };
}

bulk_insert_test!(
    bulk_insert_postgres,
    common::postgres(),
    diesel_async::AsyncPgConnection
);
bulk_insert_test!(
    bulk_insert_mariadb,
    common::mysql(),
    diesel_async::AsyncMysqlConnection
);
