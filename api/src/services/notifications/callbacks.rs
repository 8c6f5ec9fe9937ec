//! Providers' status callbacks, verified by the incoming-webhook path
//! ([`crate::services::incoming_webhooks`]) in a transaction of the company whose secret
//! verified them: a notification moves forward (`SENT` → `DELIVERED` → `READ`, or `FAILED`)
//! found by its provider's message id within that company, and never back. A repeated
//! callback is acknowledged by the incoming-webhook path before it reaches here; a status that
//! says nothing new (a late `DELIVERED` after `READ`) changes nothing.
//!
//! A provider may call back before its send's outcome is recorded (it answers the send and
//! reports the message delivered in the same second, while the outcome waits for its batch):
//! such a status is kept (`notification_early_statuses`) and applied by [`apply_early`] when
//! the send records the message id.

use chrono::Utc;
use entity::{notification, notification_early_status};
use sea_orm::{ActiveValue::Set, ColumnTrait, QueryFilter, QueryOrder, sea_query::Expr};
use serde_json::Value;
use uuid::Uuid;

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

/// How long a status callback waits for the send it names to be recorded. The wait is the
/// moment between the provider's answer and the batch that records it; a status older than
/// this names a message no notification sent.
const EARLY_STATUS_KEPT: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

/// Moves one notification forward; returns whether it moved. A status for a message id no
/// notification has yet is kept for [`apply_early`].
async fn update(
    txn: &TenantTxn,
    provider: &str,
    provider_message_id: &str,
    status: DeliveryStatus,
    error_code: Option<&str>,
) -> anyhow::Result<bool> {
    let to = match status {
        // The provider took it: it is `SENT` already.
        DeliveryStatus::Sent => return Ok(false),
        DeliveryStatus::Delivered => Status::Delivered,
        DeliveryStatus::Read => Status::Read,
        DeliveryStatus::Failed => Status::Failed,
    };
    let found = txn
        .find::<notification::Entity>()
        .filter(notification::Column::Provider.eq(provider))
        .filter(notification::Column::ProviderMessageId.eq(provider_message_id))
        .one(txn)
        .await?;
    let Some(found) = found else {
        keep_early(txn, provider, provider_message_id, to, error_code).await?;
        return Ok(false);
    };
    advance(txn, &found, to, error_code).await
}

/// Keeps a status whose message id is not recorded yet, and prunes the company's statuses
/// that waited longer than [`EARLY_STATUS_KEPT`].
async fn keep_early(
    txn: &TenantTxn,
    provider: &str,
    provider_message_id: &str,
    to: Status,
    error_code: Option<&str>,
) -> anyhow::Result<()> {
    let now = Utc::now();
    txn.delete::<notification_early_status::Entity>()
        .filter(notification_early_status::Column::ReceivedAt.lt(now - EARLY_STATUS_KEPT))
        .exec(txn)
        .await?;
    txn.insert(notification_early_status::ActiveModel {
        id: Set(Uuid::now_v7()),
        company_id: Set(txn.company().get()),
        provider: Set(provider.to_string()),
        provider_message_id: Set(provider_message_id.to_string()),
        status: Set(to.as_str().to_string()),
        error_code: Set(error_code.map(str::to_string)),
        received_at: Set(now),
    })
    .await?;
    tracing::info!(
        provider,
        provider_message_id,
        status = to.as_str(),
        "a status callback for no notification yet; kept for its send's record"
    );
    Ok(())
}

/// Applies to `sent`, whose provider message id `txn` has just recorded, the statuses that
/// arrived for it before (in the order they arrived).
pub async fn apply_early(txn: &TenantTxn, sent: &notification::Model) -> anyhow::Result<()> {
    let (Some(provider), Some(provider_message_id)) = (
        sent.provider.as_deref(),
        sent.provider_message_id.as_deref(),
    ) else {
        return Ok(());
    };
    let waiting = txn
        .find::<notification_early_status::Entity>()
        .filter(notification_early_status::Column::Provider.eq(provider))
        .filter(notification_early_status::Column::ProviderMessageId.eq(provider_message_id))
        .order_by_asc(notification_early_status::Column::ReceivedAt)
        .order_by_asc(notification_early_status::Column::Id)
        .all(txn)
        .await?;
    if waiting.is_empty() {
        return Ok(());
    }
    txn.delete::<notification_early_status::Entity>()
        .filter(notification_early_status::Column::Id.is_in(waiting.iter().map(|early| early.id)))
        .exec(txn)
        .await?;
    let mut current = sent.clone();
    for early in waiting {
        let Some(to) = Status::parse(&early.status) else {
            continue;
        };
        if advance(txn, &current, to, early.error_code.as_deref()).await? {
            current.status = to.as_str().to_string();
            if matches!(to, Status::Delivered | Status::Read) && current.delivered_at.is_none() {
                current.delivered_at = Some(early.received_at);
            }
        }
    }
    Ok(())
}

/// Moves `found` to `to` if it stands where `to` may follow; returns whether it moved.
async fn advance(
    txn: &TenantTxn,
    found: &notification::Model,
    to: Status,
    error_code: Option<&str>,
) -> anyhow::Result<bool> {
    let from: &[Status] = match to {
        Status::Delivered => &[Status::Sent],
        Status::Read => &[Status::Sent, Status::Delivered],
        Status::Failed => &[Status::Sent],
        Status::Queued | Status::Sent | Status::Cancelled => return Ok(false),
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
            found,
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
    tracing::info!(notification = %found.id, provider = found.provider.as_deref().unwrap_or_default(), status = to.as_str(), "notification status from the provider");
    Ok(true)
}
