//! One outbox for both ORMs: rows written by Diesel code are claimed and delivered by the
//! SeaORM integration's `OutboxWorker`, from a table created by the SeaORM side.

mod common;

use std::time::{Duration, Instant};

use cache_purge_hooks_diesel::outbox::cache_purge_outbox;
use cache_purge_hooks_diesel::{self as purge, PurgeDsl};
use cache_purge_hooks_engine::{Delivery, Target};
use cache_purge_hooks_sea_orm::outbox::{self as sea_outbox, OutboxWorker};
use common::{Pipeline, Post, new_post, posts, urls};
use diesel::prelude::*;

fn sea_orm_url(label: &str, url: &str) -> String {
    if label == "sqlite" {
        format!("sqlite://{url}?mode=rw")
    } else {
        url.to_owned()
    }
}

on_every_database! {
    /// Diesel writes the outbox rows; SeaORM's store reads back exactly the targets written.
    fn sea_orm_claims_the_targets_diesel_wrote(db) {
        let p = Pipeline::with(Delivery::Outbox);
        let sea = p.rt.block_on(sea_orm::Database::connect(sea_orm_url(db.label, &db.url))).unwrap();
        p.rt.block_on(sea_outbox::create_table(&sea)).unwrap();
        let conn = &mut db.conn;
        p.run(|| {
            diesel::insert_into(posts::table)
                .values(new_post("a/b c", 7))
                .execute_and_purge::<Post>(conn)
        })
        .unwrap();
        let rows = p
            .rt
            .block_on(sea_outbox::claim(&sea, "memory", "test-worker", 100, Duration::from_secs(30), sea_outbox::now_ms()))
            .unwrap();
        assert_eq!(rows.len(), 1);
        let want: Vec<Target> = ["/posts/a%2Fb%20c", "/", "/feed.xml?category=7"]
            .iter()
            .map(|u| Target::url(u).unwrap())
            .collect();
        assert_eq!(rows[0].targets, want);
        assert_eq!(rows[0].attempts, 0);
        p.rt.block_on(sea.close()).unwrap();
    }
}

on_every_database! {
    /// The SeaORM `OutboxWorker` delivers the purges of Diesel writes to the backend, then
    /// deletes the rows.
    fn sea_orm_worker_delivers_diesel_purges(db) {
        let p = Pipeline::with(Delivery::Outbox);
        let sea = p.rt.block_on(sea_orm::Database::connect(sea_orm_url(db.label, &db.url))).unwrap();
        p.rt.block_on(sea_outbox::create_table(&sea)).unwrap();
        let conn = &mut db.conn;
        p.run(|| {
            purge::transaction(conn, |conn| {
                diesel::insert_into(posts::table)
                    .values(new_post("hello-world", 1))
                    .execute_and_purge::<Post>(conn)?;
                purge::update(posts::table.filter(posts::slug.eq("hello-world")))
                    .set(posts::slug.eq("hello-rust"))
                    .execute_and_purge::<Post>(conn)
            })
        })
        .unwrap();
        assert!(p.purged().is_empty(), "nothing sent before the worker runs");

        let worker = p
            .rt
            .block_on(
                OutboxWorker::builder(sea.clone(), p.purger.clone())
                    .poll_interval(Duration::from_millis(50))
                    .start(),
            )
            .unwrap();
        let want = urls(&["/posts/hello-world", "/posts/hello-rust", "/", "/feed.xml?category=1"]);
        let deadline = Instant::now() + Duration::from_secs(20);
        // Delivered and settled (rows deleted): `stats` counts a row once it is deleted.
        while worker.stats().delivered < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let stats = worker.stats();
        p.rt.block_on(worker.stop(Duration::from_secs(5)));
        assert_eq!(p.memory.url_set(), want);
        assert_eq!(stats.delivered, 2, "{stats:?}");
        let left: i64 = cache_purge_outbox::table.count().get_result(&mut db.conn).unwrap();
        assert_eq!(left, 0, "delivered rows are deleted");
        p.rt.block_on(sea.close()).unwrap();
    }
}
