//! Bulk writes that purge: SeaORM runs no `ActiveModelBehavior` hook for `insert_many`,
//! `update_many` or `delete_many`, so plain bulk writes leave the cache stale. These helpers
//! do the same writes and purge the targets of every affected row.
//!
//! On PostgreSQL, SQLite ≥ 3.35 (sea-orm feature `sqlite-use-returning-for-3_35`) and MariaDB
//! (feature `mariadb-use-returning`) the affected rows come back from the write itself
//! (`RETURNING`). Elsewhere (MySQL) the rows are read with a `SELECT` first (deletes,
//! updates) or inserted one at a time (inserts). Run them inside
//! [`transaction`](crate::transaction) so the purges wait for the COMMIT and the fallback's
//! read and write see the same rows.
//!
//! ```
//! # mod cache_purge_hooks { pub use cache_purge_hooks_engine::*; pub use cache_purge_hooks_macros::CachePurge; pub use cache_purge_hooks_sea_orm as sea_orm; }
//! # mod post {
//! #     use super::cache_purge_hooks;
//! #     use cache_purge_hooks::CachePurge;
//! #     use sea_orm::entity::prelude::*;
//! #     #[derive(Clone, Debug, PartialEq, DeriveEntityModel, CachePurge)]
//! #     #[sea_orm(table_name = "posts")]
//! #     #[cache_purge(url = "/posts/{slug}", url = "/")]
//! #     pub struct Model {
//! #         #[sea_orm(primary_key)]
//! #         pub id: i32,
//! #         pub slug: String,
//! #         pub category_id: i32,
//! #         pub published: bool,
//! #     }
//! #     #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
//! #     pub enum Relation {}
//! #     cache_purge_hooks::sea_orm::active_model_behavior!();
//! # }
//! use cache_purge_hooks::sea_orm::bulk;
//! use sea_orm::{sea_query::Expr, ColumnTrait, Condition};
//! # use sea_orm::{ConnectionTrait, Database, Schema};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let memory = cache_purge_hooks::backend::MemoryBackend::new();
//! # let purger = cache_purge_hooks::Purger::builder().backend("memory", memory.clone()).build()?;
//! # purger.install();
//! # let db = Database::connect("sqlite::memory:").await?;
//! # db.execute(&Schema::new(db.get_database_backend()).create_table_from_entity(post::Entity))
//! #     .await?;
//! # db.execute_unprepared(
//! #     "INSERT INTO posts (slug, category_id, published) \
//! #      VALUES ('a', 3, false), ('b', 3, false), ('c', 4, false)",
//! # )
//! # .await?;
//!
//! // UPDATE posts SET published = true WHERE category_id = 3, purging every row's URLs:
//! let rows = bulk::update_many::<post::Entity, _>(
//!     &db,
//!     Condition::all().add(post::Column::CategoryId.eq(3)),
//!     |update| update.col_expr(post::Column::Published, Expr::value(true)),
//! )
//! .await?;
//! # assert_eq!(rows.len(), 2);
//! # assert!(rows.iter().all(|post| post.published));
//! # purger.flush().await;
//! # assert_eq!(memory.url_set(), ["/", "/posts/a", "/posts/b"]);
//! # Ok(())
//! # }
//! ```

use std::any::type_name;

use cache_purge_hooks_engine::{PurgeTargets, Targets};
use sea_orm::sea_query::IntoCondition;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, IdenStatic,
    IntoActiveModel, Iterable, ModelTrait, PrimaryKeyToColumn, QueryFilter, QueryTrait, UpdateMany,
};

use crate::column_of;

async fn purge_rows<'a, M: PurgeTargets + 'static, C: ConnectionTrait>(
    db: &C,
    rows: impl IntoIterator<Item = &'a M>,
    mut targets: Targets,
) {
    for row in rows {
        row.purge_targets(&mut targets);
    }
    crate::deliver(db, type_name::<M>(), targets).await;
}

