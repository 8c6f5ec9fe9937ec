//! Secrets at rest: AES-256-GCM with a key from configuration, bound to the company and the
//! purpose they were stored for.
//!
//! The associated data (`{purpose}:{company}`) means a ciphertext copied into another
//! company's row, or into another column, fails to decrypt instead of handing over a secret.
//! Stored form: `v1:` + base64(12-byte random nonce ‖ ciphertext ‖ tag); the version prefix
//! leaves room for key rotation.

use aes_gcm::{
    Aes256Gcm, Key, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use anyhow::{Context, anyhow, bail};
use base64::{Engine, engine::general_purpose::STANDARD};
use rand::RngCore;
use uuid::Uuid;

const VERSION: &str = "v1:";
const NONCE_LEN: usize = 12;
pub const KEY_LEN: usize = 32;

/// What a stored secret is for; part of the associated data.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    WebhookSigning,
    ProviderSecret,
    PaymentCredential,
    /// A notification provider's credentials (API key, auth token, SMTP password).
    NotificationCredential,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Self::WebhookSigning => "webhook-signing",
            Self::ProviderSecret => "provider-secret",
            Self::PaymentCredential => "payment-credential",
            Self::NotificationCredential => "notification-credential",
        }
    }
}

/// Encrypts and decrypts secrets kept in the database.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(***)")
    }
}

impl SecretBox {
    /// From the base64 text of a 32-byte key (`openssl rand -base64 32`).
    pub fn from_base64(encoded: &str) -> anyhow::Result<Self> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .context("PLATFORM_ENCRYPTION_KEY must be base64 (e.g. `openssl rand -base64 32`)")?;
        if bytes.len() != KEY_LEN {
            bail!(
                "PLATFORM_ENCRYPTION_KEY must decode to {KEY_LEN} bytes, not {}",
                bytes.len()
            );
        }
        let key = Key::<Aes256Gcm>::try_from(bytes.as_slice())
            .map_err(|_| anyhow!("PLATFORM_ENCRYPTION_KEY has the wrong length"))?;
        Ok(Self {
            cipher: Aes256Gcm::new(&key),
        })
    }

    /// A fresh random key, base64-encoded, as the embedded default stores it.
    pub fn generate_key() -> String {
        let mut key = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        STANDARD.encode(key)
    }

    pub fn seal(&self, company_id: Uuid, purpose: Purpose, plaintext: &str) -> String {
        let mut nonce_bytes = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce_bytes);
        let nonce = Nonce::try_from(nonce_bytes.as_slice()).expect("12-byte nonce");
        let aad = associated_data(company_id, purpose);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory secret cannot fail");
        let mut stored = nonce_bytes.to_vec();
        stored.extend_from_slice(&sealed);
        format!("{VERSION}{}", STANDARD.encode(stored))
    }

    /// The plaintext, or an error when the ciphertext was not sealed for this company and
    /// purpose with this key.
    pub fn open(&self, company_id: Uuid, purpose: Purpose, stored: &str) -> anyhow::Result<String> {
        let encoded = stored
            .strip_prefix(VERSION)
            .ok_or_else(|| anyhow!("unknown secret format"))?;
        let bytes = STANDARD.decode(encoded).context("corrupt stored secret")?;
        if bytes.len() < NONCE_LEN {
            bail!("corrupt stored secret");
        }
        let (nonce_bytes, sealed) = bytes.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_from(nonce_bytes).map_err(|_| anyhow!("corrupt stored secret nonce"))?;
        let aad = associated_data(company_id, purpose);
        let plaintext = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                anyhow!("a stored secret does not decrypt: wrong PLATFORM_ENCRYPTION_KEY or a tampered row")
            })?;
        String::from_utf8(plaintext).context("stored secret is not UTF-8")
    }
}

fn associated_data(company_id: Uuid, purpose: Purpose) -> String {
    format!("{}:{company_id}", purpose.label())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_box() -> SecretBox {
        SecretBox::from_base64(&SecretBox::generate_key()).expect("valid key")
    }

    #[test]
    fn a_sealed_secret_opens_for_its_company_and_purpose_only() {
        let secrets = secret_box();
        let company = Uuid::new_v4();
        let sealed = secrets.seal(company, Purpose::WebhookSigning, "whsec_abc");
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(
            secrets
                .open(company, Purpose::WebhookSigning, &sealed)
                .expect("opens"),
            "whsec_abc"
        );
        assert!(
            secrets
                .open(Uuid::new_v4(), Purpose::WebhookSigning, &sealed)
                .is_err()
        );
        assert!(
            secrets
                .open(company, Purpose::ProviderSecret, &sealed)
                .is_err()
        );
        assert!(
            secret_box()
                .open(company, Purpose::WebhookSigning, &sealed)
                .is_err()
        );
    }

    #[test]
    fn the_same_secret_seals_differently_each_time() {
        let secrets = secret_box();
        let company = Uuid::new_v4();
        assert_ne!(
            secrets.seal(company, Purpose::ProviderSecret, "x"),
            secrets.seal(company, Purpose::ProviderSecret, "x")
        );
    }

    #[test]
    fn keys_of_the_wrong_size_are_refused() {
        assert!(SecretBox::from_base64(&STANDARD.encode([0u8; 16])).is_err());
        assert!(SecretBox::from_base64("not base64!").is_err());
    }
}

