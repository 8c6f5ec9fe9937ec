//! Invitations: a company asks a person (by email) to join with some roles; nothing changes for
//! the person until they accept. The one-time token is stored only as a SHA-256 hash.

use sea_orm_migration::{prelude::*, schema::*};

use super::m20261122_000002_create_identity::{Users, company_fk, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Invitations::Table)
                    .col(pk_uuid(Invitations::Id))
                    .col(uuid(Invitations::CompanyId))
                    .col(string_len(Invitations::Email, 254))
                    .col(string_len(Invitations::Roles, 1000))
                    .col(uuid(Invitations::InvitedBy))
                    .col(string_len_uniq(Invitations::TokenHash, 64))
                    .col(string_len(Invitations::Status, 16))
                    .col(timestamp_with_time_zone(Invitations::ExpiresAt))
                    .col(timestamp_with_time_zone_null(Invitations::RespondedAt))
                    .col(timestamp_with_time_zone(Invitations::CreatedAt))
                    .col(timestamp_with_time_zone(Invitations::UpdatedAt))
                    .foreign_key(&mut company_fk(Invitations::Table, Invitations::CompanyId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Invitations::Table, Invitations::InvitedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "invitations_company_idx",
            Invitations::Table,
            &[Invitations::CompanyId, Invitations::Id],
        )
        .await?;
        // One pending invitation per person and company: a second one is a `CONFLICT`.
        manager
            .create_index(
                Index::create()
                    .name("invitations_company_email_pending_key")
                    .table(Invitations::Table)
                    .col(Invitations::CompanyId)
                    .col(Invitations::Email)
                    .unique()
                    .and_where(Expr::col(Invitations::Status).eq("PENDING"))
                    .to_owned(),
            )
            .await?;
        // The invitee's own invitations, across companies (`myInvitations`).
        index(
            manager,
            "invitations_email_idx",
            Invitations::Table,
            &[Invitations::Email],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Invitations::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Invitations {
    Table,
    Id,
    CompanyId,
    Email,
    /// Role names, comma-separated (a role name has no comma).
    Roles,
    InvitedBy,
    TokenHash,
    Status,
    ExpiresAt,
    RespondedAt,
    CreatedAt,
    UpdatedAt,
}
