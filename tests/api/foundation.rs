//! The HTTP surface and GraphQL hardening every later feature stands on.

use serde_json::{Value, json};

use crate::helpers::{first_error_code, spawn_app, spawn_app_with};

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;

    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);

    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(body["database"], true);
    let expects_redis = std::env::var("TEST_REDIS_URL").is_ok_and(|url| !url.is_empty());
    assert_eq!(
        body["redis"],
        if expects_redis {
            json!(true)
        } else {
            Value::Null
        }
    );
}

#[tokio::test]
async fn a_query_is_answered_with_data() {
    let app = spawn_app().await;

    let body = app.graphql("query Version { apiVersion }", json!({})).await;

    assert_eq!(body["data"]["apiVersion"], env!("CARGO_PKG_VERSION"));
    assert!(body.get("errors").is_none(), "{body}");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_security_headers() {
    let app = spawn_app().await;

    for response in [app.get("/healthz").await, app.get("/nope").await] {
        let headers = response.headers();
        assert!(headers.get("x-request-id").is_some());
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert!(headers.get("content-security-policy").is_some());
        assert!(headers.get("strict-transport-security").is_none());
    }
}

#[tokio::test]
async fn a_sane_caller_request_id_is_kept_and_a_hostile_one_replaced() {
    let app = spawn_app().await;
    let send = |id: &'static str| {
        app.client
            .get(format!("{}/healthz", app.address))
            .header("x-request-id", id)
            .send()
    };

    let kept = send("trace-123_abc").await.expect("reachable");
    let replaced = send("<script>alert(1)</script>").await.expect("reachable");

    assert_eq!(kept.headers()["x-request-id"], "trace-123_abc");
    assert_ne!(
        replaced.headers()["x-request-id"],
        "<script>alert(1)</script>"
    );
}

#[tokio::test]
async fn graphiql_is_served_in_development_and_can_be_turned_off() {
    let app = spawn_app().await;
    let page = app.get("/graphql").await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        csp.contains("https://unpkg.com"),
        "GraphiQL needs its CDN: {csp}"
    );
    assert!(page.text().await.expect("html").contains("graphiql"));

    let without = spawn_app_with(|settings| settings.graphiql = Some(false)).await;
    assert_eq!(without.get("/graphql").await.status(), 404);
}

#[tokio::test]
async fn deeply_nested_queries_are_refused_before_any_resolver_runs() {
    let app = spawn_app().await;
    let nested = format!(
        "{{ __type(name: \"Query\") {}name{} }}",
        "{ ofType ".repeat(39),
        " }".repeat(39)
    );

    let body = app.graphql(&nested, json!({})).await;

    assert_eq!(first_error_code(&body), "QUERY_TOO_COMPLEX", "{body}");
    assert!(body["data"].is_null(), "{body}");
}

#[tokio::test]
async fn a_thousand_aliases_are_refused_before_any_resolver_runs() {
    let app = spawn_app().await;
    let aliases: String = (0..1000).map(|i| format!("a{i}: apiVersion ")).collect();

    let body = app.graphql(&format!("{{ {aliases} }}"), json!({})).await;

    assert_eq!(first_error_code(&body), "QUERY_TOO_COMPLEX", "{body}");
    assert!(body["data"].is_null(), "{body}");
}

#[tokio::test]
async fn too_many_root_fields_are_refused() {
    let app = spawn_app_with(|settings| settings.graphql.max_root_fields = 3).await;

    let body = app
        .graphql("{ apiVersion __typename apiVersion __typename }", json!({}))
        .await;

    assert_eq!(first_error_code(&body), "QUERY_TOO_COMPLEX", "{body}");
}

