//! GraphQL operation metrics: count and duration per operation name.
//!
//! Operation names come from clients, so the set of names that get their own label is capped;
//! later names are counted under `other` and cannot blow up the metrics store.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

const MAX_OPERATION_NAMES: usize = 200;

#[derive(Default, Clone)]
pub struct OperationMetrics {
    names: Arc<Mutex<HashSet<String>>>,
}

impl OperationMetrics {
    fn label(&self, operation_name: Option<&str>) -> String {
        let Some(name) = operation_name else {
            return "anonymous".into();
        };
        let Ok(mut names) = self.names.lock() else {
            return "other".into();
        };
        if names.contains(name) || (names.len() < MAX_OPERATION_NAMES && names.insert(name.into()))
        {
            name.into()
        } else {
            "other".into()
        }
    }

    pub fn record(&self, operation_name: Option<&str>, succeeded: bool, elapsed: Duration) {
        let operation = self.label(operation_name);
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
