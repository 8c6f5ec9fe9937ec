//! Parity of the order list's plain walk (`graphql/plain.rs`) with the executor, derived from
//! the live schema instead of a hand-written field list.
//!
//! The walk answers `orders { edges { … } }` from memory as a second, string-keyed copy of
//! the resolvers of every type it reaches. This test reads the schema by introspection, takes
//! every leaf field reachable from `OrderEdge` (so a field added to the schema is tested the
//! day it is added), and asks for each leaf alone — so that the walk answers it whenever it
//! can — and once more with a field only the executor answers beside it, which sends the
//! whole page to the executor. The two responses, errors included, must be the same, for
//! every built-in role of every business type and for an API key with a narrow role: a guard
//! added to a field the walk answers, or a role that loses a permission the walk does not
//! check, makes them differ.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, text};

/// Selected beside a leaf, it makes the executor resolve the page: which moves are available
/// depends on the actor's roles, so the walk never answers it.
const EXECUTOR_ONLY: &str = "node { parityExecutorOnly: availableTransitions { to } }";

/// Requests in flight at once while the leaves of one subject are compared.
const CONCURRENT_LEAVES: usize = 8;

const INTROSPECTION: &str = "{ __schema { types { name kind enumValues { name }
    fields { name args { name defaultValue type { kind } } type { ...Named } } } } }
    fragment Named on __Type { kind name ofType { kind name ofType { kind name
        ofType { kind name ofType { kind name } } } } }";

/// A field as the schema declares it.
struct SchemaField {
    name: String,
    /// The named type under any list and non-null wrappers.
    type_name: String,
    requires_arguments: bool,
}

/// The object types of the schema with their fields, and every type's kind.
struct SchemaTypes {
    kinds: BTreeMap<String, String>,
    fields: BTreeMap<String, Vec<SchemaField>>,
    enum_values: BTreeMap<String, Vec<String>>,
}

impl SchemaTypes {
    async fn introspect(app: &TestApp) -> Self {
        let body = app.graphql(INTROSPECTION, json!({})).await;
        let types = body["data"]["__schema"]["types"]
            .as_array()
            .unwrap_or_else(|| panic!("introspection: {body}"));
        let mut schema = Self {
            kinds: BTreeMap::new(),
            fields: BTreeMap::new(),
            enum_values: BTreeMap::new(),
        };
        for described in types {
            let name = text(&described["name"]);
            schema.kinds.insert(name.clone(), text(&described["kind"]));
            if let Some(values) = described["enumValues"].as_array() {
                schema.enum_values.insert(
                    name.clone(),
                    values.iter().map(|value| text(&value["name"])).collect(),
                );
            }
            let Some(fields) = described["fields"].as_array() else {
                continue;
            };
            let fields = fields
                .iter()
                .map(|field| SchemaField {
                    name: text(&field["name"]),
                    type_name: named_type(&field["type"]),
                    requires_arguments: field["args"].as_array().into_iter().flatten().any(
                        |argument| {
                            argument["type"]["kind"] == "NON_NULL"
                                && argument["defaultValue"].is_null()
                        },
                    ),
                })
                .collect();
            schema.fields.insert(name, fields);
        }
        schema
    }

    /// Every leaf reachable from `type_name`, as the selection that reaches it: `__typename`
    /// of every object, every scalar and enum field. A type already on the way is not entered
    /// again, so cycles end.
    fn leaves(&self, type_name: &str) -> Vec<String> {
        let mut leaves = Vec::new();
        self.collect_leaves(type_name, &[], &mut vec![type_name], &mut leaves);
        leaves
    }

    fn collect_leaves<'a>(
        &'a self,
        type_name: &str,
        path: &[&'a str],
        entered: &mut Vec<&'a str>,
        leaves: &mut Vec<String>,
    ) {
        let fields = self
            .fields
            .get(type_name)
            .unwrap_or_else(|| panic!("`{type_name}` is not an object type of the schema"));
        leaves.push(selection(path, "__typename"));
        for field in fields {
            // Given arguments, a field is the executor's (the walk does not read them), so
            // one that requires some is never walked.
            if field.requires_arguments {
                continue;
            }
            match self.kinds.get(&field.type_name).map(String::as_str) {
                Some("SCALAR" | "ENUM") => leaves.push(selection(path, &field.name)),
                Some("OBJECT") if entered.contains(&field.type_name.as_str()) => {}
                Some("OBJECT") => {
                    let path = [path, &[field.name.as_str()]].concat();
                    entered.push(&field.type_name);
                    self.collect_leaves(&field.type_name, &path, entered, leaves);
                    entered.pop();
                }
                other => panic!(
                    "{type_name}.{} is of kind {other:?}; teach this test to select it",
                    field.name
                ),
            }
        }
    }
}

