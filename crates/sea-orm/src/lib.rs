//! SeaORM integration of [cache-purge-hooks](https://docs.rs/cache-purge-hooks).
//!
//! Three pieces:
//!
//! - **Hooks.** [`before_save`], [`after_save`], [`before_delete`] and [`after_delete`] are
//!   called from an entity's `impl ActiveModelBehavior`: write that impl with
//!   [`active_model_behavior!`] when the entity has no behaviour of its own, or call the
//!   helpers from yours.
//! - **Transactions.** [`transaction`] runs a closure in a database transaction like
//!   `TransactionTrait::transaction`, and sends its purges only after COMMIT (none on rollback).
//! - **Bulk writes.** SeaORM runs no hook for `insert_many`, `update_many` or `delete_many`.
//!   [`bulk`] has versions that purge every affected row (using `RETURNING` where the database
//!   has it).
//!
//! ```
//! # mod cache_purge_hooks { pub use cache_purge_hooks_engine::*; pub use cache_purge_hooks_macros::CachePurge; pub use cache_purge_hooks_sea_orm as sea_orm; }
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
//!
//! #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
//! pub enum Relation {}
//!
//! cache_purge_hooks::sea_orm::active_model_behavior!();
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! #     use cache_purge_hooks::{Purger, backend::MemoryBackend};
//! #     use sea_orm::{Database, Schema, Set};
//! #     let memory = MemoryBackend::new();
//! #     Purger::builder().backend("memory", memory.clone()).build()?.install();
//! #     let db = Database::connect("sqlite::memory:").await?;
//! #     db.execute(&Schema::new(db.get_database_backend()).create_table_from_entity(Entity))
//! #         .await?;
//! #     // insert: the new row's targets.
//! #     let post = ActiveModel { slug: Set("hello".into()), ..Default::default() };
//! #     let post = post.insert(&db).await?;
//! #     Purger::current().unwrap().flush().await;
//! #     assert_eq!(memory.url_set(), ["/", "/posts/hello"]);
//! #     memory.clear();
//! #     // update writing a URL field: old and new targets.
//! #     let mut post: ActiveModel = post.into();
//! #     post.slug = Set("hello-rust".into());
//! #     let post = post.update(&db).await?;
//! #     Purger::current().unwrap().flush().await;
//! #     assert_eq!(memory.url_set(), ["/", "/posts/hello", "/posts/hello-rust"]);
//! #     memory.clear();
//! #     // delete of a loaded model: its targets.
//! #     post.delete(&db).await?;
//! #     Purger::current().unwrap().flush().await;
//! #     assert_eq!(memory.url_set(), ["/", "/posts/hello-rust"]);
//! #     Ok(())
//! # }
//! ```
//!
//! What each write purges:
//!
//! | write | purges |
//! |---|---|
//! | `insert` | the new row's targets |
//! | `update` / `save` not touching a URL field | the row's targets (no extra query) |
//! | `update` / `save` writing a URL field | old and new targets (one `SELECT` by primary key first) |
//! | `delete` of a loaded model | its targets |
//! | `delete` of a primary-key-only `ActiveModel` | the stored row's targets (one `SELECT` first) |
//! | [`bulk`] helpers | every affected row's targets (old and new for updates) |
#![warn(missing_docs)]
// On docs.rs (nightly), items behind a cargo feature say which one.
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::any::{TypeId, type_name};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use cache_purge_hooks_engine::{AfterCommit, PurgeTargets, Purger, Route, Targets};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, Iterable,
    ModelTrait, PrimaryKeyToColumn, QueryFilter, TransactionError, TransactionTrait, TryIntoModel,
};

pub mod bulk;
pub mod outbox;
pub mod tag_index;

#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    pub use sea_orm;
}

