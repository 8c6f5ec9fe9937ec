//! Workflows as data: validation, versions, and concurrent transitions.

use serde_json::{Value, json};

use crate::helpers::{TestApp, first_error_code, spawn_app, text};

const CREATE: &str = "mutation W($input: WorkflowInput!) { createWorkflow(input: $input) {
    id version active states { key } transitions { from to roles } } }";

fn definition(states: Value, transitions: Value) -> Value {
    json!({ "input": { "name": "Custom", "entityType": "ORDER", "states": states, "transitions": transitions } })
}

fn ping_pong() -> Value {
    definition(
        json!([{ "key": "A", "label": "A", "initial": true }, { "key": "B", "label": "B" }, { "key": "C", "label": "C" }]),
        json!([
            { "from": "A", "to": "B", "roles": ["ADMIN"] }, { "from": "A", "to": "C", "roles": ["ADMIN"] },
            { "from": "B", "to": "A", "roles": ["ADMIN"] }, { "from": "C", "to": "A", "roles": ["ADMIN"] }
        ]),
    )
}

#[tokio::test]
async fn invalid_definitions_are_refused_with_the_reason() {
    let app = spawn_app().await;
    let tenant = app.sign_up("validate", "RESTAURANT").await;
    let open = json!({ "key": "OPEN", "label": "Open", "initial": true });
    let done = json!({ "key": "DONE", "label": "Done", "terminal": true });
    let step =
        |from: &str, to: &str, role: &str| json!({ "from": from, "to": to, "roles": [role] });
    let cases = [
        (
            "two initial states",
            json!([open, { "key": "DONE", "label": "Done", "initial": true, "terminal": true }]),
            json!([step("OPEN", "DONE", "ADMIN")]),
            "input.states.1.initial",
        ),
        (
            "unknown state",
            json!([open, done]),
            json!([step("OPEN", "GONE", "ADMIN")]),
            "input.transitions.0.to",
        ),
        (
            "unknown role",
            json!([open, done]),
            json!([step("OPEN", "DONE", "WIZARD")]),
            "input.transitions.0.roles.0",
        ),
        (
            "out of a terminal state",
            json!([open, done]),
            json!([step("OPEN", "DONE", "ADMIN"), step("DONE", "OPEN", "ADMIN")]),
            "input.transitions.1.from",
        ),
        (
            "unreachable",
            json!([open, done, { "key": "LOST", "label": "Lost", "terminal": true }]),
            json!([step("OPEN", "DONE", "ADMIN")]),
            "input.states.2",
        ),
        (
            "duplicate key",
            json!([open, done, { "key": "DONE", "label": "Again" }]),
            json!([step("OPEN", "DONE", "ADMIN")]),
            "input.states.2.key",
        ),
    ];
    for (name, states, transitions, field) in cases {
        let body = app
            .graphql_as(
                &tenant.access_token,
                CREATE,
                definition(states, transitions),
            )
            .await;
        assert_eq!(first_error_code(&body), "VALIDATION", "{name}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["field"], field,
            "{name}: {body}"
        );
    }
    let workflows = app
        .graphql_as(&tenant.access_token, "{ workflows { id } }", json!({}))
        .await;
    assert_eq!(
        workflows["data"]["workflows"].as_array().map(Vec::len),
        Some(1),
        "nothing stored"
    );
}

#[tokio::test]
async fn an_edit_is_a_new_version_and_orders_keep_theirs() {
    let app = spawn_app().await;
    let tenant = app.sign_up("versions", "GENERIC").await;
    let customer = app.create_customer(&tenant.access_token, "Ana").await;
    let product = app
        .create_product(&tenant.access_token, "P", 100, None)
        .await;
    let first = app
        .create_order(&tenant.access_token, &customer, &[(&product, 1)])
        .await;
    let first = text(&first["data"]["createOrder"]["id"]);
    let listed = app
        .graphql_as(
            &tenant.access_token,
            "{ workflows(entityType: \"ORDER\") { id } }",
            json!({}),
        )
        .await;
    let original = text(&listed["data"]["workflows"][0]["id"]);
    let mut edit = ping_pong();
    edit["id"] = json!(original);

    let edited = app
        .graphql_as(
            &tenant.access_token,
            "mutation U($id: ID!, $input: WorkflowInput!) { updateWorkflow(id: $id, input: $input) { version active } }",
            edit,
        )
        .await;
    let second = app
        .create_order(&tenant.access_token, &customer, &[(&product, 1)])
        .await;
    let second = text(&second["data"]["createOrder"]["id"]);
    let versions = "query V($id: ID!) { order(id: $id) { status workflow { version } } }";
    let old = app
        .graphql_as(&tenant.access_token, versions, json!({ "id": first }))
        .await;
    let new = app
        .graphql_as(&tenant.access_token, versions, json!({ "id": second }))
        .await;
    let old_moves = app
        .transition(&tenant.access_token, &first, "IN_PROGRESS", None)
        .await;

    assert_eq!(
        edited["data"]["updateWorkflow"],
        json!({ "version": 2, "active": true }),
        "{edited}"
    );
    assert_eq!(
        old["data"]["order"],
        json!({ "status": "OPEN", "workflow": { "version": 1 } })
    );
    assert_eq!(
        new["data"]["order"],
        json!({ "status": "A", "workflow": { "version": 2 } })
    );
    assert_eq!(
        old_moves["data"]["transitionOrder"]["status"], "IN_PROGRESS",
        "{old_moves}"
    );
}

