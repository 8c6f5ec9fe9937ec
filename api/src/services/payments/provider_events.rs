//! Verified provider events (Stripe) applied to the company's payments.

use chrono::Utc;
use entity::{payment, refund};
use sea_orm::{ActiveValue::Set, ColumnTrait, QueryFilter, QuerySelect};
use serde_json::Value;
use uuid::Uuid;

use super::{
    lifecycle::{move_to, settle},
    refunds::{complete_refund, reserve_refund},
    request_hash, status_of,
};
use crate::events::{
    DomainEvent,
    domain::{PaymentFailed, PaymentState},
};
use crate::{
    db::tenant::TenantTxn,
    domain::payment::{Method, Status},
    error::{ApiError, ApiResult},
    state::AppState,
    webhooks::incoming::{Provider, Verified},
};

/// Applies a verified provider event to the company's payments; returns what it did. `txn`
/// acts for the company whose secret verified the event, so Stripe events find their payment
/// by PaymentIntent id within that company only: an event signed with one company's secret can
/// never touch another company's payment.
pub async fn handle_provider_event(
    txn: &TenantTxn,
    _state: &AppState,
    provider: Provider,
    event: &Verified,
) -> anyhow::Result<String> {
    if provider != Provider::Stripe {
        return Ok(format!(
            "stored; {} events are not applied to payments",
            provider.as_str()
        ));
    }
    let object = &event.payload["data"]["object"];
    let intent_id = match event.event_type.as_str() {
        "charge.refunded" => object["payment_intent"].as_str(),
        _ => object["id"].as_str(),
    };
    let Some(intent_id) = intent_id else {
        return Ok(format!(
            "ignored: {} names no PaymentIntent",
            event.event_type
        ));
    };
    let Some(payment) = txn
        .find::<payment::Entity>()
        .filter(payment::Column::ProviderReference.eq(intent_id))
        .filter(payment::Column::Method.eq(Method::Card.as_str()))
        .lock_exclusive()
        .one(txn)
        .await?
    else {
        return Ok(format!(
            "ignored: no payment of this company for {intent_id}"
        ));
    };
    let current = status_of(&payment);
    let applied = match event.event_type.as_str() {
        "payment_intent.succeeded" if current.can_become(Status::Paid) => {
            settle(txn, payment, None).await.map(|_| "paid")
        }
        "payment_intent.amount_capturable_updated" if current.can_become(Status::Authorized) => {
            move_to(txn, payment, Status::Authorized, |_| {})
                .await
                .map(|_| "authorized")
        }
        "payment_intent.payment_failed" if current.can_become(Status::Failed) => {
            let reason = object["last_payment_error"]["message"]
                .as_str()
                .unwrap_or("the card payment failed")
                .to_string();
            match move_to(txn, payment, Status::Failed, |active| {
                active.failure_reason = Set(Some(reason.clone()));
            })
            .await
            {
                Ok(failed) => txn
                    .record(DomainEvent::PaymentFailed(PaymentFailed {
                        payment: PaymentState::of(&failed),
                        reason: reason.clone(),
                    }))
                    .await
                    .map(|()| "failed")
                    .map_err(ApiError::from),
                Err(error) => Err(error),
            }
        }
        "payment_intent.canceled" if current.can_become(Status::Cancelled) => {
            match move_to(txn, payment, Status::Cancelled, |_| {}).await {
                Ok(cancelled) => txn
                    .record(DomainEvent::PaymentCancelled(PaymentState::of(&cancelled)))
                    .await
                    .map(|()| "cancelled")
                    .map_err(ApiError::from),
                Err(error) => Err(error),
            }
        }
        "charge.refunded" => refunded_at_provider(txn, payment, object, &event.external_id).await,
        other => return Ok(format!("ignored: {other} in state {current}")),
    };
    applied
        .map(|what| format!("{what}: payment {intent_id}"))
        .map_err(|error| {
            error
                .into_anyhow()
                .context(format!("applying {}", event.event_type))
        })
}

/// `charge.refunded` carries the total refunded; only what we have not recorded yet (a refund
/// made in Stripe's dashboard) is added.
///
/// Stripe does not promise to deliver events in order, so the refund may arrive before
/// `payment_intent.succeeded`. A charge can only be refunded once it was captured, so a captured
/// charge is proof of payment: the payment is settled first, then refunded, and the late
/// `succeeded` finds it refunded and changes nothing. An uncaptured charge that is "refunded" is
/// an authorization released when its intent was cancelled: no money moved, and
/// `payment_intent.canceled` says what became of the payment.
async fn refunded_at_provider(
    txn: &TenantTxn,
    payment: payment::Model,
    charge: &Value,
    event_id: &str,
) -> ApiResult<&'static str> {
    let payment = if status_of(&payment).collected() {
        payment
    } else if charge["captured"].as_bool() == Some(true)
        && status_of(&payment).can_become(Status::Paid)
    {
        settle(txn, payment, None).await?
    } else {
        return Ok("ignored: the charge was never captured, so nothing was paid or refunded");
    };
    let total = charge["amount_refunded"].as_i64().unwrap_or(0);
    let new = total.clamp(0, payment.amount_minor) - payment.refunded_minor;
    if new <= 0 {
        return Ok("refund already recorded");
    }
    let now = Utc::now();
    let recorded = txn
        .insert(refund::ActiveModel {
            id: Set(Uuid::now_v7()),
            payment_id: Set(payment.id),
            amount_minor: Set(new),
            currency: Set(payment.currency.clone()),
            reason: Set(Some("refunded at the provider".into())),
            status: Set("SUCCEEDED".into()),
            provider_reference: Set(charge["refunds"]["data"][0]["id"]
                .as_str()
                .map(String::from)),
            idempotency_key: Set(format!("stripe:{event_id}")),
            request_hash: Set(request_hash(&[event_id])),
            processing_until: Set(None),
            failure_reason: Set(None),
            created_by: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .await?;
    let reserved = reserve_refund(txn, payment, new).await?;
    complete_refund(txn, reserved, &recorded).await?;
    Ok("refunded")
}
