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

use chrono::{DateTime, Duration, NaiveDate, Utc};
use entity::{financial_transaction, order, payment, payment_settings, refund};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{authorize, optional_text, tenant};
use crate::{
    auth::Actor,
    crypto::Purpose,
    domain::{
        boleto,
        money::MAX_AMOUNT_MINOR,
        payment::{Balance, Method, Status, balance},
        pix,
    },
    error::{ApiError, ApiResult},
    events::{
        DomainEvent,
        domain::{PaymentFailed, PaymentRefunded, PaymentState},
        outbox,
    },
    payments::stripe::{IntentRequest, IntentStatus, ProviderError, RefundRequest, RefundStatus},
    state::AppState,
    webhooks::incoming::{Provider, Verified},
};

/// How long a call to the payment provider may hold an idempotency key before a retry may
/// take over.
const PROCESSING_WINDOW: Duration = Duration::seconds(60);
/// Days a boleto stays payable.
const BOLETO_DAYS: i64 = 3;

/// What `createPayment` asks for.
pub struct NewPayment {
    pub order_id: Uuid,
    pub method: Method,
    pub amount_minor: Option<i64>,
    pub idempotency_key: String,
}

/// What `refundPayment` asks for.
pub struct NewRefund {
    pub payment_id: Uuid,
    pub amount_minor: Option<i64>,
    pub reason: Option<String>,
    pub idempotency_key: String,
}

/// Filters of the `payments` query.
#[derive(Default)]
pub struct PaymentFilter {
    pub status: Option<Status>,
    pub method: Option<Method>,
    pub order_id: Option<Uuid>,
}

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
pub async fn balance_of(
    db: &impl ConnectionTrait,
    actor: &Actor,
    order: &order::Model,
) -> ApiResult<Balance> {
    let payments = tenant::find::<payment::Entity>(actor)
        .filter(payment::Column::OrderId.eq(order.id))
        .all(db)
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

async fn order_of(
    db: &impl ConnectionTrait,
    actor: &Actor,
    order_id: Uuid,
) -> ApiResult<order::Model> {
    tenant::find::<order::Entity>(actor)
        .filter(order::Column::Id.eq(order_id))
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("order"))
}

/// A payment of the actor's company, for a mutation that authorized itself already.
async fn find_payment(
    db: &impl ConnectionTrait,
    actor: &Actor,
    id: Uuid,
) -> ApiResult<payment::Model> {
    tenant::find::<payment::Entity>(actor)
        .filter(payment::Column::Id.eq(id))
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("payment"))
}

/// A payment of the actor's company, locked for the rest of the transaction.
async fn payment_of(
    txn: &DatabaseTransaction,
    actor: &Actor,
    id: Uuid,
) -> ApiResult<payment::Model> {
    tenant::find::<payment::Entity>(actor)
        .filter(payment::Column::Id.eq(id))
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(ApiError::NotFound("payment"))
}

