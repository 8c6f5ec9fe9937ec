//! Events after commit: the relay publishes outbox rows to the [`EventBus`], which hands them
//! to every subscriber of every instance — GraphQL subscriptions and Socket.IO rooms.
//!
//! Without Redis the bus is a tokio broadcast channel the relay sends to after each commit.
//!
//! With Redis, the database stays the truth and Redis is only the doorbell: the relay commits
//! positions first and publishes afterwards, best effort. Each instance's [`Forwarder`] hands
//! local subscribers every position exactly once and in order: it forwards what arrives from
//! Redis when it is the next position, and reads the outbox for whatever it has not seen — at a
//! gap, after resubscribing, and every [`CATCH_UP`] — so a lost publish, a killed subscription
//! or a Redis outage delays events by about a second but never drops or repeats one.

pub mod relay;
pub mod subscription;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use entity::outbox;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use self::subscription::{Received, Subscription, SubscriptionHealth};

/// Events a slow subscriber may fall behind by before it starts missing them (it can catch up
/// with the `events` query).
const BUFFER: usize = 4096;
/// How often a forwarder reads the outbox for positions Redis did not bring.
const CATCH_UP: Duration = Duration::from_secs(1);
/// Outbox rows read per catch-up statement.
const CATCH_UP_PAGE: u64 = 500;

/// A committed domain event, as subscribers receive it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BusEvent {
    pub event_id: Uuid,
    pub position: i64,
    pub company_id: Uuid,
    pub event_type: String,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub sequence: i64,
    pub occurred_at: DateTime<Utc>,
    pub payload: serde_json::Value,
}

impl BusEvent {
    /// The event of an outbox row published at `position`.
    pub fn from_row(row: outbox::Model, position: i64) -> Self {
        Self {
            event_id: row.event_id,
            position,
            company_id: row.company_id,
            event_type: row.event_type,
            aggregate_type: row.aggregate_type,
            aggregate_id: row.aggregate_id,
            sequence: row.sequence,
            occurred_at: row.occurred_at,
            payload: serde_json::from_str(&row.payload).unwrap_or(serde_json::Value::Null),
        }
    }
}

#[derive(Clone)]
pub struct EventBus {
    local: broadcast::Sender<Arc<BusEvent>>,
    redis: Option<RedisChannel>,
}

#[derive(Clone)]
struct RedisChannel {
    connection: redis::aio::ConnectionManager,
    name: String,
    /// Taken by the first [`EventBus::spawn_forwarder`]; the server runs one per instance.
    subscription: Arc<std::sync::Mutex<Option<Subscription>>>,
    health: Arc<SubscriptionHealth>,
}

impl EventBus {
    pub fn in_process() -> Self {
        let (local, _) = broadcast::channel(BUFFER);
        Self { local, redis: None }
    }

    /// A bus shared through Redis pub/sub. Subscribes at once (an unreachable Redis stops the
    /// start); the server forwards to local subscribers with [`Self::spawn_forwarder`].
    pub async fn redis(
        client: &redis::Client,
        connection: redis::aio::ConnectionManager,
        namespace: &str,
    ) -> anyhow::Result<Self> {
        let name = format!("{namespace}:events");
        let subscription = Subscription::open(client, name.clone()).await?;
        let (local, _) = broadcast::channel(BUFFER);
        Ok(Self {
            local,
            redis: Some(RedisChannel {
                connection,
                name,
                health: subscription.health(),
                subscription: Arc::new(std::sync::Mutex::new(Some(subscription))),
            }),
        })
    }

    /// With Redis, starts this instance's forwarder, reading the outbox through `db`, until
    /// `stop` turns true. Without Redis the relay sends to subscribers itself.
    pub fn spawn_forwarder(&self, db: DatabaseConnection, stop: watch::Receiver<bool>) {
        let Some(channel) = &self.redis else {
            return;
        };
        let taken = channel
            .subscription
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(subscription) = taken else {
            tracing::warn!("the event forwarder is already running");
            return;
        };
        let forwarder = Forwarder {
            local: self.local.clone(),
            db,
            subscription,
            last: None,
        };
        tokio::spawn(forwarder.run(stop));
    }

    /// Whether the Redis event subscription is up; `None` without Redis.
    pub fn subscription_health(&self) -> Option<bool> {
        self.redis
            .as_ref()
            .map(|channel| channel.health.is_subscribed())
    }

