//! Response tagging in an axum app: handlers add the entities they render (tags declared once,
//! with `#[derive(CachePurge)]`), and `CacheTagsLayer` writes them into every configured
//! header.

use axum::body::Body;
use axum::extract::Path;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::{Extension, Router};
use cache_purge_hooks_engine::{PurgeTargets, Tag, Target};
use cache_purge_hooks_macros::CachePurge;
use cache_purge_hooks_tower::{BAN_HEADER, CacheTags, CacheTagsLayer, TagHeader};
use tower::ServiceExt;

#[derive(CachePurge)]
#[cache_purge(url = "/posts/{slug}", tag = "post:{id}", tag = "posts")]
struct Post {
    id: i64,
    slug: String,
}

#[derive(CachePurge)]
#[cache_purge(tag = "category:{id}")]
struct Category {
    id: i64,
}

fn post(id: i64) -> Post {
    Post {
        id,
        slug: format!("post-{id}"),
    }
}

/// A post page: the post and its category, taken with the `axum` feature's extractor.
async fn show(Path(id): Path<i64>, tags: CacheTags) -> String {
    let post = post(id);
    tags.add(&post);
    tags.add(&Category { id: 3 });
    format!("post {}", post.slug)
}

/// A list: every post shown, taken as an `Extension`.
async fn list(Extension(tags): Extension<CacheTags>) -> &'static str {
    for id in 1..=3 {
        tags.add(&post(id));
    }
    "list"
}

fn app() -> Router {
    Router::new()
        .route("/posts/{id}", get(show))
        .route("/", get(list))
        .route("/untagged", get(|| async { "plain" }))
        .layer(
            CacheTagsLayer::new(TagHeader::xkey())
                .header(TagHeader::ban_header(BAN_HEADER))
                .header(TagHeader::surrogate_key())
                .header(TagHeader::cache_tag())
                .header(TagHeader::edge_cache_tag()),
        )
}

async fn get_page(app: Router, uri: &str) -> axum::http::Response<Body> {
    app.oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap()
}

fn header(response: &axum::http::Response<Body>, name: &str) -> Vec<String> {
    response
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The tags a save of `entity` purges.
fn purged_tags(entity: &impl PurgeTargets) -> Vec<String> {
    entity
        .resolve_targets()
        .targets()
        .iter()
        .filter_map(|t| match t {
            Target::Tag(tag) => Some(tag.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_post_page_carries_the_tags_its_entities_purge_in_every_format() {
    let response = get_page(app(), "/posts/7").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "xkey"), ["post:7 posts category:3"]);
    assert_eq!(
        header(&response, "x-cache-tags"),
        ["post:7 posts category:3"]
    );
    assert_eq!(
        header(&response, "surrogate-key"),
        ["post:7 posts category:3"]
    );
    assert_eq!(header(&response, "cache-tag"), ["post:7,posts,category:3"]);
    // Akamai refuses `:`: the stand-in purgers name with the same function.
    let akamai = |t: &str| {
        TagHeader::edge_cache_tag()
            .written_form(&Tag::parse(t).unwrap())
            .to_string()
    };
    assert_eq!(
        header(&response, "edge-cache-tag"),
        [format!(
            "{},posts,{}",
            akamai("post:7"),
            akamai("category:3")
        )]
    );
}

#[tokio::test]
async fn the_tags_written_are_the_tags_a_save_purges() {
    let response = get_page(app(), "/posts/9").await;
    let written: Vec<String> = header(&response, "xkey")[0]
        .split(' ')
        .map(str::to_owned)
        .collect();
    let purged = purged_tags(&post(9));
    assert_eq!(written[..2], purged[..]);
}

/// A post declaring `posts` as its list tag, not as one of its own tags.
#[derive(CachePurge)]
#[cache_purge(url = "/articles/{id}", tag = "article:{id}", list_tag = "articles")]
struct Article {
    id: i64,
}

fn list_tag_app() -> Router {
    async fn show(Path(id): Path<i64>, tags: CacheTags) -> &'static str {
        tags.add(&Article { id });
        "article"
    }
    async fn list(tags: CacheTags) -> &'static str {
        tags.add_list::<Article>();
        for id in 1..=2 {
            tags.add(&Article { id });
        }
        "articles"
    }
    async fn empty_list(tags: CacheTags) -> &'static str {
        tags.add_list::<Article>();
        "no articles yet"
    }
    Router::new()
        .route("/articles/{id}", get(show))
        .route("/articles", get(list))
        .route("/drafts", get(empty_list))
        .layer(CacheTagsLayer::new(TagHeader::xkey()))
}

