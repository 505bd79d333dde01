//! Read-your-writes, with the blog behind a real nginx and a real varnishd: an editor saves a
//! post and follows the `303` to its page at once, 50 times. With the library's
//! `ReadYourWritesLayer` (the blog's `router`), every one of those pages is the new version,
//! in both caches; without it (`routes`), the browser's GET races the purge and gets the old
//! page.
//!
//! The purges go to the caches through a backend wrapper that adds 20 ms, the round trip to
//! a cache on another host: on loopback the race is lost only sometimes, across a network
//! nearly always.

use std::sync::Arc;
use std::time::Duration;

use cache_purge_hooks::backend::{Backend, Capabilities, NginxBackend, PurgeError, VarnishBackend};
use cache_purge_hooks::settings::BackendSettings;
use cache_purge_hooks::{Delivery, Purger, Settings, Target};
use cache_purge_hooks_testing::{Nginx, NginxConfig, Varnish};
use migrations_example::seed::{EDITED_POST, seed};
use migrations_example::web::{BlogServer, post_path, router, routes};
use migrations_example::{Migrator, register_comment_resolver};
use sea_orm::{Database, DatabaseConnection};
use sea_orm_migration::MigratorTrait;

/// Edits per run.
const EDITS: usize = 50;

/// A real backend, 20 ms further away.
struct Distant(Arc<dyn Backend>);

#[cache_purge_hooks::async_trait]
impl Backend for Distant {
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    fn max_batch(&self) -> usize {
        self.0.max_batch()
    }
    fn max_concurrency(&self) -> usize {
        self.0.max_concurrency()
    }
    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.0.purge(batch).await
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .expect("reqwest client")
}

/// Saves the post `EDITS` times through nginx, each time GETting the redirect's target right
/// away through both caches; returns how many of those pages were the old version.
async fn edit_and_follow(nginx: &Nginx, varnish: &Varnish, label: &str) -> usize {
    let client = client();
    let page = post_path(EDITED_POST);
    let caches = [
        ("nginx", format!("http://{}", nginx.addr())),
        ("varnish", format!("http://{}", varnish.http_addr())),
    ];
    // Cached in both before the first edit.
    for (_, base) in &caches {
        for _ in 0..2 {
            client.get(format!("{base}{page}")).send().await.unwrap();
        }
    }
    let mut stale = 0;
    for i in 0..EDITS {
        let title = format!("{label} edit {i}");
        let response = client
            .post(format!("{}/admin{page}", caches[0].1))
            .form(&[("title", title.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{label} {i}");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        for (name, base) in &caches {
            let body = client
                .get(format!("{base}{location}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if !body.contains(&format!("<h1>{title}</h1>")) {
                stale += 1;
                eprintln!("{label}: edit {i}: {name} served the old page");
            }
        }
    }
    stale
}

async fn blog_db() -> (tempfile::TempDir, DatabaseConnection) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("blog.db").display());
    let db = Database::connect(url).await.unwrap();
    Migrator::up(&db, None).await.unwrap();
    (dir, db)
}

#[tokio::test(flavor = "multi_thread")]
async fn after_an_edit_the_page_the_redirect_names_is_fresh_in_both_caches() {
    let (_dir, db) = blog_db().await;
    register_comment_resolver().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let blog_port = listener.local_addr().unwrap().port();
    let (nginx, varnish) = tokio::try_join!(
        Nginx::start_in_front_of(blog_port, NginxConfig::default()),
        Varnish::start_in_front_of(blog_port),
    )
    .unwrap();
    let settings = Settings::from_toml_str(&format!(
        "[backends.nginx]\nkind = \"nginx\"\nservers = [\"{}\"]\npurge_prefix = \"/purge\"\n\
         [backends.varnish]\nkind = \"varnish\"\nservers = [\"{}\"]\nsecret_file = \"{}\"\n\
         ban_style = \"lurker\"\n",
        nginx.addr(),
        varnish.admin_addr(),
        varnish.secret_file().display()
    ))
    .unwrap();
    let (BackendSettings::Nginx(n), BackendSettings::Varnish(v)) = (
        &settings.backends["nginx"].settings,
        &settings.backends["varnish"].settings,
    ) else {
        panic!("{settings:?}");
    };
    let purger = Purger::builder()
        .delivery(Delivery::AfterCommit)
        .backend("nginx", Distant(Arc::new(NginxBackend::new(n).unwrap())))
        .backend(
            "varnish",
            Distant(Arc::new(VarnishBackend::new(v).unwrap())),
        )
        .build()
        .unwrap();
    purger.install();
    seed(&db).await.unwrap();
    purger.flush().await;

    // Without read-your-writes: the editor sees old pages.
    let blog = BlogServer::serve(listener, routes(db.clone(), None)).unwrap();
    let without = edit_and_follow(&nginx, &varnish, "without").await;
    blog.stop().await.unwrap();
    purger.flush().await;

    // With it (the blog's router): never.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", blog_port))
        .await
        .unwrap();
    let blog = BlogServer::serve(listener, router(db.clone(), None)).unwrap();
    let with = edit_and_follow(&nginx, &varnish, "with").await;
    blog.stop().await.unwrap();

    eprintln!(
        "stale pages after {EDITS} edits × 2 caches: {without} without the layer, {with} with it"
    );
    assert!(without > 0, "the race should show without the layer");
    assert_eq!(with, 0, "read-your-writes");
    for stats in purger.stats() {
        assert_eq!((stats.failed, stats.dead), (0, 0), "{stats:?}");
    }
    purger.shutdown(Duration::from_secs(10)).await.unwrap();
    Purger::uninstall();
    nginx.stop().unwrap();
    varnish.stop().unwrap();
    db.close().await.unwrap();
}
