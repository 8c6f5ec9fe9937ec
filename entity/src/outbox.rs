//! `outbox`: domain events written in the same transaction as the change they describe,
//! published by the relay afterwards (tenant-owned).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    /// Global order of events; the cursor of the `events` query.
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub event_id: Uuid,
    pub company_id: Uuid,
    pub event_type: String,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    /// 1, 2, 3… per aggregate.
    pub sequence: i64,
    /// JSON, with a `schemaVersion`.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    pub occurred_at: DateTimeUtc,
    pub relayed_at: Option<DateTimeUtc>,
    /// Publication order, set by the relay; the cursor of the `events` query.
    pub position: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
