//! A comment, as a reusable comments component would define it: it knows nothing about the
//! site's URLs and keeps the path of the page it was left on (like Isso's or Disqus's
//! threads).
//!
//! Which pages show a comment is the site's business, so the model only says
//! `#[cache_purge(registered)]`, and the application registers the resolver at start-up
//! ([`crate::register_comment_resolver`]). This is the seed's `cache_purge_hook(Model, func)`
//! for a third-party app's model; a save before the registration logs an error naming the
//! type instead of purging nothing silently.

use cache_purge_hooks::CachePurge;
use sea_orm::entity::prelude::*;

/// A comment on a page.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, CachePurge)]
#[sea_orm(table_name = "comments")]
#[cache_purge(registered)]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// The path of the page the comment is on, like `/posts/hello-world`.
    pub page: String,
    /// Who wrote it.
    pub author: String,
    /// What they wrote.
    pub body: String,
}

/// Relations: none (the component stores pages by path).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

cache_purge_hooks::sea_orm::active_model_behavior!();
