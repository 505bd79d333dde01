//! A small blog on SeaORM that uses cache-purge-hooks: the migrations ([`Migrator`]), the
//! entities ([`entity`]), the web site ([`web`], served by axum), its sample content
//! ([`seed`]), and what runs it behind a real nginx or varnishd started from the shipped
//! configs ([`front`], [`demo`]).
//!
//! Two programs use it:
//!
//! - `blog-demo` (`cargo run -p migrations-example`): no server, no setup; makes every kind
//!   of write a blog makes and prints what each one purged.
//! - `blog` (`cargo run -p migrations-example --bin blog -- [--behind nginx|varnish] [--demo]`):
//!   the web site, alone or behind a real cache, and the HIT → edit → MISS cycle.
//!
//! See `docs/example.md` in the repository.
#![warn(missing_docs)]

pub mod demo;
pub mod entity;
pub mod front;
pub mod migration;
pub mod seed;
pub mod web;

pub use migration::Migrator;

use cache_purge_hooks::registry::{self, AlreadyRegistered};
use cache_purge_hooks::template::push_tag_value;
use cache_purge_hooks::{Tag, Target};
use entity::comment;

/// Registers what a change to a comment purges: the page it is on, and the home page, which
/// shows how many comments each post has; and, for a comment on a post, the post's tag
/// (`post:{slug}`), which the post's page and every list showing the post carry.
///
/// The comment model only says `#[cache_purge(registered)]` (see [`entity::comment`]); the
/// site decides its URLs here, at start-up, before the first comment is saved. Fails if a
/// resolver is registered already (registering twice is a mistake, never ignored).
pub fn register_comment_resolver() -> Result<(), AlreadyRegistered> {
    registry::register::<comment::Model, _, _>(|comment: &comment::Model| {
        let mut targets = vec![Target::url(&comment.page), Target::url("/")];
        if let Some(tag) = post_tag_of_page(&comment.page) {
            targets.push(Ok(Target::Tag(tag)));
        }
        targets
    })
}

/// The tag of the post whose page is `path` (`/posts/{slug}`, as [`web::post_path`] writes
/// it): the `post:{slug}` of the post's `#[cache_purge(tag = "post:{slug}")]`.
pub fn post_tag_of_page(path: &str) -> Option<Tag> {
    let segment = path.strip_prefix("/posts/")?;
    if segment.is_empty() || segment.contains('/') {
        return None;
    }
    let slug = percent_decode(segment)?;
    let mut tag = String::from("post:");
    push_tag_value(&mut tag, &slug);
    Tag::parse(&tag).ok()
}

/// `%XX` escapes decoded (what [`web::post_path`]'s encoding undoes); `None` for a broken
/// escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
