//! Webhooks providers send us: `POST /webhooks/in/{provider}/{companyId}`.
//!
//! Each provider has its own signature scheme; the company's secret for that provider is
//! stored encrypted. A request is processed only when its signature verifies within the
//! tolerance. A verified event is stored under its provider's event id, unique per company, in
//! the same transaction as its handling — so an event sent twice, even concurrently, is handled
//! once and acknowledged both times, and a handler that fails leaves nothing behind for the
//! provider's retry to trip over.

use std::fmt;

use axum::http::HeaderMap;
use chrono::Utc;
use entity::{incoming_webhook, provider_secret};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set, sea_query::Expr};
use serde_json::Value;
use uuid::Uuid;

use super::signature::{
    DEFAULT_TOLERANCE_SECS, SigningSecret, VerifyError, verify_mercadopago, verify_standard,
    verify_stripe,
};
use crate::{
    crypto::Purpose,
    db::tenant::{CompanyId, Intent, TenantTxn},
    state::AppState,
};

/// Providers whose webhooks we verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
#[graphql(name = "WebhookProvider")]
pub enum Provider {
    /// `Stripe-Signature: t=…,v1=…`.
    Stripe,
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    Standard,
    /// Mercado Pago's `x-signature: ts=…,v1=…` over its manifest.
    Mercadopago,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Self::Stripe, Self::Standard, Self::Mercadopago];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|provider| provider.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stripe => "stripe",
            Self::Standard => "standard",
            Self::Mercadopago => "mercadopago",
        }
    }
}

/// An event whose signature verified.
#[derive(Debug)]
pub struct Verified {
    /// The provider's id of the event: our idempotency key.
    pub external_id: String,
    pub event_type: String,
    pub payload: Value,
}

/// Why a request was refused; the provider sees the message with a 400.
#[derive(Debug)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<VerifyError> for Refused {
    fn from(error: VerifyError) -> Self {
        Self(error.message())
    }
}

/// Checks the signature of a request with `secret` and reads the event out of it.
pub fn verify(
    provider: Provider,
    secret: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<Verified, Refused> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    match provider {
        Provider::Stripe => {
            let signature = header("stripe-signature")
                .ok_or_else(|| Refused("missing Stripe-Signature header".into()))?;
            verify_stripe(secret, signature, body, now_unix, DEFAULT_TOLERANCE_SECS)?;
            let payload = json_body(body)?;
            Ok(Verified {
                external_id: text_field(&payload, "id")?,
                event_type: text_field(&payload, "type")?,
                payload,
            })
        }
        Provider::Standard => {
            let key = SigningSecret::parse(secret).map_err(|_| {
                Refused("the stored secret is not a Standard Webhooks secret".into())
            })?;
            let id = header("webhook-id");
            verify_standard(
                &key,
                (id, header("webhook-timestamp"), header("webhook-signature")),
                body,
                now_unix,
                DEFAULT_TOLERANCE_SECS,
            )?;
            let payload = json_body(body)?;
            Ok(Verified {
                external_id: id.unwrap_or_default().to_string(),
                event_type: text_field(&payload, "type").unwrap_or_else(|_| "unknown".into()),
                payload,
            })
        }
        Provider::Mercadopago => {
            let signature = header("x-signature")
                .ok_or_else(|| Refused("missing x-signature header".into()))?;
            let request_id = header("x-request-id");
            let data_id = query.and_then(|query| query_value(query, "data.id"));
            verify_mercadopago(
                secret,
                signature,
                request_id,
                data_id.as_deref(),
                now_unix,
                DEFAULT_TOLERANCE_SECS,
            )?;
            let payload = json_body(body)?;
            let external_id = text_field(&payload, "id")
                .ok()
                .or_else(|| request_id.map(String::from))
                .ok_or_else(|| Refused("the notification has no id".into()))?;
            let event_type = text_field(&payload, "action")
                .or_else(|_| text_field(&payload, "type"))
                .unwrap_or_else(|_| "unknown".into());
            Ok(Verified {
                external_id,
                event_type,
                payload,
            })
        }
    }
}

fn json_body(body: &[u8]) -> Result<Value, Refused> {
    serde_json::from_slice(body).map_err(|_| Refused("the body is not JSON".into()))
}

/// A string or number field, as text (Mercado Pago sends numeric ids).
fn text_field(payload: &Value, name: &str) -> Result<String, Refused> {
    match payload.get(name) {
        Some(Value::String(text)) if !text.is_empty() && text.len() <= 255 => Ok(text.clone()),
        Some(Value::Number(number)) => Ok(number.to_string()),
        _ => Err(Refused(format!("the event has no `{name}`"))),
    }
}

fn query_value(query: &str, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.into_owned())
}

/// What became of a verified request.
#[derive(Debug, PartialEq, Eq)]
pub enum Receipt {
    Processed,
    /// Seen before: acknowledged, not processed again.
    Duplicate,
}

