//! Sockets re-check who is there: Socket.IO and GraphQL subscriptions stop sending what their
//! credentials no longer allow, and disconnect within seconds once access ends.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    helpers::{
        ORDER_EVENTS, Received, TestApp, forge, next_status_change, receive, socketio,
        socketio_packet, spawn_app, subscribe, text,
    },
    webhooks::{Shop, order, shop},
};

/// Socket.IO packets until the server disconnects the socket or `within` ends; the packets,
/// and whether it was disconnected.
async fn until_disconnected(
    socket: &mut crate::helpers::Socket,
    within: Duration,
) -> (Vec<Value>, bool) {
    let deadline = Instant::now() + within;
    let mut packets = Vec::new();
    while Instant::now() < deadline {
        let packet = socketio_packet(socket, deadline - Instant::now()).await;
        if packet[0] == "disconnect" || packet[0] == "closed" {
            return (packets, true);
        }
        if !packet.is_null() {
            packets.push(packet);
        }
    }
    (packets, false)
}

/// The `next` payloads a GraphQL socket sends until it closes or `within` ends; their
/// data and the close code (`None` when still open).
async fn until_closed(
    socket: &mut crate::helpers::Socket,
    within: Duration,
) -> (Vec<Value>, Option<u16>) {
    let deadline = Instant::now() + within;
    let mut events = Vec::new();
    while Instant::now() < deadline {
        match receive(socket, deadline - Instant::now()).await {
            Received::Json(message) if message["type"] == "ping" => {
                socket.send(Message::text(r#"{"type":"pong"}"#)).await.ok();
            }
            Received::Json(message) => events.push(message["payload"]["data"].clone()),
            Received::Closed(code) => return (events, Some(code)),
            Received::Nothing => break,
        }
    }
    (events, None)
}

fn status_changes(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|event| event["orderEvents"]["type"] == "order.status_changed")
        .collect()
}

/// The next `order:update` with `status`, skipping others.
async fn order_update(socket: &mut crate::helpers::Socket, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let packet = socketio_packet(socket, deadline - Instant::now()).await;
        if packet.is_null() || (packet[1][0] == "order:update" && packet[1][1]["status"] == status)
        {
            return packet;
        }
    }
}

fn order_updates(packets: &[Value]) -> Vec<&Value> {
    packets
        .iter()
        .filter(|packet| packet[1][0] == "order:update")
        .collect()
}

/// A member of `shop`'s company holding `roles`; returns (user id, access token).
async fn member(app: &TestApp, shop: &Shop, slug: &str, roles: &[&str]) -> (String, String) {
    let email = format!("member@{slug}.test");
    let id = app.invite(&shop.tenant.access_token, &email, roles).await;
    (id, app.login(&email, Some(slug)).await)
}

/// Creates a role with `permissions` as `[resource, action]` pairs.
async fn create_role(app: &TestApp, token: &str, name: &str, permissions: &[(&str, &str)]) {
    let permissions: Vec<Value> = permissions
        .iter()
        .map(|(resource, action)| json!({ "resource": resource, "action": action }))
        .collect();
    let body = app
        .graphql_as(
            token,
            "mutation R($name: String!, $permissions: [PermissionInput!]!) {
                createRole(name: $name, permissions: $permissions) { name } }",
            json!({ "name": name, "permissions": permissions }),
        )
        .await;
    assert_eq!(body["data"]["createRole"]["name"], name, "{body}");
}

async fn update_role(app: &TestApp, token: &str, name: &str, permissions: &[(&str, &str)]) {
    let permissions: Vec<Value> = permissions
        .iter()
        .map(|(resource, action)| json!({ "resource": resource, "action": action }))
        .collect();
    let body = app
        .graphql_as(
            token,
            "mutation R($name: String!, $permissions: [PermissionInput!]!) {
                updateRole(name: $name, permissions: $permissions) { name } }",
            json!({ "name": name, "permissions": permissions }),
        )
        .await;
    assert_eq!(body["data"]["updateRole"]["name"], name, "{body}");
}

async fn api_key(app: &TestApp, token: &str, role: &str) -> String {
    let body = app
        .graphql_as(
            token,
            "mutation K($role: String!) { createApiKey(name: \"socket\", role: $role) { secret } }",
            json!({ "role": role }),
        )
        .await;
    text(&body["data"]["createApiKey"]["secret"])
}

