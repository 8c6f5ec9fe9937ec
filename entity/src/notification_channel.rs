//! `notification_channels`: which provider carries a company's messages on one channel, its
//! non-secret settings and its sealed credentials (tenant-owned, one row per company and
//! channel).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_channels")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    /// `EMAIL`, `WHATSAPP` or `SMS`.
    pub channel: String,
    /// `evolution`, `whatsapp_cloud`, `twilio` or `smtp`.
    pub provider: String,
    /// The provider's non-secret settings as JSON (base URL, instance, sender).
    #[sea_orm(column_type = "Text")]
    pub settings: String,
    /// The credentials' JSON sealed with `Purpose::NotificationCredential`; never returned.
    #[sea_orm(column_type = "Text", nullable)]
    pub credentials_ciphertext: Option<String>,
    pub enabled: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
