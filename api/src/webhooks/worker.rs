//! The delivery worker: claims due deliveries, sends each signed, records every attempt.
//!
//! Claiming sets a lease (`leased_until`) with a conditional update, so a delivery goes to one
//! worker at a time; on PostgreSQL the candidates are read `FOR UPDATE SKIP LOCKED`, so several
//! instances share the work without waiting on each other. A worker that dies mid-attempt
//! leaves its lease to expire, and the delivery goes out again with the same `webhook-id` —
//! at least once, never lost.
//!
//! Each attempt runs in its own task under a deadline, with a cap on attempts in flight per
//! endpoint, so a slow or dead endpoint holds a few slots and never the others' deliveries.
//! Outcomes are recorded by one recorder in batches — one transaction for every attempt that
//! finished meanwhile — so the database's commit rate does not cap the delivery rate; until
//! an outcome is recorded its delivery stays leased. A batch mixes tenants, so no outcome may
//! cost the others theirs: on PostgreSQL a delivery deleted meanwhile (with its endpoint) is
//! left out of the batch, and a batch that still fails while the database answers is split
//! until the outcome at fault stands alone, and is recorded without its excerpts, dropped when
//! its delivery is gone, or given up alone.
//!
//! Retries wait their scheduled delay plus a few percent of it at random, so endpoints that
//! failed together do not all come back at the same instant.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use entity::{webhook_attempt, webhook_delivery, webhook_endpoint};
use rand::Rng;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType, Query},
};
use tokio::{
    sync::{Notify, mpsc, watch},
    task::JoinSet,
};
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
};

/// How often the worker looks for due deliveries without being woken (retries coming due,
/// deliveries of other instances' events, expired leases).
const POLL: Duration = Duration::from_millis(500);
/// How long a freed slot waits for others before the worker claims anyway.
const REFILL_DELAY: Duration = Duration::from_millis(5);

/// What the worker needs; cheap to clone into each attempt's task.
#[derive(Clone)]
pub struct Worker {
    pub db: DatabaseConnection,
    pub sender: Sender,
    pub secrets: SecretBox,
    pub settings: WebhookSettings,
    /// Notified when deliveries were created.
    pub wake: Arc<Notify>,
    /// Notified when the worker wrote outbox events (an endpoint was disabled).
    pub relay_wake: Arc<Notify>,
}

