//! The delivery worker: sends each due delivery signed and records every attempt, as jobs of
//! the job runtime ([`crate::jobs`]).
//!
//! Each delivery has one job on the `webhooks` queue, whose id is the delivery's. It is
//! written with the delivery (the relay's transaction, [`schedule`]) and runs at the
//! delivery's next attempt: the runtime's claim (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the
//! write lock on SQLite) hands it to one instance at a time, best first — oldest first within
//! an endpoint, as the jobs run at their deliveries' `next_attempt_at`. A worker that dies
//! mid-attempt stops renewing the job's lease, which expires, and the delivery goes out again
//! with the same `webhook-id`: at least once, never lost.
//!
//! The job key is the endpoint's (`webhook-endpoint:{id}`), limited to
//! `max_in_flight_per_endpoint` requests at once per instance (a per-instance key limit, given
//! back as soon as the request has its answer), so a slow or dead endpoint holds a few slots
//! and never the others' deliveries; the runtime's own slots (`max_in_flight`) are this
//! worker's. A disabled endpoint's key is
//! paused, so its deliveries wait, unclaimed, until it is enabled again.
//!
//! Throughput comes from batching on both sides of the attempts. The runtime claims once a
//! few slots are free ([`crate::jobs::RuntimeSettings::claim_batch`]), and one dispatcher
//! reads the claimed deliveries and their endpoints with one query each. Outcomes are recorded
//! by one recorder in batches — one transaction for every attempt that finished meanwhile,
//! the jobs' ends included ([`Jobs::finish_within`]) — so the database's commit rate does not
//! cap the delivery rate; until an outcome is recorded its job stays leased. A batch mixes
//! tenants, so no outcome may cost the others theirs: on PostgreSQL a delivery deleted
//! meanwhile (with its endpoint) is left out of the batch, and a batch that still fails while
//! the database answers is split until the outcome at fault stands alone, and is recorded
//! without its excerpts, dropped when its delivery is gone, or given up alone — its job then
//! fails, and the runtime runs it again after one lease, as an expired lease would.
//!
//! A failed attempt's job comes back at the delivery's next attempt on the webhook schedule,
//! plus a few percent of its delay at random, so endpoints that failed together do not all
//! come back at the same instant; after the schedule's last attempt the delivery is dead and
//! so is its job.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use entity::{webhook_attempt, webhook_delivery, webhook_endpoint};
use rand::Rng;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QueryFilter,
    QuerySelect, Set, TransactionTrait,
    sea_query::{Expr, ExprTrait, LockType},
};
use tokio::sync::{Notify, mpsc, oneshot};
use uuid::Uuid;

use super::{
    DeliveryStatus, message_id,
    sender::{Outcome, Sender, signed_headers},
    signature::{SigningSecret, signature_header},
};
use crate::{
    configuration::WebhookSettings,
    crypto::{Purpose, SecretBox},
    events::{DomainEvent, domain::EndpointDisabled, outbox},
    jobs::{
        Enqueue, Finish, Job, JobContext, Jobs, KeyLimit, RetryPolicy, Runtime, RuntimeSettings,
    },
};

/// How often the runtime looks for due deliveries without being woken (retries coming due,
/// deliveries of other instances' events, expired leases).
const POLL: Duration = Duration::from_millis(500);

/// The job of one delivery; the job's id is the delivery's.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Deliver;

impl Job for Deliver {
    const QUEUE: &'static str = "webhooks";
}

/// The job keys of endpoints are `webhook-endpoint:{id}`.
const ENDPOINT_KEY: &str = "webhook-endpoint";

/// The job key of an endpoint's deliveries: paused while it is disabled.
pub fn endpoint_key(endpoint_id: Uuid) -> String {
    format!("{ENDPOINT_KEY}:{endpoint_id}")
}

fn job_of(delivery: &webhook_delivery::Model) -> (Deliver, Enqueue) {
    (
        Deliver,
        Enqueue::default()
            .id(delivery.id)
            .run_at(delivery.next_attempt_at)
            .key(endpoint_key(delivery.endpoint_id))
            .company(delivery.company_id),
    )
}

/// Writes the jobs of new deliveries on `conn`, the transaction that writes the deliveries;
/// call [`Jobs::wake`] once it committed.
pub async fn schedule(
    jobs: &Jobs,
    conn: &impl ConnectionTrait,
    deliveries: &[webhook_delivery::Model],
) -> anyhow::Result<()> {
    jobs.enqueue_many(conn, deliveries.iter().map(job_of)).await
}

