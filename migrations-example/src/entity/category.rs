//! A category: its page lists its posts, and the home page names the category of every post,
//! so a change purges both. Its tag, `category:{id}`, is carried by every page that shows
//! the category's name: its page and feed, the home page, and its posts' pages.
//!
//! Category pages are addressed by id (`/categories/1`), not by slug, so that a post, which
//! knows only its `category_id`, can name its category's page among its own URLs.

use cache_purge_hooks::CachePurge;
use sea_orm::entity::prelude::*;

/// A blog category.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, CachePurge)]
#[sea_orm(table_name = "categories")]
#[cache_purge(url = "/categories/{id}", url = "/", tag = "category:{id}")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// Short name, unique (the blog-demo program finds categories by it).
    #[sea_orm(unique)]
    pub slug: String,
    /// Display name.
    pub name: String,
}

/// Relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// A category has posts.
    #[sea_orm(has_many = "super::post::Entity")]
    Posts,
}

impl Related<super::post::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Posts.def()
    }
}

cache_purge_hooks::sea_orm::active_model_behavior!();
