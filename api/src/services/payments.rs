//! Payments.

use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use crate::{
    state::AppState,
    webhooks::incoming::{Provider, Verified},
};

/// Applies a verified provider event to the company's payments; returns what it did.
pub async fn handle_provider_event(
    _txn: &DatabaseTransaction,
    _state: &AppState,
    provider: Provider,
    _company_id: Uuid,
    event: &Verified,
) -> anyhow::Result<String> {
    Ok(format!(
        "ignored: no {} handler for {}",
        provider.as_str(),
        event.event_type
    ))
}
