//! Verification after purge against real caches (nginx with ngx_cache_purge and varnishd,
//! started per test by `cache-purge-hooks-testing` on free loopback ports, with the shipped
//! configs of deploy/): a purge that works is verified; a purge aimed at the wrong cache key,
//! or a VCL that answers PURGE without purging, is detected and reported with a hint.

use std::time::Duration;

use std::sync::Arc;

use cache_purge_hooks_engine::backend::{MemoryBackend, NginxBackend};
use cache_purge_hooks_engine::settings::{CacheDir, NginxMode, NginxSettings, NginxTags};
use cache_purge_hooks_engine::tag_index::{MemoryTagIndex, TagIndex};
use cache_purge_hooks_engine::verify::{TAG_URLS_VERIFIED, VerifySettings};
use cache_purge_hooks_engine::{Delivery, PurgeUrl, Purger, Settings, Tag, Target};
use cache_purge_hooks_testing::{
    CacheServer, HARNESS_VCL, Nginx, NginxConfig, Origin, Varnish, assert_cached, warm,
};

fn targets(list: &[&str]) -> Vec<Target> {
    list.iter().map(|u| Target::url(u).unwrap()).collect()
}

/// The page is served from the cache with the content of the origin's `n`th fetch.
async fn cached_with(cache: &impl CacheServer, path: &str, n: u64) {
    let page = cache.get(path).await.unwrap();
    assert!(page.is_hit(), "{path} should be cached: {page:?}");
    assert!(page.body.ends_with(&format!("#{n}")), "{page:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_that_worked_on_nginx_is_verified_and_the_fresh_page_is_cached_again() {
    let origin = Origin::start().unwrap();
    let nginx = Nginx::start(&origin, NginxConfig::default()).await.unwrap();
    warm(&nginx, &["/post", "/other"]).await;
    // verify = "all" with no verify_url: nginx in http mode is asked at its first server.
    let settings = Settings::from_toml_str(&format!(
        "delivery = \"immediate\"\n[backends.ngx]\nkind = \"nginx\"\nservers = [\"{}\"]\n\
         purge_prefix = \"/purge\"\nverify = \"all\"\n",
        nginx.addr()
    ))
    .unwrap();
    let purger = Purger::from_settings(&settings).unwrap();
    purger.purge(targets(&["/post"])).await;
    purger.flush().await;

    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.purged, stats.verified, stats.verify_failed),
        (1, 1, 0),
        "{stats:?}"
    );
    // The check's GET fetched the fresh page once; it is cached again, the neighbour kept.
    assert_eq!(origin.fetches("/post"), 2);
    cached_with(&nginx, "/post", 2).await;
    cached_with(&nginx, "/other", 1).await;
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_aimed_at_the_wrong_nginx_key_is_detected_and_reported_with_a_hint() {
    let origin = Origin::start().unwrap();
    let nginx = Nginx::start(&origin, NginxConfig::default()).await.unwrap();
    warm(&nginx, &["/post"]).await;
    // files mode with a key_template that is not nginx's proxy_cache_key: the purge unlinks
    // a file that does not exist, "succeeds", and the page stays cached.
    let mut s = NginxSettings::default();
    s.mode = NginxMode::Files;
    s.cache_dir = Some(CacheDir::new(nginx.cache_dir()).unwrap());
    s.key_template = Some("wrong$uri$is_args$args".parse().unwrap());
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("ngx", NginxBackend::new(&s).unwrap())
        .backend_verify(
            "ngx",
            VerifySettings::all(format!("http://{}", nginx.addr()).parse().unwrap())
                .header("X-Cache-Status".parse().unwrap()),
        )
        .build()
        .unwrap();
    purger.purge(targets(&["/post"])).await;
    purger.flush().await;

    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.purged, stats.verified, stats.verify_failed),
        (1, 0, 1),
        "{stats:?}"
    );
    let failure = stats.last_verify_failure.as_ref().unwrap();
    assert_eq!(failure.url.as_str(), "/post");
    assert!(failure.hint.contains("cache key"), "{}", failure.hint);
    // The page is indeed still the old one.
    cached_with(&nginx, "/post", 1).await;
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

