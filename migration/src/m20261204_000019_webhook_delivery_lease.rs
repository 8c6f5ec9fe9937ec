//! Drops `webhook_deliveries.leased_until`: a delivery being sent is known by its job's lease
//! (the job runtime's `jobs` row, whose id is the delivery's), which `redeliverWebhook` checks
//! in its own transaction. Writing a second lease on the delivery cost every dispatch a write.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookDeliveries::Table)
                    .drop_column(WebhookDeliveries::LeasedUntil)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookDeliveries::Table)
                    .add_column(timestamp_with_time_zone_null(
                        WebhookDeliveries::LeasedUntil,
                    ))
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    LeasedUntil,
}