async fn ledger(
    txn: &DatabaseTransaction,
    payment: &payment::Model,
    kind: &str,
    amount: i64,
    refund_id: Option<Uuid>,
    description: &str,
) -> ApiResult<()> {
    financial_transaction::ActiveModel {
        company_id: Set(payment.company_id),
        payment_id: Set(Some(payment.id)),
        refund_id: Set(refund_id),
        kind: Set(kind.to_string()),
        method: Set(payment.method.clone()),
        amount_minor: Set(amount),
        currency: Set(payment.currency.clone()),
        description: Set(Some(description.to_string())),
        occurred_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    Ok(())
}

/// Moves `payment` to `next` (validated by the state machine) and saves it.
async fn move_to(
    txn: &DatabaseTransaction,
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
async fn settle(
    txn: &DatabaseTransaction,
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
    ledger(
        txn,
        &paid,
        "CHARGE",
        paid.amount_minor,
        None,
        "payment received",
    )
    .await?;
    outbox::append(
        txn,
        paid.company_id,
        DomainEvent::PaymentPaid(PaymentState::of(&paid)),
    )
    .await?;
    Ok(paid)
}

// ---------------------------------------------------------------------------------------------
// Settings

/// What `updatePaymentSettings` changes; `None` leaves a field, `Some("")` clears it.
#[derive(Default)]
pub struct SettingsChanges {
    pub pix_key: Option<String>,
    pub pix_merchant_name: Option<String>,
    pub pix_merchant_city: Option<String>,
    pub boleto_bank_code: Option<String>,
    pub boleto_agency: Option<String>,
    pub boleto_account: Option<String>,
    pub boleto_wallet: Option<String>,
    pub stripe_secret_key: Option<String>,
    pub stripe_webhook_secret: Option<String>,
}

/// The settings, with secrets reduced to whether they are set.
pub struct SettingsView {
    pub settings: Option<payment_settings::Model>,
    pub stripe_webhook_secret_set: bool,
}

pub async fn settings(state: &AppState, actor: &Actor) -> ApiResult<SettingsView> {
    authorize(state, actor, "settings", "manage").await?;
    let settings = tenant::find::<payment_settings::Entity>(actor)
        .one(&state.db)
        .await?;
    let stripe_webhook_secret_set = tenant::find::<entity::provider_secret::Entity>(actor)
        .filter(entity::provider_secret::Column::Provider.eq(Provider::Stripe.as_str()))
        .count(&state.db)
        .await?
        > 0;
    Ok(SettingsView {
        settings,
        stripe_webhook_secret_set,
    })
}

fn digits(field: &str, value: &str, max: usize) -> ApiResult<Option<String>> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > max || !value.chars().all(|c| c.is_ascii_digit()) {
        return Err(ApiError::validation(
            field,
            format!("use up to {max} digits"),
        ));
    }
    Ok(Some(value.to_string()))
}

pub async fn update_settings(
    state: &AppState,
    actor: &Actor,
    changes: SettingsChanges,
) -> ApiResult<SettingsView> {
    authorize(state, actor, "settings", "manage").await?;
    let company_id = tenant::company_of(actor);
    let txn = state.db.begin().await?;
    tenant::lock_company(&txn, actor).await?;
    let existing = tenant::find::<payment_settings::Entity>(actor)
        .one(&txn)
        .await?;
    let is_new = existing.is_none();
    let mut active = match existing {
        Some(row) => row.into(),
        None => payment_settings::ActiveModel {
            id: Set(Uuid::now_v7()),
            company_id: Set(company_id),
            ..Default::default()
        },
    };
    if let Some(key) = changes.pix_key {
        active.pix_key = Set(match key.trim() {
            "" => None,
            key => Some(
                pix::validate_key(key)
                    .map_err(|message| ApiError::validation("input.pixKey", message))?,
            ),
        });
    }
    if let Some(name) = changes.pix_merchant_name {
        active.pix_merchant_name = Set(optional_text("input.pixMerchantName", Some(&name), 25)?);
    }
    if let Some(city) = changes.pix_merchant_city {
        active.pix_merchant_city = Set(optional_text("input.pixMerchantCity", Some(&city), 15)?);
    }
    if let Some(bank) = changes.boleto_bank_code {
        let bank = digits("input.boletoBankCode", &bank, 3)?;
        if bank.as_ref().is_some_and(|bank| bank.len() != 3) {
            return Err(ApiError::validation(
                "input.boletoBankCode",
                "a bank code has 3 digits",
            ));
        }
        active.boleto_bank_code = Set(bank);
    }
    if let Some(agency) = changes.boleto_agency {
        active.boleto_agency = Set(digits("input.boletoAgency", &agency, 4)?);
    }
    if let Some(account) = changes.boleto_account {
        active.boleto_account = Set(digits("input.boletoAccount", &account, 8)?);
    }
    if let Some(wallet) = changes.boleto_wallet {
        active.boleto_wallet = Set(digits("input.boletoWallet", &wallet, 2)?);
    }
    if let Some(key) = changes.stripe_secret_key {
        active.stripe_secret_key_ciphertext = Set(match key.trim() {
            "" => None,
            key if key.starts_with("sk_") || key.starts_with("rk_") => Some(state.secrets.seal(
                company_id,
                Purpose::PaymentCredential,
                key,
            )),
            _ => {
                return Err(ApiError::validation(
                    "input.stripeSecretKey",
                    "a Stripe secret key starts with sk_ (or rk_ for a restricted key)",
                ));
            }
        });
    }
    active.updated_at = Set(Utc::now());
    if is_new {
        active.insert(&txn).await?;
    } else {
        active.update(&txn).await?;
    }
    if let Some(secret) = changes.stripe_webhook_secret {
        let secret = secret.trim();
        super::webhooks::store_provider_secret(
            &txn,
            state,
            actor,
            Provider::Stripe,
            (!secret.is_empty()).then_some(secret),
        )
        .await?;
    }
    txn.commit().await?;
    settings(state, actor).await
}

// ---------------------------------------------------------------------------------------------
// Creating payments

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
    let txn = state.db.begin().await?;
    tenant::lock_company(&txn, actor).await?;
    if let Some(existing) = tenant::find::<payment::Entity>(actor)
        .filter(payment::Column::IdempotencyKey.eq(&key))
        .one(&txn)
        .await?
    {
        txn.commit().await?;
        return replay(state, actor, existing, &hash).await;
    }
    let order = order_of(&txn, actor, request.order_id).await?;
    let payments = tenant::find::<payment::Entity>(actor)
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
    let settings = tenant::find::<payment_settings::Entity>(actor)
        .one(&txn)
        .await?;
    let mut created = payment::ActiveModel {
        id: Set(id),
        company_id: Set(tenant::company_of(actor)),
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
    };
    match request.method {
        Method::Pix => {
            let (br_code, txid) = pix_charge(settings.as_ref(), id, amount)?;
            created.provider_reference = Set(Some(txid.clone()));
            created.pix_txid = Set(Some(txid));
            created.pix_br_code = Set(Some(br_code));
        }
        Method::Boleto => {
            let issued = tenant::find::<payment::Entity>(actor)
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
    let payment = created.insert(&txn).await?;
    if request.method != Method::Card {
        outbox::record(
            &txn,
            actor,
            DomainEvent::PaymentCreated(PaymentState::of(&payment)),
        )
        .await?;
    }
    txn.commit().await?;
    if request.method == Method::Card {
        return open_card_intent(state, actor, payment).await;
    }
    state.events_committed();
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
            let txn = state.db.begin().await?;
            tenant::lock_company(&txn, actor).await?;
            let mut claim: payment::ActiveModel =
                payment_of(&txn, actor, existing.id).await?.into();
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

fn stripe_key(state: &AppState, settings: Option<&payment_settings::Model>) -> ApiResult<String> {
    let (company_id, sealed) = settings
        .and_then(|settings| {
            Some((
                settings.company_id,
                settings.stripe_secret_key_ciphertext.as_deref()?,
            ))
        })
        .ok_or_else(|| {
            ApiError::validation(
                "input.method",
                "set stripeSecretKey in the payment settings to take cards",
            )
        })?;
    Ok(state
        .secrets
        .open(company_id, Purpose::PaymentCredential, sealed)?)
}

async fn company_stripe_key(state: &AppState, actor: &Actor) -> ApiResult<String> {
    let settings = tenant::find::<payment_settings::Entity>(actor)
        .one(&state.db)
        .await?;
    stripe_key(state, settings.as_ref())
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
    let txn = state.db.begin().await?;
    tenant::lock_company(&txn, actor).await?;
    let current = payment_of(&txn, actor, payment.id).await?;
    let result = match answer {
        Ok(intent) => {
            let mut active: payment::ActiveModel = current.into();
            active.provider_reference = Set(Some(intent.id.clone()));
            active.client_secret = Set(intent.client_secret.clone());
            active.processing_until = Set(None);
            active.updated_at = Set(Utc::now());
            let mut opened = active.update(&txn).await?;
            outbox::record(
                &txn,
                actor,
                DomainEvent::PaymentCreated(PaymentState::of(&opened)),
            )
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
            outbox::record(
                &txn,
                actor,
                DomainEvent::PaymentCreated(PaymentState::of(&failed)),
            )
            .await?;
            outbox::record(
                &txn,
                actor,
                DomainEvent::PaymentFailed(PaymentFailed {
                    payment: PaymentState::of(&failed),
                    reason: reason.clone(),
                }),
            )
            .await?;
            Ok(failed)
        }
    };
    txn.commit().await?;
    state.events_committed();
    result
}

// ---------------------------------------------------------------------------------------------
// Moving payments

/// Captures an authorized card payment.
pub async fn capture(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<payment::Model> {
    authorize(state, actor, "payments", "update").await?;
    let payment = find_payment(&state.db, actor, id).await?;
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
    let txn = state.db.begin().await?;
    tenant::lock_company(&txn, actor).await?;
    let current = payment_of(&txn, actor, id).await?;
    // Stripe's payment_intent.succeeded may have settled it meanwhile.
    let result =
        if intent.status == IntentStatus::Succeeded && status_of(&current) == Status::Authorized {
            settle(&txn, current, None).await?
        } else {
            current
        };
    txn.commit().await?;
    state.events_committed();
    Ok(result)
}

/// Cancels a payment that has not been collected.
pub async fn cancel(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<payment::Model> {
    authorize(state, actor, "payments", "update").await?;
    let payment = find_payment(&state.db, actor, id).await?;
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
    let txn = state.db.begin().await?;
    tenant::lock_company(&txn, actor).await?;
    let current = payment_of(&txn, actor, id).await?;
    let cancelled = move_to(&txn, current, Status::Cancelled, |_| {}).await?;
    outbox::record(
        &txn,
        actor,
        DomainEvent::PaymentCancelled(PaymentState::of(&cancelled)),
    )
    .await?;
    txn.commit().await?;
    state.events_committed();
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
    let txn = state.db.begin().await?;
    tenant::lock_company(&txn, actor).await?;
    let payment = payment_of(&txn, actor, id).await?;
    if !method_of(&payment).confirmed_by_staff() {
        return Err(ApiError::validation(
            "id",
            "card payments are confirmed by the card provider, not by hand",
        ));
    }
    let paid = settle(&txn, payment, note).await?;
    txn.commit().await?;
    state.events_committed();
    Ok(paid)
}

// ---------------------------------------------------------------------------------------------
// Refunds

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
    let txn = state.db.begin().await?;
    tenant::lock_company(&txn, actor).await?;
    if let Some(existing) = tenant::find::<refund::Entity>(actor)
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
    let payment = payment_of(&txn, actor, request.payment_id).await?;
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
    let created = refund::ActiveModel {
        id: Set(Uuid::now_v7()),
        company_id: Set(payment.company_id),
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
    }
    .insert(&txn)
    .await?;
    // The amount is reserved now, so a concurrent refund sees what remains after this one.
    let reserved = reserve_refund(&txn, payment, amount).await?;
    if !is_card {
        complete_refund(&txn, reserved, &created).await?;
        txn.commit().await?;
        state.events_committed();
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
    let payment = find_payment(&state.db, actor, pending.payment_id).await?;
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
    let txn = state.db.begin().await?;
    tenant::lock_company(&txn, actor).await?;
    let payment = payment_of(&txn, actor, payment.id).await?;
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
    state.events_committed();
    result
}

async fn reserve_refund(
    txn: &DatabaseTransaction,
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
async fn complete_refund(
    txn: &DatabaseTransaction,
    payment: payment::Model,
    refund: &refund::Model,
) -> ApiResult<payment::Model> {
    let next = Status::after_refunds(payment.amount_minor, payment.refunded_minor);
    let moved = move_to(txn, payment, next, |_| {}).await?;
    ledger(
        txn,
        &moved,
        "REFUND",
        refund.amount_minor,
        Some(refund.id),
        "refund",
    )
    .await?;
    outbox::append(
        txn,
        moved.company_id,
        DomainEvent::PaymentRefunded(PaymentRefunded {
            payment: PaymentState::of(&moved),
            refund_id: refund.id,
            refund_amount_minor: refund.amount_minor,
        }),
    )
    .await?;
    Ok(moved)
}

// ---------------------------------------------------------------------------------------------
// Reading

pub async fn get(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<Option<payment::Model>> {
    authorize(state, actor, "payments", "read").await?;
    Ok(tenant::find::<payment::Entity>(actor)
        .filter(payment::Column::Id.eq(id))
        .one(&state.db)
        .await?)
}

/// One page of payments, newest first, before the payment `after`.
pub async fn list(
    state: &AppState,
    actor: &Actor,
    filter: &PaymentFilter,
    first: u64,
    after: Option<Uuid>,
) -> ApiResult<Vec<payment::Model>> {
    authorize(state, actor, "payments", "read").await?;
    let mut query = tenant::find::<payment::Entity>(actor);
    if let Some(status) = filter.status {
        query = query.filter(payment::Column::Status.eq(status.as_str()));
    }
    if let Some(method) = filter.method {
        query = query.filter(payment::Column::Method.eq(method.as_str()));
    }
    if let Some(order_id) = filter.order_id {
        query = query.filter(payment::Column::OrderId.eq(order_id));
    }
    if let Some(after) = after {
        query = query.filter(payment::Column::Id.lt(after));
    }
    Ok(query
        .order_by_desc(payment::Column::Id)
        .limit(first)
        .all(&state.db)
        .await?)
}

/// Gross, refunds, fees and net of one slice of the ledger.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub gross: i64,
    pub refunds: i64,
    pub fees: i64,
    /// Gross minus refunds minus fees, kept as the others change so that it is known to fit.
    net: i64,
}

impl Totals {
    pub fn net(&self) -> i64 {
        self.net
    }

    /// Counts one ledger row; an error when a figure would no longer fit in an `i64`.
    fn add(&mut self, kind: &str, amount: i64) -> ApiResult<()> {
        let (figure, net) = match kind {
            "CHARGE" => (&mut self.gross, self.net.checked_add(amount)),
            "REFUND" => (&mut self.refunds, self.net.checked_sub(amount)),
            "FEE" => (&mut self.fees, self.net.checked_sub(amount)),
            // Payouts move money to the bank; they change no sales figure.
            _ => return Ok(()),
        };
        let (Some(sum), Some(net)) = (figure.checked_add(amount), net) else {
            return Err(ApiError::validation(
                "from",
                "the ledger in this period adds up to more than can be counted; ask for a shorter period",
            ));
        };
        *figure = sum;
        self.net = net;
        Ok(())
    }
}

/// The ledger between two instants, totalled overall, per method and per day (in the
/// company's time zone).
pub struct Summary {
    pub currency: String,
    pub totals: Totals,
    pub by_method: Vec<(String, Totals)>,
    pub by_day: Vec<(NaiveDate, Totals)>,
}

pub async fn financial_summary(
    state: &AppState,
    actor: &Actor,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<Summary> {
    authorize(state, actor, "reports", "read").await?;
    if to <= from || to - from > Duration::days(366) {
        return Err(ApiError::validation(
            "to",
            "`to` must come after `from`, at most 366 days later",
        ));
    }
    let company = entity::company::Entity::find_by_id(actor.company_id())
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("company"))?;
    let zone: chrono_tz::Tz = company
        .timezone
        .parse()
        .unwrap_or(chrono_tz::America::Sao_Paulo);
    let rows = tenant::find::<financial_transaction::Entity>(actor)
        .filter(financial_transaction::Column::OccurredAt.gte(from))
        .filter(financial_transaction::Column::OccurredAt.lt(to))
        .all(&state.db)
        .await?;
    let mut totals = Totals::default();
    let mut by_method: std::collections::BTreeMap<String, Totals> = Default::default();
    let mut by_day: std::collections::BTreeMap<NaiveDate, Totals> = Default::default();
    for row in &rows {
        totals.add(&row.kind, row.amount_minor)?;
        by_method
            .entry(row.method.clone())
            .or_default()
            .add(&row.kind, row.amount_minor)?;
        by_day
            .entry(row.occurred_at.with_timezone(&zone).date_naive())
            .or_default()
            .add(&row.kind, row.amount_minor)?;
    }
    Ok(Summary {
        currency: company.currency,
        totals,
        by_method: by_method.into_iter().collect(),
        by_day: by_day.into_iter().collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// Provider events

/// Applies a verified provider event to the company's payments; returns what it did. Stripe
/// events find their payment by PaymentIntent id within `company_id` only, so an event signed
/// with one company's secret can never touch another company's payment.
pub async fn handle_provider_event(
    txn: &DatabaseTransaction,
    _state: &AppState,
    provider: Provider,
    company_id: Uuid,
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
    let Some(payment) = tenant::find_in::<payment::Entity>(company_id)
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
                Ok(failed) => outbox::append(
                    txn,
                    company_id,
                    DomainEvent::PaymentFailed(PaymentFailed {
                        payment: PaymentState::of(&failed),
                        reason: reason.clone(),
                    }),
                )
                .await
                .map(|()| "failed")
                .map_err(ApiError::from),
                Err(error) => Err(error),
            }
        }
        "payment_intent.canceled" if current.can_become(Status::Cancelled) => {
            match move_to(txn, payment, Status::Cancelled, |_| {}).await {
                Ok(cancelled) => outbox::append(
                    txn,
                    company_id,
                    DomainEvent::PaymentCancelled(PaymentState::of(&cancelled)),
                )
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
        .map_err(|error| anyhow::anyhow!("applying {}: {}", event.event_type, error.message()))
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
    txn: &DatabaseTransaction,
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
    let recorded = refund::ActiveModel {
        id: Set(Uuid::now_v7()),
        company_id: Set(payment.company_id),
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
    }
    .insert(txn)
    .await?;
    let reserved = reserve_refund(txn, payment, new).await?;
    complete_refund(txn, reserved, &recorded).await?;
    Ok("refunded")
}

// ---------------------------------------------------------------------------------------------
// Expiry

/// How long a PIX charge stays payable: BACEN's Pix API default (`calendario.expiracao`).
pub const PIX_VALIDITY: Duration = Duration::hours(24);
/// Most payments one sweep expires; the next sweep takes the rest.
const EXPIRY_BATCH: u64 = 500;

/// Moves unpaid charges past their validity to `EXPIRED` with `payment.expired`: PIX charges
/// 24 h after they were created, boletos once their due date has passed. Card payments expire
/// at Stripe, which says so with `payment_intent.canceled`. Returns how many expired. Safe to
/// run on several instances at once: each payment is expired by one conditional update.
pub async fn expire_overdue(db: &DatabaseConnection, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let overdue = payment::Entity::find()
        .filter(payment::Column::Status.eq(Status::Pending.as_str()))
        .filter(
            sea_orm::Condition::any()
                .add(
                    sea_orm::Condition::all()
                        .add(payment::Column::Method.eq(Method::Pix.as_str()))
                        .add(payment::Column::CreatedAt.lt(now - PIX_VALIDITY)),
                )
                .add(
                    sea_orm::Condition::all()
                        .add(payment::Column::Method.eq(Method::Boleto.as_str()))
                        .add(payment::Column::BoletoDueDate.lt(now.date_naive())),
                ),
        )
        .limit(EXPIRY_BATCH)
        .all(db)
        .await?;
    let mut expired = 0;
    for payment in overdue {
        let txn = db.begin().await?;
        let changed = payment::Entity::update_many()
            .col_expr(
                payment::Column::Status,
                sea_orm::sea_query::Expr::value(Status::Expired.as_str()),
            )
            .col_expr(
                payment::Column::UpdatedAt,
                sea_orm::sea_query::Expr::value(now),
            )
            .filter(payment::Column::Id.eq(payment.id))
            .filter(payment::Column::Status.eq(Status::Pending.as_str()))
            .exec(&txn)
            .await?;
        if changed.rows_affected == 1 {
            let mut moved = payment;
            moved.status = Status::Expired.as_str().to_string();
            outbox::append(
                &txn,
                moved.company_id,
                DomainEvent::PaymentExpired(PaymentState::of(&moved)),
            )
            .await?;
            expired += 1;
        }
        txn.commit().await?;
    }
    if expired > 0 {
        tracing::info!(expired, "expired unpaid PIX charges and boletos");
    }
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_follow_the_ledger_and_refuse_to_wrap() {
        let mut totals = Totals::default();
        for (kind, amount) in [
            ("CHARGE", 2500),
            ("REFUND", 500),
            ("FEE", 100),
            ("PAYOUT", 1900),
        ] {
            totals.add(kind, amount).expect("fits");
        }
        assert_eq!(
            (totals.gross, totals.refunds, totals.fees),
            (2500, 500, 100)
        );
        assert_eq!(totals.net(), 1900);

        let mut huge = Totals::default();
        huge.add("CHARGE", i64::MAX).expect("fits");
        let before = huge;
        let error = huge.add("CHARGE", 1).expect_err("overflow");
        assert_eq!(error.code(), "VALIDATION");
        assert_eq!(huge, before, "a refused row changes nothing");

        let mut refunds_only = Totals::default();
        refunds_only.add("REFUND", i64::MAX).expect("fits");
        assert!(
            refunds_only.add("FEE", i64::MAX).is_err(),
            "the net would not fit"
        );
    }
}