/// Runs until `stop` turns true, then lets attempts in flight finish within their deadline.
pub async fn run(worker: Worker, mut stop: watch::Receiver<bool>) {
    let (outcomes, recorded) = mpsc::channel(RECORD_BATCH * 4);
    let recorder = tokio::spawn(record_outcomes(worker.clone(), recorded));
    let mut in_flight: HashMap<Uuid, usize> = HashMap::new();
    let mut tasks: JoinSet<Uuid> = JoinSet::new();
    // Slots freed since the last claim. Claiming after every single attempt would cost a
    // claim per delivery; waiting for a few (or a moment) leases them in one go.
    let refill = (worker.settings.max_in_flight_per_endpoint / 2).max(1);
    let mut freed = 0;
    let mut claim_now = true;
    loop {
        while claim_now && tasks.len() < worker.settings.max_in_flight {
            let free = worker.settings.max_in_flight - tasks.len();
            match claim(&worker, free, &in_flight).await {
                Ok(claimed) if claimed.is_empty() => break,
                Ok(claimed) => {
                    for (delivery, target) in claimed {
                        *in_flight.entry(delivery.endpoint_id).or_default() += 1;
                        tasks.spawn(attempt(
                            worker.sender.clone(),
                            delivery,
                            target,
                            outcomes.clone(),
                        ));
                    }
                }
                Err(error) => {
                    tracing::warn!(error = ?error, "claiming webhook deliveries failed; retrying");
                    break;
                }
            }
        }
        if claim_now {
            freed = 0;
        }
        let idle = if freed > 0 { REFILL_DELAY } else { POLL };
        claim_now = tokio::select! {
            () = worker.wake.notified() => true,
            () = tokio::time::sleep(idle) => true,
            Some(finished) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(endpoint_id) = finished {
                    release(&mut in_flight, endpoint_id);
                }
                freed += 1;
                freed >= refill
            }
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(worker.settings.lease(), drain)
        .await
        .is_err()
    {
        tracing::warn!("webhook attempts still running at shutdown; their leases will expire");
    }
    drop(outcomes);
    if recorder.await.is_err() {
        tracing::warn!("the webhook outcome recorder ended abnormally");
    }
}

fn release(in_flight: &mut HashMap<Uuid, usize>, endpoint_id: Uuid) {
    if let Some(count) = in_flight.get_mut(&endpoint_id) {
        *count -= 1;
        if *count == 0 {
            in_flight.remove(&endpoint_id);
        }
    }
}

/// Due now and not leased by anyone.
fn due(now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(webhook_delivery::Column::Status.eq(DeliveryStatus::Pending.as_str()))
        .add(webhook_delivery::Column::NextAttemptAt.lte(now))
        .add(
            Condition::any()
                .add(webhook_delivery::Column::LeasedUntil.is_null())
                .add(webhook_delivery::Column::LeasedUntil.lt(now)),
        )
}

/// Leases up to `free` due deliveries, at most the per-endpoint cap for each endpoint, each
/// with where it goes.
async fn claim(
    worker: &Worker,
    free: usize,
    in_flight: &HashMap<Uuid, usize>,
) -> anyhow::Result<Vec<(webhook_delivery::Model, Arc<Target>)>> {
    let leased = lease_due(worker, free, in_flight).await?;
    if leased.is_empty() {
        return Ok(Vec::new());
    }
    let mut endpoint_ids: Vec<Uuid> = leased.iter().map(|delivery| delivery.endpoint_id).collect();
    endpoint_ids.sort_unstable();
    endpoint_ids.dedup();
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
    Ok(leased
        .into_iter()
        .filter_map(|delivery| {
            let target = targets.get(&delivery.endpoint_id)?.clone();
            Some((delivery, target))
        })
        .collect())
}

/// Where a claimed delivery goes, with the endpoint's secrets opened once per claim.
pub struct Target {
    endpoint: webhook_endpoint::Model,
    /// `None` when the stored secret cannot be opened (wrong key): every attempt fails.
    secrets: Option<Vec<SigningSecret>>,
}

/// Leases due deliveries endpoint by endpoint, each up to its free slots: finding the
/// endpoints with due work and then each one's oldest deliveries are index lookups, so a claim
/// costs the same however long one endpoint's backlog is.
async fn lease_due(
    worker: &Worker,
    free: usize,
    in_flight: &HashMap<Uuid, usize>,
) -> anyhow::Result<Vec<webhook_delivery::Model>> {
    let now = Utc::now();
    let has_due_work = Query::select()
        .expr(Expr::val(1))
        .from(webhook_delivery::Entity)
        .and_where(
            Expr::col((
                webhook_delivery::Entity,
                webhook_delivery::Column::EndpointId,
            ))
            .equals((webhook_endpoint::Entity, webhook_endpoint::Column::Id)),
        )
        .cond_where(due(now))
        .to_owned();
    let endpoints: Vec<Uuid> = webhook_endpoint::Entity::find()
        .select_only()
        .column(webhook_endpoint::Column::Id)
        .filter(webhook_endpoint::Column::Enabled.eq(true))
        .filter(Expr::exists(has_due_work))
        .into_tuple()
        .all(&worker.db)
        .await?;
    let lease_until =
        now + chrono::Duration::from_std(worker.settings.lease()).unwrap_or(chrono::Duration::MAX);
    let mut leased = Vec::new();
    for endpoint in endpoints {
        let busy = in_flight.get(&endpoint).copied().unwrap_or(0);
        let slots = worker
            .settings
            .max_in_flight_per_endpoint
            .saturating_sub(busy)
            .min(free - leased.len());
        if slots == 0 {
            continue;
        }
        let mut got = lease_oldest(worker, endpoint, slots, now, lease_until).await?;
        leased.append(&mut got);
        if leased.len() >= free {
            break;
        }
    }
    Ok(leased)
}

/// Leases up to `slots` of an endpoint's due deliveries, oldest first.
async fn lease_oldest(
    worker: &Worker,
    endpoint: Uuid,
    slots: usize,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> anyhow::Result<Vec<webhook_delivery::Model>> {
    let oldest_due = webhook_delivery::Entity::find()
        .select_only()
        .column(webhook_delivery::Column::Id)
        .filter(webhook_delivery::Column::EndpointId.eq(endpoint))
        .filter(due(now))
        .order_by_asc(webhook_delivery::Column::NextAttemptAt)
        .limit(slots as u64);
    let lease = |ids: Vec<Uuid>| {
        webhook_delivery::Entity::update_many()
            .col_expr(
                webhook_delivery::Column::LeasedUntil,
                Expr::value(lease_until),
            )
            .col_expr(webhook_delivery::Column::UpdatedAt, Expr::value(now))
            .filter(webhook_delivery::Column::Id.is_in(ids))
            .filter(due(now))
    };
    match worker.db.get_database_backend() {
        // The rows are picked and locked first, skipping those another instance is leasing
        // right now, so instances never queue behind each other nor lease the same row.
        DatabaseBackend::Postgres => {
            let txn = worker.db.begin().await?;
            let ids: Vec<Uuid> = oldest_due
                .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
                .into_tuple()
                .all(&txn)
                .await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let leased = lease(ids).exec_with_returning(&txn).await?;
            txn.commit().await?;
            Ok(leased)
        }
        // SQLite has one writer: reading then leasing with the due condition repeated cannot
        // hand a row to two workers.
        _ => {
            let ids: Vec<Uuid> = oldest_due.into_tuple().all(&worker.db).await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            Ok(lease(ids).exec_with_returning(&worker.db).await?)
        }
    }
}

/// One finished attempt, waiting to be recorded.
struct Attempted {
    delivery: webhook_delivery::Model,
    target: Arc<Target>,
    outcome: Outcome,
    at: DateTime<Utc>,
}

/// Sends one delivery and hands the outcome to the recorder; returns the endpoint to free
/// its slot.
async fn attempt(
    sender: Sender,
    delivery: webhook_delivery::Model,
    target: Arc<Target>,
    recorder: mpsc::Sender<Attempted>,
) -> Uuid {
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
    };
    if recorder.send(attempted).await.is_err() {
        tracing::warn!(%endpoint_id, "the recorder stopped; the lease will expire and the delivery go out again");
    }
    endpoint_id
}

/// Most outcomes recorded in one transaction.
const RECORD_BATCH: usize = 256;

/// Records outcomes as they arrive, as many per transaction as are waiting.
async fn record_outcomes(worker: Worker, mut outcomes: mpsc::Receiver<Attempted>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while outcomes.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        if record_batch(&worker, &batch).await {
            worker.relay_wake.notify_one();
        }
        batch.clear();
    }
}

