//! GraphQL operation metrics: count and duration per operation name.
//!
//! Operation names come from clients, so the set of names that get their own label is capped;
//! later names are counted under `other` and cannot blow up the metrics store.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Instant,
};

use async_graphql::{
    Response,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute},
};

const MAX_OPERATION_NAMES: usize = 200;

#[derive(Default)]
pub struct OperationMetrics {
    names: Arc<Mutex<HashSet<String>>>,
}

impl ExtensionFactory for OperationMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OperationMetricsExtension {
            names: self.names.clone(),
        })
    }
}

struct OperationMetricsExtension {
    names: Arc<Mutex<HashSet<String>>>,
}

impl OperationMetricsExtension {
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
}

#[async_trait::async_trait]
impl Extension for OperationMetricsExtension {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let started = Instant::now();
        let response = next.run(ctx, operation_name).await;
        let operation = self.label(operation_name);
        let outcome = if response.errors.is_empty() {
            "ok"
        } else {
            "error"
        };
        metrics::counter!(
            "graphql_operations_total",
            "operation" => operation.clone(),
            "outcome" => outcome
        )
        .increment(1);
        metrics::histogram!("graphql_operation_duration_seconds", "operation" => operation)
            .record(started.elapsed().as_secs_f64());
        response
    }
}