/// `INSERT` of many rows; purges each inserted row's targets and returns the rows.
pub async fn insert_many<A, C, I>(
    db: &C,
    models: I,
) -> Result<Vec<<A::Entity as EntityTrait>::Model>, DbErr>
where
    A: ActiveModelTrait + Send,
    C: ConnectionTrait,
    I: IntoIterator<Item = A>,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A> + PurgeTargets + 'static,
{
    let models: Vec<A> = models.into_iter().collect();
    if models.is_empty() {
        return Ok(Vec::new());
    }
    let rows = if db.support_returning() {
        <A::Entity as EntityTrait>::insert_many(models)
            .exec_with_returning(db)
            .await?
    } else {
        let mut rows = Vec::with_capacity(models.len());
        for model in models {
            rows.push(
                <A::Entity as EntityTrait>::insert(model)
                    .exec_with_returning(db)
                    .await?,
            );
        }
        rows
    };
    purge_rows(db, &rows, Targets::new()).await;
    Ok(rows)
}

/// Whether an `UPDATE` writes a column the targets depend on.
fn writes_url_field<E>(update: &UpdateMany<E>) -> bool
where
    E: EntityTrait,
    E::Model: PurgeTargets,
{
    let Some(fields) = <E::Model as PurgeTargets>::URL_FIELDS else {
        return true;
    };
    let written: Vec<String> = update
        .as_query()
        .get_values()
        .iter()
        .map(|(col, _)| col.to_string())
        .collect();
    fields.iter().any(|f| match column_of::<E>(f) {
        Some(col) => written.iter().any(|w| w == col.as_str()),
        None => true,
    })
}

/// `UPDATE ... WHERE filter`; purges the old and new targets of every updated row and returns
/// the updated rows. `set` adds the values: `|u| u.col_expr(Column::Title, Expr::value("x"))`.
///
/// The old rows are read first (one `SELECT` with the same filter) only when the update writes
/// a field the URLs depend on, or when the database has no `RETURNING`.
pub async fn update_many<E, C>(
    db: &C,
    filter: impl IntoCondition,
    set: impl FnOnce(UpdateMany<E>) -> UpdateMany<E>,
) -> Result<Vec<E::Model>, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
    E::Model: PurgeTargets + 'static,
{
    let filter: Condition = filter.into_condition();
    let update = set(E::update_many()).filter(filter.clone());
    let returning = db.support_returning();
    let old = if writes_url_field(&update) || !returning {
        E::find().filter(filter).all(db).await?
    } else {
        Vec::new()
    };
    let rows = if returning {
        update.exec_with_returning(db).await?
    } else {
        update.exec(db).await?;
        if old.is_empty() {
            Vec::new()
        } else {
            E::find().filter(by_primary_keys(&old)).all(db).await?
        }
    };
    let mut targets = Targets::new();
    for row in &old {
        row.purge_targets(&mut targets);
    }
    purge_rows(db, &rows, targets).await;
    Ok(rows)
}

/// `DELETE ... WHERE filter`; purges every deleted row's targets and returns the deleted rows.
pub async fn delete_many<E, C>(db: &C, filter: impl IntoCondition) -> Result<Vec<E::Model>, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
    E::Model: PurgeTargets + 'static,
{
    let filter: Condition = filter.into_condition();
    let rows = if db.support_returning() {
        E::delete_many()
            .filter(filter)
            .exec_with_returning(db)
            .await?
    } else {
        let rows = E::find().filter(filter).all(db).await?;
        if !rows.is_empty() {
            E::delete_many()
                .filter(by_primary_keys(&rows))
                .exec(db)
                .await?;
        }
        rows
    };
    purge_rows(db, &rows, Targets::new()).await;
    Ok(rows)
}

/// `(pk = a) OR (pk = b) ...` for these rows (composite keys supported).
fn by_primary_keys<M: ModelTrait>(rows: &[M]) -> Condition {
    let mut any = Condition::any();
    for row in rows {
        let mut all = Condition::all();
        for key in <<M::Entity as EntityTrait>::PrimaryKey as Iterable>::iter() {
            let col = key.into_column();
            all = all.add(col.eq(row.get(col)));
        }
        any = any.add(all);
    }
    any
}
