//! Webhook signatures: signing what we send, verifying what partners send us.
//!
//! Guarantees:
//! - Outgoing webhooks are signed as Standard Webhooks (<https://www.standardwebhooks.com>)
//!   describes, so any of its receiver libraries accepts them; during a secret rotation
//!   [`signature_header`] carries one signature per secret.
//! - A `verify_*` function returns `Ok` only when one of the header's signatures is the HMAC-SHA256
//!   of exactly this body (and id, timestamp) under the secret, and the signed timestamp is within
//!   `tolerance_secs` of `now_unix`, in either direction. Stale messages are refused so a captured
//!   request cannot be replayed later.
//! - Signatures are compared in constant time (`Mac::verify_slice`), so the comparison leaks no
//!   prefix of the expected value.
//! - Headers are untrusted: whatever they hold gives a [`VerifyError`], never a panic.
//! - [`SigningSecret`]'s `Debug` does not print the key.

use std::fmt;

use base64::{
    Engine, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig, general_purpose::STANDARD},
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Five minutes: Standard Webhooks' and Stripe's own default for how old a signature may be.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

const SECRET_PREFIX: &str = "whsec_";

/// Senders differ on base64 padding; accepting both costs nothing, since the bytes must still
/// make the right HMAC.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Mercado Pago sends `ts` in milliseconds although its documentation shows seconds; any value
/// this large would be seconds in the year 5138, so it can only be milliseconds.
const MILLISECONDS_THRESHOLD: i64 = 100_000_000_000;

/// Why an incoming webhook was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// A header, or a part of one, is absent; names what.
    Missing(&'static str),
    /// A header, or a part of one, cannot be read; names what.
    Malformed(&'static str),
    /// The signed timestamp is too far from now: a replay, or a badly skewed clock.
    TimestampOutOfTolerance,
    /// Signatures are present but none is right for this body and secret.
    NoMatchingSignature,
}

impl VerifyError {
    /// A sentence for logs and for the partner's delivery dashboard.
    pub fn message(&self) -> String {
        match self {
            Self::Missing(what) => format!("the webhook's {what} is missing"),
            Self::Malformed(what) => format!("the webhook's {what} is malformed"),
            Self::TimestampOutOfTolerance => "the webhook's signed timestamp is too far from the \
                 current time (a replayed message or a skewed clock)"
                .to_owned(),
            Self::NoMatchingSignature => {
                "no signature on the webhook matches its body under the configured secret"
                    .to_owned()
            }
        }
    }
}

/// The HMAC key of a Standard Webhooks endpoint: the bytes, not their `whsec_` text form.
#[derive(Clone)]
pub struct SigningSecret {
    key: Vec<u8>,
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningSecret").finish_non_exhaustive()
    }
}

impl SigningSecret {
    /// Reads `whsec_<base64>`, or a bare base64 string as some partners hand out.
    pub fn parse(secret: &str) -> Result<Self, String> {
        // Secrets arrive pasted into forms and environment files, trailing newline included.
        let secret = secret.trim();
        let (encoded, form) = match secret.strip_prefix(SECRET_PREFIX) {
            Some(rest) => (rest, "the part after `whsec_`"),
            None => (secret, "a secret without the `whsec_` prefix"),
        };
        let key = LENIENT_BASE64
            .decode(encoded)
            .map_err(|_| format!("the signing secret is invalid: {form} is not base64"))?;
        if key.is_empty() {
            return Err("the signing secret is empty".to_owned());
        }
        Ok(Self { key })
    }

    /// The `whsec_` text form of a key, the form [`SigningSecret::parse`] reads back.
    pub fn encode(bytes: &[u8]) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
    }
}

/// The Standard Webhooks signature of one message: `v1,<base64>`.
pub fn sign(secret: &SigningSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = standard_mac(secret, id, &timestamp.to_string(), body).finalize();
    format!("v1,{}", STANDARD.encode(tag.into_bytes()))
}