/// Sends `delivery` at its next attempt on `conn`, whatever its job did before: one that
/// finished runs again, one pruned since is written anew. Returns `false`, changing nothing,
/// when the job is running: its attempt is recorded first. Call [`Jobs::wake`] once `conn`
/// committed.
pub async fn rearm(
    jobs: &Jobs,
    conn: &impl ConnectionTrait,
    delivery: &webhook_delivery::Model,
) -> anyhow::Result<bool> {
    if jobs
        .rerun(conn, delivery.id, delivery.next_attempt_at)
        .await?
    {
        return Ok(true);
    }
    if jobs.exists(conn, delivery.id).await? {
        return Ok(false);
    }
    schedule(jobs, conn, std::slice::from_ref(delivery)).await?;
    Ok(true)
}

/// What the worker needs; cheap to clone into each attempt's task.
#[derive(Clone)]
pub struct Worker {
    pub db: DatabaseConnection,
    pub sender: Sender,
    pub secrets: SecretBox,
    pub settings: WebhookSettings,
    /// Enqueues and pauses the deliveries' jobs; the runtime shares it.
    pub jobs: Jobs,
    /// Notified when the worker wrote outbox events (an endpoint was disabled).
    pub relay_wake: Arc<Notify>,
}

/// A claimed delivery's job, waiting for the dispatcher; `answer` ends the job's handler.
struct Claimed {
    context: JobContext,
    answer: Answer,
}

/// `Ok` once the attempt's end is written (or nothing was left to do); an error fails the job.
type Answer = oneshot::Sender<anyhow::Result<()>>;

/// Most claimed deliveries read at once.
const DISPATCH_BATCH: usize = 256;

impl Worker {
    /// This instance's runtime of the `webhooks` queue, on the worker's pool, with the
    /// dispatcher and the recorder it hands the attempts to; those two end after the runtime.
    pub fn runtime(self) -> Runtime {
        let settings = RuntimeSettings {
            max_in_flight: self.settings.max_in_flight,
            lease: self.settings.lease(),
            poll: POLL,
            claim_batch: (self.settings.max_in_flight_per_endpoint / 2).max(1),
            fires_schedules: false,
            ..RuntimeSettings::default()
        };
        // Failures to send are the webhook schedule's business (`Finish::Again`); a job fails
        // only when its outcome could not be recorded, and then goes out again after a lease,
        // as when its worker was killed.
        let retry = RetryPolicy {
            max_attempts: u32::MAX,
            first_delay: self.settings.lease(),
            max_delay: self.settings.lease(),
            jitter: 0.05,
        };
        let mut runtime = Runtime::sharing(self.db.clone(), settings, &self.jobs);
        let (claims, claimed) = mpsc::channel(self.settings.max_in_flight.max(1));
        let (outcomes, recorded) = mpsc::channel(RECORD_BATCH * 4);
        tokio::spawn(record_outcomes(self.clone(), recorded));
        tokio::spawn(dispatch(self.clone(), claimed, outcomes));
        runtime
            .limit(
                ENDPOINT_KEY,
                KeyLimit {
                    concurrency: Some(self.settings.max_in_flight_per_endpoint),
                    rate: None,
                    per_instance: true,
                },
            )
            .handle(retry, move |context, Deliver| {
                let claims = claims.clone();
                async move {
                    let (answer, answered) = oneshot::channel();
                    claims
                        .send(Claimed { context, answer })
                        .await
                        .map_err(|_| anyhow::anyhow!("the webhook dispatcher stopped"))?;
                    answered
                        .await
                        .map_err(|_| anyhow::anyhow!("the webhook attempt ended unrecorded"))?
                }
            });
        runtime
    }
}

/// Reads the claimed deliveries in batches and starts their attempts.
async fn dispatch(
    worker: Worker,
    mut claims: mpsc::Receiver<Claimed>,
    outcomes: mpsc::Sender<(Attempted, Answer)>,
) {
    let mut batch = Vec::with_capacity(DISPATCH_BATCH);
    while claims.recv_many(&mut batch, DISPATCH_BATCH).await > 0 {
        // The jobs of one claim start together: letting them all arrive reads them at once.
        tokio::task::yield_now().await;
        while batch.len() < DISPATCH_BATCH
            && let Ok(more) = claims.try_recv()
        {
            batch.push(more);
        }
        start(&worker, std::mem::take(&mut batch), &outcomes).await;
    }
}

