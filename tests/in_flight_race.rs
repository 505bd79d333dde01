//! The in-flight race, against a real nginx: a request that read a row before the edit's
//! COMMIT is answered after the edit's purge, and puts the old page back in the cache, where it
//! stays until the TTL. A delayed second purge (`repurge_after`) removes it.
//!
//! The origin here is a small app whose pages take 300 ms to render from a version number read
//! when the request starts, as a page rendered from the database does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use cache_purge_hooks::{Delivery, Purger, PurgerBuilder, Settings, Target};
use cache_purge_hooks_testing::{Nginx, NginxConfig};

/// Pages edited concurrently.
const PAGES: usize = 10;
/// How long the origin takes to render a page: longer than an edit's commit-to-purge time.
const RENDER: Duration = Duration::from_millis(300);
/// The delay of the second purge: longer than the slowest render.
const REPURGE_AFTER: Duration = Duration::from_secs(1);

/// The content version of each page (the "row").
type Versions = Arc<Vec<AtomicU64>>;

async fn page(State(versions): State<Versions>, Path(i): Path<usize>) -> impl IntoResponse {
    // Read first, render slowly: what a handler reading the row before the COMMIT does.
    let version = versions[i].load(Ordering::SeqCst);
    tokio::time::sleep(RENDER).await;
    (
        [(header::CACHE_CONTROL, "public, max-age=600")],
        format!("page {i} version {version}"),
    )
}

/// Edits every page while a request for it is being rendered, then looks at what the cache
/// serves once the dust settled. Returns how many pages are stale.
async fn race(repurge: bool) -> usize {
    let versions: Versions = Arc::new((0..PAGES).map(|_| AtomicU64::new(0)).collect());
    let app = Router::new()
        .route("/page/{i}", get(page))
        .with_state(versions.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let nginx = Nginx::start_in_front_of(port, NginxConfig::default())
        .await
        .unwrap();
    let settings = Settings::from_toml_str(&format!(
        "[backends.ngx]\nkind = \"nginx\"\nservers = [\"{}\"]\npurge_prefix = \"/purge\"\n",
        nginx.addr()
    ))
    .unwrap();
    let mut builder = PurgerBuilder::from_settings(&settings)
        .unwrap()
        .delivery(Delivery::Immediate);
    if repurge {
        builder = builder.repurge_after(REPURGE_AFTER);
    }
    let purger: Purger = builder.build().unwrap();

    let nginx = Arc::new(nginx);
    let mut pairs = Vec::new();
    for i in 0..PAGES {
        let (nginx, versions, purger) = (nginx.clone(), versions.clone(), purger.clone());
        pairs.push(tokio::spawn(async move {
            let path = format!("/page/{i}");
            // A visitor's GET, rendered from the old version...
            let visitor = {
                let nginx = nginx.clone();
                let path = path.clone();
                tokio::spawn(async move { nginx.get(&path).await.unwrap() })
            };
            tokio::time::sleep(Duration::from_millis(50)).await;
            // ...while the edit commits and purges.
            versions[i].store(1, Ordering::SeqCst);
            purger.purge([Target::url(&path).unwrap()]).await;
            purger.flush().await;
            assert!(visitor.await.unwrap().body.contains("version 0"));
        }));
    }
    for pair in pairs {
        pair.await.unwrap();
    }
    // Past the second purge.
    tokio::time::sleep(REPURGE_AFTER + RENDER + Duration::from_millis(500)).await;
    let mut stale = 0;
    for i in 0..PAGES {
        let page = nginx.get(&format!("/page/{i}")).await.unwrap();
        if !page.body.contains("version 1") {
            stale += 1;
        }
    }
    let stats = purger.stats().remove(0);
    if repurge {
        assert_eq!(stats.repurged, PAGES as u64, "{stats:?}");
    }
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
    server.abort();
    Arc::into_inner(nginx).unwrap().stop().unwrap();
    stale
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delayed_second_purge_removes_pages_cached_by_requests_in_flight() {
    let without = race(false).await;
    let with = race(true).await;
    eprintln!(
        "stale pages after {PAGES} edits racing a render: {without} without repurge_after, {with} with it"
    );
    assert!(
        without > 0,
        "the race should leave stale pages without the second purge"
    );
    assert_eq!(with, 0);
}
