//! Purging writes on blocking Diesel connections, on SQLite, PostgreSQL and MariaDB: each test
//! asserts the exact URLs a user would expect to see purged.

mod common;

use cache_purge_hooks_diesel::{self as purge, PurgeDsl};
use cache_purge_hooks_engine::backend::{Cause, PurgeError};
use common::{Page, Pipeline, Post, PostForm, Tag, new_post, pages, posts, tags, urls};
use diesel::prelude::*;

fn all_posts<C>(conn: &mut C) -> Vec<Post>
where
    C: Connection,
    C::Backend: diesel::backend::Backend,
    for<'a> posts::table: diesel::query_dsl::LoadQuery<'a, C, Post>,
{
    posts::table.load::<Post>(conn).unwrap()
}

on_every_database! {
    /// An insert purges the new row's URLs and returns the row with its generated id.
    fn insert_purges_the_new_row(db) {
        let p = Pipeline::new();
        let conn = &mut db.conn;
        let rows = p.run(|| {
            diesel::insert_into(posts::table)
                .values(new_post("hello-world", 1))
                .get_results_and_purge::<Post>(conn)
        }).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].slug, "hello-world");
        assert!(rows[0].id > 0);
        assert_eq!(p.purged(), urls(&["/posts/hello-world", "/", "/feed.xml?category=1"]));
    }
}

on_every_database! {
    /// A multi-row insert purges every row.
    fn bulk_insert_purges_every_row(db) {
        let p = Pipeline::new();
        let conn = &mut db.conn;
        let n = p.run(|| {
            diesel::insert_into(posts::table)
                .values(vec![new_post("a", 1), new_post("b", 1), new_post("c", 2)])
                .execute_and_purge::<Post>(conn)
        }).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            p.purged(),
            urls(&["/posts/a", "/posts/b", "/posts/c", "/", "/feed.xml?category=1", "/feed.xml?category=2"])
        );
    }
}

on_every_database! {
    /// Changing a slug purges the old and the new URLs; the row is read first.
    fn slug_change_purges_old_and_new_urls(db) {
        let p = Pipeline::new();
        let conn = &mut db.conn;
        diesel::insert_into(posts::table).values(new_post("hello-world", 1)).execute(conn).unwrap();
        let id = posts::table.select(posts::id).first::<i32>(conn).unwrap();
        db.statements.take();
        let conn = &mut db.conn;
        let rows = p.run(|| {
            purge::update(posts::table.find(id))
                .set(posts::slug.eq("hello-rust"))
                .get_results_and_purge::<Post>(conn)
        }).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].slug, "hello-rust");
        assert_eq!(
            p.purged(),
            urls(&["/posts/hello-world", "/posts/hello-rust", "/", "/feed.xml?category=1"])
        );
        let selects = db.statements.take().iter().filter(|s| s.starts_with("SELECT")).count();
        if db.label == "mariadb" {
            assert_eq!(selects, 2, "MySQL: the old rows, then the new ones by primary key");
        } else {
            assert_eq!(selects, 1, "one SELECT for the old row");
        }
    }
}

on_every_database! {
    /// An update that writes no URL field purges the row's URLs; with RETURNING, no row is
    /// read first.
    fn update_without_url_field_reads_nothing_first(db) {
        let p = Pipeline::new();
        let conn = &mut db.conn;
        diesel::insert_into(posts::table).values(new_post("hello", 1)).execute(conn).unwrap();
        db.statements.take();
        let conn = &mut db.conn;
        let n = p.run(|| {
            purge::update(posts::table)
                .filter(posts::slug.eq("hello"))
                .set(posts::title.eq("New title"))
                .execute_and_purge::<Post>(conn)
        }).unwrap();
        assert_eq!(n, 1);
        assert_eq!(p.purged(), urls(&["/posts/hello", "/", "/feed.xml?category=1"]));
        let statements = db.statements.take();
        let selects = statements.iter().filter(|s| s.starts_with("SELECT")).count();
        if db.label == "mariadb" {
            assert_eq!(selects, 1, "MySQL has no RETURNING: the rows are read first");
        } else {
            assert_eq!(selects, 0, "RETURNING gives the rows: {statements:?}");
        }
        assert_eq!(all_posts(&mut db.conn)[0].title, "New title");
    }
}