/// Where a claimed delivery goes, with the endpoint's secrets opened once per batch.
pub struct Target {
    endpoint: webhook_endpoint::Model,
    /// `None` when the stored secret cannot be opened (wrong key): every attempt fails.
    secrets: Option<Vec<SigningSecret>>,
}

/// Starts the attempts of a batch of claimed deliveries.
async fn start(worker: &Worker, batch: Vec<Claimed>, outcomes: &mpsc::Sender<(Attempted, Answer)>) {
    let ids: Vec<Uuid> = batch.iter().map(|claimed| claimed.context.id).collect();
    let mut found = match load(worker, &ids).await {
        Ok(found) => found,
        Err(error) => {
            let error = format!("{error:#}");
            for claimed in batch {
                let _ = claimed
                    .answer
                    .send(Err(anyhow::anyhow!("reading the delivery failed: {error}")));
            }
            return;
        }
    };
    let mut held = Vec::new();
    for claimed in batch {
        // Delivered, dead, or deleted with its endpoint since the job was written: nothing to
        // send, and the job is done.
        let Some((delivery, target)) = found.remove(&claimed.context.id) else {
            let _ = claimed.answer.send(Ok(()));
            continue;
        };
        if !target.endpoint.enabled {
            held.push((claimed, target.endpoint.id));
            continue;
        }
        tokio::spawn(attempt(
            worker.sender.clone(),
            delivery,
            target,
            claimed,
            outcomes.clone(),
        ));
    }
    if !held.is_empty() {
        hold(worker, held).await;
    }
}

/// The pending deliveries among `ids` with where they go. Nothing is written: their jobs'
/// leases are what `redeliverWebhook` waits for.
async fn load(
    worker: &Worker,
    ids: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, (webhook_delivery::Model, Arc<Target>)>> {
    #[allow(clippy::disallowed_methods)] // cross-tenant: claimed deliveries
    let deliveries = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::Id.is_in(ids.iter().copied()))
        .filter(webhook_delivery::Column::Status.eq(DeliveryStatus::Pending.as_str()))
        .all(&worker.db)
        .await?;
    if deliveries.is_empty() {
        return Ok(HashMap::new());
    }
    let mut endpoint_ids: Vec<Uuid> = deliveries
        .iter()
        .map(|delivery| delivery.endpoint_id)
        .collect();
    endpoint_ids.sort_unstable();
    endpoint_ids.dedup();
    #[allow(clippy::disallowed_methods)] // cross-tenant: the endpoints of those deliveries
    let targets: HashMap<Uuid, Arc<Target>> = webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::Id.is_in(endpoint_ids))
        .all(&worker.db)
        .await?
        .into_iter()
        .map(|endpoint| {
            let secrets = signing_secrets(&worker.secrets, &endpoint).map_err(|error| {
                tracing::error!(error = ?error, endpoint = %endpoint.id, "cannot read a webhook signing secret");
            });
            (endpoint.id, Arc::new(Target { endpoint, secrets: secrets.ok() }))
        })
        .collect();
    // A delivery whose endpoint was deleted since went with it (cascade); none is left here.
    let found: HashMap<Uuid, (webhook_delivery::Model, Arc<Target>)> = deliveries
        .into_iter()
        .filter_map(|delivery| {
            let target = targets.get(&delivery.endpoint_id)?.clone();
            Some((delivery.id, (delivery, target)))
        })
        .collect();
    Ok(found)
}