fn varnish_http(varnish: &Varnish) -> Settings {
    Settings::from_toml_str(&format!(
        "delivery = \"immediate\"\n[backends.edge]\nkind = \"varnish\"\nmode = \"http\"\n\
         servers = [\"{}\"]\nhttp_method = \"purge\"\nverify = \"all\"\n",
        varnish.http_addr()
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_that_worked_on_varnish_is_verified() {
    let origin = Origin::start().unwrap();
    let varnish = Varnish::start(&origin).await.unwrap();
    warm(&varnish, &["/post", "/other"]).await;
    let purger = Purger::from_settings(&varnish_http(&varnish)).unwrap();
    purger.purge(targets(&["/post"])).await;
    purger.flush().await;

    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.purged, stats.verified, stats.verify_failed),
        (1, 1, 0),
        "{stats:?}"
    );
    cached_with(&varnish, "/post", 2).await;
    assert_cached(&varnish, "/other").await;
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vcl_that_ignores_purge_is_detected_and_reported_with_a_hint() {
    let origin = Origin::start().unwrap();
    // PURGE answered 200 without looking the object up: nothing is purged.
    let vcl = HARNESS_VCL.replacen("return (hash);", "return (synth(200, \"Purged\"));", 1);
    assert_ne!(vcl, HARNESS_VCL);
    let varnish = Varnish::start_with_vcl(&origin, &vcl).await.unwrap();
    warm(&varnish, &["/post"]).await;
    let purger = Purger::from_settings(&varnish_http(&varnish)).unwrap();
    purger.purge(targets(&["/post"])).await;
    purger.flush().await;

    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.purged, stats.verified, stats.verify_failed),
        (1, 0, 1),
        "{stats:?}"
    );
    let failure = stats.last_verify_failure.as_ref().unwrap();
    assert!(failure.hint.contains("VCL"), "{}", failure.hint);
    cached_with(&varnish, "/post", 1).await;
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_refresh_each_page_is_a_hit_with_the_new_content_fetched_once() {
    let origin = Origin::start().unwrap();
    let nginx = Nginx::start(&origin, NginxConfig::default()).await.unwrap();
    let pages = ["/a", "/b", "/c?x=1"];
    warm(&nginx, &pages).await;
    warm(&nginx, &["/kept"]).await;
    let settings = Settings::from_toml_str(&format!(
        "delivery = \"immediate\"\n[backends.ngx]\nkind = \"nginx\"\nservers = [\"{}\"]\n\
         purge_prefix = \"/purge\"\nrefresh = true\nrefresh_rate = \"100/s\"\n",
        nginx.addr()
    ))
    .unwrap();
    let purger = Purger::from_settings(&settings).unwrap();
    purger.purge(targets(&pages)).await;
    purger.flush().await;

    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.refreshed), (3, 3), "{stats:?}");
    for page in pages {
        // The origin saw one fetch for the warm-up and exactly one for the refresh.
        assert_eq!(origin.fetches(page), 2, "{page}");
        cached_with(&nginx, page, 2).await;
    }
    cached_with(&nginx, "/kept", 1).await;
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verified_url_is_not_fetched_again_by_the_refresh() {
    let origin = Origin::start().unwrap();
    let varnish = Varnish::start(&origin).await.unwrap();
    warm(&varnish, &["/post"]).await;
    let settings = Settings::from_toml_str(&format!(
        "delivery = \"immediate\"\n[backends.edge]\nkind = \"varnish\"\nmode = \"http\"\n\
         servers = [\"{}\"]\nhttp_method = \"purge\"\nverify = \"all\"\nrefresh = true\n",
        varnish.http_addr()
    ))
    .unwrap();
    let purger = Purger::from_settings(&settings).unwrap();
    purger.purge(targets(&["/post"])).await;
    purger.flush().await;

    let stats = &purger.stats()[0];
    assert_eq!((stats.verified, stats.refreshed), (1, 0), "{stats:?}");
    assert_eq!(origin.fetches("/post"), 2);
    cached_with(&varnish, "/post", 2).await;
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

fn varnish_refresh(varnish: &Varnish) -> Settings {
    Settings::from_toml_str(&format!(
        "delivery = \"immediate\"\n[backends.edge]\nkind = \"varnish\"\nmode = \"http\"\n\
         servers = [\"{}\"]\nhttp_method = \"refresh\"\n",
        varnish.http_addr()
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_in_place_leaves_each_page_cached_with_the_new_content_and_no_miss() {
    let origin = Origin::start().unwrap();
    let varnish = Varnish::start(&origin).await.unwrap();
    let pages = ["/a", "/b?x=1"];
    warm(&varnish, &pages).await;
    warm(&varnish, &["/kept"]).await;
    let purger = Purger::from_settings(&varnish_refresh(&varnish)).unwrap();
    purger.purge(targets(&pages)).await;
    purger.flush().await;

    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.failed), (2, 0), "{stats:?}");
    for page in pages {
        // One fetch for the warm-up, one for the refresh; the first visitor after it gets
        // the new page from the cache (a purge would have made it a miss).
        assert_eq!(origin.fetches(page), 2, "{page}");
        cached_with(&varnish, page, 2).await;
        assert_eq!(origin.fetches(page), 2, "{page}");
    }
    cached_with(&varnish, "/kept", 1).await;
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_in_place_never_leaves_the_old_page_when_the_origin_is_down() {
    let origin = Origin::start().unwrap();
    let varnish = Varnish::start(&origin).await.unwrap();
    warm(&varnish, &["/a"]).await;
    let purger = Purger::from_settings(&varnish_refresh(&varnish)).unwrap();
    // The refresh's fetch fails: hash_always_miss alone would keep serving the old copy.
    drop(origin);
    purger.purge(targets(&["/a"])).await;
    purger.flush().await;

    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.failed), (1, 0), "{stats:?}");
    let page = varnish.get("/a").await.unwrap();
    assert!(
        !page.is_hit() && !page.body.contains("/a #1"),
        "the old page is still served: {page:?}"
    );
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vcl_without_the_refresh_branch_gets_a_purge_and_a_get_instead() {
    let origin = Origin::start().unwrap();
    // The refresh header means nothing to this VCL: a refresh is an ordinary GET.
    let vcl = HARNESS_VCL.replace("X-Cache-Purge-Refresh", "X-Something-Else");
    assert_ne!(vcl, HARNESS_VCL);
    let varnish = Varnish::start_with_vcl(&origin, &vcl).await.unwrap();
    warm(&varnish, &["/a", "/b"]).await;
    let purger = Purger::from_settings(&varnish_refresh(&varnish)).unwrap();
    purger.purge(targets(&["/a", "/b"])).await;
    purger.flush().await;

    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.failed), (2, 0), "{stats:?}");
    // Purged, then fetched again: cached with the new content, one fetch each.
    for page in ["/a", "/b"] {
        assert_eq!(origin.fetches(page), 2, "{page}");
        cached_with(&varnish, page, 2).await;
    }
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A cache on a free loopback port that answers `X-Cache: HIT` to its first `hits` requests
/// and `MISS` to the others, each answer waiting until `release` is true; tells `asked` of each
/// request it got.
async fn scripted_cache(
    hits: u64,
    asked: tokio::sync::mpsc::UnboundedSender<()>,
    release: tokio::sync::watch::Receiver<bool>,
) -> std::net::SocketAddr {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answered = std::sync::Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let asked = asked.clone();
            let mut release = release.clone();
            let answered = answered.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = asked.send(());
                let _ = release.wait_for(|go| *go).await;
                let status = if answered.fetch_add(1, Ordering::SeqCst) < hits {
                    "HIT"
                } else {
                    "MISS"
                };
                let _ = conn
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\nX-Cache: {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                            .as_bytes(),
                    )
                    .await;
            });
        }
    });
    addr
}

