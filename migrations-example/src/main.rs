//! The blog demo: creates a SQLite database, runs the migrations, and makes every kind of
//! write a blog makes, printing which URLs each step purged.
//!
//! ```text
//! cargo run -p migrations-example
//! ```
//!
//! Settings come from `cache-purge.toml` / `CACHE_PURGE__*` like in any app (with neither, the
//! `log` backend); a `memory` backend is added beside them so each step can show its purges.
//! `DATABASE_URL` selects another database (for example `postgres://postgres@127.0.0.1/test`).

use std::time::Duration;

use cache_purge_hooks::backend::MemoryBackend;
use cache_purge_hooks::{Purger, PurgerBuilder, Settings};
use migrations_example::entity::{category, comment, post};
use migrations_example::web::post_path;
use migrations_example::{Migrator, register_comment_resolver};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, Database, DatabaseConnection, DbErr, Set};
use sea_orm_migration::MigratorTrait;

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        // Logs go to stderr: stdout is the program's own report, which scripts and tests read.
        .with_writer(std::io::stderr)
        .init();

    // Start-up: invalid settings stop the program here, not at the first save.
    let settings = Settings::load()?;
    let memory = MemoryBackend::new();
    // The configured backends, plus a recorder that lets this demo print each step's purges.
    let purger = PurgerBuilder::from_settings(&settings)?
        .backend("demo-recorder", memory.clone())
        .build()?;
    purger.install();
    // Comments use a resolver the app registers (the comment model only says `registered`).
    register_comment_resolver()?;
    println!("backends: {}", purger.backend_names().join(", "));

    let (db, db_file) = connect().await?;
    Migrator::up(&db, None).await?;
    println!("database ready, migrations applied\n");

    let result = run_steps(&db, &purger, &memory).await;

    purger.shutdown(Duration::from_secs(10)).await?;
    db.close().await?;
    if let Some(path) = db_file {
        let _ = std::fs::remove_file(path);
    }
    result
}

async fn connect() -> Result<(DatabaseConnection, Option<std::path::PathBuf>), Error> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        println!("database: {url}");
        return Ok((Database::connect(url).await?, None));
    }
    let path = std::env::temp_dir().join(format!("cache-purge-demo-{}.db", std::process::id()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    println!("database: {url}");
    Ok((Database::connect(url).await?, Some(path)))
}

/// Prints what the step purged (waiting for the pipeline to deliver it first).
async fn report(step: &str, purger: &Purger, memory: &MemoryBackend) {
    purger.flush().await;
    let mut urls = memory.take_urls();
    // Separate writes are separate purges; show each URL once per step.
    let mut seen = std::collections::HashSet::new();
    urls.retain(|u| seen.insert(u.clone()));
    println!("{step}");
    if urls.is_empty() {
        println!("    purged: nothing");
    }
    for url in urls {
        println!("    purged: {url}");
    }
}

async fn run_steps(
    db: &DatabaseConnection,
    purger: &Purger,
    memory: &MemoryBackend,
) -> Result<(), Error> {
    let rust = category::ActiveModel {
        slug: Set("rust".into()),
        name: Set("Rust".into()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    report("1. create category `rust`", purger, memory).await;

    let hello = new_post("hello-world", "Hello, world", rust.id)
        .insert(db)
        .await?;
    let second = new_post("second-post", "A second post", rust.id)
        .insert(db)
        .await?;
    report(
        "2. create posts `hello-world` and `second-post`",
        purger,
        memory,
    )
    .await;

    let mut edit: post::ActiveModel = hello.clone().into();
    edit.title = Set("Hello, cache".into());
    let hello = edit.update(db).await?;
    report(
        "3. edit the title of `hello-world` (no URL field changed: no extra query)",
        purger,
        memory,
    )
    .await;

    let mut edit: post::ActiveModel = hello.into();
    edit.slug = Set("hello-rust".into());
    let hello = edit.update(db).await?;
    report(
        "4. change the slug `hello-world` -> `hello-rust` (old and new URLs)",
        purger,
        memory,
    )
    .await;

    post::ActiveModel {
        id: Set(second.id),
        ..Default::default()
    }
    .delete(db)
    .await?;
    report(
        "5. delete `second-post` given only its id (the row is loaded to find its URLs)",
        purger,
        memory,
    )
    .await;

    cache_purge_hooks::sea_orm::bulk::insert_many(
        db,
        ["bulk-1", "bulk-2"].map(|s| new_post(s, s, rust.id)),
    )
    .await?;
    cache_purge_hooks::sea_orm::bulk::update_many::<post::Entity, _>(
        db,
        post::Column::CategoryId.eq(rust.id),
        |u| u.col_expr(post::Column::Published, Expr::value(true)),
    )
    .await?;
    report(
        "6. bulk insert two posts, then publish every post of `rust` in one UPDATE",
        purger,
        memory,
    )
    .await;

    let rolled_back = cache_purge_hooks::sea_orm::transaction(db, |txn| {
        let hello = hello.clone();
        Box::pin(async move {
            let mut edit: post::ActiveModel = hello.into();
            edit.slug = Set("never-committed".into());
            edit.update(txn).await?;
            Err::<(), DbErr>(DbErr::Custom("changed my mind".into()))
        })
    })
    .await;
    assert!(rolled_back.is_err());
    report(
        "7. a transaction that changes a slug, then rolls back",
        purger,
        memory,
    )
    .await;

    cache_purge_hooks::sea_orm::transaction(db, |txn| {
        let hello = hello.clone();
        Box::pin(async move {
            let mut edit: post::ActiveModel = hello.into();
            edit.body = Set("Edited inside a transaction.".into());
            edit.update(txn).await?;
            Ok::<(), DbErr>(())
        })
    })
    .await?;
    report(
        "8. a transaction that edits a post and commits (purged after COMMIT)",
        purger,
        memory,
    )
    .await;

    comment::ActiveModel {
        page: Set(post_path(&hello.slug)),
        author: Set("Ann".into()),
        body: Set("Nice post!".into()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    report(
        "9. comment on `hello-rust` (URLs from a resolver registered at start-up)",
        purger,
        memory,
    )
    .await;

    cache_purge_hooks::sea_orm::bulk::delete_many::<post::Entity, _>(
        db,
        post::Column::CategoryId.eq(rust.id),
    )
    .await?;
    category::ActiveModel::from(rust).delete(db).await?;
    report(
        "10. bulk delete the posts of `rust`, then delete the category",
        purger,
        memory,
    )
    .await;
    Ok(())
}

fn new_post(slug: &str, title: &str, category_id: i32) -> post::ActiveModel {
    post::ActiveModel {
        slug: Set(slug.into()),
        title: Set(title.into()),
        body: Set(format!("The text of {title}.")),
        published: Set(false),
        category_id: Set(category_id),
        ..Default::default()
    }
}
