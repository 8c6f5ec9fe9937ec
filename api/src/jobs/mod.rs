//! The durable job runtime: background work as rows in the database, so it survives restarts
//! and any instance can run it.
//!
//! A tour:
//! - A [`Job`] is a serde payload with a queue name ([`Job::QUEUE`]); [`Runtime::handle`]
//!   registers the async handler that runs it.
//! - [`Jobs::enqueue`] writes a job on the caller's connection — inside the caller's
//!   transaction, so the work and the data it is about commit together, or neither does.
//!   [`Enqueue`] sets its priority, when it may run (`run_at`: delayed and scheduled work),
//!   an idempotency key (enqueuing the same key again returns the first job) and a job key.
//! - The [`Runtime`] of each instance claims due jobs, best priority first, and leases them:
//!   on PostgreSQL the candidates are read `FOR UPDATE SKIP LOCKED`, so instances share the work
//!   without waiting on each other; on SQLite the claim's first statement is a write, which
//!   takes the database's write lock. A running job's lease is renewed while its handler works;
//!   a killed instance's lease expires and the job runs again (at least once, never twice at a
//!   time). Failures come back after a [`RetryPolicy`] wait with jitter; after the last attempt
//!   the job is `DEAD` with its last error.
//! - A job key (a WhatsApp instance, a company) groups jobs across queues: [`Runtime::limit`]
//!   caps how many of a key's jobs run at once and how many start per interval;
//!   [`Jobs::pause_key`] holds them until [`Jobs::resume_key`]. [`Jobs::cancel`] withdraws a job.
//! - [`Recurring`] schedules are cron patterns read in a time zone (a company's, where asked);
//!   declared with [`Runtime::schedule`] (written by [`Runtime::declare_schedules`] as the server
//!   starts) or per company with [`Jobs::schedule`]; each tick enqueues one job, however many
//!   instances run ([`schedule`]).
//! - Every decision by time reads a [`Clock`]; tests move a [`ManualClock`].
//! - Metrics per queue: `jobs_queued`, `jobs_running` (gauges), `jobs_completed_total`,
//!   `jobs_failed_total`, `jobs_dead_total` (counters), `job_wait_seconds` (due to started) and
//!   `job_duration_seconds` (histograms).
//!
//! Jobs are not tenant data by themselves: reading the `jobs` table across companies is one of
//! the named cross-tenant paths, and the runtime is its only reader. A job acting for a company
//! carries its id ([`Enqueue::company`]); the handler gets it as [`JobContext::company_id`] — a
//! company id read from a row by a cross-tenant job — and acts for that company only, through
//! the tenant helpers of the services with that id, never by reading other companies' rows.

mod clock;
mod retry;
mod runtime;
pub mod schedule;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::{job, job_key};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set,
    sea_query::{Expr, OnConflict},
};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::Notify;
use uuid::Uuid;

pub use clock::{Clock, ManualClock, SystemClock};
pub use retry::RetryPolicy;
pub use runtime::{KeyLimit, Rate, Runtime, RuntimeSettings};
pub use schedule::Recurring;

/// A kind of background work: its payload, and the queue its handler is registered under.
pub trait Job: Serialize + DeserializeOwned + Send + 'static {
    /// The queue's name, e.g. `payments.expire-overdue`; stored with each job.
    const QUEUE: &'static str;
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Queued,
    Running,
    Done,
    /// Retries exhausted; `last_error` says why.
    Dead,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::Done => "DONE",
            Self::Dead => "DEAD",
            Self::Cancelled => "CANCELLED",
        }
    }
}

/// How a job is enqueued; the default runs it now, at priority 0, once per call.
#[derive(Clone, Debug, Default)]
pub struct Enqueue {
    priority: i32,
    run_at: Option<DateTime<Utc>>,
    idempotency_key: Option<String>,
    key: Option<String>,
    company_id: Option<Uuid>,
}

impl Enqueue {
    /// Higher runs first among jobs due at once.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Not before `at`.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Enqueuing the same key on the same queue again returns the first job instead of adding
    /// one, for as long as the first job is kept (finished jobs are pruned after a week).
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// The job key its limits and pauses go by, e.g. `whatsapp:{instance}` or
    /// `company:{id}` (see [`Runtime::limit`]).
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The company the job acts for.
    pub fn company(mut self, company_id: Uuid) -> Self {
        self.company_id = Some(company_id);
        self
    }
}

