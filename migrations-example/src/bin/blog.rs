//! The blog as a web site, alone or behind a real cache started from the shipped configs.
//!
//! ```text
//! cargo run -p migrations-example --bin blog                              # the blog alone
//! cargo run -p migrations-example --bin blog -- --behind nginx            # behind nginx
//! cargo run -p migrations-example --bin blog -- --behind varnish --demo   # the cycle, then exit
//! ```
//!
//! See `docs/example.md`.

use std::error::Error;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cache_purge_hooks::backend::DummyBackend;
use cache_purge_hooks::sea_orm::tag_index::SqlTagIndex;
use cache_purge_hooks::{Purger, PurgerBuilder, Settings};
use clap::Parser;
use migrations_example::front::{CacheKind, FrontCache};
use migrations_example::seed::{EDITED_POST, NEIGHBOUR_POST, seed};
use migrations_example::web::{BlogServer, post_path};
use migrations_example::{Migrator, demo, register_comment_resolver};
use sea_orm::{Database, DatabaseConnection};
use sea_orm_migration::MigratorTrait;

/// A small blog on SeaORM and axum whose saves purge the cache in front of it.
#[derive(Debug, Parser)]
#[command(name = "blog", version)]
struct Args {
    /// Start a real cache in front of the blog, from the configuration shipped in deploy/,
    /// and purge it (without: the blog alone, purging as cache-purge.toml says, by default
    /// to the log).
    #[arg(long, value_enum, value_name = "CACHE")]
    behind: Option<CacheKind>,
    /// Show the cycle through the cache (HIT, edit, MISS with the new content), then stop.
    #[arg(long, requires = "behind")]
    demo: bool,
    /// Where the blog listens: a loopback address (port 0: a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The database (default: a new SQLite file in a temp dir, removed at exit).
    #[arg(long, env = "DATABASE_URL", value_name = "URL")]
    database: Option<String>,
}

type BoxError = Box<dyn Error>;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // The log backend's purges (the blog alone) are INFO events; the demo's own report is
    // enough there.
    let default_filter = if args.demo {
        "warn"
    } else {
        "warn,cache_purge_hooks=info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        // Logs go to stderr: stdout is the program's own report, which scripts and tests read.
        .with_writer(std::io::stderr)
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("blog: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    if !args.listen.ip().is_loopback() {
        return Err(format!(
            "--listen {}: the blog only listens on a loopback address (its admin has no login)",
            args.listen
        )
        .into());
    }
    let run_dir = tempfile::Builder::new().prefix("cph-blog-").tempdir()?;
    let (db, database) = open_database(args.database.as_deref(), run_dir.path()).await?;
    Migrator::up(&db, None).await?;
    register_comment_resolver()?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let blog_port = listener.local_addr()?.port();

    // The cache is a child process: dropped on any early return, it is stopped by PID.
    let cache = match args.behind {
        Some(kind) => Some(FrontCache::start(kind, blog_port).await?),
        None => None,
    };
    // Behind a cache: settings for that cache, written as a file like any app's. Alone: the
    // app's usual cache-purge.toml / CACHE_PURGE__* (by default the `log` backend).
    let (settings, settings_file) = match &cache {
        Some(cache) => {
            let path = run_dir.path().join("cache-purge.toml");
            std::fs::write(&path, cache.settings_toml())?;
            (Settings::from_file(&path)?, Some(path))
        }
        None => (Settings::load()?, None),
    };
    // A backend that purges tags through an index (nginx, `tags = "index"`) gets one in the
    // blog's own database; the pages record into the same index as they are served.
    let mut builder = PurgerBuilder::from_settings(&settings)?;
    if builder.needs_tag_index() {
        builder = builder.tag_index(Arc::new(SqlTagIndex::new(db.clone())));
    }
    let purger = builder.build()?;
    purger.install();
    // Sample content only goes into an empty database, of which no cache can hold a page
    // yet: it is written with a purger that discards, since purging keys nothing caches still
    // costs nginx a slot in its keys zone each.
    let discard = Purger::builder()
        .backend("seed", DummyBackend::new())
        .build()?;
    let seeded = discard.scope(seed(&db)).await?;
    discard.shutdown(Duration::from_secs(1)).await?;
    let blog = BlogServer::start(listener, db.clone(), purger.tag_index())?;

    println!(
        "blog:     {}  ({database}; {} posts{})",
        blog.url(),
        seeded.posts,
        if seeded.wrote {
            ", sample content written"
        } else {
            ""
        }
    );
    if let Some(cache) = &cache {
        print_cache(cache);
    }
    match &settings_file {
        Some(path) => {
            println!("settings: {}", path.display());
            for line in std::fs::read_to_string(path)?.lines() {
                println!("          {line}");
            }
        }
        None => println!(
            "settings: cache-purge.toml or CACHE_PURGE__* variables if present, else the \
             default `log` backend"
        ),
    }
    println!("purges go to: {}\n", purger.backend_names().join(", "));

    let outcome = match (&cache, args.demo) {
        (Some(cache), true) => demo::run_cycle(cache, &mut std::io::stdout())
            .await
            .map_err(BoxError::from),
        (cache, _) => {
            print_try(&blog, cache.as_ref());
            wait_for_stop_signal().await.map_err(BoxError::from)
        }
    };

    // Stop in order: no new writes, then the purges still queued, then the cache.
    blog.stop().await?;
    purger.shutdown(Duration::from_secs(5)).await?;
    Purger::uninstall();
    match cache {
        Some(cache) => {
            let name = cache.kind().name();
            let pid = cache.pid();
            cache.stop()?;
            if !args.demo {
                println!("stopped the blog and {name} (pid {pid})");
            }
        }
        None => println!("stopped the blog"),
    }
    db.close().await?;
    outcome
}