/// Signs and checks the tokens of unsubscribe links: HS256 JWTs (`jsonwebtoken`, as access
/// tokens are) with their own audience (`unsubscribe`) and their own key, derived from the
/// unsubscribe secret for this use alone. So an unsubscribe token is never an access token
/// and an access token never unsubscribes anyone, even where both secrets are configured
/// alike. The claims are readable by whoever holds the token: they carry ids, never secrets.
#[derive(Clone)]
pub struct UnsubscribeTokens {
    encoding: jsonwebtoken::EncodingKey,
    decoding: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

impl std::fmt::Debug for UnsubscribeTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnsubscribeTokens(***)")
    }
}

/// Why a signed token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefused {
    /// Not a token we made for this, or changed since.
    Invalid,
    Expired,
}

/// The `aud` of an unsubscribe token; access tokens carry another.
pub const UNSUBSCRIBE_AUDIENCE: &str = "unsubscribe";
/// What the unsubscribe signing key is derived for: the secret keys nothing else directly.
const UNSUBSCRIBE_KEY_CONTEXT: &[u8] = b"platform:unsubscribe-link-signing-key:v1";

#[derive(serde::Serialize, serde::Deserialize)]
struct Signed<T> {
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
    #[serde(flatten)]
    claims: T,
}

impl UnsubscribeTokens {
    pub fn new(secret: &crate::configuration::Secret) -> Self {
        use hmac::Mac;
        let mut derivation = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        derivation.update(UNSUBSCRIBE_KEY_CONTEXT);
        let key = derivation.finalize().into_bytes();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.algorithms = vec![jsonwebtoken::Algorithm::HS256];
        // The link states its own expiry, days away: no leeway is needed at the edge.
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[crate::auth::jwt::ISSUER]);
        validation.set_audience(&[UNSUBSCRIBE_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
        Self {
            encoding: jsonwebtoken::EncodingKey::from_secret(&key),
            decoding: jsonwebtoken::DecodingKey::from_secret(&key),
            validation,
        }
    }

    /// A token for `claims` that [`UnsubscribeTokens::verify`] accepts until `expires_at`.
    pub fn sign<T: serde::Serialize>(
        &self,
        claims: T,
        issued_at: chrono::DateTime<chrono::Utc>,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &Signed {
                iss: crate::auth::jwt::ISSUER.into(),
                aud: UNSUBSCRIBE_AUDIENCE.into(),
                iat: issued_at.timestamp(),
                exp: expires_at.timestamp(),
                claims,
            },
            &self.encoding,
        )
        .expect("HS256 signing of serialisable claims cannot fail")
    }

    /// The claims of an unexpired unsubscribe token this server signed.
    pub fn verify<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, TokenRefused> {
        match jsonwebtoken::decode::<Signed<T>>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims.claims),
            Err(error) => match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Err(TokenRefused::Expired),
                _ => Err(TokenRefused::Invalid),
            },
        }
    }
}

#[cfg(test)]
mod unsubscribe_token_tests {
    use chrono::{Duration, Utc};

    use super::{TokenRefused, UnsubscribeTokens};
    use crate::{auth::jwt::JwtKeys, configuration::Secret};

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Claims {
        subject: String,
    }

    const SECRET: &str = "a secret of the server, long enough to sign";

    fn tokens(secret: &str) -> UnsubscribeTokens {
        UnsubscribeTokens::new(&Secret::new(secret.to_string()))
    }

    fn claims() -> Claims {
        Claims {
            subject: "customer".into(),
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let tokens = tokens(SECRET);
        let now = Utc::now();
        let token = tokens.sign(claims(), now, now + Duration::days(30));
        assert_eq!(tokens.verify::<Claims>(&token), Ok(claims()));
        let expired = tokens.sign(claims(), now - Duration::days(31), now - Duration::days(1));
        assert_eq!(
            tokens.verify::<Claims>(&expired),
            Err(TokenRefused::Expired)
        );
    }

    #[test]
    fn tampered_or_foreign_tokens_are_refused() {
        let tokens = tokens(SECRET);
        let now = Utc::now();
        let token = tokens.sign(claims(), now, now + Duration::days(1));
        let other = tokens.sign(
            Claims {
                subject: "someone else".into(),
            },
            now,
            now + Duration::days(1),
        );
        let parts: Vec<&str> = token.split('.').collect();
        let other_parts: Vec<&str> = other.split('.').collect();
        for tampered in [
            format!("{}.{}.{}", parts[0], other_parts[1], parts[2]),
            format!("{}.{}.{}", parts[0], parts[1], &parts[2][1..]),
            format!("{}.{}", parts[0], parts[1]),
            String::new(),
        ] {
            assert_eq!(
                tokens.verify::<Claims>(&tampered),
                Err(TokenRefused::Invalid),
                "{tampered}"
            );
        }
        assert_eq!(
            self::tokens("another server's secret, just as long....").verify::<Claims>(&token),
            Err(TokenRefused::Invalid)
        );
    }

    /// With one secret configured for both, the derived key and the audience still keep the
    /// two kinds of token apart.
    #[test]
    fn access_and_unsubscribe_tokens_are_never_taken_for_each_other() {
        let tokens = tokens(SECRET);
        let access = JwtKeys::new(&Secret::new(SECRET.to_string()));
        let access_token = access
            .issue(uuid::Uuid::new_v4(), Some(uuid::Uuid::new_v4()))
            .expect("issues");
        assert_eq!(
            tokens.verify::<serde_json::Value>(&access_token),
            Err(TokenRefused::Invalid)
        );
        let now = Utc::now();
        let unsubscribe = tokens.sign(claims(), now, now + Duration::days(1));
        assert!(access.verify(&unsubscribe).is_none());
    }
}
