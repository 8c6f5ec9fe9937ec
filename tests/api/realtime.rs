//! Real time over real sockets: GraphQL subscriptions (graphql-transport-ws) and Socket.IO,
//! tenant isolation, refusals, catching up with `events`, and two instances sharing events.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{
    ORDER_EVENTS, Received, TestApp, forge, graphql_ws, next_event, next_status_change, receive,
    socketio, socketio_packet, spawn_app, spawn_second_instance, subscribe, text,
};

struct Shop {
    token: String,
    customer: String,
    product: String,
}

async fn shop(app: &TestApp, slug: &str) -> Shop {
    let tenant = app.sign_up(slug, "RESTAURANT").await;
    Shop {
        customer: app.create_customer(&tenant.access_token, "Maria").await,
        product: app
            .create_product(&tenant.access_token, "ITEM", 1000, None)
            .await,
        token: tenant.access_token,
    }
}

async fn order(app: &TestApp, shop: &Shop) -> String {
    let created = app
        .create_order(&shop.token, &shop.customer, &[(&shop.product, 1)])
        .await;
    text(&created["data"]["createOrder"]["id"])
}

#[tokio::test]
async fn a_subscriber_receives_its_company_events_within_a_second_and_never_another_companys() {
    let app = spawn_app().await;
    let a = shop(&app, "sub-a").await;
    let b = shop(&app, "sub-b").await;
    let a_order = order(&app, &a).await;
    let b_order = order(&app, &b).await;
    let mut a_socket = subscribe(&app, &a.token, ORDER_EVENTS, json!({})).await;
    // B names A's order: it must still receive nothing of A.
    let mut b_socket = subscribe(&app, &b.token, ORDER_EVENTS, json!({ "orderId": a_order })).await;

    let started = std::time::Instant::now();
    app.transition(&a.token, &a_order, "CONFIRMED", None).await;
    let received = next_status_change(&mut a_socket, Duration::from_secs(1)).await;
    let latency = started.elapsed();
    app.transition(&b.token, &b_order, "CONFIRMED", None).await;
    let leaked = next_event(&mut b_socket, Duration::from_millis(700)).await;
    let a_sees_b = next_status_change(&mut a_socket, Duration::from_millis(300)).await;

    let event =
        received.expect("A's subscriber got the event within a second")["orderEvents"].clone();
    assert_eq!(event["type"], "order.status_changed");
    assert_eq!(event["aggregateId"], json!(a_order));
    assert_eq!(event["payload"]["to"], "CONFIRMED");
    assert_eq!(event["payload"]["schemaVersion"], 1);
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    assert!(leaked.is_none(), "B received A's event: {leaked:?}");
    assert!(a_sees_b.is_none(), "A received B's event: {a_sees_b:?}");
}

#[tokio::test]
async fn bad_credentials_close_the_socket_with_4401() {
    let app = spawn_app().await;

    let (_, garbage) = graphql_ws(&app, "not-a-token").await;
    let (_, bad_key) = graphql_ws(&app, "pk_not_a_real_key").await;

    assert!(matches!(garbage, Received::Closed(4401)), "{garbage:?}");
    assert!(matches!(bad_key, Received::Closed(4401)), "{bad_key:?}");
}

