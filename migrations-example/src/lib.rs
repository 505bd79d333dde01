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
use entity::comment;

/// Registers what a change to a comment purges: the page it is on, and the home page, which
/// shows how many comments each post has.
///
/// The comment model only says `#[cache_purge(registered)]` (see [`entity::comment`]); the
/// site decides its URLs here, at start-up, before the first comment is saved. Fails if a
/// resolver is registered already (registering twice is a mistake, never ignored).
pub fn register_comment_resolver() -> Result<(), AlreadyRegistered> {
    registry::register::<comment::Model, _, _>(|comment: &comment::Model| {
        [comment.page.clone(), "/".to_owned()]
    })
}
