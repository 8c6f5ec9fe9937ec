//! `financial_transactions`: the company's ledger — charges, refunds, fees, payouts
//! (tenant-owned). Amounts are positive; the kind says which way the money went.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "financial_transactions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub company_id: Uuid,
    pub payment_id: Option<Uuid>,
    pub refund_id: Option<Uuid>,
    /// `CHARGE`, `REFUND`, `FEE` or `PAYOUT`.
    pub kind: String,
    pub method: String,
    pub amount_minor: i64,
    pub currency: String,
    pub description: Option<String>,
    pub occurred_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
