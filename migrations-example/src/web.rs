//! The blog's web site, served by axum.
//!
//! | route | what | cached |
//! |---|---|---|
//! | `GET /?page={n}` | the published posts, newest first, [`PAGE_SIZE`] a page, with their category and comment count | yes |
//! | `GET /posts/{slug}` | a post, its comments and a comment form | yes |
//! | `GET /categories/{id}?page={n}` | a category's posts, [`PAGE_SIZE`] a page | yes |
//! | `GET /feed.xml?category={id}` | a category's RSS feed | yes |
//! | `POST /posts/{slug}/comments` | adds a comment (form: `author`, `body`) | no |
//! | `GET /admin/posts/{slug}` | a form to edit a post | no |
//! | `POST /admin/posts/{slug}` | saves a post (form: `title` and/or `body`) | no |
//!
//! Cached pages say `Cache-Control: public, max-age=300` ([`PAGE_CACHE_CONTROL`]); everything
//! else `no-store`. Every write is a SeaORM save, so the entities' hooks purge the pages it
//! changes: the site itself never names a URL to purge.
//!
//! Every cached page is also tagged with what it shows ([`CacheTags`], written by
//! cache-purge-hooks' `CacheTagsLayer` as `xkey` headers, see [`routes`]):
//! a post page with `post:{slug}` and `category:{id}`, a list with the posts' list tag
//! `posts` and the tags of every post and category on it. The tags come from the entities' own
//! `#[cache_purge(tag = ...)]` templates, the ones their saves purge, so a tag-capable cache
//! (Varnish with xkey) purges `/?page=2` when a post on it changes, which no URL list names.
//!
//! The admin routes have no authentication: the blog only ever listens on a loopback address
//! (see [`BlogServer::start`]).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cache_purge_hooks::template::push_path_segment;
use cache_purge_hooks::tower::{CacheTags, CacheTagsLayer, TagHeader};
use cache_purge_hooks::{PurgeTargets, TagIndex};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde::Deserialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::entity::{category, comment, post};

/// The `Cache-Control` of every page a cache may keep. Five minutes, so that a person trying
/// the blog sees a page stay cached until an edit purges it; with purges on every save a
/// site can keep pages much longer (say `s-maxage=86400` for the cache alone).
pub const PAGE_CACHE_CONTROL: &str = "public, max-age=300";

/// How long a cache keeps a page: the `max-age` of [`PAGE_CACHE_CONTROL`] (what the tag index
/// records a page for when a response says no lifetime of its own).
const PAGE_LIFETIME: Duration = Duration::from_secs(300);

/// The `Cache-Control` of forms, write responses and errors: never stored anywhere.
const PRIVATE_CACHE_CONTROL: &str = "no-store";

/// How long a write's answer waits for its purges to be attempted (the library's
/// read-your-writes layer; see [`router`]).
const PURGE_WAIT: Duration = Duration::from_secs(5);

/// Longest accepted title, author and body, in characters.
const MAX_TITLE: usize = 200;
const MAX_AUTHOR: usize = 100;
const MAX_BODY: usize = 20_000;

/// Posts on one page of a list (`?page=2` for the next ones).
pub const PAGE_SIZE: u64 = 10;

/// The site over this database, with read-your-writes: an edit's `303` goes out once the
/// edit's purges were attempted, so the page the browser then asks the cache for is fresh
/// (cache-purge-hooks' `ReadYourWritesLayer`; nothing else in the site deals with it).
///
/// `tag_index` is the purger's tag→URL index ([`Purger::tag_index`](cache_purge_hooks::Purger::tag_index)),
/// when it purges tags through one (nginx): every tagged page is recorded in it as it is
/// served, so that a purge by tag finds its URL (see [`routes`]).
pub fn router(db: DatabaseConnection, tag_index: Option<Arc<dyn TagIndex>>) -> Router {
    routes(db, tag_index)
        .layer(cache_purge_hooks::tower::ReadYourWritesLayer::new().timeout(PURGE_WAIT))
}

