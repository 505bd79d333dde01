//! The example blog behind a real nginx and a real varnishd at once, both started by
//! cache-purge-hooks-testing from the configuration shipped in `deploy/`: an edit made
//! through the site (a SeaORM save) purges, in both caches, exactly the pages that show the
//! post, and a comment purges exactly what its registered resolver names.
//!
//! It fails, never skips, when nginx, its cache purge module or varnishd is missing.

use std::time::Duration;

use cache_purge_hooks::{Purger, Settings};
use cache_purge_hooks_testing::{
    HARNESS_VCL, NGINX_CONF, NGINX_SITE_CONF, Nginx, NginxConfig, Page, Varnish,
};
use migrations_example::seed::{EDITED_POST, NEIGHBOUR_POST, seed};
use migrations_example::web::{BlogServer, PAGE_CACHE_CONTROL, post_path};
use migrations_example::{Migrator, register_comment_resolver};
use sea_orm::Database;
use sea_orm_migration::MigratorTrait;

/// The shipped files, read from the repository at test time (not through the harness).
fn shipped(path: &str) -> String {
    let full = format!("{}/../deploy/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {full}: {e}"))
}

/// One of the two caches in front of the blog.
enum Cache<'a> {
    Nginx(&'a Nginx),
    Varnish(&'a Varnish),
}

impl Cache<'_> {
    fn name(&self) -> &'static str {
        match self {
            Cache::Nginx(_) => "nginx",
            Cache::Varnish(_) => "varnish",
        }
    }

    fn base(&self) -> String {
        match self {
            Cache::Nginx(n) => format!("http://{}", n.addr()),
            Cache::Varnish(v) => format!("http://{}", v.http_addr()),
        }
    }

    async fn get(&self, path: &str) -> Page {
        let page = match self {
            Cache::Nginx(n) => n.get(path).await,
            Cache::Varnish(v) => v.get(path).await,
        };
        page.unwrap_or_else(|e| panic!("{}: GET {path}: {e}", self.name()))
    }

    /// GETs `path` twice: a MISS (served by the blog, with its cache headers), then a HIT.
    async fn warm(&self, path: &str) {
        let first = self.get(path).await;
        assert_eq!(first.status, 200, "{}: {path}: {first:?}", self.name());
        assert_eq!(
            first.cache.as_deref(),
            Some("MISS"),
            "{}: {path}",
            self.name()
        );
        assert_eq!(first.header("cache-control"), Some(PAGE_CACHE_CONTROL));
        let second = self.get(path).await;
        assert!(
            second.is_hit(),
            "{}: {path} not cached: {second:?}",
            self.name()
        );
    }

    /// The next GET of `path` is a MISS whose body contains `fresh`, then it is cached again.
    async fn assert_purged(&self, path: &str, fresh: &str) {
        let page = self.get(path).await;
        assert!(
            !page.is_hit(),
            "{}: {path} should have been purged: {page:?}",
            self.name()
        );
        assert!(
            page.body.contains(fresh),
            "{}: {path} should show {fresh:?}: {}",
            self.name(),
            page.body
        );
        assert!(self.get(path).await.is_hit(), "{}: {path}", self.name());
    }

    /// The next GET of `path` is still a HIT, with `content` (the version cached before).
    async fn assert_cached(&self, path: &str, content: &str) {
        let page = self.get(path).await;
        assert!(
            page.is_hit(),
            "{}: {path} should still be cached: {page:?}",
            self.name()
        );
        assert!(page.body.contains(content), "{}: {path}", self.name());
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

#[tokio::test(flavor = "multi_thread")]
async fn edits_and_comments_through_the_blog_purge_nginx_and_varnish() {
    // The blog on a fresh SQLite database and a free loopback port.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("blog.db").display());
    let db = Database::connect(url).await.unwrap();
    Migrator::up(&db, None).await.unwrap();
    register_comment_resolver().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let blog_port = listener.local_addr().unwrap().port();

    // Both caches in front of it, from the shipped files.
    let (nginx, varnish) = tokio::try_join!(
        Nginx::start_in_front_of(blog_port, NginxConfig::default()),
        Varnish::start_in_front_of(blog_port),
    )
    .unwrap();
    let dir_text = nginx.dir().display().to_string();
    assert_eq!(NGINX_CONF, shipped("nginx/nginx.conf"));
    assert_eq!(NGINX_SITE_CONF, shipped("nginx/cache-purge.conf"));
    assert_eq!(HARNESS_VCL, shipped("varnish/cache-purge.vcl"));
    assert_eq!(
        std::fs::read_to_string(nginx.config_path()).unwrap(),
        shipped("nginx/nginx.conf").replace("@DIR@", &dir_text)
    );
    assert_eq!(
        std::fs::read_to_string(nginx.site_config_path()).unwrap(),
        shipped("nginx/cache-purge.conf")
            .replace("@CACHE_DIR@", &format!("{dir_text}/cache"))
            .replace("@LISTEN@", &nginx.addr())
            .replace("@ORIGIN@", &format!("127.0.0.1:{blog_port}"))
    );
    assert_eq!(
        std::fs::read_to_string(varnish.vcl_path()).unwrap(),
        shipped("varnish/cache-purge.vcl").replace("@ORIGIN_PORT@", &blog_port.to_string())
    );

    // One purger for both, as an app with two caches configures it.
    let settings = Settings::from_toml_str(&format!(
        "[backends.nginx]\nkind = \"nginx\"\nservers = [\"{}\"]\npurge_prefix = \"/purge\"\n\
         [backends.varnish]\nkind = \"varnish\"\nservers = [\"{}\"]\nsecret_file = \"{}\"\n\
         ban_style = \"lurker\"\n",
        nginx.addr(),
        varnish.admin_addr(),
        varnish.secret_file().display()
    ))
    .unwrap();
    let purger = cache_purge_hooks::init_with(&settings).unwrap();
    seed(&db).await.unwrap();
    purger.flush().await;
    let blog = BlogServer::start(listener, db.clone(), purger.tag_index()).unwrap();

    let edited = post_path(EDITED_POST);
    let neighbour = post_path(NEIGHBOUR_POST);
    // hello-world and second-post are in category 1, purge-on-save in category 2.
    let caches = [Cache::Nginx(&nginx), Cache::Varnish(&varnish)];
    for cache in &caches {
        for path in [
            edited.as_str(),
            neighbour.as_str(),
            "/",
            "/categories/1",
            "/categories/2",
            "/feed.xml?category=1",
        ] {
            cache.warm(path).await;
        }
    }

    // Edit the post through the site, as a visitor of the cached site would (the POST passes
    // through nginx to the blog).
    let response = client()
        .post(format!("{}/admin{edited}", caches[0].base()))
        .form(&[("title", "Hello, cache")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], edited.as_str());
    assert_eq!(
        response.text().await.unwrap(),
        "saved post hello-world; purged /posts/hello-world, /, /categories/1, \
         /feed.xml?category=1\n"
    );
    // The blog answered once the purges were attempted; they all succeeded.
    for stats in purger.stats() {
        assert_eq!(stats.failed, 0, "{stats:?}");
    }

    for cache in &caches {
        cache.assert_purged(&edited, "<h1>Hello, cache</h1>").await;
        cache.assert_purged("/", "Hello, cache").await;
        cache.assert_purged("/categories/1", "Hello, cache").await;
        cache
            .assert_purged("/feed.xml?category=1", "<title>Hello, cache</title>")
            .await;
        cache.assert_cached(&neighbour, "A second post").await;
        cache
            .assert_cached("/categories/2", "Purging on save")
            .await;
    }
    // What the caches themselves recorded.
    let access_log = nginx.access_log();
    for purge in [
        "PURGE /purge/posts/hello-world 200",
        "PURGE /purge/ 200",
        "PURGE /purge/categories/1 200",
        "PURGE /purge/feed.xml?category=1 200",
    ] {
        assert!(access_log.contains(purge), "{purge} missing: {access_log}");
    }
    let bans = varnish.ban_list().unwrap();
    assert!(
        bans.iter()
            .any(|b| b.starts_with("obj.http.x-url ~ ") && b.contains("/posts/hello-world")),
        "{bans:?}"
    );

    // A comment, through Varnish this time: its registered resolver names the post's page
    // and the home page, nothing else.
    let response = client()
        .post(format!("{}{neighbour}/comments", caches[1].base()))
        .form(&[("author", "Bob"), ("body", "Purged, then fresh.")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.text().await.unwrap(),
        "saved comment 2; purged /posts/second-post, /\n"
    );
    for cache in &caches {
        cache
            .assert_purged(&neighbour, "<b>Bob</b>: Purged, then fresh.")
            .await;
        cache
            .assert_purged(
                "/",
                "A second post</a> in <a href=\"/categories/1\">Rust</a> · 1 comment(s)",
            )
            .await;
        cache.assert_cached(&edited, "<h1>Hello, cache</h1>").await;
        cache.assert_cached("/categories/1", "Hello, cache").await;
    }

    blog.stop().await.unwrap();
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
    Purger::uninstall();
    nginx.stop().unwrap();
    varnish.stop().unwrap();
    db.close().await.unwrap();
}
