//! GraphQL operation metrics: count and duration per operation name.
//!
//! Operation names come from clients, so only the name of an operation the document really
//! holds is recorded (an anonymous one as `anonymous`), cut to [`MAX_NAME_CHARS`], and the set
//! of names that get their own label is capped: later names are counted under `other`, so
//! nobody can blow up the metrics store or `/metrics`.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument};

/// Operation names that get their own label; the rest share `other`.
const MAX_OPERATION_NAMES: usize = 100;
/// Longest label taken from an operation name; GraphQL names are ASCII, so these are bytes.
pub const MAX_NAME_CHARS: usize = 64;

#[derive(Default, Clone)]
pub struct OperationMetrics {
    names: Arc<Mutex<HashSet<String>>>,
}

/// The operation a request runs, as far as the document says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// The document's only operation has no name (or the request names none of several).
    Anonymous,
    /// An operation of the document, by name.
    Named(String),
    /// The request names an operation the document does not hold; it cannot run.
    Unknown,
}

impl Operation {
    /// The operation `operation_name` selects in `document`.
    pub fn of(document: &ExecutableDocument, operation_name: Option<&str>) -> Self {
        match (&document.operations, operation_name) {
            (DocumentOperations::Multiple(operations), Some(name)) => {
                if operations.contains_key(name) {
                    Self::Named(name.to_string())
                } else {
                    Self::Unknown
                }
            }
            (DocumentOperations::Single(_), Some(_)) => Self::Unknown,
            (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations
                .keys()
                .next()
                .map_or(Self::Anonymous, |name| Self::Named(name.to_string())),
            (_, None) => Self::Anonymous,
        }
    }
}

/// `text` cut to at most `max` characters, with `…` marking the cut.
pub fn shortened(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

impl OperationMetrics {
    fn label(&self, operation: &Operation) -> String {
        let name = match operation {
            Operation::Named(name) => shortened(name, MAX_NAME_CHARS),
            Operation::Anonymous => return "anonymous".into(),
            Operation::Unknown => return "other".into(),
        };
        let Ok(mut names) = self.names.lock() else {
            return "other".into();
        };
        if names.contains(&name) || names.len() < MAX_OPERATION_NAMES {
            names.insert(name.clone());
            name
        } else {
            "other".into()
        }
    }

    pub fn record(&self, operation: &Operation, succeeded: bool, elapsed: Duration) {
        let operation = self.label(operation);
        let outcome = if succeeded { "ok" } else { "error" };
        metrics::counter!(
            "graphql_operations_total",
            "operation" => operation.clone(),
            "outcome" => outcome
        )
        .increment(1);
        metrics::histogram!("graphql_operation_duration_seconds", "operation" => operation)
            .record(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn operation(query: &str, name: Option<&str>) -> Operation {
        Operation::of(&parse_query(query).expect("parses"), name)
    }

    #[test]
    fn only_operations_in_the_document_are_named() {
        let named = |name: &str| Operation::Named(name.to_string());
        let cases = [
            ("{ apiVersion }", None, Operation::Anonymous),
            ("{ apiVersion }", Some("Invented"), Operation::Unknown),
            ("query A { apiVersion }", None, named("A")),
            ("query A { apiVersion }", Some("A"), named("A")),
            ("query A { apiVersion }", Some("B"), Operation::Unknown),
            (
                "query A { a: apiVersion } query B { apiVersion }",
                Some("B"),
                named("B"),
            ),
            (
                "query A { a: apiVersion } query B { apiVersion }",
                None,
                Operation::Anonymous,
            ),
        ];
        for (query, name, expected) in cases {
            assert_eq!(operation(query, name), expected, "{query} / {name:?}");
        }
    }

    #[test]
    fn labels_are_short_and_few() {
        let metrics = OperationMetrics::default();
        let long = "L".repeat(10_000);
        assert_eq!(
            metrics.label(&Operation::Named(long)).chars().count(),
            MAX_NAME_CHARS + 1
        );
        for index in 0..MAX_OPERATION_NAMES * 2 {
            metrics.label(&Operation::Named(format!("Op{index}")));
        }
        assert_eq!(metrics.label(&Operation::Named("Late".into())), "other");
        assert_eq!(metrics.label(&Operation::Named("Op1".into())), "Op1");
        assert_eq!(metrics.label(&Operation::Unknown), "other");
        assert_eq!(
            metrics.names.lock().expect("not poisoned").len(),
            MAX_OPERATION_NAMES
        );
    }
}
