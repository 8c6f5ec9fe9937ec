//! Notifications: each company's channel configurations (which provider carries its email,
//! WhatsApp and SMS, with its credentials sealed), every notification queued for a person with
//! its delivery state, and every attempt to hand it to a provider (the delivery log).

use sea_orm_migration::{prelude::*, schema::*};

use super::m20261122_000002_create_identity::{company_fk, index, unique_index};
use crate::enable_row_level_security;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(NotificationChannels::Table)
                    .col(pk_uuid(NotificationChannels::Id))
                    .col(uuid(NotificationChannels::CompanyId))
                    .col(string_len(NotificationChannels::Channel, 16))
                    .col(string_len(NotificationChannels::Provider, 32))
                    .col(text(NotificationChannels::Settings))
                    .col(text_null(NotificationChannels::CredentialsCiphertext))
                    .col(boolean(NotificationChannels::Enabled).default(true))
                    .col(timestamp_with_time_zone(NotificationChannels::CreatedAt))
                    .col(timestamp_with_time_zone(NotificationChannels::UpdatedAt))
                    .foreign_key(&mut company_fk(
                        NotificationChannels::Table,
                        NotificationChannels::CompanyId,
                    ))
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "notification_channels_company_channel_key",
            NotificationChannels::Table,
            &[
                NotificationChannels::CompanyId,
                NotificationChannels::Channel,
            ],
        )
        .await?;
        enable_row_level_security(manager, "notification_channels").await?;

        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .col(pk_uuid(Notifications::Id))
                    .col(uuid(Notifications::CompanyId))
                    .col(string_len(Notifications::Channel, 16))
                    .col(string_len(Notifications::Category, 64))
                    .col(uuid_null(Notifications::UserId))
                    .col(uuid_null(Notifications::CustomerId))
                    .col(string_len_null(Notifications::Address, 254))
                    .col(string_len_null(Notifications::Template, 128))
                    .col(string_len_null(Notifications::Locale, 16))
                    .col(text(Notifications::Variables))
                    .col(text_null(Notifications::Subject))
                    .col(text_null(Notifications::Body))
                    .col(string_len(Notifications::Status, 16))
                    .col(string_len_null(Notifications::IdempotencyKey, 255))
                    .col(integer(Notifications::Priority).default(0))
                    .col(uuid_null(Notifications::JobId))
                    .col(integer(Notifications::AttemptCount).default(0))
                    .col(string_len_null(Notifications::Provider, 32))
                    .col(string_len_null(Notifications::ProviderMessageId, 255))
                    .col(string_len_null(Notifications::LastErrorCode, 64))
                    .col(text_null(Notifications::LastError))
                    .col(timestamp_with_time_zone(Notifications::CreatedAt))
                    .col(timestamp_with_time_zone(Notifications::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Notifications::SentAt))
                    .col(timestamp_with_time_zone_null(Notifications::DeliveredAt))
                    .col(timestamp_with_time_zone_null(Notifications::ReadAt))
                    .foreign_key(&mut company_fk(
                        Notifications::Table,
                        Notifications::CompanyId,
                    ))
                    .to_owned(),
            )
            .await?;
        // The delivery log, newest first, and its filters.
        index(
            manager,
            "notifications_company_created_idx",
            Notifications::Table,
            &[Notifications::CompanyId, Notifications::Id],
        )
        .await?;
        // A member's in-app notifications, unread first (`myNotifications`).
        index(
            manager,
            "notifications_company_user_idx",
            Notifications::Table,
            &[
                Notifications::CompanyId,
                Notifications::UserId,
                Notifications::ReadAt,
            ],
        )
        .await?;
        // A duplicate key returns the first notification.
        unique_index(
            manager,
            "notifications_company_idempotency_key",
            Notifications::Table,
            &[Notifications::CompanyId, Notifications::IdempotencyKey],
        )
        .await?;
        // Provider status callbacks find their notification by the provider's id.
        index(
            manager,
            "notifications_company_provider_message_idx",
            Notifications::Table,
            &[
                Notifications::CompanyId,
                Notifications::Provider,
                Notifications::ProviderMessageId,
            ],
        )
        .await?;
        enable_row_level_security(manager, "notifications").await?;

        manager
            .create_table(
                Table::create()
                    .table(NotificationAttempts::Table)
                    .col(pk_uuid(NotificationAttempts::Id))
                    .col(uuid(NotificationAttempts::CompanyId))
                    .col(uuid(NotificationAttempts::NotificationId))
                    .col(integer(NotificationAttempts::Attempt))
                    .col(string_len(NotificationAttempts::Provider, 32))
                    .col(string_len_null(
                        NotificationAttempts::ProviderMessageId,
                        255,
                    ))
                    .col(string_len(NotificationAttempts::Outcome, 16))
                    .col(string_len_null(NotificationAttempts::ErrorCode, 64))
                    .col(text_null(NotificationAttempts::ErrorMessage))
                    .col(timestamp_with_time_zone(NotificationAttempts::StartedAt))
                    .col(timestamp_with_time_zone(NotificationAttempts::FinishedAt))
                    .foreign_key(&mut company_fk(
                        NotificationAttempts::Table,
                        NotificationAttempts::CompanyId,
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                NotificationAttempts::Table,
                                NotificationAttempts::NotificationId,
                            )
                            .to(Notifications::Table, Notifications::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "notification_attempts_company_notification_idx",
            NotificationAttempts::Table,
            &[
                NotificationAttempts::CompanyId,
                NotificationAttempts::NotificationId,
                NotificationAttempts::Attempt,
            ],
        )
        .await?;
        enable_row_level_security(manager, "notification_attempts").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            NotificationAttempts::Table.into_iden(),
            Notifications::Table.into_iden(),
            NotificationChannels::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum NotificationChannels {
    Table,
    Id,
    CompanyId,
    /// `EMAIL`, `WHATSAPP`, `SMS`.
    Channel,
    /// `evolution`, `whatsapp_cloud`, `twilio`, `smtp`.
    Provider,
    /// The provider's non-secret settings, JSON.
    Settings,
    /// The provider's credentials, JSON sealed with the `NotificationCredential` purpose.
    CredentialsCiphertext,
    Enabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Notifications {
    Table,
    Id,
    CompanyId,
    Channel,
    Category,
    /// The member, for in-app notifications.
    UserId,
    CustomerId,
    /// E.164 phone or normalised email, as `Phone`/`Email` parse them.
    Address,
    Template,
    Locale,
    Variables,
    Subject,
    Body,
    Status,
    IdempotencyKey,
    Priority,
    JobId,
    AttemptCount,
    Provider,
    ProviderMessageId,
    LastErrorCode,
    LastError,
    CreatedAt,
    UpdatedAt,
    SentAt,
    DeliveredAt,
    ReadAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum NotificationAttempts {
    Table,
    Id,
    CompanyId,
    NotificationId,
    Attempt,
    Provider,
    ProviderMessageId,
    /// `SENT`, `RETRYABLE` or `PERMANENT`.
    Outcome,
    ErrorCode,
    ErrorMessage,
    StartedAt,
    FinishedAt,
}
