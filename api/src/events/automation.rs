//! The notification rules' share of relaying: one `notifications.evaluate-rules` job per
//! relayed event of a company that has enabled rules for its type, enqueued in the relay's
//! transaction (so an event is relayed together with its evaluation, or neither), and run
//! by the services' rules handler on the job runtime — never inside the request that caused
//! the event.

use chrono::{DateTime, Utc};
use entity::notification_rule;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{BusEvent, EventType};
use crate::{
    domain::notification_rules::{Condition, all_hold},
    jobs::{Enqueue, Job, Jobs},
};

/// Whether a rule may listen to `event_type`. Not to events about notifications: every
/// notification a rule on `notification.sent` sent would be sent again, without end. Nor to
/// `webhook.test`, which is never relayed. A match, so a new event type has to be decided here.
pub const fn can_trigger_rules(event_type: EventType) -> bool {
    match event_type {
        EventType::OrderCreated
        | EventType::OrderStatusChanged
        | EventType::PaymentCreated
        | EventType::PaymentPaid
        | EventType::PaymentFailed
        | EventType::PaymentRefunded
        | EventType::PaymentCancelled
        | EventType::PaymentExpired
        | EventType::WebhookEndpointDisabled => true,
        EventType::WebhookTest
        | EventType::NotificationCreated
        | EventType::NotificationSent
        | EventType::NotificationFailed
        | EventType::NotificationDelivered => false,
    }
}

/// Every event type a rule may listen to, in [`EventType::ALL`]'s order.
pub fn rule_triggers() -> impl Iterator<Item = EventType> {
    EventType::ALL
        .into_iter()
        .filter(|event_type| can_trigger_rules(*event_type))
}

/// Evaluate the company's rules for one event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluateRules {
    pub event_id: Uuid,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    /// The payload as stored, which the rules' conditions read.
    pub payload: serde_json::Value,
}

impl Job for EvaluateRules {
    const QUEUE: &'static str = "notifications.evaluate-rules";
}

/// Enqueues the evaluation of every event in `events` that some enabled rule of its company
/// listens to and whose conditions hold for it; returns how many. A republished event is
/// enqueued once (its id is the job's idempotency key).
pub async fn enqueue(
    db: &impl ConnectionTrait,
    jobs: &Jobs,
    events: &[BusEvent],
) -> anyhow::Result<u64> {
    let mut companies: Vec<Uuid> = events.iter().map(|event| event.company_id).collect();
    companies.sort_unstable();
    companies.dedup();
    #[allow(clippy::disallowed_methods)] // cross-tenant: the relay serves every company's events
    let rules: Vec<(Uuid, String, String)> = notification_rule::Entity::find()
        .select_only()
        .column(notification_rule::Column::CompanyId)
        .column(notification_rule::Column::EventType)
        .column(notification_rule::Column::Conditions)
        .filter(notification_rule::Column::CompanyId.is_in(companies))
        .filter(notification_rule::Column::Enabled.eq(true))
        .into_tuple()
        .all(db)
        .await?;
    let rules: Vec<(Uuid, String, Vec<Condition>)> = rules
        .into_iter()
        .filter_map(|(company, event_type, conditions)| {
            Some((company, event_type, serde_json::from_str(&conditions).ok()?))
        })
        .collect();
    let mut enqueued = 0;
    for published in events {
        let Ok(event) = &published.event else {
            continue;
        };
        // A rule stored before its event type was refused must not start a loop either.
        if !can_trigger_rules(event.event_type()) {
            continue;
        }
        let event_type = event.event_type().name();
        let payload = event.payload();
        // Only events some rule's conditions hold for: most status changes notify no one.
        let wanted = rules.iter().any(|(company, listens_to, conditions)| {
            *company == published.company_id
                && listens_to == event_type
                && all_hold(conditions, &payload)
        });
        if !wanted {
            continue;
        }
        jobs.enqueue(
            db,
            &EvaluateRules {
                event_id: published.event_id,
                event_type: event_type.to_string(),
                occurred_at: published.occurred_at,
                payload,
            },
            Enqueue::default()
                .company(published.company_id)
                .key(format!("company:{}", published.company_id))
                .idempotency_key(published.event_id.to_string()),
        )
        .await?;
        enqueued += 1;
    }
    Ok(enqueued)
}
