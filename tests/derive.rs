//! `#[derive(CachePurge)]`: the runtime behaviour of every attribute form, and (in `ui`) the
//! compile errors, checked with trybuild against the `.stderr` files in `tests/ui`.
//!
//! These are also the tested versions of the examples in the derive's documentation.

// The derive must not make fields that only it reads look unused, nor emit anything unused.
#![deny(unused, dead_code)]

use std::fmt;

use cache_purge_hooks::{CachePurge, PurgeTargets, Tag, Target, registry};

/// `URL_FIELDS` of a type, for short assertions.
fn url_fields<T: PurgeTargets>() -> Option<Vec<&'static str>> {
    T::URL_FIELDS.map(<[_]>::to_vec)
}

mod tags {
    use super::*;

    #[derive(CachePurge)]
    #[cache_purge(url = "/posts/{slug}", tag = "post:{id}", tag = "posts")]
    #[cache_purge(tag = "{kind}-feed", tag = "author:{author}")]
    struct Post {
        id: i64,
        slug: String,
        kind: String,
        author: Option<String>,
    }

    fn tags(t: &cache_purge_hooks::Targets) -> Vec<String> {
        t.targets()
            .iter()
            .filter_map(|t| match t {
                Target::Tag(tag) => Some(tag.to_string()),
                _ => None,
            })
            .collect()
    }

    #[derive(CachePurge)]
    #[cache_purge(url = "/posts/{slug}", tag = "post:{id}", list_tag = "posts")]
    #[cache_purge(list_tag = "feed")]
    struct Listed {
        id: i64,
        slug: String,
    }

    #[test]
    fn list_tags_are_purged_like_tags_and_listed_apart() {
        let t = Listed {
            id: 3,
            slug: "a".into(),
        }
        .resolve_targets();
        assert_eq!(tags(&t), ["post:3", "posts", "feed"]);
        assert_eq!(Listed::LIST_TAGS, ["posts", "feed"]);
        assert_eq!(
            Post::LIST_TAGS,
            [] as [&str; 0],
            "plain tags are not list tags"
        );
        // Constant tags depend on no field.
        assert_eq!(url_fields::<Listed>(), Some(vec!["slug", "id"]));
    }

    #[test]
    fn tags_are_rendered_beside_urls_and_their_fields_tracked() {
        let post = Post {
            id: 7,
            slug: "hello".into(),
            kind: "news".into(),
            author: None,
        };
        let t = post.resolve_targets();
        assert_eq!(t.urls(), ["/posts/hello"]);
        assert_eq!(
            tags(&t),
            ["post:7", "posts", "news-feed"],
            "no author: no author tag"
        );
        // A change of a tag's field must purge the old tag too: the field is tracked.
        assert_eq!(
            url_fields::<Post>(),
            Some(vec!["slug", "id", "kind", "author"])
        );
    }

    #[test]
    fn a_value_can_never_make_two_tags_or_break_a_header() {
        let post = Post {
            id: 1,
            slug: "x".into(),
            kind: "a b,c\"d\\e%\nf".into(),
            author: Some("Zoë".into()),
        };
        let t = post.resolve_targets();
        assert!(t.rejected().is_empty(), "{:?}", t.rejected());
        assert_eq!(
            tags(&t),
            [
                "post:1",
                "posts",
                "a%20b%2Cc%22d%5Ce%25%0Af-feed",
                "author:Zo%C3%AB"
            ]
        );
        for tag in tags(&t) {
            assert!(Tag::parse(&tag).is_ok(), "{tag}");
        }
    }
}

mod templates {
    use super::*;

    /// The first example of the derive's documentation.
    #[derive(CachePurge)]
    #[cache_purge(url = "/posts/{slug}", url = "/")]
    #[cache_purge(url = "/feed?author={author_id}")]
    struct Post {
        #[allow(dead_code)]
        id: i64,
        slug: String,
        author_id: i64,
    }

    #[test]
    fn doc_example() {
        let post = Post {
            id: 1,
            slug: "hello world".into(),
            author_id: 7,
        };
        assert_eq!(
            post.resolve_targets().urls(),
            ["/posts/hello%20world", "/", "/feed?author=7"],
        );
        assert_eq!(Post::URL_FIELDS, Some(&["slug", "author_id"][..]));
    }

