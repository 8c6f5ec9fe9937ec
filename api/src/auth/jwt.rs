//! Access tokens: HS256 JWTs, 15 minutes, algorithm pinned, every claim checked.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::configuration::Secret;

pub const ISSUER: &str = "platform";
pub const AUDIENCE: &str = "platform-api";
pub const ACCESS_TTL_SECS: i64 = 15 * 60;
const TYPE_ACCESS: &str = "access";
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The company the token acts in; absent for a platform operator's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<Uuid>,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
    pub typ: String,
}

#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Keyed with the signing secret; derives refresh-token successors.
    successor_mac: Hmac<Sha256>,
}

/// Prefixes what [`JwtKeys::refresh_successor`] authenticates, so it can never be mistaken for
/// a JWT's signing input (which holds no NUL).
const SUCCESSOR_CONTEXT: &[u8] = b"refresh-successor\0";

impl JwtKeys {
    pub fn new(secret: &Secret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            // HMAC hashes long keys and pads short ones, so no key length is ever refused.
            successor_mac: Hmac::new_from_slice(secret.expose().as_bytes())
                .expect("HMAC accepts keys of any length"),
        }
    }

    /// Signs an access token for `user` in `company` (or as operator when `None`).
    pub fn issue(&self, user: Uuid, company: Option<Uuid>) -> anyhow::Result<String> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            cid: company,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + ACCESS_TTL_SECS,
            jti: Uuid::new_v4(),
            typ: TYPE_ACCESS.into(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The refresh token that succeeds `token` when it is rotated: derived from it under the
    /// signing secret, so presenting `token` again within the grace window yields the same
    /// successor although only hashes of tokens are stored. Without the secret it cannot be
    /// computed from `token`.
    pub fn refresh_successor(&self, token: &str) -> String {
        let mut mac = self.successor_mac.clone();
        mac.update(SUCCESSOR_CONTEXT);
        mac.update(token.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// The claims of a valid access token; `None` for anything else (bad signature, other
    /// algorithm, `alg: none`, wrong issuer/audience/type, expired, issued in the future).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        let claims = data.claims;
        let now = Utc::now().timestamp();
        let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(0);
        (claims.typ == TYPE_ACCESS && claims.iat <= now + leeway).then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(&Secret::new("a-test-secret-that-is-long-enough-123"))
    }

    fn forge(header: serde_json::Value, claims: serde_json::Value, secret: &str) -> String {
        let head = URL_SAFE_NO_PAD.encode(header.to_string());
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(format!("{head}.{body}").as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{head}.{body}.{signature}")
    }

    fn valid_claims() -> serde_json::Value {
        let now = Utc::now().timestamp();
        json!({ "sub": Uuid::new_v4(), "cid": Uuid::new_v4(), "iss": ISSUER, "aud": AUDIENCE,
                "iat": now, "exp": now + 60, "jti": Uuid::new_v4(), "typ": "access" })
    }

    const SECRET: &str = "a-test-secret-that-is-long-enough-123";

    #[test]
    fn a_refresh_successor_is_stable_and_needs_the_secret() {
        let other = JwtKeys::new(&Secret::new("another-test-secret-long-enough-4567"));
        let successor = keys().refresh_successor("token");
        assert_eq!(successor, keys().refresh_successor("token"));
        assert_ne!(successor, keys().refresh_successor("token2"));
        assert_ne!(successor, other.refresh_successor("token"));
        assert_eq!(successor.len(), 43, "256 bits, like a fresh token");
    }

    #[test]
    fn an_issued_token_verifies() {
        let keys = keys();
        let user = Uuid::new_v4();
        let company = Uuid::new_v4();
        let token = keys.issue(user, Some(company)).expect("signs");
        let claims = keys.verify(&token).expect("valid");
        assert_eq!((claims.sub, claims.cid), (user, Some(company)));
    }

    #[test]
    fn the_forger_reproduces_a_valid_token() {
        // Guards the attack tests below: a forged token with the right secret and claims passes.
        let token = forge(
            json!({"alg": "HS256", "typ": "JWT"}),
            valid_claims(),
            SECRET,
        );
        assert!(keys().verify(&token).is_some());
    }

    #[test]
    fn attacks_are_refused() {
        let keys = keys();
        let hs = json!({"alg": "HS256", "typ": "JWT"});
        let now = Utc::now().timestamp();
        let with = |key: &str, value: serde_json::Value| {
            let mut claims = valid_claims();
            claims[key] = value;
            claims
        };
        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(json!({"alg": "none"}).to_string()),
            URL_SAFE_NO_PAD.encode(valid_claims().to_string())
        );
        let mut tampered = keys
            .issue(Uuid::new_v4(), Some(Uuid::new_v4()))
            .expect("signs");
        tampered.insert(tampered.len() / 2, 'A');
        let cases = [
            ("alg none", none_alg),
            (
                "HS512",
                forge(
                    json!({"alg": "HS512", "typ": "JWT"}),
                    valid_claims(),
                    SECRET,
                ),
            ),
            (
                "other secret",
                forge(
                    hs.clone(),
                    valid_claims(),
                    "another-secret-entirely-xxxxxxxxx",
                ),
            ),
            (
                "wrong issuer",
                forge(hs.clone(), with("iss", json!("evil")), SECRET),
            ),
            (
                "wrong audience",
                forge(hs.clone(), with("aud", json!("other-api")), SECRET),
            ),
            (
                "wrong type",
                forge(hs.clone(), with("typ", json!("refresh")), SECRET),
            ),
            (
                "expired",
                forge(hs.clone(), with("exp", json!(now - 60)), SECRET),
            ),
            (
                "issued in the future",
                forge(hs.clone(), with("iat", json!(now + 3600)), SECRET),
            ),
            ("tampered", tampered),
            ("garbage", "not.a.token".into()),
        ];
        for (name, token) in cases {
            assert!(keys.verify(&token).is_none(), "{name} was accepted");
        }
    }
}
