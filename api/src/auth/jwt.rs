//! Access tokens: HS256 JWTs, 15 minutes, algorithm pinned, every claim checked.

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
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
}

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
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use serde_json::json;

    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(&Secret::new("a-test-secret-that-is-long-enough-123"))
    }

    fn forge(header: serde_json::Value, claims: serde_json::Value, secret: &str) -> String {
        use hmac::{Hmac, Mac};
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
