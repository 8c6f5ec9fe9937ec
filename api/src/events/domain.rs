//! The domain events: what each one is called, which aggregate it is about, and its payload.
//!
//! Event type names are written here and nowhere else; the webhooks' catalogue, the outbox, the
//! Socket.IO mapping and the GraphQL subscriptions all read them from [`EventType`].
//!
//! One enum rather than a trait per event with a `TYPE` constant: a stored row has to become one
//! value whatever its type, and consumers match on it exhaustively, so adding an event makes the
//! compiler point at every place that has to decide what to do with it.
//!
//! The payload's JSON is public (the `events` query, webhook bodies, Socket.IO): fields are
//! camelCase and every stored payload carries [`SCHEMA_VERSION`].

use std::fmt;

use chrono::{DateTime, Utc};
use entity::{order, payment};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use uuid::Uuid;

/// Version of the payload layout; bumped when a payload changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

/// The field of a stored payload that says which layout it has.
const SCHEMA_VERSION_FIELD: &str = "schemaVersion";

/// The name of an event, as integrators see it (`type` in webhook bodies and the `events` query).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    OrderCreated,
    OrderStatusChanged,
    PaymentCreated,
    PaymentPaid,
    PaymentFailed,
    PaymentRefunded,
    PaymentCancelled,
    PaymentExpired,
    WebhookEndpointDisabled,
    /// Sent to one endpoint on request (`sendTestWebhook`); never written to the outbox.
    WebhookTest,
    /// A message to one person; delivered to them alone, never to webhook endpoints.
    NotificationCreated,
    /// A notification's provider took it (or, in the app, it was stored and pushed).
    NotificationSent,
    /// A notification will not be sent: a permanent refusal or the last retry failed.
    NotificationFailed,
    /// A notification's provider reported it delivered to the person's device.
    NotificationDelivered,
}

impl EventType {
    pub const ALL: [Self; 14] = [
        Self::OrderCreated,
        Self::OrderStatusChanged,
        Self::PaymentCreated,
        Self::PaymentPaid,
        Self::PaymentFailed,
        Self::PaymentRefunded,
        Self::PaymentCancelled,
        Self::PaymentExpired,
        Self::WebhookEndpointDisabled,
        Self::WebhookTest,
        Self::NotificationCreated,
        Self::NotificationSent,
        Self::NotificationFailed,
        Self::NotificationDelivered,
    ];

    /// The names a webhook endpoint can subscribe to, in the order `webhookEventTypes` lists
    /// them: every type but notifications, which are for one person.
    pub const WEBHOOK_CATALOGUE: [&'static str; Self::ALL.len() - 1] = {
        let mut names = [""; Self::ALL.len() - 1];
        let (mut from, mut to) = (0, 0);
        while from < Self::ALL.len() {
            if !matches!(Self::ALL[from], Self::NotificationCreated) {
                names[to] = Self::ALL[from].name();
                to += 1;
            }
            from += 1;
        }
        names
    };

    pub const fn name(self) -> &'static str {
        match self {
            Self::OrderCreated => "order.created",
            Self::OrderStatusChanged => "order.status_changed",
            Self::PaymentCreated => "payment.created",
            Self::PaymentPaid => "payment.paid",
            Self::PaymentFailed => "payment.failed",
            Self::PaymentRefunded => "payment.refunded",
            Self::PaymentCancelled => "payment.cancelled",
            Self::PaymentExpired => "payment.expired",
            Self::WebhookEndpointDisabled => "webhook.endpoint_disabled",
            Self::WebhookTest => "webhook.test",
            Self::NotificationCreated => "notification.created",
            Self::NotificationSent => "notification.sent",
            Self::NotificationFailed => "notification.failed",
            Self::NotificationDelivered => "notification.delivered",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|event_type| event_type.name() == name)
    }

    pub const fn aggregate(self) -> AggregateType {
        match self {
            Self::OrderCreated | Self::OrderStatusChanged => AggregateType::Order,
            Self::PaymentCreated
            | Self::PaymentPaid
            | Self::PaymentFailed
            | Self::PaymentRefunded
            | Self::PaymentCancelled
            | Self::PaymentExpired => AggregateType::Payment,
            Self::WebhookEndpointDisabled | Self::WebhookTest => AggregateType::WebhookEndpoint,
            Self::NotificationCreated => AggregateType::User,
            Self::NotificationSent | Self::NotificationFailed | Self::NotificationDelivered => {
                AggregateType::Notification
            }
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an event is about; events of one aggregate are numbered 1, 2, 3… in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregateType {
    Order,
    Payment,
    WebhookEndpoint,
    User,
    Notification,
}

impl AggregateType {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::Payment => "payment",
            Self::WebhookEndpoint => "webhook_endpoint",
            Self::User => "user",
            Self::Notification => "notification",
        }
    }
}