#[tokio::test]
async fn a_removed_member_gets_no_further_order_update_and_is_disconnected() {
    let app = spawn_app().await;
    let shop = shop(&app, "sio-removed").await;
    let (member_id, token) = member(&app, &shop, "sio-removed", &["STAFF"]).await;
    let order_id = order(&app, &shop).await;
    let (mut socket, connected) = socketio(&app, &token).await;
    assert_eq!(connected[0], "connect", "{connected}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.transition(&shop.tenant.access_token, &order_id, "CONFIRMED", None)
        .await;
    let before = order_update(&mut socket, "CONFIRMED").await;

    let removed = app
        .graphql_as(
            &shop.tenant.access_token,
            "mutation R($id: ID!) { removeMember(userId: $id) }",
            json!({ "id": member_id }),
        )
        .await;
    let started = Instant::now();
    app.transition(&shop.tenant.access_token, &order_id, "PREPARING", None)
        .await;
    let (after, disconnected) = until_disconnected(&mut socket, Duration::from_secs(10)).await;

    assert_eq!(before[1][0], "order:update", "{before}");
    assert_eq!(removed["data"]["removeMember"], true, "{removed}");
    assert!(
        order_updates(&after).is_empty(),
        "a removed member still got {after:?}"
    );
    assert!(
        disconnected,
        "still connected after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_api_key_whose_role_lacks_orders_read_receives_nothing() {
    let app = spawn_app().await;
    let shop = shop(&app, "sio-key").await;
    let admin = shop.tenant.access_token.clone();
    create_role(&app, &admin, "CUSTOMER_SYNC", &[("customers", "read")]).await;
    let key = api_key(&app, &admin, "CUSTOMER_SYNC").await;
    let order_id = order(&app, &shop).await;

    let (mut socket, answer) = socketio(&app, &key).await;
    app.transition(&admin, &order_id, "CONFIRMED", None).await;
    let (received, _) = until_disconnected(&mut socket, Duration::from_secs(1)).await;

    assert_eq!(answer[0], "connect_error", "{answer}");
    assert!(
        answer[1]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("orders:read"),
        "{answer}"
    );
    assert!(order_updates(&received).is_empty(), "{received:?}");
}

#[tokio::test]
async fn an_api_key_whose_role_loses_orders_read_is_disconnected() {
    let app = spawn_app().await;
    let shop = shop(&app, "sio-key-loses").await;
    let admin = shop.tenant.access_token.clone();
    create_role(&app, &admin, "ORDER_FEED", &[("orders", "read")]).await;
    let key = api_key(&app, &admin, "ORDER_FEED").await;
    let order_id = order(&app, &shop).await;
    let (mut socket, connected) = socketio(&app, &key).await;
    assert_eq!(connected[0], "connect", "{connected}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.transition(&admin, &order_id, "CONFIRMED", None).await;
    let before = order_update(&mut socket, "CONFIRMED").await;

    update_role(&app, &admin, "ORDER_FEED", &[("customers", "read")]).await;
    app.transition(&admin, &order_id, "PREPARING", None).await;
    let (after, disconnected) = until_disconnected(&mut socket, Duration::from_secs(10)).await;

    assert_eq!(before[1][0], "order:update", "{before}");
    assert!(order_updates(&after).is_empty(), "{after:?}");
    assert!(disconnected, "the key's socket stayed connected");
}

#[tokio::test]
async fn a_socket_whose_token_expires_is_disconnected() {
    let app = spawn_app().await;
    let tenant = app.sign_up("sio-expiring", "GENERIC").await;
    let secret = app.settings.jwt_secret.clone().expect("tests set a secret");
    let now = chrono::Utc::now().timestamp();
    let short_lived = forge(
        secret.expose(),
        json!({ "alg": "HS256", "typ": "JWT" }),
        json!({ "sub": tenant.admin_id, "cid": tenant.company_id, "iss": "platform",
            "aud": "platform-api", "iat": now, "exp": now + 2, "jti": uuid::Uuid::new_v4(), "typ": "access" }),
    );
    let (mut socket, connected) = socketio(&app, &short_lived).await;

    // Expiry (2 s) plus the JWT leeway (5 s) plus one re-check period (5 s).
    let (_, disconnected) = until_disconnected(&mut socket, Duration::from_secs(14)).await;

    assert_eq!(connected[0], "connect", "{connected}");
    assert!(disconnected, "a socket outlived its token");
}

#[tokio::test]
async fn a_subscription_after_revoke_role_receives_nothing_and_is_closed() {
    let app = spawn_app().await;
    let shop = shop(&app, "ws-revoked").await;
    let admin = shop.tenant.access_token.clone();
    let (member_id, token) = member(&app, &shop, "ws-revoked", &["STAFF"]).await;
    let order_id = order(&app, &shop).await;
    let mut socket = subscribe(&app, &token, ORDER_EVENTS, json!({ "orderId": order_id })).await;
    app.transition(&admin, &order_id, "CONFIRMED", None).await;
    let before = next_status_change(&mut socket, Duration::from_secs(2)).await;

    let revoked = app
        .graphql_as(
            &admin,
            "mutation R($id: ID!) { revokeRole(userId: $id, role: \"STAFF\") { roles } }",
            json!({ "id": member_id }),
        )
        .await;
    app.transition(&admin, &order_id, "PREPARING", None).await;
    let (after, closed) = until_closed(&mut socket, Duration::from_secs(10)).await;

    assert!(
        before.is_some(),
        "the subscription worked before the revoke"
    );
    assert_eq!(
        revoked["data"]["revokeRole"]["roles"],
        json!([]),
        "{revoked}"
    );
    assert!(
        status_changes(&after).is_empty(),
        "a revoked member got {after:?}"
    );
    assert_eq!(closed, Some(4403));
}

#[tokio::test]
async fn a_subscription_whose_role_loses_the_permission_is_closed() {
    let app = spawn_app().await;
    let shop = shop(&app, "ws-role-shrinks").await;
    let admin = shop.tenant.access_token.clone();
    create_role(&app, &admin, "ORDER_WATCH", &[("orders", "read")]).await;
    let (_, token) = member(&app, &shop, "ws-role-shrinks", &["ORDER_WATCH"]).await;
    let order_id = order(&app, &shop).await;
    let mut socket = subscribe(&app, &token, ORDER_EVENTS, json!({ "orderId": order_id })).await;

    update_role(&app, &admin, "ORDER_WATCH", &[("customers", "read")]).await;
    app.transition(&admin, &order_id, "CONFIRMED", None).await;
    let (after, closed) = until_closed(&mut socket, Duration::from_secs(10)).await;

    assert!(
        status_changes(&after).is_empty(),
        "a role without orders:read got {after:?}"
    );
    assert_eq!(closed, Some(4403));
}
