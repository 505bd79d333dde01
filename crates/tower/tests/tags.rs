//! Response tagging in an axum app: handlers add the entities they render (tags declared once,
//! with `#[derive(CachePurge)]`), and `CacheTagsLayer` writes them into every configured
//! header.

use axum::body::Body;
use axum::extract::Path;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::{Extension, Router};
use cache_purge_hooks::CachePurge;
use cache_purge_hooks::{PurgeTargets, Tag, Target};
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
    let purged: Vec<String> = post(9)
        .resolve_targets()
        .targets()
        .iter()
        .filter_map(|t| match t {
            Target::Tag(tag) => Some(tag.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(written[..2], purged[..]);
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
