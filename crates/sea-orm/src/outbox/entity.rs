//! The SeaORM entity of the `cache_purge_outbox` table, for reading it with SeaORM queries
//! (an admin page, a custom report). The store functions of [`outbox`](super) are the way to
//! write it.

use sea_orm::entity::prelude::*;

/// One row of `cache_purge_outbox`: the targets of one purge (or a part of a large one) for
/// one backend. Times are unix milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cache_purge_outbox")]
pub struct Model {
    /// Auto-increment id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The backend's name (from the settings).
    pub backend: String,
    /// The targets in their stored text form (`url /a?b=1`, `prefix /blog/`, `tag x`,
    /// `everything`), one per line.
    #[sea_orm(column_type = "Text")]
    pub targets: String,
    /// When the row was written.
    pub created_at: i64,
    /// Not claimable before this time (the retry time after a failure).
    pub available_at: i64,
    /// The end of the lease of the worker delivering the row; `None` when not claimed.
    pub locked_until: Option<i64>,
    /// The worker holding (or last holding) the lease.
    pub locked_by: Option<String>,
    /// Failed deliveries so far.
    pub attempts: i32,
    /// The error of the last failed delivery.
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    /// When the row was given up on (dead-lettered); `None` while it is still delivered.
    pub dead_at: Option<i64>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