#[tokio::test]
async fn a_two_megabyte_body_gets_413() {
    let app = spawn_app().await;
    let padding = "x".repeat(2 * 1024 * 1024);
    let body = json!({ "query": "{ apiVersion }", "variables": { "padding": padding } });

    let response = app.post_graphql(&body).await;

    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.expect("json");
    assert_eq!(first_error_code(&body), "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn malformed_requests_get_a_coded_graphql_error() {
    let app = spawn_app().await;
    let cases = [
        ("{not json", "application/json", 400, "BAD_REQUEST"),
        ("{\"variables\":{}}", "application/json", 400, "BAD_REQUEST"),
        ("[]", "application/json", 400, "BAD_REQUEST"),
        (
            "{\"query\":\"{ apiVersion }\"}",
            "text/plain",
            415,
            "BAD_REQUEST",
        ),
        (
            "{\"query\":\"{ apiVersion \"}",
            "application/json",
            200,
            "GRAPHQL_PARSE_FAILED",
        ),
        (
            "{\"query\":\"{ noSuchField }\"}",
            "application/json",
            200,
            "GRAPHQL_VALIDATION_FAILED",
        ),
    ];
    for (body, content_type, status, code) in cases {
        let response = app.post_raw(body, content_type).await;
        assert_eq!(response.status(), status, "{body}");
        let json: Value = response.json().await.expect("always JSON");
        assert_eq!(first_error_code(&json), code, "{body}: {json}");
    }
}

#[tokio::test]
async fn a_variable_of_the_wrong_type_gets_a_coded_error() {
    let app = spawn_app().await;

    let body = app
        .graphql(
            "query Named($name: String!) { __type(name: $name) { name } }",
            json!({ "name": 42 }),
        )
        .await;

    let code = first_error_code(&body);
    assert!(
        ["GRAPHQL_VALIDATION_FAILED", "VALIDATION"].contains(&code),
        "{body}"
    );
    assert!(
        body["errors"][0]["extensions"]["requestId"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn batches_are_executed_up_to_the_cap() {
    let app = spawn_app_with(|settings| settings.graphql.max_batch = 2).await;
    let one = json!({ "query": "{ apiVersion }" });

    let within: Value = app
        .post_graphql(&json!([one, one]))
        .await
        .json()
        .await
        .expect("json");
    let over = app.post_graphql(&json!([one, one, one])).await;

    assert_eq!(within.as_array().map(Vec::len), Some(2));
    assert_eq!(over.status(), 400);
    let over: Value = over.json().await.expect("json");
    assert_eq!(first_error_code(&over), "BAD_REQUEST");
}

#[tokio::test]
async fn production_hides_introspection_and_suggestions_and_sends_hsts() {
    let app = spawn_app_with(|settings| {
        settings.environment = api::configuration::Environment::Production;
        settings.database_url = Some(settings.database_url());
    })
    .await;

    let introspection = app
        .graphql("{ __schema { queryType { name } } }", json!({}))
        .await;
    let typo = app.graphql("{ apiVersio }", json!({})).await;
    let response = app.get("/healthz").await;

    assert_eq!(
        first_error_code(&introspection),
        "FORBIDDEN",
        "{introspection}"
    );
    assert!(introspection["data"].is_null(), "{introspection}");
    let message = typo["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(!message.contains("Did you mean"), "{message}");
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_some()
    );
    assert_eq!(app.get("/graphql").await.status(), 404);
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = spawn_app_with(|settings| {
        settings.cors_origins = vec!["https://shop.example".into()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, format!("{}/graphql", app.address))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };

    let allowed = preflight("https://shop.example").await.expect("reachable");
    let refused = preflight("https://evil.example").await.expect("reachable");

    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn metrics_count_requests_and_operations_by_name() {
    let app = spawn_app().await;
    app.graphql("query MetricsProbe { apiVersion }", json!({}))
        .await;

    let text = app.get("/metrics").await.text().await.expect("text");

    assert!(text.contains("http_requests_total"), "{text}");
    assert!(text.contains("operation=\"MetricsProbe\""), "{text}");
    assert!(
        text.contains("graphql_operation_duration_seconds"),
        "{text}"
    );
}

#[tokio::test]
async fn committed_schema_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let committed = std::fs::read_to_string(path).unwrap_or_default();

    let current = api::graphql::sdl();

    assert!(
        committed == current,
        "schema.graphql is out of date: run `cargo run -- print-schema --output schema.graphql`"
    );
}