    #[derive(CachePurge)]
    #[cache_purge(url = "/posts/{slug}")]
    #[cache_purge(url = "/archive/{year}/{month}.html")]
    #[cache_purge(url = "/search?tag={tag}&page=1")]
    #[cache_purge(url = "https://cdn.example.com/img/{slug}")]
    struct Article {
        slug: String,
        year: i32,
        month: u8,
        tag: String,
    }

    #[test]
    fn several_templates_in_order() {
        let a = Article {
            slug: "intro".into(),
            year: 2024,
            month: 5,
            tag: "rust".into(),
        };
        let t = a.resolve_targets();
        assert_eq!(
            t.urls(),
            [
                "/posts/intro",
                "/archive/2024/5.html",
                "/search?tag=rust&page=1",
                "https://cdn.example.com/img/intro",
            ],
        );
        assert!(t.rejected().is_empty());
        assert_eq!(
            url_fields::<Article>(),
            Some(vec!["slug", "year", "month", "tag"])
        );
    }

    /// Duplicate templates and templates rendering the same URL are purged once, at the
    /// position of their first occurrence.
    #[derive(CachePurge)]
    #[allow(clippy::duplicated_attributes, reason = "the duplicates are the point")]
    #[cache_purge(url = "/a/{x}", url = "/", url = "/a/{y}", url = "/a/{x}", url = "/")]
    struct Dupes {
        x: u32,
        y: u32,
    }

    #[test]
    fn duplicates_are_removed_keeping_first_order() {
        let d = Dupes { x: 1, y: 1 };
        assert_eq!(d.resolve_targets().urls(), ["/a/1", "/"]);
        let d = Dupes { x: 1, y: 2 };
        assert_eq!(d.resolve_targets().urls(), ["/a/1", "/", "/a/2"]);
        assert_eq!(url_fields::<Dupes>(), Some(vec!["x", "y"]));
    }

    #[derive(CachePurge)]
    #[cache_purge(url = "/posts/{slug}/comments?page=1")]
    struct Slug {
        slug: String,
    }

    fn slug_url(slug: &str) -> String {
        let t = Slug { slug: slug.into() }.resolve_targets();
        assert!(t.rejected().is_empty(), "{slug:?}: {:?}", t.rejected());
        assert_eq!(t.len(), 1);
        t.urls()[0].to_owned()
    }

    #[test]
    fn path_placeholders_are_one_encoded_segment() {
        let cases = [
            ("hello", "/posts/hello/comments?page=1"),
            ("a b", "/posts/a%20b/comments?page=1"),
            ("a/b", "/posts/a%2Fb/comments?page=1"),
            ("a?b=1", "/posts/a%3Fb=1/comments?page=1"),
            ("a#b", "/posts/a%23b/comments?page=1"),
            ("100%", "/posts/100%25/comments?page=1"),
            ("%20", "/posts/%2520/comments?page=1"),
            ("café", "/posts/caf%C3%A9/comments?page=1"),
            ("日本", "/posts/%E6%97%A5%E6%9C%AC/comments?page=1"),
            ("..", "/posts/%2E%2E/comments?page=1"),
            (".", "/posts/%2E/comments?page=1"),
            ("../../admin", "/posts/..%2F..%2Fadmin/comments?page=1"),
            ("a\"b\\c\n", "/posts/a%22b%5Cc%0A/comments?page=1"),
            ("", "/posts//comments?page=1"),
        ];
        for (slug, want) in cases {
            assert_eq!(slug_url(slug), want, "{slug:?}");
        }
    }

    #[derive(CachePurge)]
    #[cache_purge(url = "/search?q={q}&page={page}")]
    struct Search {
        q: String,
        page: u32,
    }

    #[test]
    fn query_placeholders_cannot_add_parameters() {
        let s = Search {
            q: "tea & cake=yes+1;x/y?z#f".into(),
            page: 2,
        };
        assert_eq!(
            s.resolve_targets().urls(),
            ["/search?q=tea%20%26%20cake%3Dyes%2B1%3Bx/y?z%23f&page=2"]
        );
    }

