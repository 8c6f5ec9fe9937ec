//! `payments`: money a company collects for an order (tenant-owned).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    pub order_id: Uuid,
    /// `PIX`, `BOLETO`, `CARD` or `CASH`.
    pub method: String,
    /// Who moves the money: `pix`, `boleto`, `stripe` or `manual`.
    pub provider: String,
    pub amount_minor: i64,
    pub currency: String,
    /// Refunded so far, reserved as soon as a refund is requested.
    pub refunded_minor: i64,
    pub status: String,
    /// The provider's id (Stripe PaymentIntent, PIX txid, boleto barcode).
    pub provider_reference: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub client_secret: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub checkout_url: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub pix_br_code: Option<String>,
    pub pix_txid: Option<String>,
    pub boleto_barcode: Option<String>,
    pub boleto_due_date: Option<Date>,
    pub idempotency_key: String,
    /// SHA-256 of the request the key was first used with.
    pub request_hash: String,
    /// Set while the provider is being called; a retry with the key meanwhile is a conflict.
    pub processing_until: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub failure_reason: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub note: Option<String>,
    pub created_by: Option<Uuid>,
    pub paid_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
