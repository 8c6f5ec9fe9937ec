//! The public JSON of every domain event, pinned: the `events` query's payload, the body an
//! endpoint subscribed to `*` receives, and what Socket.IO clients get. Written against the
//! output of the string-typed producers, so typing the events cannot move a field unnoticed.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

use crate::{
    helpers::{TestApp, next_event, socketio, socketio_packet, spawn_app_with, subscribe, text},
    webhooks::{Receiver, Reply, order, register, shop},
};

const PAYMENT: &str =
    "mutation P($input: CreatePaymentInput!) { createPayment(input: $input) { id status } }";

async fn payment(app: &TestApp, token: &str, order: &str, method: &str, amount: i64) -> String {
    let body = app
        .graphql_as(
            token,
            PAYMENT,
            json!({ "input": { "orderId": order, "method": method, "amountMinor": amount,
                "idempotencyKey": format!("{method}-{order}") } }),
        )
        .await;
    assert!(body["data"]["createPayment"]["id"].is_string(), "{body}");
    text(&body["data"]["createPayment"]["id"])
}

async fn mutate(app: &TestApp, token: &str, query: &str, variables: Value) {
    let body = app.graphql_as(token, query, variables).await;
    assert!(body["errors"].is_null(), "{query}: {body}");
}

/// The company's published events (type and payload), once `count` of them are there.
async fn published(app: &TestApp, token: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = app
            .graphql_as(
                token,
                "{ events(first: 100) { edges { node { type aggregateId sequence payload } } } }",
                json!({}),
            )
            .await;
        let nodes: Vec<Value> = body["data"]["events"]["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("events: {body}"))
            .iter()
            .map(|edge| edge["node"].clone())
            .collect();
        if nodes.len() >= count {
            return nodes;
        }
        assert!(Instant::now() < deadline, "only {nodes:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first of `items` whose `key` is `event_type`.
fn first_of<'a>(items: &'a [Value], key: &str, event_type: &str) -> &'a Value {
    items
        .iter()
        .find(|item| item[key] == event_type)
        .unwrap_or_else(|| panic!("no {event_type} in {items:?}"))
}

/// Checks `value[key]` is an RFC 3339 instant in UTC and replaces it with `"<instant>"`, so
/// the rest of the object can be compared whole.
fn instant(value: &mut Value, key: &str) {
    let at = value[key].as_str().unwrap_or_default().to_string();
    assert!(
        chrono::DateTime::parse_from_rfc3339(&at).is_ok() && at.ends_with('Z'),
        "{key}: {value}"
    );
    value[key] = json!("<instant>");
}

#[tokio::test]
async fn every_event_type_keeps_its_public_json() {
    let stripe = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(402).set_body_json(json!({ "error": {
            "type": "card_error", "code": "card_declined", "message": "Your card was declined." } })))
        .mount(&stripe)
        .await;
    let app = spawn_app_with(|settings| {
        settings.stripe_api_base = stripe.uri();
        settings.webhooks.retry_schedule = [0, 1, 1, 1].map(Duration::from_secs).to_vec();
        settings.webhooks.disable_after_secs = 1;
    })
    .await;
    let shop = shop(&app, "pinned").await;
    let token = shop.tenant.access_token.clone();
    let admin = shop.tenant.admin_id.clone();
    mutate(
        &app,
        &token,
        "mutation S($input: UpdatePaymentSettingsInput!) { updatePaymentSettings(input: $input) { pixKey } }",
        json!({ "input": { "stripeSecretKey": "sk_test_platform", "pixKey": "caixa@pinned.test",
            "pixMerchantName": "Pinned", "pixMerchantCity": "Natal" } }),
    )
    .await;
    let everything = Receiver::start().await;
    register(&app, &token, &everything.url, &["*"]).await;
    let failing = Receiver::start().await;
    failing.always(Some(Reply::Status(502)));
    let (failing_endpoint, _) = register(&app, &token, &failing.url, &["order.created"]).await;
    let (mut socket, connected) = socketio(&app, &token).await;
    assert_eq!(connected[0], "connect", "{connected}");
    let mut notifications = subscribe(
        &app,
        &token,
        "subscription { notifications { notificationId userId kind message details } }",
        json!({}),
    )
    .await;
    app.invite(&token, "member@pinned.test", &["STAFF"]).await;
    let member = app.login("member@pinned.test", Some("pinned")).await;
    let mut not_for_the_member = subscribe(
        &app,
        &member,
        "subscription { notifications { notificationId userId kind message details } }",
        json!({}),
    )
    .await;
    let mut subscribed = subscribe(
        &app,
        &token,
        "subscription { events { type aggregateId sequence payload } }",
        json!({}),
    )
    .await;

    let moved = order(&app, &shop).await;
    mutate(
        &app,
        &token,
        "mutation T($input: TransitionOrderInput!) { transitionOrder(input: $input) { status } }",
        json!({ "input": { "orderId": moved, "to": "CONFIRMED" } }),
    )
    .await;
    let paid_order = order(&app, &shop).await;
    let paid = payment(&app, &token, &paid_order, "CASH", 2500).await;
    mutate(
        &app,
        &token,
        "mutation M($id: ID!) { markPaymentPaid(id: $id) { status } }",
        json!({ "id": paid }),
    )
    .await;
    let refunded = app
        .graphql_as(
            &token,
            "mutation R($input: RefundPaymentInput!) { refundPayment(input: $input) { id } }",
            json!({ "input": { "paymentId": paid, "amountMinor": 1000, "reason": "cold",
                "idempotencyKey": "pinned-refund" } }),
        )
        .await;
    let refund = text(&refunded["data"]["refundPayment"]["id"]);
    let cancelled_order = order(&app, &shop).await;
    let cancelled = payment(&app, &token, &cancelled_order, "CASH", 2500).await;
    mutate(
        &app,
        &token,
        "mutation C($id: ID!) { cancelPayment(id: $id) { status } }",
        json!({ "id": cancelled }),
    )
    .await;
    let declined_order = order(&app, &shop).await;
    let declined = payment(&app, &token, &declined_order, "CARD", 2500).await;
    let expired_order = order(&app, &shop).await;
    let expired = payment(&app, &token, &expired_order, "PIX", 2500).await;
    let swept = api::services::payments::expire_overdue(
        &app.db,
        chrono::Utc::now() + chrono::Duration::days(4),
    )
    .await
    .expect("sweep");
    assert_eq!(swept, 1);

    // 5 order.created, 1 order.status_changed, 9 payment events, the endpoint disabled and its
    // notification, which is no webhook event.
    let events = published(&app, &token, 17).await;
    let bodies: Vec<Value> = everything
        .wait_for(16, Duration::from_secs(20))
        .await
        .iter()
        .map(|received| serde_json::from_str(&received.body).expect("a JSON body"))
        .collect();
    let mut streamed = Vec::new();
    while streamed.len() < events.len() {
        let next = next_event(&mut subscribed, Duration::from_secs(5)).await;
        streamed.push(next.unwrap_or_else(|| panic!("only {streamed:?}"))["events"].clone());
    }
    let notified = next_event(&mut notifications, Duration::from_secs(5)).await;
    let leaked = next_event(&mut not_for_the_member, Duration::from_millis(300)).await;
    let mut packets = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while packets.len() < 7 && Instant::now() < deadline {
        let packet = socketio_packet(&mut socket, deadline - Instant::now()).await;
        if packet[0] == "event" {
            packets.push(packet[1].clone());
        }
    }

    let payment_of = |id: &str, order: &str, method: &str, status: &str, refunded: i64| {
        json!({ "paymentId": id, "orderId": order, "method": method, "status": status,
            "amountMinor": 2500, "refundedMinor": refunded, "currency": "BRL", "schemaVersion": 1 })
    };
    let with = |mut base: Value, extra: Value| {
        if let (Some(fields), Value::Object(more)) = (base.as_object_mut(), extra) {
            fields.extend(more);
        }
        base
    };
    let mut endpoint_disabled = first_of(&events, "type", "webhook.endpoint_disabled").clone();
    let failing_since = text(&endpoint_disabled["payload"]["failingSince"]);
    instant(&mut endpoint_disabled["payload"], "failingSince");
    let reason = format!(
        "every attempt failed since {}",
        chrono::DateTime::parse_from_rfc3339(&failing_since)
            .expect("an instant")
            .to_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let disabled_details = |failing_since: &str| {
        json!({ "endpointId": failing_endpoint, "url": failing.url, "failingSince": failing_since,
            "reason": reason })
    };
    let expected = [
        (
            "order.created",
            moved.clone(),
            json!({ "orderId": moved, "number": 1, "status": "PENDING", "version": 1,
                "customerId": shop.customer, "totalMinor": 2500, "currency": "BRL",
                "schemaVersion": 1 }),
        ),
        (
            "order.status_changed",
            moved.clone(),
            json!({ "orderId": moved, "number": 1, "from": "PENDING", "to": "CONFIRMED",
                "version": 2, "actor": format!("u:{admin}"), "schemaVersion": 1 }),
        ),
        (
            "payment.created",
            paid.clone(),
            payment_of(&paid, &paid_order, "CASH", "PENDING", 0),
        ),
        (
            "payment.paid",
            paid.clone(),
            payment_of(&paid, &paid_order, "CASH", "PAID", 0),
        ),
        (
            "payment.refunded",
            paid.clone(),
            with(
                payment_of(&paid, &paid_order, "CASH", "PARTIALLY_REFUNDED", 1000),
                json!({ "refundId": refund, "refundAmountMinor": 1000 }),
            ),
        ),
        (
            "payment.cancelled",
            cancelled.clone(),
            payment_of(&cancelled, &cancelled_order, "CASH", "CANCELLED", 0),
        ),
        (
            "payment.failed",
            declined.clone(),
            with(
                payment_of(&declined, &declined_order, "CARD", "FAILED", 0),
                json!({ "reason": "Your card was declined." }),
            ),
        ),
        (
            "payment.expired",
            expired.clone(),
            payment_of(&expired, &expired_order, "PIX", "EXPIRED", 0),
        ),
        (
            "webhook.endpoint_disabled",
            failing_endpoint.clone(),
            with(disabled_details("<instant>"), json!({ "schemaVersion": 1 })),
        ),
        (
            "notification.created",
            admin.clone(),
            json!({ "userId": admin, "kind": "webhook.endpoint_disabled",
                "message": format!("Webhook endpoint {} was disabled: {reason}", failing.url),
                "details": disabled_details(&failing_since), "schemaVersion": 1 }),
        ),
    ];
    for (event_type, aggregate, payload) in &expected {
        let mut listed = if *event_type == "webhook.endpoint_disabled" {
            endpoint_disabled.clone()
        } else {
            first_of(&events, "type", event_type).clone()
        };
        assert_eq!(listed["aggregateId"], **aggregate, "{event_type}: {listed}");
        assert!(
            listed["sequence"].as_i64().is_some_and(|n| n >= 1),
            "{listed}"
        );
        listed.as_object_mut().map(|node| node.remove("sequence"));
        assert_eq!(
            listed,
            json!({ "type": event_type, "aggregateId": aggregate, "payload": payload }),
            "the events query's {event_type}"
        );
        if *event_type == "notification.created" {
            assert!(
                !bodies.iter().any(|body| body["type"] == *event_type),
                "notifications are not webhook events"
            );
            continue;
        }
        let mut body = first_of(&bodies, "type", event_type).clone();
        instant(&mut body, "timestamp");
        if *event_type == "webhook.endpoint_disabled" {
            instant(&mut body["data"], "failingSince");
        }
        let event_id = text(&body["id"]);
        assert!(uuid::Uuid::parse_str(&event_id).is_ok(), "{body}");
        assert_eq!(
            body,
            json!({ "id": event_id, "type": event_type, "timestamp": "<instant>",
                "companyId": shop.tenant.company_id, "data": payload }),
            "the webhook body of {event_type}"
        );
    }
    assert_eq!(bodies.len(), 16, "{bodies:?}");
    assert_eq!(
        streamed, events,
        "the events subscription shows what the query lists"
    );
    assert_eq!(
        notified,
        Some(json!({ "notifications": {
            "notificationId": null,
            "userId": expected[9].2["userId"],
            "kind": expected[9].2["kind"],
            "message": expected[9].2["message"],
            "details": expected[9].2["details"],
        } })),
        "the notifications subscription"
    );
    assert_eq!(leaked, None, "a notification reached someone else");

    let order_updates: Vec<Value> = packets
        .iter()
        .filter(|packet| packet[0] == "order:update")
        .map(|packet| {
            let mut update = packet[1].clone();
            instant(&mut update, "occurredAt");
            update
        })
        .collect();
    assert_eq!(
        order_updates.first(),
        Some(&json!({ "orderId": moved, "number": 1, "status": "PENDING",
            "previousStatus": null, "version": 1, "event": "order.created",
            "occurredAt": "<instant>" })),
        "{packets:?}"
    );
    assert_eq!(
        order_updates.get(1),
        Some(
            &json!({ "orderId": moved, "number": 1, "status": "CONFIRMED",
            "previousStatus": "PENDING", "version": 2, "event": "order.status_changed",
            "occurredAt": "<instant>" })
        ),
        "{packets:?}"
    );
    let notification = packets
        .iter()
        .find(|packet| packet[0] == "notification")
        .unwrap_or_else(|| panic!("no notification in {packets:?}"));
    assert_eq!(notification[1], expected[9].2, "{packets:?}");
}