/// Deliveries claimed although their endpoint is disabled (it was, after their job was
/// claimed or written): their jobs go back to the queue behind the endpoint's paused key.
async fn hold(worker: &Worker, held: Vec<(Claimed, Uuid)>) {
    let mut endpoints: Vec<Uuid> = held.iter().map(|(_, endpoint)| *endpoint).collect();
    endpoints.sort_unstable();
    endpoints.dedup();
    let now = worker.jobs.now();
    let finishes: Vec<(&JobContext, Finish)> = held
        .iter()
        .map(|(claimed, _)| {
            (
                &claimed.context,
                Finish::Again {
                    at: now,
                    error: None,
                },
            )
        })
        .collect();
    let paused = async {
        let txn = worker.db.begin().await?;
        for endpoint in &endpoints {
            worker
                .jobs
                .pause_key(&txn, &endpoint_key(*endpoint))
                .await?;
        }
        worker.jobs.finish_within(&txn, &finishes).await?;
        txn.commit().await?;
        for (context, finish) in &finishes {
            context.finished(finish);
        }
        // Enabling an endpoint resumes its key after committing, so one enabled meanwhile
        // shows here: its key is resumed again, not left paused.
        #[allow(clippy::disallowed_methods)] // cross-tenant: the endpoints of claimed deliveries
        let enabled: Vec<Uuid> = webhook_endpoint::Entity::find()
            .select_only()
            .column(webhook_endpoint::Column::Id)
            .filter(webhook_endpoint::Column::Id.is_in(endpoints.iter().copied()))
            .filter(webhook_endpoint::Column::Enabled.eq(true))
            .into_tuple()
            .all(&worker.db)
            .await?;
        for endpoint in enabled {
            worker
                .jobs
                .resume_key(&worker.db, &endpoint_key(endpoint))
                .await?;
        }
        anyhow::Ok(())
    }
    .await;
    let error = paused.err().map(|error| format!("{error:#}"));
    drop(finishes);
    for (claimed, _) in held {
        let answer = match &error {
            None => Ok(()),
            Some(error) => Err(anyhow::anyhow!(
                "holding a disabled endpoint's delivery: {error}"
            )),
        };
        let _ = claimed.answer.send(answer);
    }
}

/// One finished attempt, waiting to be recorded.
struct Attempted {
    delivery: webhook_delivery::Model,
    target: Arc<Target>,
    outcome: Outcome,
    at: DateTime<Utc>,
    context: JobContext,
    /// The delivery was deleted with its endpoint meanwhile: nothing is left to record.
    gone: AtomicBool,
}

/// Sends one delivery and hands the outcome to the recorder.
async fn attempt(
    sender: Sender,
    delivery: webhook_delivery::Model,
    target: Arc<Target>,
    claimed: Claimed,
    recorder: mpsc::Sender<(Attempted, Answer)>,
) {
    let endpoint_id = delivery.endpoint_id;
    let outcome = match &target.secrets {
        Some(secrets) => {
            let id = message_id(delivery.id);
            let timestamp = Utc::now().timestamp();
            let keys: Vec<&SigningSecret> = secrets.iter().collect();
            let signature = signature_header(&keys, &id, timestamp, delivery.payload.as_bytes());
            sender
                .post(
                    &target.endpoint.url,
                    signed_headers(&id, timestamp, &signature),
                    delivery.payload.clone(),
                )
                .await
        }
        None => Outcome {
            error: Some("the endpoint's signing secret cannot be read".into()),
            ..Outcome::default()
        },
    };
    // The endpoint has its answer: its slot is free while the outcome waits to be recorded.
    claimed.context.release_key();
    metrics::counter!(
        "webhook_attempts_total",
        "outcome" => if outcome.succeeded() { "delivered" } else { "failed" }
    )
    .increment(1);
    metrics::histogram!("webhook_attempt_seconds").record(outcome.latency.as_secs_f64());
    let attempted = Attempted {
        delivery,
        target,
        outcome,
        at: Utc::now(),
        context: claimed.context,
        gone: AtomicBool::new(false),
    };
    if let Err(mpsc::error::SendError((_, answer))) =
        recorder.send((attempted, claimed.answer)).await
    {
        tracing::warn!(%endpoint_id, "the recorder stopped; the delivery will go out again");
        let _ = answer.send(Err(anyhow::anyhow!("the webhook recorder stopped")));
    }
}

/// Most outcomes recorded in one transaction.
const RECORD_BATCH: usize = 256;

/// Records outcomes as they arrive, as many per transaction as are waiting, then ends their
/// jobs' handlers.
async fn record_outcomes(worker: Worker, mut outcomes: mpsc::Receiver<(Attempted, Answer)>) {
    let mut arrived = Vec::with_capacity(RECORD_BATCH);
    while outcomes.recv_many(&mut arrived, RECORD_BATCH).await > 0 {
        let (batch, answers): (Vec<Attempted>, Vec<Answer>) = arrived.drain(..).unzip();
        if record_batch(&worker, &batch).await {
            worker.relay_wake.notify_one();
        }
        for (attempted, answer) in batch.iter().zip(answers) {
            let settled = attempted.context.is_finished() || attempted.gone.load(Ordering::Relaxed);
            let _ = answer.send(if settled {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "the attempt could not be recorded; the delivery goes out again"
                ))
            });
        }
    }
}

/// How often a batch is tried while the database does not answer.
const RECORD_TRIES: usize = 3;
const RECORD_RETRY_DELAY: Duration = Duration::from_millis(200);

