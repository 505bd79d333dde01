//! The blog's entities: categories, posts and comments.
//!
//! Each declares what its changes purge in one of the three ways cache-purge-hooks offers:
//! URL templates ([`post`], [`category`]) and a resolver registered at start-up
//! ([`comment`], see [`crate::register_comment_resolver`]).

pub mod category;
pub mod comment;
pub mod post;
