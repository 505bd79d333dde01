//! A small blog on SQLite (in memory, no setup) making every kind of write with Diesel, and
//! printing what each one purged:
//!
//! ```sh
//! cargo run -p cache-purge-hooks-diesel --example blog
//! ```
//!
//! A memory backend stands in for Varnish or nginx, so that the purged URLs can be shown; a
//! real application calls `cache_purge_hooks::init()` instead, which reads
//! `cache-purge.toml`.

use std::error::Error;

use cache_purge_hooks_diesel::outbox::{self, cache_purge_outbox};
use cache_purge_hooks_diesel::{self as purge, PurgeDsl};
use cache_purge_hooks_engine::backend::MemoryBackend;
use cache_purge_hooks_engine::{Delivery, Purger};
use cache_purge_hooks_macros::CachePurge;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::result::Error as DieselError;

diesel::table! {
    posts (id) {
        id -> Integer,
        slug -> Text,
        title -> Text,
        category_id -> Integer,
    }
}

/// A post's pages: its own, the home page, and its category's feed.
#[derive(Debug, Queryable, Selectable, Identifiable, CachePurge)]
#[diesel(table_name = posts)]
#[cache_purge(
    url = "/posts/{slug}",
    url = "/",
    url = "/feed.xml?category={category_id}"
)]
struct Post {
    id: i32,
    slug: String,
    title: String,
    category_id: i32,
}

#[derive(Insertable)]
#[diesel(table_name = posts)]
struct NewPost<'a> {
    slug: &'a str,
    title: &'a str,
    category_id: i32,
}

fn main() -> Result<(), Box<dyn Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let memory = MemoryBackend::new();
    let purger =
        rt.block_on(async { Purger::builder().backend("memory", memory.clone()).build() })?;
    // Blocking Diesel code finds the purger through `Purger::current()`.
    purger.install();

    let conn = &mut SqliteConnection::establish(":memory:")?;
    conn.batch_execute(
        "CREATE TABLE posts (id INTEGER PRIMARY KEY AUTOINCREMENT, slug TEXT NOT NULL UNIQUE, \
         title TEXT NOT NULL, category_id INTEGER NOT NULL)",
    )?;
    println!("database ready (SQLite, in memory)\n");

    let show = |step: &str| {
        rt.block_on(purger.flush());
        println!("{step}");
        let urls = memory.take_urls();
        if urls.is_empty() {
            println!("    purged: nothing");
        }
        for url in urls {
            println!("    purged: {url}");
        }
    };

    diesel::insert_into(posts::table)
        .values(vec![
            NewPost {
                slug: "hello-world",
                title: "Hello",
                category_id: 1,
            },
            NewPost {
                slug: "second-post",
                title: "Second",
                category_id: 1,
            },
            NewPost {
                slug: "rust-news",
                title: "News",
                category_id: 2,
            },
        ])
        .execute_and_purge::<Post>(conn)?;
    show("1. insert three posts (one INSERT ... RETURNING)");

    purge::update(posts::table.filter(posts::slug.eq("hello-world")))
        .set(posts::title.eq("Hello, world"))
        .execute_and_purge::<Post>(conn)?;
    show("2. change a title (no URL field: no extra query)");

    purge::update(posts::table.filter(posts::slug.eq("hello-world")))
        .set(posts::slug.eq("hello-rust"))
        .execute_and_purge::<Post>(conn)?;
    show("3. change the slug `hello-world` -> `hello-rust` (old and new URLs)");

    let id: i32 = posts::table
        .filter(posts::slug.eq("second-post"))
        .select(posts::id)
        .first(conn)?;
    purge::delete(posts::table.find(id)).execute_and_purge::<Post>(conn)?;
    show("4. delete `second-post` given only its id (DELETE ... RETURNING)");

    let moved = purge::update(posts::table.filter(posts::category_id.eq(2)))
        .set(posts::category_id.eq(3))
        .get_results_and_purge::<Post>(conn)?;
    let titles: Vec<&str> = moved.iter().map(|p| p.title.as_str()).collect();
    show(&format!(
        "5. move category 2 to 3 ({}): both feeds",
        titles.join(", ")
    ));

    let rolled_back = purge::transaction(conn, |conn| {
        purge::update(posts::table)
            .set(posts::title.eq("draft"))
            .execute_and_purge::<Post>(conn)?;
        Err::<(), _>(DieselError::RollbackTransaction)
    });
    assert!(rolled_back.is_err());
    show("6. a transaction that changes every title, then rolls back");

    purge::transaction(conn, |conn| {
        diesel::insert_into(posts::table)
            .values(NewPost {
                slug: "third",
                title: "Third",
                category_id: 1,
            })
            .execute_and_purge::<Post>(conn)?;
        purge::update(posts::table.filter(posts::slug.eq("hello-rust")))
            .set(posts::category_id.eq(2))
            .execute_and_purge::<Post>(conn)?;
        Ok::<_, DieselError>(())
    })?;
    show("7. a transaction with an insert and an update, committed (purged after COMMIT)");

    // delivery = "outbox": the purge becomes a row of cache_purge_outbox, written in the
    // write's transaction, for the outbox worker (the SeaORM integration's `OutboxWorker`, or
    // `cache-purge outbox drain`) to deliver.
    let outbox_purger = rt.block_on(async {
        Purger::builder()
            .backend("varnish", MemoryBackend::new())
            .delivery(Delivery::Outbox)
            .build()
    })?;
    outbox_purger.install();
    outbox::create_table(conn)?;
    purge::delete(posts::table.filter(posts::slug.eq("third"))).execute_and_purge::<Post>(conn)?;
    let rows: Vec<(String, String)> = cache_purge_outbox::table
        .select((cache_purge_outbox::backend, cache_purge_outbox::targets))
        .load(conn)?;
    println!("8. delivery = \"outbox\": delete `third`; the purge is stored for the worker");
    for (backend, targets) in rows {
        println!("    outbox row for `{backend}`:");
        for line in targets.lines() {
            println!("        {line}");
        }
    }

    Purger::uninstall();
    rt.block_on(async {
        purger.shutdown(std::time::Duration::from_secs(5)).await?;
        outbox_purger
            .shutdown(std::time::Duration::from_secs(5))
            .await
    })?;
    Ok(())
}