/// Records `batch`, isolating any outcome that cannot be recorded; returns whether an endpoint
/// got disabled. Giving up on an outcome fails its job, and its delivery goes out again, so that happens only to the outcome at fault, or to all while the database is away.
async fn record_batch(worker: &Worker, batch: &[Attempted]) -> bool {
    for _ in 0..RECORD_TRIES {
        let error = match record(worker, batch).await {
            Ok(disabled) => return disabled,
            Err(error) => error,
        };
        if worker.db.ping().await.is_ok() {
            // The database answers, so something in the batch is at fault.
            tracing::warn!(error = ?error, attempts = batch.len(), "recording webhook attempts failed; isolating the one at fault");
            return record_isolating(worker, batch, &error).await;
        }
        tracing::warn!(error = ?error, attempts = batch.len(), "recording webhook attempts failed; the database does not answer");
        tokio::time::sleep(RECORD_RETRY_DELAY).await;
    }
    tracing::error!(
        attempts = batch.len(),
        "gave up recording webhook attempts; their jobs fail and they go out again"
    );
    false
}

/// Records the halves of a batch that failed, and their halves in turn, until each outcome
/// that fails stands alone.
async fn record_isolating(worker: &Worker, batch: &[Attempted], error: &anyhow::Error) -> bool {
    if let [alone] = batch {
        return record_alone(worker, alone, error).await;
    }
    let mut disabled = false;
    let mut parts = Vec::from(halves(batch));
    while let Some(part) = parts.pop() {
        match record(worker, part).await {
            Ok(part_disabled) => disabled |= part_disabled,
            Err(_) if part.len() > 1 => parts.extend(halves(part)),
            Err(error) => disabled |= record_alone(worker, &part[0], &error).await,
        }
    }
    disabled
}

/// The two halves of `batch` (of two or more), the first one last so that it is recorded first.
fn halves(batch: &[Attempted]) -> [&[Attempted]; 2] {
    let (first, second) = batch.split_at(batch.len() / 2);
    [second, first]
}

/// An outcome that failed to record on its own: recorded again without what the receiver
/// sent back, which is all in it that a tenant chose.
async fn record_alone(worker: &Worker, attempted: &Attempted, error: &anyhow::Error) -> bool {
    let delivery = attempted.delivery.id;
    let bare = Attempted {
        delivery: attempted.delivery.clone(),
        target: attempted.target.clone(),
        outcome: Outcome {
            status: attempted.outcome.status,
            body: None,
            error: Some("the attempt's outcome could not be stored in full".into()),
            retry_after: attempted.outcome.retry_after,
            latency: attempted.outcome.latency,
        },
        at: attempted.at,
        context: attempted.context.clone(),
        gone: AtomicBool::new(false),
    };
    match record(worker, std::slice::from_ref(&bare)).await {
        Ok(disabled) => {
            tracing::warn!(error = ?error, %delivery, "a webhook attempt was recorded without its response excerpt");
            disabled
        }
        Err(second) => {
            #[allow(clippy::disallowed_methods)] // cross-tenant: batches mix companies
            let gone = webhook_delivery::Entity::find_by_id(delivery)
                .one(&worker.db)
                .await
                .is_ok_and(|found| found.is_none());
            if gone {
                deleted_meanwhile(attempted);
            } else {
                tracing::error!(error = ?error, again = ?second, %delivery, "cannot record a webhook attempt; its job fails and it goes out again");
            }
            false
        }
    }
}

/// The current secret, and the previous one while its grace period lasts.
pub fn signing_secrets(
    secrets: &SecretBox,
    endpoint: &webhook_endpoint::Model,
) -> anyhow::Result<Vec<SigningSecret>> {
    let open = |sealed: &str| -> anyhow::Result<SigningSecret> {
        let text = secrets.open(endpoint.company_id, Purpose::WebhookSigning, sealed)?;
        SigningSecret::parse(&text).map_err(anyhow::Error::msg)
    };
    let mut keys = vec![open(&endpoint.secret_ciphertext)?];
    if let (Some(previous), Some(expires)) = (
        &endpoint.previous_secret_ciphertext,
        endpoint.previous_secret_expires_at,
    ) && expires > Utc::now()
    {
        keys.push(open(previous)?);
    }
    Ok(keys)
}

