//! `webhook_endpoints`: where an integrator wants a company's events sent (tenant-owned).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    pub url: String,
    pub description: Option<String>,
    /// JSON array of event types (`order.created`, `order.*`, `*`).
    #[sea_orm(column_type = "Text")]
    pub events: String,
    /// The signing secret, AES-256-GCM encrypted.
    #[sea_orm(column_type = "Text")]
    pub secret_ciphertext: String,
    /// The secret before the last rotation; it signs too until `previous_secret_expires_at`.
    #[sea_orm(column_type = "Text", nullable)]
    pub previous_secret_ciphertext: Option<String>,
    pub previous_secret_expires_at: Option<DateTimeUtc>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Start of the current run of failed attempts; cleared by any success.
    pub failing_since: Option<DateTimeUtc>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
