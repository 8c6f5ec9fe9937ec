//! Events after commit: the relay publishes outbox rows to the [`EventBus`], which hands them
//! to every subscriber of every instance — GraphQL subscriptions and Socket.IO rooms.
//!
//! Without Redis the bus is a tokio broadcast channel. With Redis, the relay publishes to a
//! Redis channel and every instance (the publishing one included) forwards what it receives into
//! its own broadcast channel, so local subscribers see every instance's events the same way.

pub mod relay;

use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

/// Events a slow subscriber may fall behind by before it starts missing them (it can catch up
/// with the `events` query).
const BUFFER: usize = 4096;

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

#[derive(Clone)]
pub struct EventBus {
    local: broadcast::Sender<Arc<BusEvent>>,
    redis: Option<RedisChannel>,
}

#[derive(Clone)]
struct RedisChannel {
    connection: redis::aio::ConnectionManager,
    name: String,
}

impl EventBus {
    pub fn in_process() -> Self {
        let (local, _) = broadcast::channel(BUFFER);
        Self { local, redis: None }
    }

    /// A bus shared through Redis pub/sub; starts forwarding Redis messages to local subscribers.
    pub async fn redis(
        client: &redis::Client,
        connection: redis::aio::ConnectionManager,
        namespace: &str,
    ) -> anyhow::Result<Self> {
        let name = format!("{namespace}:events");
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .context("Failed to open a Redis pub/sub connection for events")?;
        pubsub
            .subscribe(&name)
            .await
            .context("Failed to subscribe to the event channel")?;
        let (local, _) = broadcast::channel(BUFFER);
        let forward = local.clone();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                match message
                    .get_payload::<String>()
                    .map_err(anyhow::Error::from)
                    .and_then(|text| Ok(serde_json::from_str::<BusEvent>(&text)?))
                {
                    // No local subscriber is not an error.
                    Ok(event) => drop(forward.send(Arc::new(event))),
                    Err(error) => tracing::warn!(%error, "ignoring a malformed event from Redis"),
                }
            }
            tracing::error!("the Redis event subscription ended; events from other instances stop");
        });
        Ok(Self {
            local,
            redis: Some(RedisChannel { connection, name }),
        })
    }

    pub async fn publish(&self, event: BusEvent) -> anyhow::Result<()> {
        match &self.redis {
            None => {
                drop(self.local.send(Arc::new(event)));
                Ok(())
            }
            Some(channel) => {
                let mut connection = channel.connection.clone();
                let text = serde_json::to_string(&event)?;
                let _: i64 = redis::cmd("PUBLISH")
                    .arg(&channel.name)
                    .arg(text)
                    .query_async(&mut connection)
                    .await
                    .context("Failed to publish an event to Redis")?;
                Ok(())
            }
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BusEvent>> {
        self.local.subscribe()
    }
}
