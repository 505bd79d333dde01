//! Routing by host against real caches: two nginx instances (started per test by
//! `cache-purge-hooks-testing` on free loopback ports), each the cache of its own site, and
//! one purge list naming pages of both sites. nginx's cache key here ignores the host
//! (`$uri$is_args$args`), so a URL sent to the wrong nginx would purge its page of the same
//! path: only routing keeps the other site's page cached.

use std::time::Duration;

use cache_purge_hooks_engine::backend::{MemoryBackend, NginxBackend};
use cache_purge_hooks_engine::settings::NginxSettings;
use cache_purge_hooks_engine::{BackendRoute, Delivery, Purger, Settings, Target};
use cache_purge_hooks_testing::{Nginx, NginxConfig, Origin, assert_cached, assert_purged, warm};

fn nginx_settings(nginx: &Nginx) -> NginxSettings {
    let mut s = NginxSettings::default();
    s.servers = vec![nginx.addr().parse().unwrap()];
    s.purge_prefix = Some("/purge".parse().unwrap());
    s.timeout = Duration::from_secs(2);
    s
}

fn targets(list: &[&str]) -> Vec<Target> {
    list.iter().map(|u| Target::url(u).unwrap()).collect()
}

/// Two sites, each with its own origin and nginx, both caching `/shared` and `/other`.
async fn two_sites() -> ((Origin, Nginx), (Origin, Nginx)) {
    let mut sites = Vec::new();
    for _ in 0..2 {
        let origin = Origin::start().unwrap();
        let nginx = Nginx::start(&origin, NginxConfig::default()).await.unwrap();
        warm(&nginx, &["/shared", "/other", "/home"]).await;
        sites.push((origin, nginx));
    }
    let b = sites.pop().unwrap();
    let a = sites.pop().unwrap();
    (a, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_absolute_url_goes_only_to_the_backend_serving_its_host() {
    let ((origin_a, www), (origin_b, shop)) = two_sites().await;
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("www", NginxBackend::new(&nginx_settings(&www)).unwrap())
        .backend("shop", NginxBackend::new(&nginx_settings(&shop)).unwrap())
        .backend_route(
            "www",
            BackendRoute::default().hosts(["www.example.com"]).unwrap(),
        )
        .backend_route(
            "shop",
            BackendRoute::default().hosts(["*.shop.example"]).unwrap(),
        )
        .build()
        .unwrap();

    purger
        .purge(targets(&[
            "https://www.example.com/shared",
            "https://eu.shop.example/other",
        ]))
        .await;
    purger.flush().await;

    // Each nginx purged its own site's page only.
    assert_purged(&www, &origin_a, "/shared").await;
    assert_cached(&www, "/other").await;
    assert_purged(&shop, &origin_b, "/other").await;
    assert_cached(&shop, "/shared").await;
    let stats = purger.stats();
    assert_eq!(
        stats
            .iter()
            .map(|s| (s.purged, s.failed))
            .collect::<Vec<_>>(),
        [(1, 0), (1, 0)],
        "{stats:?}"
    );
    assert_eq!(purger.unrouted(), 0);
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_go_to_the_backend_marked_for_paths_from_a_settings_file() {
    let ((origin_a, www), (origin_b, shop)) = two_sites().await;
    let settings = Settings::from_toml_str(&format!(
        "delivery = \"immediate\"\n\
         [backends.www]\nkind = \"nginx\"\nservers = [\"{}\"]\npurge_prefix = \"/purge\"\n\
         hosts = [\"www.example.com\"]\npaths = true\n\
         [backends.shop]\nkind = \"nginx\"\nservers = [\"{}\"]\npurge_prefix = \"/purge\"\n\
         hosts = [\"shop.example\"]\n",
        www.addr(),
        shop.addr()
    ))
    .unwrap();
    let purger = Purger::from_settings(&settings).unwrap();

    purger
        .purge(targets(&["/home", "https://shop.example/shared"]))
        .await;
    purger.flush().await;

    // The path went to www alone; the shop's URL to the shop alone.
    assert_purged(&www, &origin_a, "/home").await;
    assert_cached(&www, "/shared").await;
    assert_cached(&shop, "/home").await;
    assert_purged(&shop, &origin_b, "/shared").await;
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_url_of_a_host_no_backend_serves_is_counted_as_unrouted_not_sent() {
    let (a, b) = (MemoryBackend::new(), MemoryBackend::new());
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("a", a.clone())
        .backend("b", b.clone())
        .backend_route("a", BackendRoute::default().hosts(["a.example"]).unwrap())
        .backend_route("b", BackendRoute::default().hosts(["b.example"]).unwrap())
        .build()
        .unwrap();
    purger
        .purge(targets(&[
            "https://c.example/x",
            "https://a.example/y",
            "/z",
        ]))
        .await;
    purger.purge([Target::tag("post-1").unwrap()]).await;
    purger.flush().await;

    assert_eq!(purger.unrouted(), 1);
    // No backend is marked for paths: the path goes to both, as do tags.
    assert_eq!(a.urls(), ["https://a.example/y", "/z"]);
    assert_eq!(b.urls(), ["/z"]);
    let tag = Target::tag("post-1").unwrap();
    assert!(a.purged().contains(&tag) && b.purged().contains(&tag));
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_route_for_a_backend_the_builder_lacks_is_an_error() {
    let err = Purger::builder()
        .backend("a", MemoryBackend::new())
        .backend_route("typo", BackendRoute::default().paths(true))
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "a route is given for backend `typo`, and there is no backend of that name"
    );
}
