//! `jobs`: one unit of background work of the job runtime (`api::jobs`). Not tenant data by
//! itself; `company_id` says for whom the job acts, when it does.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The handler's name, e.g. `payments.expire-overdue`.
    pub queue: String,
    /// The handler's typed payload, as JSON.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    /// Higher runs first among due jobs.
    pub priority: i32,
    /// Not claimed before this; also when the next retry is due.
    pub run_at: DateTimeUtc,
    /// `QUEUED`, `RUNNING`, `DONE`, `DEAD` (retries exhausted) or `CANCELLED`.
    pub status: String,
    /// Claims so far, the running one included.
    pub attempts: i32,
    /// Unique per queue: enqueuing it again returns the existing job.
    pub idempotency_key: Option<String>,
    /// The key limits and pauses apply to (a WhatsApp instance, a company…).
    pub job_key: Option<String>,
    pub company_id: Option<Uuid>,
    /// The claim holding the job; a stale worker's outcome carries an old one and is ignored.
    pub lease_id: Option<Uuid>,
    pub leased_until: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
