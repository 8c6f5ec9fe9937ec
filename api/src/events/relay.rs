//! The outbox relay: numbers committed events in order, creates their webhook deliveries (each
//! with its job, [`crate::webhooks::worker`]) and marks them relayed, in one transaction that touches only the database; then it publishes
//! the batch to the bus, best effort. Redis being down therefore never stalls relaying or
//! webhook deliveries: instances read what a failed publish did not bring from the outbox (see
//! the forwarder in [`super`]). A crash after the commit loses only the doorbell, not the events.
//!
//! On PostgreSQL several instances run a relay; a transaction-scoped advisory lock lets one of
//! them relay at a time (so positions follow a single order), and the rows are claimed with
//! `FOR UPDATE SKIP LOCKED`. On SQLite the claim is the first statement of the transaction,
//! which takes the database's write lock.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use entity::outbox;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Statement, TransactionTrait,
    sea_query::{Expr, LockBehavior, LockType},
};
use tokio::sync::{Notify, watch};

use super::{BusEvent, EventBus};
use crate::jobs::Jobs;

const BATCH: u64 = 200;
/// How often the relay looks for events without being woken (events of a crashed instance).
const POLL: Duration = Duration::from_millis(500);
const RELAY_LOCK: i64 = 7_245_002;

/// Runs until `stop` turns true; `wake` is notified after every commit that wrote events. The
/// deliveries' jobs go through `jobs`, whose runtimes the relay wakes once they committed.
pub async fn run(
    db: sea_orm::DatabaseConnection,
    bus: EventBus,
    wake: Arc<Notify>,
    jobs: Jobs,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        loop {
            match relay_batch(&db, &bus, &jobs).await {
                Ok(Relayed { events: 0, .. }) => break,
                Ok(Relayed {
                    deliveries,
                    evaluations,
                    ..
                }) => {
                    if deliveries + evaluations > 0 {
                        jobs.wake();
                    }
                }
                Err(error) => {
                    tracing::warn!(error = ?error, "outbox relay failed; retrying");
                    break;
                }
            }
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// What one batch did.
pub struct Relayed {
    pub events: usize,
    /// Webhook deliveries created for the batch's events.
    pub deliveries: u64,
    /// Evaluations of notification rules enqueued for the batch's events.
    pub evaluations: u64,
}

/// Relays one batch and creates its webhook deliveries in one transaction, then publishes it.
pub async fn relay_batch(
    db: &sea_orm::DatabaseConnection,
    bus: &EventBus,
    jobs: &Jobs,
) -> anyhow::Result<Relayed> {
    let nothing = Relayed {
        events: 0,
        deliveries: 0,
        evaluations: 0,
    };
    let txn = db.begin().await?;
    let Some(rows) = claim(&txn).await? else {
        return Ok(nothing);
    };
    if rows.is_empty() {
        return Ok(nothing);
    }
    #[allow(clippy::disallowed_methods)] // cross-tenant: positions number every company's events
    let last: Option<Option<i64>> = outbox::Entity::find()
        .select_only()
        .column_as(outbox::Column::Position.max(), "last")
        .into_tuple()
        .one(&txn)
        .await?;
    let mut position = last.flatten().unwrap_or(0);
    let now = Utc::now();
    let count = rows.len();
    let mut events = Vec::with_capacity(count);
    for row in rows {
        position += 1;
        #[allow(clippy::disallowed_methods)] // cross-tenant: every company's events
        outbox::Entity::update_many()
            .col_expr(outbox::Column::Position, Expr::value(position))
            .col_expr(outbox::Column::RelayedAt, Expr::value(now))
            .filter(outbox::Column::Id.eq(row.id))
            .exec(&txn)
            .await?;
        events.push(BusEvent::from_row(row, position));
    }
    let deliveries = crate::webhooks::enqueue(&txn, jobs, &events).await?;
    let evaluations = super::automation::enqueue(&txn, jobs, &events).await?;
    txn.commit().await?;
    metrics::counter!("outbox_events_relayed_total").increment(count as u64);
    bus.publish(events).await;
    Ok(Relayed {
        events: count,
        deliveries,
        evaluations,
    })
}

/// The next unrelayed events in commit order, claimed for this transaction; `None` when another
/// instance is relaying right now.
async fn claim(txn: &DatabaseTransaction) -> anyhow::Result<Option<Vec<outbox::Model>>> {
    #[allow(clippy::disallowed_methods)] // cross-tenant: the relay claims every company's events
    let unrelayed = outbox::Entity::find()
        .filter(outbox::Column::RelayedAt.is_null())
        .order_by_asc(outbox::Column::Id)
        .limit(BATCH);
    match txn.get_database_backend() {
        DatabaseBackend::Postgres => {
            let locked = txn
                .query_one_raw(Statement::from_string(
                    DatabaseBackend::Postgres,
                    format!("SELECT pg_try_advisory_xact_lock({RELAY_LOCK}) AS locked"),
                ))
                .await?
                .map(|row| row.try_get::<bool>("", "locked"))
                .transpose()?
                .unwrap_or(false);
            if !locked {
                return Ok(None);
            }
            Ok(Some(
                unrelayed
                    .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
                    .all(txn)
                    .await?,
            ))
        }
        _ => {
            // Writing first takes SQLite's write lock, so no other relay reads the same rows.
            let claimed_at = Utc::now();
            let ids = unrelayed
                .select_only()
                .column(outbox::Column::Id)
                .into_query();
            #[allow(clippy::disallowed_methods)] // cross-tenant: every company's events
            outbox::Entity::update_many()
                .col_expr(outbox::Column::RelayedAt, Expr::value(claimed_at))
                .filter(outbox::Column::RelayedAt.is_null())
                .filter(outbox::Column::Id.in_subquery(ids))
                .exec(txn)
                .await?;
            #[allow(clippy::disallowed_methods)] // cross-tenant: every company's events
            let claimed = outbox::Entity::find()
                .filter(outbox::Column::RelayedAt.eq(claimed_at))
                .filter(outbox::Column::Position.is_null())
                .order_by_asc(outbox::Column::Id)
                .all(txn)
                .await?;
            Ok(Some(claimed))
        }
    }
}
