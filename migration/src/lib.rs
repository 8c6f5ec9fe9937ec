//! The database schema, one migration per change. The same migrations run on SQLite and
//! PostgreSQL; every tenant-owned table has `company_id NOT NULL`, a foreign key to `companies`
//! and an index that starts with it, and on PostgreSQL row-level security
//! ([`enable_row_level_security`]).

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_companies;
mod m20261122_000002_create_identity;
mod m20261122_000003_create_orders;
mod m20261122_000004_outbox_position;
mod m20261122_000005_create_webhooks;
mod m20261122_000006_create_payments;
mod m20261202_000007_create_invitations;
mod m20261202_000012_create_jobs;
mod m20261202_000013_row_level_security;
mod m20261202_000014_create_notifications;
mod m20261202_000015_create_notification_templates;
mod m20261202_000016_create_notification_preferences;
mod m20261203_000017_jobs_claim_index;
mod m20261204_000018_notification_early_statuses;
mod m20261204_000019_webhook_delivery_lease;

pub use m20261202_000013_row_level_security::{
    APP_ROLE, CROSS_TENANT_ROLE, enable_row_level_security,
};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_companies::Migration),
            Box::new(m20261122_000002_create_identity::Migration),
            Box::new(m20261122_000003_create_orders::Migration),
            Box::new(m20261122_000004_outbox_position::Migration),
            Box::new(m20261122_000005_create_webhooks::Migration),
            Box::new(m20261122_000006_create_payments::Migration),
            Box::new(m20261202_000007_create_invitations::Migration),
            Box::new(m20261202_000012_create_jobs::Migration),
            Box::new(m20261202_000013_row_level_security::Migration),
            Box::new(m20261202_000014_create_notifications::Migration),
            Box::new(m20261202_000015_create_notification_templates::Migration),
            Box::new(m20261202_000016_create_notification_preferences::Migration),
            Box::new(m20261203_000017_jobs_claim_index::Migration),
            Box::new(m20261204_000018_notification_early_statuses::Migration),
            Box::new(m20261204_000019_webhook_delivery_lease::Migration),
        ]
    }
}