/// `order.created`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    pub order_id: Uuid,
    pub number: i64,
    pub status: String,
    pub version: i32,
    pub customer_id: Uuid,
    pub total_minor: i64,
    pub currency: String,
}

impl OrderCreated {
    pub fn of(order: &order::Model) -> Self {
        Self {
            order_id: order.id,
            number: order.number,
            status: order.status.clone(),
            version: order.version,
            customer_id: order.customer_id,
            total_minor: order.total_minor,
            currency: order.currency.clone(),
        }
    }
}

/// `order.status_changed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatusChanged {
    pub order_id: Uuid,
    pub number: i64,
    pub from: String,
    pub to: String,
    pub version: i32,
    /// Who moved it (`Actor::subject`).
    pub actor: String,
}

/// A payment as every payment event shows it, after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentState {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub method: String,
    pub status: String,
    pub amount_minor: i64,
    pub refunded_minor: i64,
    pub currency: String,
}

impl PaymentState {
    pub fn of(payment: &payment::Model) -> Self {
        Self {
            payment_id: payment.id,
            order_id: payment.order_id,
            method: payment.method.clone(),
            status: payment.status.clone(),
            amount_minor: payment.amount_minor,
            refunded_minor: payment.refunded_minor,
            currency: payment.currency.clone(),
        }
    }
}

/// `payment.failed`: the payment and why the provider refused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFailed {
    #[serde(flatten)]
    pub payment: PaymentState,
    pub reason: String,
}

/// `payment.refunded`: the payment and the refund that moved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefunded {
    #[serde(flatten)]
    pub payment: PaymentState,
    pub refund_id: Uuid,
    pub refund_amount_minor: i64,
}

/// `webhook.endpoint_disabled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointDisabled {
    pub endpoint_id: Uuid,
    pub url: String,
    pub reason: String,
    pub failing_since: DateTime<Utc>,
}

/// `notification.created`: a message to one person about another event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// The stored in-app notification (`myNotifications`, `markNotificationsRead`); none for
    /// the notices written straight to the outbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_id: Option<Uuid>,
    pub user_id: Uuid,
    /// The type of the event it is about.
    pub kind: String,
    pub message: String,
    /// That event's payload.
    pub details: Value,
}

impl Notification {
    /// A notification to `user_id` about `event`.
    pub fn about(user_id: Uuid, event: &DomainEvent, message: String) -> Self {
        Self {
            notification_id: None,
            user_id,
            kind: event.event_type().name().to_string(),
            message,
            details: event.fields(),
        }
    }
}

/// `notification.sent`, `notification.failed` and `notification.delivered`: where one
/// notification stands. The address and the text stay out: webhook endpoints receive this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationState {
    pub notification_id: Uuid,
    pub channel: String,
    pub category: String,
    pub status: String,
    pub customer_id: Option<Uuid>,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    /// For `notification.failed`: the provider's code and why.
    pub error_code: Option<String>,
    pub error: Option<String>,
}

/// One event about one aggregate, as producers record it and consumers read it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    OrderCreated(OrderCreated),
    OrderStatusChanged(OrderStatusChanged),
    PaymentCreated(PaymentState),
    PaymentPaid(PaymentState),
    PaymentFailed(PaymentFailed),
    PaymentRefunded(PaymentRefunded),
    PaymentCancelled(PaymentState),
    PaymentExpired(PaymentState),
    WebhookEndpointDisabled(EndpointDisabled),
    NotificationCreated(Notification),
    NotificationSent(NotificationState),
    NotificationFailed(NotificationState),
    NotificationDelivered(NotificationState),
}

