//! `invitations`: a company's pending (or answered) request that a person join it, stored with
//! a SHA-256 hash of its one-time token (tenant-owned).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invitations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub company_id: Uuid,
    /// The invitee's address, normalised as `Email` parses it.
    pub email: String,
    /// The role names granted on acceptance, comma-separated.
    pub roles: String,
    pub invited_by: Uuid,
    #[sea_orm(unique)]
    pub token_hash: String,
    /// `PENDING`, `ACCEPTED`, `DECLINED`, `REVOKED` or `EXPIRED`; a `PENDING` row past
    /// `expires_at` is expired although not yet rewritten.
    pub status: String,
    pub expires_at: DateTimeUtc,
    pub responded_at: Option<DateTimeUtc>,
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
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::InvitedBy",
        to = "super::user::Column::Id"
    )]
    InvitedBy,
}

impl Related<super::company::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Company.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
