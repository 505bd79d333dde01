//! A post: its own page, the home page and its category's page (which list it), and its
//! category's feed.

use cache_purge_hooks::CachePurge;
use sea_orm::entity::prelude::*;

/// A blog post.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, CachePurge)]
#[sea_orm(table_name = "posts")]
#[cache_purge(
    url = "/posts/{slug}",
    url = "/",
    url = "/categories/{category_id}",
    url = "/feed.xml?category={category_id}"
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
