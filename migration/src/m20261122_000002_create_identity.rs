//! Users, memberships, roles, casbin policies, refresh tokens and API keys.

use sea_orm_migration::{prelude::*, schema::*};

use super::m20261122_000001_create_companies::Companies;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Companies::Table)
                    .add_column(integer_null(CompanyLimits::ApiRateLimit))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(pk_uuid(Users::Id))
                    .col(string_len_uniq(Users::Email, 254))
                    .col(string_len(Users::Name, 200))
                    .col(string_null(Users::PasswordHash))
                    .col(string_len(Users::Locale, 16))
                    .col(boolean(Users::IsOperator).default(false))
                    .col(timestamp_with_time_zone(Users::PasswordChangedAt))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Memberships::Table)
                    .col(pk_uuid(Memberships::Id))
                    .col(uuid(Memberships::CompanyId))
                    .col(uuid(Memberships::UserId))
                    .col(timestamp_with_time_zone(Memberships::CreatedAt))
                    .col(timestamp_with_time_zone(Memberships::UpdatedAt))
                    .foreign_key(&mut company_fk(Memberships::Table, Memberships::CompanyId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Memberships::Table, Memberships::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "memberships_company_user_key",
            Memberships::Table,
            &[Memberships::CompanyId, Memberships::UserId],
        )
        .await?;
        index(
            manager,
            "memberships_user_idx",
            Memberships::Table,
            &[Memberships::UserId],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Roles::Table)
                    .col(pk_uuid(Roles::Id))
                    .col(uuid(Roles::CompanyId))
                    .col(string_len(Roles::Name, 32))
                    .col(boolean(Roles::BuiltIn).default(false))
                    .col(timestamp_with_time_zone(Roles::CreatedAt))
                    .col(timestamp_with_time_zone(Roles::UpdatedAt))
                    .foreign_key(&mut company_fk(Roles::Table, Roles::CompanyId))
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "roles_company_name_key",
            Roles::Table,
            &[Roles::CompanyId, Roles::Name],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(CasbinRule::Table)
                    .col(big_pk_auto(CasbinRule::Id))
                    .col(uuid(CasbinRule::CompanyId))
                    .col(string_len(CasbinRule::Ptype, 8))
                    .col(string_len(CasbinRule::V0, 128).default(""))
                    .col(string_len(CasbinRule::V1, 128).default(""))
                    .col(string_len(CasbinRule::V2, 128).default(""))
                    .col(string_len(CasbinRule::V3, 128).default(""))
                    .col(string_len(CasbinRule::V4, 128).default(""))
                    .col(string_len(CasbinRule::V5, 128).default(""))
                    .foreign_key(&mut company_fk(CasbinRule::Table, CasbinRule::CompanyId))
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "casbin_rule_company_rule_key",
            CasbinRule::Table,
            &[
                CasbinRule::CompanyId,
                CasbinRule::Ptype,
                CasbinRule::V0,
                CasbinRule::V1,
                CasbinRule::V2,
                CasbinRule::V3,
                CasbinRule::V4,
                CasbinRule::V5,
            ],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .col(pk_uuid(RefreshTokens::Id))
                    .col(uuid(RefreshTokens::CompanyId))
                    .col(uuid(RefreshTokens::UserId))
                    .col(uuid(RefreshTokens::FamilyId))
                    .col(string_len_uniq(RefreshTokens::TokenHash, 64))
                    .col(timestamp_with_time_zone(RefreshTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(RefreshTokens::UsedAt))
                    .col(timestamp_with_time_zone_null(RefreshTokens::RevokedAt))
                    .col(timestamp_with_time_zone(RefreshTokens::CreatedAt))
                    .col(timestamp_with_time_zone(RefreshTokens::UpdatedAt))
                    .foreign_key(&mut company_fk(
                        RefreshTokens::Table,
                        RefreshTokens::CompanyId,
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RefreshTokens::Table, RefreshTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "refresh_tokens_company_user_idx",
            RefreshTokens::Table,
            &[RefreshTokens::CompanyId, RefreshTokens::UserId],
        )
        .await?;
        index(
            manager,
            "refresh_tokens_family_idx",
            RefreshTokens::Table,
            &[RefreshTokens::FamilyId],
        )
        .await?;
        index(
            manager,
            "refresh_tokens_user_idx",
            RefreshTokens::Table,
            &[RefreshTokens::UserId],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(pk_uuid(ApiKeys::Id))
                    .col(uuid(ApiKeys::CompanyId))
                    .col(string_len(ApiKeys::Name, 100))
                    .col(string_len(ApiKeys::Role, 32))
                    .col(string_len(ApiKeys::Prefix, 16))
                    .col(string_len_uniq(ApiKeys::SecretHash, 64))
                    .col(uuid(ApiKeys::CreatedBy))
                    .col(timestamp_with_time_zone_null(ApiKeys::LastUsedAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::RevokedAt))
                    .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                    .col(timestamp_with_time_zone(ApiKeys::UpdatedAt))
                    .foreign_key(&mut company_fk(ApiKeys::Table, ApiKeys::CompanyId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiKeys::Table, ApiKeys::CreatedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "api_keys_company_idx",
            ApiKeys::Table,
            &[ApiKeys::CompanyId, ApiKeys::CreatedAt],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ApiKeys::Table.into_iden(),
            RefreshTokens::Table.into_iden(),
            CasbinRule::Table.into_iden(),
            Roles::Table.into_iden(),
            Memberships::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Companies::Table)
                    .drop_column(CompanyLimits::ApiRateLimit)
                    .to_owned(),
            )
            .await
    }
}

/// `company_id` → `companies.id`, deleted with the company.
pub fn company_fk<T: IntoIden + Copy + 'static, C: IntoIden + 'static>(
    table: T,
    column: C,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(Companies::Table, Companies::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

pub async fn index<T: IntoIden + Copy + 'static, C: IntoIden + Copy + 'static>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: T,
    columns: &[C],
) -> Result<(), DbErr> {
    let mut statement = Index::create().name(name).table(table).to_owned();
    for column in columns {
        statement.col(*column);
    }
    manager.create_index(statement).await
}

pub async fn unique_index<T: IntoIden + Copy + 'static, C: IntoIden + Copy + 'static>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: T,
    columns: &[C],
) -> Result<(), DbErr> {
    let mut statement = Index::create().name(name).table(table).unique().to_owned();
    for column in columns {
        statement.col(*column);
    }
    manager.create_index(statement).await
}

#[derive(DeriveIden)]
enum CompanyLimits {
    ApiRateLimit,
}

#[derive(DeriveIden, Clone, Copy)]
pub enum Users {
    Table,
    Id,
    Email,
    Name,
    PasswordHash,
    Locale,
    IsOperator,
    PasswordChangedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Memberships {
    Table,
    Id,
    CompanyId,
    UserId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Roles {
    Table,
    Id,
    CompanyId,
    Name,
    BuiltIn,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum CasbinRule {
    Table,
    Id,
    CompanyId,
    Ptype,
    V0,
    V1,
    V2,
    V3,
    V4,
    V5,
}

#[derive(DeriveIden, Clone, Copy)]
enum RefreshTokens {
    Table,
    Id,
    CompanyId,
    UserId,
    FamilyId,
    TokenHash,
    ExpiresAt,
    UsedAt,
    RevokedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum ApiKeys {
    Table,
    Id,
    CompanyId,
    Name,
    Role,
    Prefix,
    SecretHash,
    CreatedBy,
    LastUsedAt,
    RevokedAt,
    CreatedAt,
    UpdatedAt,
}
