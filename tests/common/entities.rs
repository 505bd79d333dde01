//! Test entities: every way of declaring targets.

/// Templates with a path placeholder and a query placeholder.
pub mod post {
    use cache_purge_hooks::CachePurge;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, CachePurge)]
    #[sea_orm(table_name = "posts")]
    #[cache_purge(
        url = "/posts/{slug}",
        url = "/",
        url = "/archive?category={category_id}"
    )]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[sea_orm(unique)]
        pub slug: String,
        pub title: String,
        pub category_id: i32,
        pub published: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    cache_purge_hooks::sea_orm::active_model_behavior!();
}

/// Two templates, one of them the home page.
pub mod category {
    use cache_purge_hooks::CachePurge;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, CachePurge)]
    #[sea_orm(table_name = "categories")]
    #[cache_purge(url = "/categories/{slug}", url = "/")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub slug: String,
        pub name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    cache_purge_hooks::sea_orm::active_model_behavior!();
}

/// A registered resolver (URLs need application state), with its own ActiveModelBehavior
/// calling the helpers.
pub mod comment {
    use cache_purge_hooks::CachePurge;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, CachePurge)]
    #[sea_orm(table_name = "comments")]
    #[cache_purge(registered)]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub post_slug: String,
        pub text: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    #[cache_purge_hooks::async_trait]
    impl ActiveModelBehavior for ActiveModel {
        async fn before_save<C: ConnectionTrait>(
            mut self,
            db: &C,
            insert: bool,
        ) -> Result<Self, DbErr> {
            if let sea_orm::ActiveValue::Set(text) = &self.text {
                self.text = sea_orm::ActiveValue::Set(text.trim().to_owned());
            }
            cache_purge_hooks::sea_orm::before_save(self, db, insert).await
        }
        async fn after_save<C: ConnectionTrait>(
            model: Model,
            db: &C,
            insert: bool,
        ) -> Result<Model, DbErr> {
            cache_purge_hooks::sea_orm::after_save::<Self, _>(model, db, insert).await
        }
        async fn before_delete<C: ConnectionTrait>(self, db: &C) -> Result<Self, DbErr> {
            cache_purge_hooks::sea_orm::before_delete(self, db).await
        }
        async fn after_delete<C: ConnectionTrait>(self, db: &C) -> Result<Self, DbErr> {
            cache_purge_hooks::sea_orm::after_delete(self, db).await
        }
    }
}

/// A resolver function of the model (the seed's `get_absolute_urls`), reading `path` only.
pub mod page {
    use cache_purge_hooks::CachePurge;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, CachePurge)]
    #[sea_orm(table_name = "pages")]
    #[cache_purge(resolver = page_urls)]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub path: String,
        pub body: String,
    }

    fn page_urls(page: &Model) -> Vec<String> {
        vec![page.path.clone(), "/sitemap.xml".to_owned()]
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    cache_purge_hooks::sea_orm::active_model_behavior!();
}
