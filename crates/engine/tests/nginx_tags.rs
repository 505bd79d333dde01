//! Purging by tag on a real nginx (started per test by `cache-purge-hooks-testing` in front
//! of its `Origin`) through the tag→URL index, in `http` and `files` modes, with the memory
//! index and (feature `redis`) a real `redis-server`: purging `post:1` makes `/posts/1` and
//! `/?page=7` a MISS with fresh content, keeps `/posts/10` and `/posts/2` cached, and
//! removes the purged URLs from the tag. (The SQL index runs the same scenario in
//! cache-purge-hooks-sea-orm's tests/tag_index.rs.)

use std::sync::Arc;
use std::time::Duration;

use cache_purge_hooks_engine::backend::{Backend, Capabilities, Cause, NginxBackend};
use cache_purge_hooks_engine::settings::{CacheDir, NginxMode, NginxSettings, NginxTags};
use cache_purge_hooks_engine::tag_index::{MemoryTagIndex, TagIndex};
use cache_purge_hooks_engine::{
    BuildError, Delivery, PurgeUrl, Purger, PurgerBuilder, Settings, Tag, Target,
};
use cache_purge_hooks_testing::{
    Nginx, NginxConfig, Origin, StatusServer, assert_cached, assert_purged, warm,
};

fn http_settings(nginx: &Nginx) -> NginxSettings {
    let mut s = NginxSettings::default();
    s.servers = vec![nginx.addr().parse().unwrap()];
    s.purge_prefix = Some("/purge".parse().unwrap());
    s.timeout = Duration::from_secs(2);
    s.tags = NginxTags::Index;
    s
}

fn files_settings(nginx: &Nginx) -> NginxSettings {
    let mut s = NginxSettings::default();
    s.mode = NginxMode::Files;
    s.cache_dir = Some(CacheDir::new(nginx.cache_dir()).unwrap());
    s.key_template = Some("$uri$is_args$args".parse().unwrap());
    s.tags = NginxTags::Index;
    s
}

fn tag(t: &str) -> Tag {
    Tag::parse(t).unwrap()
}

fn url(u: &str) -> PurgeUrl {
    PurgeUrl::parse(u).unwrap()
}

const PAGES: [&str; 4] = ["/posts/1", "/?page=7", "/posts/10", "/posts/2"];

/// What the tagging layer records when it serves the pages.
async fn record_pages(index: &dyn TagIndex) {
    let hour = Duration::from_secs(3600);
    for (page, tags) in [
        ("/posts/1", &["post:1", "posts"][..]),
        ("/?page=7", &["post:1", "posts"][..]),
        ("/posts/10", &["post:10"][..]),
        ("/posts/2", &["post:2"][..]),
    ] {
        let tags: Vec<Tag> = tags.iter().map(|t| tag(t)).collect();
        index.record(&url(page), &tags, hour).await.unwrap();
    }
}

async fn start() -> (Origin, Nginx) {
    let origin = Origin::start().unwrap();
    let nginx = Nginx::start(&origin, NginxConfig::default()).await.unwrap();
    (origin, nginx)
}

/// The scenario of the docs, through a `Purger` whose nginx backend has `settings` and whose
/// index is `index`.
pub async fn purging_post_1_purges_its_pages_only(
    origin: &Origin,
    nginx: &Nginx,
    purger: Purger,
    index: Arc<dyn TagIndex>,
) {
    warm(nginx, &PAGES).await;
    record_pages(index.as_ref()).await;

    purger.purge([Target::tag("post:1").unwrap()]).await;
    purger.flush().await;
    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.purged, stats.failed, stats.unsupported),
        (1, 0, 0),
        "{stats:?}"
    );

    assert_purged(nginx, origin, "/posts/1").await;
    assert_purged(nginx, origin, "/?page=7").await;
    assert_cached(nginx, "/posts/10").await;
    assert_cached(nginx, "/posts/2").await;
    assert!(
        index.urls(&[tag("post:1")]).await.unwrap().is_empty(),
        "the purged URLs are forgotten for post:1"
    );
    // Only for that tag: the others still list theirs.
    assert_eq!(
        index.urls(&[tag("post:10")]).await.unwrap(),
        [url("/posts/10")]
    );
    assert_eq!(index.urls(&[tag("posts")]).await.unwrap().len(), 2);
    assert_eq!(nginx.worker_crash(), None);
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

