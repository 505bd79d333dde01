use std::convert::Infallible;

use cache_purge_hooks_engine::Targets;
use cache_purge_hooks_testing::logs;
use tower::ServiceExt;

use super::*;

fn tag(s: &str) -> Tag {
    Tag::parse(s).unwrap()
}

fn many(n: usize, prefix: &str) -> Vec<Tag> {
    (0..n).map(|i| tag(&format!("{prefix}{i}"))).collect()
}

/// Every tag of every line, in order.
fn tokens(rendered: &RenderedTags, separator: char) -> Vec<String> {
    rendered
        .lines
        .iter()
        .flat_map(|l| l.split(separator).map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

fn names(tags: &[Tag]) -> Vec<String> {
    tags.iter().map(ToString::to_string).collect()
}

#[test]
fn xkey_lines_split_at_4096_bytes_and_keep_every_tag() {
    let tags = many(2000, "post:");
    let rendered = TagHeader::xkey().render(&tags, None);
    assert!(rendered.lines.len() > 1, "{} lines", rendered.lines.len());
    for line in &rendered.lines {
        assert!(line.len() <= 4096, "{}", line.len());
        assert!(!line.starts_with(' ') && !line.ends_with(' '));
    }
    // A line is only closed when the next tag would not fit in it.
    for pair in rendered.lines.windows(2) {
        let next = pair[1].split(' ').next().unwrap();
        assert!(pair[0].len() + 1 + next.len() > 4096);
    }
    assert_eq!(tokens(&rendered, ' '), names(&tags));
    assert!(rendered.dropped.is_empty());
    assert_eq!(rendered.written, 2000);
}

#[test]
fn ban_header_lines_split_like_xkey_under_the_chosen_name() {
    let format = TagHeader::ban_header(BAN_HEADER);
    assert_eq!(format.name().as_str(), "x-cache-tags");
    let tags = many(1500, "category:");
    let rendered = format.render(&tags, None);
    assert!(rendered.lines.len() > 1);
    assert!(rendered.lines.iter().all(|l| l.len() <= 4096));
    assert_eq!(tokens(&rendered, ' '), names(&tags));
}

#[test]
fn surrogate_key_stays_within_16384_bytes_and_reports_what_it_dropped() {
    let tags = many(3000, "product-");
    let rendered = TagHeader::surrogate_key().render(&tags, None);
    assert_eq!(rendered.lines.len(), 1);
    let line = &rendered.lines[0];
    assert!(line.len() <= 16_384, "{}", line.len());
    // Full: the next dropped tag would not have fit.
    assert!(line.len() + 1 + rendered.dropped[0].as_str().len() > 16_384);
    assert_eq!(rendered.written + rendered.dropped.len(), 3000);
    // What fits is the first tags, in order.
    assert_eq!(tokens(&rendered, ' '), names(&tags[..rendered.written]));
    assert!(!rendered.fallback_used);
}

#[test]
fn surrogate_keys_of_1024_bytes_fit_and_longer_limits_shorten_keys() {
    let longest = tag(&"k".repeat(1024));
    let rendered = TagHeader::surrogate_key().render([&longest], None);
    assert_eq!(rendered.lines, [longest.to_string()]);
    // A format with shorter keys writes the deterministic stand-in, as purgers will name it.
    let limits = TagLimits {
        max_tag_bytes: 100,
        ..TagLimits::FASTLY
    };
    let format = TagHeader::custom(
        HeaderName::from_static("x-keys"),
        TagSeparator::Space,
        limits,
    );
    let rendered = format.render([&longest], None);
    assert_eq!(rendered.lines, [longest.shortened(100).to_string()]);
    assert_eq!(rendered.lines[0].len(), 100);
    assert_eq!(format.written_form(&longest), longest.shortened(100));
}

#[test]
fn cloudflare_cache_tag_is_comma_separated_within_16000_bytes() {
    let tags = many(2500, "tag-");
    let rendered = TagHeader::cache_tag().render(&tags, None);
    assert_eq!(rendered.lines.len(), 1);
    assert!(rendered.lines[0].len() <= 16_000);
    assert!(!rendered.lines[0].contains(' '));
    assert!(!rendered.dropped.is_empty());
    assert_eq!(tokens(&rendered, ','), names(&tags[..rendered.written]));
    let few = TagHeader::cache_tag().render(&tags[..3], None);
    assert_eq!(few.lines, ["tag-0,tag-1,tag-2"]);
}

#[test]
fn akamai_edge_cache_tag_holds_128_tags_of_at_most_128_allowed_characters() {
    let mut tags = many(150, "post:");
    tags.insert(3, tag(&format!("long-{}", "y".repeat(300))));
    let format = TagHeader::edge_cache_tag();
    let rendered = format.render(&tags, None);
    assert_eq!(rendered.lines.len(), 1);
    let written = tokens(&rendered, ',');
    assert_eq!(written.len(), 128);
    assert_eq!(rendered.written, 128);
    assert_eq!(rendered.dropped.len(), 151 - 128);
    assert!(rendered.lines[0].len() <= 8192);
    for t in &written {
        assert!(t.len() <= 128, "{t}");
        assert!(t.bytes().all(|b| TagCharset::Akamai.allows(b)), "{t}");
    }
    // `post:0` has a colon, which Akamai refuses: its stand-in is written.
    assert_eq!(
        written[0],
        tag("post:0").fitted(128, |b| b != b':').to_string()
    );
    assert!(written[0].starts_with("post_0~"));
    assert_eq!(written[3].len(), 128);
    assert!(written[3].starts_with("long-yyy"));
    // What the header carries is what the Akamai backend purges: `Tag::akamai_form`.
    for (i, original) in [(0, tag("post:0")), (3, tags[3].clone())] {
        assert_eq!(written[i], original.akamai_form().to_string());
        assert_eq!(format.written_form(&original), original.akamai_form());
    }
}

#[test]
fn a_fallback_tag_is_written_first_when_tags_do_not_fit() {
    let tags = many(200, "item-");
    let format = TagHeader::edge_cache_tag().fallback(tag("site"));
    let rendered = format.render(&tags, None);
    let written = tokens(&rendered, ',');
    assert_eq!(written[0], "site");
    assert_eq!(written.len(), 128);
    assert_eq!(written[1..], names(&tags[..127]));
    assert_eq!(rendered.dropped.len(), 200 - 127);
    assert!(rendered.fallback_used);
    // The header's own fallback wins over the layer's.
    let rendered = format.render(&tags, Some(&tag("other")));
    assert_eq!(tokens(&rendered, ',')[0], "site");
    // The layer's is used by formats without one.
    let rendered = TagHeader::surrogate_key().render(&many(3000, "p-"), Some(&tag("all")));
    assert!(rendered.lines[0].starts_with("all p-0 "));
    assert!(rendered.lines[0].len() <= 16_384);
}

#[test]
fn a_fallback_tag_is_not_written_when_everything_fits() {
    let tags = many(3, "item-");
    let rendered = TagHeader::edge_cache_tag()
        .fallback(tag("site"))
        .render(&tags, None);
    assert_eq!(rendered.lines, ["item-0,item-1,item-2"]);
    assert!(!rendered.fallback_used);
}

#[test]
fn duplicates_are_written_once_in_first_seen_order() {
    let tags = [tag("b"), tag("a"), tag("b")];
    let rendered = TagHeader::xkey().render(&tags, None);
    assert_eq!(rendered.lines, ["b a"]);
    assert!(TagHeader::xkey().render([], None).lines.is_empty());
}

struct Post {
    id: u32,
}

impl PurgeTargets for Post {
    fn purge_targets(&self, targets: &mut Targets) {
        targets.push_any(format!("/posts/{}", self.id));
        targets.push_any(Tag::parse(&format!("post:{}", self.id)));
        targets.push_any(Tag::parse("posts"));
    }
}

#[test]
fn cache_tags_take_an_entitys_tags_and_ignore_its_urls() {
    let tags = CacheTags::new();
    tags.add(&Post { id: 1 });
    tags.add(&Post { id: 2 });
    tags.add(&Post { id: 1 });
    assert_eq!(names(&tags.tags()), ["post:1", "posts", "post:2"]);
    assert_eq!(tags.len(), 3);
    let clone = tags.clone();
    clone.add_tag(tag("extra"));
    assert_eq!(tags.len(), 4, "clones share one set");
    assert!(tags.add_str("a,b").is_err());
    assert_eq!(format!("{tags:?}").matches("Tag(").count(), 4);
}

/// A service answering `200` after adding `n` tags `t{i}` (and setting `preset` as the
/// response's own `xkey`, if any).
fn tagging(
    n: usize,
    preset: Option<&'static str>,
) -> impl Service<
    http::Request<()>,
    Response = http::Response<()>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<()>, Infallible>> + Send + 'static,
> + Clone {
    tower::service_fn(move |request: http::Request<()>| async move {
        let tags = request.extensions().get::<CacheTags>().cloned();
        if let Some(tags) = tags {
            tags.extend(many(n, "t"));
        }
        let mut response = http::Response::new(());
        if let Some(preset) = preset {
            response
                .headers_mut()
                .insert("xkey", HeaderValue::from_static(preset));
        }
        Ok::<_, Infallible>(response)
    })
}

async fn call(
    layer: CacheTagsLayer,
    inner: impl Service<
        http::Request<()>,
        Response = http::Response<()>,
        Error = Infallible,
        Future = impl Future<Output = Result<http::Response<()>, Infallible>> + Send + 'static,
    >,
    uri: &str,
) -> http::Response<()> {
    let request = http::Request::get(uri).body(()).unwrap();
    layer.layer(inner).oneshot(request).await.unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn dropped_tags_are_logged_with_the_uri_header_and_count() {
    let (captured, _guard) = logs::capture();
    let layer = CacheTagsLayer::new(TagHeader::edge_cache_tag()).fallback(tag("site"));
    let response = call(layer, tagging(200, None), "/list?page=3").await;
    let value = response.headers()["edge-cache-tag"].to_str().unwrap();
    assert!(value.starts_with("site,t0,t1,"), "{value}");
    assert_eq!(value.split(',').count(), 128);
    let text = captured.text();
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("uri=/list?page=3"), "{text}");
    assert!(text.contains("header=edge-cache-tag"), "{text}");
    assert!(text.contains("dropped=73"), "{text}");
    assert!(text.contains("fallback=\"site\""), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn line_formats_never_warn_they_split() {
    let (captured, _guard) = logs::capture();
    let layer = CacheTagsLayer::new(TagHeader::xkey()).header(TagHeader::ban_header(BAN_HEADER));
    let response = call(layer, tagging(3000, None), "/").await;
    for name in ["xkey", "x-cache-tags"] {
        let lines: Vec<&str> = response
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert!(lines.len() > 1, "{name}");
        assert!(lines.iter().all(|l| l.len() <= 4096));
        assert_eq!(
            lines.iter().map(|l| l.split(' ').count()).sum::<usize>(),
            3000
        );
    }
    assert!(!captured.text().contains("WARN"), "{}", captured.text());
}

#[tokio::test(flavor = "current_thread")]
async fn a_response_without_tags_gets_no_tag_header() {
    let layer = CacheTagsLayer::new(TagHeader::xkey()).header(TagHeader::surrogate_key());
    let response = call(layer, tagging(0, None), "/").await;
    assert!(response.headers().get("xkey").is_none());
    assert!(response.headers().get("surrogate-key").is_none());
}

#[tokio::test(flavor = "current_thread")]
async fn a_tag_header_the_handler_set_is_merged_not_overwritten() {
    let layer = CacheTagsLayer::new(TagHeader::xkey());
    let response = call(layer, tagging(2, Some("own t1")), "/").await;
    let lines: Vec<&str> = response
        .headers()
        .get_all("xkey")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(lines, ["own t1 t0"]);
}

#[tokio::test(flavor = "current_thread")]
async fn nested_layers_share_one_set_of_tags() {
    let inner = CacheTagsLayer::new(TagHeader::xkey()).layer(tagging(2, None));
    let outer = CacheTagsLayer::new(TagHeader::surrogate_key()).layer(inner);
    let request = http::Request::get("/").body(()).unwrap();
    let response = outer.oneshot(request).await.unwrap();
    assert_eq!(response.headers()["xkey"], "t0 t1");
    assert_eq!(response.headers()["surrogate-key"], "t0 t1");
}
