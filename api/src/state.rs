//! What every request handler and resolver shares.

use std::sync::{Arc, atomic::AtomicU64};

use sea_orm::DatabaseConnection;

use crate::{auth::jwt::JwtKeys, configuration::Settings, rate_limit::RateLimiter, rbac::Rbac};

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub redis: Option<redis::aio::ConnectionManager>,
    pub settings: Arc<Settings>,
    pub jwt: JwtKeys,
    pub rbac: Rbac,
    pub limiter: Arc<RateLimiter>,
    /// SQL statements run since start.
    pub statements: Arc<AtomicU64>,
}
