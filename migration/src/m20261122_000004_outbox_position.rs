//! The relay numbers events as it publishes them: `position` is the order subscribers and the
//! `events` query see. Outbox ids are handed out at insert, but transactions commit in any
//! order, so paging by id could skip an event that committed late; positions never do.

use sea_orm_migration::{prelude::*, schema::*};

use super::m20261122_000002_create_identity::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Outbox::Table)
                    .add_column(big_integer_null(Outbox::Position))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "outbox_company_position_idx",
            Outbox::Table,
            &[Outbox::CompanyId, Outbox::Position],
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("outbox_position_key")
                    .table(Outbox::Table)
                    .col(Outbox::Position)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("outbox_position_key")
                    .table(Outbox::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("outbox_company_position_idx")
                    .table(Outbox::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Outbox::Table)
                    .drop_column(Outbox::Position)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Outbox {
    Table,
    CompanyId,
    Position,
}