/// The `webhook-signature` value: one signature per secret, so receivers holding either the old
/// or the new secret accept the message while a rotation is under way.
pub fn signature_header(
    secrets: &[&SigningSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|secret| sign(secret, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Verifies a Standard Webhooks delivery. `headers` are the `webhook-id`, `webhook-timestamp`
/// and `webhook-signature` values, `None` when the request lacks one.
pub fn verify_standard(
    secret: &SigningSecret,
    headers: (Option<&str>, Option<&str>, Option<&str>),
    body: &[u8],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let (id, timestamp, signatures) = headers;
    let id = present(id).ok_or(VerifyError::Missing("webhook-id header"))?;
    let raw_timestamp =
        present(timestamp).ok_or(VerifyError::Missing("webhook-timestamp header"))?;
    let signatures = present(signatures).ok_or(VerifyError::Missing("webhook-signature header"))?;
    let timestamp: i64 = raw_timestamp
        .parse()
        .map_err(|_| VerifyError::Malformed("webhook-timestamp header"))?;

    // Other versions (v1a is asymmetric) are skipped, as the specification asks.
    let candidates: Vec<&str> = signatures
        .split_ascii_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .map(|(_, signature)| signature)
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::Missing(
            "v1 signature in the webhook-signature header",
        ));
    }

    // The MAC covers the timestamp text as sent, not our re-rendering of the number.
    let mac = standard_mac(secret, id, raw_timestamp, body);
    let matches = candidates.iter().any(|candidate| {
        LENIENT_BASE64
            .decode(candidate)
            .is_ok_and(|tag| mac.clone().verify_slice(&tag).is_ok())
    });
    if !matches {
        return Err(VerifyError::NoMatchingSignature);
    }
    // Checked after the signature so that this error means an authentic message that is stale.
    within_tolerance(timestamp, now_unix, tolerance_secs)
}

/// A `Stripe-Signature` value for this body, as Stripe would send it; lets tests play Stripe.
pub fn stripe_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = stripe_mac(secret, &timestamp.to_string(), body).finalize();
    format!("t={timestamp},v1={}", hex::encode(tag.into_bytes()))
}

/// Verifies a `Stripe-Signature` header (`t=…,v1=…[,v1=…][,v0=…]`) and returns its timestamp.
///
/// `secret` is the endpoint's `whsec_…` string: Stripe keys the HMAC with that text itself, not
/// with decoded bytes.
pub fn verify_stripe(
    secret: &str,
    header: &str,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<i64, VerifyError> {
    let fields = key_values(header);
    let raw_timestamp = first(&fields, "t").ok_or(VerifyError::Missing(
        "t= timestamp in the Stripe-Signature header",
    ))?;
    let timestamp: i64 = raw_timestamp
        .parse()
        .map_err(|_| VerifyError::Malformed("t= timestamp in the Stripe-Signature header"))?;
    // v0 is Stripe's test-mode scheme and is deliberately not accepted.
    let candidates = all(&fields, "v1");
    if candidates.is_empty() {
        return Err(VerifyError::Missing(
            "v1 signature in the Stripe-Signature header",
        ));
    }
    if !any_hex_matches(&stripe_mac(secret, raw_timestamp, body), &candidates) {
        return Err(VerifyError::NoMatchingSignature);
    }
    within_tolerance(timestamp, now_unix, tolerance_secs)?;
    Ok(timestamp)
}

/// The text Mercado Pago signs: `id:{data.id};request-id:{x-request-id};ts:{ts};`, each part left
/// out when its value is absent, as Mercado Pago does when it signs.
///
/// `data_id` is the raw `data.id` query parameter: Mercado Pago signs alphanumeric ids in
/// lowercase, so they are lowercased here.
pub fn mercadopago_manifest(data_id: Option<&str>, request_id: Option<&str>, ts: &str) -> String {
    let mut manifest = String::new();
    if let Some(id) = present(data_id) {
        let id = if id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            id.to_ascii_lowercase()
        } else {
            id.to_owned()
        };
        manifest.push_str(&format!("id:{id};"));
    }
    if let Some(request_id) = present(request_id) {
        manifest.push_str(&format!("request-id:{request_id};"));
    }
    if let Some(ts) = present(Some(ts)) {
        manifest.push_str(&format!("ts:{ts};"));
    }
    manifest
}