/// `leaf` selected under the fields of `path`, outermost first.
fn selection(path: &[&str], leaf: &str) -> String {
    path.iter().rev().fold(leaf.to_string(), |inner, field| {
        format!("{field} {{ {inner} }}")
    })
}

fn named_type(type_ref: &Value) -> String {
    match type_ref["name"].as_str() {
        Some(name) => name.to_string(),
        None => named_type(&type_ref["ofType"]),
    }
}

/// Someone reading the order list.
struct Subject {
    who: String,
    token: String,
}

/// The response without what differs between any two requests (the request id).
fn comparable(mut body: Value) -> Value {
    let errors = body.get_mut("errors").and_then(Value::as_array_mut);
    for error in errors.into_iter().flatten() {
        if let Some(extensions) = error["extensions"].as_object_mut() {
            extensions.remove("requestId");
        }
    }
    body
}

/// The response with what `EXECUTOR_ONLY` added taken out again.
fn without_executor_only(mut body: Value) -> Value {
    // `pointer_mut`, not indexing: indexing a `null` (a page nulled by an error) would add keys.
    if let Some(edges) = body
        .pointer_mut("/data/orders/edges")
        .and_then(Value::as_array_mut)
    {
        for edge in edges {
            let Some(edge) = edge.as_object_mut() else {
                continue;
            };
            let emptied = match edge.get_mut("node").and_then(Value::as_object_mut) {
                Some(node) => {
                    node.remove("parityExecutorOnly");
                    node.is_empty()
                }
                None => false,
            };
            if emptied {
                edge.remove("node");
            }
        }
    }
    body
}

/// Every leaf as `subject`, walked and executed; returns the leaves that differ.
async fn divergences(app: &TestApp, subject: &Subject, leaves: &[String]) -> Vec<String> {
    stream::iter(leaves)
        .map(|leaf| async move {
            let walked = app
                .graphql_as(
                    &subject.token,
                    &format!("{{ orders(first: 50) {{ edges {{ {leaf} }} }} }}"),
                    json!({}),
                )
                .await;
            let executed = app
                .graphql_as(
                    &subject.token,
                    &format!("{{ orders(first: 50) {{ edges {{ {leaf} {EXECUTOR_ONLY} }} }} }}"),
                    json!({}),
                )
                .await;
            let (walked, executed) = (
                comparable(walked),
                comparable(without_executor_only(executed)),
            );
            (walked != executed).then(|| {
                format!(
                    "as {}, `edges {{ {leaf} }}`:\n  walk:     {walked}\n  executor: {executed}",
                    subject.who
                )
            })
        })
        .buffer_unordered(CONCURRENT_LEAVES)
        .filter_map(|divergence| async move { divergence })
        .collect()
        .await
}

async fn mutate(app: &TestApp, token: &str, query: &str, variables: Value) -> Value {
    let body = app.graphql_as(token, query, variables).await;
    assert!(body.get("errors").is_none(), "{query}: {body}");
    body["data"].clone()
}

/// Orders with everything a page can show: customers with and without contact details, a
/// tracked product and a service, notes, commented moves by a member and by an API key, and a
/// payment.
async fn stock_the_shop(app: &TestApp, admin: &str, slug: &str) {
    let customer =
        "mutation C($input: CreateCustomerInput!) { createCustomer(input: $input) { id } }";
    let reached = mutate(
        app,
        admin,
        customer,
        json!({ "input": { "name": "Maria Souza", "email": format!("maria@{slug}.test"),
            "phone": "+5511987654321", "document": "12345678909", "address": "Rua A, 1",
            "notes": "prefers calls" } }),
    )
    .await;
    let reached = text(&reached["createCustomer"]["id"]);
    let bare = mutate(
        app,
        admin,
        customer,
        json!({ "input": { "name": "Walk-in" } }),
    )
    .await;
    let bare = text(&bare["createCustomer"]["id"]);
    let tracked = app.create_product(admin, "TRACKED", 1250, Some(40)).await;
    let service = mutate(
        app,
        admin,
        "mutation { createProduct(input: { sku: \"FIX\", name: \"Repair\", kind: SERVICE,
            priceMinor: 990 }) { id } }",
        json!({}),
    )
    .await;
    let service = text(&service["createProduct"]["id"]);
    let key = mutate(
        app,
        admin,
        "mutation { createApiKey(name: \"till\", role: \"ADMIN\") { secret } }",
        json!({}),
    )
    .await;
    let key = text(&key["createApiKey"]["secret"]);

    let order = "mutation O($input: CreateOrderInput!) { createOrder(input: $input) { id } }";
    let noted = mutate(
        app,
        admin,
        order,
        json!({ "input": { "customerId": reached, "notes": "no onions", "items": [
            { "productId": tracked, "quantity": 2 }, { "productId": service, "quantity": 1 }] } }),
    )
    .await;
    let noted = text(&noted["createOrder"]["id"]);
    for (by, comment) in [
        (admin, "confirmed by phone"),
        (key.as_str(), "moved by the till"),
    ] {
        let next = mutate(
            app,
            admin,
            "query N($id: ID!) { order(id: $id) { availableTransitions { to } } }",
            json!({ "id": noted }),
        )
        .await;
        let to = text(&next["order"]["availableTransitions"][0]["to"]);
        mutate(
            app,
            by,
            "mutation T($input: TransitionOrderInput!) { transitionOrder(input: $input) { id } }",
            json!({ "input": { "orderId": noted, "to": to, "comment": comment } }),
        )
        .await;
    }
    let paid = mutate(
        app,
        admin,
        order,
        json!({ "input": { "customerId": bare, "items": [{ "productId": tracked, "quantity": 1 }] } }),
    )
    .await;
    crate::payments::pay_cash(
        app,
        admin,
        &text(&paid["createOrder"]["id"]),
        None,
        "till-1",
    )
    .await;
}

