//! Webhook endpoints, deliveries and provider secrets (`webhooks:manage`).

use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{provider_secret, webhook_attempt, webhook_endpoint};

use super::{
    context::{actor, parse_id, state},
    pagination::{PageInfo, id_page, page_size, parse_id_cursor},
};
use crate::{
    services::webhooks::{
        self as service, DeliveryWithAttempts, EndpointChanges, EndpointWithSecret,
    },
    webhooks::{self, DeliveryStatus, EVENT_TYPES, incoming::Provider},
};

/// Where an integrator receives the company's events.
pub struct WebhookEndpoint(webhook_endpoint::Model);

#[Object]
impl WebhookEndpoint {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn url(&self) -> &str {
        &self.0.url
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// Event types and patterns (`order.*`, `*`) the endpoint receives.
    async fn events(&self) -> Vec<String> {
        serde_json::from_str(&self.0.events).unwrap_or_default()
    }
    /// False once disabled, by a user or after failing continuously; `disabledReason` says why.
    async fn enabled(&self) -> bool {
        self.0.enabled
    }
    async fn disabled_reason(&self) -> Option<&str> {
        self.0.disabled_reason.as_deref()
    }
    /// When the current run of failed attempts started; null after any success.
    async fn failing_since(&self) -> Option<DateTime<Utc>> {
        self.0.failing_since
    }
    /// Until when the secret replaced by the last rotation still signs (a second signature).
    async fn previous_secret_expires_at(&self) -> Option<DateTime<Utc>> {
        self.0
            .previous_secret_expires_at
            .filter(|expires| *expires > Utc::now())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// An endpoint with its signing secret, shown only here: store it now.
#[derive(SimpleObject)]
pub struct WebhookEndpointWithSecret {
    endpoint: WebhookEndpoint,
    /// `whsec_…`: verify `webhook-signature` with it (Standard Webhooks).
    secret: String,
}

impl From<EndpointWithSecret> for WebhookEndpointWithSecret {
    fn from(created: EndpointWithSecret) -> Self {
        Self {
            endpoint: WebhookEndpoint(created.endpoint),
            secret: created.secret,
        }
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::webhooks::DeliveryStatus")]
pub enum WebhookDeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    Delivered,
    /// Every attempt of the retry schedule failed; `redeliverWebhook` starts over.
    Dead,
}

/// One event on its way to one endpoint.
pub struct WebhookDelivery(DeliveryWithAttempts);

#[Object]
impl WebhookDelivery {
    async fn id(&self) -> ID {
        ID(self.0.delivery.id.to_string())
    }
    /// The `webhook-id` header: the same on every attempt, the receiver's idempotency key.
    async fn webhook_id(&self) -> String {
        webhooks::message_id(self.0.delivery.id)
    }
    async fn event_id(&self) -> ID {
        ID(self.0.delivery.event_id.to_string())
    }
    async fn event_type(&self) -> &str {
        &self.0.delivery.event_type
    }
    async fn status(&self) -> WebhookDeliveryStatus {
        match self.0.delivery.status.as_str() {
            "DELIVERED" => DeliveryStatus::Delivered,
            "DEAD" => DeliveryStatus::Dead,
            _ => DeliveryStatus::Pending,
        }
        .into()
    }
    /// The JSON body sent on every attempt.
    async fn payload(&self) -> &str {
        &self.0.delivery.payload
    }
    /// Attempts since the delivery was created or last redelivered.
    async fn attempt_count(&self) -> i32 {
        self.0.delivery.attempt_count
    }
    /// When the next attempt is due; null once delivered or dead.
    async fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        (self.0.delivery.status == DeliveryStatus::Pending.as_str())
            .then_some(self.0.delivery.next_attempt_at)
    }
    async fn last_status_code(&self) -> Option<i32> {
        self.0.delivery.last_status_code
    }
    async fn last_error(&self) -> Option<&str> {
        self.0.delivery.last_error.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.delivery.created_at
    }
    async fn delivered_at(&self) -> Option<DateTime<Utc>> {
        self.0.delivery.delivered_at
    }
    /// Every attempt, oldest first, redeliveries included.
    async fn attempts(&self) -> Vec<WebhookAttempt> {
        self.0
            .attempts
            .iter()
            .cloned()
            .map(WebhookAttempt)
            .collect()
    }
}

/// One HTTP attempt of a delivery.
pub struct WebhookAttempt(webhook_attempt::Model);

#[Object]
impl WebhookAttempt {
    async fn attempted_at(&self) -> DateTime<Utc> {
        self.0.attempted_at
    }
    /// Null when no response arrived.
    async fn status_code(&self) -> Option<i32> {
        self.0.status_code
    }
    async fn latency_ms(&self) -> i32 {
        self.0.latency_ms
    }
    /// The first KiB of the response body.
    async fn response_body(&self) -> Option<&str> {
        self.0.response_body.as_deref()
    }
    /// Why the attempt failed without a response (refused, timed out, blocked by the guard).
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
}

#[derive(SimpleObject)]
pub struct WebhookDeliveryEdge {
    cursor: String,
    node: WebhookDelivery,
}

#[derive(SimpleObject)]
pub struct WebhookDeliveryConnection {
    edges: Vec<WebhookDeliveryEdge>,
    page_info: PageInfo,
}

/// A provider the company accepts webhooks from.
pub struct WebhookProviderSecret(provider_secret::Model);

#[Object]
impl WebhookProviderSecret {
    async fn provider(&self) -> Option<Provider> {
        Provider::parse(&self.0.provider)
    }
    /// Where the provider must send its webhooks.
    async fn receive_path(&self) -> String {
        format!("/webhooks/in/{}/{}", self.0.provider, self.0.company_id)
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(InputObject)]
pub struct CreateWebhookEndpointInput {
    /// https (http is accepted outside production); private and internal addresses are refused.
    url: String,
    /// Event types, `order.*`-style families, or `*`.
    events: Vec<String>,
    description: Option<String>,
}

/// Changes to an endpoint; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateWebhookEndpointInput {
    url: Option<String>,
    events: Option<Vec<String>>,
    description: Option<String>,
    /// `true` re-enables a disabled endpoint; its pending deliveries go out again.
    enabled: Option<bool>,
}

#[derive(Default)]
pub struct WebhookQuery;

#[Object]
impl WebhookQuery {
    async fn webhook_endpoints(&self, ctx: &Context<'_>) -> Result<Vec<WebhookEndpoint>> {
        Ok(service::endpoints(state(ctx)?, actor(ctx)?)
            .await?
            .into_iter()
            .map(WebhookEndpoint)
            .collect())
    }

    /// An endpoint of the company; null for any other id.
    async fn webhook_endpoint(&self, ctx: &Context<'_>, id: ID) -> Result<Option<WebhookEndpoint>> {
        let id = parse_id("id", &id)?;
        Ok(service::endpoint(state(ctx)?, actor(ctx)?, id)
            .await?
            .map(WebhookEndpoint))
    }

    /// An endpoint's deliveries, newest first, with every attempt.
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        endpoint_id: ID,
        status: Option<WebhookDeliveryStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<WebhookDeliveryConnection> {
        let endpoint_id = parse_id("endpointId", &endpoint_id)?;
        let after = parse_id_cursor("after", after.as_deref())?;
        let size = page_size(first);
        let rows = service::deliveries(
            state(ctx)?,
            actor(ctx)?,
            endpoint_id,
            status.map(Into::into),
            size + 1,
            after,
        )
        .await?;
        let (rows, page_info) = id_page(rows, size, after.is_some(), |row| row.delivery.id);
        Ok(WebhookDeliveryConnection {
            edges: rows
                .into_iter()
                .map(|(cursor, delivery)| WebhookDeliveryEdge {
                    cursor,
                    node: WebhookDelivery(delivery),
                })
                .collect(),
            page_info,
        })
    }

    /// Every event type an endpoint can subscribe to.
    async fn webhook_event_types(&self) -> Vec<&'static str> {
        EVENT_TYPES.to_vec()
    }

    /// Providers the company has a webhook secret for (the secrets are never returned).
    async fn webhook_provider_secrets(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Vec<WebhookProviderSecret>> {
        Ok(service::provider_secrets(state(ctx)?, actor(ctx)?)
            .await?
            .into_iter()
            .map(WebhookProviderSecret)
            .collect())
    }
}

#[derive(Default)]
pub struct WebhookMutation;

#[Object]
impl WebhookMutation {
    /// Registers an endpoint; the answer carries its signing secret, shown this once.
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookEndpointInput,
    ) -> Result<WebhookEndpointWithSecret> {
        Ok(service::create_endpoint(
            state(ctx)?,
            actor(ctx)?,
            &input.url,
            &input.events,
            input.description,
        )
        .await?
        .into())
    }

    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateWebhookEndpointInput,
    ) -> Result<WebhookEndpoint> {
        let id = parse_id("id", &id)?;
        let changes = EndpointChanges {
            url: input.url,
            events: input.events,
            description: input.description,
            enabled: input.enabled,
        };
        Ok(WebhookEndpoint(
            service::update_endpoint(state(ctx)?, actor(ctx)?, id, changes).await?,
        ))
    }

