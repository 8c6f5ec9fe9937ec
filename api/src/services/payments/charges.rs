//! Creating payments: PIX, boleto, card (a Stripe PaymentIntent) and cash.

use chrono::{Duration, NaiveDate, Utc};
use entity::{order, payment, payment_settings};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, PaginatorTrait, QueryFilter};
use uuid::Uuid;

use super::{
    PROCESSING_WINDOW,
    lifecycle::{move_to, settle},
    method_of, order_balance, payment_of, provider_error, request_hash,
    settings::{company_stripe_key, stripe_key},
    status_of, valid_amount, valid_key,
};
use crate::events::{
    DomainEvent,
    domain::{PaymentFailed, PaymentState},
};
use crate::{
    auth::Actor,
    db::tenant::{Intent, TenantTxn},
    domain::{
        boleto,
        payment::{Balance, Method, Status},
        pix,
    },
    error::{ApiError, ApiResult},
    payments::stripe::{IntentRequest, IntentStatus},
    services::authorize,
    state::AppState,
};

/// Days a boleto stays payable.
const BOLETO_DAYS: i64 = 3;

/// What `createPayment` asks for.
pub struct NewPayment {
    pub order_id: Uuid,
    pub method: Method,
    pub amount_minor: Option<i64>,
    pub idempotency_key: String,
}

/// Whether `payment` may still collect money without anyone creating another payment: it is
/// pending or authorized, or it is a card payment whose attempt failed on a PaymentIntent that
/// stays open for the payer to try again.
fn still_collecting(payment: &payment::Model) -> bool {
    match status_of(payment) {
        Status::Pending | Status::Authorized => true,
        Status::Failed => {
            method_of(payment) == Method::Card && payment.provider_reference.is_some()
        }
        _ => false,
    }
}

/// What a new payment of `order` may be for: what is due minus what the order's payments that
/// are still collecting already ask for. `None` when no payment is collecting (a deliberate
/// extra amount, such as a tip, is then allowed).
fn left_to_ask(
    order: &order::Model,
    payments: &[payment::Model],
) -> ApiResult<(Balance, Option<i64>)> {
    let balance = order_balance(order, payments)?;
    let collecting: Vec<i64> = payments
        .iter()
        .filter(|payment| still_collecting(payment))
        .map(|payment| payment.amount_minor)
        .collect();
    if collecting.is_empty() {
        return Ok((balance, None));
    }
    let asked = collecting
        .into_iter()
        .try_fold(0i64, i64::checked_add)
        .and_then(|asked| balance.due.checked_sub(asked))
        .ok_or_else(|| {
            ApiError::validation(
                "input.orderId",
                "the open payments of this order add up to more than can be counted",
            )
        })?;
    Ok((balance, Some(asked.max(0))))
}

async fn order_of(txn: &TenantTxn, order_id: Uuid) -> ApiResult<order::Model> {
    txn.find::<order::Entity>()
        .filter(order::Column::Id.eq(order_id))
        .one(txn)
        .await?
        .ok_or(ApiError::NotFound("order"))
}

