//! `webhook_deliveries`: one event on its way to one endpoint (tenant-owned). Its id is the
//! `webhook-id` header, stable across retries and redeliveries.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    pub endpoint_id: Uuid,
    /// The outbox event delivered (a fresh id for test deliveries).
    pub event_id: Uuid,
    pub event_type: String,
    /// The exact body sent, so every attempt signs the same bytes.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    /// `PENDING`, `DELIVERED` or `DEAD` (retries exhausted; redeliverable).
    pub status: String,
    /// Attempts since the delivery was created or last redelivered.
    pub attempt_count: i32,
    pub next_attempt_at: DateTimeUtc,
    pub last_status_code: Option<i32>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub delivered_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
