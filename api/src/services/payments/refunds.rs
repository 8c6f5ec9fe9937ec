//! Refunds of collected payments, by idempotency key.

use chrono::Utc;
use entity::{payment, refund};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, QueryFilter};
use uuid::Uuid;

use super::{
    PROCESSING_WINDOW, find_payment, ledger, lifecycle::move_to, method_of, payment_of,
    provider_error, request_hash, settings::company_stripe_key, status_of, valid_amount, valid_key,
};
use crate::events::{
    DomainEvent,
    domain::{PaymentRefunded, PaymentState},
};
use crate::{
    auth::Actor,
    db::tenant::{Intent, TenantTxn},
    domain::payment::{Method, Status},
    error::{ApiError, ApiResult},
    payments::stripe::{RefundRequest, RefundStatus},
    services::{authorize, optional_text},
    state::AppState,
};

/// What `refundPayment` asks for.
pub struct NewRefund {
    pub payment_id: Uuid,
    pub amount_minor: Option<i64>,
    pub reason: Option<String>,
    pub idempotency_key: String,
}

/// Refunds part or all of what remains of a collected payment, once per idempotency key.
pub async fn refund(
    state: &AppState,
    actor: &Actor,
    request: NewRefund,
) -> ApiResult<refund::Model> {
    authorize(state, actor, "payments", "refund").await?;
    let key = valid_key(&request.idempotency_key)?;
    if let Some(amount) = request.amount_minor {
        valid_amount(amount)?;
    }
    let reason = optional_text("input.reason", request.reason.as_deref(), 500)?;
    let hash = request_hash(&[
        &request.payment_id.to_string(),
        &request
            .amount_minor
            .map_or_else(|| "rest".to_string(), |amount| amount.to_string()),
    ]);
    let txn = state.begin_for(actor, Intent::Serialized).await?;
    if let Some(existing) = txn
        .find::<refund::Entity>()
        .filter(refund::Column::IdempotencyKey.eq(&key))
        .one(&txn)
        .await?
    {
        if existing.request_hash != hash {
            return Err(ApiError::Conflict(
                "this idempotency key was used for a different refund".into(),
            ));
        }
        if existing.status != "PENDING" {
            return Ok(existing);
        }
        if existing
            .processing_until
            .is_some_and(|until| until > Utc::now())
        {
            return Err(ApiError::Conflict(
                "a refund with this idempotency key is still being processed; retry shortly".into(),
            ));
        }
        // The provider was not reached, or its answer never recorded: ask again, with the
        // same provider key.
        let mut claim: refund::ActiveModel = existing.into();
        claim.processing_until = Set(Some(Utc::now() + PROCESSING_WINDOW));
        let claimed = claim.update(&txn).await?;
        txn.commit().await?;
        return settle_card_refund(state, actor, claimed).await;
    }
    let payment = payment_of(&txn, request.payment_id).await?;
    if !status_of(&payment).collected() {
        return Err(ApiError::validation(
            "input.paymentId",
            format!(
                "only a paid payment can be refunded; this one is {}",
                payment.status
            ),
        ));
    }
    let remaining = payment.amount_minor - payment.refunded_minor;
    let amount = request.amount_minor.unwrap_or(remaining);
    if amount <= 0 || amount > remaining {
        return Err(ApiError::validation(
            "input.amountMinor",
            format!(
                "refunds cannot exceed what was paid: {remaining} minor units remain refundable"
            ),
        ));
    }
    let now = Utc::now();
    let is_card = method_of(&payment) == Method::Card;
    let created = txn
        .insert(refund::ActiveModel {
            id: Set(Uuid::now_v7()),
            payment_id: Set(payment.id),
            amount_minor: Set(amount),
            currency: Set(payment.currency.clone()),
            reason: Set(reason.clone()),
            status: Set(if is_card { "PENDING" } else { "SUCCEEDED" }.to_string()),
            provider_reference: Set(None),
            idempotency_key: Set(key),
            request_hash: Set(hash),
            processing_until: Set(is_card.then(|| now + PROCESSING_WINDOW)),
            failure_reason: Set(None),
            created_by: Set(actor.user_id()),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .await?;
    // The amount is reserved now, so a concurrent refund sees what remains after this one.
    let reserved = reserve_refund(&txn, payment, amount).await?;
    if !is_card {
        complete_refund(&txn, reserved, &created).await?;
        txn.commit().await?;
        return Ok(created);
    }
    txn.commit().await?;
    settle_card_refund(state, actor, created).await
}

/// Asks Stripe for a card refund written as `PENDING` (its amount reserved) and records the
/// answer: done, refused (the reservation released), or unknown — left pending for a retry
/// with the same key, which asks again with the same provider key.
async fn settle_card_refund(
    state: &AppState,
    actor: &Actor,
    pending: refund::Model,
) -> ApiResult<refund::Model> {
    let payment = find_payment(state, actor, pending.payment_id).await?;
    let secret_key = company_stripe_key(state, actor).await?;
    let answer = state
        .payment_provider
        .refund(&RefundRequest {
            secret_key: &secret_key,
            intent_id: payment.provider_reference.as_deref().unwrap_or_default(),
            amount_minor: pending.amount_minor,
            idempotency_key: &format!("refund-{}", pending.id),
            reason: pending.reason.as_deref(),
        })
        .await;
    let txn = state.begin_for(actor, Intent::Serialized).await?;
    let payment = payment_of(&txn, payment.id).await?;
    let mut recorded: refund::ActiveModel = pending.clone().into();
    recorded.updated_at = Set(Utc::now());
    recorded.processing_until = Set(None);
    let result = match answer {
        Ok(done) if !matches!(done.status, RefundStatus::Failed | RefundStatus::Canceled) => {
            recorded.status = Set("SUCCEEDED".into());
            recorded.provider_reference = Set(Some(done.id));
            let recorded = recorded.update(&txn).await?;
            complete_refund(&txn, payment, &recorded).await?;
            Ok(recorded)
        }
        Err(error) if error.is_retryable() => {
            recorded.update(&txn).await?;
            Err(provider_error(error))
        }
        outcome => {
            let message = match outcome {
                Ok(_) => "the provider declined the refund".to_string(),
                Err(error) => error.message().to_string(),
            };
            recorded.status = Set("FAILED".into());
            recorded.failure_reason = Set(Some(message.clone()));
            recorded.update(&txn).await?;
            let mut released: payment::ActiveModel = payment.clone().into();
            released.refunded_minor = Set(payment.refunded_minor - pending.amount_minor);
            released.update(&txn).await?;
            Err(ApiError::Provider {
                message: format!("the payment provider refused the refund: {message}"),
                retryable: false,
            })
        }
    };
    txn.commit().await?;
    result
}

pub(super) async fn reserve_refund(
    txn: &TenantTxn,
    payment: payment::Model,
    amount: i64,
) -> ApiResult<payment::Model> {
    let refunded = payment.refunded_minor + amount;
    let mut active: payment::ActiveModel = payment.into();
    active.refunded_minor = Set(refunded);
    active.updated_at = Set(Utc::now());
    Ok(active.update(txn).await?)
}

/// A refund that went through: the payment's status, the ledger and `payment.refunded`.
pub(super) async fn complete_refund(
    txn: &TenantTxn,
    payment: payment::Model,
    refund: &refund::Model,
) -> ApiResult<payment::Model> {
    let next = Status::after_refunds(payment.amount_minor, payment.refunded_minor);
    let moved = move_to(txn, payment, next, |_| {}).await?;
    ledger::record(
        txn,
        &moved,
        "REFUND",
        refund.amount_minor,
        Some(refund.id),
        "refund",
    )
    .await?;
    txn.record(DomainEvent::PaymentRefunded(PaymentRefunded {
        payment: PaymentState::of(&moved),
        refund_id: refund.id,
        refund_amount_minor: refund.amount_minor,
    }))
    .await?;
    Ok(moved)
}
