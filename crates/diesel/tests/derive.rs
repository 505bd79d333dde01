//! `#[derive(CachePurge)]` is ORM-agnostic: on Diesel `Queryable` / `Selectable` /
//! `Insertable` / `AsChangeset` / `Identifiable` structs, with Diesel's own attributes on the
//! struct and its fields, it behaves exactly as on SeaORM models.

use cache_purge_hooks_engine::{PurgeTargets, registry};
use cache_purge_hooks_macros::CachePurge;
use diesel::prelude::*;

diesel::table! {
    articles (id) {
        id -> Integer,
        slug -> Text,
        #[sql_name = "type"]
        kind -> Text,
        section_id -> Nullable<Integer>,
        author -> Text,
    }
}

/// Every Diesel derive at once, field attributes included.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Queryable,
    Selectable,
    Identifiable,
    Insertable,
    AsChangeset,
    CachePurge,
)]
#[diesel(table_name = articles, check_for_backend(diesel::sqlite::Sqlite))]
#[diesel(treat_none_as_null = true)]
#[cache_purge(url = "/articles/{slug}", url = "/sections/{section_id}", url = "/")]
#[cache_purge(url = "/search?by={writer}&kind={kind}")]
pub struct Article {
    pub id: i32,
    pub slug: String,
    pub kind: String,
    pub section_id: Option<i32>,
    #[diesel(column_name = author)]
    pub writer: String,
}

fn article() -> Article {
    Article {
        id: 1,
        slug: "hello world".into(),
        kind: "news&views".into(),
        section_id: Some(3),
        writer: "Zoë".into(),
    }
}

#[test]
fn templates_render_on_a_diesel_model() {
    assert_eq!(
        article().resolve_targets().urls(),
        [
            "/articles/hello%20world",
            "/sections/3",
            "/",
            "/search?by=Zo%C3%AB&kind=news%26views",
        ]
    );
    // An Option field gives its URL only when it is Some.
    let no_section = Article {
        section_id: None,
        ..article()
    };
    assert_eq!(
        no_section.resolve_targets().urls(),
        [
            "/articles/hello%20world",
            "/",
            "/search?by=Zo%C3%AB&kind=news%26views"
        ]
    );
}

#[test]
fn url_fields_are_rust_field_names() {
    // `writer` is the Rust name of column `author`: URL_FIELDS names fields, and the Diesel
    // integration reads the old rows of any update when a name is not a selected column.
    assert_eq!(
        Article::URL_FIELDS,
        Some(&["slug", "section_id", "writer", "kind"][..])
    );
}

/// An `Insertable` with borrowed fields and a lifetime.
#[derive(Insertable, CachePurge)]
#[diesel(table_name = articles)]
#[cache_purge(url = "/articles/{slug}")]
pub struct NewArticle<'a> {
    pub slug: &'a str,
    pub kind: &'a str,
    pub author: &'a str,
}

#[test]
fn borrowed_insertable_structs_work() {
    let new = NewArticle {
        slug: "a/b",
        kind: "k",
        author: "me",
    };
    assert_eq!(new.resolve_targets().urls(), ["/articles/a%2Fb"]);
    assert_eq!(NewArticle::URL_FIELDS, Some(&["slug"][..]));
}

/// A changeset struct (all `Option`s) can declare URLs too.
#[derive(AsChangeset, CachePurge)]
#[diesel(table_name = articles)]
#[cache_purge(url = "/articles/{slug}")]
pub struct ArticleForm {
    pub slug: Option<String>,
    pub kind: Option<String>,
}

#[test]
fn option_changesets_work() {
    let form = ArticleForm {
        slug: None,
        kind: Some("x".into()),
    };
    assert!(form.resolve_targets().is_empty());
}

/// A resolver function, with the fields it reads.
#[derive(Queryable, Selectable, CachePurge)]
#[diesel(table_name = articles)]
#[cache_purge(resolver = urls::article_pages, fields(slug, id))]
pub struct WithResolver {
    pub id: i32,
    pub slug: String,
}

mod urls {
    pub fn article_pages(a: &super::WithResolver) -> Vec<String> {
        vec![format!("/articles/{}", a.slug), format!("/a/{}", a.id)]
    }
}

#[test]
fn resolvers_work() {
    let a = WithResolver {
        id: 9,
        slug: "s".into(),
    };
    assert_eq!(a.resolve_targets().urls(), ["/articles/s", "/a/9"]);
    assert_eq!(WithResolver::URL_FIELDS, Some(&["slug", "id"][..]));
}

/// A resolver registered at run time: `URL_FIELDS` is `None` without `fields(...)`.
#[derive(Queryable, Selectable, CachePurge)]
#[diesel(table_name = articles)]
#[cache_purge(registered)]
pub struct Registered {
    pub id: i32,
    pub slug: String,
}

#[test]
fn registered_resolvers_work() {
    assert_eq!(Registered::URL_FIELDS, None);
    registry::register::<Registered, _, _>(|r: &Registered| {
        [format!("https://example.com/{}/{}", r.id, r.slug)]
    })
    .unwrap();
    let r = Registered {
        id: 1,
        slug: "x".into(),
    };
    assert_eq!(r.resolve_targets().urls(), ["https://example.com/1/x"]);
    registry::unregister::<Registered>();
}

/// Raw identifiers (a column called `type`) are named without `r#`.
#[derive(Queryable, Selectable, CachePurge)]
#[diesel(table_name = articles)]
#[cache_purge(url = "/kinds/{type}")]
pub struct RawIdent {
    #[diesel(column_name = kind)]
    pub r#type: String,
}

#[test]
fn raw_identifiers_work() {
    let r = RawIdent {
        r#type: "news".into(),
    };
    assert_eq!(r.resolve_targets().urls(), ["/kinds/news"]);
    assert_eq!(RawIdent::URL_FIELDS, Some(&["type"][..]));
}

#[test]
fn the_derived_model_loads_and_writes_through_diesel() {
    let conn = &mut SqliteConnection::establish(":memory:").unwrap();
    diesel::sql_query(
        "CREATE TABLE articles (id INTEGER PRIMARY KEY, slug TEXT NOT NULL, type TEXT NOT NULL, \
         section_id INTEGER, author TEXT NOT NULL)",
    )
    .execute(conn)
    .unwrap();
    diesel::insert_into(articles::table)
        .values(&article())
        .execute(conn)
        .unwrap();
    let loaded: Article = articles::table
        .select(Article::as_select())
        .first(conn)
        .unwrap();
    assert_eq!(loaded, article());
    assert_eq!(loaded.resolve_targets(), article().resolve_targets());
}
