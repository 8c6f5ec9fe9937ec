//! The GraphQL schema: one module per domain merged into the roots, the request guard and
//! operation metrics, and the limits that apply to every request.

mod access;
mod catalog;
pub mod context;
mod customers;
mod events;
mod guard;
mod identity;
mod invitations;
pub mod loaders;
mod metrics;
mod money;
mod notification_rules;
mod notification_templates;
mod notifications;
mod operator;
mod orders;
mod pagination;
mod payments;
pub(crate) mod plain;
mod system;
mod webhooks;
mod workflows;

use async_graphql::{MergedObject, Schema, SchemaBuilder};

pub use events::SubscriptionPermissions;
pub use guard::{
    Guard, PARSE_FAILED, TOO_COMPLEX, VALIDATION_FAILED, code_request_error, with_code,
};
pub use metrics::{MAX_NAME_CHARS, Operation, OperationMetrics, shortened};

use crate::{configuration::Settings, state::AppState};

/// Everything a client can read.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    system::SystemQuery,
    identity::IdentityQuery,
    access::AccessQuery,
    invitations::InvitationQuery,
    operator::OperatorQuery,
    customers::CustomerQuery,
    catalog::CatalogQuery,
    workflows::WorkflowQuery,
    orders::OrderQuery,
    events::EventQuery,
    webhooks::WebhookQuery,
    payments::PaymentQuery,
    notifications::NotificationQuery,
    notification_rules::NotificationRuleQuery,
    notification_templates::NotificationTemplateQuery,
);

/// Everything a client can change.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    identity::IdentityMutation,
    access::AccessMutation,
    invitations::InvitationMutation,
    operator::OperatorMutation,
    customers::CustomerMutation,
    catalog::CatalogMutation,
    workflows::WorkflowMutation,
    orders::OrderMutation,
    webhooks::WebhookMutation,
    payments::PaymentMutation,
    notifications::NotificationMutation,
    notification_rules::NotificationRuleMutation,
    notification_templates::NotificationTemplateMutation,
);

pub type AppSchema = Schema<QueryRoot, MutationRoot, events::SubscriptionRoot>;

fn builder() -> SchemaBuilder<QueryRoot, MutationRoot, events::SubscriptionRoot> {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        events::SubscriptionRoot,
    )
}

/// The schema `POST /graphql` executes. It has no extensions on purpose: the handler runs the
/// [`Guard`] and records metrics, so no per-field hook slows resolution down.
pub fn build_schema(settings: &Settings, state: AppState) -> AppSchema {
    configure(builder().data(state), settings).finish()
}

/// The schema the WebSocket runs subscriptions on, with the guard as an extension that refuses
/// queries and mutations.
pub fn build_ws_schema(settings: &Settings, state: AppState) -> AppSchema {
    configure(builder().data(state), settings)
        .extension(guard::WebSocketGuard(guard(settings)))
        .finish()
}

/// The document checks of these settings.
pub fn guard(settings: &Settings) -> Guard {
    Guard::new(settings.graphql.clone(), settings.introspection_enabled())
}

fn configure(
    builder: SchemaBuilder<QueryRoot, MutationRoot, events::SubscriptionRoot>,
    settings: &Settings,
) -> SchemaBuilder<QueryRoot, MutationRoot, events::SubscriptionRoot> {
    let limits = &settings.graphql;
    let mut builder = builder
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        // The parser's own recursion guard must not pre-empt the (coded) depth limit.
        .limit_recursive_depth(limits.max_depth.saturating_mul(2).max(32))
        .limit_directives(20);
    if !settings.introspection_enabled() {
        builder = builder.disable_introspection();
    }
    if settings.is_production() {
        builder = builder.disable_suggestions();
    }
    builder
}

/// The SDL committed as `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}