    /// A `Display` type that is not a string.
    struct Slugged(&'static str, u32);
    impl fmt::Display for Slugged {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}-{}", self.0, self.1)
        }
    }

    #[derive(CachePurge)]
    #[cache_purge(url = "/p/{key}", url = "/n/{n}/{flag}/{c}")]
    struct Displayed {
        key: Slugged,
        n: i128,
        flag: bool,
        c: char,
    }

    #[test]
    fn values_are_rendered_with_display() {
        let d = Displayed {
            key: Slugged("x y", 3),
            n: -5,
            flag: true,
            c: '/',
        };
        assert_eq!(d.resolve_targets().urls(), ["/p/x%20y-3", "/n/-5/true/%2F"]);
    }

    #[derive(CachePurge)]
    #[cache_purge(url = "/users/{name}", url = "/users/{name}/{team}?lang={lang}")]
    #[cache_purge(url = "/always")]
    struct Optional {
        name: Option<String>,
        team: std::option::Option<u32>,
        lang: String,
    }

    #[test]
    fn option_fields_produce_the_url_only_when_some() {
        let o = |name: Option<&str>, team| Optional {
            name: name.map(str::to_owned),
            team,
            lang: "fr".into(),
        };
        assert_eq!(o(None, None).resolve_targets().urls(), ["/always"]);
        assert_eq!(o(None, Some(3)).resolve_targets().urls(), ["/always"]);
        assert_eq!(
            o(Some("ann"), None).resolve_targets().urls(),
            ["/users/ann", "/always"]
        );
        assert_eq!(
            o(Some("a b"), Some(3)).resolve_targets().urls(),
            ["/users/a%20b", "/users/a%20b/3?lang=fr", "/always"]
        );
        assert_eq!(url_fields::<Optional>(), Some(vec!["name", "team", "lang"]));
    }

    #[derive(CachePurge)]
    #[cache_purge(
        url = "https://Example.com/posts/{slug}",
        url = "http://example.com:8080?s={slug}"
    )]
    struct Absolute {
        slug: String,
    }

    #[test]
    fn absolute_templates_stay_absolute() {
        let t = Absolute { slug: "a/b".into() }.resolve_targets();
        assert_eq!(
            t.urls(),
            [
                "https://example.com/posts/a%2Fb",
                "http://example.com:8080/?s=a/b"
            ]
        );
        let Target::Url(u) = &t.targets()[0] else {
            panic!("not a URL: {:?}", t.targets()[0]);
        };
        assert!(u.is_absolute());
        assert_eq!(u.host(), Some("example.com"));
        assert_eq!(u.path(), "/posts/a%2Fb");
    }

    #[derive(CachePurge)]
    #[cache_purge(url = "/", url = "/sitemap.xml", url = "/a%20b?x=%2F")]
    struct Constant {
        #[allow(dead_code)]
        id: u8,
    }

    #[test]
    fn templates_without_placeholders_are_constant() {
        assert_eq!(
            Constant { id: 1 }.resolve_targets().urls(),
            ["/", "/sitemap.xml", "/a%20b?x=%2F"]
        );
        assert_eq!(url_fields::<Constant>(), Some(vec![]));
    }

    /// Field names that are keywords, or that match names the generated code uses.
    #[derive(CachePurge)]
    #[cache_purge(url = "/{type}/{url}/{targets}/{self_}/{value_0}?{r#match}")]
    struct Keywords {
        r#type: &'static str,
        url: u8,
        targets: u8,
        self_: u8,
        value_0: Option<u8>,
        r#match: u8,
    }

    #[test]
    fn raw_and_colliding_field_names() {
        let k = Keywords {
            r#type: "t",
            url: 1,
            targets: 2,
            self_: 3,
            value_0: Some(4),
            r#match: 5,
        };
        assert_eq!(k.resolve_targets().urls(), ["/t/1/2/3/4?5"]);
        assert_eq!(
            url_fields::<Keywords>(),
            Some(vec!["type", "url", "targets", "self_", "value_0", "match"])
        );
    }

    proptest::proptest! {
        /// Whatever the slug, the URL is the template with exactly one path segment in place
        /// of the placeholder, and that segment decodes back to the slug.
        #[test]
        fn any_slug_is_one_segment_that_round_trips(slug in "\\PC{0,30}|[./%?#& ]{0,6}") {
            let url = slug_url(&slug);
            let segment = url
                .strip_prefix("/posts/")
                .and_then(|r| r.strip_suffix("/comments?page=1"))
                .expect("template structure kept");
            proptest::prop_assert!(!segment.contains(['/', '?', '#']), "{url}");
            proptest::prop_assert!(segment != "." && segment != "..", "{url}");
            proptest::prop_assert_eq!(percent_decode(segment), slug);
        }
    }

    fn percent_decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
}

