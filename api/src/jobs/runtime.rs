//! The runtime of one instance: claims due jobs, runs their handlers, records the outcome.
//! See the module tour in [`super`] for what it guarantees.

use std::{
    collections::{BTreeSet, HashMap},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::{job, job_key};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, Set, Statement, TransactionTrait,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType, OnConflict, Query},
};
use tokio::{sync::watch, task::JoinSet};
use uuid::Uuid;

use super::{Clock, Job, JobContext, Jobs, Recurring, RetryPolicy, Status, SystemClock};

/// How the runtime of one instance behaves.
#[derive(Clone, Debug)]
pub struct RuntimeSettings {
    /// Jobs this instance runs at once.
    pub max_in_flight: usize,
    /// How long a claim holds a job; renewed while its handler runs, so this is how long a
    /// killed instance's jobs wait before running elsewhere.
    pub lease: Duration,
    /// How often the runtime looks for due work without being woken (other instances' jobs,
    /// retries and delays coming due, schedule ticks).
    pub poll: Duration,
    /// Finished and cancelled jobs are deleted this long after they finished; dead ones stay.
    pub retention: Duration,
    /// Claim again once this many slots are free, or a moment after the first one freed:
    /// for short jobs a claim after each would cost a transaction per job.
    pub claim_batch: usize,
    /// Whether this runtime fires the recurring schedules. One runtime per instance does;
    /// others sharing its [`Jobs`] handle leave them to it rather than look too.
    pub fires_schedules: bool,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            max_in_flight: 16,
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(500),
            retention: Duration::from_secs(7 * 24 * 60 * 60),
            claim_batch: 1,
            fires_schedules: true,
        }
    }
}

/// How often the gauges are read from the table.
const METRICS_EVERY: Duration = Duration::from_secs(5);
/// How often finished jobs are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);
/// How long a freed slot waits for others (see [`RuntimeSettings::claim_batch`]).
const REFILL_DELAY: Duration = Duration::from_millis(5);
/// Candidates read beyond the free slots, so jobs held back by a key's limits do not starve
/// the ones behind them.
const LOOKAHEAD: usize = 32;
/// The most candidates one claim reads: on PostgreSQL each is locked until the claim commits,
/// and a runtime with many free slots claims again at once for the rest.
const MAX_CANDIDATES: usize = 64;

/// At most `count` starts within any `per`.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub count: usize,
    pub per: Duration,
}

/// The limits of a job key: all keys `{name}:…` (or the key `{name}` itself) share them,
/// each key counted on its own, across queues and instances.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyLimit {
    /// Jobs of one key running at once.
    pub concurrency: Option<usize>,
    pub rate: Option<Rate>,
    /// Counts `concurrency` on each instance alone, in memory, from the claim until the
    /// handler lets go of the key ([`JobContext::release_key`]) or ends — instead of across
    /// instances from the table, until the job's end is written. For work whose limited part
    /// (a webhook's request) ends before its bookkeeping does.
    pub per_instance: bool,
}

/// The jobs of per-instance limited keys running on this instance, by key.
type LocalCounts = Arc<Mutex<HashMap<String, usize>>>;

/// A job's place in its key's per-instance count ([`KeyLimit::per_instance`]); dropping it
/// gives the place back and lets the runtime claim again.
#[derive(Debug)]
pub(super) struct KeySlot {
    counts: LocalCounts,
    key: String,
    released: Arc<tokio::sync::Notify>,
}

impl Drop for KeySlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
        drop(counts);
        self.released.notify_one();
    }
}

type HandlerFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;
type Handler = Arc<dyn Fn(JobContext, String) -> Result<HandlerFuture, String> + Send + Sync>;

struct Queue {
    handler: Handler,
    retry: RetryPolicy,
}

/// The job runtime of one instance: register handlers, limits and schedules, then
/// [`Runtime::run`].
pub struct Runtime {
    db: DatabaseConnection,
    jobs: Jobs,
    settings: RuntimeSettings,
    queues: HashMap<&'static str, Queue>,
    limits: HashMap<String, KeyLimit>,
    schedules: Vec<Recurring>,
    wake: Arc<tokio::sync::Notify>,
    local: LocalCounts,
    /// Notified when a job gives back its place in a per-instance count.
    released: Arc<tokio::sync::Notify>,
}