/// How often a batch is tried while the database does not answer.
const RECORD_TRIES: usize = 3;
const RECORD_RETRY_DELAY: Duration = Duration::from_millis(200);

/// Records `batch`, isolating any outcome that cannot be recorded; returns whether an endpoint
/// got disabled. Giving up on an outcome leaves its lease to expire and its delivery to go out
/// again, so that happens only to the outcome at fault, or to all while the database is away.
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
        "gave up recording webhook attempts; their leases will expire and they go out again"
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
    };
    match record(worker, std::slice::from_ref(&bare)).await {
        Ok(disabled) => {
            tracing::warn!(error = ?error, %delivery, "a webhook attempt was recorded without its response excerpt");
            disabled
        }
        Err(second) => {
            let gone = webhook_delivery::Entity::find_by_id(delivery)
                .one(&worker.db)
                .await
                .is_ok_and(|found| found.is_none());
            if gone {
                deleted_meanwhile(attempted);
            } else {
                tracing::error!(error = ?error, again = ?second, %delivery, "cannot record a webhook attempt; its lease will expire and it goes out again");
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
                webhook_delivery::Column::LeasedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
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
        webhook_endpoint::Entity::update_many()
            .col_expr(
                webhook_endpoint::Column::FailingSince,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(webhook_endpoint::Column::Id.is_in(recovered))
            .exec(&txn)
            .await?;
    }

    let mut failing: Vec<Uuid> = Vec::new();
    for attempted in &failed {
        let attempts = attempted.delivery.attempt_count + 1;
        let update = webhook_delivery::Entity::update_many()
            .col_expr(
                webhook_delivery::Column::AttemptCount,
                Expr::value(attempts),
            )
            .col_expr(
                webhook_delivery::Column::LeasedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
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
        let update = match next_attempt(&worker.settings, attempts, &attempted.outcome, now) {
            Some(at) => update.col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(at)),
            None => update.col_expr(
                webhook_delivery::Column::Status,
                Expr::value(DeliveryStatus::Dead.as_str()),
            ),
        };
        update.exec(&txn).await?;
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
        for endpoint in webhook_endpoint::Entity::find()
            .filter(webhook_endpoint::Column::Id.is_in(failing))
            .all(&txn)
            .await?
        {
            disabled |= note_failure(&txn, worker, &endpoint, now).await?;
        }
    }
    txn.commit().await?;
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
