//! The `#[derive(CachePurge)]` macro of [cache-purge-hooks](https://docs.rs/cache-purge-hooks).
//!
//! Use it through the `cache-purge-hooks` crate, which re-exports it as
//! `cache_purge_hooks::CachePurge`; this crate is an implementation detail and its generated
//! code refers to `::cache_purge_hooks::__private`. See [`CachePurge`](derive@CachePurge) for
//! the attribute reference.
#![warn(missing_docs)]

mod attr;
mod expand;
mod suggest;
mod template;

use proc_macro::TokenStream;

/// Implements `PurgeTargets` for a struct from `#[cache_purge(...)]` attributes, declaring
/// which cached URLs must be purged when a value of the struct changes.
///
/// ```
/// use cache_purge_hooks::{CachePurge, PurgeTargets};
///
/// #[derive(CachePurge)]
/// #[cache_purge(url = "/posts/{slug}", url = "/")]
/// #[cache_purge(url = "/feed?author={author_id}")]
/// struct Post {
///     id: i64,
///     slug: String,
///     author_id: i64,
/// }
///
/// let post = Post { id: 1, slug: "hello world".into(), author_id: 7 };
/// assert_eq!(
///     post.resolve_targets().urls(),
///     ["/posts/hello%20world", "/", "/feed?author=7"],
/// );
/// assert_eq!(Post::URL_FIELDS, Some(&["slug", "author_id"][..]));
/// ```
///
/// The examples on this page are tested in the `cache-purge-hooks` crate's `tests/derive.rs`.
///
/// # Attributes
///
/// Any number of `#[cache_purge(...)]` attributes may be written on the struct, each holding
/// comma-separated items. At least one `url`, `tag`, `list_tag`, `resolver` or `registered` is
/// required. The
/// targets are produced in the order the items are written; duplicates are dropped.
///
/// ```text
/// #[cache_purge( item, item, ... )]
///
/// item := url = "TEMPLATE"        any number
///       | tag = "TEMPLATE"        any number
///       | list_tag = "TAG"        any number, no placeholders
///       | resolver = PATH         any number
///       | registered              at most once
///       | fields( IDENT, ... )    only with `resolver` or `registered`
///       | crate = "PATH"          at most once
/// ```
///
/// The derive works on structs with named fields only.
///
/// ## `url = "TEMPLATE"`
///
/// A URL with `{field}` placeholders naming fields of the struct:
///
/// ```
/// # use cache_purge_hooks::{CachePurge, PurgeTargets};
/// #[derive(CachePurge)]
/// #[cache_purge(url = "/posts/{slug}")]                       // a path
/// #[cache_purge(url = "/archive/{year}/{month}.html")]        // several placeholders
/// #[cache_purge(url = "/search?tag={tag}&page=1")]           // a query value
/// #[cache_purge(url = "https://cdn.example.com/img/{slug}")]  // an absolute URL
/// struct Post { slug: String, year: i32, month: u8, tag: String }
/// # let post = Post { slug: "a/b c".into(), year: 2024, month: 5, tag: "rust & go".into() };
/// # assert_eq!(
/// #     post.resolve_targets().urls(),
/// #     [
/// #         "/posts/a%2Fb%20c",
/// #         "/archive/2024/5.html",
/// #         "/search?tag=rust%20%26%20go&page=1",
/// #         "https://cdn.example.com/img/a%2Fb%20c",
/// #     ],
/// # );
/// # assert_eq!(Post::URL_FIELDS, Some(&["slug", "year", "month", "tag"][..]));
/// ```
///
/// - A template starts with `/` or with `http://` / `https://` (an absolute URL, kept
///   absolute so that its host can route the purge). Placeholders may appear in the path and
///   the query, not in the scheme or host.
/// - A field value is rendered with its `Display` impl and percent-encoded, so a value can
///   never change the structure of the URL: a placeholder before the first `?` is one path
///   segment (`/`, `?`, `#`, `%`, spaces and non-ASCII are encoded, and `.` / `..` cannot walk
///   up the path); a placeholder after the `?` is a query value (`&`, `=`, `+` and `;` are
///   encoded too). A `slug` of `"a/b c"` renders `/posts/a%2Fb%20c`.
/// - A field typed `Option<T>` produces the URL only when it is `Some`; with several `Option`
///   placeholders, only when all of them are `Some`. This is decided from the type as written
///   (any path ending in `Option<..>`, such as `std::option::Option<T>`): behind a type alias,
///   the field is rendered as a whole and must implement `Display` itself.
/// - The literal text of a template may not hold whitespace, `"`, `\`, control characters,
///   `#` (a fragment is never sent to the server), literal braces, or a `%` that does not
///   start an escape like `%20`: write those percent-encoded. A placeholder naming a field
///   that does not exist is a compile error listing the struct's fields.
/// - A template's fields are part of [`URL_FIELDS`](#url_fields).
///
/// ## `tag = "TEMPLATE"`
///
/// A cache tag with `{field}` placeholders, purged by every save beside the URLs (on caches
/// that purge by tag: Varnish with xkey or tag bans, nginx with a tag index, CDNs). A response
/// that shows the value carries the same tags (`CacheTags::add` of the tower integration), so
/// pages no URL template names — `/?page=7`, a search — are purged too.
///
/// ```
/// # use cache_purge_hooks::{CachePurge, PurgeTargets, Target};
/// #[derive(CachePurge)]
/// #[cache_purge(url = "/posts/{slug}", tag = "post:{id}", tag = "author:{author}")]
/// struct Post { id: i64, slug: String, author: Option<String> }
/// # let post = Post { id: 1, slug: "a".into(), author: Some("Ann Lee".into()) };
/// # let tags: Vec<String> = post.resolve_targets().into_iter()
/// #     .filter_map(|t| match t { Target::Tag(t) => Some(t.to_string()), _ => None }).collect();
/// # assert_eq!(tags, ["post:1", "author:Ann%20Lee"]);
/// ```
///
/// The literal text may hold visible ASCII other than `,`, `"`, `\` and `%`; a field value is
/// percent-encoded so that it can never split one tag into two (a space, a comma) or break a
/// header. `Option` fields work as in URL templates. A tag's fields are part of
/// [`URL_FIELDS`](#url_fields), so changing one purges the old tag too.
///
/// ## `list_tag = "TAG"`
///
/// A constant tag naming every *list* of this type (the home page, `/?page=7`, a feed):
/// purged by every save, like a `tag`, but not carried by a page that shows one value.
/// `CacheTags::add(&post)` adds the post's `tag`s only; a list page adds
/// `CacheTags::add_list::<Post>()` as well. So saving one post purges every list and that
/// post's page, and leaves every other post's page cached. The list tags are
/// `PurgeTargets::LIST_TAGS`.
///
/// ```
/// # use cache_purge_hooks::{CachePurge, PurgeTargets, Target};
/// #[derive(CachePurge)]
/// #[cache_purge(url = "/posts/{slug}", tag = "post:{id}", list_tag = "posts")]
/// struct Post { id: i64, slug: String }
/// # let tags: Vec<String> = Post { id: 1, slug: "a".into() }.resolve_targets().into_iter()
/// #     .filter_map(|t| match t { Target::Tag(t) => Some(t.to_string()), _ => None }).collect();
/// # assert_eq!(tags, ["post:1", "posts"]);
/// assert_eq!(Post::LIST_TAGS, ["posts"]);
/// ```
///
/// A list tag has no placeholders (it names all lists, not one value's), is written once, and
/// is not also a `tag`: each of those is a compile error.
///
/// ## `resolver = PATH`
///
/// A function computing URLs in code, called with `&Self`. It returns any iterable of
/// targets: `Vec<String>`, `Option<String>`, `[&str; N]`, an iterator of `Target`s... each
/// item being anything that implements `IntoTarget` (strings, `url::Url`, `Target`,
/// `PurgeUrl`, `Tag`). Returning a bare `String` does not compile: it is not a list. Invalid
/// URLs are not dropped silently: they end up in `Targets::rejected`, which the pipeline logs.
///
/// ```
/// # use cache_purge_hooks::{CachePurge, PurgeTargets};
/// #[derive(CachePurge)]
/// #[cache_purge(resolver = urls::comment_pages, fields(post_slug))]
/// struct Comment { id: i64, post_slug: String }
///
/// mod urls {
///     pub fn comment_pages(c: &super::Comment) -> Vec<String> {
///         vec![format!("/posts/{}", c.post_slug), format!("/comments/{}", c.id)]
///     }
/// }
/// # fn main() {
/// #     let comment = Comment { id: 3, post_slug: "hello".into() };
/// #     assert_eq!(comment.resolve_targets().urls(), ["/posts/hello", "/comments/3"]);
/// #     assert_eq!(Comment::URL_FIELDS, Some(&["post_slug"][..]));
/// # }
/// ```
///
/// The values a resolver formats are not encoded for it: use
/// `cache_purge_hooks::template::push_path_segment` and `push_query_value` to encode them the
/// way templates do.
///
/// ## `registered`
///
/// Calls the resolver registered at run time with `cache_purge_hooks::registry::register`,
/// for URLs that need application state (a base URL from the configuration, a lookup...).
/// When none is registered, resolving records a rejection naming the type instead of purging
/// nothing silently.
///
/// ```
/// # use cache_purge_hooks::{CachePurge, PurgeTargets};
/// # struct Config { public_url: String }
/// # let config = Config { public_url: "https://blog.example".into() };
/// #[derive(CachePurge)]
/// #[cache_purge(registered, fields(slug))]
/// struct Page { id: i64, slug: String }
///
/// // At start-up:
/// let base = config.public_url.clone();
/// cache_purge_hooks::registry::register::<Page, _, _>(move |p: &Page| {
///     [format!("{base}/{}", p.slug)]
/// })?;
/// # let page = Page { id: 1, slug: "about".into() };
/// # assert_eq!(page.resolve_targets().urls(), ["https://blog.example/about"]);
/// # assert_eq!(Page::URL_FIELDS, Some(&["slug"][..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// ## `fields(a, b, ...)`
///
/// The fields a `resolver` or `registered` resolver reads, for [`URL_FIELDS`](#url_fields).
/// Each must be a field of the struct. Without it, the URLs of a struct with a resolver are
/// assumed to depend on every field. It is an error without `resolver` or `registered`
/// (templates declare their fields themselves).
///
/// ## `crate = "PATH"`
///
/// The path of the `cache-purge-hooks` crate, when it is not reachable as
/// `::cache_purge_hooks` (renamed in `Cargo.toml`, or re-exported by another crate). The
/// generated code then refers to `PATH::__private`.
///
/// ```
/// # mod my_framework {
/// #     pub use cache_purge_hooks as cache;
/// # }
/// #[derive(my_framework::cache::CachePurge)]
/// #[cache_purge(crate = "my_framework::cache", url = "/posts/{slug}")]
/// struct Post { slug: String }
/// # fn main() {
/// #     use my_framework::cache::PurgeTargets;
/// #     let post = Post { slug: "hello".into() };
/// #     assert_eq!(post.resolve_targets().urls(), ["/posts/hello"]);
/// # }
/// ```
///
/// # `URL_FIELDS`
///
/// The derive also sets `PurgeTargets::URL_FIELDS`, the names of the fields the URLs are
/// computed from, which the ORM integrations use to skip loading the old row of an update
/// that cannot change any URL:
///
/// - `None` if there is a `resolver` or `registered` without `fields(...)` (a function may
///   read any field);
/// - otherwise `Some(&[...])`: the fields of every template and of `fields(...)`, without
///   duplicates, in the order they are first written (`Some(&[])` if the URLs are constant).
///
/// Names are the Rust field names, without any `r#` prefix.
///
/// # Generics
///
/// Generic structs are supported. The impl gets the struct's own bounds, plus `T: Display`
/// for the type of each placeholder field that mentions a type parameter (the `T` of an
/// `Option<T>` field), and `Self: 'static` with `registered` (the registry is keyed by
/// `TypeId`).
///
/// ```
/// # use cache_purge_hooks::{CachePurge, PurgeTargets};
/// #[derive(CachePurge)]
/// #[cache_purge(url = "/items/{key}")]
/// struct Item<K> { key: K }
/// # assert_eq!(Item { key: 5u8 }.resolve_targets().urls(), ["/items/5"]);
/// # assert_eq!(Item { key: "a b" }.resolve_targets().urls(), ["/items/a%20b"]);
/// ```
///
/// # SeaORM
///
/// Derive it next to `DeriveEntityModel`. With the dense `#[sea_orm::model]` format, SeaORM
/// copies the derive and its attributes onto the `ModelEx` struct it generates: both get an
/// impl, so a template may only name the scalar fields.
///
/// ```
/// # mod post {
/// # use cache_purge_hooks::CachePurge;
/// # use sea_orm::entity::prelude::*;
/// #[sea_orm::model]
/// #[derive(Clone, Debug, PartialEq, DeriveEntityModel, CachePurge)]
/// #[sea_orm(table_name = "post")]
/// #[cache_purge(url = "/posts/{slug}", url = "/")]
/// pub struct Model {
///     #[sea_orm(primary_key)]
///     pub id: i32,
///     pub slug: String,
/// }
/// # impl ActiveModelBehavior for ActiveModel {}
/// # }
/// # fn main() {
/// #     use cache_purge_hooks::PurgeTargets;
/// #     let model = post::Model { id: 1, slug: "hello world".into() };
/// #     assert_eq!(model.resolve_targets().urls(), ["/posts/hello%20world", "/"]);
/// #     let ex: post::ModelEx = model.clone().into_ex();
/// #     assert_eq!(ex.resolve_targets(), model.resolve_targets());
/// #     assert_eq!(post::ModelEx::URL_FIELDS, Some(&["slug"][..]));
/// # }
/// ```
///
/// # Compile errors
///
/// Mistakes are reported at compile time, on the attribute at fault: a template that is not a
/// valid URL (the message says where), a placeholder or a `fields(...)` entry naming a field
/// that does not exist (the message lists the fields), an unknown key, a struct that is not a
/// struct with named fields, a field that does not implement `Display` (on its template), and
/// a resolver that does not return a list of targets (on its path).
///
/// # Generated code
///
/// A single `impl PurgeTargets for Post` and no other item (so the expansions for a SeaORM
/// `Model` and its `ModelEx` can live in the same module), roughly:
///
/// ```
/// # struct Post { slug: String }
/// #[automatically_derived]
/// impl ::cache_purge_hooks::__private::PurgeTargets for Post {
///     const URL_FIELDS: Option<&'static [&'static str]> = Some(&["slug"]);
///     fn purge_targets(&self, targets: &mut ::cache_purge_hooks::__private::Targets) {
///         let mut url = String::from("/posts/");
///         ::cache_purge_hooks::__private::push_path_segment(&mut url, &self.slug);
///         targets.push_any(url);
///         targets.push_any("/");
///     }
/// }
/// # // The same as what the derive generates:
/// # #[derive(cache_purge_hooks::CachePurge)]
/// # #[cache_purge(url = "/posts/{slug}", url = "/")]
/// # struct Derived { slug: String }
/// # fn main() {
/// #     use cache_purge_hooks::PurgeTargets;
/// #     let post = Post { slug: "a b".into() };
/// #     let derived = Derived { slug: "a b".into() };
/// #     assert_eq!(post.resolve_targets(), derived.resolve_targets());
/// #     assert_eq!(post.resolve_targets().urls(), ["/posts/a%20b", "/"]);
/// #     assert_eq!(Post::URL_FIELDS, Derived::URL_FIELDS);
/// # }
/// ```
#[proc_macro_derive(CachePurge, attributes(cache_purge))]
pub fn derive_cache_purge(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
