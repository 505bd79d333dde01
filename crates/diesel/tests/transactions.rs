//! `transaction`: purges wait for the COMMIT and are dropped on rollback; and the outbox
//! delivery mode, whose rows are written in the write's own transaction.

mod common;

use std::time::Duration;

use cache_purge_hooks_diesel::outbox::{self, cache_purge_outbox};
use cache_purge_hooks_diesel::{self as purge, PurgeDsl};
use cache_purge_hooks_engine::{Delivery, Target};
use common::{Pipeline, Post, new_post, posts, urls};
use diesel::prelude::*;
use diesel::result::Error;

/// Nothing may reach the backend before the COMMIT: the workers run on another thread, so
/// give them time to show it.
fn assert_nothing_sent_yet(p: &Pipeline) {
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(p.purger.undelivered(), 0, "nothing queued before COMMIT");
    assert!(p.memory.urls().is_empty(), "nothing purged before COMMIT");
}

on_every_database! {
    /// A transaction that rolls back purges nothing, though its update ran.
    fn rollback_purges_nothing(db) {
        let p = Pipeline::new();
        let conn = &mut db.conn;
        diesel::insert_into(posts::table).values(new_post("hello-world", 1)).execute(conn).unwrap();
        let result: Result<(), Error> = p.run(|| {
            purge::transaction(conn, |conn| {
                let n = purge::update(posts::table.filter(posts::slug.eq("hello-world")))
                    .set(posts::slug.eq("hello-rust"))
                    .execute_and_purge::<Post>(conn)?;
                assert_eq!(n, 1);
                Err(Error::RollbackTransaction)
            })
        });
        assert!(matches!(result, Err(Error::RollbackTransaction)));
        assert!(p.purged().is_empty());
        let slug: String = posts::table.select(posts::slug).first(&mut db.conn).unwrap();
        assert_eq!(slug, "hello-world");
    }
}

on_every_database! {
    /// A transaction that commits purges everything its writes touched, and only after the
    /// COMMIT.
    fn commit_purges_everything_after_the_commit(db) {
        let p = Pipeline::new();
        let conn = &mut db.conn;
        diesel::insert_into(posts::table).values(new_post("hello-world", 1)).execute(conn).unwrap();
        p.run(|| {
            purge::transaction(conn, |conn| {
                purge::update(posts::table.filter(posts::slug.eq("hello-world")))
                    .set(posts::slug.eq("hello-rust"))
                    .execute_and_purge::<Post>(conn)?;
                diesel::insert_into(posts::table)
                    .values(new_post("second", 2))
                    .execute_and_purge::<Post>(conn)?;
                purge::delete(posts::table.filter(posts::slug.eq("second")))
                    .execute_and_purge::<Post>(conn)?;
                assert_nothing_sent_yet(&p);
                Ok::<_, Error>(())
            })
        })
        .unwrap();
        assert_eq!(
            p.purged(),
            urls(&[
                "/posts/hello-world",
                "/posts/hello-rust",
                "/posts/second",
                "/",
                "/feed.xml?category=1",
                "/feed.xml?category=2",
            ])
        );
    }
}

on_every_database! {
    /// A nested transaction (savepoint) that rolls back drops its own purges only.
    fn nested_rollback_drops_only_its_own_purges(db) {
        let p = Pipeline::new();
        let conn = &mut db.conn;
        p.run(|| {
            purge::transaction(conn, |conn| {
                diesel::insert_into(posts::table)
                    .values(new_post("kept", 1))
                    .execute_and_purge::<Post>(conn)?;
                let inner: Result<(), Error> = purge::transaction(conn, |conn| {
                    diesel::insert_into(posts::table)
                        .values(new_post("dropped", 2))
                        .execute_and_purge::<Post>(conn)?;
                    Err(Error::RollbackTransaction)
                });
                assert!(inner.is_err());
                Ok::<_, Error>(())
            })
        })
        .unwrap();
        assert_eq!(p.purged(), urls(&["/posts/kept", "/", "/feed.xml?category=1"]));
        let slugs: Vec<String> = posts::table.select(posts::slug).load(&mut db.conn).unwrap();
        assert_eq!(slugs, ["kept"]);
    }
}

