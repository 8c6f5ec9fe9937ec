//! Domain events: [`domain`] declares each one (its name, aggregate and payload), [`outbox`]
//! writes them in the transaction of the change they describe.
//!
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

pub mod automation;
pub mod domain;
pub mod outbox;
pub mod relay;
pub mod subscription;

pub use self::domain::{AggregateType, DomainEvent, EventType, UnreadableEvent};

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
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
#[serde(into = "WireEvent", from = "WireEvent")]
pub struct BusEvent {
    pub event_id: Uuid,
    pub position: i64,
    pub company_id: Uuid,
    pub aggregate_id: Uuid,
    /// 1, 2, 3… per aggregate.
    pub sequence: i64,
    pub occurred_at: DateTime<Utc>,
    /// The event, or what was stored when this build cannot read it.
    pub event: Result<DomainEvent, OpaqueEvent>,
}

/// An event this build cannot read (a newer build wrote it, say), passed on as it was stored:
/// the `events` query and subscription show it; consumers of typed events never see it.
#[derive(Debug, Clone)]
pub struct OpaqueEvent {
    pub event_type: String,
    pub aggregate_type: String,
    pub payload: serde_json::Value,
    pub why: UnreadableEvent,
}

impl BusEvent {
    /// The event of an outbox row published at `position`.
    pub fn from_row(row: entity::outbox::Model, position: i64) -> Self {
        // A payload that is not JSON at all reads as one without a schema version.
        let payload = serde_json::from_str(&row.payload).unwrap_or(serde_json::Value::Null);
        Self::read(WireEvent {
            event_id: row.event_id,
            position,
            company_id: row.company_id,
            event_type: row.event_type,
            aggregate_type: row.aggregate_type,
            aggregate_id: row.aggregate_id,
            sequence: row.sequence,
            occurred_at: row.occurred_at,
            payload,
        })
    }

    /// Reads a stored or published event: the one place where outbox rows and Redis messages
    /// become typed events.
    fn read(wire: WireEvent) -> Self {
        let event = DomainEvent::parse(&wire.event_type, &wire.payload).map_err(|why| {
            tracing::warn!(event_id = %wire.event_id, %why, "an event this build cannot read is passed on as stored");
            OpaqueEvent {
                event_type: wire.event_type,
                aggregate_type: wire.aggregate_type,
                payload: wire.payload,
                why,
            }
        });
        Self {
            event_id: wire.event_id,
            position: wire.position,
            company_id: wire.company_id,
            aggregate_id: wire.aggregate_id,
            sequence: wire.sequence,
            occurred_at: wire.occurred_at,
            event,
        }
    }

    /// Whether `user` (none: an API key) may see this event in the company's stream: events
    /// about a person (their notifications) are that person's alone.
    pub fn visible_to(&self, user: Option<Uuid>) -> bool {
        let personal = match &self.event {
            Ok(event) => event.event_type().aggregate() == AggregateType::User,
            Err(opaque) => opaque.aggregate_type == AggregateType::User.name(),
        };
        !personal || user == Some(self.aggregate_id)
    }

    /// The event's type name, as integrators see it.
    pub fn event_type(&self) -> &str {
        match &self.event {
            Ok(event) => event.event_type().name(),
            Err(opaque) => &opaque.event_type,
        }
    }

    /// The payload as stored, with its `schemaVersion`.
    pub fn payload(&self) -> serde_json::Value {
        match &self.event {
            Ok(event) => event.payload(),
            Err(opaque) => opaque.payload.clone(),
        }
    }
}

/// A [`BusEvent`] as Redis carries it between instances: the flat layout of the outbox row, so
/// instances of different builds still understand each other during a rolling deploy.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEvent {
    event_id: Uuid,
    position: i64,
    company_id: Uuid,
    event_type: String,
    aggregate_type: String,
    aggregate_id: Uuid,
    sequence: i64,
    occurred_at: DateTime<Utc>,
    payload: serde_json::Value,
}

impl From<BusEvent> for WireEvent {
    fn from(published: BusEvent) -> Self {
        let (event_type, aggregate_type, payload) = match published.event {
            Ok(event) => {
                let event_type = event.event_type();
                (
                    event_type.name().to_string(),
                    event_type.aggregate().name().to_string(),
                    event.payload(),
                )
            }
            Err(opaque) => (opaque.event_type, opaque.aggregate_type, opaque.payload),
        };
        Self {
            event_id: published.event_id,
            position: published.position,
            company_id: published.company_id,
            event_type,
            aggregate_type,
            aggregate_id: published.aggregate_id,
            sequence: published.sequence,
            occurred_at: published.occurred_at,
            payload,
        }
    }
}

impl From<WireEvent> for BusEvent {
    fn from(wire: WireEvent) -> Self {
        Self::read(wire)
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
            #[allow(clippy::disallowed_methods)] // cross-tenant: this instance's newest position
            let newest: Option<Option<i64>> = entity::outbox::Entity::find()
                .select_only()
                .column_as(entity::outbox::Column::Position.max(), "newest")
                .into_tuple()
                .one(&self.db)
                .await?;
            self.last = Some(newest.flatten().unwrap_or(0));
            return Ok(());
        };
        loop {
            #[allow(clippy::disallowed_methods)] // cross-tenant: subscribers filter by company
            let rows = entity::outbox::Entity::find()
                .filter(entity::outbox::Column::Position.gt(last))
                .order_by_asc(entity::outbox::Column::Position)
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// A message as Redis carries it, in the layout every build reads and writes.
    fn wire(event_type: &str, aggregate_type: &str, payload: Value) -> Value {
        json!({
            "eventId": Uuid::nil(), "position": 12, "companyId": Uuid::max(),
            "eventType": event_type, "aggregateType": aggregate_type, "aggregateId": Uuid::nil(),
            "sequence": 3, "occurredAt": "2026-12-02T06:00:00.123Z", "payload": payload,
        })
    }

    fn round_trip(message: &Value) -> (BusEvent, Value) {
        let event: BusEvent = serde_json::from_value(message.clone()).expect("a bus event");
        let again = serde_json::to_value(&event).expect("serialises");
        (event, again)
    }

    #[test]
    fn a_published_event_crosses_redis_typed_and_unchanged() {
        let message = wire(
            EventType::PaymentPaid.name(),
            AggregateType::Payment.name(),
            json!({ "paymentId": Uuid::nil(), "orderId": Uuid::max(), "method": "PIX",
                "status": "PAID", "amountMinor": 100, "refundedMinor": 0, "currency": "BRL",
                "schemaVersion": 1 }),
        );

        let (event, again) = round_trip(&message);

        assert!(
            matches!(&event.event, Ok(DomainEvent::PaymentPaid(paid)) if paid.amount_minor == 100),
            "{event:?}"
        );
        assert_eq!(again, message);
    }

    #[test]
    fn an_event_this_build_cannot_read_is_passed_on_as_it_came() {
        let message = wire(
            "order.shipped",
            "order",
            json!({ "carrier": "post", "schemaVersion": 1 }),
        );

        let (event, again) = round_trip(&message);

        let why = event
            .event
            .as_ref()
            .map(|_| ())
            .unwrap_err()
            .why
            .to_string();
        assert_eq!(why, "unknown event type `order.shipped`");
        assert_eq!(event.event_type(), "order.shipped");
        assert_eq!(again, message);
    }
}
