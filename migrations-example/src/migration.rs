//! The blog's schema as sea-orm-migration migrations.

use sea_orm_migration::prelude::*;

/// Runs every migration of the blog, in order.
pub struct Migrator;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateCategories),
            Box::new(CreatePosts),
            Box::new(CreateComments),
            // The tag→URL index nginx's purges by tag look up (cache-purge-hooks' table).
            Box::new(cache_purge_hooks::sea_orm::tag_index::Migration),
        ]
    }
}

#[derive(DeriveIden)]
enum Categories {
    Table,
    Id,
    Slug,
    Name,
}

#[derive(DeriveIden)]
enum Posts {
    Table,
    Id,
    Slug,
    Title,
    Body,
    Published,
    CategoryId,
}

#[derive(DeriveIden)]
enum Comments {
    Table,
    Id,
    Page,
    Author,
    Body,
}

/// Creates `categories`.
pub struct CreateCategories;

impl MigrationName for CreateCategories {
    fn name(&self) -> &str {
        "m20261125_000001_create_categories"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for CreateCategories {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Categories::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Categories::Id)
                            .integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Categories::Slug)
                            .string_len(200)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Categories::Name).string_len(200).not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Categories::Table).to_owned())
            .await
    }
}

/// Creates `posts`.
pub struct CreatePosts;

impl MigrationName for CreatePosts {
    fn name(&self) -> &str {
        "m20261125_000002_create_posts"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for CreatePosts {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Posts::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Posts::Id)
                            .integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Posts::Slug)
                            .string_len(200)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Posts::Title).string_len(200).not_null())
                    .col(ColumnDef::new(Posts::Body).text().not_null())
                    .col(
                        ColumnDef::new(Posts::Published)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ColumnDef::new(Posts::CategoryId).integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(Posts::Table, Posts::CategoryId)
                            .to(Categories::Table, Categories::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Posts::Table).to_owned())
            .await
    }
}

/// Creates `comments`, keyed by the path of the page they are on (see
/// [`crate::entity::comment`]), with an index to list a page's comments.
pub struct CreateComments;

impl MigrationName for CreateComments {
    fn name(&self) -> &str {
        "m20261201_000003_create_comments"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for CreateComments {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Comments::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Comments::Id)
                            .integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Comments::Page).string_len(500).not_null())
                    .col(ColumnDef::new(Comments::Author).string_len(200).not_null())
                    .col(ColumnDef::new(Comments::Body).text().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("comments_page")
                    .table(Comments::Table)
                    .col(Comments::Page)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Comments::Table).to_owned())
            .await
    }
}
