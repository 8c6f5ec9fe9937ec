//! The purposes a notification template serves and the variables each one may use: the one list
//! the validation at save, the sample data of a preview and the system defaults are checked
//! against.

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
    /// Security notices go to members and cannot be opted out of, so they carry no
    /// unsubscribe link and no customer.
    pub variables: &'static [Variable],
}

const fn text(path: &'static str, sample: &'static str) -> Variable {
    Variable {
        path,
        kind: VariableKind::Text,
        sample,
    }
}

const fn money(path: &'static str, sample: &'static str) -> Variable {
    Variable {
        path,
        kind: VariableKind::Money,
        sample,
    }
}

const fn datetime(path: &'static str, sample: &'static str) -> Variable {
    Variable {
        path,
        kind: VariableKind::DateTime,
        sample,
    }
}

const fn date(path: &'static str, sample: &'static str) -> Variable {
    Variable {
        path,
        kind: VariableKind::Date,
        sample,
    }
}

const fn url(path: &'static str, sample: &'static str) -> Variable {
    Variable {
        path,
        kind: VariableKind::Url,
        sample,
    }
}

const COMPANY_NAME: Variable = text("company.name", "Bicicletaria Aro 29");
const CUSTOMER_NAME: Variable = text("customer.name", "Maria Souza");
const UNSUBSCRIBE_URL: Variable = url(
    "notification.unsubscribe_url",
    "https://app.example.com/unsubscribe/sample-token",
);
const ORDER_NUMBER: Variable = text("order.number", "1042");
const ORDER_TOTAL: Variable = money("order.total", "15990 BRL");
const ORDER_STATUS: Variable = text("order.status", "READY");

/// Every built-in purpose, with its variables.
pub const PURPOSES: &[Purpose] = &[
    Purpose {
        name: "order_ready",
        variables: &[
            COMPANY_NAME,
            CUSTOMER_NAME,
            UNSUBSCRIBE_URL,
            ORDER_NUMBER,
            ORDER_TOTAL,
            ORDER_STATUS,
        ],
    },
    Purpose {
        name: "order_status_changed",
        variables: &[
            COMPANY_NAME,
            CUSTOMER_NAME,
            UNSUBSCRIBE_URL,
            ORDER_NUMBER,
            ORDER_TOTAL,
            ORDER_STATUS,
            text("order.previous_status", "IN_PROGRESS"),
            datetime("order.changed_at", "2026-12-02T15:30:00Z"),
        ],
    },
    Purpose {
        name: "payment_receipt",
        variables: &[
            COMPANY_NAME,
            CUSTOMER_NAME,
            UNSUBSCRIBE_URL,
            ORDER_NUMBER,
            money("payment.amount", "15990 BRL"),
            text("payment.method", "PIX"),
            datetime("payment.paid_at", "2026-12-02T15:30:00Z"),
        ],
    },
    Purpose {
        name: "quote_sent",
        variables: &[
            COMPANY_NAME,
            CUSTOMER_NAME,
            UNSUBSCRIBE_URL,
            text("quote.number", "Q-318"),
            money("quote.total", "48900 BRL"),
            date("quote.valid_until", "2026-12-16"),
            url("quote.url", "https://app.example.com/quotes/sample"),
        ],
    },
    Purpose {
        name: "ready_for_pickup",
        variables: &[
            COMPANY_NAME,
            CUSTOMER_NAME,
            UNSUBSCRIBE_URL,
            ORDER_NUMBER,
            ORDER_TOTAL,
            text("company.address", "Rua das Flores, 120 - Curitiba"),
        ],
    },
    Purpose {
        name: "appointment_confirmation",
        variables: &[
            COMPANY_NAME,
            CUSTOMER_NAME,
            UNSUBSCRIBE_URL,
            datetime("appointment.starts_at", "2026-12-03T13:00:00Z"),
            text("appointment.service", "Revisão completa"),
            text("appointment.staff", "Dr. João Lima"),
        ],
    },
    Purpose {
        name: "security_alert",
        variables: &[
            COMPANY_NAME,
            text("member.name", "Ana Pereira"),
            text("security.event", "new sign-in"),
            text("security.ip", "203.0.113.7"),
            datetime("security.occurred_at", "2026-12-02T15:30:00Z"),
        ],
    },
];

impl Purpose {
    /// The built-in purpose called `name`, if any.
    pub fn find(name: &str) -> Option<&'static Purpose> {
        PURPOSES.iter().find(|purpose| purpose.name == name)
    }

    /// Whether a template may read `path`: a variable of the purpose, or an object that holds
    /// some (`customer` for `customer.name`).
    pub fn allows(&self, path: &str) -> bool {
        self.variables.iter().any(|variable| {
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
        for variable in self.variables {
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
            for (position, variable) in purpose.variables.iter().enumerate() {
                assert!(
                    purpose.variables[position + 1..]
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