/// Writes a batch of attempts and moves their deliveries on, in one transaction; returns
/// whether an endpoint got disabled.
async fn record(worker: &Worker, batch: &[Attempted]) -> anyhow::Result<bool> {
    let now = Utc::now();
    let txn = worker.db.begin().await?;
    let batch = still_there(&txn, batch).await?;
    if batch.is_empty() {
        txn.commit().await?;
        return Ok(false);
    }
    webhook_attempt::Entity::insert_many(batch.iter().map(|attempted| {
        let outcome = &attempted.outcome;
        webhook_attempt::ActiveModel {
            company_id: Set(attempted.delivery.company_id),
            delivery_id: Set(attempted.delivery.id),
            attempted_at: Set(attempted.at),
            status_code: Set(outcome.status.map(i32::from)),
            latency_ms: Set(i32::try_from(outcome.latency.as_millis()).unwrap_or(i32::MAX)),
            response_body: Set(outcome.body.clone()),
            error: Set(outcome.error.clone()),
            ..Default::default()
        }
    }))
    .exec_without_returning(&txn)
    .await?;

    let (succeeded, failed): (Vec<&Attempted>, Vec<&Attempted>) = batch
        .into_iter()
        .partition(|attempted| attempted.outcome.succeeded());
    // Successes differ only in their status code: one statement per code.
    let mut by_code: HashMap<Option<u16>, Vec<Uuid>> = HashMap::new();
    for attempted in &succeeded {
        by_code
            .entry(attempted.outcome.status)
            .or_default()
            .push(attempted.delivery.id);
    }
    for (code, ids) in by_code {
        #[allow(clippy::disallowed_methods)] // cross-tenant: the recorder's batches mix companies
        webhook_delivery::Entity::update_many()
            .col_expr(
                webhook_delivery::Column::Status,
                Expr::value(DeliveryStatus::Delivered.as_str()),
            )
            .col_expr(webhook_delivery::Column::DeliveredAt, Expr::value(now))
            .col_expr(
                webhook_delivery::Column::AttemptCount,
                Expr::col(webhook_delivery::Column::AttemptCount).add(1),
            )
            .col_expr(
                webhook_delivery::Column::LastStatusCode,
                Expr::value(code.map(i32::from)),
            )
            .col_expr(
                webhook_delivery::Column::LastError,
                Expr::value(Option::<String>::None),
            )
            .col_expr(webhook_delivery::Column::UpdatedAt, Expr::value(now))
            .filter(webhook_delivery::Column::Id.is_in(ids))
            .exec(&txn)
            .await?;
    }
    let recovered: Vec<Uuid> = succeeded
        .iter()
        .filter(|attempted| attempted.target.endpoint.failing_since.is_some())
        .map(|attempted| attempted.target.endpoint.id)
        .collect();
    if !recovered.is_empty() {
        #[allow(clippy::disallowed_methods)] // cross-tenant: the recorder's batches mix companies
        webhook_endpoint::Entity::update_many()
            .col_expr(
                webhook_endpoint::Column::FailingSince,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(webhook_endpoint::Column::Id.is_in(recovered))
            .exec(&txn)
            .await?;
    }

    let mut finishes: Vec<(&JobContext, Finish)> = succeeded
        .iter()
        .map(|attempted| (&attempted.context, Finish::Done))
        .collect();
    let mut failing: Vec<Uuid> = Vec::new();
    for attempted in &failed {
        let attempts = attempted.delivery.attempt_count + 1;
        #[allow(clippy::disallowed_methods)] // cross-tenant: the recorder's batches mix companies
        let update = webhook_delivery::Entity::update_many()
            .col_expr(
                webhook_delivery::Column::AttemptCount,
                Expr::value(attempts),
            )
            .col_expr(
                webhook_delivery::Column::LastStatusCode,
                Expr::value(attempted.outcome.status.map(i32::from)),
            )
            .col_expr(
                webhook_delivery::Column::LastError,
                Expr::value(attempted.outcome.error.clone()),
            )
            .col_expr(webhook_delivery::Column::UpdatedAt, Expr::value(now))
            .filter(webhook_delivery::Column::Id.eq(attempted.delivery.id));
        let error = attempted.outcome.error.clone().unwrap_or_else(|| {
            attempted
                .outcome
                .status
                .map_or_else(|| "no answer".into(), |code| format!("HTTP {code}"))
        });
        let (update, finish) =
            match next_attempt(&worker.settings, attempts, &attempted.outcome, now) {
                Some(at) => (
                    update.col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(at)),
                    Finish::Again {
                        at,
                        error: Some(error),
                    },
                ),
                None => (
                    update.col_expr(
                        webhook_delivery::Column::Status,
                        Expr::value(DeliveryStatus::Dead.as_str()),
                    ),
                    Finish::Dead(error),
                ),
            };
        update.exec(&txn).await?;
        finishes.push((&attempted.context, finish));
        let endpoint = attempted.target.endpoint.id;
        let also_succeeded = succeeded
            .iter()
            .any(|other| other.target.endpoint.id == endpoint);
        if !also_succeeded && !failing.contains(&endpoint) {
            failing.push(endpoint);
        }
    }
    let mut disabled = false;
    if !failing.is_empty() {
        // The endpoints as they are now: another batch may have started their failing run.
        #[allow(clippy::disallowed_methods)] // cross-tenant: the recorder's batches mix companies
        let endpoints = webhook_endpoint::Entity::find()
            .filter(webhook_endpoint::Column::Id.is_in(failing))
            .all(&txn)
            .await?;
        for endpoint in endpoints {
            disabled |= note_failure(&txn, worker, &endpoint, now).await?;
        }
    }
    worker.jobs.finish_within(&txn, &finishes).await?;
    txn.commit().await?;
    for (context, finish) in &finishes {
        context.finished(finish);
    }
    Ok(disabled)
}

