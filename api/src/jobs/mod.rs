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
//!   caps how many of a key's jobs run at once (across instances, or on each instance alone
//!   until the handler lets go of the key: [`KeyLimit::per_instance`]) and how many start per
//!   interval; a key at its cap is left out of the claim, so its backlog never holds back
//!   other keys' jobs;
//!   [`Jobs::pause_key`] holds them until [`Jobs::resume_key`]. [`Jobs::cancel`] withdraws a job.
//! - [`Recurring`] schedules are cron patterns read in a time zone (a company's, where asked);
//!   declared with [`Runtime::schedule`] (written by [`Runtime::declare_schedules`] as the server
//!   starts) or per company with [`Jobs::schedule`]; each tick enqueues one job, however many
//!   instances run ([`schedule`]).
//! - A handler that records its work in a transaction of its own can end its attempt in that
//!   same transaction ([`Jobs::finish_within`], then [`JobContext::finished`]): the job's end
//!   and the record of its work commit together, many jobs in one statement, and the runtime
//!   writes nothing more for them. The webhook worker records its attempts so, in batches.
//! - Several runtimes may share one [`Jobs`] handle ([`Runtime::sharing`]), each with its own
//!   queues, pool, lease and slots; enqueuing through the handle wakes them all.
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

use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

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
    id: Option<Uuid>,
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

    /// The job's id: a job that stands for one row (a webhook delivery) takes that row's id,
    /// so the row has one job however often it is enqueued ([`Jobs::enqueue_many`],
    /// [`Jobs::rerun`]).
    pub fn id(mut self, id: Uuid) -> Self {
        self.id = Some(id);
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
    /// The claim holding the job: [`Jobs::finish_within`] writes only while it still does.
    lease_id: Uuid,
    /// Set by [`JobContext::finished`]; shared with the runtime's copy of the context.
    finished: Arc<OnceLock<Finished>>,
    /// The job's place in its key's per-instance count, until [`JobContext::release_key`].
    key_slot: Arc<Mutex<Option<runtime::KeySlot>>>,
}

/// How an attempt recorded by its handler ended, for the runtime's counters.
#[derive(Clone, Copy, Debug)]
struct Finished {
    status: Status,
    failed: bool,
}

impl JobContext {
    /// Tells the runtime that `finish`, written by [`Jobs::finish_within`] in a transaction
    /// that has committed, ends this attempt: once the handler returns `Ok`, the runtime
    /// counts it and writes nothing more. Call it only after the commit — a job whose end was
    /// never written would stay running until its lease expired.
    pub fn finished(&self, finish: &Finish) {
        let finished = match finish {
            Finish::Done => Finished {
                status: Status::Done,
                failed: false,
            },
            Finish::Again { error, .. } => Finished {
                status: Status::Queued,
                failed: error.is_some(),
            },
            Finish::Dead(_) => Finished {
                status: Status::Dead,
                failed: true,
            },
        };
        // A second call for one attempt changes nothing: the first end was written.
        let _ = self.finished.set(finished);
    }

    /// Gives back the job's place in its key's per-instance concurrency
    /// ([`KeyLimit::per_instance`]) before the handler returns: the part the limit is for is
    /// over (a webhook's request has its answer) and only bookkeeping is left. The runtime
    /// does it when the job ends, if the handler did not.
    pub fn release_key(&self) {
        let slot = self
            .key_slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(slot);
    }

    /// Whether [`JobContext::finished`] was called.
    pub fn is_finished(&self) -> bool {
        self.finished.get().is_some()
    }

    fn finished_as(&self) -> Option<Finished> {
        self.finished.get().copied()
    }
}

/// How a handler that records its own outcome ends an attempt ([`Jobs::finish_within`]).
#[derive(Clone, Debug)]
pub enum Finish {
    Done,
    /// Runs again at `at`; `error` says why when the attempt failed (`None`: it was only
    /// held back, e.g. its key got paused).
    Again {
        at: DateTime<Utc>,
        error: Option<String>,
    },
    /// No further attempt; the error stays on the job.
    Dead(String),
}