/// Verifies and stores one incoming webhook, handing it to its handler.
pub async fn receive(
    state: &AppState,
    provider: Provider,
    company_id: Uuid,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> anyhow::Result<Result<Receipt, Refused>> {
    // One answer for an unknown company and an unconfigured provider: ids are not probed.
    #[allow(clippy::disallowed_methods)] // cross-tenant: the URL claims the company until verified
    let stored = provider_secret::Entity::find()
        .filter(provider_secret::Column::CompanyId.eq(company_id))
        .filter(provider_secret::Column::Provider.eq(provider.as_str()))
        .one(&state.system_db)
        .await?;
    let Some(stored) = stored else {
        return Ok(Err(Refused(format!(
            "no {} webhook secret is configured for this company",
            provider.as_str()
        ))));
    };
    let secret = state.secrets.open(
        company_id,
        Purpose::ProviderSecret,
        &stored.secret_ciphertext,
    )?;
    let verified = match verify(
        provider,
        &secret,
        headers,
        query,
        body,
        Utc::now().timestamp(),
    ) {
        Ok(verified) => verified,
        Err(refused) => return Ok(Err(refused)),
    };
    let txn = state
        .begin_for_company(
            CompanyId::from_verified_webhook(company_id),
            "verified incoming webhook",
            Intent::Write,
        )
        .await?;
    let id = Uuid::now_v7();
    let inserted = incoming_webhook::Entity::insert(incoming_webhook::ActiveModel {
        id: Set(id),
        company_id: Set(company_id),
        provider: Set(provider.as_str().to_string()),
        external_id: Set(verified.external_id.clone()),
        event_type: Set(verified.event_type.clone()),
        payload: Set(verified.payload.to_string()),
        received_at: Set(Utc::now()),
        outcome: Set(None),
    })
    .on_conflict_do_nothing_on([
        incoming_webhook::Column::CompanyId,
        incoming_webhook::Column::Provider,
        incoming_webhook::Column::ExternalId,
    ])
    .exec_without_returning(&txn)
    .await?;
    if !matches!(inserted, sea_orm::TryInsertResult::Inserted(1)) {
        txn.rollback().await?;
        tracing::info!(provider = provider.as_str(), %company_id, event = %verified.external_id, "duplicate incoming webhook acknowledged");
        return Ok(Ok(Receipt::Duplicate));
    }
    let outcome = dispatch(&txn, state, provider, &verified).await?;
    txn.update::<incoming_webhook::Entity>()
        .col_expr(
            incoming_webhook::Column::Outcome,
            Expr::value(outcome.clone()),
        )
        .filter(incoming_webhook::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    tracing::info!(provider = provider.as_str(), %company_id, event = %verified.external_id, event_type = %verified.event_type, %outcome, "incoming webhook processed");
    Ok(Ok(Receipt::Processed))
}

/// Hands a verified event to the domain that handles it; returns what it did.
async fn dispatch(
    txn: &TenantTxn,
    state: &AppState,
    provider: Provider,
    event: &Verified,
) -> anyhow::Result<String> {
    crate::services::payments::handle_provider_event(txn, state, provider, event).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::signature::{SigningSecret, sign, stripe_header};

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("header value"));
        }
        map
    }

    #[test]
    fn stripe_events_are_read_after_their_signature_verifies() {
        let body = br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{}}"#;
        let now = 1_700_000_000;
        let signed = headers(&[("stripe-signature", stripe_header("whsec_x", now, body))]);
        let event = verify(Provider::Stripe, "whsec_x", &signed, None, body, now).expect("valid");
        assert_eq!(event.external_id, "evt_1");
        assert_eq!(event.event_type, "payment_intent.succeeded");
        let refused = verify(Provider::Stripe, "whsec_other", &signed, None, body, now);
        assert!(refused.is_err());
        let late = verify(Provider::Stripe, "whsec_x", &signed, None, body, now + 301);
        assert!(late.is_err());
        assert!(
            verify(
                Provider::Stripe,
                "whsec_x",
                &HeaderMap::new(),
                None,
                body,
                now
            )
            .is_err()
        );
    }

    #[test]
    fn standard_webhooks_use_the_webhook_id_as_event_id() {
        let secret = SigningSecret::encode(b"0123456789abcdef0123456789abcdef");
        let key = SigningSecret::parse(&secret).expect("secret");
        let body = br#"{"type":"invoice.paid"}"#;
        let now = 1_700_000_000;
        let signed = headers(&[
            ("webhook-id", "msg_42".into()),
            ("webhook-timestamp", now.to_string()),
            ("webhook-signature", sign(&key, "msg_42", now, body)),
        ]);
        let event = verify(Provider::Standard, &secret, &signed, None, body, now).expect("valid");
        assert_eq!(event.external_id, "msg_42");
        assert_eq!(event.event_type, "invoice.paid");
        let tampered = verify(Provider::Standard, &secret, &signed, None, b"{}", now);
        assert!(tampered.is_err());
    }

    #[test]
    fn providers_parse_by_their_path_name() {
        assert_eq!(Provider::parse("stripe"), Some(Provider::Stripe));
        assert_eq!(Provider::parse("mercadopago"), Some(Provider::Mercadopago));
        assert_eq!(Provider::parse("paypal"), None);
    }
}