/// The site's routes alone, without read-your-writes: an edit is answered as soon as it is
/// saved, and the page it redirects to may still be the cached old one for a moment (what the
/// tests compare [`router`] with).
///
/// Its pages are tagged in `xkey` headers (cache-purge-hooks' `CacheTagsLayer`): what the
/// xkey vmod reads, and what the shipped VCL keeps on each object for tag bans. nginx keeps
/// no tags: with a `tag_index`, the layer also records each tagged page's URL under its tags,
/// for as long as its `Cache-Control` lets a cache keep it, and a page it cannot record is
/// sent with `X-Accel-Expires: 0`, so nginx never keeps a page its tags could not purge.
pub fn routes(db: DatabaseConnection, tag_index: Option<Arc<dyn TagIndex>>) -> Router {
    let mut tags = CacheTagsLayer::new(TagHeader::xkey());
    if let Some(index) = tag_index {
        tags = tags.record_into(index, PAGE_LIFETIME);
    }
    Router::new()
        .route("/", get(home))
        .route("/posts/{slug}", get(show_post))
        .route("/posts/{slug}/comments", axum::routing::post(add_comment))
        .route("/categories/{id}", get(show_category))
        .route("/feed.xml", get(category_feed))
        .route("/admin/posts/{slug}", get(edit_form).post(save_post))
        .fallback(|| async { not_found("no such page") })
        .layer(tags)
        .with_state(db)
}

/// The blog served on a loopback listener, until [`BlogServer::stop`].
#[derive(Debug)]
pub struct BlogServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl BlogServer {
    /// Serves [`router`] on `listener` in a new task.
    ///
    /// Refuses a listener that is not on a loopback address: the admin routes have no
    /// authentication.
    pub fn start(
        listener: tokio::net::TcpListener,
        db: DatabaseConnection,
        tag_index: Option<Arc<dyn TagIndex>>,
    ) -> std::io::Result<BlogServer> {
        Self::serve(listener, router(db, tag_index))
    }

    /// Serves `app` (the blog's [`router`] or [`routes`]) on `listener` in a new task; refuses
    /// a listener that is not on a loopback address, as [`BlogServer::start`] does.
    pub fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<BlogServer> {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "the blog only listens on a loopback address (its admin has no login), \
                     not on {addr}"
                ),
            ));
        }
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(BlogServer {
            addr,
            shutdown: Some(shutdown),
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<address>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections, lets the requests in flight finish, and waits for that.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(format!(
                "the blog's server task failed: {e}"
            ))),
        }
    }
}

impl Drop for BlogServer {
    fn drop(&mut self) {
        // Stopped without `stop()`: end the task rather than leave it serving.
        if self.shutdown.is_some() {
            self.task.abort();
        }
    }
}

/// The path of a post's page, encoded the way the `#[cache_purge(url = "/posts/{slug}")]`
/// template encodes it, so links and purges name the same URL.
pub fn post_path(slug: &str) -> String {
    let mut path = String::from("/posts/");
    push_path_segment(&mut path, &slug);
    path
}

/// The path of a category's page.
pub fn category_path(id: i32) -> String {
    format!("/categories/{id}")
}

// ---------------------------------------------------------------------------------------
// Pages

/// The query of a list: `?page=N`, from 1 (the default).
#[derive(Debug, Deserialize)]
struct ListQuery {
    page: Option<u64>,
}

/// A list's `?page=` that is not a page number: answered `400`.
#[derive(Debug)]
struct BadPage;

impl IntoResponse for BadPage {
    fn into_response(self) -> Response {
        bad_request("`page` is a page number, from 1: ?page=2")
    }
}

/// The page number of a list's query.
fn page_number(query: Result<Query<ListQuery>, QueryRejection>) -> Result<u64, BadPage> {
    match query {
        Ok(Query(ListQuery { page: None })) => Ok(1),
        Ok(Query(ListQuery { page: Some(n) })) if n >= 1 => Ok(n),
        _ => Err(BadPage),
    }
}

