//! Webhooks in both directions.
//!
//! Outgoing: the outbox relay turns each committed event into one delivery per subscribed
//! endpoint ([`enqueue`]), each with its job, in the transaction that marks the event relayed;
//! the [`worker`] runs those jobs on the job runtime and sends the deliveries signed
//! ([`signature`]) through the address guard ([`sender`]), retrying on the configured
//! schedule.
//!
//! Incoming: [`incoming`] verifies what providers post to `/webhooks/in/{provider}/{company}`
//! and stores each event once.

pub mod address;
pub mod incoming;
pub mod sender;
pub mod signature;
pub mod worker;

use std::collections::HashMap;

use chrono::Utc;
use entity::{webhook_delivery, webhook_endpoint};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, TryIntoModel};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::events::{BusEvent, EventType};

/// Every event type an endpoint can subscribe to.
pub const EVENT_TYPES: &[&str] = &EventType::WEBHOOK_CATALOGUE;

/// Whether a subscription pattern (`order.created`, `order.*` or `*`) covers `event_type`.
pub fn pattern_matches(pattern: &str, event_type: EventType) -> bool {
    let name = event_type.name();
    EVENT_TYPES.contains(&name)
        && match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => pattern == name,
        }
}

/// A pattern is valid when it names at least one event type.
pub fn valid_pattern(pattern: &str) -> bool {
    let family_or_all = match pattern.strip_suffix('*') {
        Some(prefix) => prefix.is_empty() || prefix.ends_with('.'),
        None => true,
    };
    family_or_all
        && EventType::ALL
            .into_iter()
            .any(|event_type| pattern_matches(pattern, event_type))
}

/// The body every endpoint receives: the event in an envelope that names it.
pub fn envelope(
    event_id: Uuid,
    event_type: &str,
    company_id: Uuid,
    occurred_at: chrono::DateTime<Utc>,
    data: Value,
) -> String {
    json!({
        "id": event_id,
        "type": event_type,
        "timestamp": occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "companyId": company_id,
        "data": data,
    })
    .to_string()
}

/// Creates the deliveries of freshly relayed events and their jobs; returns how many. Runs in
/// the relay's transaction, so an event is marked relayed only together with its deliveries,
/// and a republished event adds none twice (one delivery per endpoint and event; the job of a
/// delivery not added finds nothing to send). Wake `jobs` after the commit.
pub async fn enqueue(
    db: &impl ConnectionTrait,
    jobs: &crate::jobs::Jobs,
    events: &[BusEvent],
) -> anyhow::Result<u64> {
    let mut companies: Vec<Uuid> = events.iter().map(|event| event.company_id).collect();
    companies.sort_unstable();
    companies.dedup();
    #[allow(clippy::disallowed_methods)] // cross-tenant: the relay serves every company's events
    let endpoints = webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::CompanyId.is_in(companies))
        .filter(webhook_endpoint::Column::Enabled.eq(true))
        .all(db)
        .await?;
    if endpoints.is_empty() {
        return Ok(0);
    }
    let mut by_company: HashMap<Uuid, Vec<(Uuid, Vec<String>)>> = HashMap::new();
    for endpoint in endpoints {
        let patterns: Vec<String> = serde_json::from_str(&endpoint.events).unwrap_or_default();
        by_company
            .entry(endpoint.company_id)
            .or_default()
            .push((endpoint.id, patterns));
    }
    let now = Utc::now();
    let mut deliveries = Vec::new();
    for published in events {
        // What this build cannot read, it cannot offer to an endpoint either.
        let (Some(endpoints), Ok(event)) =
            (by_company.get(&published.company_id), &published.event)
        else {
            continue;
        };
        let event_type = event.event_type().name();
        let mut subscribed = endpoints
            .iter()
            .filter(|(_, patterns)| {
                patterns
                    .iter()
                    .any(|pattern| pattern_matches(pattern, event.event_type()))
            })
            .peekable();
        if subscribed.peek().is_none() {
            continue;
        }
        // Every endpoint receives the same body: it names the event, not the endpoint.
        let body = envelope(
            published.event_id,
            event_type,
            published.company_id,
            published.occurred_at,
            event.payload(),
        );
        for (endpoint_id, _) in subscribed {
            deliveries.push(new_delivery(
                published.company_id,
                *endpoint_id,
                published.event_id,
                event_type,
                body.clone(),
                now,
            ));
        }
    }
    let count = deliveries.len() as u64;
    if count > 0 {
        let models = deliveries
            .iter()
            .map(|delivery| delivery.clone().try_into_model())
            .collect::<Result<Vec<_>, _>>()?;
        worker::schedule(jobs, db, &models).await?;
        webhook_delivery::Entity::insert_many(deliveries)
            .on_conflict_do_nothing_on([
                webhook_delivery::Column::EndpointId,
                webhook_delivery::Column::EventId,
            ])
            .exec_without_returning(db)
            .await?;
    }
    Ok(count)
}

/// A delivery due now.
pub fn new_delivery(
    company_id: Uuid,
    endpoint_id: Uuid,
    event_id: Uuid,
    event_type: &str,
    payload: String,
    now: chrono::DateTime<Utc>,
) -> webhook_delivery::ActiveModel {
    webhook_delivery::ActiveModel {
        id: Set(Uuid::now_v7()),
        company_id: Set(company_id),
        endpoint_id: Set(endpoint_id),
        event_id: Set(event_id),
        event_type: Set(event_type.to_string()),
        payload: Set(payload),
        status: Set(DeliveryStatus::Pending.as_str().to_string()),
        attempt_count: Set(0),
        next_attempt_at: Set(now),
        last_status_code: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        delivered_at: Set(None),
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    Delivered,
    /// Every attempt of the schedule failed; `redeliverWebhook` starts it over.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Delivered => "DELIVERED",
            Self::Dead => "DEAD",
        }
    }
}

/// The `webhook-id` header of a delivery: stable across its retries and redeliveries.
pub fn message_id(delivery_id: Uuid) -> String {
    format!("msg_{}", delivery_id.simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_cover_exact_types_families_and_everything() {
        use EventType::{NotificationCreated, OrderCreated, OrderStatusChanged, PaymentPaid};
        assert!(pattern_matches("order.created", OrderCreated));
        assert!(!pattern_matches("order.created", OrderStatusChanged));
        assert!(pattern_matches("order.*", OrderStatusChanged));
        assert!(!pattern_matches("order.*", PaymentPaid));
        assert!(pattern_matches("*", PaymentPaid));
        assert!(!pattern_matches("*", NotificationCreated));
    }

    #[test]
    fn only_patterns_naming_real_events_are_valid() {
        for valid in ["*", "order.*", "payment.paid", "webhook.test"] {
            assert!(valid_pattern(valid), "{valid}");
        }
        for invalid in [
            "orders.created",
            "order*",
            "ord.*",
            "",
            "order.created.*",
            "**",
        ] {
            assert!(!valid_pattern(invalid), "{invalid}");
        }
    }
}