mod resolvers {
    use super::*;

    #[derive(CachePurge)]
    #[cache_purge(resolver = urls::comment_pages, fields(post_slug))]
    struct Comment {
        id: i64,
        post_slug: String,
    }

    mod urls {
        pub fn comment_pages(c: &super::Comment) -> Vec<String> {
            vec![
                format!("/posts/{}", c.post_slug),
                format!("/comments/{}", c.id),
            ]
        }
    }

    #[test]
    fn doc_example_vec_of_strings() {
        let c = Comment {
            id: 3,
            post_slug: "hello".into(),
        };
        assert_eq!(c.resolve_targets().urls(), ["/posts/hello", "/comments/3"]);
        assert_eq!(url_fields::<Comment>(), Some(vec!["post_slug"]));
    }

    fn maybe(o: &Maybe) -> Option<String> {
        o.archived.then(|| "/archive".to_owned())
    }
    fn fixed(_: &Maybe) -> [&'static str; 2] {
        ["/", "/sitemap.xml"]
    }
    fn typed(o: &Maybe) -> Vec<Target> {
        vec![
            Target::Tag(Tag::parse(&format!("maybe-{}", o.archived)).unwrap()),
            Target::url("/typed").unwrap(),
        ]
    }
    fn invalid(_: &Maybe) -> Vec<&'static str> {
        vec!["relative/url", "/ok"]
    }

    /// Several resolvers, mixed with a template, run in the order written.
    #[derive(CachePurge)]
    #[cache_purge(resolver = maybe, url = "/m/{archived}", resolver = self::fixed)]
    #[cache_purge(resolver = typed, resolver = crate::resolvers::invalid)]
    struct Maybe {
        archived: bool,
    }

    #[test]
    fn option_array_targets_and_rejections() {
        let t = Maybe { archived: true }.resolve_targets();
        assert_eq!(
            t.urls(),
            ["/archive", "/m/true", "/", "/sitemap.xml", "/typed", "/ok"]
        );
        assert!(t.targets().contains(&Target::tag("maybe-true").unwrap()));
        assert_eq!(t.rejected().len(), 1);
        assert_eq!(t.rejected()[0].input, "relative/url");

        let t = Maybe { archived: false }.resolve_targets();
        assert_eq!(t.urls(), ["/m/false", "/", "/sitemap.xml", "/typed", "/ok"]);
        // A resolver without `fields(...)` may read anything.
        assert_eq!(url_fields::<Maybe>(), None);
    }

    /// A resolver whose name is the same as the generated code's parameter.
    fn targets(_: &Hygiene) -> Option<&'static str> {
        Some("/hygiene")
    }

    #[derive(CachePurge)]
    #[cache_purge(resolver = targets, fields())]
    struct Hygiene {}

    #[test]
    fn resolver_names_do_not_clash_with_generated_locals() {
        assert_eq!(Hygiene {}.resolve_targets().urls(), ["/hygiene"]);
        // `fields()` says the resolver reads no field: the URLs never change.
        assert_eq!(url_fields::<Hygiene>(), Some(vec![]));
    }

    fn by_id(e: &Union) -> [String; 1] {
        [format!("/e/{}", e.id)]
    }

    #[derive(CachePurge)]
    #[cache_purge(url = "/e/{slug}", resolver = by_id, fields(id, slug))]
    #[cache_purge(fields(r#type))]
    struct Union {
        id: u32,
        slug: String,
        r#type: u8,
    }

    #[test]
    fn url_fields_is_the_union_in_first_seen_order() {
        let u = Union {
            id: 1,
            slug: "s".into(),
            r#type: 0,
        };
        assert_eq!(u.resolve_targets().urls(), ["/e/s", "/e/1"]);
        assert_eq!(u.r#type, 0);
        assert_eq!(url_fields::<Union>(), Some(vec!["slug", "id", "type"]));
    }
}