    /// Hands a committed batch to subscribers. Never fails: without Redis it sends locally; with
    /// Redis a failed publish is logged and counted, and every forwarder still reads the batch
    /// from the outbox within [`CATCH_UP`].
    pub async fn publish(&self, events: Vec<BusEvent>) {
        let Some(channel) = &self.redis else {
            for event in events {
                // No local subscriber is not an error.
                drop(self.local.send(Arc::new(event)));
            }
            return;
        };
        let mut pipeline = redis::pipe();
        for event in &events {
            match serde_json::to_string(event) {
                Ok(text) => {
                    pipeline
                        .cmd("PUBLISH")
                        .arg(&channel.name)
                        .arg(text)
                        .ignore();
                }
                Err(error) => tracing::error!(%error, "an event does not serialise"),
            }
        }
        let mut connection = channel.connection.clone();
        let published: Result<(), _> = pipeline.query_async(&mut connection).await;
        if let Err(error) = published {
            metrics::counter!("event_publish_failures_total").increment(events.len() as u64);
            tracing::warn!(%error, events = events.len(),
                "failed to publish events to Redis; instances read them from the outbox");
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BusEvent>> {
        self.local.subscribe()
    }
}

/// Hands this instance's subscribers every published position once, in order.
struct Forwarder {
    local: broadcast::Sender<Arc<BusEvent>>,
    db: DatabaseConnection,
    subscription: Subscription,
    /// The last position handed to local subscribers; `None` until read from the outbox at start.
    last: Option<i64>,
}

impl Forwarder {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        self.catch_up().await;
        let mut tick = tokio::time::interval(CATCH_UP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                received = self.subscription.next() => match received {
                    Received::Message(message) => self.receive(&message).await,
                    Received::Subscribed => self.catch_up().await,
                },
                _ = tick.tick() => self.catch_up().await,
                () = subscription::stopped(&mut stop) => return,
            }
        }
    }

    async fn receive(&mut self, message: &redis::Msg) {
        let event = match message
            .get_payload::<String>()
            .map_err(anyhow::Error::from)
            .and_then(|text| Ok(serde_json::from_str::<BusEvent>(&text)?))
        {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, "ignoring a malformed event from Redis");
                return;
            }
        };
        match self.last {
            Some(last) if event.position <= last => {}
            Some(last) if event.position == last + 1 => self.forward(event),
            // A gap: some publish was lost or is late. The outbox has this event and those before.
            _ => self.catch_up().await,
        }
    }

    fn forward(&mut self, event: BusEvent) {
        self.last = Some(event.position);
        // No local subscriber is not an error.
        drop(self.local.send(Arc::new(event)));
    }

    /// Forwards every position after the last one forwarded, from the outbox. At the first call
    /// it only notes where the outbox stands: earlier events are history, for the `events` query.
    async fn catch_up(&mut self) {
        if let Err(error) = self.try_catch_up().await {
            tracing::warn!(
                error = format!("{error:#}"),
                "reading missed events from the outbox failed; retrying"
            );
        }
    }

    // Cross-tenant on purpose, like the relay: the forwarder serves every company's
    // subscribers of this instance, and each subscriber filters by its own actor.
    async fn try_catch_up(&mut self) -> anyhow::Result<()> {
        let Some(mut last) = self.last else {
            let newest: Option<Option<i64>> = outbox::Entity::find()
                .select_only()
                .column_as(outbox::Column::Position.max(), "newest")
                .into_tuple()
                .one(&self.db)
                .await?;
            self.last = Some(newest.flatten().unwrap_or(0));
            return Ok(());
        };
        loop {
            let rows = outbox::Entity::find()
                .filter(outbox::Column::Position.gt(last))
                .order_by_asc(outbox::Column::Position)
                .limit(CATCH_UP_PAGE)
                .all(&self.db)
                .await?;
            let page = rows.len();
            // Events Redis did not bring (or not yet): a steady rate means publishes are lost.
            metrics::counter!("events_caught_up_total").increment(page as u64);
            for row in rows {
                let Some(position) = row.position else {
                    continue;
                };
                if position > last {
                    last = position;
                    self.forward(BusEvent::from_row(row, position));
                }
            }
            if (page as u64) < CATCH_UP_PAGE {
                return Ok(());
            }
        }
    }
}
