//! The purposes a notification template serves and the variables each one may use: the one list
//! the validation at save, the sample data of a preview and the system defaults are checked
//! against.

use VariableKind::{Date, DateTime, Money, Text, Url};

/// What a variable holds, which decides its sample value and the filter that writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariableKind {
    Text,
    /// `{"minor": 1234, "currency": "BRL"}`, written with the `money` filter.
    Money,
    /// An RFC 3339 instant, written with the `datetime` filter in the company's time zone.
    DateTime,
    /// A calendar day `YYYY-MM-DD`, written with the `date` filter.
    Date,
    Url,
}

/// One variable a template may use, by its dotted path in the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    pub path: &'static str,
    pub kind: VariableKind,
    /// The value a preview or the validation at save renders with. For money, `"<minor>
    /// <currency>"`.
    pub sample: &'static str,
}

/// A built-in purpose (the template's `name`): the event it tells a person about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purpose {
    pub name: &'static str,
    /// Its variables in groups, the shared ones ([`TO_A_CUSTOMER`], [`AN_ORDER`]) first.
    groups: &'static [&'static [Variable]],
}

const fn variable(path: &'static str, kind: VariableKind, sample: &'static str) -> Variable {
    Variable { path, kind, sample }
}

const COMPANY_NAME: Variable = variable("company.name", Text, "Bicicletaria Aro 29");
const CUSTOMER_NAME: Variable = variable("customer.name", Text, "Maria Souza");
const UNSUBSCRIBE_URL: Variable = variable(
    "notification.unsubscribe_url",
    Url,
    "https://app.example.com/unsubscribe/sample-token",
);
const ORDER_NUMBER: Variable = variable("order.number", Text, "1042");
const ORDER_TOTAL: Variable = variable("order.total", Money, "15990 BRL");

/// What every message to a customer may use. Security notices go to members and cannot be
/// opted out of, so they carry neither.
const TO_A_CUSTOMER: &[Variable] = &[COMPANY_NAME, CUSTOMER_NAME, UNSUBSCRIBE_URL];
/// What every message about an order may use.
const AN_ORDER: &[Variable] = &[
    ORDER_NUMBER,
    ORDER_TOTAL,
    variable("order.status", Text, "READY"),
];

/// Every built-in purpose, with its variables.
pub const PURPOSES: &[Purpose] = &[
    Purpose {
        name: "order_ready",
        groups: &[TO_A_CUSTOMER, AN_ORDER],
    },
    Purpose {
        name: "order_status_changed",
        groups: &[
            TO_A_CUSTOMER,
            AN_ORDER,
            &[
                variable("order.previous_status", Text, "IN_PROGRESS"),
                variable("order.changed_at", DateTime, "2026-12-02T15:30:00Z"),
            ],
        ],
    },
    Purpose {
        name: "payment_receipt",
        groups: &[
            TO_A_CUSTOMER,
            &[
                ORDER_NUMBER,
                variable("payment.amount", Money, "15990 BRL"),
                variable("payment.method", Text, "PIX"),
                variable("payment.paid_at", DateTime, "2026-12-02T15:30:00Z"),
            ],
        ],
    },
    Purpose {
        name: "quote_sent",
        groups: &[
            TO_A_CUSTOMER,
            &[
                variable("quote.number", Text, "Q-318"),
                variable("quote.total", Money, "48900 BRL"),
                variable("quote.valid_until", Date, "2026-12-16"),
                variable("quote.url", Url, "https://app.example.com/quotes/sample"),
            ],
        ],
    },
    Purpose {
        name: "ready_for_pickup",
        groups: &[
            TO_A_CUSTOMER,
            AN_ORDER,
            &[variable(
                "company.address",
                Text,
                "Rua das Flores, 120 - Curitiba",
            )],
        ],
    },
    Purpose {
        name: "appointment_confirmation",
        groups: &[
            TO_A_CUSTOMER,
            &[
                variable("appointment.starts_at", DateTime, "2026-12-03T13:00:00Z"),
                variable("appointment.service", Text, "Revisão completa"),
                variable("appointment.staff", Text, "Dr. João Lima"),
            ],
        ],
    },
    Purpose {
        name: "security_alert",
        groups: &[&[
            COMPANY_NAME,
            variable("member.name", Text, "Ana Pereira"),
            variable("security.event", Text, "new sign-in"),
            variable("security.ip", Text, "203.0.113.7"),
            variable("security.occurred_at", DateTime, "2026-12-02T15:30:00Z"),
        ]],
    },
];

