//! The company's payment settings: PIX and boleto details, the Stripe keys.

use chrono::Utc;
use entity::payment_settings;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, PaginatorTrait, QueryFilter};
use uuid::Uuid;

use crate::{
    auth::Actor,
    crypto::Purpose,
    db::tenant::Intent,
    domain::pix,
    error::{ApiError, ApiResult},
    services::{authorize, optional_text},
    state::AppState,
    webhooks::incoming::Provider,
};

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
    let txn = state.begin_for(actor, Intent::Read).await?;
    let settings = txn.find::<payment_settings::Entity>().one(&txn).await?;
    let stripe_webhook_secret_set = txn
        .find::<entity::provider_secret::Entity>()
        .filter(entity::provider_secret::Column::Provider.eq(Provider::Stripe.as_str()))
        .count(&txn)
        .await?
        > 0;
    txn.commit().await?;
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
    let txn = state.begin_for(actor, Intent::Serialized).await?;
    let company_id = txn.company().get();
    let existing = txn.find::<payment_settings::Entity>().one(&txn).await?;
    let is_new = existing.is_none();
    let mut active = match existing {
        Some(row) => row.into(),
        None => payment_settings::ActiveModel {
            id: Set(Uuid::now_v7()),
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
        txn.insert(active).await?;
    } else {
        active.update(&txn).await?;
    }
    if let Some(secret) = changes.stripe_webhook_secret {
        let secret = secret.trim();
        crate::services::webhooks::store_provider_secret(
            &txn,
            state,
            Provider::Stripe,
            (!secret.is_empty()).then_some(secret),
        )
        .await?;
    }
    txn.commit().await?;
    settings(state, actor).await
}

pub(super) fn stripe_key(
    state: &AppState,
    settings: Option<&payment_settings::Model>,
) -> ApiResult<String> {
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

/// The company's Stripe key, read in its own transaction: the provider is called outside any.
pub(super) async fn company_stripe_key(state: &AppState, actor: &Actor) -> ApiResult<String> {
    let txn = state.begin_for(actor, Intent::Read).await?;
    let settings = txn.find::<payment_settings::Entity>().one(&txn).await?;
    txn.commit().await?;
    stripe_key(state, settings.as_ref())
}