/// Creates a payment, or returns the one its idempotency key already made.
pub async fn create(
    state: &AppState,
    actor: &Actor,
    request: NewPayment,
) -> ApiResult<payment::Model> {
    authorize(state, actor, "payments", "create").await?;
    let key = valid_key(&request.idempotency_key)?;
    if let Some(amount) = request.amount_minor {
        valid_amount(amount)?;
    }
    let hash = request_hash(&[
        &request.order_id.to_string(),
        request.method.as_str(),
        &request
            .amount_minor
            .map_or_else(|| "due".to_string(), |amount| amount.to_string()),
    ]);
    let txn = state.begin_for(actor, Intent::Serialized).await?;
    if let Some(existing) = txn
        .find::<payment::Entity>()
        .filter(payment::Column::IdempotencyKey.eq(&key))
        .one(&txn)
        .await?
    {
        txn.commit().await?;
        return replay(state, actor, existing, &hash).await;
    }
    let order = order_of(&txn, request.order_id).await?;
    let payments = txn
        .find::<payment::Entity>()
        .filter(payment::Column::OrderId.eq(order.id))
        .all(&txn)
        .await?;
    // Decided under the company's lock taken above, so two requests with different keys cannot
    // both see the order uncovered.
    let (balance, left) = left_to_ask(&order, &payments)?;
    let amount = match (request.amount_minor, left) {
        (Some(amount), Some(left)) if amount > left => return Err(already_asked(left)),
        (Some(amount), _) => amount,
        (None, Some(0)) => return Err(already_asked(0)),
        (None, Some(left)) => valid_amount(left)?,
        (None, None) if balance.due > 0 => valid_amount(balance.due)?,
        (None, None) => {
            return Err(ApiError::validation(
                "input.amountMinor",
                "nothing is due on this order; give an amount to collect more",
            ));
        }
    };
    let id = Uuid::now_v7();
    let now = Utc::now();
    let settings = txn.find::<payment_settings::Entity>().one(&txn).await?;
    let mut created = payment::ActiveModel {
        id: Set(id),
        order_id: Set(order.id),
        method: Set(request.method.as_str().to_string()),
        provider: Set(request.method.provider().to_string()),
        amount_minor: Set(amount),
        currency: Set(order.currency.clone()),
        refunded_minor: Set(0),
        status: Set(Status::Pending.as_str().to_string()),
        provider_reference: Set(None),
        client_secret: Set(None),
        checkout_url: Set(None),
        pix_br_code: Set(None),
        pix_txid: Set(None),
        boleto_barcode: Set(None),
        boleto_due_date: Set(None),
        idempotency_key: Set(key),
        request_hash: Set(hash),
        processing_until: Set(None),
        failure_reason: Set(None),
        note: Set(None),
        created_by: Set(actor.user_id()),
        paid_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    match request.method {
        Method::Pix => {
            let (br_code, txid) = pix_charge(settings.as_ref(), id, amount)?;
            created.provider_reference = Set(Some(txid.clone()));
            created.pix_txid = Set(Some(txid));
            created.pix_br_code = Set(Some(br_code));
        }
        Method::Boleto => {
            let issued = txn
                .find::<payment::Entity>()
                .filter(payment::Column::Method.eq(Method::Boleto.as_str()))
                .count(&txn)
                .await?;
            let due_date = now.date_naive() + Duration::days(BOLETO_DAYS);
            let barcode = boleto_charge(settings.as_ref(), issued + 1, due_date, amount)?;
            created.provider_reference = Set(Some(barcode.clone()));
            created.boleto_barcode = Set(Some(barcode));
            created.boleto_due_date = Set(Some(due_date));
        }
        Method::Card => {
            stripe_key(state, settings.as_ref())?;
            created.processing_until = Set(Some(now + PROCESSING_WINDOW));
        }
        Method::Cash => {}
    }
    let payment = txn.insert(created).await?;
    if request.method != Method::Card {
        txn.record(DomainEvent::PaymentCreated(PaymentState::of(&payment)))
            .await?;
    }
    txn.commit().await?;
    if request.method == Method::Card {
        return open_card_intent(state, actor, payment).await;
    }
    Ok(payment)
}

/// Why a new payment is refused while others are still collecting.
fn already_asked(left: i64) -> ApiError {
    ApiError::Conflict(if left == 0 {
        "the order's open payments already ask for everything that is due; cancel one or wait \
         for its outcome before asking again"
            .into()
    } else {
        format!(
            "the order's open payments leave only {left} minor units to ask for; cancel one or \
             give an amount of at most {left}"
        )
    })
}

/// The answer to a key used before: the same payment for the same request.
async fn replay(
    state: &AppState,
    actor: &Actor,
    existing: payment::Model,
    hash: &str,
) -> ApiResult<payment::Model> {
    if existing.request_hash != hash {
        return Err(ApiError::Conflict(
            "this idempotency key was used for a different payment request".into(),
        ));
    }
    match existing.processing_until {
        Some(until) if until > Utc::now() => Err(ApiError::Conflict(
            "a payment with this idempotency key is still being processed; retry shortly".into(),
        )),
        // A card payment whose provider call never completed (a crash or a retryable error):
        // the retry calls the provider again with the same provider key.
        _ if method_of(&existing) == Method::Card
            && existing.provider_reference.is_none()
            && status_of(&existing) == Status::Pending =>
        {
            let txn = state.begin_for(actor, Intent::Serialized).await?;
            let mut claim: payment::ActiveModel = payment_of(&txn, existing.id).await?.into();
            claim.processing_until = Set(Some(Utc::now() + PROCESSING_WINDOW));
            let claimed = claim.update(&txn).await?;
            txn.commit().await?;
            open_card_intent(state, actor, claimed).await
        }
        _ => Ok(existing),
    }
}

fn pix_charge(
    settings: Option<&payment_settings::Model>,
    id: Uuid,
    amount: i64,
) -> ApiResult<(String, String)> {
    let missing = || {
        ApiError::validation(
            "input.method",
            "set pixKey, pixMerchantName and pixMerchantCity in the payment settings first",
        )
    };
    let settings = settings.ok_or_else(missing)?;
    let (Some(key), Some(name), Some(city)) = (
        &settings.pix_key,
        &settings.pix_merchant_name,
        &settings.pix_merchant_city,
    ) else {
        return Err(missing());
    };
    let txid: String = id.simple().to_string().chars().take(25).collect();
    let code = pix::build(&pix::PixCharge {
        key,
        merchant_name: name,
        merchant_city: city,
        amount_minor: Some(amount),
        txid: &txid,
        description: None,
    })
    .map_err(|message| ApiError::validation("input.method", message))?;
    Ok((code.as_str().to_string(), txid))
}

fn boleto_charge(
    settings: Option<&payment_settings::Model>,
    our_number: u64,
    due_date: NaiveDate,
    amount: i64,
) -> ApiResult<String> {
    let missing = || {
        ApiError::validation(
            "input.method",
            "set boletoBankCode, boletoAgency, boletoAccount and boletoWallet in the payment settings first",
        )
    };
    let settings = settings.ok_or_else(missing)?;
    let (Some(bank), Some(agency), Some(account), Some(wallet)) = (
        &settings.boleto_bank_code,
        &settings.boleto_agency,
        &settings.boleto_account,
        &settings.boleto_wallet,
    ) else {
        return Err(missing());
    };
    let invalid = |message: String| ApiError::validation("input.method", message);
    let free_field =
        boleto::free_field(agency, account, wallet, &our_number.to_string()).map_err(invalid)?;
    let barcode = boleto::build(&boleto::BoletoSpec {
        bank_code: bank,
        due_date,
        amount_minor: amount,
        free_field: &free_field,
    })
    .map_err(invalid)?;
    Ok(barcode.as_str().to_string())
}

/// Creates the PaymentIntent of a card payment written with `processing_until`, then
/// records what Stripe answered.
async fn open_card_intent(
    state: &AppState,
    actor: &Actor,
    payment: payment::Model,
) -> ApiResult<payment::Model> {
    let secret_key = company_stripe_key(state, actor).await?;
    let metadata = [
        ("payment_id", payment.id.to_string()),
        ("order_id", payment.order_id.to_string()),
        ("company_id", payment.company_id.to_string()),
    ];
    let provider_key = format!("payment-{}", payment.id);
    let answer = state
        .payment_provider
        .create_intent(&IntentRequest {
            secret_key: &secret_key,
            amount_minor: payment.amount_minor,
            currency: &payment.currency,
            idempotency_key: &provider_key,
            description: Some(&format!("Order payment {}", payment.id)),
            metadata: &metadata,
            manual_capture: true,
        })
        .await;
    let txn = state.begin_for(actor, Intent::Serialized).await?;
    let current = payment_of(&txn, payment.id).await?;
    let result = match answer {
        Ok(intent) => {
            let mut active: payment::ActiveModel = current.into();
            active.provider_reference = Set(Some(intent.id.clone()));
            active.client_secret = Set(intent.client_secret.clone());
            active.processing_until = Set(None);
            active.updated_at = Set(Utc::now());
            let mut opened = active.update(&txn).await?;
            txn.record(DomainEvent::PaymentCreated(PaymentState::of(&opened)))
                .await?;
            opened = match intent.status {
                IntentStatus::RequiresCapture => {
                    move_to(&txn, opened, Status::Authorized, |_| {}).await?
                }
                IntentStatus::Succeeded => settle(&txn, opened, None).await?,
                _ => opened,
            };
            Ok(opened)
        }
        Err(error) if error.is_retryable() => {
            let mut active: payment::ActiveModel = current.into();
            active.processing_until = Set(None);
            active.update(&txn).await?;
            Err(provider_error(error))
        }
        Err(error) => {
            let reason = error.message().to_string();
            let failed = move_to(&txn, current, Status::Failed, |active| {
                active.processing_until = Set(None);
                active.failure_reason = Set(Some(reason.clone()));
            })
            .await?;
            txn.record(DomainEvent::PaymentCreated(PaymentState::of(&failed)))
                .await?;
            txn.record(DomainEvent::PaymentFailed(PaymentFailed {
                payment: PaymentState::of(&failed),
                reason: reason.clone(),
            }))
            .await?;
            Ok(failed)
        }
    };
    txn.commit().await?;
    result
}
