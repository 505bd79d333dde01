//! The blog's entities: categories and posts.

pub mod category;
pub mod post;
