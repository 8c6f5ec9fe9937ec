//! The GraphQL schema: one module per domain merged into the roots, the request guard and
//! operation metrics, and the limits that apply to every request.

mod access;
mod catalog;
mod commerce;
pub mod context;
mod customers;
mod events;
mod guard;
mod identity;
pub mod loaders;
mod metrics;
mod operator;
mod orders;
mod system;
mod workflows;

use async_graphql::{MergedObject, Schema, SchemaBuilder};

pub use guard::{PARSE_FAILED, TOO_COMPLEX, VALIDATION_FAILED, with_code};

use crate::{configuration::Settings, state::AppState};

/// Everything a client can read.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    system::SystemQuery,
    identity::IdentityQuery,
    access::AccessQuery,
    operator::OperatorQuery,
    customers::CustomerQuery,
    catalog::CatalogQuery,
    workflows::WorkflowQuery,
    orders::OrderQuery,
    events::EventQuery,
);

/// Everything a client can change.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    identity::IdentityMutation,
    access::AccessMutation,
    operator::OperatorMutation,
    customers::CustomerMutation,
    catalog::CatalogMutation,
    workflows::WorkflowMutation,
    orders::OrderMutation,
);

pub type AppSchema = Schema<QueryRoot, MutationRoot, events::SubscriptionRoot>;

fn builder() -> SchemaBuilder<QueryRoot, MutationRoot, events::SubscriptionRoot> {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        events::SubscriptionRoot,
    )
}

/// The schema the server executes, configured from the settings.
pub fn build_schema(settings: &Settings, state: AppState) -> AppSchema {
    let limits = &settings.graphql;
    let mut builder = builder()
        .data(state)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        // The parser's own recursion guard must not pre-empt the (coded) depth limit.
        .limit_recursive_depth(limits.max_depth.saturating_mul(2).max(32))
        .limit_directives(20)
        .extension(guard::RequestGuard::new(
            limits.clone(),
            settings.introspection_enabled(),
        ))
        .extension(metrics::OperationMetrics::default());
    if !settings.introspection_enabled() {
        builder = builder.disable_introspection();
    }
    if settings.is_production() {
        builder = builder.disable_suggestions();
    }
    builder.finish()
}

/// The SDL committed as `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}