mod registered {
    use super::*;

    #[derive(CachePurge)]
    #[cache_purge(registered, fields(slug))]
    struct Page {
        id: i64,
        slug: String,
    }

    #[test]
    fn doc_example_registered_resolver() {
        let base = String::from("https://blog.example");
        registry::replace::<Page, _, _>(move |p: &Page| [format!("{base}/{}", p.slug)]);
        let p = Page {
            id: 1,
            slug: "about".into(),
        };
        assert_eq!(p.id, 1);
        assert_eq!(p.resolve_targets().urls(), ["https://blog.example/about"]);
        assert_eq!(url_fields::<Page>(), Some(vec!["slug"]));
    }

    #[derive(CachePurge)]
    #[cache_purge(url = "/before/{id}", registered, url = "/after")]
    struct Mixed {
        id: i64,
    }

    #[test]
    fn registered_runs_in_place_and_reports_a_missing_resolver() {
        let m = Mixed { id: 4 };
        registry::unregister::<Mixed>();
        let t = m.resolve_targets();
        assert_eq!(t.urls(), ["/before/4", "/after"]);
        assert_eq!(t.rejected().len(), 1);
        assert!(
            t.rejected()[0].input.contains("Mixed"),
            "{:?}",
            t.rejected()
        );

        registry::replace::<Mixed, _, _>(|m: &Mixed| vec![format!("/reg/{}", m.id)]);
        let t = m.resolve_targets();
        assert_eq!(t.urls(), ["/before/4", "/reg/4", "/after"]);
        assert!(t.rejected().is_empty());
        assert_eq!(url_fields::<Mixed>(), None);
    }
}

mod generics {
    use super::*;

    #[derive(CachePurge)]
    #[cache_purge(url = "/items/{key}")]
    struct Item<K> {
        key: K,
    }

    #[derive(CachePurge)]
    #[cache_purge(url = "/o/{value}/{label}", resolver = extra)]
    struct WithWhere<'a, T, U: Clone, const N: usize>
    where
        U: Default,
    {
        value: Option<T>,
        label: &'a str,
        other: [U; N],
    }

    fn extra<T, U: Clone + Default, const N: usize>(w: &WithWhere<'_, T, U, N>) -> Vec<String> {
        vec![format!("/n/{}", w.other.len())]
    }

    #[derive(CachePurge)]
    #[cache_purge(registered)]
    struct Wrapper<T> {
        inner: T,
    }

    #[test]
    fn generic_structs() {
        assert_eq!(Item { key: 5u8 }.resolve_targets().urls(), ["/items/5"]);
        assert_eq!(
            Item { key: "a b" }.resolve_targets().urls(),
            ["/items/a%20b"]
        );
        assert_eq!(url_fields::<Item<String>>(), Some(vec!["key"]));

        let w = WithWhere {
            value: Some(1.5f32),
            label: "l",
            other: [0u8; 3],
        };
        assert_eq!(w.resolve_targets().urls(), ["/o/1.5/l", "/n/3"]);
        let w = WithWhere::<f32, u8, 0> {
            value: None,
            label: "l",
            other: [],
        };
        assert_eq!(w.resolve_targets().urls(), ["/n/0"]);

        // Each instantiation is its own type in the registry.
        registry::replace::<Wrapper<u8>, _, _>(|w: &Wrapper<u8>| [format!("/u8/{}", w.inner)]);
        assert_eq!(Wrapper { inner: 1u8 }.resolve_targets().urls(), ["/u8/1"]);
        let t = Wrapper { inner: 1u16 }.resolve_targets();
        assert!(t.is_empty());
        assert_eq!(t.rejected().len(), 1);
    }
}

/// `crate = "..."`: the facade reached through another path.
mod renamed {
    pub mod framework {
        pub use cache_purge_hooks as cache;
    }

    #[derive(framework::cache::CachePurge)]
    #[cache_purge(crate = "crate::renamed::framework::cache", url = "/r/{slug}")]
    struct Post {
        slug: String,
    }

