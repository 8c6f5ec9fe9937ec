//! Receiving a provider's webhook: the company's secret for that provider (stored encrypted),
//! the signature check ([`crate::webhooks::incoming::verify`]), and the handling of the
//! verified event by the domain it concerns.
//!
//! A verified event is stored under its provider's event id, unique per company, in the same
//! transaction as its handling — so an event sent twice, even concurrently, is handled once and
//! acknowledged both times, and a handler that fails leaves nothing behind for the provider's
//! retry to trip over.

use axum::http::HeaderMap;
use chrono::Utc;
use entity::{incoming_webhook, provider_secret};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set, sea_query::Expr};
use uuid::Uuid;

use super::{notifications, payments};
use crate::{
    crypto::Purpose,
    db::tenant::{CompanyId, Intent, TenantTxn},
    state::AppState,
    webhooks::incoming::{Provider, Refused, Verified, verify},
};

/// What became of a verified request.
#[derive(Debug, PartialEq, Eq)]
pub enum Receipt {
    Processed,
    /// Seen before: acknowledged, not processed again.
    Duplicate,
}

/// Verifies and stores one incoming webhook, handing it to its handler.
pub async fn receive(
    state: &AppState,
    provider: Provider,
    company_id: Uuid,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> anyhow::Result<Result<Receipt, Refused>> {
    // One answer for an unknown company and an unconfigured provider: ids are not probed.
    #[allow(clippy::disallowed_methods)] // cross-tenant: the URL claims the company until verified
    let stored = provider_secret::Entity::find()
        .filter(provider_secret::Column::CompanyId.eq(company_id))
        .filter(provider_secret::Column::Provider.eq(provider.as_str()))
        .one(&state.system_db)
        .await?;
    let Some(stored) = stored else {
        return Ok(Err(Refused(format!(
            "no {} webhook secret is configured for this company",
            provider.as_str()
        ))));
    };
    let secret = state.secrets.open(
        company_id,
        Purpose::ProviderSecret,
        &stored.secret_ciphertext,
    )?;
    let verified = match verify(
        provider,
        &secret,
        headers,
        query,
        body,
        Utc::now().timestamp(),
    ) {
        Ok(verified) => verified,
        Err(refused) => return Ok(Err(refused)),
    };
    let txn = state
        .begin_for_company(
            CompanyId::from_verified_webhook(company_id),
            "verified incoming webhook",
            Intent::Write,
        )
        .await?;
    let id = Uuid::now_v7();
    let inserted = incoming_webhook::Entity::insert(incoming_webhook::ActiveModel {
        id: Set(id),
        company_id: Set(company_id),
        provider: Set(provider.as_str().to_string()),
        external_id: Set(verified.external_id.clone()),
        event_type: Set(verified.event_type.clone()),
        payload: Set(verified.payload.to_string()),
        received_at: Set(Utc::now()),
        outcome: Set(None),
    })
    .on_conflict_do_nothing_on([
        incoming_webhook::Column::CompanyId,
        incoming_webhook::Column::Provider,
        incoming_webhook::Column::ExternalId,
    ])
    .exec_without_returning(&txn)
    .await?;
    if !matches!(inserted, sea_orm::TryInsertResult::Inserted(1)) {
        txn.rollback().await?;
        tracing::info!(provider = provider.as_str(), %company_id, event = %verified.external_id, "duplicate incoming webhook acknowledged");
        return Ok(Ok(Receipt::Duplicate));
    }
    let outcome = dispatch(&txn, state, provider, &verified).await?;
    txn.update::<incoming_webhook::Entity>()
        .col_expr(
            incoming_webhook::Column::Outcome,
            Expr::value(outcome.clone()),
        )
        .filter(incoming_webhook::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    state.events_committed();
    tracing::info!(provider = provider.as_str(), %company_id, event = %verified.external_id, event_type = %verified.event_type, %outcome, "incoming webhook processed");
    Ok(Ok(Receipt::Processed))
}

/// Hands a verified event to the domain that handles it; returns what it did.
async fn dispatch(
    txn: &TenantTxn,
    state: &AppState,
    provider: Provider,
    event: &Verified,
) -> anyhow::Result<String> {
    match provider {
        Provider::Evolution => notifications::callbacks::evolution(txn, &event.payload).await,
        Provider::Stripe | Provider::Standard | Provider::Mercadopago => {
            payments::handle_provider_event(txn, state, provider, event).await
        }
    }
}
