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

/// Signs and checks self-contained tokens that expire (unsubscribe links): base64url of the
/// JSON claims, a dot, and base64url of their HMAC-SHA256 under a server secret. The claims
/// are readable by whoever holds the token, so they carry ids, never secrets.
#[derive(Clone)]
pub struct SignedTokens {
    mac: hmac::Hmac<sha2::Sha256>,
}

impl std::fmt::Debug for SignedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignedTokens(***)")
    }
}

/// Why a signed token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefused {
    /// Not a token we made, or changed since.
    Invalid,
    Expired,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Signed<T> {
    #[serde(rename = "exp")]
    expires_at: i64,
    #[serde(flatten)]
    claims: T,
}

impl SignedTokens {
    pub fn new(secret: &crate::configuration::Secret) -> Self {
        use hmac::Mac;
        Self {
            mac: hmac::Hmac::new_from_slice(secret.expose().as_bytes())
                .expect("HMAC accepts keys of any length"),
        }
    }

    /// A token for `claims` that [`SignedTokens::verify`] accepts until `expires_at`.
    pub fn sign<T: serde::Serialize>(
        &self,
        claims: T,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use hmac::Mac;
        let body = serde_json::to_vec(&Signed {
            expires_at: expires_at.timestamp(),
            claims,
        })
        .expect("claims serialise");
        let body = URL_SAFE_NO_PAD.encode(body);
        let mut mac = self.mac.clone();
        mac.update(body.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{body}.{tag}")
    }

    /// The claims of a token this server signed that has not expired at `now`.
    pub fn verify<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<T, TokenRefused> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use hmac::Mac;
        let (body, tag) = token.split_once('.').ok_or(TokenRefused::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenRefused::Invalid)?;
        let mut mac = self.mac.clone();
        mac.update(body.as_bytes());
        // Constant time: the comparison tells nothing about how much of a forgery was right.
        mac.verify_slice(&tag).map_err(|_| TokenRefused::Invalid)?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenRefused::Invalid)?;
        let signed: Signed<T> = serde_json::from_slice(&body).map_err(|_| TokenRefused::Invalid)?;
        if signed.expires_at <= now.timestamp() {
            return Err(TokenRefused::Expired);
        }
        Ok(signed.claims)
    }
}

#[cfg(test)]
mod signed_token_tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use chrono::{Duration, Utc};

    use super::{SignedTokens, TokenRefused};
    use crate::configuration::Secret;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Claims {
        subject: String,
    }

    fn tokens(secret: &str) -> SignedTokens {
        SignedTokens::new(&Secret::new(secret.to_string()))
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let tokens = tokens("a secret of the server, long enough to sign");
        let now = Utc::now();
        let claims = Claims {
            subject: "customer".into(),
        };
        let token = tokens.sign(&claims, now + Duration::days(30));
        assert_eq!(tokens.verify::<Claims>(&token, now), Ok(claims));
        assert_eq!(
            tokens.verify::<Claims>(&token, now + Duration::days(31)),
            Err(TokenRefused::Expired)
        );
    }

    #[test]
    fn tampered_or_foreign_tokens_are_refused() {
        let tokens = self::tokens("a secret of the server, long enough to sign");
        let now = Utc::now();
        let token = tokens.sign(
            Claims {
                subject: "customer".into(),
            },
            now + Duration::days(1),
        );
        let (body, tag) = token.split_once('.').unwrap();
        let forged_body =
            URL_SAFE_NO_PAD.encode(br#"{"exp":99999999999,"subject":"someone else"}"#);
        for tampered in [
            format!("{forged_body}.{tag}"),
            format!("{body}.{}", &tag[1..]),
            body.to_string(),
            String::new(),
        ] {
            assert_eq!(
                tokens.verify::<Claims>(&tampered, now),
                Err(TokenRefused::Invalid),
                "{tampered}"
            );
        }
        let other = self::tokens("another server's secret, just as long....");
        assert_eq!(
            other.verify::<Claims>(&token, now),
            Err(TokenRefused::Invalid)
        );
    }
}