impl DomainEvent {
    pub fn event_type(&self) -> EventType {
        match self {
            Self::OrderCreated(_) => EventType::OrderCreated,
            Self::OrderStatusChanged(_) => EventType::OrderStatusChanged,
            Self::PaymentCreated(_) => EventType::PaymentCreated,
            Self::PaymentPaid(_) => EventType::PaymentPaid,
            Self::PaymentFailed(_) => EventType::PaymentFailed,
            Self::PaymentRefunded(_) => EventType::PaymentRefunded,
            Self::PaymentCancelled(_) => EventType::PaymentCancelled,
            Self::PaymentExpired(_) => EventType::PaymentExpired,
            Self::WebhookEndpointDisabled(_) => EventType::WebhookEndpointDisabled,
            Self::NotificationCreated(_) => EventType::NotificationCreated,
            Self::NotificationSent(_) => EventType::NotificationSent,
            Self::NotificationFailed(_) => EventType::NotificationFailed,
            Self::NotificationDelivered(_) => EventType::NotificationDelivered,
        }
    }

    /// The id of the order, payment, endpoint or person the event is about.
    pub fn aggregate_id(&self) -> Uuid {
        match self {
            Self::OrderCreated(created) => created.order_id,
            Self::OrderStatusChanged(changed) => changed.order_id,
            Self::PaymentCreated(payment)
            | Self::PaymentPaid(payment)
            | Self::PaymentCancelled(payment)
            | Self::PaymentExpired(payment) => payment.payment_id,
            Self::PaymentFailed(failed) => failed.payment.payment_id,
            Self::PaymentRefunded(refunded) => refunded.payment.payment_id,
            Self::WebhookEndpointDisabled(disabled) => disabled.endpoint_id,
            Self::NotificationCreated(notification) => notification.user_id,
            Self::NotificationSent(state)
            | Self::NotificationFailed(state)
            | Self::NotificationDelivered(state) => state.notification_id,
        }
    }

    /// The payload as stored and published: the event's fields and `schemaVersion`.
    pub fn payload(&self) -> Value {
        let mut payload = self.fields();
        if let Value::Object(fields) = &mut payload {
            fields.insert(SCHEMA_VERSION_FIELD.into(), SCHEMA_VERSION.into());
        }
        payload
    }

    /// The event's fields without `schemaVersion`.
    fn fields(&self) -> Value {
        let fields = match self {
            Self::OrderCreated(created) => serde_json::to_value(created),
            Self::OrderStatusChanged(changed) => serde_json::to_value(changed),
            Self::PaymentCreated(payment)
            | Self::PaymentPaid(payment)
            | Self::PaymentCancelled(payment)
            | Self::PaymentExpired(payment) => serde_json::to_value(payment),
            Self::PaymentFailed(failed) => serde_json::to_value(failed),
            Self::PaymentRefunded(refunded) => serde_json::to_value(refunded),
            Self::WebhookEndpointDisabled(disabled) => serde_json::to_value(disabled),
            Self::NotificationCreated(notification) => serde_json::to_value(notification),
            Self::NotificationSent(state)
            | Self::NotificationFailed(state)
            | Self::NotificationDelivered(state) => serde_json::to_value(state),
        };
        // Plain structs of strings, numbers and ids always serialise.
        fields.unwrap_or(Value::Null)
    }

    /// Reads a stored or published event back: the one place a type name and a payload
    /// become an event again.
    pub fn parse(event_type: &str, payload: &Value) -> Result<Self, UnreadableEvent> {
        let unreadable = |problem| UnreadableEvent {
            event_type: event_type.to_string(),
            problem,
        };
        let Some(known) = EventType::parse(event_type) else {
            return Err(unreadable(Problem::UnknownType));
        };
        let version = payload.get(SCHEMA_VERSION_FIELD).and_then(Value::as_u64);
        if version != Some(u64::from(SCHEMA_VERSION)) {
            return Err(unreadable(Problem::SchemaVersion(version)));
        }
        let read = match known {
            EventType::OrderCreated => fields(payload).map(Self::OrderCreated),
            EventType::OrderStatusChanged => fields(payload).map(Self::OrderStatusChanged),
            EventType::PaymentCreated => fields(payload).map(Self::PaymentCreated),
            EventType::PaymentPaid => fields(payload).map(Self::PaymentPaid),
            EventType::PaymentFailed => fields(payload).map(Self::PaymentFailed),
            EventType::PaymentRefunded => fields(payload).map(Self::PaymentRefunded),
            EventType::PaymentCancelled => fields(payload).map(Self::PaymentCancelled),
            EventType::PaymentExpired => fields(payload).map(Self::PaymentExpired),
            EventType::WebhookEndpointDisabled => {
                fields(payload).map(Self::WebhookEndpointDisabled)
            }
            EventType::NotificationCreated => fields(payload).map(Self::NotificationCreated),
            EventType::NotificationSent => fields(payload).map(Self::NotificationSent),
            EventType::NotificationFailed => fields(payload).map(Self::NotificationFailed),
            EventType::NotificationDelivered => fields(payload).map(Self::NotificationDelivered),
            EventType::WebhookTest => Err(Problem::NotAnOutboxEvent),
        };
        read.map_err(unreadable)
    }
}