/// Hands a write's targets to the pipeline, where [`Purger::route`] says: as outbox rows
/// written through `db`, the connection (or transaction) of the write itself, so that they
/// commit or roll back with it; or to [`Purger::purge`].
pub(crate) async fn deliver<C: ConnectionTrait>(db: &C, source: &str, targets: Targets) {
    let targets = targets.into_valid(source);
    if targets.is_empty() {
        return;
    }
    let Some(purger) = Purger::current() else {
        return Purger::log_missing(source, &targets);
    };
    match purger.route() {
        Route::Outbox {
            backends,
            repurge_after,
        } => {
            let backends: Vec<&str> = backends.iter().map(String::as_str).collect();
            let now = outbox::now_ms();
            let mut written = outbox::enqueue(db, &backends, &targets, now).await;
            if let (Ok(()), Some(after)) = (&written, repurge_after) {
                // The delayed second purge, as rows due then: it survives a restart.
                let later =
                    now.saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX));
                written = outbox::enqueue_due(db, &backends, &targets, now, later).await;
            }
            match written {
                // Outside a transaction the rows are committed already; inside one the worker
                // finds nothing yet and picks them up at its next poll, or at the wake-up of
                // `transaction` after COMMIT.
                Ok(()) => purger.outbox_written(),
                Err(e) => {
                    // Not recorded: send now rather than lose the purge (it may then precede
                    // the COMMIT, the risk the outbox is there to avoid).
                    tracing::error!(
                        target: "cache_purge_hooks",
                        source,
                        error = %e,
                        targets = targets.len(),
                        "could not write the purge to the outbox (is its migration applied?); sent directly"
                    );
                    purger.purge(targets).await;
                }
            }
        }
        _ => purger.purge(targets).await,
    }
}

/// The model type of an active model.
type ModelOf<A> = <<A as ActiveModelTrait>::Entity as EntityTrait>::Model;

/// Old targets of rows being updated, from `before_save` to `after_save` (SeaORM passes
/// nothing between the two). Keyed by model type and primary key.
/// Also keyed by the purger in use, so that pipelines side by side (tests on separate
/// databases) never exchange rows that share a primary key.
type Pending = HashMap<PendingKey, (Instant, Targets)>;
type PendingKey = (usize, TypeId, String);

fn current_purger_id() -> usize {
    cache_purge_hooks_engine::Purger::current().map_or(0, |p| p.id())
}

fn pending() -> &'static Mutex<Pending> {
    static PENDING: OnceLock<Mutex<Pending>> = OnceLock::new();
    PENDING.get_or_init(Default::default)
}

/// Entries left by saves that failed between `before_save` and `after_save` are dropped
/// after this long, once the map grows past `PENDING_SWEEP_AT`.
const PENDING_TTL: Duration = Duration::from_secs(300);
const PENDING_SWEEP_AT: usize = 4096;

fn stash_old(key: PendingKey, targets: Targets) {
    let mut map = pending().lock().unwrap_or_else(|p| p.into_inner());
    if map.len() >= PENDING_SWEEP_AT {
        let now = Instant::now();
        map.retain(|_, (at, _)| now.duration_since(*at) < PENDING_TTL);
    }
    match map.get_mut(&key) {
        Some((at, old)) => {
            *at = Instant::now();
            old.merge(targets);
        }
        None => {
            map.insert(key, (Instant::now(), targets));
        }
    }
}

fn take_old(key: &PendingKey) -> Option<Targets> {
    let mut map = pending().lock().unwrap_or_else(|p| p.into_inner());
    map.remove(key).map(|(_, t)| t)
}

fn column_of<E: EntityTrait>(field: &str) -> Option<E::Column> {
    E::Column::from_str(field).ok()
}

/// Whether an update writes a column the targets depend on. Unknown fields (a resolver
/// function) count as "every column".
fn writes_url_field<A>(am: &A) -> bool
where
    A: ActiveModelTrait,
    ModelOf<A>: PurgeTargets,
{
    match <ModelOf<A> as PurgeTargets>::URL_FIELDS {
        Some(fields) => fields.iter().any(|f| match column_of::<A::Entity>(f) {
            Some(col) => am.get(col).is_set(),
            // A field that is not a column cannot be tracked: assume it changed.
            None => true,
        }),
        None => <A::Entity as EntityTrait>::Column::iter().any(|col| am.get(col).is_set()),
    }
}

