//! PostgreSQL row-level security: the database's own wall between companies, behind the
//! application's (every tenant query filters by `company_id`). Each tenant table lets a
//! statement see and write only the rows of the company in the setting `app.company_id`, which
//! the tenant transaction and the list reads set first (`set_config(…, true)`, so it ends with
//! the transaction). Without the setting a statement sees no rows rather than failing.
//!
//! The policies would mean nothing to the tables' owner, or to a superuser, so the server does not
//! act as the URL's user: its connections switch to one of two roles made here (`role` in the
//! connection's startup options, see `api::db::rls`):
//! - [`APP_ROLE`] for requests: owns nothing, has no `BYPASSRLS`; it may read and write the tables.
//! - [`CROSS_TENANT_ROLE`] with `BYPASSRLS`, only for the named cross-tenant paths (outbox relay,
//!   webhook worker, job runtime, sweeps, login by email, RBAC's full reload).
//!
//! Migrations keep running as the URL's user, who owns the tables. Roles belong to the cluster,
//! not the database, so every database of a cluster (each test's, each deployment's) shares the
//! two; creating them tolerates their being there already or being created at the same moment.
//! SQLite has neither roles nor policies: there the application's wall stands alone.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

/// The role request connections act as: subject to every policy.
pub const APP_ROLE: &str = "platform_app";
/// The role of the cross-tenant pools: `BYPASSRLS`, owner of nothing.
pub const CROSS_TENANT_ROLE: &str = "platform_system";

/// Every table with a `company_id` this migration finds. Not here: `jobs` and `job_schedules`,
/// whose `company_id` is nullable because a job need not act for a company (a sweep acts for
/// all); only the job runtime, which is cross-tenant, reads them, and a handler takes the company
/// from the row.
const TENANT_TABLES: [&str; 23] = [
    "memberships",
    "roles",
    "casbin_rule",
    "refresh_tokens",
    "api_keys",
    "customers",
    "products",
    "workflows",
    "order_counters",
    "orders",
    "order_items",
    "order_status_history",
    "outbox",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_attempts",
    "provider_secrets",
    "incoming_webhooks",
    "payments",
    "refunds",
    "financial_transactions",
    "payment_settings",
    "invitations",
];

/// The company a statement acts for; an unset or ended setting is NULL, which matches no row.
const COMPANY: &str = "NULLIF(current_setting('app.company_id', true), '')::uuid";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let connection = manager.get_connection();
        connection.execute_unprepared(&create_roles()).await?;
        connection.execute_unprepared(&grants()).await?;
        for table in TENANT_TABLES {
            enable_row_level_security(manager, table).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let connection = manager.get_connection();
        for table in TENANT_TABLES {
            connection
                .execute_unprepared(&format!(
                    "DROP POLICY IF EXISTS tenant_isolation ON \"{table}\";
                     ALTER TABLE \"{table}\" NO FORCE ROW LEVEL SECURITY;
                     ALTER TABLE \"{table}\" DISABLE ROW LEVEL SECURITY;"
                ))
                .await?;
        }
        // The roles stay: other databases of the cluster may still use them.
        connection
            .execute_unprepared(&format!(
                "DO $$ BEGIN
                   EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON TABLES FROM {APP_ROLE}, {CROSS_TENANT_ROLE}', current_schema());
                   EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON SEQUENCES FROM {APP_ROLE}, {CROSS_TENANT_ROLE}', current_schema());
                   EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM {APP_ROLE}, {CROSS_TENANT_ROLE}', current_schema());
                   EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM {APP_ROLE}, {CROSS_TENANT_ROLE}', current_schema());
                   EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM {APP_ROLE}, {CROSS_TENANT_ROLE}', current_schema());
                 END $$"
            ))
            .await?;
        Ok(())
    }
}

/// Puts `table` (which has a `company_id uuid` column) behind the tenant policy, also for its
/// owner. A later migration that creates a tenant table calls this; the grants reach it through
/// the default privileges set here. Nothing happens on SQLite.
pub async fn enable_row_level_security(
    manager: &SchemaManager<'_>,
    table: &str,
) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    manager
        .get_connection()
        .execute_unprepared(&format!(
            "ALTER TABLE \"{table}\" ENABLE ROW LEVEL SECURITY;
             ALTER TABLE \"{table}\" FORCE ROW LEVEL SECURITY;
             CREATE POLICY tenant_isolation ON \"{table}\"
                 USING (company_id = {COMPANY}) WITH CHECK (company_id = {COMPANY});"
        ))
        .await?;
    Ok(())
}

/// Creates the two roles unless they exist and lets the migrating user switch to them. Another
/// database of the cluster migrating at the same moment may create a role between the check and
/// the `CREATE` (`unique_violation`), or it may already exist (`duplicate_object`): either way
/// the role is there. A superuser is a member of every role already; anyone else needs the
/// membership to `SET ROLE`. Creating a `BYPASSRLS` role takes a superuser, so a deployment whose
/// URL's user is not one has its administrator create both roles once beforehand.
fn create_roles() -> String {
    let create = |role: &str, attributes: &str| {
        format!(
            "IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
               BEGIN
                 CREATE ROLE {role} NOLOGIN {attributes};
               EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
               END;
             END IF;
             IF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN
               EXECUTE format('GRANT {role} TO %I', current_user);
             END IF;"
        )
    };
    format!(
        "DO $$ BEGIN {} {} END $$",
        create(APP_ROLE, "NOBYPASSRLS"),
        create(CROSS_TENANT_ROLE, "BYPASSRLS"),
    )
}

/// Data privileges on every table and sequence of the schema, now and for tables later
/// migrations create; not the migrations' own bookkeeping, and nothing that changes the schema.
fn grants() -> String {
    format!(
        "DO $$ BEGIN
           EXECUTE format('GRANT USAGE ON SCHEMA %I TO {APP_ROLE}, {CROSS_TENANT_ROLE}', current_schema());
           EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO {APP_ROLE}, {CROSS_TENANT_ROLE}', current_schema());
           EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO {APP_ROLE}, {CROSS_TENANT_ROLE}', current_schema());
           EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}, {CROSS_TENANT_ROLE}', current_schema());
           EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE}, {CROSS_TENANT_ROLE}', current_schema());
           REVOKE ALL ON seaql_migrations FROM {APP_ROLE}, {CROSS_TENANT_ROLE};
         END $$"
    )
}
