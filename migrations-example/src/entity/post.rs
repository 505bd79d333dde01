//! A post: its own page, the home page and its category's page (which list it), and its
//! category's feed.
//!
//! It also declares its cache tags: `post:{slug}`, carried by every page that shows the post
//! (its page, and the lists), and the list tag `posts`, carried by every list of posts and
//! not by a post's page, so that a new or deleted post reaches every list, on every page of
//! it (`/?page=2` too), without purging every other post's page. The tag is by slug,
//! not id, so that a comment, which knows only the path of its page, can name it too (see
//! [`crate::register_comment_resolver`]).

use cache_purge_hooks::CachePurge;
use sea_orm::entity::prelude::*;

/// A blog post.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, CachePurge)]
#[sea_orm(table_name = "posts")]
#[cache_purge(
    url = "/posts/{slug}",
    url = "/",
    url = "/categories/{category_id}",
    url = "/feed.xml?category={category_id}",
    tag = "post:{slug}",
    list_tag = "posts"
)]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// URL name, unique.
    #[sea_orm(unique)]
    pub slug: String,
    /// Title.
    pub title: String,
    /// Body text.
    pub body: String,
    /// Whether it is shown.
    pub published: bool,
    /// Its category.
    pub category_id: i32,
}

/// Relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// A post belongs to a category.
    #[sea_orm(
        belongs_to = "super::category::Entity",
        from = "Column::CategoryId",
        to = "super::category::Column::Id"
    )]
    Category,
}

impl Related<super::category::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Category.def()
    }
}

cache_purge_hooks::sea_orm::active_model_behavior!();
