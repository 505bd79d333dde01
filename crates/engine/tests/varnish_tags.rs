//! Purging by tag on a real varnishd (started per test on free loopback ports): bans on the
//! tag header with stock Varnish, in every mode, and xkey purges (hard and soft) with the
//! xkey vmod of varnish-modules. The origin tags its pages with `xkey` response headers, as
//! the tagging layer of cache-purge-hooks-tower does; a page tagged `post:1 posts` goes, one
//! tagged `post:10` or `post:2` stays.

use std::time::{Duration, Instant};

use cache_purge_hooks_engine::backend::Backend;
use cache_purge_hooks_engine::backend::varnish::VarnishBackend;
use cache_purge_hooks_engine::settings::{
    VarnishHttpMethod, VarnishMode, VarnishSettings, VarnishTags,
};
use cache_purge_hooks_engine::{Delivery, Purger, Target};
use cache_purge_hooks_testing::{Origin, Varnish, assert_cached, assert_purged, warm};

fn cli_settings(varnish: &Varnish) -> VarnishSettings {
    let mut s = VarnishSettings::default();
    s.servers = vec![varnish.admin_addr().parse().unwrap()];
    s.secret_file = varnish.secret_file().to_path_buf();
    s.timeout = Duration::from_secs(2);
    s.tags = VarnishTags::Ban;
    s
}

fn http_settings(
    varnish: &Varnish,
    method: VarnishHttpMethod,
    tags: VarnishTags,
) -> VarnishSettings {
    let mut s = cli_settings(varnish);
    s.mode = VarnishMode::Http;
    s.servers = vec![varnish.http_addr().parse().unwrap()];
    s.http_method = method;
    s.tags = tags;
    s
}

fn tags(list: &[&str]) -> Vec<Target> {
    list.iter().map(|t| Target::tag(t).unwrap()).collect()
}

/// The pages of a blog and their tags: a post, its neighbours by number, a paginated list
/// that shows post 1, and a page whose tags come in two `xkey` lines.
fn tagged_origin() -> Origin {
    let origin = Origin::start().unwrap();
    for (path, lines) in [
        ("/posts/1", &["post:1 posts"][..]),
        ("/posts/10", &["post:10 posts"]),
        ("/posts/2", &["post:2 posts"]),
        ("/?page=7", &["posts post:70", "post:1"]),
        ("/about", &["page:about"]),
    ] {
        for line in lines {
            origin.add_header(path, "xkey", line).unwrap();
        }
    }
    origin
}

const PAGES: [&str; 5] = ["/posts/1", "/posts/10", "/posts/2", "/?page=7", "/about"];

