//! Notification templates: a company's own wording of a built-in notification (`name` is the
//! purpose, e.g. `order_ready`) for one channel and locale. Without a row the system default
//! applies, so the table holds only what a company changed.

use sea_orm_migration::{prelude::*, schema::*};

use super::m20261122_000002_create_identity::{company_fk, index, unique_index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(NotificationTemplates::Table)
                    .col(pk_uuid(NotificationTemplates::Id))
                    .col(uuid(NotificationTemplates::CompanyId))
                    .col(string_len(NotificationTemplates::Name, 64))
                    .col(string_len(NotificationTemplates::Channel, 16))
                    .col(string_len(NotificationTemplates::Locale, 8))
                    .col(string_len_null(NotificationTemplates::Subject, 1000))
                    .col(text(NotificationTemplates::Body))
                    .col(timestamp_with_time_zone(NotificationTemplates::CreatedAt))
                    .col(timestamp_with_time_zone(NotificationTemplates::UpdatedAt))
                    .foreign_key(&mut company_fk(
                        NotificationTemplates::Table,
                        NotificationTemplates::CompanyId,
                    ))
                    .to_owned(),
            )
            .await?;
        // One template per purpose, channel and locale: a second is a `CONFLICT`. It also serves
        // the lookup of a company's template and the list filtered by name.
        unique_index(
            manager,
            "notification_templates_company_name_channel_locale_key",
            NotificationTemplates::Table,
            &[
                NotificationTemplates::CompanyId,
                NotificationTemplates::Name,
                NotificationTemplates::Channel,
                NotificationTemplates::Locale,
            ],
        )
        .await?;
        // The list in id order (its cursor), filtered by channel or not.
        index(
            manager,
            "notification_templates_company_idx",
            NotificationTemplates::Table,
            &[NotificationTemplates::CompanyId, NotificationTemplates::Id],
        )
        .await?;
        crate::enable_row_level_security(manager, "notification_templates").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(NotificationTemplates::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum NotificationTemplates {
    Table,
    Id,
    CompanyId,
    /// The purpose, e.g. `order_ready`.
    Name,
    /// `EMAIL`, `WHATSAPP`, `SMS` or `IN_APP`.
    Channel,
    /// `pt-BR`, `en-US` or `es-ES`.
    Locale,
    /// Email subject or in-app title.
    Subject,
    Body,
    CreatedAt,
    UpdatedAt,
}
