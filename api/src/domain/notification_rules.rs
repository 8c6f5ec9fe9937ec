//! What decides whether and how a notification goes out, as data: the categories a person can
//! switch on and off, the conditions a rule puts on an event's fields, who a rule notifies, and
//! the idempotency key that makes a rule send once per event.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// What a notification is about; preferences and consent go by it.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[graphql(name = "NotificationCategory")]
pub enum Category {
    Orders,
    Billing,
    Appointments,
    /// Needs a recorded consent before anything is sent.
    Marketing,
    /// Critical: always sent.
    Security,
    /// Legally required notices. Critical: always sent.
    Legal,
}

impl Category {
    pub const ALL: [Self; 6] = [
        Self::Orders,
        Self::Billing,
        Self::Appointments,
        Self::Marketing,
        Self::Security,
        Self::Legal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Orders => "orders",
            Self::Billing => "billing",
            Self::Appointments => "appointments",
            Self::Marketing => "marketing",
            Self::Security => "security",
            Self::Legal => "legal",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|category| category.as_str() == text)
    }

    /// A person cannot switch these off: they protect the person or the law requires them.
    pub fn is_critical(self) -> bool {
        matches!(self, Self::Security | Self::Legal)
    }

    /// Sent only with a recorded, unrevoked consent for the channel.
    pub fn needs_consent(self) -> bool {
        matches!(self, Self::Marketing)
    }
}

/// How a condition compares an event's field with its value.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "NotificationConditionOperator")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operator {
    Eq,
    Ne,
    /// The field equals one of the values (a list).
    In,
    NotIn,
    /// Integer comparisons, for amounts in minor units and counts.
    Gt,
    Gte,
    Lt,
    Lte,
}

/// `field op value` on an event's payload; `field` is a dotted path (`to`, `payment.status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub field: String,
    pub op: Operator,
    pub value: Value,
}

/// Why a condition cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidCondition(pub String);

impl fmt::Display for InvalidCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const MAX_FIELD_CHARS: usize = 100;

