//! The durable job runtime's tables: `jobs` (one row per unit of background work, with its
//! lease, retries and last error), `job_keys` (what is known about a key: paused or not, its
//! recent starts for rate limits) and `job_schedules` (recurring work and its next tick).
//!
//! Jobs are not tenant data by themselves: `company_id` is optional and says for whom a job
//! acts. The runtime reads these tables across companies (it is one of the named cross-tenant
//! paths); a handler acting for a company takes the id from the row.

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
                    .table(Jobs::Table)
                    .col(pk_uuid(Jobs::Id))
                    .col(string_len(Jobs::Queue, 100))
                    .col(text(Jobs::Payload))
                    .col(integer(Jobs::Priority).default(0))
                    .col(timestamp_with_time_zone(Jobs::RunAt))
                    .col(string_len(Jobs::Status, 16))
                    .col(integer(Jobs::Attempts).default(0))
                    .col(string_len_null(Jobs::IdempotencyKey, 200))
                    .col(string_len_null(Jobs::JobKey, 200))
                    .col(uuid_null(Jobs::CompanyId))
                    .col(uuid_null(Jobs::LeaseId))
                    .col(timestamp_with_time_zone_null(Jobs::LeasedUntil))
                    .col(text_null(Jobs::LastError))
                    .col(timestamp_with_time_zone(Jobs::CreatedAt))
                    .col(timestamp_with_time_zone(Jobs::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Jobs::StartedAt))
                    .col(timestamp_with_time_zone_null(Jobs::FinishedAt))
                    .foreign_key(&mut company_fk(Jobs::Table, Jobs::CompanyId))
                    .to_owned(),
            )
            .await?;
        // Enqueuing the same key twice makes one job (NULL keys never collide).
        unique_index(
            manager,
            "jobs_queue_idempotency_key",
            Jobs::Table,
            &[Jobs::Queue, Jobs::IdempotencyKey],
        )
        .await?;
        // The claim: due work by status, best first.
        index(
            manager,
            "jobs_due_idx",
            Jobs::Table,
            &[Jobs::Status, Jobs::RunAt],
        )
        .await?;
        // Per-key concurrency counts a key's running jobs.
        index(
            manager,
            "jobs_key_status_idx",
            Jobs::Table,
            &[Jobs::JobKey, Jobs::Status],
        )
        .await?;
        index(
            manager,
            "jobs_company_idx",
            Jobs::Table,
            &[Jobs::CompanyId, Jobs::Id],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(JobKeys::Table)
                    .col(string_len(JobKeys::Key, 200).primary_key())
                    .col(boolean(JobKeys::Paused).default(false))
                    .col(text(JobKeys::RecentStarts))
                    .col(timestamp_with_time_zone(JobKeys::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(JobSchedules::Table)
                    .col(string_len(JobSchedules::Name, 200).primary_key())
                    .col(string_len(JobSchedules::Cron, 100))
                    .col(string_len(JobSchedules::TimeZone, 64))
                    .col(string_len(JobSchedules::Queue, 100))
                    .col(text(JobSchedules::Payload))
                    .col(uuid_null(JobSchedules::CompanyId))
                    .col(timestamp_with_time_zone(JobSchedules::NextRunAt))
                    .col(timestamp_with_time_zone(JobSchedules::UpdatedAt))
                    .foreign_key(&mut company_fk(
                        JobSchedules::Table,
                        JobSchedules::CompanyId,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "job_schedules_due_idx",
            JobSchedules::Table,
            &[JobSchedules::NextRunAt],
        )
        .await?;
        index(
            manager,
            "job_schedules_company_idx",
            JobSchedules::Table,
            &[JobSchedules::CompanyId, JobSchedules::Name],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(JobSchedules::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(JobKeys::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Jobs::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Jobs {
    Table,
    Id,
    Queue,
    Payload,
    Priority,
    RunAt,
    Status,
    Attempts,
    IdempotencyKey,
    JobKey,
    CompanyId,
    LeaseId,
    LeasedUntil,
    LastError,
    CreatedAt,
    UpdatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum JobKeys {
    Table,
    Key,
    Paused,
    RecentStarts,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum JobSchedules {
    Table,
    Name,
    Cron,
    TimeZone,
    Queue,
    Payload,
    CompanyId,
    NextRunAt,
    UpdatedAt,
}