/// A purger whose one backend is a memory backend, every purge verified through the cache at
/// `cache`.
fn verified_memory_purger(cache: std::net::SocketAddr) -> (Purger, MemoryBackend) {
    let memory = MemoryBackend::new();
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("memory", memory.clone())
        .backend_verify(
            "memory",
            VerifySettings::all(format!("http://{cache}").parse().unwrap()),
        )
        .build()
        .unwrap();
    (purger, memory)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_check_never_holds_up_the_next_purges() {
    let (asked_tx, mut asked) = tokio::sync::mpsc::unbounded_channel();
    let (release, released) = tokio::sync::watch::channel(false);
    let cache = scripted_cache(0, asked_tx, released).await;
    let (purger, memory) = verified_memory_purger(cache);

    purger.purge(targets(&["/first"])).await;
    // The check of /first reached the cache, which holds its answer.
    tokio::time::timeout(Duration::from_secs(30), asked.recv())
        .await
        .expect("the check of /first was never sent");
    purger.purge(targets(&["/second"])).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !memory.urls().iter().any(|u| u == "/second") {
        assert!(
            std::time::Instant::now() < deadline,
            "/second was never purged"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // /second went out while the check of /first still waited for its answer (it would have
    // timed out, unanswered, had the purge waited for it).
    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.purged, stats.verified, stats.verify_unanswered),
        (2, 0, 0),
        "{stats:?}"
    );

    // A flush waits for the checks: both answered, both verified.
    release.send_replace(true);
    purger.flush().await;
    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.purged, stats.verified, stats.verify_unanswered),
        (2, 2, 0),
        "{stats:?}"
    );
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_still_cached_after_the_purge_is_purged_once_more_and_then_verified() {
    let (asked, _) = tokio::sync::mpsc::unbounded_channel();
    let (_release, released) = tokio::sync::watch::channel(true);
    let cache = scripted_cache(1, asked, released).await;
    let (purger, memory) = verified_memory_purger(cache);
    purger.purge(targets(&["/page"])).await;
    purger.flush().await;
    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.verified, stats.verify_failed, stats.verify_unanswered),
        (1, 0, 0),
        "{stats:?}"
    );
    // The purge, and the second one after the check found the page still cached: two
    // batches sent, one target purged.
    assert_eq!(memory.urls(), ["/page", "/page"]);
    assert_eq!((stats.purged, stats.batches), (1, 2), "{stats:?}");
    assert!(stats.last_verify_failure.is_none(), "{stats:?}");
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// nginx in `settings`' mode with `tags = "index"`, `pages` cached and recorded in a memory
/// index under `tag`, `/posts/2` cached under `post:2`, and a purger checking its purges as
/// `verify` says.
async fn tagged_pages(
    mut settings: NginxSettings,
    nginx: &Nginx,
    verify: VerifySettings,
    tag: &str,
    pages: &[&str],
) -> Purger {
    warm(nginx, pages).await;
    warm(nginx, &["/posts/2"]).await;
    let index = Arc::new(MemoryTagIndex::new());
    let hour = Duration::from_secs(3600);
    let recorded = pages
        .iter()
        .map(|p| (*p, tag))
        .chain([("/posts/2", "post:2")]);
    for (page, tag) in recorded {
        let page = PurgeUrl::parse(page).unwrap();
        index
            .record(&page, &[Tag::parse(tag).unwrap()], hour)
            .await
            .unwrap();
    }
    settings.tags = NginxTags::Index;
    Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("ngx", NginxBackend::new(&settings).unwrap())
        .tag_index(index as Arc<dyn TagIndex>)
        .backend_verify("ngx", verify.header("X-Cache-Status".parse().unwrap()))
        .build()
        .unwrap()
}

