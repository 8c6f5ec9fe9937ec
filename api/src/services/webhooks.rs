//! Webhook endpoints, their deliveries, and the secrets of providers that call us.

use chrono::{DateTime, Utc};
use entity::{provider_secret, webhook_attempt, webhook_delivery, webhook_endpoint};
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use super::{authorize, optional_text};
use crate::{
    auth::Actor,
    crypto::Purpose,
    db::tenant::{Intent, TenantTxn},
    domain::text,
    error::{ApiError, ApiResult},
    events::EventType,
    state::AppState,
    webhooks::{self, DeliveryStatus, EVENT_TYPES, incoming::Provider, signature::SigningSecret},
};

/// Most endpoints one company may register.
pub const MAX_ENDPOINTS: u64 = 25;

/// An endpoint and its signing secret, which is shown this once.
pub struct EndpointWithSecret {
    pub endpoint: webhook_endpoint::Model,
    pub secret: String,
}

/// What `updateWebhookEndpoint` may change; `None` leaves a field as it is.
#[derive(Default)]
pub struct EndpointChanges {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    /// `true` re-enables an endpoint the worker disabled.
    pub enabled: Option<bool>,
}

async fn manage(state: &AppState, actor: &Actor) -> ApiResult<()> {
    authorize(state, actor, "webhooks", "manage").await
}

pub async fn endpoints(state: &AppState, actor: &Actor) -> ApiResult<Vec<webhook_endpoint::Model>> {
    manage(state, actor).await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let endpoints = txn
        .find::<webhook_endpoint::Entity>()
        .order_by_asc(webhook_endpoint::Column::Id)
        .all(&txn)
        .await?;
    txn.commit().await?;
    Ok(endpoints)
}

pub async fn endpoint(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
) -> ApiResult<Option<webhook_endpoint::Model>> {
    manage(state, actor).await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let endpoint = find_endpoint(&txn, id).await?;
    txn.commit().await?;
    Ok(endpoint)
}

async fn find_endpoint(
    txn: &TenantTxn,
    id: Uuid,
) -> Result<Option<webhook_endpoint::Model>, sea_orm::DbErr> {
    txn.find::<webhook_endpoint::Entity>()
        .filter(webhook_endpoint::Column::Id.eq(id))
        .one(txn)
        .await
}

async fn valid_url(state: &AppState, url: &str) -> ApiResult<String> {
    if url.len() > 2048 {
        return Err(ApiError::validation(
            "input.url",
            "the URL is longer than 2048 characters",
        ));
    }
    state
        .webhook_sender
        .check_url(url)
        .await
        .map(|url| url.to_string())
        .map_err(|message| ApiError::validation("input.url", message))
}

fn valid_events(events: &[String]) -> ApiResult<String> {
    let mut patterns: Vec<&str> = events.iter().map(|event| event.trim()).collect();
    patterns.sort_unstable();
    patterns.dedup();
    if patterns.is_empty() {
        return Err(ApiError::validation(
            "input.events",
            "subscribe to at least one event type",
        ));
    }
    if let Some(unknown) = patterns
        .iter()
        .find(|pattern| !webhooks::valid_pattern(pattern))
    {
        return Err(ApiError::validation(
            "input.events",
            format!(
                "`{unknown}` names no event; use `*`, a family like `order.*`, or one of: {}",
                EVENT_TYPES.join(", ")
            ),
        ));
    }
    Ok(json!(patterns).to_string())
}

/// A new signing secret: `whsec_` and the base64 of 32 random bytes.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    SigningSecret::encode(&bytes)
}