on_every_database! {
    /// A bulk update that moves posts to another category purges every row's old and new
    /// feed URLs.
    fn bulk_update_purges_old_and_new_urls_of_every_row(db) {
        let p = Pipeline::new();
        let conn = &mut db.conn;
        diesel::insert_into(posts::table)
            .values(vec![new_post("a", 1), new_post("b", 1), new_post("c", 3)])
            .execute(conn)
            .unwrap();
        let rows = p.run(|| {
            purge::update(posts::table.filter(posts::category_id.eq(1)))
                .set((posts::category_id.eq(2), posts::published.eq(true)))
                .get_results_and_purge::<Post>(conn)
        }).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.category_id == 2 && r.published));
        assert_eq!(
            p.purged(),
            urls(&["/posts/a", "/posts/b", "/", "/feed.xml?category=1", "/feed.xml?category=2"])
        );
    }
}

on_every_database! {
    /// Updating through an `Identifiable` model works like `diesel::update(&post)`.
    fn update_of_an_identifiable_model(db) {
        let p = Pipeline::new();
        let conn = &mut db.conn;
        let post: Post = diesel::insert_into(posts::table)
            .values(new_post("first", 1))
            .execute(conn)
            .and_then(|_| posts::table.first(conn))
            .unwrap();
        p.run(|| {
            purge::update(&post)
                .set(posts::slug.eq("renamed"))
                .execute_and_purge::<Post>(conn)
        }).unwrap();
        assert_eq!(
            p.purged(),
            urls(&["/posts/first", "/posts/renamed", "/", "/feed.xml?category=1"])
        );
    }
}

on_every_database! {
    /// A delete given only the primary key purges the URLs of the row it deleted.
    fn delete_by_id_purges_the_deleted_row(db) {
        let p = Pipeline::new();
        let conn = &mut db.conn;
        diesel::insert_into(posts::table).values(vec![new_post("gone", 4), new_post("kept", 4)]).execute(conn).unwrap();
        let id: i32 = posts::table.filter(posts::slug.eq("gone")).select(posts::id).first(conn).unwrap();
        let n = p.run(|| purge::delete(posts::table.find(id)).execute_and_purge::<Post>(conn)).unwrap();
        assert_eq!(n, 1);
        assert_eq!(p.purged(), urls(&["/posts/gone", "/", "/feed.xml?category=4"]));
        assert_eq!(all_posts(&mut db.conn).len(), 1);
    }
}

on_every_database! {
    /// A bulk delete purges every deleted row, and returns them.
    fn bulk_delete_purges_every_row(db) {
        let p = Pipeline::new();
        let conn = &mut db.conn;
        diesel::insert_into(posts::table)
            .values(vec![new_post("x", 1), new_post("y", 2), new_post("z", 2)])
            .execute(conn)
            .unwrap();
        let deleted = p.run(|| {
            purge::delete(posts::table)
                .filter(posts::category_id.eq(2))
                .get_results_and_purge::<Post>(conn)
        }).unwrap();
        let mut slugs: Vec<_> = deleted.iter().map(|p| p.slug.as_str()).collect();
        slugs.sort();
        assert_eq!(slugs, ["y", "z"]);
        assert_eq!(p.purged(), urls(&["/posts/y", "/posts/z", "/", "/feed.xml?category=2"]));
    }
}

on_every_database! {
    /// A write that matches nothing purges nothing.
    fn writes_matching_nothing_purge_nothing(db) {
        let p = Pipeline::new();
        let conn = &mut db.conn;
        let updated = p.run(|| {
            purge::update(posts::table.find(42)).set(posts::slug.eq("x")).execute_and_purge::<Post>(conn)
        }).unwrap();
        let deleted = p.run(|| purge::delete(posts::table.find(42)).execute_and_purge::<Post>(conn)).unwrap();
        assert_eq!((updated, deleted), (0, 0));
        assert!(p.purged().is_empty());
    }
}

on_every_database! {
    /// A field whose column is renamed cannot be matched against the SET clause: the old row
    /// is read anyway, so its old URL is purged.
    fn renamed_url_column_still_purges_old_urls(db) {
        let p = Pipeline::new();
        let conn = &mut db.conn;
        diesel::insert_into(pages::table)
            .values((pages::path_slug.eq("about"), pages::body.eq("...")))
            .execute(conn)
            .unwrap();
        p.run(|| {
            purge::update(pages::table)
                .set(pages::path_slug.eq("about-us"))
                .execute_and_purge::<Page>(conn)
        }).unwrap();
        assert_eq!(p.purged(), urls(&["/pages/about", "/pages/about-us"]));
    }
}

