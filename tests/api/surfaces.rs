//! Bounded and honest surfaces: `/metrics` labels and access, client addresses, login limits,
//! refresh-token grace, HTTP 429 for rate refusals, and free-text rules.

use std::{net::IpAddr, time::Duration};

use serde_json::{Value, json};

use crate::helpers::{LOGIN, PASSWORD, TestApp, first_error_code, spawn_app, spawn_app_with, text};

const REFRESH: &str = "mutation Refresh($token: String!) { refreshToken(refreshToken: $token) {
    accessToken refreshToken } }";
const ME: &str = "{ me { id } }";

async fn metrics_text(app: &TestApp) -> String {
    app.get("/metrics")
        .await
        .text()
        .await
        .expect("metrics text")
}

#[tokio::test]
async fn an_operation_name_not_in_the_document_is_neither_recorded_nor_echoed_whole() {
    let app = spawn_app().await;
    let invented = format!(
        "Invented{}{}",
        uuid::Uuid::new_v4().simple(),
        "x".repeat(10_000)
    );

    let mut bodies = Vec::new();
    for query in ["{ apiVersion }", "query Real { apiVersion }"] {
        let response = app
            .post_graphql(&json!({ "query": query, "operationName": invented }))
            .await;
        bodies.push(response.json::<Value>().await.expect("json"));
    }
    app.post_graphql(&json!({ "query": "{ apiVersion }" }))
        .await;

    for body in &bodies {
        assert_eq!(
            first_error_code(body),
            "GRAPHQL_VALIDATION_FAILED",
            "{body}"
        );
        let message = text(&body["errors"][0]["message"]);
        assert!(
            message.len() < 200,
            "the name is echoed whole: {} bytes",
            message.len()
        );
    }
    let metrics = metrics_text(&app).await;
    assert!(
        !metrics.contains(&invented[..40]),
        "an invented name was recorded"
    );
    assert!(metrics.contains("operation=\"anonymous\""));
}

#[tokio::test]
async fn operation_labels_are_cut_short_and_bounded_in_number() {
    let app = spawn_app().await;
    let prefix = format!("Many{}", uuid::Uuid::new_v4().simple());
    for index in 0..150 {
        let name = format!("{prefix}_{index}_{}", "n".repeat(500));
        let body = app
            .graphql(&format!("query {name} {{ apiVersion }}"), json!({}))
            .await;
        assert!(body["data"]["apiVersion"].is_string(), "{body}");
    }

    let metrics = metrics_text(&app).await;
    let labels: std::collections::HashSet<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("graphql_operations_total"))
        .filter_map(|line| line.split("operation=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .filter(|label| label.starts_with(&prefix))
        .collect();
    assert!(!labels.is_empty(), "{metrics}");
    assert!(labels.len() <= 100, "{} labels kept", labels.len());
    assert!(
        labels.iter().all(|label| label.chars().count() <= 65),
        "labels are not cut: {labels:?}"
    );
    assert!(metrics.contains("operation=\"other\""));
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_set() {
    let token = "a-metrics-token-long-enough";
    let app = spawn_app_with(|settings| {
        settings.metrics_token = Some(api::configuration::Secret::new(token));
    })
    .await;
    let get = |authorization: Option<&str>| {
        let mut request = app.client.get(format!("{}/metrics", app.address));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.send()
    };

    let anonymous = get(None).await.expect("reachable");
    let wrong = get(Some("Bearer not-the-token")).await.expect("reachable");
    let right = get(Some(&format!("Bearer {token}")))
        .await
        .expect("reachable");

    assert_eq!(anonymous.status(), 401);
    assert_eq!(wrong.status(), 401);
    assert_eq!(right.status(), 200);
    assert!(
        right
            .text()
            .await
            .expect("text")
            .contains("http_requests_total")
    );
}

#[tokio::test]
async fn metrics_move_to_their_own_listener_when_one_is_set() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let app = spawn_app_with(|settings| {
        settings.metrics_bind = Some(format!("127.0.0.1:{port}").parse().expect("address"));
    })
    .await;

    let public = app.get("/metrics").await;
    let internal = app
        .client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("the metrics listener answers");

    assert_eq!(public.status(), 404);
    assert_eq!(internal.status(), 200);
    assert!(
        internal
            .text()
            .await
            .expect("text")
            .contains("db_statements_total")
    );
}

/// A client on its own loopback address, as distinct IPv4 clients look to the server.
fn client_from(address: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(address))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn login_from(
    app: &TestApp,
    client: &reqwest::Client,
    email: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": LOGIN, "variables": {
            "input": { "email": email, "password": password } } }))
        .send()
        .await
        .expect("reachable")
}

