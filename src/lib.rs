//! # cache-purge-hooks
//!
//! Keeps front-end HTTP caches (Varnish, nginx) fresh by purging the right URLs when ORM
//! entities are saved or deleted: declare an entity's URLs once, and every insert, update,
//! delete and bulk write purges them, after the transaction commits, without slowing the save.
//!
//! ```text
//! entity change ──► hook ──► resolve targets ──► deliver ──► dispatch ──► backend(s) ──► cache
//!  (SeaORM save,     (sea_orm::   (#[derive(CachePurge)]   (Purger,      (one worker per    (log, memory,
//!   delete, bulk)     after_save)   or a resolver fn)       AfterCommit)   backend: dedupe,    dummy; varnish,
//!                                                                          batch, parallel)    nginx)
//! ```
//!
//! ## Quick start (SeaORM)
//!
//! ```
//! use cache_purge_hooks::CachePurge;
//! use sea_orm::entity::prelude::*;
//!
//! #[derive(Clone, Debug, PartialEq, DeriveEntityModel, CachePurge)]
//! #[sea_orm(table_name = "posts")]
//! #[cache_purge(url = "/posts/{slug}", url = "/")]
//! pub struct Model {
//!     #[sea_orm(primary_key)]
//!     pub id: i32,
//!     pub slug: String,
//! }
//! # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
//!
//! cache_purge_hooks::sea_orm::active_model_behavior!();
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // Reads cache-purge.toml (if present) and CACHE_PURGE__* variables; fails here, at
//!     // start-up, on any invalid setting.
//!     let purger = cache_purge_hooks::init()?;
//!     // ... saves through SeaORM now purge ...
//! #   let db = sea_orm::Database::connect("sqlite::memory:").await?;
//! #   let schema = sea_orm::Schema::new(db.get_database_backend());
//! #   db.execute(&schema.create_table_from_entity(Entity)).await?;
//! #   let post = ActiveModel { slug: sea_orm::Set("hello".into()), ..Default::default() };
//! #   post.insert(&db).await?;
//! #   purger.flush().await;
//! #   // With no settings, the `log` backend: one event per purged target.
//! #   assert_eq!(purger.backend_names(), ["log"]);
//! #   assert_eq!(purger.stats()[0].purged, 2);
//!     purger.shutdown(std::time::Duration::from_secs(10)).await?;
//!     Ok(())
//! }
//! ```
//!
//! The crates: [`cache_purge_hooks_engine`] (targets, settings, the [`Purger`], backends),
//! `cache-purge-hooks-macros` ([`CachePurge`]), and [`sea_orm`] (the SeaORM hooks).
//!
//! # Cargo features
#![doc = document_features::document_features!()]
#![warn(missing_docs)]
// On docs.rs (nightly), items behind a cargo feature say which one.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use cache_purge_hooks_engine::*;
#[doc = include_str!("derive.md")]
pub use cache_purge_hooks_macros::CachePurge;

/// The SeaORM integration: hooks, after-commit transactions and bulk helpers.
#[cfg(feature = "sea-orm")]
pub mod sea_orm {
    pub use cache_purge_hooks_sea_orm::*;
}

/// The Diesel integration: writes that purge every affected row, after-commit transactions,
/// the outbox shared with the SeaORM integration. Features `diesel-postgres`, `diesel-sqlite`,
/// `diesel-mysql` and `diesel-async` select what it supports.
#[cfg(feature = "diesel")]
pub mod diesel {
    pub use cache_purge_hooks_diesel::*;
}

/// The tower and axum integration: [`CacheTagsLayer`](tower::CacheTagsLayer) tags responses
/// with the tags their entities purge, and [`ReadYourWritesLayer`](tower::ReadYourWritesLayer)
/// holds an edit's response until its purges were attempted (feature `tower`).
#[cfg(feature = "tower")]
pub mod tower {
    pub use cache_purge_hooks_tower::*;
}

/// Start-up failed: the settings are invalid, or the purger could not be built from them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A setting is invalid.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The purger could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Loads the settings ([`Settings::load`]: `cache-purge.toml` or `$CACHE_PURGE_CONFIG`, then
/// `CACHE_PURGE__*` variables), builds the [`Purger`] and installs it for the ORM hooks.
///
/// With neither file, the defaults apply (one `log` backend, which purges nothing) and a WARN
/// says where it looked; [`init_from`] with [`SettingsLoader::require_file`](settings::SettingsLoader::require_file)
/// makes that an error instead.
///
/// Call it once at start-up, inside the tokio runtime. Every invalid setting fails here,
/// never at the first save.
pub fn init() -> Result<Purger, InitError> {
    init_with(&Settings::load()?)
}

/// [`init`] with settings from this loader: for instance
/// `init_from(SettingsLoader::new().require_file())`, which refuses to start without a
/// settings file instead of falling back to the `log` backend.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use cache_purge_hooks::settings::{SettingsErrorKind, SettingsLoader};
///
/// // No cache-purge.toml here: an error, not a pipeline that purges nothing.
/// let err = cache_purge_hooks::init_from(SettingsLoader::new().require_file()).unwrap_err();
/// assert!(matches!(
///     err,
///     cache_purge_hooks::InitError::Settings(e) if e.kind == SettingsErrorKind::MissingFile
/// ));
/// # }
/// ```
pub fn init_from(loader: settings::SettingsLoader) -> Result<Purger, InitError> {
    init_with(&loader.load()?)
}

/// Builds the [`Purger`] of these settings and installs it for the ORM hooks.
pub fn init_with(settings: &Settings) -> Result<Purger, InitError> {
    let purger = Purger::from_settings(settings)?;
    purger.install();
    Ok(purger)
}
