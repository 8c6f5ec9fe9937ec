//! `notification_templates`: a company's own wording of a built-in notification for one channel
//! and locale, validated when saved (tenant-owned).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_templates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    /// The purpose, e.g. `order_ready` (`api::notifications::templates::PURPOSES`).
    pub name: String,
    /// `EMAIL`, `WHATSAPP`, `SMS` or `IN_APP`.
    pub channel: String,
    /// `pt-BR`, `en-US` or `es-ES`.
    pub locale: String,
    /// The email subject or the in-app title.
    pub subject: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub body: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::company::Entity",
        from = "Column::CompanyId",
        to = "super::company::Column::Id"
    )]
    Company,
}

impl Related<super::company::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Company.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