#[tokio::test]
async fn ipv4_clients_of_a_dual_stack_listener_are_limited_each_on_its_own() {
    let app = spawn_app_with(|settings| {
        settings.bind = "[::]:0".parse().expect("address");
        settings.rate_limits.login_failures_per_address = 3;
    })
    .await;
    let first = client_from([127, 0, 0, 2]);
    let second = client_from([127, 0, 0, 3]);

    for index in 0..3 {
        let email = format!("nobody{index}@first.test");
        let body: Value = login_from(&app, &first, &email, "wrong")
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(first_error_code(&body), "UNAUTHENTICATED", "{body}");
    }
    let first_again: Value = login_from(&app, &first, "nobody9@first.test", "wrong")
        .await
        .json()
        .await
        .expect("json");
    let other_client: Value = login_from(&app, &second, "nobody@second.test", "wrong")
        .await
        .json()
        .await
        .expect("json");

    assert_eq!(
        first_error_code(&first_again),
        "RATE_LIMITED",
        "{first_again}"
    );
    assert_eq!(
        first_error_code(&other_client),
        "UNAUTHENTICATED",
        "another IPv4 client shares the first one's bucket: {other_client}"
    );
}

#[tokio::test]
async fn people_behind_one_address_log_in_more_than_five_times() {
    let app = spawn_app_with(|settings| settings.rate_limits.login_attempts = 5).await;
    let tenant = app.sign_up("office", "GENERIC").await;

    for _ in 0..12 {
        app.login(&tenant.admin_email, None).await;
    }
}

#[tokio::test]
async fn failures_count_per_account_and_not_against_others_behind_the_address() {
    let app = spawn_app_with(|settings| {
        settings.rate_limits.login_attempts = 5;
        settings.rate_limits.login_failures_per_address = 50;
    })
    .await;
    let victim = app.sign_up("guessed", "GENERIC").await;
    let colleague = app.sign_up("colleague", "GENERIC").await;

    for _ in 0..5 {
        let body = app
            .graphql(
                LOGIN,
                json!({ "input": { "email": victim.admin_email, "password": "a guess" } }),
            )
            .await;
        assert_eq!(first_error_code(&body), "UNAUTHENTICATED", "{body}");
    }
    let victim_right = app
        .graphql(
            LOGIN,
            json!({ "input": { "email": victim.admin_email, "password": PASSWORD } }),
        )
        .await;

    assert_eq!(
        first_error_code(&victim_right),
        "RATE_LIMITED",
        "{victim_right}"
    );
    app.login(&colleague.admin_email, None).await;
}

#[tokio::test]
async fn failures_per_address_are_capped_across_accounts() {
    let app = spawn_app_with(|settings| settings.rate_limits.login_failures_per_address = 4).await;
    let tenant = app.sign_up("sprayed", "GENERIC").await;
    for index in 0..4 {
        let body = app
            .graphql(
                LOGIN,
                json!({ "input": { "email": format!("guess{index}@sprayed.test"), "password": "p" } }),
            )
            .await;
        assert_eq!(first_error_code(&body), "UNAUTHENTICATED", "{body}");
    }

    let right = app
        .graphql(
            LOGIN,
            json!({ "input": { "email": tenant.admin_email, "password": PASSWORD } }),
        )
        .await;

    assert_eq!(first_error_code(&right), "RATE_LIMITED", "{right}");
}

#[tokio::test]
async fn successes_per_address_have_a_cap_of_their_own() {
    let app = spawn_app_with(|settings| settings.rate_limits.login_successes_per_address = 3).await;
    let tenant = app.sign_up("popular", "GENERIC").await;
    for _ in 0..3 {
        app.login(&tenant.admin_email, None).await;
    }

    let fourth = app
        .graphql(
            LOGIN,
            json!({ "input": { "email": tenant.admin_email, "password": PASSWORD } }),
        )
        .await;

    assert_eq!(first_error_code(&fourth), "RATE_LIMITED", "{fourth}");
}

#[tokio::test]
async fn a_request_refused_as_a_whole_for_rate_gets_429_with_retry_after() {
    let app = spawn_app_with(|settings| settings.rate_limits.login_attempts = 1).await;
    let tenant = app.sign_up("toofast", "GENERIC").await;
    let attempt = json!({ "query": LOGIN, "variables": {
        "input": { "email": tenant.admin_email, "password": "wrong" } } });
    let first = app.post_graphql(&attempt).await;
    assert_eq!(first.status(), 200, "a wrong password is no rate refusal");

    let refused = app.post_graphql(&attempt).await;
    let mixed = app
        .post_graphql(&json!([attempt, { "query": "{ apiVersion }" }]))
        .await;

    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=15 * 60).contains(&retry_after), "{retry_after}");
    let body: Value = refused.json().await.expect("the GraphQL body stays");
    assert_eq!(first_error_code(&body), "RATE_LIMITED", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["retryAfter"], retry_after);
    assert_eq!(mixed.status(), 200, "part of the batch ran");
}