/// Whether every column the targets depend on has a value in the active model.
fn has_url_fields<A>(am: &A) -> bool
where
    A: ActiveModelTrait,
    ModelOf<A>: PurgeTargets,
{
    match <ModelOf<A> as PurgeTargets>::URL_FIELDS {
        Some(fields) => fields
            .iter()
            .all(|f| column_of::<A::Entity>(f).is_some_and(|col| !am.get(col).is_not_set())),
        None => <A::Entity as EntityTrait>::Column::iter().all(|col| !am.get(col).is_not_set()),
    }
}

/// Loads the stored row with the active model's primary key.
async fn load_stored<A, C>(am: &A, db: &C) -> Result<Option<ModelOf<A>>, DbErr>
where
    A: ActiveModelTrait,
    C: ConnectionTrait,
{
    let mut select = <A::Entity as EntityTrait>::find();
    for key in <<A::Entity as EntityTrait>::PrimaryKey as Iterable>::iter() {
        let col = key.into_column();
        match am.get(col).into_value() {
            Some(v) => select = select.filter(col.eq(v)),
            None => return Ok(None),
        }
    }
    select.one(db).await
}

fn pk_key<A: ActiveModelTrait>(am: &A) -> Option<PendingKey>
where
    ModelOf<A>: 'static,
{
    am.get_primary_key_value().map(|pk| {
        (
            current_purger_id(),
            TypeId::of::<ModelOf<A>>(),
            format!("{pk:?}"),
        )
    })
}

fn model_key<M: ModelTrait + 'static>(model: &M) -> PendingKey {
    (
        current_purger_id(),
        TypeId::of::<M>(),
        format!("{:?}", model.get_primary_key_value()),
    )
}

/// Call from `ActiveModelBehavior::before_save`. On an update that writes a field the URLs
/// depend on, loads the stored row (one `SELECT` by primary key) so that [`after_save`] also
/// purges the old URLs. Otherwise does nothing and costs nothing.
///
/// Never fails the save: a failed `SELECT` is logged, and only the new URLs are purged.
pub async fn before_save<A, C>(am: A, db: &C, insert: bool) -> Result<A, DbErr>
where
    A: ActiveModelTrait + Send,
    C: ConnectionTrait,
    ModelOf<A>: PurgeTargets + Sync + 'static,
{
    if insert || !writes_url_field(&am) {
        return Ok(am);
    }
    let Some(key) = pk_key(&am) else {
        return Ok(am);
    };
    match load_stored(&am, db).await {
        Ok(Some(old)) => stash_old(key, old.resolve_targets()),
        Ok(None) => {}
        Err(e) => tracing::warn!(
            target: "cache_purge_hooks",
            entity = type_name::<ModelOf<A>>(),
            error = %e,
            "could not load the stored row; its old URLs will not be purged"
        ),
    }
    Ok(am)
}

/// Call from `ActiveModelBehavior::after_save`: purges the saved row's targets, and the old
/// ones recorded by [`before_save`]. Never fails.
pub async fn after_save<A, C>(model: ModelOf<A>, db: &C, insert: bool) -> Result<ModelOf<A>, DbErr>
where
    A: ActiveModelTrait,
    C: ConnectionTrait,
    ModelOf<A>: PurgeTargets + 'static,
{
    let mut targets = Targets::new();
    if !insert && let Some(old) = take_old(&model_key(&model)) {
        targets.merge(old);
    }
    model.purge_targets(&mut targets);
    deliver(db, type_name::<ModelOf<A>>(), targets).await;
    Ok(model)
}

