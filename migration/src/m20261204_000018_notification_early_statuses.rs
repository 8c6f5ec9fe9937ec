//! `notification_early_statuses`: a provider's status callback that arrived before the outcome
//! of its send was recorded (the provider answers the send and calls back at once; the send's
//! outcome is committed in a batch a moment later). It waits here for the message id it names,
//! and is applied when that id is recorded; the ones no notification ever claims (messages sent
//! from the phone itself, on the same WhatsApp number) are pruned after a while.

use sea_orm_migration::{prelude::*, schema::*};

use super::m20261122_000002_create_identity::{company_fk, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(NotificationEarlyStatuses::Table)
                    .col(pk_uuid(NotificationEarlyStatuses::Id))
                    .col(uuid(NotificationEarlyStatuses::CompanyId))
                    .col(string_len(NotificationEarlyStatuses::Provider, 32))
                    .col(string_len(
                        NotificationEarlyStatuses::ProviderMessageId,
                        255,
                    ))
                    .col(string_len(NotificationEarlyStatuses::Status, 16))
                    .col(string_len_null(NotificationEarlyStatuses::ErrorCode, 64))
                    .col(timestamp_with_time_zone(
                        NotificationEarlyStatuses::ReceivedAt,
                    ))
                    .foreign_key(&mut company_fk(
                        NotificationEarlyStatuses::Table,
                        NotificationEarlyStatuses::CompanyId,
                    ))
                    .to_owned(),
            )
            .await?;
        // What recording a sent message looks up.
        index(
            manager,
            "notification_early_statuses_message_idx",
            NotificationEarlyStatuses::Table,
            &[
                NotificationEarlyStatuses::CompanyId,
                NotificationEarlyStatuses::Provider,
                NotificationEarlyStatuses::ProviderMessageId,
            ],
        )
        .await?;
        // What pruning deletes by.
        index(
            manager,
            "notification_early_statuses_received_idx",
            NotificationEarlyStatuses::Table,
            &[
                NotificationEarlyStatuses::CompanyId,
                NotificationEarlyStatuses::ReceivedAt,
            ],
        )
        .await?;
        crate::enable_row_level_security(manager, "notification_early_statuses").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(NotificationEarlyStatuses::Table)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum NotificationEarlyStatuses {
    Table,
    Id,
    CompanyId,
    Provider,
    ProviderMessageId,
    /// `DELIVERED`, `READ` or `FAILED`.
    Status,
    ErrorCode,
    ReceivedAt,
}