/// The pages of `post:1`.
const POST_1: [&str; 2] = ["/posts/1", "/?page=7"];

fn http_nginx(nginx: &Nginx) -> NginxSettings {
    let mut s = NginxSettings::default();
    s.servers = vec![nginx.addr().parse().unwrap()];
    s.purge_prefix = Some("/purge".parse().unwrap());
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_purged_through_the_index_is_verified_on_the_urls_the_index_knew() {
    let origin = Origin::start().unwrap();
    let nginx = Nginx::start(&origin, NginxConfig::default()).await.unwrap();
    let verify = VerifySettings::all(format!("http://{}", nginx.addr()).parse().unwrap());
    let purger = tagged_pages(http_nginx(&nginx), &nginx, verify, "post:1", &POST_1).await;
    purger.purge([Target::tag("post:1").unwrap()]).await;
    purger.flush().await;

    let stats = &purger.stats()[0];
    // One tag purged; both of its URLs asked for through nginx afterwards, and gone.
    assert_eq!(
        (stats.purged, stats.verified, stats.verify_failed),
        (1, 2, 0),
        "{stats:?}"
    );
    // The checks fetched each page once more (the fresh page is cached again); the other
    // tag's page was neither purged nor asked for.
    assert_eq!(origin.fetches("/posts/1"), 2);
    assert_eq!(origin.fetches("/?page=7"), 2);
    cached_with(&nginx, "/posts/1", 2).await;
    cached_with(&nginx, "/posts/2", 1).await;
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_purge_that_misses_its_pages_is_detected_on_the_urls_the_index_knew() {
    let origin = Origin::start().unwrap();
    let nginx = Nginx::start(&origin, NginxConfig::default()).await.unwrap();
    // files mode with the wrong key: the index expands the tag, the purge unlinks files that
    // do not exist, and both pages stay cached.
    let mut s = NginxSettings::default();
    s.mode = NginxMode::Files;
    s.cache_dir = Some(CacheDir::new(nginx.cache_dir()).unwrap());
    s.key_template = Some("wrong$uri$is_args$args".parse().unwrap());
    let verify = VerifySettings::all(format!("http://{}", nginx.addr()).parse().unwrap());
    let purger = tagged_pages(s, &nginx, verify, "post:1", &POST_1).await;
    purger.purge([Target::tag("post:1").unwrap()]).await;
    purger.flush().await;

    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.purged, stats.verified, stats.verify_failed),
        (1, 0, 2),
        "{stats:?}"
    );
    let failure = stats.last_verify_failure.as_ref().unwrap();
    assert!(
        ["/posts/1", "/?page=7"].contains(&failure.url.as_str()),
        "{failure:?}"
    );
    assert!(failure.hint.contains("cache key"), "{}", failure.hint);
    cached_with(&nginx, "/posts/1", 1).await;
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_purged_through_the_index_is_refreshed_on_the_urls_the_index_knew() {
    let origin = Origin::start().unwrap();
    let nginx = Nginx::start(&origin, NginxConfig::default()).await.unwrap();
    let refresh = VerifySettings::default()
        .refresh(true)
        .url(format!("http://{}", nginx.addr()).parse().unwrap());
    let purger = tagged_pages(http_nginx(&nginx), &nginx, refresh, "post:1", &POST_1).await;
    purger.purge([Target::tag("post:1").unwrap()]).await;
    purger.flush().await;

    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.purged, stats.verified, stats.refreshed),
        (1, 0, 2),
        "{stats:?}"
    );
    // Each page of the tag is a hit again with the new content, fetched once for it.
    for page in ["/posts/1", "/?page=7"] {
        assert_eq!(origin.fetches(page), 2, "{page}");
        cached_with(&nginx, page, 2).await;
    }
    cached_with(&nginx, "/posts/2", 1).await;
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_with_many_urls_is_verified_on_a_sample_of_them() {
    let origin = Origin::start().unwrap();
    let nginx = Nginx::start(&origin, NginxConfig::default()).await.unwrap();
    let pages: Vec<String> = (0..25).map(|i| format!("/list?page={i}")).collect();
    let pages: Vec<&str> = pages.iter().map(String::as_str).collect();
    let verify = VerifySettings::all(format!("http://{}", nginx.addr()).parse().unwrap());
    let purger = tagged_pages(http_nginx(&nginx), &nginx, verify, "list", &pages).await;
    purger.purge([Target::tag("list").unwrap()]).await;
    purger.flush().await;

    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.purged, stats.verified, stats.verify_failed),
        (1, TAG_URLS_VERIFIED as u64, 0),
        "{stats:?}"
    );
    // Every page was purged; only the sample was fetched again by the checks.
    let fetched: Vec<u64> = pages.iter().map(|p| origin.fetches(p)).collect();
    assert_eq!(
        fetched.iter().filter(|n| **n == 2).count(),
        TAG_URLS_VERIFIED
    );
    for page in &pages {
        if origin.fetches(page) == 1 {
            assert!(
                !nginx.get(page).await.unwrap().is_hit(),
                "{page} was not purged"
            );
        }
    }
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[test]
fn a_varnish_backend_that_refreshes_in_place_cannot_be_verified_in_code_either() {
    use cache_purge_hooks_engine::BuildError;
    use cache_purge_hooks_engine::backend::VarnishBackend;
    use cache_purge_hooks_engine::settings::{VarnishHttpMethod, VarnishMode, VarnishSettings};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let mut s = VarnishSettings::default();
    s.mode = VarnishMode::Http;
    s.servers = vec!["127.0.0.1:6081".parse().unwrap()];
    s.http_method = VarnishHttpMethod::Refresh;
    let verify = VerifySettings::all("http://127.0.0.1:6081".parse().unwrap());
    let built = Purger::builder()
        .backend("edge", VarnishBackend::new(&s).unwrap())
        .backend_verify("edge", verify)
        .build();
    assert!(
        matches!(&built, Err(BuildError::VerifyRefreshedInPlace(name)) if name == "edge"),
        "{built:?}"
    );
    // With PURGE, the same verification builds.
    s.http_method = VarnishHttpMethod::Purge;
    let verify = VerifySettings::all("http://127.0.0.1:6081".parse().unwrap());
    let built = Purger::builder()
        .backend("edge", VarnishBackend::new(&s).unwrap())
        .backend_verify("edge", verify)
        .build();
    assert!(built.is_ok(), "{built:?}");
}
