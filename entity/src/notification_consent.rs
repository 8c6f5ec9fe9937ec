//! `notification_consents`: a recorded consent to be sent a category (marketing) on a channel,
//! kept after it is revoked (tenant-owned).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_consents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    pub subject_kind: String,
    pub subject_id: Uuid,
    /// The category consented to.
    pub purpose: String,
    pub channel: String,
    pub granted_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
    pub source: String,
    /// The version of the consent text the person agreed to.
    pub text_version: String,
    /// The member who recorded it; `None` when the person did.
    pub recorded_by: Option<Uuid>,
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