/// A list's links to its previous and next pages.
fn pager(main: &mut String, base: &str, page: u64, has_next: bool) {
    let sep = if base.contains('?') { '&' } else { '?' };
    if page > 1 || has_next {
        main.push_str("<nav class=\"pages\">");
        if page > 1 {
            let _ = write!(
                main,
                "<a rel=\"prev\" href=\"{base}{sep}page={}\">newer</a> ",
                page - 1
            );
        }
        if has_next {
            let _ = write!(
                main,
                "<a rel=\"next\" href=\"{base}{sep}page={}\">older</a>",
                page + 1
            );
        }
        main.push_str("</nav>\n");
    }
}

async fn home(
    State(db): State<DatabaseConnection>,
    query: Result<Query<ListQuery>, QueryRejection>,
    tags: CacheTags,
) -> Result<Response, WebError> {
    let page = match page_number(query) {
        Ok(page) => page,
        Err(bad) => return Ok(bad.into_response()),
    };
    // One more than a page, to know whether there is a next one.
    let mut posts = post::Entity::find()
        .filter(post::Column::Published.eq(true))
        .order_by_desc(post::Column::Id)
        .find_also_related(category::Entity)
        .offset((page - 1).saturating_mul(PAGE_SIZE))
        .limit(PAGE_SIZE + 1)
        .all(&db)
        .await?;
    let has_next = posts.len() as u64 > PAGE_SIZE;
    posts.truncate(PAGE_SIZE as usize);
    if posts.is_empty() && page > 1 {
        return Ok(not_found("no such page of posts"));
    }
    // Every list carries the posts' list tag (`list_tag = "posts"`), so that any post's
    // save, a new one's too, purges it; and the tags of each post it shows.
    tags.add_list::<post::Model>();
    let counts: Vec<(String, i64)> = comment::Entity::find()
        .select_only()
        .column(comment::Column::Page)
        .column_as(comment::Column::Id.count(), "comments")
        .group_by(comment::Column::Page)
        .into_tuple()
        .all(&db)
        .await?;
    let mut main = String::from("<h1>Posts</h1>\n<ul class=\"posts\">\n");
    for (post, category) in &posts {
        let path = post_path(&post.slug);
        let comments = counts
            .iter()
            .find(|(page, _)| *page == path)
            .map_or(0, |(_, n)| *n);
        let _ = write!(
            main,
            "<li><a href=\"{}\">{}</a>",
            escape(&path),
            escape(&post.title)
        );
        if let Some(category) = category {
            let _ = write!(
                main,
                " in <a href=\"{}\">{}</a>",
                category_path(category.id),
                escape(&category.name)
            );
        }
        let _ = writeln!(main, " · {comments} comment(s)</li>");
        tags.add(post);
        if let Some(category) = category {
            tags.add(category);
        }
    }
    main.push_str("</ul>\n");
    pager(&mut main, "/", page, has_next);
    Ok(self::page("Posts", &main))
}

async fn show_post(
    State(db): State<DatabaseConnection>,
    Path(slug): Path<String>,
    tags: CacheTags,
) -> Result<Response, WebError> {
    let Some((post, category)) = find_published_post(&db, &slug).await? else {
        return Ok(not_found("no such post"));
    };
    let path = post_path(&post.slug);
    // The post's own tags: `post:{slug}`, not its list tag `posts` (which every post's save
    // purges, and which would take every post page with it).
    tags.add(&post);
    if let Some(category) = &category {
        tags.add(category);
    }
    let comments = comment::Entity::find()
        .filter(comment::Column::Page.eq(path.as_str()))
        .order_by_asc(comment::Column::Id)
        .all(&db)
        .await?;
    let mut main = format!("<h1>{}</h1>\n", escape(&post.title));
    if let Some(category) = &category {
        let _ = writeln!(
            main,
            "<p class=\"category\">in <a href=\"{}\">{}</a></p>",
            category_path(category.id),
            escape(&category.name)
        );
    }
    let _ = writeln!(main, "<article>{}</article>", escape(&post.body));
    let _ = writeln!(main, "<h2>Comments</h2>\n<ul class=\"comments\">");
    for comment in &comments {
        let _ = writeln!(
            main,
            "<li><b>{}</b>: {}</li>",
            escape(&comment.author),
            escape(&comment.body)
        );
    }
    let _ = write!(
        main,
        "</ul>\n<form method=\"post\" action=\"{path}/comments\">\n\
         <input name=\"author\" placeholder=\"Your name\" required>\n\
         <textarea name=\"body\" placeholder=\"Your comment\" required></textarea>\n\
         <button>Comment</button>\n</form>\n\
         <p><a href=\"/admin{path}\">Edit this post</a></p>\n",
        path = escape(&path)
    );
    Ok(page(&post.title, &main))
}