/// Call from `ActiveModelBehavior::before_delete`. When the active model lacks a field the
/// URLs depend on (a delete given only the primary key), loads the stored row so that
/// [`after_delete`] knows its URLs.
pub async fn before_delete<A, C>(am: A, db: &C) -> Result<A, DbErr>
where
    A: ActiveModelTrait + Send,
    C: ConnectionTrait,
    ModelOf<A>: PurgeTargets + IntoActiveModel<A> + 'static,
{
    if has_url_fields(&am) {
        return Ok(am);
    }
    match load_stored(&am, db).await {
        // SeaORM deletes by primary key only, so filling in the other fields changes nothing
        // in the DELETE; it hands the full row to after_delete.
        Ok(Some(stored)) => Ok(stored.into_active_model()),
        Ok(None) => Ok(am),
        Err(e) => {
            tracing::warn!(
                target: "cache_purge_hooks",
                entity = type_name::<ModelOf<A>>(),
                error = %e,
                "could not load the row being deleted; its URLs will not be purged"
            );
            Ok(am)
        }
    }
}

/// Call from `ActiveModelBehavior::after_delete`: purges the deleted row's targets. Never
/// fails.
pub async fn after_delete<A, C>(am: A, db: &C) -> Result<A, DbErr>
where
    A: ActiveModelTrait + TryIntoModel<ModelOf<A>> + Clone,
    C: ConnectionTrait,
    ModelOf<A>: PurgeTargets + 'static,
{
    match am.clone().try_into_model() {
        Ok(model) => deliver(db, type_name::<ModelOf<A>>(), model.resolve_targets()).await,
        Err(e) => tracing::error!(
            target: "cache_purge_hooks",
            entity = type_name::<ModelOf<A>>(),
            error = %e,
            "deleted row's fields are unknown (was before_delete called?); nothing purged"
        ),
    }
    Ok(am)
}

/// Runs `callback` in a transaction, like SeaORM's `TransactionTrait::transaction`, holding
/// back every purge made inside it until the COMMIT has succeeded. On rollback (the closure
/// returned `Err`, or COMMIT failed) the purges are discarded.
///
/// Purges are held only for the current task: work spawned onto other tasks is not covered.
/// Nested calls (savepoints) hand their purges to the enclosing transaction.
///
/// ```
/// # mod cache_purge_hooks { pub use cache_purge_hooks_engine::*; pub use cache_purge_hooks_macros::CachePurge; pub use cache_purge_hooks_sea_orm as sea_orm; }
/// # mod post {
/// #     use super::cache_purge_hooks;
/// #     use cache_purge_hooks::CachePurge;
/// #     use sea_orm::entity::prelude::*;
/// #     #[derive(Clone, Debug, PartialEq, DeriveEntityModel, CachePurge)]
/// #     #[sea_orm(table_name = "posts")]
/// #     #[cache_purge(url = "/posts/{slug}", url = "/")]
/// #     pub struct Model {
/// #         #[sea_orm(primary_key)]
/// #         pub id: i32,
/// #         pub slug: String,
/// #     }
/// #     #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// #     pub enum Relation {}
/// #     cache_purge_hooks::sea_orm::active_model_behavior!();
/// # }
/// # use cache_purge_hooks::{Purger, backend::MemoryBackend};
/// # use sea_orm::{ActiveModelTrait, ConnectionTrait, Database, EntityTrait, Schema, Set};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let memory = MemoryBackend::new();
/// # let purger = Purger::builder().backend("memory", memory.clone()).build()?;
/// # purger.install();
/// # let db = Database::connect("sqlite::memory:").await?;
/// # db.execute(&Schema::new(db.get_database_backend()).create_table_from_entity(post::Entity))
/// #     .await?;
/// # post::ActiveModel { id: Set(1), slug: Set("old-slug".into()) }.insert(&db).await?;
/// # purger.flush().await;
/// # memory.clear();
/// let post = cache_purge_hooks::sea_orm::transaction(&db, |txn| {
///     Box::pin(async move {
///         let mut post: post::ActiveModel = post::Entity::find_by_id(1).one(txn).await?.unwrap().into();
///         post.slug = Set("new-slug".into());
///         post.update(txn).await
///     })
/// })
/// .await?;
/// # assert_eq!(post.slug, "new-slug");
/// # purger.flush().await;
/// # assert_eq!(memory.url_set(), ["/", "/posts/new-slug", "/posts/old-slug"]);
/// # memory.clear();
/// # // A rollback purges nothing.
/// # let rolled_back = cache_purge_hooks::sea_orm::transaction(&db, |txn| {
/// #     Box::pin(async move {
/// #         post::ActiveModel { id: Set(2), slug: Set("draft".into()) }.insert(txn).await?;
/// #         Err::<(), _>(sea_orm::DbErr::Custom("changed my mind".into()))
/// #     })
/// # })
/// # .await;
/// # assert!(rolled_back.is_err());
/// # purger.flush().await;
/// # assert!(memory.urls().is_empty());
/// # Ok(())
/// # }
/// ```
pub async fn transaction<D, F, T, E>(db: &D, callback: F) -> Result<T, TransactionError<E>>
where
    D: TransactionTrait,
    F: for<'c> FnOnce(
            &'c D::Transaction,
        ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
        + Send,
    T: Send,
    E: std::fmt::Display + std::fmt::Debug + Send,
{
    let (result, pending) = AfterCommit::run(db.transaction(callback)).await;
    match &result {
        Ok(_) => {
            pending.commit();
            // Outbox rows written inside are visible now: deliver them without waiting for
            // the worker's next poll.
            if let Some(p) = Purger::current() {
                p.outbox_written();
            }
        }
        Err(_) => {
            pending.discard();
        }
    }
    result
}

