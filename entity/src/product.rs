//! `products`: the catalog (tenant-owned). Prices are integer minor units.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "products")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    pub sku: String,
    pub name: String,
    /// `PRODUCT` or `SERVICE`.
    pub kind: String,
    pub price_minor: i64,
    pub currency: String,
    pub active: bool,
    pub track_stock: bool,
    pub stock: Option<i32>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