#[tokio::test]
async fn a_page_showing_one_value_carries_its_tags_but_not_its_list_tag() {
    let page = get_page(list_tag_app(), "/articles/7").await;
    assert_eq!(header(&page, "xkey"), ["article:7"]);
    // The save purges both: every list, and this article's page.
    assert_eq!(purged_tags(&Article { id: 7 }), ["article:7", "articles"]);
}

#[tokio::test]
async fn a_list_page_carries_the_list_tag_even_when_it_lists_nothing() {
    let list = get_page(list_tag_app(), "/articles").await;
    assert_eq!(header(&list, "xkey"), ["articles article:1 article:2"]);
    let empty = get_page(list_tag_app(), "/drafts").await;
    assert_eq!(header(&empty, "xkey"), ["articles"]);
}

#[tokio::test]
async fn a_list_page_carries_each_listed_posts_tag_once() {
    let response = get_page(app(), "/").await;
    assert_eq!(header(&response, "xkey"), ["post:1 posts post:2 post:3"]);
}

#[tokio::test]
async fn a_page_that_tagged_nothing_has_no_tag_header() {
    let response = get_page(app(), "/untagged").await;
    assert_eq!(response.status(), StatusCode::OK);
    for name in [
        "xkey",
        "x-cache-tags",
        "surrogate-key",
        "cache-tag",
        "edge-cache-tag",
    ] {
        assert!(response.headers().get(name).is_none(), "{name}");
    }
}

#[tokio::test]
async fn taking_cache_tags_without_the_layer_is_a_500_naming_the_layer() {
    let app = Router::new().route("/posts/{id}", get(show));
    let response = get_page(app, "/posts/1").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = axum::body::to_bytes(response.into_body(), 10_000)
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("CacheTagsLayer"), "{body}");
}

mod tag_index {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::http::{HeaderValue, header};
    use cache_purge_hooks_engine::tag_index::MemoryTagIndex;
    use cache_purge_hooks_engine::{PurgeUrl, TagIndex, TagIndexError};
    use cache_purge_hooks_tower::X_ACCEL_EXPIRES;

    use super::*;

    fn index_app(index: Arc<dyn TagIndex>) -> Router {
        Router::new()
            .route("/posts/{id}", get(show))
            .route(
                "/private",
                get(|tags: CacheTags| async move {
                    tags.add(&post(9));
                    (
                        [(header::CACHE_CONTROL, HeaderValue::from_static("private"))],
                        "mine",
                    )
                }),
            )
            .layer(
                CacheTagsLayer::new(TagHeader::xkey()).record_into(index, Duration::from_secs(600)),
            )
    }

    async fn get_path(app: Router, path: &str) -> axum::http::Response<Body> {
        app.oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_tagged_response_is_recorded_in_the_index_under_its_tags() {
        let index = MemoryTagIndex::new();
        let app = index_app(Arc::new(index.clone()));
        let response = get_path(app.clone(), "/posts/1?page=2").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get(X_ACCEL_EXPIRES).is_none());
        let urls = index.urls(&[Tag::parse("post:1").unwrap()]).await.unwrap();
        assert_eq!(urls, [PurgeUrl::parse("/posts/1?page=2").unwrap()]);
        let urls = index
            .urls(&[Tag::parse("category:3").unwrap()])
            .await
            .unwrap();
        assert_eq!(urls.len(), 1);
        // A response no cache keeps is not recorded.
        get_path(app, "/private").await;
        assert!(
            index
                .urls(&[Tag::parse("post:9").unwrap()])
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// An index that is down.
    struct Down;

    #[cache_purge_hooks_engine::async_trait]
    impl TagIndex for Down {
        async fn record(&self, _: &PurgeUrl, _: &[Tag], _: Duration) -> Result<(), TagIndexError> {
            Err(TagIndexError::new(
                cache_purge_hooks_engine::tag_index::TagIndexErrorKind::Unreachable,
                "connection refused",
            ))
        }
        async fn urls(&self, _: &[Tag]) -> Result<Vec<PurgeUrl>, TagIndexError> {
            Ok(Vec::new())
        }
        async fn forget(&self, _: &Tag, _: &[PurgeUrl]) -> Result<(), TagIndexError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_response_whose_tags_cannot_be_recorded_is_kept_out_of_nginx() {
        let response = get_path(index_app(Arc::new(Down)), "/posts/1").await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the page is still served"
        );
        assert_eq!(response.headers()[X_ACCEL_EXPIRES], "0");
    }
}