/// What a handler knows about the job it runs.
#[derive(Clone, Debug)]
pub struct JobContext {
    pub id: Uuid,
    /// 1 on the first attempt.
    pub attempt: u32,
    /// The company the job acts for, read from the job's row: a cross-tenant path, to be
    /// used for that company alone.
    pub company_id: Option<Uuid>,
    pub key: Option<String>,
    /// When the runtime claimed this attempt, by its clock (what rate limits count).
    pub started_at: DateTime<Utc>,
}

/// Enqueues, cancels and pauses jobs; cheap to clone. Every instance's handle works on every
/// instance's jobs: they live in the database.
#[derive(Clone)]
pub struct Jobs {
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
}

impl Jobs {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Writes `job` on `conn` (a caller's transaction, so it commits with the caller's data)
    /// and returns its id — the first job's id when its idempotency key was used before.
    pub async fn enqueue<J: Job>(
        &self,
        conn: &impl ConnectionTrait,
        payload: &J,
        options: Enqueue,
    ) -> anyhow::Result<Uuid> {
        self.enqueue_raw(conn, J::QUEUE, serde_json::to_string(payload)?, options)
            .await
    }

    /// [`Jobs::enqueue`] for a payload already serialised (a schedule's).
    async fn enqueue_raw(
        &self,
        conn: &impl ConnectionTrait,
        queue: &str,
        payload: String,
        options: Enqueue,
    ) -> anyhow::Result<Uuid> {
        let now = self.clock.now();
        let id = Uuid::now_v7();
        let inserted = job::Entity::insert(job::ActiveModel {
            id: Set(id),
            queue: Set(queue.to_string()),
            payload: Set(payload),
            priority: Set(options.priority),
            run_at: Set(options.run_at.unwrap_or(now)),
            status: Set(Status::Queued.as_str().to_string()),
            attempts: Set(0),
            idempotency_key: Set(options.idempotency_key.clone()),
            job_key: Set(options.key),
            company_id: Set(options.company_id),
            lease_id: Set(None),
            leased_until: Set(None),
            last_error: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            started_at: Set(None),
            finished_at: Set(None),
        })
        .on_conflict(
            OnConflict::columns([job::Column::Queue, job::Column::IdempotencyKey])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
        if inserted == 1 {
            self.wake.notify_one();
            return Ok(id);
        }
        let existing = job::Entity::find()
            .filter(job::Column::Queue.eq(queue))
            .filter(job::Column::IdempotencyKey.eq(options.idempotency_key))
            .one(conn)
            .await?
            .ok_or_else(|| anyhow::anyhow!("a {queue} job was neither inserted nor found"))?;
        Ok(existing.id)
    }

    /// Withdraws a job that has not finished; returns whether it did. A running job's handler
    /// is not interrupted, but its outcome is ignored and it does not run again.
    pub async fn cancel(&self, conn: &impl ConnectionTrait, id: Uuid) -> anyhow::Result<bool> {
        let now = self.clock.now();
        let cancelled = job::Entity::update_many()
            .col_expr(job::Column::Status, Expr::value(Status::Cancelled.as_str()))
            .col_expr(job::Column::LeaseId, Expr::value(Option::<Uuid>::None))
            .col_expr(
                job::Column::LeasedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(job::Column::FinishedAt, Expr::value(now))
            .col_expr(job::Column::UpdatedAt, Expr::value(now))
            .filter(job::Column::Id.eq(id))
            .filter(job::Column::Status.is_in([Status::Queued.as_str(), Status::Running.as_str()]))
            .exec(conn)
            .await?;
        Ok(cancelled.rows_affected == 1)
    }

    /// Holds every job with this key (none starts) until [`Jobs::resume_key`]; running ones
    /// finish.
    pub async fn pause_key(&self, conn: &impl ConnectionTrait, key: &str) -> anyhow::Result<()> {
        self.set_paused(conn, key, true).await
    }

    pub async fn resume_key(&self, conn: &impl ConnectionTrait, key: &str) -> anyhow::Result<()> {
        self.set_paused(conn, key, false).await?;
        self.wake.notify_one();
        Ok(())
    }

    async fn set_paused(
        &self,
        conn: &impl ConnectionTrait,
        key: &str,
        paused: bool,
    ) -> anyhow::Result<()> {
        job_key::Entity::insert(job_key::ActiveModel {
            key: Set(key.to_string()),
            paused: Set(paused),
            recent_starts: Set("[]".to_string()),
            updated_at: Set(self.clock.now()),
        })
        .on_conflict(
            OnConflict::column(job_key::Column::Key)
                .update_columns([job_key::Column::Paused, job_key::Column::UpdatedAt])
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
        Ok(())
    }
}
