//! The nginx backend against a real nginx with Debian's ngx_cache_purge module (started per
//! test by `cache-purge-hooks-testing` on a free loopback port): each mode purges what was
//! asked and keeps the neighbours cached; broken servers give clear errors. (Purges from a
//! SeaORM save, end to end, are in the root crate's tests/nginx.rs.)

use std::time::{Duration, Instant};

use cache_purge_hooks_engine::backend::{Backend, Cause, NginxBackend};
use cache_purge_hooks_engine::settings::{CacheDir, NginxMode, NginxSettings, Pipeline};
use cache_purge_hooks_engine::{Delivery, Purger, Target, TargetKind};
use cache_purge_hooks_testing::{
    Nginx, NginxConfig, Origin, PurgeLocation, SilentServer, StatusServer, assert_cached,
    assert_purged, refused_addr, warm,
};

fn http_settings(nginx: &Nginx) -> NginxSettings {
    let mut s = NginxSettings::default();
    s.servers = vec![nginx.addr().parse().unwrap()];
    s.purge_prefix = Some("/purge".parse().unwrap());
    s.timeout = Duration::from_secs(2);
    s
}

fn files_settings(nginx: &Nginx) -> NginxSettings {
    let mut s = NginxSettings::default();
    s.mode = NginxMode::Files;
    s.cache_dir = Some(CacheDir::new(nginx.cache_dir()).unwrap());
    // What the harness's nginx.conf says: proxy_cache_key "$uri$is_args$args", levels=1:2.
    s.key_template = Some("$uri$is_args$args".parse().unwrap());
    s.levels = "1:2".parse().unwrap();
    s
}

fn urls(list: &[&str]) -> Vec<Target> {
    list.iter().map(|u| Target::url(u).unwrap()).collect()
}

async fn start() -> (Origin, Nginx) {
    let origin = Origin::start().unwrap();
    let nginx = Nginx::start(&origin, NginxConfig::default()).await.unwrap();
    (origin, nginx)
}