/// Every built-in role of every business type (a company of each type that brings a role not
/// seen yet), stocked with orders, and an API key allowed only to read orders.
async fn subjects(app: &TestApp, business_types: &[String]) -> Vec<Subject> {
    let mut subjects = Vec::new();
    let mut roles_seen = BTreeSet::new();
    for business_type in business_types {
        let roles: Vec<&str> = api::rbac::built_in_roles(business_type)
            .into_iter()
            .map(|role| role.name)
            .filter(|role| !roles_seen.contains(role))
            .collect();
        if roles.is_empty() {
            continue;
        }
        let slug = format!("parity-{}", business_type.to_lowercase().replace('_', "-"));
        let tenant = app.sign_up(&slug, business_type).await;
        let admin = tenant.access_token;
        stock_the_shop(app, &admin, &slug).await;
        if subjects.is_empty() {
            mutate(
                app,
                &admin,
                "mutation { createRole(name: \"ORDER_READER\",
                    permissions: [{ resource: \"orders\", action: \"read\" }]) { name } }",
                json!({}),
            )
            .await;
            let key = mutate(
                app,
                &admin,
                "mutation { createApiKey(name: \"reader\", role: \"ORDER_READER\") { secret } }",
                json!({}),
            )
            .await;
            subjects.push(Subject {
                who: format!("an API key with role ORDER_READER ({business_type})"),
                token: text(&key["createApiKey"]["secret"]),
            });
        }
        for role in roles {
            let token = if role == api::rbac::ADMIN {
                admin.clone()
            } else {
                let email = format!("{}@{slug}.test", role.to_lowercase());
                app.invite(&admin, &email, &[role]).await;
                app.login(&email, Some(&slug)).await
            };
            subjects.push(Subject {
                who: format!("{role} ({business_type})"),
                token,
            });
            roles_seen.insert(role);
        }
    }
    subjects
}

async fn plain_lists(app: &TestApp) -> f64 {
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    metrics
        .lines()
        .find(|line| {
            line.starts_with("graphql_plain_lists_total")
                && line.contains(r#"type="OrderEdge""#)
                && line.contains(r#"path="plain""#)
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn the_order_list_walk_answers_every_field_as_the_executor_does_for_every_role() {
    let app = spawn_app().await;
    let schema = SchemaTypes::introspect(&app).await;
    let leaves = schema.leaves("OrderEdge");
    let business_types = schema
        .enum_values
        .get("BusinessType")
        .expect("the schema names the business types");
    let subjects = subjects(&app, business_types).await;
    let roles: BTreeSet<&str> = business_types
        .iter()
        .flat_map(|business_type| api::rbac::built_in_roles(business_type))
        .map(|role| role.name)
        .collect();
    assert_eq!(
        subjects.len(),
        roles.len() + 1,
        "every built-in role and the key"
    );
    assert!(
        leaves
            .iter()
            .any(|leaf| leaf == "node { customer { name } }"),
        "{leaves:?}"
    );

    let walked_before = plain_lists(&app).await;
    let mut differing = Vec::new();
    for subject in &subjects {
        differing.extend(divergences(&app, subject, &leaves).await);
    }

    assert!(
        differing.is_empty(),
        "{} of {} leaves × {} subjects differ:\n{}",
        differing.len(),
        leaves.len(),
        subjects.len(),
        differing.join("\n")
    );
    assert!(
        plain_lists(&app).await > walked_before,
        "the walk answered none of the leaves, so nothing was compared"
    );
}
