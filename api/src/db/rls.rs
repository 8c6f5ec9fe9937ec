//! Row-level security on PostgreSQL: which role a pool acts as, and how a transaction names its
//! company to the policies (`migration::enable_row_level_security`).
//!
//! Every pool logs in as the URL's user, who owns the tables, and switches at once to the role
//! its work calls for through the connection's startup options (`-c role=…`), which holds for
//! the connection's life (`RESET ROLE` or `DISCARD ALL` come back to it, not to the owner). The
//! migration creates the roles and lets the URL's user take them, so `DATABASE_URL` alone is
//! enough. SQLite has no roles: there the application's scoping is the only wall.

use anyhow::Context;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use super::tenant::CompanyId;

/// Who a pool's connections act as on PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The URL's user, owner of the tables: migrations and the command line.
    Owner,
    /// Requests: held by the policies to the company a transaction sets, seeing nothing
    /// without one.
    Tenant,
    /// The cross-tenant paths (outbox relay, webhook worker, job runtime, sweeps, login by
    /// email, RBAC's full reload, operator): past the policies, owning nothing.
    CrossTenant,
}

impl Role {
    /// The role the connections switch to, if any.
    pub fn postgres_role(self) -> Option<&'static str> {
        match self {
            Self::Owner => None,
            Self::Tenant => Some(migration::APP_ROLE),
            Self::CrossTenant => Some(migration::CROSS_TENANT_ROLE),
        }
    }
}

/// The setting the policies compare `company_id` with.
pub const COMPANY_SETTING: &str = "app.company_id";

/// Opens a read-only transaction for `company`'s rows, as one simple-protocol message: it needs
/// no statement prepared first, so nothing can overtake it on the connection.
pub(super) fn begin_reads(company: CompanyId) -> String {
    // A uuid's text is hex digits and dashes: nothing to quote.
    format!("BEGIN READ ONLY; SELECT set_config('{COMPANY_SETTING}', '{company}', true)")
}

/// Refuses a request pool the policies would not hold: one acting as a superuser, a role with
/// `BYPASSRLS`, or the owner of a table. It would work, and every query would see every company.
pub async fn check_tenant_pool(db: &DatabaseConnection) -> anyhow::Result<()> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_user::text, rolsuper OR rolbypassrls,
                    EXISTS (SELECT FROM pg_class WHERE relowner = pg_roles.oid)
             FROM pg_roles WHERE rolname = current_user",
        ))
        .await
        .context("Failed to look up the request pool's role")?
        .context("the request pool's role is not in pg_roles")?;
    let role: String = row.try_get_by_index(0)?;
    let bypasses: bool = row.try_get_by_index(1)?;
    let owns: bool = row.try_get_by_index(2)?;
    anyhow::ensure!(
        !bypasses && !owns,
        "requests would act as {role}, which {}: row-level security would not hold them",
        if bypasses {
            "bypasses row-level security"
        } else {
            "owns tables"
        }
    );
    Ok(())
}
