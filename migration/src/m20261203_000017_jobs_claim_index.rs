//! The claim reads due jobs best first (`priority DESC, run_at, id`); an index in that order
//! lets it stop after the few rows it needs. On `(status, run_at)` alone it sorted the whole
//! due backlog on every claim: with 5,000 queued webhook deliveries, 1.4 ms per claim on
//! SQLite and 9.4 ms (a sequential scan and a sort) on PostgreSQL, against 0.17 ms and 0.47 ms
//! with this one.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("jobs_due_idx")
                    .table(Jobs::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("jobs_claim_idx")
                    .table(Jobs::Table)
                    .col(Jobs::Status)
                    .col((Jobs::Priority, IndexOrder::Desc))
                    .col(Jobs::RunAt)
                    .col(Jobs::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("jobs_claim_idx")
                    .table(Jobs::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("jobs_due_idx")
                    .table(Jobs::Table)
                    .col(Jobs::Status)
                    .col(Jobs::RunAt)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Status,
    Priority,
    RunAt,
    Id,
}
