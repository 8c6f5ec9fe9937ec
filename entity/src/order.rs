//! `orders` (tenant-owned). `version` guards concurrent transitions.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "orders")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    /// Sequential per company.
    pub number: i64,
    pub customer_id: Uuid,
    /// The workflow version the order started with.
    pub workflow_id: Uuid,
    pub status: String,
    pub version: i32,
    pub subtotal_minor: i64,
    pub total_minor: i64,
    pub currency: String,
    pub notes: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
