//! Password hashing with argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane — OWASP's
//! recommended minimum), and the rules a new password must meet.

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};

use crate::error::{ApiError, ApiResult};

pub const MIN_LENGTH: usize = 10;
pub const MAX_LENGTH: usize = 256;

/// Checks the length rules; `field` names the input in the error.
pub fn validate(field: &str, password: &str) -> ApiResult<()> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(ApiError::validation(
            field,
            format!("the password must have at least {MIN_LENGTH} characters"),
        ));
    }
    if length > MAX_LENGTH {
        return Err(ApiError::validation(
            field,
            format!("the password must have at most {MAX_LENGTH} characters"),
        ));
    }
    Ok(())
}

/// Hashes on the blocking pool: argon2 is deliberately slow and must not stall the runtime.
pub async fn hash(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|error| anyhow::anyhow!("argon2 hashing failed: {error}"))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// Verifies `password` against a stored hash; with no hash (unknown account, or a member who
/// never set one) a dummy hash is checked, so timing does not reveal which accounts exist.
pub async fn verify(password: String, stored: Option<String>) -> ApiResult<bool> {
    tokio::task::spawn_blocking(move || {
        let (stored, real) = match stored {
            Some(stored) => (stored, true),
            None => (dummy_hash().to_string(), false),
        };
        let parsed = PasswordHash::new(&stored)
            .map_err(|error| anyhow::anyhow!("stored password hash is malformed: {error}"))?;
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok::<bool, anyhow::Error>(real && matches)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password(b"timing-equaliser")
            .map(|hash| hash.to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse battery".into()).await.expect("hashes");
        assert!(stored.starts_with("$argon2id$"));
        assert!(
            verify("correct horse battery".into(), Some(stored.clone()))
                .await
                .expect("verifies")
        );
        assert!(
            !verify("wrong horse battery".into(), Some(stored))
                .await
                .expect("verifies")
        );
    }

    #[tokio::test]
    async fn no_stored_hash_never_verifies() {
        assert!(
            !verify("timing-equaliser".into(), None)
                .await
                .expect("verifies")
        );
    }

    #[test]
    fn length_rules_name_the_field() {
        assert!(validate("input.password", "short").is_err());
        assert!(validate("input.password", &"x".repeat(257)).is_err());
        assert!(validate("input.password", "long enough pass").is_ok());
    }
}