impl Purpose {
    /// Every variable a template of this purpose may read.
    pub fn variables(&self) -> impl Iterator<Item = &'static Variable> + Clone + use<> {
        self.groups.iter().flat_map(|group| group.iter())
    }

    /// The built-in purpose called `name`, if any.
    pub fn find(name: &str) -> Option<&'static Purpose> {
        PURPOSES.iter().find(|purpose| purpose.name == name)
    }

    /// Whether a template may read `path`: a variable of the purpose, or an object that holds
    /// some (`customer` for `customer.name`).
    pub fn allows(&self, path: &str) -> bool {
        self.variables().any(|variable| {
            variable.path == path
                || variable
                    .path
                    .strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
    }

    /// The purpose's variables filled with their samples, nested by path.
    pub fn sample(&self) -> serde_json::Value {
        let mut root = serde_json::Map::new();
        for variable in self.variables() {
            let mut segments = variable.path.split('.').peekable();
            let mut object = &mut root;
            while let Some(segment) = segments.next() {
                if segments.peek().is_none() {
                    object.insert(segment.to_string(), variable.sample_value());
                } else {
                    object = object
                        .entry(segment)
                        .or_insert_with(|| serde_json::Value::Object(Default::default()))
                        .as_object_mut()
                        .expect("a variable's parent path is never a leaf of another variable");
                }
            }
        }
        serde_json::Value::Object(root)
    }
}

impl Variable {
    fn sample_value(&self) -> serde_json::Value {
        match self.kind {
            VariableKind::Money => {
                let (minor, currency) = self
                    .sample
                    .split_once(' ')
                    .expect("a money sample is `<minor> <currency>`");
                serde_json::json!({
                    "minor": minor.parse::<i64>().expect("a money sample's minor units are an integer"),
                    "currency": currency,
                })
            }
            VariableKind::Text
            | VariableKind::DateTime
            | VariableKind::Date
            | VariableKind::Url => serde_json::Value::String(self.sample.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_paths_unique_per_purpose() {
        for (index, purpose) in PURPOSES.iter().enumerate() {
            assert!(
                PURPOSES[index + 1..]
                    .iter()
                    .all(|other| other.name != purpose.name),
                "{} listed twice",
                purpose.name
            );
            let variables: Vec<&Variable> = purpose.variables().collect();
            for (position, variable) in variables.iter().enumerate() {
                assert!(
                    variables[position + 1..]
                        .iter()
                        .all(|other| other.path != variable.path),
                    "{}: {} listed twice",
                    purpose.name,
                    variable.path
                );
            }
        }
    }

    #[test]
    fn allows_variables_and_their_objects_only() {
        let purpose = Purpose::find("order_ready").expect("built in");
        let cases = [
            ("order.total", true),
            ("order", true),
            ("customer.name", true),
            ("customer.email", false),
            ("order.tot", false),
            ("ord", false),
            ("payment.amount", false),
        ];
        for (path, allowed) in cases {
            assert_eq!(purpose.allows(path), allowed, "{path}");
        }
    }

    #[test]
    fn sample_nests_by_path() {
        let sample = Purpose::find("order_ready").expect("built in").sample();
        assert_eq!(sample["order"]["number"], "1042");
        assert_eq!(sample["order"]["total"]["minor"], 15990);
        assert_eq!(sample["order"]["total"]["currency"], "BRL");
        assert_eq!(sample["company"]["name"], "Bicicletaria Aro 29");
        for purpose in PURPOSES {
            purpose.sample();
        }
    }
}
