//! Webhooks: endpoints integrators register, one delivery per (endpoint, event) with its
//! attempts, the secrets companies hold for providers that call us, and the incoming events
//! already received (their unique key is what makes a repeated event a no-op).

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
                    .table(WebhookEndpoints::Table)
                    .col(pk_uuid(WebhookEndpoints::Id))
                    .col(uuid(WebhookEndpoints::CompanyId))
                    .col(string_len(WebhookEndpoints::Url, 2048))
                    .col(string_len_null(WebhookEndpoints::Description, 500))
                    .col(text(WebhookEndpoints::Events))
                    .col(text(WebhookEndpoints::SecretCiphertext))
                    .col(text_null(WebhookEndpoints::PreviousSecretCiphertext))
                    .col(timestamp_with_time_zone_null(
                        WebhookEndpoints::PreviousSecretExpiresAt,
                    ))
                    .col(boolean(WebhookEndpoints::Enabled).default(true))
                    .col(string_len_null(WebhookEndpoints::DisabledReason, 500))
                    .col(timestamp_with_time_zone_null(
                        WebhookEndpoints::FailingSince,
                    ))
                    .col(uuid_null(WebhookEndpoints::CreatedBy))
                    .col(timestamp_with_time_zone(WebhookEndpoints::CreatedAt))
                    .col(timestamp_with_time_zone(WebhookEndpoints::UpdatedAt))
                    .foreign_key(&mut company_fk(
                        WebhookEndpoints::Table,
                        WebhookEndpoints::CompanyId,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "webhook_endpoints_company_idx",
            WebhookEndpoints::Table,
            &[WebhookEndpoints::CompanyId, WebhookEndpoints::Id],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .col(pk_uuid(WebhookDeliveries::Id))
                    .col(uuid(WebhookDeliveries::CompanyId))
                    .col(uuid(WebhookDeliveries::EndpointId))
                    .col(uuid(WebhookDeliveries::EventId))
                    .col(string_len(WebhookDeliveries::EventType, 64))
                    .col(text(WebhookDeliveries::Payload))
                    .col(string_len(WebhookDeliveries::Status, 16))
                    .col(integer(WebhookDeliveries::AttemptCount).default(0))
                    .col(timestamp_with_time_zone(WebhookDeliveries::NextAttemptAt))
                    .col(timestamp_with_time_zone_null(
                        WebhookDeliveries::LeasedUntil,
                    ))
                    .col(integer_null(WebhookDeliveries::LastStatusCode))
                    .col(text_null(WebhookDeliveries::LastError))
                    .col(timestamp_with_time_zone(WebhookDeliveries::CreatedAt))
                    .col(timestamp_with_time_zone(WebhookDeliveries::UpdatedAt))
                    .col(timestamp_with_time_zone_null(
                        WebhookDeliveries::DeliveredAt,
                    ))
                    .foreign_key(&mut company_fk(
                        WebhookDeliveries::Table,
                        WebhookDeliveries::CompanyId,
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookDeliveries::Table, WebhookDeliveries::EndpointId)
                            .to(WebhookEndpoints::Table, WebhookEndpoints::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // One delivery per event and endpoint, however often the relay republishes the event.
        unique_index(
            manager,
            "webhook_deliveries_endpoint_event_key",
            WebhookDeliveries::Table,
            &[WebhookDeliveries::EndpointId, WebhookDeliveries::EventId],
        )
        .await?;
        index(
            manager,
            "webhook_deliveries_company_endpoint_idx",
            WebhookDeliveries::Table,
            &[
                WebhookDeliveries::CompanyId,
                WebhookDeliveries::EndpointId,
                WebhookDeliveries::Id,
            ],
        )
        .await?;
        // The worker's claim: an endpoint's due deliveries, oldest first.
        index(
            manager,
            "webhook_deliveries_due_idx",
            WebhookDeliveries::Table,
            &[
                WebhookDeliveries::EndpointId,
                WebhookDeliveries::Status,
                WebhookDeliveries::NextAttemptAt,
            ],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(WebhookAttempts::Table)
                    .col(big_pk_auto(WebhookAttempts::Id))
                    .col(uuid(WebhookAttempts::CompanyId))
                    .col(uuid(WebhookAttempts::DeliveryId))
                    .col(timestamp_with_time_zone(WebhookAttempts::AttemptedAt))
                    .col(integer_null(WebhookAttempts::StatusCode))
                    .col(integer(WebhookAttempts::LatencyMs))
                    .col(text_null(WebhookAttempts::ResponseBody))
                    .col(text_null(WebhookAttempts::Error))
                    .foreign_key(&mut company_fk(
                        WebhookAttempts::Table,
                        WebhookAttempts::CompanyId,
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookAttempts::Table, WebhookAttempts::DeliveryId)
                            .to(WebhookDeliveries::Table, WebhookDeliveries::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "webhook_attempts_delivery_idx",
            WebhookAttempts::Table,
            &[
                WebhookAttempts::CompanyId,
                WebhookAttempts::DeliveryId,
                WebhookAttempts::Id,
            ],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(ProviderSecrets::Table)
                    .col(pk_uuid(ProviderSecrets::Id))
                    .col(uuid(ProviderSecrets::CompanyId))
                    .col(string_len(ProviderSecrets::Provider, 32))
                    .col(text(ProviderSecrets::SecretCiphertext))
                    .col(timestamp_with_time_zone(ProviderSecrets::UpdatedAt))
                    .foreign_key(&mut company_fk(
                        ProviderSecrets::Table,
                        ProviderSecrets::CompanyId,
                    ))
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "provider_secrets_company_provider_key",
            ProviderSecrets::Table,
            &[ProviderSecrets::CompanyId, ProviderSecrets::Provider],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(IncomingWebhooks::Table)
                    .col(pk_uuid(IncomingWebhooks::Id))
                    .col(uuid(IncomingWebhooks::CompanyId))
                    .col(string_len(IncomingWebhooks::Provider, 32))
                    .col(string_len(IncomingWebhooks::ExternalId, 255))
                    .col(string_len(IncomingWebhooks::EventType, 128))
                    .col(text(IncomingWebhooks::Payload))
                    .col(timestamp_with_time_zone(IncomingWebhooks::ReceivedAt))
                    .col(string_len_null(IncomingWebhooks::Outcome, 500))
                    .foreign_key(&mut company_fk(
                        IncomingWebhooks::Table,
                        IncomingWebhooks::CompanyId,
                    ))
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "incoming_webhooks_event_key",
            IncomingWebhooks::Table,
            &[
                IncomingWebhooks::CompanyId,
                IncomingWebhooks::Provider,
                IncomingWebhooks::ExternalId,
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IncomingWebhooks::Table.into_iden(),
            ProviderSecrets::Table.into_iden(),
            WebhookAttempts::Table.into_iden(),
            WebhookDeliveries::Table.into_iden(),
            WebhookEndpoints::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum WebhookEndpoints {
    Table,
    Id,
    CompanyId,
    Url,
    Description,
    Events,
    SecretCiphertext,
    PreviousSecretCiphertext,
    PreviousSecretExpiresAt,
    Enabled,
    DisabledReason,
    FailingSince,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum WebhookDeliveries {
    Table,
    Id,
    CompanyId,
    EndpointId,
    EventId,
    EventType,
    Payload,
    Status,
    AttemptCount,
    NextAttemptAt,
    LeasedUntil,
    LastStatusCode,
    LastError,
    CreatedAt,
    UpdatedAt,
    DeliveredAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum WebhookAttempts {
    Table,
    Id,
    CompanyId,
    DeliveryId,
    AttemptedAt,
    StatusCode,
    LatencyMs,
    ResponseBody,
    Error,
}

#[derive(DeriveIden, Clone, Copy)]
enum ProviderSecrets {
    Table,
    Id,
    CompanyId,
    Provider,
    SecretCiphertext,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum IncomingWebhooks {
    Table,
    Id,
    CompanyId,
    Provider,
    ExternalId,
    EventType,
    Payload,
    ReceivedAt,
    Outcome,
}
