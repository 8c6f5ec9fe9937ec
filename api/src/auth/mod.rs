//! Authentication: passwords, access and refresh tokens, API keys, and the [`Actor`] a request
//! runs as. The HTTP layer authenticates once per request; everything below takes the actor.

mod actor;
pub mod jwt;
pub mod password;

pub use actor::{
    Actor, Principal, USER_SUBJECT_PREFIX, Viewer, api_key_subject, user_of_subject, user_subject,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// `bytes` bytes from the thread-local CSPRNG (seeded by the OS), URL-safe base64 without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

/// How high-entropy secrets (refresh tokens, API keys) are stored: a fast hash suffices when
/// the secret itself has 256 bits of randomness.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Prefix that marks an API key in `Authorization: Bearer …`.
pub const API_KEY_PREFIX: &str = "pk_";

/// A new API key secret: `pk_` and 256 bits of randomness.
pub fn new_api_key_secret() -> String {
    format!("{API_KEY_PREFIX}{}", random_token(32))
}