on_every_database! {
    /// The purge never fails the write: with every purge failing, the row is written and the
    /// call succeeds.
    fn write_succeeds_when_the_backend_fails(db) {
        let p = Pipeline::new();
        p.memory.fail_with(Some(PurgeError::new(Cause::Refused, "cache down")));
        let conn = &mut db.conn;
        let rows = p.run(|| {
            diesel::insert_into(posts::table)
                .values(new_post("still-saved", 1))
                .get_results_and_purge::<Post>(conn)
        }).unwrap();
        assert_eq!(rows[0].slug, "still-saved");
        p.rt.block_on(p.purger.flush());
        assert!(p.memory.records().iter().all(|r| r.failed));
        assert!(!p.memory.records().is_empty(), "the purge was attempted");
        assert_eq!(all_posts(&mut db.conn).len(), 1);
    }
}

on_every_database! {
    /// With no purger installed at all, writes still work (the lost purge is logged).
    fn writes_work_without_a_purger(db) {
        let conn = &mut db.conn;
        let n = diesel::insert_into(posts::table)
            .values(new_post("lonely", 1))
            .execute_and_purge::<Post>(conn)
            .unwrap();
        assert_eq!(n, 1);
    }
}

on_every_database! {
    /// A database error fails the write, clearly, and purges nothing.
    fn failed_writes_purge_nothing(db) {
        let p = Pipeline::new();
        let conn = &mut db.conn;
        diesel::insert_into(posts::table).values(new_post("taken", 1)).execute(conn).unwrap();
        let err = p.run(|| {
            diesel::insert_into(posts::table)
                .values(new_post("taken", 2))
                .execute_and_purge::<Post>(conn)
        });
        assert!(matches!(err, Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))), "{err:?}");
        assert!(p.purged().is_empty());
    }
}

on_every_database! {
    /// Composite keys: RETURNING handles them; MySQL cannot find the inserted rows and says so
    /// before writing anything.
    fn insert_with_a_composite_key(db) {
        let p = Pipeline::new();
        let conn = &mut db.conn;
        let result = p.run(|| {
            diesel::insert_into(tags::table)
                .values(Tag { post_id: 1, name: "rust".into() })
                .execute_and_purge::<Tag>(conn)
        });
        if db.label == "mariadb" {
            let message = result.unwrap_err().to_string();
            assert!(message.contains("single-column AUTO_INCREMENT primary key"), "{message}");
            assert_eq!(tags::table.count().get_result::<i64>(&mut db.conn).unwrap(), 0);
            assert!(p.purged().is_empty());
        } else {
            assert_eq!(result.unwrap(), 1);
            assert_eq!(p.purged(), urls(&["/tags/rust"]));
        }
    }
}

on_every_database! {
    /// A changeset struct (`AsChangeset`) works like a tuple of assignments; a `None` URL field
    /// is not written, so no old URL is looked for.
    fn changeset_structs(db) {
        let p = Pipeline::new();
        let conn = &mut db.conn;
        let post: Post = diesel::insert_into(posts::table)
            .values(new_post("draft", 1))
            .execute(conn)
            .and_then(|_| posts::table.first(conn))
            .unwrap();
        let rename = PostForm { slug: Some("final".into()), title: None };
        p.run(|| purge::update(&post).set(&rename).execute_and_purge::<Post>(conn)).unwrap();
        assert_eq!(p.purged(), urls(&["/posts/draft", "/posts/final", "/", "/feed.xml?category=1"]));
        db.statements.take();
        let conn = &mut db.conn;
        let retitle = PostForm { slug: None, title: Some("Final".into()) };
        p.run(|| purge::update(posts::table.find(post.id)).set(&retitle).execute_and_purge::<Post>(conn)).unwrap();
        assert_eq!(p.purged(), urls(&["/posts/final", "/", "/feed.xml?category=1"]));
        let selects = db.statements.take().iter().filter(|s| s.starts_with("SELECT")).count();
        assert_eq!(selects, usize::from(db.label == "mariadb"));
    }
}
