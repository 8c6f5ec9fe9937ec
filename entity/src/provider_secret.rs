//! `provider_secrets`: the secret a company shares with a provider that calls us (Stripe,
//! Mercado Pago, a Standard Webhooks partner), AES-256-GCM encrypted (tenant-owned).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "provider_secrets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    pub provider: String,
    #[sea_orm(column_type = "Text")]
    pub secret_ciphertext: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