async fn open_database(
    url: Option<&str>,
    run_dir: &Path,
) -> Result<(DatabaseConnection, String), BoxError> {
    if let Some(url) = url {
        return Ok((Database::connect(url).await?, format!("database {url}")));
    }
    let path = run_dir.join("blog.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    Ok((
        Database::connect(url).await?,
        format!("SQLite {}", path.display()),
    ))
}

fn print_cache(cache: &FrontCache) {
    println!(
        "{:<9} {}  (pid {}), in front of the blog, running",
        format!("{}:", cache.kind().name()),
        cache.url(),
        cache.pid()
    );
    for (file, shipped) in cache.config_files().iter().zip(cache.shipped_files()) {
        println!("            {}  (from {shipped})", file.display());
    }
}

fn print_try(blog: &BlogServer, cache: Option<&FrontCache>) {
    let post = post_path(EDITED_POST);
    let neighbour = post_path(NEIGHBOUR_POST);
    match cache {
        Some(cache) => {
            let base = cache.url();
            let header = match cache.kind() {
                CacheKind::Nginx => "x-cache-status",
                CacheKind::Varnish => "x-cache",
            };
            println!("Try, in another terminal:");
            println!("  curl -si {base}{post} | grep -i '^{header}'      # MISS, then HIT");
            println!(
                "  curl -s -d 'title=Hello again' {base}/admin{post}    # a SeaORM save: it purges"
            );
            println!("  curl -si {base}{post} | grep -i '^{header}'      # MISS: fresh, new title");
            println!(
                "  curl -si {base}{neighbour} | grep -i '^{header}'     # another post: untouched"
            );
            println!(
                "Pages: {base}/  {base}{post}  {base}/categories/1  {base}/feed.xml?category=1"
            );
            println!(
                "Ctrl-C stops the blog and {} (the blog itself is at {}).",
                cache.kind().name(),
                blog.url()
            );
        }
        None => {
            let base = blog.url();
            println!("Try, in another terminal:");
            println!("  curl -si {base}{post} | grep -i '^cache-control'");
            println!(
                "  curl -s -d 'title=Hello again' {base}/admin{post}    # purges, logged here"
            );
            println!(
                "Pages: {base}/  {base}{post}  {base}/categories/1  {base}/feed.xml?category=1"
            );
            println!("Ctrl-C stops the blog.");
        }
    }
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
async fn wait_for_stop_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    println!();
    Ok(())
}