impl Runtime {
    /// A runtime on `db` (its own pool: job claims should not wait behind requests).
    pub fn new(db: DatabaseConnection, settings: RuntimeSettings) -> Self {
        Self::with_clock(db, settings, Arc::new(SystemClock))
    }

    pub fn with_clock(
        db: DatabaseConnection,
        settings: RuntimeSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::sharing(db, settings, &Jobs::new(clock))
    }

    /// A runtime on `jobs`, a handle other runtimes of this instance share: it runs the queues
    /// registered on it alone, with its own pool, slots and lease, and wakes whenever any job
    /// is enqueued through the handle.
    pub fn sharing(db: DatabaseConnection, settings: RuntimeSettings, jobs: &Jobs) -> Self {
        Self {
            db,
            wake: jobs.subscribe(),
            jobs: jobs.clone(),
            settings,
            queues: HashMap::new(),
            limits: HashMap::new(),
            schedules: Vec::new(),
            local: LocalCounts::default(),
            released: Arc::default(),
        }
    }

    /// The handle to enqueue, cancel and pause with; it also wakes this runtime.
    pub fn jobs(&self) -> Jobs {
        self.jobs.clone()
    }

    /// Runs `J`'s jobs with `handler`; an error is a failed attempt, retried by `retry`. A
    /// payload that does not decode as `J` is dead at once: no retry would change it.
    pub fn handle<J, F, Fut>(&mut self, retry: RetryPolicy, handler: F) -> &mut Self
    where
        J: Job,
        F: Fn(JobContext, J) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.queues.insert(
            J::QUEUE,
            Queue {
                handler: Arc::new(move |context, payload| {
                    let job: J = serde_json::from_str(&payload)
                        .map_err(|error| format!("the payload is not a {}: {error}", J::QUEUE))?;
                    Ok(Box::pin(handler(context, job)))
                }),
                retry,
            },
        );
        self
    }

    /// Limits every job key named `name` or starting with `{name}:`.
    pub fn limit(&mut self, name: impl Into<String>, limit: KeyLimit) -> &mut Self {
        self.limits.insert(name.into(), limit);
        self
    }

    /// Declares a recurring schedule, written (or updated) by [`Runtime::declare_schedules`].
    pub fn schedule(&mut self, recurring: Recurring) -> &mut Self {
        self.schedules.push(recurring);
        self
    }

    /// Writes the declared schedules. The server does it while it starts, before it serves:
    /// on SQLite a write racing the first requests' transactions could fail one of them.
    pub async fn declare_schedules(&self) -> anyhow::Result<()> {
        for recurring in &self.schedules {
            self.jobs
                .schedule(&self.db, recurring)
                .await
                .with_context(|| format!("declaring the job schedule {}", recurring.name()))?;
        }
        Ok(())
    }

    /// Runs until `stop` turns true, then lets running jobs finish within one lease (jobs
    /// still running after that keep their lease, which expires, and run again elsewhere) and
    /// closes the runtime's pool.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let runtime = Arc::new(self);
        let mut tasks: JoinSet<()> = JoinSet::new();
        let (mut schedules_fired, mut gauges_read, mut pruned, mut leases_checked) =
            (None, None, None, None);
        let mut freed = 0;
        let mut claim_now = true;
        loop {
            // Ticks are seconds apart at the finest: no need to look on every wake.
            if runtime.settings.fires_schedules
                && elapsed(&mut schedules_fired, runtime.settings.poll)
                && let Err(error) = runtime.jobs.fire_due_schedules(&runtime.db).await
            {
                tracing::warn!(error = ?error, "firing job schedules failed; retrying");
            }
            // A killed instance's leases expire a lease after its last renewal: looking once
            // per poll is soon enough, and spares each claim a write over the running jobs.
            let mut requeue_expired =
                claim_now && elapsed(&mut leases_checked, runtime.settings.poll);
            while claim_now && tasks.len() < runtime.settings.max_in_flight {
                let free = runtime.settings.max_in_flight - tasks.len();
                match runtime
                    .claim(free, std::mem::take(&mut requeue_expired))
                    .await
                {
                    Ok(claimed) if claimed.is_empty() => break,
                    Ok(claimed) => {
                        for job in claimed {
                            let slot = runtime.take_slot(&job);
                            tasks.spawn(runtime.clone().execute(job, slot));
                        }
                    }
                    Err(error) => {
                        tracing::warn!(error = ?error, "claiming jobs failed; retrying");
                        break;
                    }
                }
            }
            if elapsed(&mut gauges_read, METRICS_EVERY)
                && let Err(error) = runtime.report_gauges().await
            {
                tracing::warn!(error = ?error, "reading job gauges failed");
            }
            if elapsed(&mut pruned, PRUNE_EVERY)
                && let Err(error) = runtime.prune().await
            {
                tracing::warn!(error = ?error, "pruning finished jobs failed");
            }
            if claim_now {
                freed = 0;
            }
            let idle = if freed > 0 {
                REFILL_DELAY
            } else {
                runtime.settings.poll
            };
            claim_now = tokio::select! {
                () = runtime.wake.notified() => true,
                () = tokio::time::sleep(idle) => true,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                    freed += 1;
                    freed >= runtime.settings.claim_batch
                }
                () = runtime.released.notified() => {
                    freed += 1;
                    freed >= runtime.settings.claim_batch
                }
                _ = stop.wait_for(|stopped| *stopped) => break,
            };
        }
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(runtime.settings.lease, drain)
            .await
            .is_err()
        {
            tracing::warn!("jobs still running at shutdown; their leases will expire");
        }
        if let Err(error) = runtime.db.clone().close().await {
            tracing::warn!(error = ?error, "closing the job runtime's pool failed");
        }
    }

    /// Counts a claimed job in its key's per-instance count, when its key has one.
    fn take_slot(&self, job: &job::Model) -> Option<KeySlot> {
        let key = job.job_key.as_deref()?;
        self.limit_of(key).filter(|limit| limit.per_instance)?;
        *self
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.to_string())
            .or_default() += 1;
        Some(KeySlot {
            counts: self.local.clone(),
            key: key.to_string(),
            released: self.released.clone(),
        })
    }

    /// How many of `key`'s jobs this instance runs, by its per-instance count.
    fn running_here(&self, key: &str) -> usize {
        self.local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// The limits of `key`: its own name's, or its prefix's before the first `:`.
    fn limit_of(&self, key: &str) -> Option<KeyLimit> {
        self.limits
            .get(key)
            .or_else(|| self.limits.get(key.split(':').next()?))
            .copied()
    }

    /// Leases up to `free` due jobs of this runtime's queues, best first, within their keys'
    /// limits, in one transaction; first puts back the jobs whose lease expired, when asked.
    async fn claim(&self, free: usize, requeue_expired: bool) -> anyhow::Result<Vec<job::Model>> {
        let queues: Vec<&str> = self.queues.keys().copied().collect();
        let txn = self.db.begin().await?;
        take_write_lock(&txn).await?;
        // Read after waiting for the lock: rate windows count the time a job really starts.
        let now = self.jobs.now();
        if requeue_expired {
            requeue_expired_leases(&txn, &queues, now).await?;
        }
        let saturated = self.saturated_keys(&txn).await?;
        let paused_keys = Query::select()
            .column(job_key::Column::Key)
            .from(job_key::Entity)
            .and_where(job_key::Column::Paused.eq(true))
            .to_owned();
        #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
        let mut due = job::Entity::find()
            .filter(job::Column::Status.eq(Status::Queued.as_str()))
            .filter(job::Column::RunAt.lte(now))
            .filter(job::Column::Queue.is_in(queues))
            .filter(
                Condition::any()
                    .add(job::Column::JobKey.is_null())
                    .add(job::Column::JobKey.not_in_subquery(paused_keys)),
            )
            .apply_if(
                (!saturated.is_empty()).then_some(saturated),
                |due, saturated| {
                    due.filter(
                        Condition::any()
                            .add(job::Column::JobKey.is_null())
                            .add(job::Column::JobKey.is_not_in(saturated)),
                    )
                },
            )
            .order_by_desc(job::Column::Priority)
            .order_by_asc(job::Column::RunAt)
            .order_by_asc(job::Column::Id)
            .limit((free + LOOKAHEAD).min(MAX_CANDIDATES) as u64);
        if txn.get_database_backend() == DatabaseBackend::Postgres {
            due = due.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let candidates = due.all(&txn).await?;
        let mut keys = KeyAllowance::lock(self, &txn, &candidates).await?;
        // Again after waiting for other instances' claims of the same keys.
        let now = self.jobs.now();
        keys.open_windows(now);
        let mut claimed = Vec::new();
        let mut dead = Vec::new();
        for candidate in candidates {
            if claimed.len() == free {
                break;
            }
            let Some(queue) = self.queues.get(candidate.queue.as_str()) else {
                continue;
            };
            // A job whose lease expired on its last attempt (its worker was killed each time).
            if u32::try_from(candidate.attempts).unwrap_or(u32::MAX) >= queue.retry.max_attempts {
                dead.push(candidate.id);
                continue;
            }
            if keys.admit(candidate.job_key.as_deref(), now) {
                claimed.push(candidate);
            }
        }
        keys.save(&txn, now).await?;
        if !dead.is_empty() {
            #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
            job::Entity::update_many()
                .col_expr(job::Column::Status, Expr::value(Status::Dead.as_str()))
                .col_expr(job::Column::FinishedAt, Expr::value(now))
                .col_expr(job::Column::UpdatedAt, Expr::value(now))
                .filter(job::Column::Id.is_in(dead))
                .exec(&txn)
                .await?;
        }
        if claimed.is_empty() {
            txn.commit().await?;
            return Ok(claimed);
        }
        let lease_id = Uuid::new_v4();
        let leased_until = now + self.lease();
        #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
        job::Entity::update_many()
            .col_expr(job::Column::Status, Expr::value(Status::Running.as_str()))
            .col_expr(
                job::Column::Attempts,
                Expr::col(job::Column::Attempts).add(1),
            )
            .col_expr(job::Column::LeaseId, Expr::value(lease_id))
            .col_expr(job::Column::LeasedUntil, Expr::value(leased_until))
            .col_expr(job::Column::StartedAt, Expr::value(now))
            .col_expr(job::Column::UpdatedAt, Expr::value(now))
            .filter(job::Column::Id.is_in(claimed.iter().map(|job| job.id)))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        for job in &mut claimed {
            job.status = Status::Running.as_str().to_string();
            job.attempts += 1;
            job.lease_id = Some(lease_id);
            job.leased_until = Some(leased_until);
            job.started_at = Some(now);
        }
        Ok(claimed)
    }

    /// The keys already running as many jobs as their concurrency allows. They are left out
    /// of a claim's candidates, so that one busy key's backlog (a slow webhook endpoint's)
    /// never fills the candidates and holds back the keys behind it.
    async fn saturated_keys(&self, txn: &DatabaseTransaction) -> anyhow::Result<Vec<String>> {
        let shared = self
            .limits
            .values()
            .any(|limit| limit.concurrency.is_some() && !limit.per_instance);
        let mut saturated = Vec::new();
        if shared {
            #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
            let running: Vec<(String, i64)> = job::Entity::find()
                .select_only()
                .column(job::Column::JobKey)
                .column_as(job::Column::Id.count(), "count")
                .filter(job::Column::Status.eq(Status::Running.as_str()))
                .filter(job::Column::JobKey.is_not_null())
                .group_by(job::Column::JobKey)
                .into_tuple()
                .all(txn)
                .await?;
            saturated.extend(
                running
                    .into_iter()
                    .filter(|(key, count)| {
                        self.limit_of(key)
                            .filter(|limit| !limit.per_instance)
                            .and_then(|limit| limit.concurrency)
                            .is_some_and(|limit| {
                                usize::try_from(*count).unwrap_or(usize::MAX) >= limit
                            })
                    })
                    .map(|(key, _)| key),
            );
        }
        let local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        saturated.extend(
            local
                .iter()
                .filter(|(key, count)| {
                    self.limit_of(key)
                        .and_then(|limit| limit.concurrency)
                        .is_some_and(|limit| **count >= limit)
                })
                .map(|(key, _)| key.clone()),
        );
        Ok(saturated)
    }

    fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.settings.lease).unwrap_or(chrono::Duration::minutes(1))
    }

    /// Runs one claimed job, renewing its lease meanwhile, and records the outcome.
    async fn execute(self: Arc<Self>, job: job::Model, slot: Option<KeySlot>) {
        let Some(queue) = self.queues.get(job.queue.as_str()) else {
            return;
        };
        let labels = [("queue", job.queue.clone())];
        let started_at = job.started_at.unwrap_or_else(|| self.jobs.now());
        let wait = (started_at - job.run_at).to_std().unwrap_or_default();
        metrics::histogram!("job_wait_seconds", &labels).record(wait.as_secs_f64());
        let context = JobContext {
            id: job.id,
            attempt: u32::try_from(job.attempts).unwrap_or(u32::MAX),
            company_id: job.company_id,
            key: job.job_key.clone(),
            started_at,
            lease_id: job.lease_id.unwrap_or_default(),
            finished: Arc::default(),
            key_slot: Arc::new(Mutex::new(slot)),
        };
        let timer = std::time::Instant::now();
        let outcome = match (queue.handler)(context.clone(), job.payload.clone()) {
            Err(undecodable) => Err((undecodable, true)),
            Ok(mut running) => loop {
                tokio::select! {
                    result = &mut running => break result.map_err(|error| (format!("{error:#}"), false)),
                    () = tokio::time::sleep(self.settings.lease / 3) => {
                        if let Err(error) = self.renew(&job).await {
                            tracing::warn!(error = ?error, job = %job.id, "renewing a job's lease failed");
                        }
                    }
                }
            },
        };
        metrics::histogram!("job_duration_seconds", &labels).record(timer.elapsed().as_secs_f64());
        let recorded = match outcome.map(|()| context.finished_as()) {
            // The handler wrote the attempt's end with its own work.
            Ok(Some(finished)) => {
                if finished.failed {
                    metrics::counter!("jobs_failed_total", &labels).increment(1);
                }
                match finished.status {
                    Status::Done => {
                        metrics::counter!("jobs_completed_total", &labels).increment(1);
                    }
                    Status::Dead => metrics::counter!("jobs_dead_total", &labels).increment(1),
                    _ => {}
                }
                Ok(())
            }
            Ok(None) => {
                metrics::counter!("jobs_completed_total", &labels).increment(1);
                self.finish(&job, Status::Done, None, None).await
            }
            Err((error, permanent)) => {
                metrics::counter!("jobs_failed_total", &labels).increment(1);
                let failed = u32::try_from(job.attempts).unwrap_or(u32::MAX);
                match queue.retry.delay_after(failed).filter(|_| !permanent) {
                    Some(delay) => {
                        tracing::info!(job = %job.id, queue = job.queue, attempt = failed, error, "job failed; retrying");
                        let run_at = self.jobs.now()
                            + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
                        self.finish(&job, Status::Queued, Some(error), Some(run_at))
                            .await
                    }
                    None => {
                        tracing::warn!(job = %job.id, queue = job.queue, attempts = failed, error, "job dead");
                        metrics::counter!("jobs_dead_total", &labels).increment(1);
                        self.finish(&job, Status::Dead, Some(error), None).await
                    }
                }
            }
        };
        if let Err(error) = recorded {
            // The lease expires and the job runs again: at least once.
            tracing::warn!(error = ?error, job = %job.id, "recording a job's outcome failed");
        }
        context.release_key();
    }

    /// Extends the lease of a job still held by this claim.
    async fn renew(&self, job: &job::Model) -> anyhow::Result<()> {
        let now = self.jobs.now();
        #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
        job::Entity::update_many()
            .col_expr(job::Column::LeasedUntil, Expr::value(now + self.lease()))
            .filter(held(job))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Records an attempt's outcome, unless the job was cancelled or re-leased meanwhile.
    async fn finish(
        &self,
        job: &job::Model,
        status: Status,
        error: Option<String>,
        retry_at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        let now = self.jobs.now();
        let finished_at = (status != Status::Queued).then_some(now);
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
        if let Some(run_at) = retry_at {
            update = update.col_expr(job::Column::RunAt, Expr::value(run_at));
        }
        let recorded = update.filter(held(job)).exec(&self.db).await?;
        if recorded.rows_affected == 0 {
            tracing::info!(job = %job.id, "a job's outcome came after it was cancelled or re-leased");
        }
        Ok(())
    }

    /// `jobs_queued` and `jobs_running` per queue of this runtime.
    async fn report_gauges(&self) -> anyhow::Result<()> {
        #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
        let counts: Vec<(String, String, i64)> = job::Entity::find()
            .select_only()
            .column(job::Column::Queue)
            .column(job::Column::Status)
            .column_as(job::Column::Id.count(), "count")
            .filter(job::Column::Status.is_in([Status::Queued.as_str(), Status::Running.as_str()]))
            .filter(job::Column::Queue.is_in(self.queues.keys().copied()))
            .group_by(job::Column::Queue)
            .group_by(job::Column::Status)
            .into_tuple()
            .all(&self.db)
            .await?;
        for queue in self.queues.keys() {
            for (status, gauge) in [
                (Status::Queued, "jobs_queued"),
                (Status::Running, "jobs_running"),
            ] {
                let count = counts
                    .iter()
                    .find(|(name, of, _)| name == queue && of == status.as_str())
                    .map_or(0, |(_, _, count)| *count);
                metrics::gauge!(gauge, "queue" => *queue).set(count as f64);
            }
        }
        Ok(())
    }

    /// Deletes jobs finished or cancelled longer ago than the retention; dead ones stay for
    /// someone to look at.
    async fn prune(&self) -> anyhow::Result<()> {
        let retention = chrono::Duration::from_std(self.settings.retention)
            .unwrap_or(chrono::Duration::weeks(1));
        #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
        job::Entity::delete_many()
            .filter(job::Column::Status.is_in([Status::Done.as_str(), Status::Cancelled.as_str()]))
            .filter(job::Column::FinishedAt.lt(self.jobs.now() - retention))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

/// Whether `every` has passed since `last` (or it never happened); if so, it happens now.
fn elapsed(last: &mut Option<tokio::time::Instant>, every: Duration) -> bool {
    let now = tokio::time::Instant::now();
    if last.is_some_and(|at| now - at < every) {
        return false;
    }
    *last = Some(now);
    true
}

/// Still held by the claim that leased `job`.
fn held(job: &job::Model) -> Condition {
    Condition::all()
        .add(job::Column::Id.eq(job.id))
        .add(job::Column::Status.eq(Status::Running.as_str()))
        .add(job::Column::LeaseId.eq(job.lease_id))
}

/// On SQLite, a write as the transaction's first statement takes the database's write lock
/// (a read first would take a snapshot that a concurrent writer could invalidate), so claims
/// of several instances follow one another. PostgreSQL locks rows instead.
pub(super) async fn take_write_lock(txn: &DatabaseTransaction) -> anyhow::Result<()> {
    if txn.get_database_backend() == DatabaseBackend::Sqlite {
        txn.execute_raw(Statement::from_string(
            DatabaseBackend::Sqlite,
            "UPDATE job_keys SET paused = paused WHERE 1 = 0",
        ))
        .await?;
    }
    Ok(())
}

/// Jobs whose worker stopped renewing their lease (it was killed) go back to the queue.
async fn requeue_expired_leases(
    txn: &DatabaseTransaction,
    queues: &[&str],
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
    job::Entity::update_many()
        .col_expr(job::Column::Status, Expr::value(Status::Queued.as_str()))
        .col_expr(job::Column::LeaseId, Expr::value(Option::<Uuid>::None))
        .col_expr(
            job::Column::LeasedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            job::Column::LastError,
            Expr::value("the lease expired: the worker stopped during the attempt"),
        )
        .col_expr(job::Column::UpdatedAt, Expr::value(now))
        .filter(job::Column::Status.eq(Status::Running.as_str()))
        .filter(job::Column::LeasedUntil.lt(now))
        .filter(job::Column::Queue.is_in(queues.iter().copied()))
        .exec(txn)
        .await?;
    Ok(())
}

/// What the limited keys among a claim's candidates still allow, read under a lock on each
/// key's row so that claims of other instances for the same key wait for this one.
struct KeyAllowance {
    keys: HashMap<String, Allowance>,
}

struct Allowance {
    limit: KeyLimit,
    running: usize,
    recent_starts: Vec<DateTime<Utc>>,
    started: bool,
}

impl KeyAllowance {
    async fn lock(
        runtime: &Runtime,
        txn: &DatabaseTransaction,
        candidates: &[job::Model],
    ) -> anyhow::Result<Self> {
        let now = runtime.jobs.now();
        // Sorted, so two claims lock shared keys in the same order and never deadlock.
        let limited: BTreeSet<&str> = candidates
            .iter()
            .filter_map(|job| job.job_key.as_deref())
            .filter(|key| runtime.limit_of(key).is_some())
            .collect();
        let mut keys = HashMap::new();
        for key in limited {
            let Some(limit) = runtime.limit_of(key) else {
                continue;
            };
            if limit.per_instance && limit.rate.is_none() {
                // Nothing of it is shared with other instances: no row to lock.
                keys.insert(
                    key.to_string(),
                    Allowance {
                        limit,
                        running: runtime.running_here(key),
                        recent_starts: Vec::new(),
                        started: false,
                    },
                );
                continue;
            }
            job_key::Entity::insert(job_key::ActiveModel {
                key: Set(key.to_string()),
                paused: Set(false),
                recent_starts: Set("[]".to_string()),
                updated_at: Set(now),
            })
            .on_conflict(
                OnConflict::column(job_key::Column::Key)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
            #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
            let mut row = job_key::Entity::find_by_id(key.to_string());
            if txn.get_database_backend() == DatabaseBackend::Postgres {
                row = row.lock(LockType::Update);
            }
            let row = row
                .one(txn)
                .await?
                .ok_or_else(|| anyhow::anyhow!("job key {key} vanished"))?;
            let running = if limit.per_instance {
                runtime.running_here(key)
            } else {
                #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
                let running = job::Entity::find()
                    .filter(job::Column::JobKey.eq(key))
                    .filter(job::Column::Status.eq(Status::Running.as_str()))
                    .count(txn)
                    .await?;
                usize::try_from(running).unwrap_or(usize::MAX)
            };
            let recent_starts: Vec<DateTime<Utc>> =
                serde_json::from_str(&row.recent_starts).unwrap_or_default();
            keys.insert(
                key.to_string(),
                Allowance {
                    limit,
                    running,
                    recent_starts,
                    started: false,
                },
            );
        }
        Ok(Self { keys })
    }

    /// Forgets the starts older than each rate's interval before `now`.
    fn open_windows(&mut self, now: DateTime<Utc>) {
        for allowance in self.keys.values_mut() {
            if let Some(rate) = allowance.limit.rate {
                let window =
                    chrono::Duration::from_std(rate.per).unwrap_or(chrono::Duration::zero());
                allowance
                    .recent_starts
                    .retain(|start| *start > now - window);
            }
        }
    }

    /// Whether a job of `key` may start now; counts it when it may.
    fn admit(&mut self, key: Option<&str>, now: DateTime<Utc>) -> bool {
        let Some(allowance) = key.and_then(|key| self.keys.get_mut(key)) else {
            return true;
        };
        if allowance
            .limit
            .concurrency
            .is_some_and(|limit| allowance.running >= limit)
            || allowance
                .limit
                .rate
                .is_some_and(|rate| allowance.recent_starts.len() >= rate.count)
        {
            return false;
        }
        allowance.running += 1;
        if allowance.limit.rate.is_some() {
            allowance.recent_starts.push(now);
            allowance.started = true;
        }
        true
    }

    /// Writes the rate-limited keys' new starts.
    async fn save(&self, txn: &DatabaseTransaction, now: DateTime<Utc>) -> anyhow::Result<()> {
        for (key, allowance) in self.keys.iter().filter(|(_, allowance)| allowance.started) {
            #[allow(clippy::disallowed_methods)] // cross-tenant: the runtime's own table
            job_key::Entity::update_many()
                .col_expr(
                    job_key::Column::RecentStarts,
                    Expr::value(serde_json::to_string(&allowance.recent_starts)?),
                )
                .col_expr(job_key::Column::UpdatedAt, Expr::value(now))
                .filter(job_key::Column::Key.eq(key.as_str()))
                .exec(txn)
                .await?;
        }
        Ok(())
    }
}
