//! Providers' status callbacks, verified by the incoming-webhook path
//! ([`crate::services::incoming_webhooks`]) in a transaction of the company whose secret
//! verified them: a notification moves forward (`SENT` → `DELIVERED` → `READ`, or `FAILED`)
//! found by its provider's message id within that company, and never back. A repeated
//! callback is acknowledged by the incoming-webhook path before it reaches here; a status that
//! says nothing new (a late `DELIVERED` after `READ`) changes nothing.

use chrono::Utc;
use entity::notification;
use sea_orm::{ColumnTrait, QueryFilter, sea_query::Expr};
use serde_json::Value;

use super::Status;
use crate::{
    db::tenant::TenantTxn,
    error::ApiError,
    events::DomainEvent,
    notifications::{Channel, DeliveryStatus, WebhookEvent, evolution, twilio},
};

/// Applies an Evolution webhook's `messages.update` statuses and records its opt-out replies;
/// returns what it did.
pub async fn evolution(txn: &TenantTxn, payload: &Value) -> anyhow::Result<String> {
    let events = evolution::parse_webhook(payload).map_err(anyhow::Error::msg)?;
    let applied = apply(txn, evolution::PROVIDER, &events).await?;
    let opted_out = super::preferences::opt_out_replies(txn, Channel::Whatsapp, &events)
        .await
        .map_err(ApiError::into_anyhow)?;
    Ok(format!("{applied}; {opted_out} customer(s) opted out"))
}

/// Applies a Twilio status callback or records an inbound SMS opt-out reply (its form fields,
/// as the incoming-webhook path stored them); returns what it did.
pub async fn twilio(txn: &TenantTxn, payload: &Value) -> anyhow::Result<String> {
    let fields: Vec<(&str, &str)> = payload
        .as_object()
        .map(|fields| {
            fields
                .iter()
                .filter_map(|(name, value)| Some((name.as_str(), value.as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    let events: Vec<WebhookEvent> = twilio::parse_callback(fields.iter().copied())
        .into_iter()
        .collect();
    let applied = apply(txn, twilio::PROVIDER, &events).await?;
    let opted_out = super::preferences::opt_out_replies(txn, Channel::Sms, &events)
        .await
        .map_err(ApiError::into_anyhow)?;
    Ok(format!("{applied}; {opted_out} customer(s) opted out"))
}

/// Applies the status updates among `events` of `provider`'s messages.
pub async fn apply(
    txn: &TenantTxn,
    provider: &str,
    events: &[WebhookEvent],
) -> anyhow::Result<String> {
    let mut applied = 0;
    for event in events {
        let WebhookEvent::StatusUpdate {
            provider_message_id,
            status,
            error_code,
        } = event
        else {
            continue;
        };
        if update(
            txn,
            provider,
            provider_message_id,
            *status,
            error_code.as_deref(),
        )
        .await?
        {
            applied += 1;
        }
    }
    Ok(format!("{applied} notification status(es) applied"))
}

/// Moves one notification forward; returns whether it moved.
async fn update(
    txn: &TenantTxn,
    provider: &str,
    provider_message_id: &str,
    status: DeliveryStatus,
    error_code: Option<&str>,
) -> anyhow::Result<bool> {
    let found = txn
        .find::<notification::Entity>()
        .filter(notification::Column::Provider.eq(provider))
        .filter(notification::Column::ProviderMessageId.eq(provider_message_id))
        .one(txn)
        .await?;
    let Some(found) = found else {
        tracing::info!(
            provider,
            provider_message_id,
            "a status callback for no notification of the company"
        );
        return Ok(false);
    };
    let (to, from): (Status, &[Status]) = match status {
        // The provider took it: it is `SENT` already.
        DeliveryStatus::Sent => return Ok(false),
        DeliveryStatus::Delivered => (Status::Delivered, &[Status::Sent]),
        DeliveryStatus::Read => (Status::Read, &[Status::Sent, Status::Delivered]),
        DeliveryStatus::Failed => (Status::Failed, &[Status::Sent]),
    };
    let now = Utc::now();
    let mut change = txn
        .update::<notification::Entity>()
        .col_expr(notification::Column::Status, Expr::value(to.as_str()))
        .col_expr(notification::Column::UpdatedAt, Expr::value(now));
    change = match to {
        Status::Delivered => change.col_expr(notification::Column::DeliveredAt, Expr::value(now)),
        Status::Read => change
            .col_expr(notification::Column::ReadAt, Expr::value(now))
            .col_expr(
                notification::Column::DeliveredAt,
                Expr::value(found.delivered_at.unwrap_or(now)),
            ),
        _ => change
            .col_expr(
                notification::Column::LastErrorCode,
                Expr::value(error_code.unwrap_or("PROVIDER_FAILED")),
            )
            .col_expr(
                notification::Column::LastError,
                Expr::value("the provider reported the message failed"),
            ),
    };
    let moved = change
        .filter(notification::Column::Id.eq(found.id))
        .filter(notification::Column::Status.is_in(from.iter().map(|status| status.as_str())))
        .exec(txn)
        .await?
        .rows_affected
        == 1;
    if !moved {
        return Ok(false);
    }
    let failure = (to == Status::Failed).then(|| {
        (
            error_code.unwrap_or("PROVIDER_FAILED").to_string(),
            "the provider reported the message failed".to_string(),
        )
    });
    let state = |status: Status| {
        super::event_state(
            &found,
            status,
            found.provider.clone(),
            found.provider_message_id.clone(),
            failure.clone(),
        )
    };
    // Delivered once: when it first reaches the device, whether `READ` is the first word of it.
    if found.delivered_at.is_none() && matches!(to, Status::Delivered | Status::Read) {
        txn.record(DomainEvent::NotificationDelivered(state(to)))
            .await?;
    }
    if to == Status::Failed {
        txn.record(DomainEvent::NotificationFailed(state(to)))
            .await?;
    }
    tracing::info!(notification = %found.id, provider, status = to.as_str(), "notification status from the provider");
    Ok(true)
}