    #[test]
    fn crate_path_override() {
        use framework::cache::PurgeTargets;
        let p = Post { slug: "x".into() };
        assert_eq!(p.resolve_targets().urls(), ["/r/x"]);
    }
}

/// The derive next to a SeaORM 2 entity in the dense `#[sea_orm::model]` format, which
/// copies it onto the `ModelEx` struct it generates.
mod sea_orm_entity {
    use super::*;

    pub mod post {
        use cache_purge_hooks::CachePurge;
        use sea_orm::entity::prelude::*;

        #[sea_orm::model]
        #[derive(Clone, Debug, PartialEq, DeriveEntityModel, CachePurge)]
        #[sea_orm(table_name = "post")]
        #[cache_purge(url = "/posts/{slug}", url = "/")]
        #[cache_purge(url = "/authors/{author}")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i32,
            pub slug: String,
            pub author: Option<String>,
            #[sea_orm(has_many)]
            pub comments: HasMany<super::comment::Entity>,
        }

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod comment {
        use cache_purge_hooks::CachePurge;
        use sea_orm::entity::prelude::*;

        #[sea_orm::model]
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, CachePurge)]
        #[sea_orm(table_name = "comment")]
        #[cache_purge(url = "/comments/{id}", resolver = super::comment_post, fields(post_id))]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i32,
            pub post_id: i32,
            #[sea_orm(belongs_to, from = "post_id", to = "id")]
            pub post: HasOne<super::post::Entity>,
        }

        impl ActiveModelBehavior for ActiveModel {}
    }

    /// A resolver generic enough for both `Model` and `ModelEx`, which have the same scalar
    /// fields.
    fn comment_post<M: HasPostId>(m: &M) -> Option<String> {
        Some(format!("/posts/by-id/{}", m.post_id()))
    }
    trait HasPostId {
        fn post_id(&self) -> i32;
    }
    impl HasPostId for comment::Model {
        fn post_id(&self) -> i32 {
            self.post_id
        }
    }
    impl HasPostId for comment::ModelEx {
        fn post_id(&self) -> i32 {
            self.post_id
        }
    }

    #[test]
    fn model_and_model_ex_both_resolve() {
        let model = post::Model {
            id: 1,
            slug: "hello world".into(),
            author: None,
        };
        assert_eq!(
            model.resolve_targets().urls(),
            ["/posts/hello%20world", "/"]
        );
        let model = post::Model {
            author: Some("ann".into()),
            ..model
        };
        let want = ["/posts/hello%20world", "/", "/authors/ann"];
        assert_eq!(model.resolve_targets().urls(), want);
        assert_eq!(url_fields::<post::Model>(), Some(vec!["slug", "author"]));

        let ex: post::ModelEx = model.into_ex();
        assert_eq!(ex.resolve_targets().urls(), want);
        assert_eq!(post::ModelEx::URL_FIELDS, post::Model::URL_FIELDS);

        let c = comment::Model { id: 9, post_id: 1 };
        assert_eq!(
            c.resolve_targets().urls(),
            ["/comments/9", "/posts/by-id/1"]
        );
        assert_eq!(c.clone().into_ex().resolve_targets(), c.resolve_targets());
        assert_eq!(
            url_fields::<comment::ModelEx>(),
            Some(vec!["id", "post_id"])
        );
    }

    #[tokio::test]
    async fn loaded_from_sqlite() -> Result<(), sea_orm::DbErr> {
        use sea_orm::{ActiveModelTrait, ConnectionTrait, Database, EntityTrait, Set};

        let db = Database::connect("sqlite::memory:").await?;
        db.execute_unprepared(
            "CREATE TABLE post (id INTEGER PRIMARY KEY, slug TEXT NOT NULL, author TEXT NULL)",
        )
        .await?;
        post::ActiveModel {
            id: Set(1),
            slug: Set("from db".into()),
            author: Set(Some("é".into())),
        }
        .insert(&db)
        .await?;
        let model = post::Entity::find_by_id(1)
            .one(&db)
            .await?
            .expect("inserted");
        assert_eq!(
            model.resolve_targets().urls(),
            ["/posts/from%20db", "/", "/authors/%C3%A9"]
        );
        Ok(())
    }
}

#[test]
fn compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