/// Enqueues, cancels and pauses jobs; cheap to clone. Every instance's handle works on every
/// instance's jobs: they live in the database.
#[derive(Clone)]
pub struct Jobs {
    clock: Arc<dyn Clock>,
    /// One per runtime sharing this handle: a `Notify` keeps a wake for a runtime that is busy
    /// claiming, which one shared by several would hand to only one of them.
    wakes: Arc<RwLock<Vec<Arc<Notify>>>>,
}

impl Jobs {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            wakes: Arc::default(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// What a runtime on this handle waits on.
    fn subscribe(&self) -> Arc<Notify> {
        let wake = Arc::new(Notify::new());
        self.wakes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(wake.clone());
        wake
    }

    /// Wakes every runtime on this handle to look for due work now; call it after committing
    /// jobs enqueued by [`Jobs::enqueue_many`].
    pub fn wake(&self) {
        for wake in self
            .wakes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            wake.notify_one();
        }
    }

    /// Writes `job` on `conn` (a caller's transaction, so it commits with the caller's data)
    /// and returns its id — the first job's id when its idempotency key was used before.
    /// It wakes the runtimes, which is enough on a connection that commits each statement; in
    /// a transaction they must be woken again after the commit ([`Jobs::wake`]), or a
    /// runtime that looked meanwhile waits for its next poll.
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
        let idempotency_key = options.idempotency_key.clone();
        let id = options.id.unwrap_or_else(Uuid::now_v7);
        let row = self.row(queue, payload, options.id(id));
        let inserted = job::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([job::Column::Queue, job::Column::IdempotencyKey])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
        if inserted == 1 {
            self.wake();
            return Ok(id);
        }
        #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
        let existing = job::Entity::find()
            .filter(job::Column::Queue.eq(queue))
            .filter(job::Column::IdempotencyKey.eq(idempotency_key))
            .one(conn)
            .await?
            .ok_or_else(|| anyhow::anyhow!("a {queue} job was neither inserted nor found"))?;
        Ok(existing.id)
    }

    /// A new queued job's row.
    fn row(&self, queue: &str, payload: String, options: Enqueue) -> job::ActiveModel {
        let now = self.clock.now();
        job::ActiveModel {
            id: Set(options.id.unwrap_or_else(Uuid::now_v7)),
            queue: Set(queue.to_string()),
            payload: Set(payload),
            priority: Set(options.priority),
            run_at: Set(options.run_at.unwrap_or(now)),
            status: Set(Status::Queued.as_str().to_string()),
            attempts: Set(0),
            idempotency_key: Set(options.idempotency_key),
            job_key: Set(options.key),
            company_id: Set(options.company_id),
            lease_id: Set(None),
            leased_until: Set(None),
            last_error: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            started_at: Set(None),
            finished_at: Set(None),
        }
    }

    /// Writes many jobs of one queue with one statement on `conn` (a caller's transaction);
    /// a job whose id ([`Enqueue::id`]) is taken is left as it is. Idempotency keys are for
    /// [`Jobs::enqueue`]. Does not wake the runtimes — a runtime woken before the caller
    /// commits finds nothing —, so call [`Jobs::wake`] after the commit.
    pub async fn enqueue_many<J: Job>(
        &self,
        conn: &impl ConnectionTrait,
        jobs: impl IntoIterator<Item = (J, Enqueue)>,
    ) -> anyhow::Result<()> {
        let mut rows = Vec::new();
        for (payload, options) in jobs {
            anyhow::ensure!(
                options.idempotency_key.is_none(),
                "enqueue_many takes no idempotency keys"
            );
            rows.push(self.row(J::QUEUE, serde_json::to_string(&payload)?, options));
        }
        if rows.is_empty() {
            return Ok(());
        }
        job::Entity::insert_many(rows)
            .on_conflict(OnConflict::column(job::Column::Id).do_nothing().to_owned())
            .exec_without_returning(conn)
            .await?;
        Ok(())
    }

    /// Runs job `id` again from its first attempt at `at`, unless it is running (its handler
    /// records that attempt first); returns whether it did. A job pruned since it finished is
    /// not there any more: the caller enqueues it anew with the same id.
    pub async fn rerun(
        &self,
        conn: &impl ConnectionTrait,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let now = self.clock.now();
        #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
        let rerun = job::Entity::update_many()
            .col_expr(job::Column::Status, Expr::value(Status::Queued.as_str()))
            .col_expr(job::Column::RunAt, Expr::value(at))
            .col_expr(job::Column::Attempts, Expr::value(0))
            .col_expr(job::Column::LastError, Expr::value(Option::<String>::None))
            .col_expr(
                job::Column::FinishedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(job::Column::UpdatedAt, Expr::value(now))
            .filter(job::Column::Id.eq(id))
            .filter(job::Column::Status.ne(Status::Running.as_str()))
            .exec(conn)
            .await?;
        Ok(rerun.rows_affected == 1)
    }

    /// Writes how the attempts of `finished` ended, on `conn`: the handler's own transaction,
    /// so each job's end commits with the record of its work, or neither does. An attempt no
    /// longer held by its claim (cancelled, or its lease expired and it was claimed again) is
    /// left alone. After the commit, call [`JobContext::finished`] for each.
    pub async fn finish_within(
        &self,
        conn: &impl ConnectionTrait,
        finished: &[(&JobContext, Finish)],
    ) -> anyhow::Result<()> {
        let now = self.clock.now();
        let done: Vec<&JobContext> = finished
            .iter()
            .filter(|(_, finish)| matches!(finish, Finish::Done))
            .map(|(context, _)| *context)
            .collect();
        if !done.is_empty() {
            // Lease ids are unique per claim, so matching either list is matching the pair.
            #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
            job::Entity::update_many()
                .col_expr(job::Column::Status, Expr::value(Status::Done.as_str()))
                .col_expr(job::Column::LeaseId, Expr::value(Option::<Uuid>::None))
                .col_expr(
                    job::Column::LeasedUntil,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .col_expr(job::Column::LastError, Expr::value(Option::<String>::None))
                .col_expr(job::Column::FinishedAt, Expr::value(now))
                .col_expr(job::Column::UpdatedAt, Expr::value(now))
                .filter(job::Column::Id.is_in(done.iter().map(|context| context.id)))
                .filter(job::Column::Status.eq(Status::Running.as_str()))
                .filter(job::Column::LeaseId.is_in(done.iter().map(|context| context.lease_id)))
                .exec(conn)
                .await?;
        }
        for (context, finish) in finished {
            let (status, run_at, error, finished_at) = match finish {
                Finish::Done => continue,
                Finish::Again { at, error } => (Status::Queued, Some(*at), error.clone(), None),
                Finish::Dead(error) => (Status::Dead, None, Some(error.clone()), Some(now)),
            };
            #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
            let mut update = job::Entity::update_many()
                .col_expr(job::Column::Status, Expr::value(status.as_str()))
                .col_expr(job::Column::LeaseId, Expr::value(Option::<Uuid>::None))
                .col_expr(
                    job::Column::LeasedUntil,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .col_expr(job::Column::LastError, Expr::value(error))
                .col_expr(job::Column::FinishedAt, Expr::value(finished_at))
                .col_expr(job::Column::UpdatedAt, Expr::value(now));
            if let Some(at) = run_at {
                update = update.col_expr(job::Column::RunAt, Expr::value(at));
            }
            update
                .filter(job::Column::Id.eq(context.id))
                .filter(job::Column::Status.eq(Status::Running.as_str()))
                .filter(job::Column::LeaseId.eq(context.lease_id))
                .exec(conn)
                .await?;
        }
        Ok(())
    }

    /// Whether job `id` exists (it may have been pruned since it finished).
    pub async fn exists(&self, conn: &impl ConnectionTrait, id: Uuid) -> anyhow::Result<bool> {
        #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
        let found = job::Entity::find_by_id(id).one(conn).await?;
        Ok(found.is_some())
    }

    /// Withdraws a job that has not finished; returns whether it did. A running job's handler
    /// is not interrupted, but its outcome is ignored and it does not run again.
    pub async fn cancel(&self, conn: &impl ConnectionTrait, id: Uuid) -> anyhow::Result<bool> {
        let now = self.clock.now();
        #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
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
        self.wake();
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
