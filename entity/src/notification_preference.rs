//! `notification_preferences`: one member's or customer's opt-in or opt-out of a category on a
//! channel (tenant-owned). No row means the default: opted in to transactional categories.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_preferences")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    /// `MEMBER` (a user id) or `CUSTOMER` (a customer id).
    pub subject_kind: String,
    pub subject_id: Uuid,
    pub category: String,
    pub channel: String,
    pub opted_in: bool,
    /// `SELF`, `STAFF`, `UNSUBSCRIBE_LINK` or `INBOUND_REPLY`.
    pub source: String,
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