async fn refresh(app: &TestApp, token: &str) -> Value {
    app.graphql(REFRESH, json!({ "token": token })).await
}

#[tokio::test]
async fn a_refresh_token_presented_again_within_the_grace_window_gets_the_same_successor() {
    let app = spawn_app().await;
    let tenant = app.sign_up("twotabs", "GENERIC").await;

    let first_tab = refresh(&app, &tenant.refresh_token).await;
    let second_tab = refresh(&app, &tenant.refresh_token).await;

    let successor = text(&first_tab["data"]["refreshToken"]["refreshToken"]);
    assert_eq!(
        text(&second_tab["data"]["refreshToken"]["refreshToken"]),
        successor,
        "{second_tab}"
    );
    let access = text(&second_tab["data"]["refreshToken"]["accessToken"]);
    let me = app.graphql_as(&access, ME, json!({})).await;
    assert!(me["data"]["me"]["id"].is_string(), "{me}");
    let next = refresh(&app, &successor).await;
    assert!(
        next["data"]["refreshToken"].is_object(),
        "the family must live on: {next}"
    );
}

#[tokio::test]
async fn reuse_after_the_grace_window_still_revokes_the_family() {
    let app = spawn_app_with(|settings| settings.refresh_grace_secs = 1).await;
    let tenant = app.sign_up("latethief", "GENERIC").await;
    let rotated = refresh(&app, &tenant.refresh_token).await;
    let successor = text(&rotated["data"]["refreshToken"]["refreshToken"]);
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let reuse = refresh(&app, &tenant.refresh_token).await;
    let after_reuse = refresh(&app, &successor).await;

    assert_eq!(first_error_code(&reuse), "UNAUTHENTICATED", "{reuse}");
    assert_eq!(
        first_error_code(&after_reuse),
        "UNAUTHENTICATED",
        "{after_reuse}"
    );
}

#[tokio::test]
async fn within_the_window_a_successor_already_rotated_is_not_handed_out_again() {
    let app = spawn_app().await;
    let tenant = app.sign_up("rotatedtwice", "GENERIC").await;
    let rotated = refresh(&app, &tenant.refresh_token).await;
    let successor = text(&rotated["data"]["refreshToken"]["refreshToken"]);
    let rotated_again = refresh(&app, &successor).await;
    let newest = text(&rotated_again["data"]["refreshToken"]["refreshToken"]);

    let stale = refresh(&app, &tenant.refresh_token).await;
    let after = refresh(&app, &newest).await;

    assert_eq!(first_error_code(&stale), "UNAUTHENTICATED", "{stale}");
    assert_eq!(
        first_error_code(&after),
        "UNAUTHENTICATED",
        "a stale token past its successor is reuse: {after}"
    );
}

/// Text every free-text input refuses, with the words the reason contains.
fn hostile_texts() -> Vec<(String, &'static str)> {
    vec![
        ("a\u{0}b".into(), "NUL"),
        ("a\u{1b}[31mb".into(), "U+001B"),
        ("a\u{7f}b".into(), "U+007F"),
        ("evil\u{202E}gpj.exe".into(), "U+202E"),
        ("a\u{2067}b".into(), "U+2067"),
        ("x".repeat(5_000), "at most"),
    ]
}