async fn show_category(
    State(db): State<DatabaseConnection>,
    Path(id): Path<i32>,
    query: Result<Query<ListQuery>, QueryRejection>,
    tags: CacheTags,
) -> Result<Response, WebError> {
    let page = match page_number(query) {
        Ok(page) => page,
        Err(bad) => return Ok(bad.into_response()),
    };
    let Some(category) = category::Entity::find_by_id(id).one(&db).await? else {
        return Ok(not_found("no such category"));
    };
    let mut posts = published_posts_page(&db, category.id, page).await?;
    let has_next = posts.len() as u64 > PAGE_SIZE;
    posts.truncate(PAGE_SIZE as usize);
    if posts.is_empty() && page > 1 {
        return Ok(not_found("no such page of posts"));
    }
    // Every list carries the posts' list tag (`list_tag = "posts"`), so that any post's
    // save, a new one's too, purges it; and the tags of each post it shows.
    tags.add_list::<post::Model>();
    tags.add(&category);
    let mut main = format!(
        "<h1>{}</h1>\n<p><a href=\"/feed.xml?category={}\">RSS feed</a></p>\n<ul class=\"posts\">\n",
        escape(&category.name),
        category.id
    );
    for post in &posts {
        let _ = writeln!(
            main,
            "<li><a href=\"{}\">{}</a></li>",
            escape(&post_path(&post.slug)),
            escape(&post.title)
        );
        tags.add(post);
    }
    main.push_str("</ul>\n");
    pager(&mut main, &category_path(category.id), page, has_next);
    Ok(self::page(&category.name, &main))
}

/// The query of `/feed.xml`.
#[derive(Debug, Deserialize)]
struct FeedQuery {
    category: i32,
}

async fn category_feed(
    State(db): State<DatabaseConnection>,
    query: Result<Query<FeedQuery>, QueryRejection>,
    tags: CacheTags,
) -> Result<Response, WebError> {
    let Ok(Query(FeedQuery { category: id })) = query else {
        return Ok(bad_request(
            "a feed is per category: /feed.xml?category=<id>",
        ));
    };
    let Some(category) = category::Entity::find_by_id(id).one(&db).await? else {
        return Ok(not_found("no such category"));
    };
    let posts = published_posts_of(&db, category.id).await?;
    // Every list carries the posts' list tag (`list_tag = "posts"`), so that any post's
    // save, a new one's too, purges it; and the tags of each post it shows.
    tags.add_list::<post::Model>();
    tags.add(&category);
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<rss version=\"2.0\"><channel>\n\
         <title>{}</title><link>{}</link><description>Posts in {}</description>\n",
        escape(&category.name),
        category_path(category.id),
        escape(&category.name)
    );
    for post in &posts {
        let _ = writeln!(
            xml,
            "<item><title>{}</title><link>{}</link></item>",
            escape(&post.title),
            escape(&post_path(&post.slug))
        );
        tags.add(post);
    }
    xml.push_str("</channel></rss>\n");
    Ok(respond(
        StatusCode::OK,
        "application/rss+xml; charset=utf-8",
        PAGE_CACHE_CONTROL,
        xml,
    ))
}

// ---------------------------------------------------------------------------------------
// Writes

