//! The read-your-writes layer in an axum app, with a backend that takes its time: an edit's
//! response waits for the edit's purges, nothing else waits.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use cache_purge_hooks_engine::backend::{Backend, Capabilities, MemoryBackend, PurgeError};
use cache_purge_hooks_engine::{Delivery, Purger, Target};
use cache_purge_hooks_tower::ReadYourWritesLayer;
use tower::ServiceExt as _;

/// A memory backend whose every purge takes `delay`.
#[derive(Clone)]
struct Slow {
    memory: MemoryBackend,
    delay: Duration,
}

#[cache_purge_hooks_engine::async_trait]
impl Backend for Slow {
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }
    fn max_batch(&self) -> usize {
        100
    }
    async fn purge(&self, batch: &[Target]) -> Result<(), PurgeError> {
        tokio::time::sleep(self.delay).await;
        self.memory.purge(batch).await
    }
}

fn app(purger: &Purger, layer: Option<ReadYourWritesLayer>) -> Router {
    let saving = purger.clone();
    let reading = purger.clone();
    let router = Router::new()
        .route(
            "/posts/{slug}",
            post(
                move |axum::extract::Path(slug): axum::extract::Path<String>| {
                    let purger = saving.clone();
                    async move {
                        // What a save's hook does.
                        purger
                            .purge([Target::url(&format!("/posts/{slug}")).unwrap()])
                            .await;
                        "saved"
                    }
                },
            ),
        )
        .route(
            "/touch",
            get(move || {
                let purger = reading.clone();
                async move {
                    purger.purge([Target::url("/touched").unwrap()]).await;
                    "ok"
                }
            }),
        )
        .route("/quiet", post(|| async { "nothing purged" }));
    match layer {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

fn purger(delay: Duration) -> (Purger, MemoryBackend) {
    let memory = MemoryBackend::new();
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend(
            "slow",
            Slow {
                memory: memory.clone(),
                delay,
            },
        )
        .build()
        .unwrap();
    (purger, memory)
}

fn request(method: &str, path: &str) -> http::Request<Body> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_is_answered_once_its_purges_were_attempted() {
    let (purger, memory) = purger(Duration::from_millis(150));
    let with = app(&purger, Some(ReadYourWritesLayer::new()));
    let response = with.oneshot(request("POST", "/posts/a")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(memory.was_purged("/posts/a"), "purged before the answer");

    // Without the layer the answer goes out first: what the editor's next GET would race.
    let without = app(&purger, None);
    let response = without.oneshot(request("POST", "/posts/b")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(!memory.was_purged("/posts/b"), "answered before the purge");
    purger.flush().await;
    assert!(memory.was_purged("/posts/b"));
}

#[tokio::test(flavor = "multi_thread")]
async fn safe_requests_and_edits_without_purges_never_wait() {
    let (purger, memory) = purger(Duration::from_millis(300));
    let app = app(&purger, Some(ReadYourWritesLayer::new()));
    // A GET that purges (unusual) is not held.
    app.clone().oneshot(request("GET", "/touch")).await.unwrap();
    assert!(!memory.was_purged("/touched"));
    // While that slow purge is in flight, an edit that purges nothing is not held by it.
    let started = Instant::now();
    app.oneshot(request("POST", "/quiet")).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    purger.flush().await;
    assert!(memory.was_purged("/touched"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_that_is_too_slow_holds_the_answer_no_longer_than_the_timeout() {
    let (purger, memory) = purger(Duration::from_secs(5));
    let app = app(
        &purger,
        Some(ReadYourWritesLayer::new().timeout(Duration::from_millis(200))),
    );
    let started = Instant::now();
    let response = app.oneshot(request("POST", "/posts/slow")).await.unwrap();
    assert_eq!(response.status(), 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert!(!memory.was_purged("/posts/slow"), "still being purged");
    // The purge goes on in the background.
    purger.flush().await;
    assert!(memory.was_purged("/posts/slow"));
}