    /// Deletes an endpoint with its deliveries.
    async fn delete_webhook_endpoint(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let id = parse_id("id", &id)?;
        Ok(service::delete_endpoint(state(ctx)?, actor(ctx)?, id).await?)
    }

    /// A new signing secret, shown this once. The old one keeps signing alongside it (two
    /// signatures in `webhook-signature`) until `previousSecretExpiresAt`.
    async fn rotate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<WebhookEndpointWithSecret> {
        let id = parse_id("id", &id)?;
        Ok(service::rotate_secret(state(ctx)?, actor(ctx)?, id)
            .await?
            .into())
    }

    /// Sends a delivery again, from the start of the retry schedule, with the same `webhookId`.
    async fn redeliver_webhook(
        &self,
        ctx: &Context<'_>,
        delivery_id: ID,
    ) -> Result<WebhookDelivery> {
        let id = parse_id("deliveryId", &delivery_id)?;
        Ok(WebhookDelivery(
            service::redeliver(state(ctx)?, actor(ctx)?, id).await?,
        ))
    }

    /// Queues a `webhook.test` event to the endpoint.
    async fn send_test_webhook(
        &self,
        ctx: &Context<'_>,
        endpoint_id: ID,
    ) -> Result<WebhookDelivery> {
        let id = parse_id("endpointId", &endpoint_id)?;
        Ok(WebhookDelivery(
            service::send_test(state(ctx)?, actor(ctx)?, id).await?,
        ))
    }

    /// Sets the secret a provider signs its webhooks to us with (stored encrypted).
    async fn set_webhook_provider_secret(
        &self,
        ctx: &Context<'_>,
        provider: Provider,
        secret: String,
    ) -> Result<bool> {
        Ok(service::set_provider_secret(state(ctx)?, actor(ctx)?, provider, Some(&secret)).await?)
    }

    /// Stops accepting the provider's webhooks.
    async fn remove_webhook_provider_secret(
        &self,
        ctx: &Context<'_>,
        provider: Provider,
    ) -> Result<bool> {
        service::set_provider_secret(state(ctx)?, actor(ctx)?, provider, None).await?;
        Ok(true)
    }
}