fn fields<T: DeserializeOwned>(payload: &Value) -> Result<T, Problem> {
    T::deserialize(payload).map_err(|error| Problem::Payload(error.to_string()))
}

/// Why this build cannot read a stored or published event: a newer (or much older) build
/// wrote it, or it is damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableEvent {
    event_type: String,
    problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    UnknownType,
    SchemaVersion(Option<u64>),
    NotAnOutboxEvent,
    Payload(String),
}

impl fmt::Display for UnreadableEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let event_type = &self.event_type;
        match &self.problem {
            Problem::UnknownType => write!(f, "unknown event type `{event_type}`"),
            Problem::SchemaVersion(Some(version)) => write!(
                f,
                "`{event_type}` has schema version {version}; this build reads version {SCHEMA_VERSION}"
            ),
            Problem::SchemaVersion(None) => {
                write!(f, "`{event_type}` has no schema version")
            }
            Problem::NotAnOutboxEvent => write!(f, "`{event_type}` is never written to the outbox"),
            Problem::Payload(error) => {
                write!(f, "the payload of `{event_type}` is unreadable: {error}")
            }
        }
    }
}

impl std::error::Error for UnreadableEvent {}

#[cfg(test)]
mod tests {
    use super::*;

    /// One event of every variant.
    fn one_of_each() -> Vec<DomainEvent> {
        let id = Uuid::now_v7;
        let payment = PaymentState {
            payment_id: id(),
            order_id: id(),
            method: "CASH".into(),
            status: "PAID".into(),
            amount_minor: 2500,
            refunded_minor: 0,
            currency: "BRL".into(),
        };
        let disabled = DomainEvent::WebhookEndpointDisabled(EndpointDisabled {
            endpoint_id: id(),
            url: "https://example.test/hook".into(),
            reason: "every attempt failed since 2026-12-02T06:00:00Z".into(),
            failing_since: Utc::now(),
        });
        vec![
            DomainEvent::OrderCreated(OrderCreated {
                order_id: id(),
                number: 7,
                status: "PENDING".into(),
                version: 1,
                customer_id: id(),
                total_minor: 2500,
                currency: "BRL".into(),
            }),
            DomainEvent::OrderStatusChanged(OrderStatusChanged {
                order_id: id(),
                number: 7,
                from: "PENDING".into(),
                to: "CONFIRMED".into(),
                version: 2,
                actor: format!("u:{}", id()),
            }),
            DomainEvent::PaymentCreated(payment.clone()),
            DomainEvent::PaymentPaid(payment.clone()),
            DomainEvent::PaymentFailed(PaymentFailed {
                payment: payment.clone(),
                reason: "Your card was declined.".into(),
            }),
            DomainEvent::PaymentRefunded(PaymentRefunded {
                payment: payment.clone(),
                refund_id: id(),
                refund_amount_minor: 1000,
            }),
            DomainEvent::PaymentCancelled(payment.clone()),
            DomainEvent::PaymentExpired(payment),
            DomainEvent::NotificationCreated(Notification::about(
                id(),
                &disabled,
                "disabled".into(),
            )),
            disabled,
            DomainEvent::NotificationSent(NotificationState {
                notification_id: id(),
                channel: "WHATSAPP".into(),
                category: "orders".into(),
                status: "SENT".into(),
                customer_id: Some(id()),
                provider: Some("evolution".into()),
                provider_message_id: Some("BAE5F4F0A1".into()),
                error_code: None,
                error: None,
            }),
            DomainEvent::NotificationFailed(NotificationState {
                notification_id: id(),
                channel: "SMS".into(),
                category: "billing".into(),
                status: "FAILED".into(),
                customer_id: None,
                provider: Some("twilio".into()),
                provider_message_id: None,
                error_code: Some("21211".into()),
                error: Some("invalid 'To' phone number".into()),
            }),
            DomainEvent::NotificationDelivered(NotificationState {
                notification_id: id(),
                channel: "WHATSAPP".into(),
                category: "orders".into(),
                status: "DELIVERED".into(),
                customer_id: None,
                provider: Some("evolution".into()),
                provider_message_id: Some("BAE5F4F0A1".into()),
                error_code: None,
                error: None,
            }),
        ]
    }

