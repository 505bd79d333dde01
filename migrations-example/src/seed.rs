//! The blog's sample content, written through SeaORM like any other write.

use sea_orm::{ActiveModelTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, Set};

use crate::entity::{category, comment, post};
use crate::web::post_path;

/// The post the demo edits.
pub const EDITED_POST: &str = "hello-world";
/// A post in the same category that the edit must leave cached.
pub const NEIGHBOUR_POST: &str = "second-post";

/// What [`seed`] found or wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seeded {
    /// Whether the database was empty and got the sample content.
    pub wrote: bool,
    /// How many posts the database holds.
    pub posts: u64,
}

/// Writes the sample content into an empty database: categories `Rust` and `Caching`, three
/// published posts ([`EDITED_POST`] and [`NEIGHBOUR_POST`] in `Rust`), and a comment. A
/// database with posts already is left alone.
///
/// These are saves like any other: they purge the pages they create through the current
/// purger (installed, or set with [`Purger::scope`](cache_purge_hooks::Purger::scope)), and
/// the comment needs [`register_comment_resolver`](crate::register_comment_resolver) first.
pub async fn seed(db: &DatabaseConnection) -> Result<Seeded, DbErr> {
    let existing = post::Entity::find().count(db).await?;
    if existing > 0 {
        return Ok(Seeded {
            wrote: false,
            posts: existing,
        });
    }
    let rust = new_category("rust", "Rust").insert(db).await?;
    let caching = new_category("caching", "Caching").insert(db).await?;
    let posts = [
        (
            EDITED_POST,
            "Hello, world",
            "The first post of a blog whose pages a cache keeps until they change.",
            rust.id,
        ),
        (
            NEIGHBOUR_POST,
            "A second post",
            "Editing the first post leaves this page in the cache.",
            rust.id,
        ),
        (
            "purge-on-save",
            "Purging on save",
            "Each save purges exactly the pages that show what it changed.",
            caching.id,
        ),
    ];
    for (slug, title, body, category_id) in posts {
        post::ActiveModel {
            slug: Set(slug.to_owned()),
            title: Set(title.to_owned()),
            body: Set(body.to_owned()),
            published: Set(true),
            category_id: Set(category_id),
            ..Default::default()
        }
        .insert(db)
        .await?;
    }
    comment::ActiveModel {
        page: Set(post_path(EDITED_POST)),
        author: Set("Ann".to_owned()),
        body: Set("Does the cache really forget this page when you edit it?".to_owned()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(Seeded {
        wrote: true,
        posts: posts.len() as u64,
    })
}

fn new_category(slug: &str, name: &str) -> category::ActiveModel {
    category::ActiveModel {
        slug: Set(slug.to_owned()),
        name: Set(name.to_owned()),
        ..Default::default()
    }
}