#[tokio::test]
async fn free_text_refuses_nul_controls_bidi_overrides_and_excess_naming_the_field() {
    let app = spawn_app().await;
    let tenant = app.sign_up("freetext", "GENERIC").await;
    let token = tenant.access_token.as_str();
    let customer = app.create_customer(token, "Ana").await;
    let product = app.create_product(token, "SKU-1", 1000, None).await;
    let order = app.create_order(token, &customer, &[(&product, 1)]).await;
    let order = text(&order["data"]["createOrder"]["id"]);
    let workflow_state = |label: &str| {
        json!([
            { "key": "OPEN", "label": label, "initial": true },
            { "key": "DONE", "label": "Done", "terminal": true }
        ])
    };
    let item = json!([{ "productId": product, "quantity": 1 }]);

    for (hostile, reason) in hostile_texts() {
        let cases: Vec<(&str, String, Value, &str)> = vec![
            ("createCustomer name", "mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { id } }".into(),
                json!({ "input": { "name": hostile } }), "input.name"),
            ("createCustomer address", "mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { id } }".into(),
                json!({ "input": { "name": "Bob", "address": hostile } }), "input.address"),
            ("createCustomer notes", "mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { id } }".into(),
                json!({ "input": { "name": "Bob", "notes": hostile } }), "input.notes"),
            ("updateCustomer address", "mutation($id: ID!, $input: UpdateCustomerInput!) { updateCustomer(id: $id, input: $input) { id } }".into(),
                json!({ "id": customer, "input": { "address": hostile } }), "input.address"),
            ("updateCustomer notes", "mutation($id: ID!, $input: UpdateCustomerInput!) { updateCustomer(id: $id, input: $input) { id } }".into(),
                json!({ "id": customer, "input": { "notes": hostile } }), "input.notes"),
            ("createOrder notes", "mutation($input: CreateOrderInput!) { createOrder(input: $input) { id } }".into(),
                json!({ "input": { "customerId": customer, "items": item, "notes": hostile } }), "input.notes"),
            ("transitionOrder comment", "mutation($input: TransitionOrderInput!) { transitionOrder(input: $input) { id } }".into(),
                json!({ "input": { "orderId": order, "to": "DONE", "comment": hostile } }), "input.comment"),
            ("createProduct name", "mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }".into(),
                json!({ "input": { "sku": "SKU-2", "name": hostile, "kind": "PRODUCT", "priceMinor": 1 } }), "input.name"),
            ("createWebhookEndpoint description", "mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { endpoint { id } } }".into(),
                json!({ "input": { "url": "http://127.0.0.1:9/hook", "events": ["*"], "description": hostile } }), "input.description"),
            ("createApiKey name", "mutation($name: String!) { createApiKey(name: $name, role: \"STAFF\") { secret } }".into(),
                json!({ "name": hostile }), "name"),
            ("createWorkflow name", "mutation($input: WorkflowInput!) { createWorkflow(input: $input) { id } }".into(),
                json!({ "input": { "name": hostile, "entityType": "ORDER", "states": workflow_state("Open"),
                    "transitions": [{ "from": "OPEN", "to": "DONE", "roles": ["ADMIN"] }] } }), "input.name"),
            ("createWorkflow label", "mutation($input: WorkflowInput!) { createWorkflow(input: $input) { id } }".into(),
                json!({ "input": { "name": "Flow", "entityType": "ORDER", "states": workflow_state(&hostile),
                    "transitions": [{ "from": "OPEN", "to": "DONE", "roles": ["ADMIN"] }] } }), "input.states.0.label"),
        ];
        for (case, query, variables, field) in cases {
            let body = app.graphql_as(token, &query, variables).await;
            assert_eq!(
                first_error_code(&body),
                "VALIDATION",
                "{case} with {reason}: {body}"
            );
            assert_eq!(
                body["errors"][0]["extensions"]["field"], field,
                "{case}: {body}"
            );
            let message = text(&body["errors"][0]["message"]);
            assert!(message.contains(reason), "{case}: {message}");
        }
    }
    let customers = app
        .graphql_as(token, "{ customers(first: 50) { name notes } }", json!({}))
        .await;
    assert_eq!(
        customers["data"]["customers"].as_array().map(Vec::len),
        Some(1),
        "nothing refused was stored: {customers}"
    );
}

#[tokio::test]
async fn names_stay_on_one_line_and_multi_line_text_keeps_its_lines() {
    let app = spawn_app().await;
    let tenant = app.sign_up("multiline", "GENERIC").await;
    let token = tenant.access_token.as_str();
    let create = "mutation($input: CreateCustomerInput!) { createCustomer(input: $input) {
        name address notes } }";

    let two_line_name = app
        .graphql_as(token, create, json!({ "input": { "name": "Ana\nSilva" } }))
        .await;
    let tabbed_name = app
        .graphql_as(token, create, json!({ "input": { "name": "Ana\tSilva" } }))
        .await;
    let multi_line = app
        .graphql_as(
            token,
            create,
            json!({ "input": { "name": "  Ana Silva  ", "address": "Rua A, 1\r\nApto 2",
                "notes": "first line\n\tindented" } }),
        )
        .await;

    for body in [&two_line_name, &tabbed_name] {
        assert_eq!(first_error_code(body), "VALIDATION", "{body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "input.name");
    }
    let created = &multi_line["data"]["createCustomer"];
    assert_eq!(created["name"], "Ana Silva", "{multi_line}");
    assert_eq!(created["address"], "Rua A, 1\nApto 2");
    assert_eq!(created["notes"], "first line\n\tindented");
}