/// /foo, /a?x=1 and `/sp ace` purged through a Purger; /foobar and /a?x=2 kept.
async fn purges_exactly_and_keeps_neighbours(settings: impl Fn(&Nginx) -> NginxSettings) {
    let (origin, nginx) = start().await;
    let space = Target::url("/sp ace").unwrap();
    let space = space.as_url().unwrap().path_and_query().to_owned();
    warm(&nginx, &["/foo", "/foobar", "/a?x=1", "/a?x=2", &space]).await;

    let backend = NginxBackend::new(&settings(&nginx)).unwrap();
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("nginx", backend)
        .build()
        .unwrap();
    // /never-cached was not in the cache: still a success (404 / no file).
    purger
        .purge(urls(&["/foo", "/a?x=1", "/sp ace", "/never-cached"]))
        .await;
    purger.flush().await;
    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.failed), (4, 0), "{stats:?}");

    assert_purged(&nginx, &origin, "/foo").await;
    assert_purged(&nginx, &origin, "/a?x=1").await;
    assert_purged(&nginx, &origin, &space).await;
    assert_cached(&nginx, "/foobar").await;
    assert_cached(&nginx, "/a?x=2").await;
    assert_eq!(nginx.worker_crash(), None);
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn http_mode_separate_location() {
    purges_exactly_and_keeps_neighbours(http_settings).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_batch_goes_pipelined_and_purges_every_url_and_no_neighbour() {
    let (origin, nginx) = start().await;
    let paths: Vec<String> = (0..200).map(|i| format!("/piped/{i}?page={i}")).collect();
    let neighbours: Vec<String> = (0..200)
        .step_by(10)
        .map(|i| format!("/piped/{i}-keep"))
        .collect();
    let all: Vec<&str> = paths
        .iter()
        .chain(&neighbours)
        .map(String::as_str)
        .collect();
    warm(&nginx, &all).await;
    // Two connections, eight requests written at once on each; then one at a time.
    for pipeline in [8, 1] {
        let mut settings = http_settings(&nginx);
        settings.concurrency = std::num::NonZeroUsize::new(2).unwrap();
        settings.pipeline = Pipeline::new(pipeline).unwrap();
        let backend = NginxBackend::new(&settings).unwrap();
        let batch: Vec<Target> = paths.iter().map(|p| Target::url(p).unwrap()).collect();
        backend.purge(&batch).await.unwrap();
        for path in &paths {
            assert_purged(&nginx, &origin, path).await;
        }
        for path in &neighbours {
            assert_cached(&nginx, path).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn files_mode_unlinks_the_exact_cache_file() {
    purges_exactly_and_keeps_neighbours(files_settings).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn files_mode_keeps_a_file_whose_key_differs() {
    let (_origin, nginx) = start().await;
    warm(&nginx, &["/k"]).await;
    // A template that does not match nginx's key computes another file name: nothing is
    // found, nothing is deleted, and the page stays cached (no guessing).
    let mut settings = files_settings(&nginx);
    settings.key_template = Some("other$uri$is_args$args".parse().unwrap());
    let backend = NginxBackend::new(&settings).unwrap();
    backend.purge(&urls(&["/k"])).await.unwrap();
    assert_cached(&nginx, "/k").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn files_mode_purges_everything_by_wiping_the_cache_dir() {
    let (origin, nginx) = start().await;
    warm(&nginx, &["/e1", "/e2?x=1"]).await;
    let backend = NginxBackend::new(&files_settings(&nginx)).unwrap();
    assert!(
        backend.capabilities().supports(TargetKind::Everything)
            && !backend.capabilities().supports(TargetKind::Prefix)
    );
    backend.purge(&[Target::Everything]).await.unwrap();
    assert!(nginx.cache_dir().is_dir());
    assert_purged(&nginx, &origin, "/e1").await;
    assert_purged(&nginx, &origin, "/e2?x=1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wipe_mode_empties_the_cache_once_but_keeps_the_directory() {
    let (origin, nginx) = start().await;
    warm(&nginx, &["/one", "/two", "/three"]).await;
    let mut settings = NginxSettings::default();
    settings.mode = NginxMode::Wipe;
    settings.cache_dir = Some(CacheDir::new(nginx.cache_dir()).unwrap());
    let backend = NginxBackend::new(&settings).unwrap();
    backend.purge(&urls(&["/one"])).await.unwrap();
    assert!(
        nginx.cache_dir().is_dir(),
        "the cache directory itself is kept"
    );
    // The mode wipes everything, as documented: every page is fetched again.
    for p in ["/one", "/two", "/three"] {
        assert_purged(&nginx, &origin, p).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn same_location_style_with_debians_module_is_reported_not_hung() {
    let origin = Origin::start().unwrap();
    let config = NginxConfig {
        purge: PurgeLocation::Same {
            method: "PURGE".into(),
        },
        ..NginxConfig::default()
    };
    let nginx = Nginx::start(&origin, config).await.unwrap();
    warm(&nginx, &["/foo"]).await;
    let mut settings = http_settings(&nginx);
    settings.purge_prefix = None;
    let backend = NginxBackend::new(&settings).unwrap();
    let started = Instant::now();
    let result = backend.purge(&urls(&["/foo"])).await;
    assert!(started.elapsed() < Duration::from_secs(10), "did not hang");
    // Debian's ngx_cache_purge 2.3 kills the worker: the purge fails (no response), and the
    // harness says why.
    let err = result.unwrap_err();
    assert_eq!(err.server(), Some(nginx.addr().as_str()));
    let crash = nginx.worker_crash().expect("the worker crash is reported");
    assert!(crash.contains("purge_prefix"), "{crash}");
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_servers_give_clear_errors_in_time() {
    let silent = SilentServer::start().unwrap();
    let unavailable = StatusServer::start(503, "upstream down").unwrap();
    let forbidden = StatusServer::start(403, "<h1>403 Forbidden</h1>").unwrap();
    let timeout = Duration::from_millis(500);
    let cases = [
        (silent.addr(), Cause::Timeout, "timed out"),
        (refused_addr(), Cause::Unreachable, "Connection refused"),
        (
            unavailable.addr(),
            Cause::Status(503),
            "answered 503 Service Unavailable: upstream down",
        ),
        (
            forbidden.addr(),
            Cause::Status(403),
            "answered 403 Forbidden: <h1>403 Forbidden</h1>",
        ),
    ];
    for (server, kind, expected) in cases {
        let mut settings = NginxSettings::default();
        settings.servers = vec![server.parse().unwrap()];
        settings.purge_prefix = Some("/purge".parse().unwrap());
        settings.timeout = timeout;
        let backend = NginxBackend::new(&settings).unwrap();
        let started = Instant::now();
        let err = backend.purge(&urls(&["/x", "/y"])).await.unwrap_err();
        assert!(
            started.elapsed() < timeout * 6,
            "{server}: took {:?}",
            started.elapsed()
        );
        assert_eq!(err.server(), Some(server.as_str()), "{err}");
        assert_eq!(err.cause(), &kind, "{err}");
        // Transient for all but the 403.
        assert_eq!(err.is_transient(), kind != Cause::Status(403), "{err}");
        assert!(err.message().contains(expected), "{server}: {err}");
    }
    assert!(unavailable.requests() >= 2 && forbidden.requests() >= 2);

    // 503 with Retry-After: come back then, like 429.
    let busy = StatusServer::start_with_headers(503, "busy", &[("Retry-After", "7")]).unwrap();
    let mut settings = NginxSettings::default();
    settings.servers = vec![busy.addr().parse().unwrap()];
    settings.purge_prefix = Some("/purge".parse().unwrap());
    let err = NginxBackend::new(&settings)
        .unwrap()
        .purge(&urls(&["/x"]))
        .await
        .unwrap_err();
    assert_eq!(
        err.cause(),
        &Cause::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        },
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_purge_goes_to_every_server() {
    let origin = Origin::start().unwrap();
    let (one, two) = tokio::join!(
        Nginx::start(&origin, NginxConfig::default()),
        Nginx::start(&origin, NginxConfig::default())
    );
    let (one, two) = (one.unwrap(), two.unwrap());
    warm(&one, &["/x", "/y"]).await;
    warm(&two, &["/x", "/y"]).await;
    let mut settings = http_settings(&one);
    settings.servers = vec![one.addr().parse().unwrap(), two.addr().parse().unwrap()];
    NginxBackend::new(&settings)
        .unwrap()
        .purge(&urls(&["/x"]))
        .await
        .unwrap();
    for n in [&one, &two] {
        assert!(!n.get("/x").await.unwrap().is_hit());
        assert!(n.get("/y").await.unwrap().is_hit());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn absolute_urls_purge_under_their_own_host() {
    let origin = Origin::start().unwrap();
    // A cache keyed by host too, as a server with several sites has.
    let config = NginxConfig {
        cache_key: "$host$uri$is_args$args".into(),
        ..NginxConfig::default()
    };
    let nginx = Nginx::start(&origin, config).await.unwrap();
    for host in ["a.example", "b.example"] {
        for path in ["/p", "/q"] {
            nginx.get_with_host(host, path).await.unwrap();
            assert!(nginx.get_with_host(host, path).await.unwrap().is_hit());
        }
    }
    let mut settings = http_settings(&nginx);
    // Paths go with host_header; an absolute URL with its own host.
    settings.host_header = Some("a.example".parse().unwrap());
    let backend = NginxBackend::new(&settings).unwrap();
    backend
        .purge(&urls(&["/p", "http://b.example/q"]))
        .await
        .unwrap();
    let hit = |host: &'static str, path: &'static str| {
        let nginx = &nginx;
        async move { nginx.get_with_host(host, path).await.unwrap().is_hit() }
    };
    assert!(!hit("a.example", "/p").await);
    assert!(hit("b.example", "/p").await);
    assert!(hit("a.example", "/q").await);
    assert!(!hit("b.example", "/q").await);
}