/// Tag `post:1` purged through a Purger: the post and the list that shows it are fetched
/// fresh, `post:10`, `post:2` and an untagged neighbour stay cached.
async fn purges_post_1_and_keeps_its_neighbours(
    varnish: &Varnish,
    origin: &Origin,
    settings: VarnishSettings,
) {
    warm(varnish, &PAGES).await;
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("edge", VarnishBackend::new(&settings).unwrap())
        .build()
        .unwrap();
    purger.purge(tags(&["post:1"])).await;
    purger.flush().await;
    let stats = &purger.stats()[0];
    assert_eq!(
        (stats.purged, stats.failed, stats.unsupported),
        (1, 0, 0),
        "{stats:?}"
    );
    assert_purged(varnish, origin, "/posts/1").await;
    assert_purged(varnish, origin, "/?page=7").await;
    for kept in ["/posts/10", "/posts/2", "/about"] {
        assert_cached(varnish, kept).await;
    }
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_mode_bans_whole_tag_tokens_on_the_object_header() {
    let origin = tagged_origin();
    let varnish = Varnish::start(&origin).await.unwrap();
    purges_post_1_and_keeps_its_neighbours(&varnish, &origin, cli_settings(&varnish)).await;
    assert_eq!(
        varnish.ban_list().unwrap(),
        [r"obj.http.xkey ~ (?:^|[\x20,])post:1(?:[\x20,]|$)"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn varnishadm_mode_bans_tags_too() {
    let origin = tagged_origin();
    let varnish = Varnish::start(&origin).await.unwrap();
    let mut settings = cli_settings(&varnish);
    settings.mode = VarnishMode::Varnishadm;
    purges_post_1_and_keeps_its_neighbours(&varnish, &origin, settings).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_mode_bans_tags_with_the_tag_regex_in_its_own_header() {
    for method in [VarnishHttpMethod::Purge, VarnishHttpMethod::Ban] {
        let origin = tagged_origin();
        let varnish = Varnish::start(&origin).await.unwrap();
        let settings = http_settings(&varnish, method, VarnishTags::Ban);
        purges_post_1_and_keeps_its_neighbours(&varnish, &origin, settings).await;
        assert_eq!(
            varnish.ban_list().unwrap(),
            [r"obj.http.xkey ~ (?:^|[\x20,])post:1(?:[\x20,]|$)"],
            "{method:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn xkey_purges_the_tagged_pages_without_a_ban() {
    let origin = tagged_origin();
    let varnish = Varnish::start_xkey(&origin).await.unwrap();
    let settings = http_settings(&varnish, VarnishHttpMethod::Purge, VarnishTags::Xkey);
    purges_post_1_and_keeps_its_neighbours(&varnish, &origin, settings).await;
    assert_eq!(varnish.ban_list().unwrap(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_xkey_vcl_reports_how_many_objects_a_tag_removed() {
    let origin = tagged_origin();
    let varnish = Varnish::start_xkey(&origin).await.unwrap();
    warm(&varnish, &PAGES).await;
    let purged = varnish
        .request("PURGE", "/", &[("xkey-purge", "posts")])
        .await
        .unwrap();
    assert_eq!(purged.status, 200, "{purged:?}");
    assert_eq!(purged.header("x-purged"), Some("4"), "{purged:?}");
    let none = varnish
        .request("PURGE", "/", &[("xkey-purge", "post:99")])
        .await
        .unwrap();
    assert_eq!(none.header("x-purged"), Some("0"), "{none:?}");
    assert_cached(&varnish, "/about").await;
    // The tags stay the cache's business: clients never see them.
    assert_eq!(varnish.get("/about").await.unwrap().header("xkey"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_batch_mixes_urls_and_xkey_tags() {
    let origin = tagged_origin();
    let varnish = Varnish::start_xkey(&origin).await.unwrap();
    warm(&varnish, &PAGES).await;
    let backend = VarnishBackend::new(&http_settings(
        &varnish,
        VarnishHttpMethod::Ban,
        VarnishTags::Xkey,
    ))
    .unwrap();
    let mut batch = tags(&["post:2"]);
    batch.push(Target::url("/about").unwrap());
    backend.purge(&batch).await.unwrap();
    assert_purged(&varnish, &origin, "/posts/2").await;
    assert_purged(&varnish, &origin, "/about").await;
    for kept in ["/posts/1", "/posts/10", "/?page=7"] {
        assert_cached(&varnish, kept).await;
    }
    // The URL was banned, the tag purged by xkey.
    assert_eq!(varnish.ban_list().unwrap(), [r"obj.http.x-url ~ ^/about$"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_soft_purge_serves_the_stale_page_once_then_the_fresh_one() {
    let origin = tagged_origin();
    let varnish = Varnish::start_xkey(&origin).await.unwrap();
    warm(&varnish, &PAGES).await;
    let mut settings = http_settings(&varnish, VarnishHttpMethod::Purge, VarnishTags::Xkey);
    settings.soft_purge = true;
    let backend = VarnishBackend::new(&settings).unwrap();
    backend.purge(&tags(&["post:1"])).await.unwrap();

    // Within its grace, the stale copy is served at once while Varnish fetches again...
    let stale = varnish.get("/posts/1").await.unwrap();
    assert_eq!(stale.body, "/posts/1 #1", "{stale:?}");
    // ...and the next requests get the fresh one.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = varnish.get("/posts/1").await.unwrap();
        if page.body == "/posts/1 #2" {
            break;
        }
        assert!(Instant::now() < deadline, "never refreshed: {page:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(origin.fetches("/posts/1"), 2);
    assert_cached(&varnish, "/posts/10").await;
}

/// Tags holding everything a tag may hold that means something to a regex or to VCL: each is
/// purged exactly, and pages tagged with what a sloppy regex would also match stay cached.
const HOSTILE: &[&str] = &[
    ".*",
    "a.b",
    "a|b",
    "(x)",
    "[a-z]",
    "^start",
    "end$",
    "post:1)|(.",
    "{1}",
    "q?",
    "plus+",
    "it's",
    "semi;colon",
    "%0a",
    "<tag>",
    "#hash",
    "&amp",
];

/// For each hostile tag, neighbour tags a widened match would catch.
fn neighbours(tag: &str) -> Vec<String> {
    vec![
        format!("{tag}x"),
        format!("x{tag}"),
        tag.replace(|c: char| !c.is_ascii_alphanumeric(), "z"),
    ]
}

async fn hostile_tags_purge_exactly_themselves(
    varnish: &Varnish,
    origin: &Origin,
    backend: &VarnishBackend,
) {
    let mut kept = Vec::new();
    for (i, tag) in HOSTILE.iter().enumerate() {
        origin
            .add_header(&format!("/hostile/{i}"), "xkey", tag)
            .unwrap();
        for (j, n) in neighbours(tag).iter().enumerate() {
            if HOSTILE.contains(&n.as_str()) {
                continue;
            }
            let path = format!("/neighbour/{i}/{j}");
            origin.add_header(&path, "xkey", n).unwrap();
            kept.push(path);
        }
    }
    let purged: Vec<String> = (0..HOSTILE.len())
        .map(|i| format!("/hostile/{i}"))
        .collect();
    let all: Vec<&str> = purged.iter().chain(&kept).map(String::as_str).collect();
    warm(varnish, &all).await;
    backend.purge(&tags(HOSTILE)).await.unwrap();
    for path in &purged {
        assert_purged(varnish, origin, path).await;
    }
    for path in &kept {
        assert_cached(varnish, path).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_tags_never_widen_a_ban() {
    let origin = Origin::start().unwrap();
    let varnish = Varnish::start(&origin).await.unwrap();
    let backend = VarnishBackend::new(&cli_settings(&varnish)).unwrap();
    hostile_tags_purge_exactly_themselves(&varnish, &origin, &backend).await;
    // One ban, its expression exactly what was built.
    let expected: Vec<String> = backend
        .bans_for(&tags(HOSTILE))
        .iter()
        .map(|b| b.expression())
        .collect();
    assert_eq!(varnish.ban_list().unwrap(), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_tags_never_widen_an_http_ban() {
    let origin = Origin::start().unwrap();
    let varnish = Varnish::start(&origin).await.unwrap();
    let backend = VarnishBackend::new(&http_settings(
        &varnish,
        VarnishHttpMethod::Ban,
        VarnishTags::Ban,
    ))
    .unwrap();
    hostile_tags_purge_exactly_themselves(&varnish, &origin, &backend).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_tags_never_widen_an_xkey_purge() {
    let origin = Origin::start().unwrap();
    let varnish = Varnish::start_xkey(&origin).await.unwrap();
    let backend = VarnishBackend::new(&http_settings(
        &varnish,
        VarnishHttpMethod::Purge,
        VarnishTags::Xkey,
    ))
    .unwrap();
    hostile_tags_purge_exactly_themselves(&varnish, &origin, &backend).await;
}

#[test]
fn what_a_header_cannot_carry_is_refused_as_a_tag() {
    for bad in [
        "two words",
        "a,b",
        "quote\"d",
        "back\\slash",
        "new\nline",
        "tab\t",
        "caf\u{e9}",
        "",
    ] {
        assert!(Target::tag(bad).is_err(), "{bad:?} accepted");
    }
    assert!(Target::tag(&"x".repeat(1024)).is_ok());
    assert!(
        Target::tag(&"x".repeat(2048)).is_err(),
        "a 2 KB tag accepted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_tag_purging_a_tag_is_reported_unsupported_and_nothing_is_banned() {
    let origin = tagged_origin();
    let varnish = Varnish::start(&origin).await.unwrap();
    warm(&varnish, &PAGES).await;
    let mut settings = cli_settings(&varnish);
    settings.tags = VarnishTags::None;
    let purger = Purger::builder()
        .delivery(Delivery::Immediate)
        .backend("edge", VarnishBackend::new(&settings).unwrap())
        .build()
        .unwrap();
    purger.purge(tags(&["post:1"])).await;
    purger.flush().await;
    let stats = &purger.stats()[0];
    assert_eq!((stats.purged, stats.unsupported), (0, 1), "{stats:?}");
    assert_eq!(varnish.ban_list().unwrap(), Vec::<String>::new());
    for page in PAGES {
        assert_cached(&varnish, page).await;
    }
    purger.shutdown(Duration::from_secs(5)).await.unwrap();
}