/// The outcomes of `batch` whose delivery still exists; the others' deliveries were deleted
/// with their endpoint while the attempt was in flight, and nothing is left to record them on.
/// On PostgreSQL the deliveries are locked against deletion until the outcomes are written. On
/// SQLite a read before the first write would keep the transaction from becoming the writer
/// when another commits meanwhile (`SQLITE_BUSY_SNAPSHOT`), so there the batch is left whole
/// and a gone delivery's outcome is isolated as any other that fails.
async fn still_there<'batch>(
    txn: &sea_orm::DatabaseTransaction,
    batch: &'batch [Attempted],
) -> anyhow::Result<Vec<&'batch Attempted>> {
    if txn.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(batch.iter().collect());
    }
    let ids: Vec<Uuid> = batch
        .iter()
        .map(|attempted| attempted.delivery.id)
        .collect();
    #[allow(clippy::disallowed_methods)] // cross-tenant: the recorder's batches mix companies
    let existing: HashSet<Uuid> = webhook_delivery::Entity::find()
        .select_only()
        .column(webhook_delivery::Column::Id)
        .filter(webhook_delivery::Column::Id.is_in(ids))
        .lock(LockType::KeyShare)
        .into_tuple()
        .all(txn)
        .await?
        .into_iter()
        .collect();
    Ok(batch
        .iter()
        .filter(|attempted| {
            let there = existing.contains(&attempted.delivery.id);
            if !there {
                deleted_meanwhile(attempted);
            }
            there
        })
        .collect())
}

fn deleted_meanwhile(attempted: &Attempted) {
    attempted.gone.store(true, Ordering::Relaxed);
    tracing::info!(
        delivery = %attempted.delivery.id,
        endpoint = %attempted.delivery.endpoint_id,
        "a webhook delivery was deleted with its endpoint during its attempt; its outcome is dropped"
    );
}

/// When the next attempt is due after `attempts` failed ones, or `None` when the schedule is
/// spent: the schedule's delay plus [`jitter`]. A `Retry-After` later than the schedule's delay
/// is honoured, and the jitter only ever adds to it.
pub fn next_attempt(
    settings: &WebhookSettings,
    attempts: i32,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let scheduled = *settings
        .retry_schedule
        .get(usize::try_from(attempts).ok()?)?;
    let wait = outcome
        .retry_after
        .map_or(scheduled, |asked| asked.max(scheduled));
    let wait = wait.saturating_add(jitter(wait));
    Some(now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX))
}

/// Share of a retry's delay added at random, at most.
const JITTER_PERCENT: u32 = 5;