/// Writes `impl ActiveModelBehavior for ActiveModel` with the four cache purge hooks, for
/// entities with no behaviour of their own. Put it in the entity's module, where
/// `ActiveModel` is; pass another type name if yours differs.
///
/// ```
/// # mod cache_purge_hooks { pub use cache_purge_hooks_engine::*; pub use cache_purge_hooks_macros::CachePurge; pub use cache_purge_hooks_sea_orm as sea_orm; }
/// # use cache_purge_hooks::CachePurge;
/// # use sea_orm::entity::prelude::*;
/// # #[derive(Clone, Debug, PartialEq, DeriveEntityModel, CachePurge)]
/// # #[sea_orm(table_name = "posts")]
/// # #[cache_purge(url = "/posts/{slug}", url = "/")]
/// # pub struct Model {
/// #     #[sea_orm(primary_key)]
/// #     pub id: i32,
/// #     pub slug: String,
/// # }
/// # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// # pub enum Relation {}
/// cache_purge_hooks::sea_orm::active_model_behavior!();
/// // or: cache_purge_hooks::sea_orm::active_model_behavior!(ActiveModel);
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// #     let memory = cache_purge_hooks::backend::MemoryBackend::new();
/// #     let purger = cache_purge_hooks::Purger::builder().backend("memory", memory.clone()).build()?;
/// #     purger.install();
/// #     let db = sea_orm::Database::connect("sqlite::memory:").await?;
/// #     let schema = sea_orm::Schema::new(db.get_database_backend());
/// #     db.execute(&schema.create_table_from_entity(Entity)).await?;
/// #     let post = ActiveModel { slug: sea_orm::Set("hello".into()), ..Default::default() };
/// #     post.insert(&db).await?;
/// #     purger.flush().await;
/// #     assert_eq!(memory.url_set(), ["/", "/posts/hello"]);
/// #     Ok(())
/// # }
/// ```
///
/// An entity with behaviour of its own calls the hooks from its impl instead:
///
/// ```
/// # mod cache_purge_hooks { pub use cache_purge_hooks_engine::*; pub use cache_purge_hooks_macros::CachePurge; pub use cache_purge_hooks_sea_orm as sea_orm; }
/// # use cache_purge_hooks::CachePurge;
/// # use sea_orm::entity::prelude::*;
/// # use sea_orm::Set;
/// # #[derive(Clone, Debug, PartialEq, DeriveEntityModel, CachePurge)]
/// # #[sea_orm(table_name = "posts")]
/// # #[cache_purge(url = "/posts/{slug}", url = "/")]
/// # pub struct Model {
/// #     #[sea_orm(primary_key)]
/// #     pub id: i32,
/// #     pub slug: String,
/// #     pub updated_at: i64,
/// # }
/// # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// # pub enum Relation {}
/// # fn now() -> i64 {
/// #     1_700_000_000
/// # }
/// #[cache_purge_hooks::async_trait]
/// impl ActiveModelBehavior for ActiveModel {
///     async fn before_save<C: ConnectionTrait>(mut self, db: &C, insert: bool) -> Result<Self, DbErr> {
///         self.updated_at = Set(now());
///         cache_purge_hooks::sea_orm::before_save(self, db, insert).await
///     }
///     async fn after_save<C: ConnectionTrait>(model: Model, db: &C, insert: bool) -> Result<Model, DbErr> {
///         cache_purge_hooks::sea_orm::after_save::<Self, _>(model, db, insert).await
///     }
///     async fn before_delete<C: ConnectionTrait>(self, db: &C) -> Result<Self, DbErr> {
///         cache_purge_hooks::sea_orm::before_delete(self, db).await
///     }
///     async fn after_delete<C: ConnectionTrait>(self, db: &C) -> Result<Self, DbErr> {
///         cache_purge_hooks::sea_orm::after_delete(self, db).await
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// #     let memory = cache_purge_hooks::backend::MemoryBackend::new();
/// #     let purger = cache_purge_hooks::Purger::builder().backend("memory", memory.clone()).build()?;
/// #     purger.install();
/// #     let db = sea_orm::Database::connect("sqlite::memory:").await?;
/// #     let schema = sea_orm::Schema::new(db.get_database_backend());
/// #     db.execute(&schema.create_table_from_entity(Entity)).await?;
/// #     let post = ActiveModel { slug: Set("hello".into()), ..Default::default() };
/// #     let post = post.insert(&db).await?;
/// #     assert_eq!(post.updated_at, now());
/// #     purger.flush().await;
/// #     assert_eq!(memory.url_set(), ["/", "/posts/hello"]);
/// #     memory.clear();
/// #     // Deleting given only the primary key: the stored row's targets.
/// #     ActiveModel { id: Set(post.id), ..Default::default() }.delete(&db).await?;
/// #     purger.flush().await;
/// #     assert_eq!(memory.url_set(), ["/", "/posts/hello"]);
/// #     memory.clear();
/// #     Ok(())
/// # }
/// ```
#[macro_export]
macro_rules! active_model_behavior {
    () => {
        $crate::active_model_behavior!(ActiveModel);
    };
    ($active_model:ty) => {
        #[$crate::__private::async_trait]
        impl $crate::__private::sea_orm::ActiveModelBehavior for $active_model {
            async fn before_save<C>(
                self,
                db: &C,
                insert: bool,
            ) -> ::core::result::Result<Self, $crate::__private::sea_orm::DbErr>
            where
                C: $crate::__private::sea_orm::ConnectionTrait,
            {
                $crate::before_save(self, db, insert).await
            }

            async fn after_save<C>(
                model: <<Self as $crate::__private::sea_orm::ActiveModelTrait>::Entity as $crate::__private::sea_orm::EntityTrait>::Model,
                db: &C,
                insert: bool,
            ) -> ::core::result::Result<
                <<Self as $crate::__private::sea_orm::ActiveModelTrait>::Entity as $crate::__private::sea_orm::EntityTrait>::Model,
                $crate::__private::sea_orm::DbErr,
            >
            where
                C: $crate::__private::sea_orm::ConnectionTrait,
            {
                $crate::after_save::<Self, C>(model, db, insert).await
            }

            async fn before_delete<C>(
                self,
                db: &C,
            ) -> ::core::result::Result<Self, $crate::__private::sea_orm::DbErr>
            where
                C: $crate::__private::sea_orm::ConnectionTrait,
            {
                $crate::before_delete(self, db).await
            }

            async fn after_delete<C>(
                self,
                db: &C,
            ) -> ::core::result::Result<Self, $crate::__private::sea_orm::DbErr>
            where
                C: $crate::__private::sea_orm::ConnectionTrait,
            {
                $crate::after_delete(self, db).await
            }
        }
    };
}
