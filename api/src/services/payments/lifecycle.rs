//! Moving payments through their states: capture, cancellation, staff confirmation.

use chrono::Utc;
use entity::payment;
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use uuid::Uuid;

use super::{
    find_payment, ledger, method_of, payment_of, provider_error, settings::company_stripe_key,
    status_of,
};
use crate::events::{DomainEvent, domain::PaymentState};
use crate::{
    auth::Actor,
    db::tenant::{Intent, TenantTxn},
    domain::payment::{Method, Status},
    error::{ApiError, ApiResult},
    payments::stripe::IntentStatus,
    services::{authorize, optional_text},
    state::AppState,
};

/// Moves `payment` to `next` (validated by the state machine) and saves it.
pub(super) async fn move_to(
    txn: &TenantTxn,
    payment: payment::Model,
    next: Status,
    change: impl FnOnce(&mut payment::ActiveModel),
) -> ApiResult<payment::Model> {
    let current = status_of(&payment);
    current
        .transition(next)
        .map_err(|message| ApiError::validation("status", message))?;
    let mut active: payment::ActiveModel = payment.into();
    active.status = Set(next.as_str().to_string());
    active.updated_at = Set(Utc::now());
    if current == Status::Failed {
        // A later attempt on the same intent went further: the old decline no longer applies.
        active.failure_reason = Set(None);
    }
    change(&mut active);
    Ok(active.update(txn).await?)
}

/// Marks a payment paid: the status, the ledger's charge and `payment.paid`.
pub(super) async fn settle(
    txn: &TenantTxn,
    payment: payment::Model,
    note: Option<String>,
) -> ApiResult<payment::Model> {
    let now = Utc::now();
    let paid = move_to(txn, payment, Status::Paid, |active| {
        active.paid_at = Set(Some(now));
        if note.is_some() {
            active.note = Set(note);
        }
    })
    .await?;
    ledger::record(
        txn,
        &paid,
        "CHARGE",
        paid.amount_minor,
        None,
        "payment received",
    )
    .await?;
    txn.record(DomainEvent::PaymentPaid(PaymentState::of(&paid)))
        .await?;
    Ok(paid)
}

/// Captures an authorized card payment.
pub async fn capture(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<payment::Model> {
    authorize(state, actor, "payments", "update").await?;
    let payment = find_payment(state, actor, id).await?;
    if method_of(&payment) != Method::Card || status_of(&payment) != Status::Authorized {
        return Err(ApiError::validation(
            "id",
            format!(
                "only an AUTHORIZED card payment can be captured; this one is a {} {} payment",
                payment.status, payment.method
            ),
        ));
    }
    let reference = payment.provider_reference.clone().unwrap_or_default();
    let secret_key = company_stripe_key(state, actor).await?;
    let intent = state
        .payment_provider
        .capture(&secret_key, &reference, &format!("capture-{}", payment.id))
        .await
        .map_err(provider_error)?;
    let txn = state.begin_for(actor, Intent::Serialized).await?;
    let current = payment_of(&txn, id).await?;
    // Stripe's payment_intent.succeeded may have settled it meanwhile.
    let result =
        if intent.status == IntentStatus::Succeeded && status_of(&current) == Status::Authorized {
            settle(&txn, current, None).await?
        } else {
            current
        };
    txn.commit().await?;
    Ok(result)
}

/// Cancels a payment that has not been collected.
pub async fn cancel(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<payment::Model> {
    authorize(state, actor, "payments", "update").await?;
    let payment = find_payment(state, actor, id).await?;
    status_of(&payment)
        .transition(Status::Cancelled)
        .map_err(|message| ApiError::validation("id", message))?;
    if method_of(&payment) == Method::Card
        && let Some(reference) = &payment.provider_reference
    {
        let secret_key = company_stripe_key(state, actor).await?;
        state
            .payment_provider
            .cancel(&secret_key, reference, &format!("cancel-{}", payment.id))
            .await
            .map_err(provider_error)?;
    }
    let txn = state.begin_for(actor, Intent::Serialized).await?;
    let current = payment_of(&txn, id).await?;
    let cancelled = move_to(&txn, current, Status::Cancelled, |_| {}).await?;
    txn.record(DomainEvent::PaymentCancelled(PaymentState::of(&cancelled)))
        .await?;
    txn.commit().await?;
    Ok(cancelled)
}

/// Staff confirm money that arrived outside a provider: cash, or a PIX / boleto seen in the
/// bank account.
pub async fn mark_paid(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    note: Option<String>,
) -> ApiResult<payment::Model> {
    authorize(state, actor, "payments", "update").await?;
    let note = optional_text("note", note.as_deref(), 500)?;
    let txn = state.begin_for(actor, Intent::Serialized).await?;
    let payment = payment_of(&txn, id).await?;
    if !method_of(&payment).confirmed_by_staff() {
        return Err(ApiError::validation(
            "id",
            "card payments are confirmed by the card provider, not by hand",
        ));
    }
    let paid = settle(&txn, payment, note).await?;
    txn.commit().await?;
    Ok(paid)
}