/// A random extra wait between nothing and [`JITTER_PERCENT`] of `delay`.
pub fn jitter(delay: Duration) -> Duration {
    let most = delay / 100 * JITTER_PERCENT;
    let nanos = u64::try_from(most.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// Starts or continues the endpoint's run of failures; disables it once the run is longer
/// than allowed, raising `webhook.endpoint_disabled` and a notification to its creator.
async fn note_failure(
    txn: &sea_orm::DatabaseTransaction,
    worker: &Worker,
    endpoint: &webhook_endpoint::Model,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let Some(since) = endpoint.failing_since else {
        #[allow(clippy::disallowed_methods)] // cross-tenant: the recorder's batches mix companies
        webhook_endpoint::Entity::update_many()
            .col_expr(webhook_endpoint::Column::FailingSince, Expr::value(now))
            .filter(webhook_endpoint::Column::Id.eq(endpoint.id))
            .filter(webhook_endpoint::Column::FailingSince.is_null())
            .exec(txn)
            .await?;
        return Ok(false);
    };
    let limit = chrono::Duration::seconds(
        i64::try_from(worker.settings.disable_after_secs).unwrap_or(i64::MAX),
    );
    if now - since < limit {
        return Ok(false);
    }
    let reason = format!(
        "every attempt failed since {}",
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    #[allow(clippy::disallowed_methods)] // cross-tenant: the recorder's batches mix companies
    let changed = webhook_endpoint::Entity::update_many()
        .col_expr(webhook_endpoint::Column::Enabled, Expr::value(false))
        .col_expr(
            webhook_endpoint::Column::DisabledReason,
            Expr::value(reason.clone()),
        )
        .col_expr(webhook_endpoint::Column::UpdatedAt, Expr::value(now))
        .filter(webhook_endpoint::Column::Id.eq(endpoint.id))
        .filter(webhook_endpoint::Column::Enabled.eq(true))
        .exec(txn)
        .await?;
    if changed.rows_affected == 0 {
        return Ok(false);
    }
    // Its deliveries wait, unclaimed, until it is enabled again.
    worker
        .jobs
        .pause_key(txn, &endpoint_key(endpoint.id))
        .await?;
    tracing::warn!(endpoint = %endpoint.id, company = %endpoint.company_id, %reason, "webhook endpoint disabled");
    let disabled = DomainEvent::WebhookEndpointDisabled(EndpointDisabled {
        endpoint_id: endpoint.id,
        url: endpoint.url.clone(),
        reason: reason.clone(),
        failing_since: since,
    });
    outbox::append(txn, endpoint.company_id, disabled.clone()).await?;
    if let Some(user) = endpoint.created_by {
        let message = format!("Webhook endpoint {} was disabled: {reason}", endpoint.url);
        outbox::notify(txn, endpoint.company_id, user, &disabled, message).await?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `at` is `delay` after `now`, plus at most the jitter.
    fn within_jitter(
        at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        delay: chrono::Duration,
    ) -> bool {
        at.is_some_and(|at| {
            let waited = at - now;
            waited >= delay && waited <= delay + delay / 100 * 5
        })
    }

    #[test]
    fn the_schedule_gives_each_retry_its_delay_then_ends() {
        let settings = WebhookSettings::default();
        let now = Utc::now();
        let failed = Outcome::default();
        let at = |attempts| next_attempt(&settings, attempts, &failed, now);
        assert!(within_jitter(at(1), now, chrono::Duration::seconds(5)));
        assert!(within_jitter(at(2), now, chrono::Duration::minutes(5)));
        assert!(within_jitter(at(7), now, chrono::Duration::hours(10)));
        assert_eq!(at(8), None);
    }

    #[test]
    fn a_later_retry_after_is_honoured_an_earlier_one_is_not() {
        let settings = WebhookSettings::default();
        let now = Utc::now();
        let later = Outcome {
            retry_after: Some(Duration::from_secs(60)),
            ..Outcome::default()
        };
        let earlier = Outcome {
            retry_after: Some(Duration::from_secs(1)),
            ..Outcome::default()
        };
        assert!(within_jitter(
            next_attempt(&settings, 1, &later, now),
            now,
            chrono::Duration::seconds(60)
        ));
        assert!(within_jitter(
            next_attempt(&settings, 1, &earlier, now),
            now,
            chrono::Duration::seconds(5)
        ));
    }

    #[test]
    fn jitter_adds_at_most_five_percent_and_spreads_retries() {
        let delay = Duration::from_secs(300);
        let samples: Vec<Duration> = (0..1000).map(|_| jitter(delay)).collect();

        assert!(
            samples
                .iter()
                .all(|extra| *extra <= Duration::from_secs(15))
        );
        let distinct: HashSet<Duration> = samples.iter().copied().collect();
        assert!(distinct.len() > 900, "{} distinct of 1000", distinct.len());
        let spread = samples.iter().max().copied().unwrap_or_default()
            - samples.iter().min().copied().unwrap_or_default();
        assert!(spread > Duration::from_secs(10), "{spread:?}");
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