async fn version_of(app: &TestApp, token: &str, order: &str) -> i64 {
    app.graphql_as(
        token,
        "query V($id: ID!) { order(id: $id) { version } }",
        json!({ "id": order }),
    )
    .await["data"]["order"]["version"]
        .as_i64()
        .expect("version")
}

#[tokio::test]
async fn of_two_conflicting_transitions_exactly_one_wins_every_time() {
    let app = spawn_app().await;
    let tenant = app.sign_up("racing", "GENERIC").await;
    let token = tenant.access_token.clone();
    let created = app.graphql_as(&token, CREATE, ping_pong()).await;
    let workflow = text(&created["data"]["createWorkflow"]["id"]);
    app.graphql_as(
        &token,
        "mutation A($id: ID!) { activateWorkflow(id: $id) { active } }",
        json!({ "id": workflow }),
    )
    .await;
    let customer = app.create_customer(&token, "Ana").await;
    let product = app.create_product(&token, "P", 100, None).await;
    let order = app.create_order(&token, &customer, &[(&product, 1)]).await;
    let order = text(&order["data"]["createOrder"]["id"]);

    for round in 0..200 {
        let version = version_of(&app, &token, &order).await;
        let (to_b, to_c) = tokio::join!(
            app.transition(&token, &order, "B", Some(version)),
            app.transition(&token, &order, "C", Some(version)),
        );
        let outcomes = [&to_b, &to_c].map(|body| {
            body["errors"][0]["extensions"]["code"]
                .as_str()
                .unwrap_or("OK")
                .to_string()
        });
        let mut sorted = outcomes.clone();
        sorted.sort();
        assert_eq!(sorted, ["CONFLICT", "OK"], "round {round}: {to_b} {to_c}");
        let back = app.transition(&token, &order, "A", None).await;
        assert_eq!(
            back["data"]["transitionOrder"]["status"], "A",
            "round {round}: {back}"
        );
    }

    let history = app
        .graphql_as(
            &token,
            "query H($id: ID!) { order(id: $id) { history { from to } } }",
            json!({ "id": order }),
        )
        .await;
    let steps = history["data"]["order"]["history"]
        .as_array()
        .expect("history");
    assert_eq!(steps.len(), 1 + 200 * 2);
    for pair in steps.windows(2) {
        assert_eq!(
            pair[1]["from"], pair[0]["to"],
            "the history is a legal path"
        );
    }
}

#[tokio::test]
async fn a_role_that_workflows_use_cannot_be_deleted() {
    let app = spawn_app().await;
    let tenant = app.sign_up("role-in-use", "GENERIC").await;
    app.graphql_as(
        &tenant.access_token,
        "mutation { createRole(name: \"RUNNER\", permissions: []) { name } }",
        json!({}),
    )
    .await;
    let mut custom = ping_pong();
    custom["input"]["transitions"][0]["roles"] = json!(["RUNNER"]);
    let created = app.graphql_as(&tenant.access_token, CREATE, custom).await;
    assert!(
        created["data"]["createWorkflow"]["id"].is_string(),
        "{created}"
    );

    let deleted = app
        .graphql_as(
            &tenant.access_token,
            "mutation { deleteRole(name: \"RUNNER\") }",
            json!({}),
        )
        .await;

    assert_eq!(first_error_code(&deleted), "CONFLICT", "{deleted}");
}

#[tokio::test]
async fn a_transition_that_requires_payment_is_refused_while_the_order_is_unpaid() {
    let app = spawn_app().await;
    let tenant = app.sign_up("pay-first", "GENERIC").await;
    let token = tenant.access_token.clone();
    let mut custom = ping_pong();
    custom["input"]["transitions"][0]["requiresPayment"] = json!(true);
    let created = app.graphql_as(&token, CREATE, custom).await;
    let workflow = text(&created["data"]["createWorkflow"]["id"]);
    app.graphql_as(
        &token,
        "mutation A($id: ID!) { activateWorkflow(id: $id) { active } }",
        json!({ "id": workflow }),
    )
    .await;
    let customer = app.create_customer(&token, "Ana").await;
    let product = app.create_product(&token, "P", 100, None).await;
    let order = app.create_order(&token, &customer, &[(&product, 1)]).await;
    let order = text(&order["data"]["createOrder"]["id"]);

    let needs_payment = app.transition(&token, &order, "B", None).await;
    let free = app.transition(&token, &order, "C", None).await;

    assert_eq!(
        first_error_code(&needs_payment),
        "VALIDATION",
        "{needs_payment}"
    );
    assert!(
        needs_payment["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("paid"),
        "{needs_payment}"
    );
    assert_eq!(free["data"]["transitionOrder"]["status"], "C", "{free}");
}