    #[test]
    fn every_event_reads_back_from_its_name_and_payload() {
        let events = one_of_each();
        for event in &events {
            let name = event.event_type().name();
            assert_eq!(
                DomainEvent::parse(name, &event.payload()).as_ref(),
                Ok(event),
                "{name}"
            );
        }
        let covered: Vec<EventType> = events.iter().map(DomainEvent::event_type).collect();
        for event_type in EventType::ALL {
            assert!(
                covered.contains(&event_type) || event_type == EventType::WebhookTest,
                "no sample of {event_type}"
            );
        }
    }

    #[test]
    fn an_unreadable_event_says_why() {
        let payload = one_of_each()[0].payload();
        let refused = |event_type: &str, payload: Value| {
            DomainEvent::parse(event_type, &payload)
                .map(|event| format!("{event:?}"))
                .unwrap_or_else(|error| error.to_string())
        };
        let mut newer = payload.clone();
        newer["schemaVersion"] = 2.into();
        let mut unversioned = payload.clone();
        unversioned
            .as_object_mut()
            .map(|fields| fields.remove("schemaVersion"));
        let mut damaged = payload.clone();
        damaged["number"] = "seven".into();

        assert_eq!(
            refused("order.shipped", payload.clone()),
            "unknown event type `order.shipped`"
        );
        assert_eq!(
            refused("order.created", newer),
            "`order.created` has schema version 2; this build reads version 1"
        );
        assert_eq!(
            refused("order.created", unversioned),
            "`order.created` has no schema version"
        );
        assert_eq!(
            refused("webhook.test", payload),
            "`webhook.test` is never written to the outbox"
        );
        assert!(
            refused("order.created", damaged)
                .starts_with("the payload of `order.created` is unreadable: invalid type"),
        );
    }

    #[test]
    fn the_webhook_catalogue_is_every_type_but_notifications_once() {
        let expected: Vec<&str> = EventType::ALL
            .into_iter()
            .filter(|event_type| *event_type != EventType::NotificationCreated)
            .map(EventType::name)
            .collect();
        assert_eq!(EventType::WEBHOOK_CATALOGUE.to_vec(), expected);
        for event_type in EventType::ALL {
            assert_eq!(EventType::parse(event_type.name()), Some(event_type));
        }
    }

    /// Event type names are written in this file only: everywhere else names them through
    /// [`EventType`]. Unit tests (after `#[cfg(test)]`) may spell them, as clients do.
    #[test]
    fn no_event_type_name_is_spelled_outside_this_file() {
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let this_file = source.join("events").join("domain.rs");
        let mut pending = vec![source];
        let mut offenders = Vec::new();
        let mut files = 0;
        while let Some(path) = pending.pop() {
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).expect("a readable directory") {
                    pending.push(entry.expect("a directory entry").path());
                }
                continue;
            }
            if path.extension().is_none_or(|extension| extension != "rs") || path == this_file {
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&path).expect("a readable source file");
            let production = text.split("#[cfg(test)]").next().unwrap_or_default();
            for event_type in EventType::ALL {
                if production.contains(&format!("\"{}\"", event_type.name())) {
                    offenders.push(format!("{} spells {event_type}", path.display()));
                }
            }
        }
        assert!(files > 50, "read only {files} files");
        assert!(offenders.is_empty(), "{offenders:#?}");
    }
}
