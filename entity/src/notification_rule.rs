//! `notification_rules`: "when this event, if these conditions, notify this recipient on the
//! first usable of these channels with this template" (tenant-owned).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_rules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    pub name: String,
    pub event_type: String,
    /// JSON array of `{field, op, value}`, all of which must hold.
    #[sea_orm(column_type = "Text")]
    pub conditions: String,
    /// JSON `{kind: CUSTOMER|MEMBER|ROLE|ACTOR, …}`.
    #[sea_orm(column_type = "Text")]
    pub recipient: String,
    /// JSON array of channels in fallback order.
    pub channels: String,
    pub template_name: String,
    pub category: String,
    pub delay_seconds: i32,
    pub enabled: bool,
    /// Installed with the company for its business type.
    pub is_default: bool,
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

impl ActiveModelBehavior for ActiveModel {}