on_every_database! {
    /// `delivery = "outbox"`: the write stores its purge as an outbox row, in the format the
    /// SeaORM outbox worker reads; nothing is sent directly.
    fn outbox_row_is_written_with_the_write(db) {
        let p = Pipeline::with(Delivery::Outbox);
        let conn = &mut db.conn;
        outbox::create_table(conn).unwrap();
        let before = outbox::now_ms();
        p.run(|| {
            purge::update(posts::table)
                .set(posts::title.eq("x"))
                .execute_and_purge::<Post>(conn)?; // no row: no outbox row
            diesel::insert_into(posts::table)
                .values(new_post("hello-world", 1))
                .execute_and_purge::<Post>(conn)
        })
        .unwrap();
        assert!(p.purged().is_empty(), "outbox mode sends nothing directly");
        type Row = (String, String, i64, i64, Option<i64>, Option<String>, i32, Option<String>, Option<i64>);
        let rows: Vec<Row> = cache_purge_outbox::table
            .select((
                cache_purge_outbox::backend,
                cache_purge_outbox::targets,
                cache_purge_outbox::created_at,
                cache_purge_outbox::available_at,
                cache_purge_outbox::locked_until,
                cache_purge_outbox::locked_by,
                cache_purge_outbox::attempts,
                cache_purge_outbox::last_error,
                cache_purge_outbox::dead_at,
            ))
            .load(&mut db.conn)
            .unwrap();
        assert_eq!(rows.len(), 1);
        let (backend, targets, created_at, available_at, locked_until, locked_by, attempts, last_error, dead_at) =
            rows.into_iter().next().unwrap();
        assert_eq!(backend, "memory");
        assert_eq!(targets, "url /posts/hello-world\nurl /\nurl /feed.xml?category=1");
        let parsed: Vec<Target> = targets.lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(parsed.len(), 3);
        assert!(created_at >= before && created_at <= outbox::now_ms());
        assert_eq!(available_at, created_at);
        assert_eq!((locked_until, locked_by, attempts, last_error, dead_at), (None, None, 0, None, None));
    }
}

on_every_database! {
    /// In outbox mode a rolled-back transaction leaves no outbox row.
    fn outbox_rows_roll_back_with_the_transaction(db) {
        let p = Pipeline::with(Delivery::Outbox);
        let conn = &mut db.conn;
        outbox::create_table(conn).unwrap();
        let _ = p.run(|| {
            purge::transaction(conn, |conn| {
                diesel::insert_into(posts::table)
                    .values(new_post("never", 1))
                    .execute_and_purge::<Post>(conn)?;
                Err::<(), _>(Error::RollbackTransaction)
            })
        });
        let n: i64 = cache_purge_outbox::table.count().get_result(&mut db.conn).unwrap();
        assert_eq!(n, 0);
        assert!(p.purged().is_empty());
    }
}

on_every_database! {
    /// A missing outbox table never fails the write: the purge is sent directly instead (and
    /// the error logged), and on PostgreSQL the write's transaction is not aborted.
    fn missing_outbox_table_falls_back_to_direct_purge(db) {
        let p = Pipeline::with(Delivery::Outbox);
        let conn = &mut db.conn;
        let rows = p.run(|| {
            purge::transaction(conn, |conn| {
                let rows = diesel::insert_into(posts::table)
                    .values(new_post("saved", 1))
                    .get_results_and_purge::<Post>(conn)?;
                // The transaction is still usable after the failed outbox INSERT.
                let n: i64 = posts::table.count().get_result(conn)?;
                assert_eq!(n, 1);
                Ok::<_, Error>(rows)
            })
        })
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(p.purged(), urls(&["/posts/saved", "/", "/feed.xml?category=1"]));
    }
}