/// Verifies a Mercado Pago notification: the `x-signature` header (`ts=…,v1=…`), the
/// `x-request-id` header and the `data.id` query parameter. Returns the timestamp in seconds,
/// whether Mercado Pago sent seconds or milliseconds.
pub fn verify_mercadopago(
    secret: &str,
    x_signature: &str,
    request_id: Option<&str>,
    data_id: Option<&str>,
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<i64, VerifyError> {
    let fields = key_values(x_signature);
    let raw_ts = first(&fields, "ts").ok_or(VerifyError::Missing(
        "ts= timestamp in the x-signature header",
    ))?;
    let ts: i64 = raw_ts
        .parse()
        .map_err(|_| VerifyError::Malformed("ts= timestamp in the x-signature header"))?;
    let seconds = if ts > MILLISECONDS_THRESHOLD {
        ts / 1000
    } else {
        ts
    };
    let candidates = all(&fields, "v1");
    if candidates.is_empty() {
        return Err(VerifyError::Missing(
            "v1 signature in the x-signature header",
        ));
    }
    let mut mac = new_mac(secret.as_bytes());
    mac.update(mercadopago_manifest(data_id, request_id, raw_ts).as_bytes());
    if !any_hex_matches(&mac, &candidates) {
        return Err(VerifyError::NoMatchingSignature);
    }
    within_tolerance(seconds, now_unix, tolerance_secs)?;
    Ok(seconds)
}

/// The header that carries the company's secret in the plain form of an Evolution webhook.
pub const EVOLUTION_SECRET_HEADER: &str = "x-webhook-secret";
/// How long after issuing it Evolution lets its webhook token live (`exp = iat + 600`).
const EVOLUTION_TOKEN_LIFETIME_SECS: i64 = 600;

/// What Evolution puts in the token it signs for each webhook delivery.
#[derive(serde::Serialize, serde::Deserialize)]
struct EvolutionClaims {
    iat: i64,
    exp: i64,
    app: String,
    action: String,
}

/// The `Authorization` value Evolution sends when the webhook's headers hold `jwt_key`: a
/// bearer HS256 token it signs at each delivery; lets tests play Evolution.
pub fn evolution_bearer(secret: &str, issued_at: i64) -> String {
    let claims = EvolutionClaims {
        iat: issued_at,
        exp: issued_at + EVOLUTION_TOKEN_LIFETIME_SECS,
        app: "evolution".into(),
        action: "webhook".into(),
    };
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signs any claims");
    format!("Bearer {token}")
}

/// Verifies an Evolution API webhook. Evolution signs no body; what it can send is headers
/// configured per webhook, and with the `jwt_key` header it sends `Authorization: Bearer`
/// an HS256 token over `{iat, exp: iat + 600, app: "evolution", action: "webhook"}` signed
/// with that key. Either proves the sender holds the company's secret:
///
/// - `authorization`: that token, signed with the secret, issued no more than `tolerance_secs`
///   in the future and not expired at `now_unix` — a captured request replays for ten minutes
///   at most;
/// - `secret_header`: the [`EVOLUTION_SECRET_HEADER`] value, equal to the secret (compared in
///   constant time), for servers that send fixed headers only.
///
/// A token that is present but wrong is refused even when the plain header is right, so a
/// sender cannot fall back to the weaker form.
pub fn verify_evolution(
    secret: &str,
    authorization: Option<&str>,
    secret_header: Option<&str>,
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    if let Some(authorization) = present(authorization) {
        let token = authorization
            .strip_prefix("Bearer ")
            .ok_or(VerifyError::Malformed("Authorization header"))?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        // Checked below against `now_unix`, not the system clock.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iat"]);
        let claims = jsonwebtoken::decode::<EvolutionClaims>(
            token.trim(),
            &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
            &validation,
        )
        .map_err(|_| VerifyError::NoMatchingSignature)?
        .claims;
        if claims.app != "evolution" || claims.action != "webhook" {
            return Err(VerifyError::NoMatchingSignature);
        }
        if claims.iat > now_unix.saturating_add(tolerance_secs) || now_unix > claims.exp {
            return Err(VerifyError::TimestampOutOfTolerance);
        }
        return Ok(());
    }
    let provided = present(secret_header).ok_or(VerifyError::Missing(
        "Authorization or x-webhook-secret header",
    ))?;
    // Both sides through the same HMAC, then compared in constant time: the comparison tells
    // nothing about how much of the secret a guess got right.
    let expected = evolution_secret_tag(secret.as_bytes())
        .finalize()
        .into_bytes();
    if evolution_secret_tag(provided.as_bytes())
        .verify_slice(&expected)
        .is_err()
    {
        return Err(VerifyError::NoMatchingSignature);
    }
    Ok(())
}

/// The value as the message, not the key: HMAC pads short keys with zeros, so `abc` and `abc\0`
/// would make the same tag as keys.
fn evolution_secret_tag(value: &[u8]) -> HmacSha256 {
    let mut mac = new_mac(b"evolution-webhook-secret");
    mac.update(value);
    mac
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC hashes long keys and pads short ones, so no key length is ever refused.
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length")
}

fn standard_mac(secret: &SigningSecret, id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = new_mac(&secret.key);
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    mac
}

fn stripe_mac(secret: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = new_mac(secret.as_bytes());
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    mac
}

/// Undecodable candidates simply do not match: another entry in the same header may be right.
fn any_hex_matches(mac: &HmacSha256, candidates: &[&str]) -> bool {
    candidates.iter().any(|candidate| {
        hex::decode(candidate).is_ok_and(|tag| mac.clone().verify_slice(&tag).is_ok())
    })
}

/// Splits `k=v,k=v`, the shape both Stripe and Mercado Pago use; entries without `=` are skipped.
fn key_values(header: &str) -> Vec<(&str, &str)> {
    header
        .split(',')
        .filter_map(|item| item.split_once('='))
        .map(|(key, value)| (key.trim(), value.trim()))
        .collect()
}

fn first<'a>(fields: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn all<'a>(fields: &[(&str, &'a str)], key: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .collect()
}

/// An empty header is as good as none.
fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

fn within_tolerance(timestamp: i64, now_unix: i64, tolerance_secs: i64) -> Result<(), VerifyError> {
    // abs_diff cannot overflow, whatever number a sender puts in the header.
    if now_unix.abs_diff(timestamp) > tolerance_secs.max(0).unsigned_abs() {
        Err(VerifyError::TimestampOutOfTolerance)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks specification's published test vector.
    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TS: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn vector_secret() -> SigningSecret {
        SigningSecret::parse(VECTOR_SECRET).expect("the vector's secret parses")
    }

    fn verify_vector(
        secret: &SigningSecret,
        signatures: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        verify_standard(
            secret,
            (Some(VECTOR_ID), Some("1614265330"), Some(signatures)),
            body,
            now,
            DEFAULT_TOLERANCE_SECS,
        )
    }

    #[test]
    fn the_standard_webhooks_test_vector_is_reproduced() {
        assert_eq!(
            sign(&vector_secret(), VECTOR_ID, VECTOR_TS, VECTOR_BODY),
            VECTOR_SIGNATURE
        );
    }

    #[test]
    fn the_standard_webhooks_test_vector_verifies() {
        assert_eq!(
            verify_vector(
                &vector_secret(),
                VECTOR_SIGNATURE,
                VECTOR_BODY,
                VECTOR_TS + 10
            ),
            Ok(())
        );
    }

    #[test]
    fn a_tampered_body_is_refused() {
        assert_eq!(
            verify_vector(
                &vector_secret(),
                VECTOR_SIGNATURE,
                br#"{"test": 2432232315}"#,
                VECTOR_TS
            ),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn a_signature_under_another_secret_is_refused() {
        let other = SigningSecret::parse(&SigningSecret::encode(&[7; 24])).expect("parses");
        assert_eq!(
            verify_vector(&other, VECTOR_SIGNATURE, VECTOR_BODY, VECTOR_TS),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn a_stale_or_future_timestamp_is_refused_even_when_signed() {
        let secret = vector_secret();
        let late = VECTOR_TS + DEFAULT_TOLERANCE_SECS + 1;
        let early = VECTOR_TS - DEFAULT_TOLERANCE_SECS - 1;
        for now in [late, early] {
            assert_eq!(
                verify_vector(&secret, VECTOR_SIGNATURE, VECTOR_BODY, now),
                Err(VerifyError::TimestampOutOfTolerance),
                "now = {now}"
            );
        }
        let edge = VECTOR_TS + DEFAULT_TOLERANCE_SECS;
        assert_eq!(
            verify_vector(&secret, VECTOR_SIGNATURE, VECTOR_BODY, edge),
            Ok(())
        );
    }

    #[test]
    fn one_matching_signature_among_several_is_enough() {
        let wrong = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let header = format!("{wrong} {VECTOR_SIGNATURE}");
        assert_eq!(
            verify_vector(&vector_secret(), &header, VECTOR_BODY, VECTOR_TS),
            Ok(())
        );
        assert_eq!(
            verify_vector(&vector_secret(), wrong, VECTOR_BODY, VECTOR_TS),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn only_v1_signatures_count() {
        let (_, tag) = VECTOR_SIGNATURE.split_once(',').expect("v1,<tag>");
        assert_eq!(
            verify_vector(
                &vector_secret(),
                &format!("v1a,{tag}"),
                VECTOR_BODY,
                VECTOR_TS
            ),
            Err(VerifyError::Missing(
                "v1 signature in the webhook-signature header"
            ))
        );
    }

    #[test]
    fn missing_or_malformed_standard_headers_are_refused() {
        let secret = vector_secret();
        let check = |id, ts, sig| {
            verify_standard(
                &secret,
                (id, ts, sig),
                VECTOR_BODY,
                VECTOR_TS,
                DEFAULT_TOLERANCE_SECS,
            )
        };
        let (id, ts, sig) = (Some(VECTOR_ID), Some("1614265330"), Some(VECTOR_SIGNATURE));
        assert_eq!(
            check(None, ts, sig),
            Err(VerifyError::Missing("webhook-id header"))
        );
        assert_eq!(
            check(id, Some(" "), sig),
            Err(VerifyError::Missing("webhook-timestamp header"))
        );
        assert_eq!(
            check(id, ts, None),
            Err(VerifyError::Missing("webhook-signature header"))
        );
        assert_eq!(
            check(id, Some("yesterday"), sig),
            Err(VerifyError::Malformed("webhook-timestamp header"))
        );
        assert_eq!(
            check(id, ts, Some("v1,not base64!")),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn the_signature_header_carries_one_signature_per_secret() {
        let old = vector_secret();
        let new = SigningSecret::parse(&SigningSecret::encode(b"a brand new key of 24 by"))
            .expect("parses");
        let header = signature_header(&[&old, &new], VECTOR_ID, VECTOR_TS, VECTOR_BODY);
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(
            entries,
            [
                VECTOR_SIGNATURE,
                sign(&new, VECTOR_ID, VECTOR_TS, VECTOR_BODY).as_str()
            ]
        );
        for secret in [&old, &new] {
            assert_eq!(
                verify_vector(secret, &header, VECTOR_BODY, VECTOR_TS),
                Ok(())
            );
        }
    }

    #[test]
    fn secrets_parse_with_or_without_the_prefix_and_round_trip() {
        let key = [1_u8, 2, 3, 250, 251, 252];
        let encoded = SigningSecret::encode(&key);
        assert_eq!(encoded, "whsec_AQID+vv8");
        let prefixed = SigningSecret::parse(&encoded).expect("prefixed parses");
        let bare = SigningSecret::parse("AQID+vv8\n").expect("bare parses");
        assert_eq!(prefixed.key, key);
        assert_eq!(bare.key, key);
    }

    #[test]
    fn bad_secrets_are_refused_with_a_reason() {
        assert_eq!(
            SigningSecret::parse("whsec_not*base64").map(|_| ()),
            Err("the signing secret is invalid: the part after `whsec_` is not base64".to_owned())
        );
        assert_eq!(
            SigningSecret::parse("whsec_").map(|_| ()),
            Err("the signing secret is empty".to_owned())
        );
        assert_eq!(
            SigningSecret::parse("").map(|_| ()),
            Err("the signing secret is empty".to_owned())
        );
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let printed = format!("{:?}", vector_secret());
        assert_eq!(printed, "SigningSecret { .. }");
    }

    const STRIPE_SECRET: &str = "whsec_test_secret_for_stripe";
    const STRIPE_TS: i64 = 1_492_774_577;
    const STRIPE_BODY: &[u8] = br#"{"id":"evt_test_webhook","object":"event"}"#;
    // printf '%s' '1492774577.{"id":"evt_test_webhook","object":"event"}' \
    //   | openssl dgst -sha256 -hmac 'whsec_test_secret_for_stripe'
    const STRIPE_V1: &str = "1d50e41fa92988aadd5731f1dd0ba5730c80eefabed48e549b7be51a0babfeda";

    #[test]
    fn stripe_known_answer() {
        assert_eq!(
            stripe_header(STRIPE_SECRET, STRIPE_TS, STRIPE_BODY),
            format!("t={STRIPE_TS},v1={STRIPE_V1}")
        );
        let header = format!(
            "t={STRIPE_TS},v1={STRIPE_V1},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
        );
        assert_eq!(
            verify_stripe(
                STRIPE_SECRET,
                &header,
                STRIPE_BODY,
                STRIPE_TS + 60,
                DEFAULT_TOLERANCE_SECS
            ),
            Ok(STRIPE_TS)
        );
    }

    #[test]
    fn stripe_refuses_a_tampered_body_or_the_decoded_key() {
        let header = stripe_header(STRIPE_SECRET, STRIPE_TS, STRIPE_BODY);
        assert_eq!(
            verify_stripe(
                STRIPE_SECRET,
                &header,
                b"{}",
                STRIPE_TS,
                DEFAULT_TOLERANCE_SECS
            ),
            Err(VerifyError::NoMatchingSignature)
        );
        assert_eq!(
            verify_stripe(
                "whsec_other",
                &header,
                STRIPE_BODY,
                STRIPE_TS,
                DEFAULT_TOLERANCE_SECS
            ),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn stripe_refuses_a_timestamp_beyond_tolerance() {
        let header = stripe_header(STRIPE_SECRET, STRIPE_TS, STRIPE_BODY);
        assert_eq!(
            verify_stripe(
                STRIPE_SECRET,
                &header,
                STRIPE_BODY,
                STRIPE_TS + 301,
                DEFAULT_TOLERANCE_SECS
            ),
            Err(VerifyError::TimestampOutOfTolerance)
        );
        assert_eq!(
            verify_stripe(
                STRIPE_SECRET,
                &header,
                STRIPE_BODY,
                STRIPE_TS + 300,
                DEFAULT_TOLERANCE_SECS
            ),
            Ok(STRIPE_TS)
        );
    }

    #[test]
    fn stripe_without_v1_is_refused() {
        let header = format!("t={STRIPE_TS},v0={STRIPE_V1}");
        assert_eq!(
            verify_stripe(
                STRIPE_SECRET,
                &header,
                STRIPE_BODY,
                STRIPE_TS,
                DEFAULT_TOLERANCE_SECS
            ),
            Err(VerifyError::Missing(
                "v1 signature in the Stripe-Signature header"
            ))
        );
        assert_eq!(
            verify_stripe(
                STRIPE_SECRET,
                &format!("v1={STRIPE_V1}"),
                STRIPE_BODY,
                STRIPE_TS,
                300
            ),
            Err(VerifyError::Missing(
                "t= timestamp in the Stripe-Signature header"
            ))
        );
        assert_eq!(
            verify_stripe(
                STRIPE_SECRET,
                &format!("t=soon,v1={STRIPE_V1}"),
                STRIPE_BODY,
                STRIPE_TS,
                300
            ),
            Err(VerifyError::Malformed(
                "t= timestamp in the Stripe-Signature header"
            ))
        );
    }

    #[test]
    fn stripe_accepts_one_right_v1_among_several() {
        let wrong = "5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd";
        let header = format!("t={STRIPE_TS},v1={wrong},v1=zz-not-hex,v1={STRIPE_V1}");
        assert_eq!(
            verify_stripe(
                STRIPE_SECRET,
                &header,
                STRIPE_BODY,
                STRIPE_TS,
                DEFAULT_TOLERANCE_SECS
            ),
            Ok(STRIPE_TS)
        );
        let header = format!("t={STRIPE_TS},v1={wrong},v1=zz-not-hex");
        assert_eq!(
            verify_stripe(
                STRIPE_SECRET,
                &header,
                STRIPE_BODY,
                STRIPE_TS,
                DEFAULT_TOLERANCE_SECS
            ),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    const MP_SECRET: &str = "mp-test-secret";
    const MP_REQUEST_ID: &str = "bb56a2f1-6aae-46ac-982e-9dcd3581d08e";

    #[test]
    fn the_mercadopago_manifest_lowercases_alphanumeric_ids_and_omits_absent_parts() {
        assert_eq!(
            mercadopago_manifest(Some("ORD01ABC"), Some(MP_REQUEST_ID), "1704908010"),
            format!("id:ord01abc;request-id:{MP_REQUEST_ID};ts:1704908010;")
        );
        assert_eq!(
            mercadopago_manifest(Some("ID-With-Dash"), None, "1704908010"),
            "id:ID-With-Dash;ts:1704908010;"
        );
        assert_eq!(
            mercadopago_manifest(None, Some(MP_REQUEST_ID), "1704908010"),
            format!("request-id:{MP_REQUEST_ID};ts:1704908010;")
        );
        assert_eq!(mercadopago_manifest(Some(""), None, "1"), "ts:1;");
    }

    #[test]
    fn mercadopago_known_answer_in_seconds() {
        // printf '%s' 'id:ord01jq4s4ky8hwq6na5pxb65b3d3;request-id:bb56a2f1-6aae-46ac-982e-9dcd3581d08e;ts:1704908010;' \
        //   | openssl dgst -sha256 -hmac 'mp-test-secret'
        let header =
            "ts=1704908010,v1=09d684e38d51cb3e72f05c9e27ee151eb1072aca4eb14f87d3a4af5ce8d37efa";
        let data_id = Some("ORD01JQ4S4KY8HWQ6NA5PXB65B3D3");
        let verify = |data_id, now| {
            verify_mercadopago(
                MP_SECRET,
                header,
                Some(MP_REQUEST_ID),
                data_id,
                now,
                DEFAULT_TOLERANCE_SECS,
            )
        };
        assert_eq!(verify(data_id, 1_704_908_100), Ok(1_704_908_010));
        assert_eq!(
            verify(Some("ORD01JQ4S4KY8HWQ6NA5PXB65B3D4"), 1_704_908_100),
            Err(VerifyError::NoMatchingSignature)
        );
        assert_eq!(
            verify(data_id, 1_704_908_010 + 301),
            Err(VerifyError::TimestampOutOfTolerance)
        );
    }

    #[test]
    fn mercadopago_known_answer_in_milliseconds() {
        // printf '%s' 'id:123456;request-id:bb56a2f1-6aae-46ac-982e-9dcd3581d08e;ts:1742505638683;' \
        //   | openssl dgst -sha256 -hmac 'mp-test-secret'
        let header =
            "ts=1742505638683,v1=1520ede0b9566dc68bc2a296500c2499c0fc3e6d36b23292cd92007c5e769a0e";
        assert_eq!(
            verify_mercadopago(
                MP_SECRET,
                header,
                Some(MP_REQUEST_ID),
                Some("123456"),
                1_742_505_640,
                DEFAULT_TOLERANCE_SECS
            ),
            Ok(1_742_505_638)
        );
        assert_eq!(
            verify_mercadopago(
                MP_SECRET,
                header,
                None,
                Some("123456"),
                1_742_505_640,
                DEFAULT_TOLERANCE_SECS
            ),
            Err(VerifyError::NoMatchingSignature),
            "the request id is part of what is signed"
        );
    }

    #[test]
    fn mercadopago_without_ts_or_v1_is_refused() {
        let verify =
            |header| verify_mercadopago(MP_SECRET, header, Some(MP_REQUEST_ID), Some("1"), 0, 300);
        assert_eq!(
            verify("v1=00"),
            Err(VerifyError::Missing(
                "ts= timestamp in the x-signature header"
            ))
        );
        assert_eq!(
            verify("ts=0"),
            Err(VerifyError::Missing(
                "v1 signature in the x-signature header"
            ))
        );
        assert_eq!(
            verify("ts=99999999999999999999,v1=00"),
            Err(VerifyError::Malformed(
                "ts= timestamp in the x-signature header"
            ))
        );
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        assert_eq!(
            within_tolerance(i64::MIN, i64::MAX, i64::MAX),
            Err(VerifyError::TimestampOutOfTolerance)
        );
        assert_eq!(
            within_tolerance(10, 10, -5),
            Ok(()),
            "a negative tolerance acts as zero"
        );
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        assert_eq!(
            VerifyError::Missing("webhook-id header").message(),
            "the webhook's webhook-id header is missing"
        );
        assert_eq!(
            VerifyError::Malformed("t= timestamp in the Stripe-Signature header").message(),
            "the webhook's t= timestamp in the Stripe-Signature header is malformed"
        );
        assert!(
            VerifyError::TimestampOutOfTolerance
                .message()
                .contains("replayed")
        );
        assert!(
            VerifyError::NoMatchingSignature
                .message()
                .contains("no signature")
        );
    }

    #[test]
    fn evolution_tokens_verify_with_the_secret_until_they_expire() {
        let now = 1_764_667_800;
        let bearer = evolution_bearer("evo-secret", now);
        let verify = |authorization: &str, at: i64| {
            verify_evolution(
                "evo-secret",
                Some(authorization),
                None,
                at,
                DEFAULT_TOLERANCE_SECS,
            )
        };
        assert_eq!(verify(&bearer, now), Ok(()));
        assert_eq!(verify(&bearer, now + 600), Ok(()));
        assert_eq!(
            verify(&bearer, now + 601),
            Err(VerifyError::TimestampOutOfTolerance)
        );
        assert_eq!(
            verify(&evolution_bearer("evo-secret", now + 301), now),
            Err(VerifyError::TimestampOutOfTolerance)
        );
        assert_eq!(
            verify(&evolution_bearer("other", now), now),
            Err(VerifyError::NoMatchingSignature)
        );
        assert_eq!(
            verify(bearer.trim_start_matches("Bearer "), now),
            Err(VerifyError::Malformed("Authorization header"))
        );
        assert_eq!(
            verify("Bearer not.a.jwt", now),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn a_wrong_evolution_token_is_refused_even_beside_the_right_plain_secret() {
        let now = 1_764_667_800;
        let wrong = evolution_bearer("other", now);
        assert_eq!(
            verify_evolution("evo-secret", Some(&wrong), Some("evo-secret"), now, 300),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn the_plain_evolution_secret_header_must_equal_the_secret() {
        let verify = |header: Option<&str>| verify_evolution("evo-secret", None, header, 0, 300);
        assert_eq!(verify(Some("evo-secret")), Ok(()));
        assert_eq!(verify(Some(" evo-secret ")), Ok(()));
        for wrong in ["evo-secre", "evo-secret2", "EVO-SECRET"] {
            assert_eq!(
                verify(Some(wrong)),
                Err(VerifyError::NoMatchingSignature),
                "{wrong}"
            );
        }
        assert!(matches!(verify(None), Err(VerifyError::Missing(_))));
        assert!(matches!(verify(Some("  ")), Err(VerifyError::Missing(_))));
    }
}