/// The form of `POST /posts/{slug}/comments`.
#[derive(Debug, Deserialize)]
struct NewComment {
    author: String,
    body: String,
}

async fn add_comment(
    State(db): State<DatabaseConnection>,
    Path(slug): Path<String>,
    Form(form): Form<NewComment>,
) -> Result<Response, WebError> {
    let Some((post, _)) = find_published_post(&db, &slug).await? else {
        return Ok(not_found("no such post"));
    };
    let author = form.author.trim();
    let body = form.body.trim();
    if let Err(problem) =
        check_text("author", author, MAX_AUTHOR).and_then(|()| check_text("body", body, MAX_BODY))
    {
        return Ok(bad_request(&problem));
    }
    let page = post_path(&post.slug);
    // The comment's registered resolver decides what this insert purges.
    let comment = comment::ActiveModel {
        page: Set(page.clone()),
        author: Set(author.to_owned()),
        body: Set(body.to_owned()),
        ..Default::default()
    }
    .insert(&db)
    .await?;
    Ok(saved(&format!("comment {}", comment.id), &comment, &page).await)
}

async fn edit_form(
    State(db): State<DatabaseConnection>,
    Path(slug): Path<String>,
) -> Result<Response, WebError> {
    let Some(post) = find_post(&db, &slug).await? else {
        return Ok(not_found("no such post"));
    };
    let path = post_path(&post.slug);
    let main = format!(
        "<h1>Edit “{title}”</h1>\n<form method=\"post\" action=\"/admin{path}\">\n\
         <p><input name=\"title\" value=\"{title}\" required></p>\n\
         <p><textarea name=\"body\" rows=\"10\" cols=\"60\">{body}</textarea></p>\n\
         <p><button>Save</button> (the save purges the pages that show this post)</p>\n</form>\n",
        title = escape(&post.title),
        body = escape(&post.body),
        path = escape(&path),
    );
    let mut response = page(&format!("Edit {}", post.title), &main);
    set_cache_control(&mut response, PRIVATE_CACHE_CONTROL);
    Ok(response)
}

/// The form of `POST /admin/posts/{slug}`: what to change.
#[derive(Debug, Deserialize)]
struct PostEdit {
    title: Option<String>,
    body: Option<String>,
}

async fn save_post(
    State(db): State<DatabaseConnection>,
    Path(slug): Path<String>,
    Form(edit): Form<PostEdit>,
) -> Result<Response, WebError> {
    let Some(post) = find_post(&db, &slug).await? else {
        return Ok(not_found("no such post"));
    };
    let title = edit.title.as_deref().map(str::trim);
    let body = edit.body.as_deref().map(str::trim);
    if title.is_none() && body.is_none() {
        return Ok(bad_request(
            "nothing to change: send `title` and/or `body` (form-encoded)",
        ));
    }
    let checks = title
        .map_or(Ok(()), |t| check_text("title", t, MAX_TITLE))
        .and_then(|()| body.map_or(Ok(()), |b| check_text("body", b, MAX_BODY)));
    if let Err(problem) = checks {
        return Ok(bad_request(&problem));
    }
    let page = post_path(&post.slug);
    let mut changes: post::ActiveModel = post.into();
    if let Some(title) = title {
        changes.title = Set(title.to_owned());
    }
    if let Some(body) = body {
        changes.body = Set(body.to_owned());
    }
    // The save runs the hooks: they purge the post's URLs after it is written. No URL field
    // changed, so no extra query for old URLs.
    let post = changes.update(&db).await?;
    Ok(saved(&format!("post {}", post.slug), &post, &page).await)
}