pub async fn create_endpoint(
    state: &AppState,
    actor: &Actor,
    url: &str,
    events: &[String],
    description: Option<String>,
) -> ApiResult<EndpointWithSecret> {
    manage(state, actor).await?;
    let events = valid_events(events)?;
    let description = optional_text(
        "input.description",
        description.as_deref(),
        text::DESCRIPTION,
    )?;
    let url = valid_url(state, url).await?;
    let secret = new_secret();
    let now = Utc::now();
    let txn = state.begin_for(actor, Intent::Serialized).await?;
    let company_id = txn.company().get();
    let existing = txn.find::<webhook_endpoint::Entity>().count(&txn).await?;
    if existing >= MAX_ENDPOINTS {
        return Err(ApiError::QuotaExceeded(format!(
            "a company can register at most {MAX_ENDPOINTS} webhook endpoints"
        )));
    }
    let endpoint = txn
        .insert(webhook_endpoint::ActiveModel {
            id: Set(Uuid::now_v7()),
            url: Set(url),
            description: Set(description),
            events: Set(events),
            secret_ciphertext: Set(state.secrets.seal(
                company_id,
                Purpose::WebhookSigning,
                &secret,
            )),
            previous_secret_ciphertext: Set(None),
            previous_secret_expires_at: Set(None),
            enabled: Set(true),
            disabled_reason: Set(None),
            failing_since: Set(None),
            created_by: Set(actor.user_id()),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .await?;
    txn.commit().await?;
    tracing::info!(endpoint = %endpoint.id, company = %company_id, "webhook endpoint created");
    Ok(EndpointWithSecret { endpoint, secret })
}

pub async fn update_endpoint(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    changes: EndpointChanges,
) -> ApiResult<webhook_endpoint::Model> {
    manage(state, actor).await?;
    let url = match &changes.url {
        Some(url) => Some(valid_url(state, url).await?),
        None => None,
    };
    let events = changes.events.as_deref().map(valid_events).transpose()?;
    let txn = state.begin_for(actor, Intent::Write).await?;
    let mut update = txn
        .update::<webhook_endpoint::Entity>()
        .col_expr(webhook_endpoint::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(webhook_endpoint::Column::Id.eq(id));
    if let Some(url) = url {
        update = update.col_expr(webhook_endpoint::Column::Url, Expr::value(url));
    }
    if let Some(events) = events {
        update = update.col_expr(webhook_endpoint::Column::Events, Expr::value(events));
    }
    if changes.description.is_some() {
        update = update.col_expr(
            webhook_endpoint::Column::Description,
            Expr::value(optional_text(
                "input.description",
                changes.description.as_deref(),
                text::DESCRIPTION,
            )?),
        );
    }
    if let Some(enabled) = changes.enabled {
        update = update.col_expr(webhook_endpoint::Column::Enabled, Expr::value(enabled));
        if enabled {
            update = update
                .col_expr(
                    webhook_endpoint::Column::DisabledReason,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(
                    webhook_endpoint::Column::FailingSince,
                    Expr::value(Option::<DateTime<Utc>>::None),
                );
        } else {
            update = update.col_expr(
                webhook_endpoint::Column::DisabledReason,
                Expr::value("disabled by a user"),
            );
        }
    }
    if update.exec(&txn).await?.rows_affected == 0 {
        return Err(ApiError::NotFound("webhook endpoint"));
    }
    let endpoint = find_endpoint(&txn, id)
        .await?
        .ok_or(ApiError::NotFound("webhook endpoint"))?;
    txn.commit().await?;
    if changes.enabled == Some(true) {
        // Its deliveries were held behind its paused job key (webhooks::worker).
        state
            .jobs
            .resume_key(&state.db, &webhooks::worker::endpoint_key(id))
            .await?;
    }
    Ok(endpoint)
}

/// Deletes an endpoint with its deliveries and their attempts.
pub async fn delete_endpoint(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<bool> {
    manage(state, actor).await?;
    let txn = state.begin_for(actor, Intent::Write).await?;
    let deleted = txn
        .delete::<webhook_endpoint::Entity>()
        .filter(webhook_endpoint::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(ApiError::NotFound("webhook endpoint"));
    }
    // Jobs held behind a disabled endpoint's paused key run once more and find nothing to send.
    state
        .jobs
        .resume_key(&txn, &webhooks::worker::endpoint_key(id))
        .await?;
    txn.commit().await?;
    state.jobs.wake();
    Ok(true)
}

/// Replaces the signing secret; the old one keeps signing (a second signature in the header)
/// for the configured grace period, so receivers can switch without dropping a delivery.
pub async fn rotate_secret(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
) -> ApiResult<EndpointWithSecret> {
    manage(state, actor).await?;
    let secret = new_secret();
    let now = Utc::now();
    let grace = chrono::Duration::seconds(
        i64::try_from(state.settings.webhooks.rotation_grace_secs).unwrap_or(i64::MAX),
    );
    // Serialized, so two rotations queue instead of both replacing the same secret.
    let txn = state.begin_for(actor, Intent::Serialized).await?;
    let company_id = txn.company().get();
    let current = txn
        .find::<webhook_endpoint::Entity>()
        .filter(webhook_endpoint::Column::Id.eq(id))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound("webhook endpoint"))?;
    let mut endpoint: webhook_endpoint::ActiveModel = current.clone().into();
    endpoint.previous_secret_ciphertext = Set(Some(current.secret_ciphertext));
    endpoint.previous_secret_expires_at = Set(Some(now + grace));
    endpoint.secret_ciphertext =
        Set(state
            .secrets
            .seal(company_id, Purpose::WebhookSigning, &secret));
    endpoint.updated_at = Set(now);
    let endpoint = endpoint.update(&txn).await?;
    txn.commit().await?;
    Ok(EndpointWithSecret { endpoint, secret })
}

/// A delivery with its attempts, oldest attempt first.
pub struct DeliveryWithAttempts {
    pub delivery: webhook_delivery::Model,
    pub attempts: Vec<webhook_attempt::Model>,
}

/// One page of an endpoint's deliveries, newest first, before the delivery `after`.
pub async fn deliveries(
    state: &AppState,
    actor: &Actor,
    endpoint_id: Uuid,
    status: Option<DeliveryStatus>,
    first: u64,
    after: Option<Uuid>,
) -> ApiResult<Vec<DeliveryWithAttempts>> {
    manage(state, actor).await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    if find_endpoint(&txn, endpoint_id).await?.is_none() {
        return Err(ApiError::NotFound("webhook endpoint"));
    }
    let mut query = txn
        .find::<webhook_delivery::Entity>()
        .filter(webhook_delivery::Column::EndpointId.eq(endpoint_id));
    if let Some(status) = status {
        query = query.filter(webhook_delivery::Column::Status.eq(status.as_str()));
    }
    if let Some(after) = after {
        query = query.filter(webhook_delivery::Column::Id.lt(after));
    }
    let page = query
        .order_by_desc(webhook_delivery::Column::Id)
        .limit(first)
        .all(&txn)
        .await?;
    let page = with_attempts(&txn, page).await?;
    txn.commit().await?;
    Ok(page)
}

/// Attaches the attempts of a page of deliveries with one query.
async fn with_attempts(
    txn: &TenantTxn,
    deliveries: Vec<webhook_delivery::Model>,
) -> ApiResult<Vec<DeliveryWithAttempts>> {
    let ids: Vec<Uuid> = deliveries.iter().map(|delivery| delivery.id).collect();
    let mut attempts = if ids.is_empty() {
        Vec::new()
    } else {
        txn.find::<webhook_attempt::Entity>()
            .filter(webhook_attempt::Column::DeliveryId.is_in(ids))
            .order_by_asc(webhook_attempt::Column::Id)
            .all(txn)
            .await?
    };
    Ok(deliveries
        .into_iter()
        .map(|delivery| {
            let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut attempts)
                .into_iter()
                .partition(|attempt| attempt.delivery_id == delivery.id);
            attempts = rest;
            DeliveryWithAttempts {
                delivery,
                attempts: mine,
            }
        })
        .collect())
}

async fn find_delivery(txn: &TenantTxn, id: Uuid) -> ApiResult<webhook_delivery::Model> {
    txn.find::<webhook_delivery::Entity>()
        .filter(webhook_delivery::Column::Id.eq(id))
        .one(txn)
        .await?
        .ok_or(ApiError::NotFound("webhook delivery"))
}

async fn delivery(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<DeliveryWithAttempts> {
    let txn = state.begin_for(actor, Intent::Read).await?;
    let found = find_delivery(&txn, id).await?;
    let found = with_attempts(&txn, vec![found])
        .await?
        .pop()
        .ok_or(ApiError::NotFound("webhook delivery"))?;
    txn.commit().await?;
    Ok(found)
}

/// Sends a delivery again from the start of the schedule, with the same `webhook-id`.
pub async fn redeliver(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
) -> ApiResult<DeliveryWithAttempts> {
    manage(state, actor).await?;
    let now = Utc::now();
    let txn = state.begin_for(actor, Intent::Write).await?;
    let found = find_delivery(&txn, id).await?;
    let restarted = webhook_delivery::Model {
        status: DeliveryStatus::Pending.as_str().to_string(),
        attempt_count: 0,
        next_attempt_at: now,
        updated_at: now,
        ..found
    };
    // One being sent right now records its attempt first; redelivering it meanwhile would
    // race it. Its job and the delivery change together.
    if !webhooks::worker::rearm(&state.jobs, &txn, &restarted).await? {
        return Err(ApiError::Conflict(
            "this delivery is being sent right now; try again when the attempt is recorded".into(),
        ));
    }
    txn.update::<webhook_delivery::Entity>()
        .col_expr(
            webhook_delivery::Column::Status,
            Expr::value(restarted.status.clone()),
        )
        .col_expr(webhook_delivery::Column::AttemptCount, Expr::value(0))
        .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(now))
        .col_expr(webhook_delivery::Column::UpdatedAt, Expr::value(now))
        .filter(webhook_delivery::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    state.jobs.wake();
    delivery(state, actor, id).await
}

/// Queues a `webhook.test` delivery to the endpoint.
pub async fn send_test(
    state: &AppState,
    actor: &Actor,
    endpoint_id: Uuid,
) -> ApiResult<DeliveryWithAttempts> {
    manage(state, actor).await?;
    let txn = state.begin_for(actor, Intent::Write).await?;
    let endpoint = find_endpoint(&txn, endpoint_id)
        .await?
        .ok_or(ApiError::NotFound("webhook endpoint"))?;
    if !endpoint.enabled {
        return Err(ApiError::validation(
            "endpointId",
            "the endpoint is disabled; enable it first",
        ));
    }
    let now = Utc::now();
    let event_id = Uuid::now_v7();
    let company_id = txn.company().get();
    let body = webhooks::envelope(
        event_id,
        EventType::WebhookTest.name(),
        company_id,
        now,
        json!({ "endpointId": endpoint.id, "message": "This is a test delivery." }),
    );
    let created = txn
        .insert(webhooks::new_delivery(
            company_id,
            endpoint.id,
            event_id,
            EventType::WebhookTest.name(),
            body,
            now,
        ))
        .await?;
    // The delivery and its job commit together; the wake after the commit lets this
    // instance's runtime claim it at once.
    webhooks::worker::schedule(&state.jobs, &txn, std::slice::from_ref(&created)).await?;
    txn.commit().await?;
    state.jobs.wake();
    Ok(DeliveryWithAttempts {
        delivery: created,
        attempts: Vec::new(),
    })
}

/// The providers a company has a secret for, with when it was set.
pub async fn provider_secrets(
    state: &AppState,
    actor: &Actor,
) -> ApiResult<Vec<provider_secret::Model>> {
    manage(state, actor).await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let secrets = txn
        .find::<provider_secret::Entity>()
        .order_by_asc(provider_secret::Column::Provider)
        .all(&txn)
        .await?;
    txn.commit().await?;
    Ok(secrets)
}

/// Sets (or replaces) the secret a provider signs its webhooks with; `None` removes it.
pub async fn set_provider_secret(
    state: &AppState,
    actor: &Actor,
    provider: Provider,
    secret: Option<&str>,
) -> ApiResult<bool> {
    manage(state, actor).await?;
    let txn = state.begin_for(actor, Intent::Write).await?;
    store_provider_secret(&txn, state, provider, secret).await?;
    txn.commit().await?;
    Ok(secret.is_some())
}

/// Writes a provider secret (encrypted) in the caller's transaction; `None` removes it.
pub async fn store_provider_secret(
    txn: &TenantTxn,
    state: &AppState,
    provider: Provider,
    secret: Option<&str>,
) -> ApiResult<()> {
    txn.delete::<provider_secret::Entity>()
        .filter(provider_secret::Column::Provider.eq(provider.as_str()))
        .exec(txn)
        .await?;
    if let Some(secret) = secret {
        let secret = valid_provider_secret(provider, secret)?;
        let company_id = txn.company().get();
        txn.insert(provider_secret::ActiveModel {
            id: Set(Uuid::now_v7()),
            provider: Set(provider.as_str().to_string()),
            secret_ciphertext: Set(state
                .secrets
                .seal(company_id, Purpose::ProviderSecret, secret)),
            updated_at: Set(Utc::now()),
            ..Default::default()
        })
        .await?;
    }
    Ok(())
}

fn valid_provider_secret(provider: Provider, secret: &str) -> ApiResult<&str> {
    let secret = secret.trim();
    if secret.len() < 16 || secret.len() > 512 {
        return Err(ApiError::validation(
            "secret",
            "a webhook secret has 16 to 512 characters",
        ));
    }
    if provider == Provider::Standard && SigningSecret::parse(secret).is_err() {
        return Err(ApiError::validation(
            "secret",
            "a Standard Webhooks secret is `whsec_` followed by base64",
        ));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    #[test]
    fn new_secrets_carry_32_random_bytes() {
        let secret = new_secret();
        let encoded = secret.strip_prefix("whsec_").expect("prefix");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64");
        assert_eq!(bytes.len(), 32);
        assert_ne!(secret, new_secret());
    }

    #[test]
    fn event_lists_are_checked_and_normalised() {
        let stored = valid_events(&["order.*".into(), " order.*".into(), "payment.paid".into()])
            .expect("valid");
        assert_eq!(stored, r#"["order.*","payment.paid"]"#);
        assert!(valid_events(&[]).is_err());
        assert!(valid_events(&["orders.created".into()]).is_err());
    }
}
