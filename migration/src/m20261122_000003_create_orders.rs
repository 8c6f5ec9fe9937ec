//! Customers, products, workflows (versioned state machines), orders with their items and
//! status history, the per-company order counter, and the transactional outbox.

use sea_orm_migration::{prelude::*, schema::*};

use super::m20261122_000002_create_identity::{company_fk, index, unique_index};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn tenant_fk<T: IntoIden + Copy + 'static, C: IntoIden + 'static, R: IntoIden + Copy + 'static>(
    table: T,
    column: C,
    target: R,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(target, Alias::new("id"))
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Customers::Table)
                    .col(pk_uuid(Customers::Id))
                    .col(uuid(Customers::CompanyId))
                    .col(string_len(Customers::Name, 200))
                    .col(string_len_null(Customers::Email, 254))
                    .col(string_len_null(Customers::Phone, 20))
                    .col(string_len_null(Customers::Document, 14))
                    .col(text_null(Customers::Address))
                    .col(text_null(Customers::Notes))
                    .col(timestamp_with_time_zone_null(Customers::ArchivedAt))
                    .col(timestamp_with_time_zone(Customers::CreatedAt))
                    .col(timestamp_with_time_zone(Customers::UpdatedAt))
                    .foreign_key(&mut company_fk(Customers::Table, Customers::CompanyId))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "customers_company_created_idx",
            Customers::Table,
            &[Customers::CompanyId, Customers::CreatedAt],
        )
        .await?;
        index(
            manager,
            "customers_company_name_idx",
            Customers::Table,
            &[Customers::CompanyId, Customers::Name],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Products::Table)
                    .col(pk_uuid(Products::Id))
                    .col(uuid(Products::CompanyId))
                    .col(string_len(Products::Sku, 64))
                    .col(string_len(Products::Name, 200))
                    .col(string_len(Products::Kind, 16))
                    .col(big_integer(Products::PriceMinor))
                    .col(char_len(Products::Currency, 3))
                    .col(boolean(Products::Active).default(true))
                    .col(boolean(Products::TrackStock).default(false))
                    .col(integer_null(Products::Stock))
                    .col(timestamp_with_time_zone(Products::CreatedAt))
                    .col(timestamp_with_time_zone(Products::UpdatedAt))
                    .foreign_key(&mut company_fk(Products::Table, Products::CompanyId))
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "products_company_sku_key",
            Products::Table,
            &[Products::CompanyId, Products::Sku],
        )
        .await?;
        index(
            manager,
            "products_company_created_idx",
            Products::Table,
            &[Products::CompanyId, Products::CreatedAt],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Workflows::Table)
                    .col(pk_uuid(Workflows::Id))
                    .col(uuid(Workflows::CompanyId))
                    .col(uuid(Workflows::FamilyId))
                    .col(string_len(Workflows::EntityType, 32))
                    .col(string_len(Workflows::Name, 100))
                    .col(integer(Workflows::Version))
                    .col(boolean(Workflows::Active).default(false))
                    .col(text(Workflows::Definition))
                    .col(timestamp_with_time_zone(Workflows::CreatedAt))
                    .col(timestamp_with_time_zone(Workflows::UpdatedAt))
                    .foreign_key(&mut company_fk(Workflows::Table, Workflows::CompanyId))
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "workflows_company_family_version_key",
            Workflows::Table,
            &[
                Workflows::CompanyId,
                Workflows::FamilyId,
                Workflows::Version,
            ],
        )
        .await?;
        index(
            manager,
            "workflows_company_entity_idx",
            Workflows::Table,
            &[
                Workflows::CompanyId,
                Workflows::EntityType,
                Workflows::Active,
            ],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(OrderCounters::Table)
                    .col(uuid(OrderCounters::CompanyId).primary_key())
                    .col(big_integer(OrderCounters::LastNumber).default(0))
                    .foreign_key(&mut company_fk(
                        OrderCounters::Table,
                        OrderCounters::CompanyId,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .col(pk_uuid(Orders::Id))
                    .col(uuid(Orders::CompanyId))
                    .col(big_integer(Orders::Number))
                    .col(uuid(Orders::CustomerId))
                    .col(uuid(Orders::WorkflowId))
                    .col(string_len(Orders::Status, 40))
                    .col(integer(Orders::Version))
                    .col(big_integer(Orders::SubtotalMinor))
                    .col(big_integer(Orders::TotalMinor))
                    .col(char_len(Orders::Currency, 3))
                    .col(text_null(Orders::Notes))
                    .col(timestamp_with_time_zone(Orders::CreatedAt))
                    .col(timestamp_with_time_zone(Orders::UpdatedAt))
                    .foreign_key(&mut company_fk(Orders::Table, Orders::CompanyId))
                    .foreign_key(&mut tenant_fk(
                        Orders::Table,
                        Orders::CustomerId,
                        Customers::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        Orders::Table,
                        Orders::WorkflowId,
                        Workflows::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "orders_company_number_key",
            Orders::Table,
            &[Orders::CompanyId, Orders::Number],
        )
        .await?;
        index(
            manager,
            "orders_company_created_idx",
            Orders::Table,
            &[Orders::CompanyId, Orders::CreatedAt],
        )
        .await?;
        index(
            manager,
            "orders_company_status_idx",
            Orders::Table,
            &[Orders::CompanyId, Orders::Status],
        )
        .await?;
        index(
            manager,
            "orders_company_customer_idx",
            Orders::Table,
            &[Orders::CompanyId, Orders::CustomerId],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(OrderItems::Table)
                    .col(pk_uuid(OrderItems::Id))
                    .col(uuid(OrderItems::CompanyId))
                    .col(uuid(OrderItems::OrderId))
                    .col(uuid(OrderItems::ProductId))
                    .col(integer(OrderItems::Position))
                    .col(integer(OrderItems::Quantity))
                    .col(big_integer(OrderItems::UnitPriceMinor))
                    .col(big_integer(OrderItems::LineTotalMinor))
                    .col(timestamp_with_time_zone(OrderItems::CreatedAt))
                    .col(timestamp_with_time_zone(OrderItems::UpdatedAt))
                    .foreign_key(&mut company_fk(OrderItems::Table, OrderItems::CompanyId))
                    .foreign_key(&mut tenant_fk(
                        OrderItems::Table,
                        OrderItems::OrderId,
                        Orders::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        OrderItems::Table,
                        OrderItems::ProductId,
                        Products::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "order_items_company_order_idx",
            OrderItems::Table,
            &[OrderItems::CompanyId, OrderItems::OrderId],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(OrderStatusHistory::Table)
                    .col(pk_uuid(OrderStatusHistory::Id))
                    .col(uuid(OrderStatusHistory::CompanyId))
                    .col(uuid(OrderStatusHistory::OrderId))
                    .col(string_len_null(OrderStatusHistory::FromStatus, 40))
                    .col(string_len(OrderStatusHistory::ToStatus, 40))
                    .col(uuid_null(OrderStatusHistory::ActorUserId))
                    .col(uuid_null(OrderStatusHistory::ActorApiKeyId))
                    .col(text_null(OrderStatusHistory::Comment))
                    .col(timestamp_with_time_zone(OrderStatusHistory::CreatedAt))
                    .col(timestamp_with_time_zone(OrderStatusHistory::UpdatedAt))
                    .foreign_key(&mut company_fk(
                        OrderStatusHistory::Table,
                        OrderStatusHistory::CompanyId,
                    ))
                    .foreign_key(&mut tenant_fk(
                        OrderStatusHistory::Table,
                        OrderStatusHistory::OrderId,
                        Orders::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "order_status_history_company_order_idx",
            OrderStatusHistory::Table,
            &[
                OrderStatusHistory::CompanyId,
                OrderStatusHistory::OrderId,
                OrderStatusHistory::CreatedAt,
            ],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .col(big_pk_auto(Outbox::Id))
                    .col(uuid_uniq(Outbox::EventId))
                    .col(uuid(Outbox::CompanyId))
                    .col(string_len(Outbox::EventType, 64))
                    .col(string_len(Outbox::AggregateType, 32))
                    .col(uuid(Outbox::AggregateId))
                    .col(big_integer(Outbox::Sequence))
                    .col(text(Outbox::Payload))
                    .col(timestamp_with_time_zone(Outbox::OccurredAt))
                    .col(timestamp_with_time_zone_null(Outbox::RelayedAt))
                    .foreign_key(&mut company_fk(Outbox::Table, Outbox::CompanyId))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "outbox_company_id_idx",
            Outbox::Table,
            &[Outbox::CompanyId, Outbox::Id],
        )
        .await?;
        unique_index(
            manager,
            "outbox_aggregate_sequence_key",
            Outbox::Table,
            &[Outbox::CompanyId, Outbox::AggregateId, Outbox::Sequence],
        )
        .await?;
        index(
            manager,
            "outbox_unrelayed_idx",
            Outbox::Table,
            &[Outbox::RelayedAt, Outbox::Id],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Outbox::Table.into_iden(),
            OrderStatusHistory::Table.into_iden(),
            OrderItems::Table.into_iden(),
            Orders::Table.into_iden(),
            OrderCounters::Table.into_iden(),
            Workflows::Table.into_iden(),
            Products::Table.into_iden(),
            Customers::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Customers {
    Table,
    Id,
    CompanyId,
    Name,
    Email,
    Phone,
    Document,
    Address,
    Notes,
    ArchivedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Products {
    Table,
    Id,
    CompanyId,
    Sku,
    Name,
    Kind,
    PriceMinor,
    Currency,
    Active,
    TrackStock,
    Stock,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Workflows {
    Table,
    Id,
    CompanyId,
    FamilyId,
    EntityType,
    Name,
    Version,
    Active,
    Definition,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum OrderCounters {
    Table,
    CompanyId,
    LastNumber,
}

#[derive(DeriveIden, Clone, Copy)]
enum Orders {
    Table,
    Id,
    CompanyId,
    Number,
    CustomerId,
    WorkflowId,
    Status,
    Version,
    SubtotalMinor,
    TotalMinor,
    Currency,
    Notes,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum OrderItems {
    Table,
    Id,
    CompanyId,
    OrderId,
    ProductId,
    Position,
    Quantity,
    UnitPriceMinor,
    LineTotalMinor,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum OrderStatusHistory {
    Table,
    Id,
    CompanyId,
    OrderId,
    FromStatus,
    ToStatus,
    ActorUserId,
    ActorApiKeyId,
    Comment,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Outbox {
    Table,
    Id,
    EventId,
    CompanyId,
    EventType,
    AggregateType,
    AggregateId,
    Sequence,
    Payload,
    OccurredAt,
    RelayedAt,
}