async fn with_memory_index(settings: fn(&Nginx) -> NginxSettings) {
    let (origin, nginx) = start().await;
    let index: Arc<dyn TagIndex> = Arc::new(MemoryTagIndex::new());
    let backend = NginxBackend::new(&settings(&nginx)).unwrap();
    assert!(backend.capabilities().contains(Capabilities::TAG));
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("nginx", backend)
        .tag_index(index.clone())
        .build()
        .unwrap();
    purging_post_1_purges_its_pages_only(&origin, &nginx, purger, index).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_mode_purges_the_indexed_urls_of_a_tag_and_keeps_the_others_cached() {
    with_memory_index(http_settings).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn files_mode_unlinks_the_indexed_urls_of_a_tag_and_keeps_the_others_cached() {
    with_memory_index(files_settings).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_and_urls_in_one_batch_purge_each_url_once() {
    let (origin, nginx) = start().await;
    let index = Arc::new(MemoryTagIndex::new());
    warm(&nginx, &PAGES).await;
    record_pages(index.as_ref()).await;
    let backend = NginxBackend::new(&http_settings(&nginx))
        .unwrap()
        .with_tag_index(index.clone());
    backend
        .purge(&[
            Target::url("/posts/1").unwrap(),
            Target::tag("post:1").unwrap(),
            Target::tag("post:2").unwrap(),
            Target::tag("never-seen").unwrap(),
        ])
        .await
        .unwrap();
    assert_purged(&nginx, &origin, "/posts/1").await;
    assert_purged(&nginx, &origin, "/?page=7").await;
    assert_purged(&nginx, &origin, "/posts/2").await;
    assert_cached(&nginx, "/posts/10").await;
    // One purge request per URL: /posts/1 is in the batch and in the tag.
    let purges = nginx
        .access_log()
        .lines()
        .filter(|l| l.contains("/purge/posts/1 "))
        .count();
    assert_eq!(purges, 1, "{}", nginx.access_log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_whose_urls_fail_to_purge_fails_retryably_and_stays_in_the_index() {
    let down = StatusServer::start(503, "upstream down").unwrap();
    let index = Arc::new(MemoryTagIndex::new());
    record_pages(index.as_ref()).await;
    let mut settings = NginxSettings::default();
    settings.servers = vec![down.addr().parse().unwrap()];
    settings.purge_prefix = Some("/purge".parse().unwrap());
    settings.tags = NginxTags::Index;
    let backend = NginxBackend::new(&settings)
        .unwrap()
        .with_tag_index(index.clone());
    let post1 = Target::tag("post:1").unwrap();
    let err = backend
        .purge(std::slice::from_ref(&post1))
        .await
        .unwrap_err();
    assert_eq!(err.cause(), &Cause::Status(503), "{err}");
    assert!(err.is_transient(), "{err}");
    assert!(err.failed().contains(&post1), "{err}");
    // Not forgotten: the retry purges them again.
    assert_eq!(index.urls(&[tag("post:1")]).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purger_with_an_index_backend_and_no_index_is_not_built() {
    let settings = Settings::from_toml_str(
        "[backends.site]\nkind = \"nginx\"\nservers = [\"127.0.0.1:9\"]\ntags = \"index\"\n",
    )
    .unwrap();
    let err = PurgerBuilder::from_settings(&settings)
        .unwrap()
        .build()
        .unwrap_err();
    assert!(matches!(&err, BuildError::NoTagIndex { name } if name == "site"));
    let message = err.to_string();
    assert!(
        message.contains("backend `site`") && message.contains("[tag_index]"),
        "{message}"
    );
    // Code-built backends too.
    let mut s = NginxSettings::default();
    s.tags = NginxTags::Index;
    let backend = NginxBackend::new(&s).unwrap();
    assert!(backend.needs_tag_index());
    let err = Purger::builder()
        .backend("code", backend)
        .build()
        .unwrap_err();
    assert!(matches!(&err, BuildError::NoTagIndex { name } if name == "code"));
    // With `[tag_index] kind = "memory"` it builds, and hands the index out for recording.
    let settings = Settings::from_toml_str(
        "[tag_index]\nkind = \"memory\"\nmax_urls_per_tag = 5\n\
         [backends.site]\nkind = \"nginx\"\nservers = [\"127.0.0.1:9\"]\ntags = \"index\"\n",
    )
    .unwrap();
    let purger = Purger::from_settings(&settings).unwrap();
    assert!(purger.tag_index().is_some());
    assert!(
        purger
            .capabilities("site")
            .unwrap()
            .contains(Capabilities::TAG)
    );
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[test]
fn tag_index_settings_errors_name_the_key() {
    let err = |toml: &str| Settings::from_toml_str(toml).unwrap_err();
    let e = err(
        "[backends.n]\nkind = \"nginx\"\nmode = \"wipe\"\ncache_dir = \"/var/cache/x\"\ntags = \"index\"\n",
    );
    assert_eq!(e.key.as_deref(), Some("backends.n.tags"), "{e}");
    assert!(e.message.contains("wipe"), "{e}");
    let e = err("[backends.n]\nkind = \"nginx\"\ntags = \"xkey\"\n");
    assert_eq!(e.key.as_deref(), Some("backends.n.tags"), "{e}");
    assert!(e.message.contains("`none`, `index`"), "{e}");
    let e = err("[tag_index]\nkind = \"redis\"\n");
    assert_eq!(e.key.as_deref(), Some("tag_index.url"), "{e}");
    let e = err("[tag_index]\nkind = \"redis\"\nurl = \"127.0.0.1:6379\"\n");
    assert_eq!(e.key.as_deref(), Some("tag_index.url"), "{e}");
    let e = err("[tag_index]\nkind = \"memcached\"\n");
    assert_eq!(e.key.as_deref(), Some("tag_index.kind"), "{e}");
    let e = err("[tag_index]\nmax_urls = 5\n");
    assert_eq!(e.key.as_deref(), Some("tag_index.max_urls"), "{e}");
    assert!(e.message.contains("max_urls_per_tag"), "{e}");
    let e = err("[tag_index]\nmax_urls_per_tag = 0\n");
    assert_eq!(e.key.as_deref(), Some("tag_index.max_urls_per_tag"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_tags_index_a_tag_is_reported_unsupported() {
    let (_origin, nginx) = start().await;
    let mut settings = http_settings(&nginx);
    settings.tags = NginxTags::None;
    let backend = NginxBackend::new(&settings).unwrap();
    assert!(!backend.capabilities().contains(Capabilities::TAG));
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("nginx", backend)
        .build()
        .unwrap();
    purger.purge([Target::tag("post:1").unwrap()]).await;
    purger.flush().await;
    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.unsupported), (0, 1), "{stats:?}");
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use cache_purge_hooks_engine::tag_index::{RedisTagIndex, TagIndexErrorKind};
    use cache_purge_hooks_testing::{Redis, redis_answers, refused_addr};

    /// A Redis for one test: our own `redis-server` where the binary exists, else the one on
    /// 127.0.0.1:6379; `None` (skipped, with a note) when neither, a panic under `CI=true`.
    /// The key prefix is unique per test, so a shared server is no problem.
    struct TestRedis {
        url: String,
        prefix: String,
        _server: Option<Redis>,
    }

    async fn redis(test: &str) -> Option<TestRedis> {
        let prefix = format!("cph-test:{}:{test}:", std::process::id());
        match Redis::start().await {
            Ok(server) => Some(TestRedis {
                url: server.url(),
                prefix,
                _server: Some(server),
            }),
            Err(e) if redis_answers(6379) => {
                eprintln!("using the Redis on 127.0.0.1:6379 ({e})");
                Some(TestRedis {
                    url: "redis://127.0.0.1:6379/0".to_owned(),
                    prefix,
                    _server: None,
                })
            }
            Err(e) => {
                if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                    panic!(
                        "CI requires Redis: cannot start redis-server ({e}) and none answers on 127.0.0.1:6379"
                    );
                }
                eprintln!("skipping: no Redis ({e}); apt-get install redis-server");
                None
            }
        }
    }

    impl TestRedis {
        fn index(&self) -> RedisTagIndex {
            RedisTagIndex::new(&self.url)
                .unwrap()
                .with_prefix(self.prefix.parse().unwrap())
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_batch_of_redis_tags_is_looked_up_and_forgotten_in_one_pipeline() {
        let Some(redis) = redis("batch").await else {
            return;
        };
        let index = redis.index();
        let hour = Duration::from_secs(3600);
        index
            .record(&url("/posts/1"), &[tag("post:1"), tag("posts")], hour)
            .await
            .unwrap();
        index
            .record(&url("/?page=2"), &[tag("posts")], hour)
            .await
            .unwrap();
        let mut lists = index
            .urls_of_each(&[tag("posts"), tag("none"), tag("post:1")])
            .await
            .unwrap();
        lists.iter_mut().for_each(|l| l.sort());
        assert_eq!(
            lists,
            [
                vec![url("/?page=2"), url("/posts/1")],
                vec![],
                vec![url("/posts/1")]
            ]
        );
        index
            .forget_each(&[
                (tag("post:1"), vec![url("/posts/1")]),
                (tag("posts"), vec![url("/?page=2")]),
            ])
            .await
            .unwrap();
        assert!(index.urls(&[tag("post:1")]).await.unwrap().is_empty());
        assert_eq!(
            index.urls(&[tag("posts")]).await.unwrap(),
            [url("/posts/1")]
        );
    }

    /// Through the settings file, as an application (and the CLI) does.
    async fn from_settings(mode: &str) {
        let Some(redis) = redis(&format!("settings-{mode}")).await else {
            return;
        };
        let (origin, nginx) = start().await;
        let backend = match mode {
            "http" => format!(
                "servers = [\"{}\"]\npurge_prefix = \"/purge\"\n",
                nginx.addr()
            ),
            _ => format!(
                "mode = \"files\"\ncache_dir = \"{}\"\nkey_template = \"$uri$is_args$args\"\n",
                nginx.cache_dir().display()
            ),
        };
        let settings = Settings::from_toml_str(&format!(
            "delivery = \"immediate\"\n\
             [tag_index]\nkind = \"redis\"\nurl = \"{}\"\nprefix = \"{}\"\n\
             [backends.site]\nkind = \"nginx\"\ntags = \"index\"\n{backend}",
            redis.url, redis.prefix
        ))
        .unwrap();
        let purger = Purger::from_settings(&settings).unwrap();
        let index = purger.tag_index().unwrap();
        purging_post_1_purges_its_pages_only(&origin, &nginx, purger, index).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn http_mode_with_a_redis_index_from_the_settings() {
        from_settings("http").await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn files_mode_with_a_redis_index_from_the_settings() {
        from_settings("files").await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_redis_entry_is_not_returned_after_it_expired() {
        let Some(redis) = redis("expiry").await else {
            return;
        };
        let index = redis.index();
        index
            .record(&url("/short"), &[tag("x")], Duration::from_secs(1))
            .await
            .unwrap();
        index
            .record(&url("/long"), &[tag("x")], Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(index.urls(&[tag("x")]).await.unwrap().len(), 2);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(index.urls(&[tag("x")]).await.unwrap(), [url("/long")]);
        // The key itself expires with its last entry.
        index
            .record(&url("/gone"), &[tag("brief")], Duration::from_millis(300))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(index.urls(&[tag("brief")]).await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_full_redis_tag_refuses_new_urls_and_drops_none() {
        let Some(redis) = redis("cap").await else {
            return;
        };
        let index = redis.index().with_max_urls_per_tag(2);
        let hour = Duration::from_secs(3600);
        index.record(&url("/a"), &[tag("x")], hour).await.unwrap();
        index.record(&url("/b"), &[tag("x")], hour).await.unwrap();
        let err = index
            .record(&url("/c"), &[tag("y"), tag("x")], hour)
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            &TagIndexErrorKind::Full {
                tag: tag("x"),
                max: 2
            }
        );
        assert_eq!(index.urls(&[tag("y")]).await.unwrap(), [url("/c")]);
        let mut x = index.urls(&[tag("x")]).await.unwrap();
        x.sort();
        assert_eq!(x, [url("/a"), url("/b")]);
        // Known URLs are refreshed, not refused.
        index.record(&url("/a"), &[tag("x")], hour).await.unwrap();
        index.forget(&tag("x"), &[url("/a")]).await.unwrap();
        index.record(&url("/c"), &[tag("x")], hour).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_unreachable_redis_fails_the_tag_retryably_and_never_the_save() {
        let index = Arc::new(
            RedisTagIndex::new(&format!("redis://{}/0", refused_addr()))
                .unwrap()
                .with_timeout(Duration::from_millis(500)),
        );
        // The response side: a typed error (the layer then keeps the page out of the cache).
        let err = index
            .record(&url("/posts/1"), &[tag("post:1")], Duration::from_secs(60))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), &TagIndexErrorKind::Unreachable, "{err:?}");

        let mut settings = NginxSettings::default();
        settings.servers = vec!["127.0.0.1:9".parse().unwrap()];
        settings.tags = NginxTags::Index;
        let backend = NginxBackend::new(&settings)
            .unwrap()
            .with_tag_index(index.clone());
        let post1 = Target::tag("post:1").unwrap();
        let err = backend
            .purge(std::slice::from_ref(&post1))
            .await
            .unwrap_err();
        assert_eq!(err.cause(), &Cause::Unreachable, "{err}");
        assert!(err.is_transient(), "{err}");
        assert!(err.failed().contains(&post1), "{err}");
        assert!(std::error::Error::source(&err).is_some());

        // Through a purger: queued and never failing the caller (the save), counted as not
        // purged and retried.
        let purger = Purger::builder()
            .delivery(Delivery::Immediate)
            .backend("nginx", NginxBackend::new(&settings).unwrap())
            .tag_index(index)
            .build()
            .unwrap();
        purger.try_purge([post1]);
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let stats = purger.stats().remove(0);
                if stats.last_error.is_some() {
                    assert_eq!(stats.purged, 0, "{stats:?}");
                    assert!(stats.retrying >= 1 || stats.failed >= 1, "{stats:?}");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the failed lookup is reported");
        let _ = purger.shutdown(Duration::from_millis(100)).await;
    }
}

#[test]
fn the_tag_index_can_be_set_from_the_environment() {
    use cache_purge_hooks_engine::settings::{SettingsLoader, TagIndexKind};
    let settings = SettingsLoader::default()
        .toml("[backends.n]\nkind = \"nginx\"\ntags = \"index\"\n")
        .env_vars([
            ("CACHE_PURGE__TAG_INDEX__KIND", "redis"),
            ("CACHE_PURGE__TAG_INDEX__URL", "redis://127.0.0.1:6379/3"),
            ("CACHE_PURGE__TAG_INDEX__MAX_URLS_PER_TAG", "50"),
        ])
        .load()
        .unwrap();
    let index = settings.tag_index.unwrap();
    assert_eq!(index.kind, TagIndexKind::Redis);
    assert_eq!(index.url.unwrap().as_str(), "redis://127.0.0.1:6379/3");
    assert_eq!(index.max_urls_per_tag.get(), 50);
}
