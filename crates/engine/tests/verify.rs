//! Verification after purge against real caches (nginx with ngx_cache_purge and varnishd,
//! started per test by `cache-purge-hooks-testing` on free loopback ports, with the shipped
//! configs of deploy/): a purge that works is verified; a purge aimed at the wrong cache key,
//! or a VCL that answers PURGE without purging, is detected and reported with a hint.

use std::time::Duration;

use cache_purge_hooks_engine::backend::NginxBackend;
use cache_purge_hooks_engine::settings::{CacheDir, NginxMode, NginxSettings};
use cache_purge_hooks_engine::verify::VerifySettings;
use cache_purge_hooks_engine::{Purger, Settings, Target};
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
        .delivery(cache_purge_hooks_engine::Delivery::Immediate)
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

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_check_never_holds_up_the_next_purges() {
    use cache_purge_hooks_engine::backend::MemoryBackend;
    let (asked_tx, mut asked) = tokio::sync::mpsc::unbounded_channel();
    let (release, released) = tokio::sync::watch::channel(false);
    let cache = scripted_cache(0, asked_tx, released).await;
    let memory = MemoryBackend::new();
    let purger = Purger::builder()
        .delivery(cache_purge_hooks_engine::Delivery::Immediate)
        .backend("memory", memory.clone())
        .backend_verify(
            "memory",
            VerifySettings::all(format!("http://{cache}").parse().unwrap()),
        )
        .build()
        .unwrap();

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
    use cache_purge_hooks_engine::backend::MemoryBackend;
    let (asked, _) = tokio::sync::mpsc::unbounded_channel();
    let (_release, released) = tokio::sync::watch::channel(true);
    let cache = scripted_cache(1, asked, released).await;
    let memory = MemoryBackend::new();
    let purger = Purger::builder()
        .delivery(cache_purge_hooks_engine::Delivery::Immediate)
        .backend("memory", memory.clone())
        .backend_verify(
            "memory",
            VerifySettings::all(format!("http://{cache}").parse().unwrap()),
        )
        .build()
        .unwrap();
    purger.purge(targets(&["/page"])).await;
    purger.flush().await;
    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.verified, stats.verify_failed, stats.verify_unanswered),
        (1, 0, 0),
        "{stats:?}"
    );
    // The purge, and the second one after the check found the page still cached.
    assert_eq!(memory.urls(), ["/page", "/page"]);
    assert!(stats.last_verify_failure.is_none(), "{stats:?}");
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}