/// The answer to a write: `303 See Other` to the page, saying what the save asked to purge.
/// (The read-your-writes layer holds it until those purges were attempted.)
async fn saved(what: &str, model: &impl PurgeTargets, page: &str) -> Response {
    let urls = model.resolve_targets();
    let body = format!("saved {what}; purged {}\n", urls.urls().join(", "));
    let mut response = respond(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        PRIVATE_CACHE_CONTROL,
        body,
    );
    if let Ok(location) = HeaderValue::from_str(page) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

// ---------------------------------------------------------------------------------------
// Queries

async fn find_post(db: &DatabaseConnection, slug: &str) -> Result<Option<post::Model>, DbErr> {
    post::Entity::find()
        .filter(post::Column::Slug.eq(slug))
        .one(db)
        .await
}

async fn find_published_post(
    db: &DatabaseConnection,
    slug: &str,
) -> Result<Option<(post::Model, Option<category::Model>)>, DbErr> {
    post::Entity::find()
        .filter(post::Column::Slug.eq(slug))
        .filter(post::Column::Published.eq(true))
        .find_also_related(category::Entity)
        .one(db)
        .await
}

/// One page of a category's published posts, and the first post of the next page if any.
async fn published_posts_page(
    db: &DatabaseConnection,
    category_id: i32,
    page: u64,
) -> Result<Vec<post::Model>, DbErr> {
    post::Entity::find()
        .filter(post::Column::CategoryId.eq(category_id))
        .filter(post::Column::Published.eq(true))
        .order_by_desc(post::Column::Id)
        .offset((page - 1).saturating_mul(PAGE_SIZE))
        .limit(PAGE_SIZE + 1)
        .all(db)
        .await
}

async fn published_posts_of(
    db: &DatabaseConnection,
    category_id: i32,
) -> Result<Vec<post::Model>, DbErr> {
    post::Entity::find()
        .filter(post::Column::CategoryId.eq(category_id))
        .filter(post::Column::Published.eq(true))
        .order_by_desc(post::Column::Id)
        .all(db)
        .await
}

// ---------------------------------------------------------------------------------------
// Responses

/// A database error, answered `500` (details go to the log, not to the visitor).
#[derive(Debug)]
struct WebError(DbErr);

impl From<DbErr> for WebError {
    fn from(e: DbErr) -> Self {
        WebError(e)
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "database error");
        respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            PRIVATE_CACHE_CONTROL,
            "database error\n".to_owned(),
        )
    }
}

fn page(title: &str, main: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
         <title>{} · cache-purge-hooks blog</title></head>\n<body>\n\
         <header><a href=\"/\">cache-purge-hooks blog</a></header>\n<main>\n{main}</main>\n\
         </body>\n</html>\n",
        escape(title)
    );
    respond(
        StatusCode::OK,
        "text/html; charset=utf-8",
        PAGE_CACHE_CONTROL,
        html,
    )
}

fn not_found(what: &str) -> Response {
    respond(
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        PRIVATE_CACHE_CONTROL,
        format!("{what}\n"),
    )
}

fn bad_request(problem: &str) -> Response {
    respond(
        StatusCode::BAD_REQUEST,
        "text/plain; charset=utf-8",
        PRIVATE_CACHE_CONTROL,
        format!("{problem}\n"),
    )
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    cache_control: &'static str,
    body: String,
) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(cache_control),
            ),
        ],
        body,
    )
        .into_response()
}

fn set_cache_control(response: &mut Response, value: &'static str) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
}

fn check_text(field: &str, value: &str, max_chars: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("`{field}` is empty"));
    }
    if value.chars().count() > max_chars {
        return Err(format!("`{field}` is longer than {max_chars} characters"));
    }
    Ok(())
}

/// Text for HTML and XML: `&`, `<`, `>`, `"` and `'` escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn links_and_purges_encode_slugs_alike() {
        let post = post::Model {
            id: 1,
            slug: "a b/c".into(),
            title: "t".into(),
            body: "b".into(),
            published: true,
            category_id: 2,
        };
        let targets = post.resolve_targets();
        assert!(
            targets.urls().contains(&post_path(&post.slug).as_str()),
            "{:?}",
            targets.urls()
        );
        assert_eq!(post_path("a b/c"), "/posts/a%20b%2Fc");
        assert!(targets.urls().contains(&category_path(2).as_str()));
    }
}
