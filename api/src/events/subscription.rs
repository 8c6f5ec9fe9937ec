//! A Redis pub/sub subscription that survives Redis: when the connection drops (a restart, a
//! `CLIENT KILL`, a network blip) it reconnects and resubscribes forever, with exponential
//! backoff and jitter, and says so through [`Received::Subscribed`] so the caller can catch up
//! on what it may have missed. Its state is shared through [`SubscriptionHealth`] for `/readyz`.
//!
//! Both the event bus and the RBAC change notice listen through it.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use futures_util::{Stream, StreamExt};
use tokio::{sync::watch, time::Instant};

/// The first wait after a failed attempt; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

type Messages = Pin<Box<dyn Stream<Item = redis::Msg> + Send>>;

/// Whether a subscription is currently subscribed; cheap to read on every `/readyz`.
#[derive(Debug, Default)]
pub struct SubscriptionHealth(AtomicBool);

impl SubscriptionHealth {
    pub fn is_subscribed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, subscribed: bool) {
        self.0.store(subscribed, Ordering::Release);
    }
}

/// What [`Subscription::next`] produced.
pub enum Received {
    Message(redis::Msg),
    /// Subscribed again after a loss: messages published meanwhile were missed.
    Subscribed,
}

pub struct Subscription {
    client: redis::Client,
    channel: String,
    messages: Option<Messages>,
    /// Failed attempts since the connection was lost; sets the backoff.
    failures: u32,
    retry_at: Instant,
    health: Arc<SubscriptionHealth>,
}

impl Subscription {
    /// Subscribes to `channel` once, so that a server started without a reachable Redis stops
    /// at once rather than run half-connected.
    pub async fn open(client: &redis::Client, channel: String) -> anyhow::Result<Self> {
        let messages = subscribe(client, &channel).await?;
        let health = Arc::new(SubscriptionHealth::default());
        health.set(true);
        Ok(Self {
            client: client.clone(),
            channel,
            messages: Some(messages),
            failures: 0,
            retry_at: Instant::now(),
            health,
        })
    }

    pub fn health(&self) -> Arc<SubscriptionHealth> {
        self.health.clone()
    }

    /// The next message, reconnecting as long as it takes. Cancel-safe: dropping the future
    /// (in a `select!`) loses no message and keeps the backoff.
    pub async fn next(&mut self) -> Received {
        loop {
            if let Some(messages) = &mut self.messages {
                match messages.next().await {
                    Some(message) => return Received::Message(message),
                    None => {
                        self.messages = None;
                        self.health.set(false);
                        self.retry_at = Instant::now();
                        metrics::counter!("redis_subscription_losses_total", "channel" => self.channel.clone())
                            .increment(1);
                        tracing::warn!(channel = %self.channel, "the Redis subscription was lost; resubscribing");
                    }
                }
            }
            tokio::time::sleep_until(self.retry_at).await;
            match subscribe(&self.client, &self.channel).await {
                Ok(messages) => {
                    self.messages = Some(messages);
                    self.health.set(true);
                    tracing::info!(
                        channel = %self.channel,
                        failed_attempts = self.failures,
                        "the Redis subscription is back"
                    );
                    self.failures = 0;
                    return Received::Subscribed;
                }
                Err(error) => {
                    self.failures = self.failures.saturating_add(1);
                    let delay = backoff(self.failures);
                    self.retry_at = Instant::now() + delay;
                    tracing::warn!(
                        channel = %self.channel,
                        error = format!("{error:#}"),
                        attempt = self.failures,
                        retry_in_ms = delay.as_millis() as u64,
                        "resubscribing to Redis failed"
                    );
                }
            }
        }
    }
}

/// Completes once `stop` turns true (or its sender is gone): a `select!` branch for the
/// listeners' loops, which would not be `Send` holding the `watch::Ref` across their awaits.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    drop(stop.wait_for(|stopped| *stopped).await);
}

async fn subscribe(client: &redis::Client, channel: &str) -> anyhow::Result<Messages> {
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .context("Failed to open a Redis pub/sub connection")?;
    pubsub
        .subscribe(channel)
        .await
        .with_context(|| format!("Failed to subscribe to {channel}"))?;
    Ok(Box::pin(pubsub.into_on_message()))
}

/// Doubles per failure up to the maximum; the jitter (between half and all of it) keeps
/// instances that lost Redis together from reconnecting in lockstep.
fn backoff(failures: u32) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(2_u32.saturating_pow(failures.saturating_sub(1)));
    let ceiling = doubled.min(MAX_BACKOFF);
    ceiling.mul_f64(rand::random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_maximum_with_jitter() {
        let first = backoff(1);
        assert!(
            (FIRST_BACKOFF / 2..=FIRST_BACKOFF).contains(&first),
            "{first:?}"
        );
        let fourth = backoff(4);
        assert!(
            (FIRST_BACKOFF * 4..=FIRST_BACKOFF * 8).contains(&fourth),
            "{fourth:?}"
        );
        for failures in [20, 1000, u32::MAX] {
            let late = backoff(failures);
            assert!((MAX_BACKOFF / 2..=MAX_BACKOFF).contains(&late), "{late:?}");
        }
    }
}
