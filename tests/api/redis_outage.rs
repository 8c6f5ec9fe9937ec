//! Redis failing under running servers: a killed subscription, Redis stopped and started again.
//! The database is the truth, so events, webhook deliveries and access changes must come
//! through all of it; each test runs its own `redis-server` so it can stop it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    helpers::{
        self as sockets, LOGIN, ORDER_EVENTS, PASSWORD, RedisServer, Socket, TestApp,
        first_error_code, shared_infrastructure, spawn_app_with, spawn_second_instance,
    },
    webhooks::{self, Receiver, Shop},
};

/// A server on PostgreSQL (from `TEST_DATABASE_URL`) and on `redis`.
async fn app_on(redis: &RedisServer) -> TestApp {
    assert!(
        shared_infrastructure(),
        "needs TEST_DATABASE_URL and TEST_REDIS_URL"
    );
    let url = redis.url();
    spawn_app_with(move |settings| settings.redis_url = Some(url)).await
}

async fn readiness(app: &TestApp) -> (u16, Value) {
    let response = app.get("/readyz").await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// Polls `/readyz` until it answers `status`; the last body.
async fn wait_for_readiness(app: &TestApp, status: u16, within: Duration) -> Value {
    let deadline = std::time::Instant::now() + within;
    loop {
        let (answered, body) = readiness(app).await;
        if answered == status {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz still answers {answered} after {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next `order:update` a Socket.IO client got with `status`, skipping others (the
/// creation may still be on its way).
async fn socketio_update(socket: &mut Socket, status: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let packet = sockets::socketio_packet(socket, left).await;
        if packet.is_null() || packet[1][1]["status"] == status {
            return packet;
        }
    }
}

/// Every status change a subscriber receives until `quiet` passes without one.
async fn status_changes(socket: &mut Socket, quiet: Duration) -> Vec<String> {
    let mut statuses = Vec::new();
    while let Some(event) = sockets::next_status_change(socket, quiet).await {
        statuses.push(
            event["orderEvents"]["payload"]["to"]
                .as_str()
                .unwrap_or("?")
                .to_string(),
        );
    }
    statuses
}

async fn transition(app: &TestApp, shop: &Shop, order: &str, to: &str) {
    let moved = app
        .transition(&shop.tenant.access_token, order, to, None)
        .await;
    assert_eq!(moved["data"]["transitionOrder"]["status"], to, "{moved}");
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL"]
async fn a_killed_pubsub_connection_is_resubscribed_and_the_next_transition_arrives() {
    let redis = RedisServer::start().await;
    let app = app_on(&redis).await;
    let shop = webhooks::shop(&app, "killed-pubsub").await;
    let order = webhooks::order(&app, &shop).await;
    let mut subscription = sockets::subscribe(
        &app,
        &shop.tenant.access_token,
        ORDER_EVENTS,
        json!({ "orderId": order }),
    )
    .await;
    let (mut socket, connected) = sockets::socketio(&app, &shop.tenant.access_token).await;
    assert_eq!(connected[0], "connect", "{connected}");

    let killed = redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(
        killed.trim(),
        "2",
        "the events and access-change subscriptions"
    );
    wait_for_readiness(&app, 200, Duration::from_secs(5)).await;
    let started = std::time::Instant::now();
    transition(&app, &shop, &order, "CONFIRMED").await;
    let over_graphql = sockets::next_status_change(&mut subscription, Duration::from_secs(5)).await;
    let over_socketio = socketio_update(&mut socket, "CONFIRMED", Duration::from_secs(5)).await;
    let latency = started.elapsed();

    assert_eq!(
        over_graphql.expect("the subscriber got the transition")["orderEvents"]["payload"]["to"],
        "CONFIRMED"
    );
    assert_eq!(over_socketio[1][0], "order:update", "{over_socketio}");
    assert!(latency < Duration::from_secs(5), "{latency:?}");
    assert_eq!(
        status_changes(&mut subscription, Duration::from_millis(1500)).await,
        Vec::<String>::new(),
        "delivered once"
    );
    assert_eq!(
        redis
            .cli(&[
                "PUBSUB",
                "NUMSUB",
                &format!("{}:events", app.settings.redis_namespace)
            ])
            .lines()
            .nth(1)
            .map(str::trim),
        Some("1"),
        "subscribed again"
    );
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL"]
async fn with_redis_stopped_webhooks_are_delivered_and_the_api_answers_as_documented() {
    let mut redis = RedisServer::start().await;
    let app = app_on(&redis).await;
    let shop = webhooks::shop(&app, "redis-stopped").await;
    let receiver = Receiver::start().await;
    webhooks::register(&app, &shop.tenant.access_token, &receiver.url, &["order.*"]).await;
    wait_for_readiness(&app, 200, Duration::from_secs(5)).await;

    redis.stop();
    let order = webhooks::order(&app, &shop).await;
    let delivered = receiver.wait_for(1, Duration::from_secs(10)).await;
    let moved = app
        .transition(&shop.tenant.access_token, &order, "CONFIRMED", None)
        .await;
    let login = app
        .graphql(
            LOGIN,
            json!({ "input": { "email": shop.tenant.admin_email, "password": PASSWORD } }),
        )
        .await;
    let not_ready = wait_for_readiness(&app, 503, Duration::from_secs(5)).await;
    let orders = app
        .graphql_as(
            &shop.tenant.access_token,
            "{ orders(first: 5) { totalCount } }",
            json!({}),
        )
        .await;

    assert_eq!(
        delivered.len(),
        1,
        "the order's webhook was delivered: {delivered:?}"
    );
    let body: Value = serde_json::from_str(&delivered[0].body).expect("JSON");
    assert_eq!(body["type"], "order.created");
    assert_eq!(body["data"]["orderId"], order.as_str());
    assert_eq!(
        moved["data"]["transitionOrder"]["status"], "CONFIRMED",
        "{moved}"
    );
    assert_eq!(orders["data"]["orders"]["totalCount"], 1, "{orders}");
    assert_eq!(first_error_code(&login), "RATE_LIMITED", "{login}");
    assert_eq!(
        login["errors"][0]["extensions"]["retryAfter"], 10,
        "{login}"
    );
    assert_eq!(not_ready["redis"], false, "{not_ready}");
    assert_eq!(not_ready["subscriptions"]["events"], false, "{not_ready}");
    assert_eq!(not_ready["database"], true, "{not_ready}");
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL"]
async fn subscribers_connected_through_a_redis_outage_receive_every_event_once_in_order() {
    let mut redis = RedisServer::start().await;
    let first = app_on(&redis).await;
    let second = spawn_second_instance(&first).await;
    let shop = webhooks::shop(&first, "through-the-outage").await;
    let order = webhooks::order(&first, &shop).await;
    let mut subscription = sockets::subscribe(
        &first,
        &shop.tenant.access_token,
        ORDER_EVENTS,
        json!({ "orderId": order }),
    )
    .await;
    let (mut socket, connected) = sockets::socketio(&first, &shop.tenant.access_token).await;
    assert_eq!(connected[0], "connect", "{connected}");

    redis.stop();
    wait_for_readiness(&first, 503, Duration::from_secs(5)).await;
    // Moved on the other instance: nothing reaches the subscriber's instance through Redis.
    for status in ["CONFIRMED", "PREPARING", "READY"] {
        transition(&second, &shop, &order, status).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.restart().await;
    let ready = wait_for_readiness(&first, 200, Duration::from_secs(15)).await;
    wait_for_readiness(&second, 200, Duration::from_secs(15)).await;
    transition(&second, &shop, &order, "DELIVERED").await;
    let over_graphql = status_changes(&mut subscription, Duration::from_secs(3)).await;
    let mut over_socketio = Vec::new();
    for status in ["CONFIRMED", "PREPARING", "READY", "DELIVERED"] {
        let update = socketio_update(&mut socket, status, Duration::from_secs(3)).await;
        over_socketio.push(update[1][1]["status"].clone());
    }
    let socketio_extra = sockets::socketio_packet(&mut socket, Duration::from_millis(500)).await;

    assert_eq!(
        ready["subscriptions"],
        json!({ "events": true, "accessChanges": true })
    );
    assert_eq!(
        over_graphql,
        ["CONFIRMED", "PREPARING", "READY", "DELIVERED"],
        "every event once, in order"
    );
    assert_eq!(
        over_socketio,
        [
            json!("CONFIRMED"),
            json!("PREPARING"),
            json!("READY"),
            json!("DELIVERED")
        ]
    );
    assert!(socketio_extra.is_null(), "delivered once: {socketio_extra}");
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL"]
async fn a_revoke_reaches_another_instance_after_its_notice_subscription_was_killed() {
    let redis = RedisServer::start().await;
    let first = app_on(&redis).await;
    let second = spawn_second_instance(&first).await;
    let tenant = first.sign_up("notice-killed", "RESTAURANT").await;
    let lead_id = first
        .invite(
            &tenant.access_token,
            "lead@notice.test",
            &["STAFF", "ADMIN"],
        )
        .await;
    let lead = second.login("lead@notice.test", None).await;
    let create_role = "mutation { createRole(name: \"X_ROLE\", permissions: []) { name } }";
    let allowed = second.graphql_as(&lead, create_role, json!({})).await;
    assert_eq!(allowed["data"]["createRole"]["name"], "X_ROLE", "{allowed}");

    let killed = redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(killed.trim(), "4", "two subscriptions per instance");
    wait_for_readiness(&second, 200, Duration::from_secs(5)).await;
    let revoked = first
        .graphql_as(
            &tenant.access_token,
            "mutation R($id: ID!) { revokeRole(userId: $id, role: \"ADMIN\") { roles } }",
            json!({ "id": lead_id }),
        )
        .await;
    assert_eq!(
        revoked["data"]["revokeRole"]["roles"],
        json!(["STAFF"]),
        "{revoked}"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let attempt = second.graphql_as(&lead, create_role, json!({})).await;
        if attempt["errors"][0]["extensions"]["code"] == "FORBIDDEN" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still allowed on the second instance after 3 s: {attempt}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
