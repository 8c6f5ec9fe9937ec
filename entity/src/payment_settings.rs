//! `payment_settings`: how a company gets paid — PIX key, boleto bank details, Stripe key
//! (encrypted) (tenant-owned, one row per company).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payment_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub company_id: Uuid,
    pub pix_key: Option<String>,
    pub pix_merchant_name: Option<String>,
    pub pix_merchant_city: Option<String>,
    pub boleto_bank_code: Option<String>,
    pub boleto_agency: Option<String>,
    pub boleto_account: Option<String>,
    pub boleto_wallet: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub stripe_secret_key_ciphertext: Option<String>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