impl Condition {
    /// Refuses a condition that could never be evaluated as written.
    pub fn validate(&self) -> Result<(), InvalidCondition> {
        let valid_path = !self.field.is_empty()
            && self.field.len() <= MAX_FIELD_CHARS
            && self.field.split('.').all(|part| {
                !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
        if !valid_path {
            return Err(InvalidCondition(format!(
                "`{}` is not a field path like `to` or `payment.status`",
                self.field
            )));
        }
        match self.op {
            Operator::In | Operator::NotIn => match &self.value {
                Value::Array(values) if !values.is_empty() => Ok(()),
                _ => Err(InvalidCondition(format!(
                    "`{}` with {:?} needs a non-empty list of values",
                    self.field, self.op
                ))),
            },
            Operator::Gt | Operator::Gte | Operator::Lt | Operator::Lte => {
                if self.value.as_i64().is_some() {
                    Ok(())
                } else {
                    Err(InvalidCondition(format!(
                        "`{}` with {:?} compares integers (amounts in minor units); `{}` is not one",
                        self.field, self.op, self.value
                    )))
                }
            }
            Operator::Eq | Operator::Ne => match &self.value {
                Value::Array(_) | Value::Object(_) => Err(InvalidCondition(format!(
                    "`{}` with {:?} compares with one string, number or boolean",
                    self.field, self.op
                ))),
                _ => Ok(()),
            },
        }
    }

    /// Whether `payload` satisfies the condition; a missing field satisfies only `NE` and
    /// `NOT_IN`.
    pub fn holds(&self, payload: &Value) -> bool {
        let field = self
            .field
            .split('.')
            .try_fold(payload, |value, part| value.get(part));
        match (self.op, field) {
            (Operator::Eq, Some(field)) => field == &self.value,
            (Operator::Ne, field) => field != Some(&self.value),
            (Operator::In, Some(field)) => self.values().contains(field),
            (Operator::NotIn, field) => field.is_none_or(|field| !self.values().contains(field)),
            (Operator::Gt | Operator::Gte | Operator::Lt | Operator::Lte, Some(field)) => {
                match (field.as_i64(), self.value.as_i64()) {
                    (Some(field), Some(value)) => match self.op {
                        Operator::Gt => field > value,
                        Operator::Gte => field >= value,
                        Operator::Lt => field < value,
                        _ => field <= value,
                    },
                    _ => false,
                }
            }
            (_, None) => false,
        }
    }

    fn values(&self) -> &[Value] {
        self.value.as_array().map(Vec::as_slice).unwrap_or_default()
    }
}

/// Whether every condition holds (no conditions: every event of the type).
pub fn all_hold(conditions: &[Condition], payload: &Value) -> bool {
    conditions.iter().all(|condition| condition.holds(payload))
}

/// Who a rule notifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Recipient {
    /// The customer of the event's order (or of the order its payment is for).
    Customer,
    /// One member of the company.
    Member {
        #[serde(rename = "userId")]
        user_id: Uuid,
    },
    /// Every member holding the role.
    Role { name: String },
    /// The member whose action caused the event.
    Actor,
}

/// The first channel of `order` that `usable` accepts: rules try WhatsApp, then SMS, then
/// email, in the order they list.
pub fn first_usable<C: Copy>(order: &[C], mut usable: impl FnMut(C) -> bool) -> Option<C> {
    order.iter().copied().find(|channel| usable(*channel))
}

/// The key that makes one rule notify once per event however often the event is relayed.
pub fn idempotency_key(event_id: Uuid, rule_id: Uuid) -> String {
    format!("rule:{rule_id}:event:{event_id}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn condition(field: &str, op: Operator, value: Value) -> Condition {
        Condition {
            field: field.into(),
            op,
            value,
        }
    }

    #[test]
    fn conditions_evaluate_on_the_payload() {
        let payload = json!({"to": "READY", "from": "PREPARING", "totalMinor": 4500,
                             "payment": {"status": "PAID"}});
        let cases = [
            (condition("to", Operator::Eq, json!("READY")), true),
            (condition("to", Operator::Eq, json!("DELIVERED")), false),
            (condition("to", Operator::Ne, json!("READY")), false),
            (condition("from", Operator::Ne, json!("READY")), true),
            (
                condition("to", Operator::In, json!(["READY", "DELIVERED"])),
                true,
            ),
            (condition("to", Operator::In, json!(["CANCELLED"])), false),
            (condition("to", Operator::NotIn, json!(["CANCELLED"])), true),
            (condition("totalMinor", Operator::Gt, json!(4499)), true),
            (condition("totalMinor", Operator::Gt, json!(4500)), false),
            (condition("totalMinor", Operator::Gte, json!(4500)), true),
            (condition("totalMinor", Operator::Lt, json!(4500)), false),
            (condition("totalMinor", Operator::Lte, json!(4500)), true),
            (condition("to", Operator::Gt, json!(1)), false),
            (
                condition("payment.status", Operator::Eq, json!("PAID")),
                true,
            ),
            (condition("missing", Operator::Eq, json!("READY")), false),
            (condition("missing", Operator::Ne, json!("READY")), true),
            (
                condition("missing", Operator::NotIn, json!(["READY"])),
                true,
            ),
            (condition("missing", Operator::Gte, json!(0)), false),
        ];
        for (condition, expected) in cases {
            assert_eq!(condition.holds(&payload), expected, "{condition:?}");
        }
    }

    #[test]
    fn every_condition_must_hold() {
        let payload = json!({"to": "READY", "totalMinor": 100});
        let ready = condition("to", Operator::Eq, json!("READY"));
        let large = condition("totalMinor", Operator::Gte, json!(1000));
        assert!(all_hold(&[], &payload));
        assert!(all_hold(std::slice::from_ref(&ready), &payload));
        assert!(!all_hold(&[ready, large], &payload));
    }

    #[test]
    fn conditions_that_cannot_be_evaluated_are_refused() {
        let cases = [
            (condition("to", Operator::Eq, json!("READY")), true),
            (
                condition("payment.amount_minor", Operator::Gt, json!(10)),
                true,
            ),
            (condition("", Operator::Eq, json!("READY")), false),
            (condition("to..x", Operator::Eq, json!("READY")), false),
            (condition("to-x", Operator::Eq, json!("READY")), false),
            (condition("to", Operator::In, json!("READY")), false),
            (condition("to", Operator::In, json!([])), false),
            (condition("total", Operator::Gt, json!("10")), false),
            (condition("total", Operator::Lt, json!(10.5)), false),
            (condition("to", Operator::Eq, json!(["READY"])), false),
        ];
        for (condition, valid) in cases {
            assert_eq!(condition.validate().is_ok(), valid, "{condition:?}");
        }
    }

    #[test]
    fn categories_say_which_are_critical_and_which_need_consent() {
        let critical: Vec<_> = Category::ALL
            .into_iter()
            .filter(|c| c.is_critical())
            .collect();
        assert_eq!(critical, [Category::Security, Category::Legal]);
        let consent: Vec<_> = Category::ALL
            .into_iter()
            .filter(|c| c.needs_consent())
            .collect();
        assert_eq!(consent, [Category::Marketing]);
        for category in Category::ALL {
            assert_eq!(Category::parse(category.as_str()), Some(category));
        }
        assert_eq!(Category::parse("promotions"), None);
    }

    #[test]
    fn recipients_read_and_write_as_tagged_json() {
        let member = Uuid::now_v7();
        let cases = [
            (Recipient::Customer, json!({"kind": "CUSTOMER"})),
            (Recipient::Actor, json!({"kind": "ACTOR"})),
            (
                Recipient::Member { user_id: member },
                json!({"kind": "MEMBER", "userId": member}),
            ),
            (
                Recipient::Role {
                    name: "KITCHEN".into(),
                },
                json!({"kind": "ROLE", "name": "KITCHEN"}),
            ),
        ];
        for (recipient, stored) in cases {
            assert_eq!(serde_json::to_value(&recipient).unwrap(), stored);
            assert_eq!(
                serde_json::from_value::<Recipient>(stored).unwrap(),
                recipient
            );
        }
    }

    #[test]
    fn the_first_usable_channel_in_order_is_chosen() {
        let order = ["WHATSAPP", "SMS", "EMAIL"];
        assert_eq!(first_usable(&order, |_| true), Some("WHATSAPP"));
        assert_eq!(first_usable(&order, |c| c != "WHATSAPP"), Some("SMS"));
        assert_eq!(first_usable(&order, |c| c == "EMAIL"), Some("EMAIL"));
        assert_eq!(first_usable(&order, |_| false), None);
    }

    #[test]
    fn the_idempotency_key_is_one_per_rule_and_event() {
        let (event, rule, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(idempotency_key(event, rule), idempotency_key(event, rule));
        assert_ne!(idempotency_key(event, rule), idempotency_key(event, other));
        assert_ne!(idempotency_key(event, rule), idempotency_key(other, rule));
    }
}
