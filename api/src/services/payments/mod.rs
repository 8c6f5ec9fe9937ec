//! Payments of orders: creation by idempotency key, PIX / boleto / card / cash, capture,
//! cancellation, staff confirmation, refunds, the ledger, and the Stripe events that move
//! card payments.
//!
//! Every mutation runs in one transaction whose first statement takes the company's write
//! lock, so two requests with one idempotency key (or two refunds of one payment) are decided
//! one after the other. Calls to Stripe happen outside any transaction: the payment is written
//! first with `processing_until` set (a retry meanwhile gets `CONFLICT`), the provider is
//! called with an idempotency key derived from the payment, and the outcome is written after.
//! A crash in between leaves `processing_until` to expire; the next retry with the same key
//! calls Stripe again with the same provider key and gets the same PaymentIntent.
//!
//! Under the same lock `createPayment` refuses (`CONFLICT`) to ask for more than what is due
//! minus what the order's open payments already ask for, so an order is never charged twice
//! over by two keys.

mod charges;
mod expiry;
mod ledger;
mod lifecycle;
mod provider_events;
mod reading;
mod refunds;
mod settings;

use chrono::Duration;
use entity::{order, payment};
use sea_orm::{ColumnTrait, QueryFilter, QuerySelect};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    auth::Actor,
    db::tenant::{Intent, TenantTxn},
    domain::{
        money::MAX_AMOUNT_MINOR,
        payment::{Balance, Method, Status, balance},
    },
    error::{ApiError, ApiResult},
    payments::stripe::ProviderError,
    state::AppState,
};

pub use charges::{NewPayment, create};
pub use expiry::{PIX_VALIDITY, expire_overdue};
pub use ledger::{Summary, Totals, financial_summary};
pub use lifecycle::{cancel, capture, mark_paid};
pub use provider_events::handle_provider_event;
pub use reading::{PaymentFilter, get, list};
pub use refunds::{NewRefund, refund};
pub use settings::{SettingsChanges, SettingsView, settings, update_settings};

/// How long a call to the payment provider may hold an idempotency key before a retry may
/// take over.
const PROCESSING_WINDOW: Duration = Duration::seconds(60);

fn status_of(payment: &payment::Model) -> Status {
    Status::parse(&payment.status).unwrap_or(Status::Pending)
}

fn method_of(payment: &payment::Model) -> Method {
    Method::parse(&payment.method).unwrap_or(Method::Cash)
}

fn request_hash(parts: &[&str]) -> String {
    hex::encode(Sha256::digest(parts.join("\u{1f}").as_bytes()))
}

fn valid_key(key: &str) -> ApiResult<String> {
    let key = key.trim();
    if key.is_empty() || key.len() > 255 || key.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "input.idempotencyKey",
            "an idempotency key has 1 to 255 printable characters",
        ));
    }
    Ok(key.to_string())
}

fn valid_amount(amount: i64) -> ApiResult<i64> {
    if amount <= 0 || amount > MAX_AMOUNT_MINOR {
        return Err(ApiError::validation(
            "input.amountMinor",
            format!("the amount must be between 1 and {MAX_AMOUNT_MINOR} minor units"),
        ));
    }
    Ok(amount)
}

fn provider_error(error: ProviderError) -> ApiError {
    ApiError::Provider {
        message: format!("the payment provider refused: {}", error.message()),
        retryable: error.is_retryable(),
    }
}

/// The balance of `order` from its payments.
pub async fn balance_of(txn: &TenantTxn, order: &order::Model) -> ApiResult<Balance> {
    let payments = txn
        .find::<payment::Entity>()
        .filter(payment::Column::OrderId.eq(order.id))
        .all(txn)
        .await?;
    order_balance(order, &payments)
}

/// The balance of `order` from its payments, already loaded.
pub fn order_balance(order: &order::Model, payments: &[payment::Model]) -> ApiResult<Balance> {
    balance(
        order.total_minor,
        payments.iter().map(|payment| {
            (
                status_of(payment),
                payment.amount_minor,
                payment.refunded_minor,
            )
        }),
    )
    .map_err(|message| ApiError::validation("orderId", message))
}

/// A payment of the actor's company, for a mutation that authorized itself already and calls
/// the provider before it writes.
async fn find_payment(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<payment::Model> {
    let txn = state.begin_for(actor, Intent::Read).await?;
    let payment = txn
        .find::<payment::Entity>()
        .filter(payment::Column::Id.eq(id))
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound("payment"))?;
    txn.commit().await?;
    Ok(payment)
}

/// A payment of the transaction's company, locked for the rest of the transaction.
async fn payment_of(txn: &TenantTxn, id: Uuid) -> ApiResult<payment::Model> {
    txn.find::<payment::Entity>()
        .filter(payment::Column::Id.eq(id))
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(ApiError::NotFound("payment"))
}