#[tokio::test]
async fn queries_and_mutations_are_refused_over_the_socket() {
    let app = spawn_app().await;
    let tenant = app.sign_up("ws-only", "GENERIC").await;
    let (mut socket, _) = graphql_ws(&app, &tenant.access_token).await;
    let query = json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ me { id } }" } });

    socket
        .send(Message::text(query.to_string()))
        .await
        .expect("sends");
    let answer = receive(&mut socket, Duration::from_secs(2)).await;

    match answer {
        Received::Json(message) => {
            assert_eq!(
                message["payload"]["data"],
                Value::Null,
                "nothing ran: {message}"
            );
            assert_eq!(
                message["payload"]["errors"][0]["extensions"]["code"], "BAD_REQUEST",
                "{message}"
            );
        }
        other => panic!("expected an error message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_removed_member_is_disconnected() {
    let app = spawn_app().await;
    let tenant = app.sign_up("leaving", "RESTAURANT").await;
    let member = app
        .invite(&tenant.access_token, "staff@leaving.test", &["STAFF"])
        .await;
    let staff = app.login("staff@leaving.test", None).await;
    let mut socket = subscribe(&app, &staff, ORDER_EVENTS, json!({})).await;

    app.graphql_as(
        &tenant.access_token,
        "mutation R($id: ID!) { removeMember(userId: $id) }",
        json!({ "id": member }),
    )
    .await;
    let outcome = receive(&mut socket, Duration::from_secs(8)).await;

    assert!(matches!(outcome, Received::Closed(4401)), "{outcome:?}");
}

#[tokio::test]
async fn the_events_query_returns_everything_in_order_across_a_restart() {
    let app = spawn_app().await;
    let shop = shop(&app, "history").await;
    let order_id = order(&app, &shop).await;
    app.transition(&shop.token, &order_id, "CONFIRMED", None)
        .await;
    let company: String = text(
        &app.graphql_as(&shop.token, "{ company { id } }", json!({}))
            .await["data"]["company"]["id"],
    );
    let app = app.restart().await;
    app.transition(&shop.token, &order_id, "PREPARING", None)
        .await;
    // An event committed just before a crash, never relayed: the next start must publish it.
    use sea_orm::{ConnectionTrait, Statement};
    let backend = app.db.get_database_backend();
    let company_uuid = uuid::Uuid::parse_str(&company).expect("uuid");
    let order_uuid = uuid::Uuid::parse_str(&order_id).expect("uuid");
    app.db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            match backend {
                sea_orm::DatabaseBackend::Postgres => "INSERT INTO outbox (event_id, company_id, event_type, aggregate_type, aggregate_id, sequence, payload, occurred_at) VALUES ($1, $2, 'order.updated', 'order', $3, 99, '{\"schemaVersion\":1}', now())",
                _ => "INSERT INTO outbox (event_id, company_id, event_type, aggregate_type, aggregate_id, sequence, payload, occurred_at) VALUES (?, ?, 'order.updated', 'order', ?, 99, '{\"schemaVersion\":1}', datetime('now'))",
            },
            [uuid::Uuid::now_v7().into(), company_uuid.into(), order_uuid.into()],
        ))
        .await
        .expect("inserted");
    let app = app.restart().await;

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let types = loop {
        let body = app
            .graphql_as(
                &shop.token,
                "{ events(first: 100) { edges { cursor node { type sequence } } } }",
                json!({}),
            )
            .await;
        let types: Vec<(String, i64)> = body["data"]["events"]["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|edge| {
                (
                    text(&edge["node"]["type"]),
                    edge["node"]["sequence"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        if types.len() == 4 || std::time::Instant::now() > deadline {
            break types;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let after_first = app
        .graphql_as(
            &shop.token,
            "{ events(first: 1) { pageInfo { endCursor } } }",
            json!({}),
        )
        .await;
    let cursor = after_first["data"]["events"]["pageInfo"]["endCursor"].clone();
    let rest = app
        .graphql_as(
            &shop.token,
            "query R($after: String) { events(after: $after, types: [\"order.status_changed\"]) { edges { node { sequence } } } }",
            json!({ "after": cursor }),
        )
        .await;

    assert_eq!(
        types,
        [
            ("order.created".to_string(), 1),
            ("order.status_changed".to_string(), 2),
            ("order.status_changed".to_string(), 3),
            ("order.updated".to_string(), 99),
        ]
    );
    assert_eq!(
        rest["data"]["events"]["edges"],
        json!([{ "node": { "sequence": 2 } }, { "node": { "sequence": 3 } }])
    );
}

#[tokio::test]
async fn socketio_clients_get_their_company_order_updates_only() {
    let app = spawn_app().await;
    let a = shop(&app, "sio-a").await;
    let b = shop(&app, "sio-b").await;
    let a_order = order(&app, &a).await;
    let (mut a_socket, a_connected) = socketio(&app, &a.token).await;
    let (mut b_socket, b_connected) = socketio(&app, &b.token).await;
    let (_, refused) = socketio(&app, "bad-token").await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    app.transition(&a.token, &a_order, "CONFIRMED", None).await;
    // The order's creation may still be on its way; wait for the confirmation.
    let a_update = loop {
        let packet = socketio_packet(&mut a_socket, Duration::from_secs(2)).await;
        if packet.is_null() || packet[1][1]["status"] == "CONFIRMED" {
            break packet;
        }
    };
    let b_update = socketio_packet(&mut b_socket, Duration::from_millis(700)).await;

    assert_eq!(a_connected[0], "connect", "{a_connected}");
    assert_eq!(b_connected[0], "connect", "{b_connected}");
    assert_eq!(refused[0], "connect_error", "{refused}");
    assert_eq!(a_update[0], "event", "{a_update}");
    assert_eq!(a_update[1][0], "order:update");
    let update = &a_update[1][1];
    assert_eq!(update["orderId"], json!(a_order));
    assert_eq!(
        (update["status"].clone(), update["previousStatus"].clone()),
        (json!("CONFIRMED"), json!("PENDING"))
    );
    assert_eq!(update["number"], 1);
    assert!(b_update.is_null(), "B got A's update: {b_update}");
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL"]
async fn two_instances_deliver_each_others_events() {
    crate::helpers::require_shared_infrastructure();
    let first = spawn_app().await;
    let second = spawn_second_instance(&first).await;
    let shop = shop(&first, "two-instance-events").await;
    let order_id = order(&first, &shop).await;
    let mut subscription = subscribe(
        &first,
        &shop.token,
        ORDER_EVENTS,
        json!({ "orderId": order_id }),
    )
    .await;
    let (mut socket, connected) = socketio(&first, &shop.token).await;
    assert_eq!(connected[0], "connect");
    tokio::time::sleep(Duration::from_millis(100)).await;

    second
        .transition(&shop.token, &order_id, "CONFIRMED", None)
        .await;
    let over_graphql = next_status_change(&mut subscription, Duration::from_secs(2)).await;
    let over_socketio = loop {
        let packet = socketio_packet(&mut socket, Duration::from_secs(2)).await;
        if packet.is_null() || packet[1][1]["status"] == "CONFIRMED" {
            break packet;
        }
    };

    assert_eq!(
        over_graphql.expect("delivered")["orderEvents"]["payload"]["to"],
        "CONFIRMED"
    );
    assert_eq!(over_socketio[1][0], "order:update", "{over_socketio}");
    assert!(
        next_event(&mut subscription, Duration::from_millis(500))
            .await
            .is_none(),
        "delivered exactly once"
    );
}

#[tokio::test]
async fn a_subscription_ends_when_its_token_expires() {
    let app = spawn_app().await;
    let tenant = app.sign_up("expiring", "GENERIC").await;
    let secret = app.settings.jwt_secret.clone().expect("tests set a secret");
    let now = chrono::Utc::now().timestamp();
    let short_lived = forge(
        secret.expose(),
        json!({ "alg": "HS256", "typ": "JWT" }),
        json!({ "sub": tenant.admin_id, "cid": tenant.company_id, "iss": "platform",
            "aud": "platform-api", "iat": now, "exp": now + 2, "jti": uuid::Uuid::new_v4(), "typ": "access" }),
    );
    let mut socket = subscribe(&app, &short_lived, ORDER_EVENTS, json!({})).await;

    // Expiry (2 s) plus the JWT leeway (5 s) plus one re-check period (5 s).
    let outcome = receive(&mut socket, Duration::from_secs(14)).await;

    assert!(matches!(outcome, Received::Closed(4401)), "{outcome:?}");
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL"]
async fn an_event_left_unrelayed_by_a_killed_instance_is_delivered_after_restart() {
    crate::helpers::require_shared_infrastructure();
    use sea_orm::{ConnectionTrait, Statement};
    let app = spawn_app().await;
    let shop = shop(&app, "killed-instance").await;
    let order_id = order(&app, &shop).await;
    let database_url = app.settings.database_url.clone().expect("PostgreSQL");
    // Holding the relays' lock keeps every instance from publishing until the test lets go.
    let mut options = sea_orm::ConnectOptions::new(database_url.clone());
    options.max_connections(1).sqlx_logging(false);
    let holder = sea_orm::Database::connect(options).await.expect("connects");
    holder
        .execute_unprepared("SELECT pg_advisory_lock(7245002)")
        .await
        .expect("locked");
    let data = tempfile::tempdir().expect("temp dir");
    let mut command = crate::lifecycle::platform();
    command
        .env("PLATFORM_DATA_DIR", data.path())
        .env("DATABASE_URL", &database_url)
        .env("REDIS_URL", app.settings.redis_url.clone().expect("Redis"))
        .env("PLATFORM_REDIS_NAMESPACE", &app.settings.redis_namespace)
        .env(
            "PLATFORM_JWT_SECRET",
            app.settings.jwt_secret.clone().expect("secret").expose(),
        )
        .env("PLATFORM_API_RATE_LIMIT", "100000");
    let (mut instance, port) = crate::lifecycle::serve_with(command);

    let moved: Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/graphql"))
        .bearer_auth(&shop.token)
        .json(&json!({ "query": "mutation T($id: ID!) { transitionOrder(input: { orderId: $id, to: \"CONFIRMED\" }) { status } }",
            "variables": { "id": order_id } }))
        .send()
        .await
        .expect("reachable")
        .json()
        .await
        .expect("json");
    assert_eq!(
        moved["data"]["transitionOrder"]["status"], "CONFIRMED",
        "{moved}"
    );
    instance.kill().expect("SIGKILL");
    instance.wait().expect("reaped");
    let unrelayed = app
        .db
        .query_one_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT count(*) AS n FROM outbox WHERE event_type = 'order.status_changed' AND relayed_at IS NULL",
        ))
        .await
        .expect("query")
        .and_then(|row| row.try_get::<i64>("", "n").ok());
    assert_eq!(
        unrelayed,
        Some(1),
        "the killed instance left its event unrelayed"
    );

    let restarted = spawn_second_instance(&app).await;
    let mut subscription = subscribe(
        &restarted,
        &shop.token,
        ORDER_EVENTS,
        json!({ "orderId": order_id }),
    )
    .await;
    holder
        .execute_unprepared("SELECT pg_advisory_unlock(7245002)")
        .await
        .expect("unlocked");
    let delivered = next_status_change(&mut subscription, Duration::from_secs(3)).await;

    assert_eq!(
        delivered.expect("delivered after the restart")["orderEvents"]["payload"]["to"],
        "CONFIRMED"
    );
}
