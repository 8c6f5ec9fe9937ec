//! What every request handler and resolver shares: the database, Redis and the settings.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::configuration::Settings;

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub redis: Option<redis::aio::ConnectionManager>,
    pub settings: Arc<Settings>,
}
