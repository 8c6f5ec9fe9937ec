//! Webhooks providers send us (`POST /webhooks/in/{provider}/{companyId}`): their
//! signatures. Each provider has its own scheme; a request is read only when its signature
//! verifies within the tolerance. Receiving, storing and dispatching a verified event is
//! [`crate::services::incoming_webhooks`]'s: verification needs no database, so it stays here,
//! below the services.
//!
//! Evolution API signs nothing: what it can send is headers set per webhook (`POST
//! /webhook/set/{instance}` with `webhook.headers`) and the `apikey` field of the body, which
//! is the instance's token, present only when the server exposes tokens
//! (`AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES`) and known to whoever may send through the
//! instance. We use the headers: the company's secret set as `jwt_key` makes Evolution send
//! `Authorization: Bearer` a token it signs with it at each delivery, valid ten minutes;
//! servers that cannot do that send the secret itself as `x-webhook-secret` (see
//! [`verify_evolution`]). Neither covers the body, which TLS must protect in transit.

use std::fmt;

use axum::http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::signature::{
    DEFAULT_TOLERANCE_SECS, EVOLUTION_SECRET_HEADER, SigningSecret, VerifyError, verify_evolution,
    verify_mercadopago, verify_standard, verify_stripe,
};
use crate::notifications::evolution;

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
    /// Evolution API (WhatsApp): a token signed with, or a header equal to, the secret.
    Evolution,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Self::Stripe,
        Self::Standard,
        Self::Mercadopago,
        Self::Evolution,
    ];

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
            Self::Evolution => "evolution",
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
        Provider::Evolution => {
            verify_evolution(
                secret,
                header("authorization"),
                header(EVOLUTION_SECRET_HEADER),
                now_unix,
                DEFAULT_TOLERANCE_SECS,
            )?;
            let payload = json_body(body)?;
            let event_type = evolution::event_name(&text_field(&payload, "event")?);
            // Events without an id of their own (connection changes) are keyed by their body:
            // a retried delivery repeats it byte for byte.
            let external_id = evolution::webhook_event_id(&payload)
                .filter(|id| id.len() <= 255)
                .unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(body))));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::signature::{SigningSecret, evolution_bearer, sign, stripe_header};

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
        assert_eq!(Provider::parse("evolution"), Some(Provider::Evolution));
        assert_eq!(Provider::parse("paypal"), None);
    }

    #[test]
    fn evolution_webhooks_are_read_after_their_token_or_secret_verifies() {
        let body = br#"{"event":"messages.update","instance":"loja","data":{"keyId":"BAE5","fromMe":true,"status":"READ"}}"#;
        let now = 1_764_667_800;
        let signed = headers(&[("authorization", evolution_bearer("evo-secret", now))]);
        let event =
            verify(Provider::Evolution, "evo-secret", &signed, None, body, now).expect("valid");
        assert_eq!(event.external_id, "BAE5:READ");
        assert_eq!(event.event_type, "messages.update");
        assert!(verify(Provider::Evolution, "other", &signed, None, body, now).is_err());
        assert!(
            verify(
                Provider::Evolution,
                "evo-secret",
                &signed,
                None,
                body,
                now + 601
            )
            .is_err()
        );

        let plain = headers(&[("x-webhook-secret", "evo-secret".into())]);
        let connection =
            br#"{"event":"CONNECTION_UPDATE","instance":"loja","data":{"state":"open"}}"#;
        let event = verify(
            Provider::Evolution,
            "evo-secret",
            &plain,
            None,
            connection,
            now,
        )
        .expect("valid");
        assert_eq!(event.event_type, "connection.update");
        assert!(
            event.external_id.starts_with("sha256:"),
            "{}",
            event.external_id
        );
        assert!(
            verify(
                Provider::Evolution,
                "evo-secret",
                &HeaderMap::new(),
                None,
                body,
                now
            )
            .is_err()
        );
    }
}
