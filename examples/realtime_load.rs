//! Real-time load: opens GraphQL subscriptions and Socket.IO clients to one server, fires
//! order transitions, and reports the latency from the event's commit to its delivery, how many
//! deliveries were missing, and how long the connections took to open.
//!
//!   cargo run --release --example realtime_load -- http://127.0.0.1:8080 [graphql] [socketio] [transitions]
//!
//! It signs up its own company, so it needs a server with sign-up enabled and a high
//! `PLATFORM_API_RATE_LIMIT`. `bench/realtime-load.sh` runs it and adds the server's memory.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

type Latencies = Arc<Mutex<Vec<f64>>>;

struct Api {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

impl Api {
    async fn call(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let body: Value = request.send().await?.json().await?;
        anyhow::ensure!(body.get("errors").is_none(), "{query}: {body}");
        Ok(body["data"].clone())
    }
}

fn text(value: &Value) -> anyhow::Result<String> {
    value
        .as_str()
        .map(String::from)
        .ok_or_else(|| anyhow::anyhow!("expected a string, got {value}"))
}

/// Milliseconds from `occurred_at` to now.
fn since(occurred_at: &Value) -> Option<f64> {
    let at: DateTime<Utc> = occurred_at.as_str()?.parse().ok()?;
    Some((Utc::now() - at).num_microseconds()? as f64 / 1000.0)
}

async fn graphql_subscriber(
    ws: String,
    token: String,
    order: String,
    latencies: Latencies,
) -> anyhow::Result<()> {
    let mut request = ws.into_client_request()?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) = connect_async(request).await?;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    socket.send(Message::text(init.to_string())).await?;
    socket
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("no ack"))??;
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "subscription S($id: ID) { orderEvents(orderId: $id) { type occurredAt } }",
        "variables": { "id": order } } });
    socket.send(Message::text(subscribe.to_string())).await?;
    tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            let Ok(text) = message.to_text() else {
                continue;
            };
            let Ok(message) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            match message["type"].as_str() {
                Some("ping") => drop(socket.send(Message::text(r#"{"type":"pong"}"#)).await),
                Some("next") => {
                    let event = &message["payload"]["data"]["orderEvents"];
                    if event["type"] == "order.status_changed"
                        && let Some(ms) = since(&event["occurredAt"])
                        && let Ok(mut latencies) = latencies.lock()
                    {
                        latencies.push(ms);
                    }
                }
                _ => {}
            }
        }
    });
    Ok(())
}

async fn socketio_client(ws: String, token: String, latencies: Latencies) -> anyhow::Result<()> {
    let (mut socket, _) = connect_async(format!("{ws}/?EIO=4&transport=websocket")).await?;
    socket
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("no open packet"))??;
    socket
        .send(Message::text(format!("40{}", json!({ "token": token }))))
        .await?;
    tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            let Ok(text) = message.to_text() else {
                continue;
            };
            if text == "2" {
                drop(socket.send(Message::text("3")).await);
            } else if let Some(body) = text.strip_prefix("42")
                && let Ok(event) = serde_json::from_str::<Value>(body)
                && event[1]["event"] == "order.status_changed"
                && let Some(ms) = since(&event[1]["occurredAt"])
                && let Ok(mut latencies) = latencies.lock()
            {
                latencies.push(ms);
            }
        }
    });
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(name: &str, latencies: &Latencies, expected: usize) {
    let mut values = latencies
        .lock()
        .map(|values| values.clone())
        .unwrap_or_default();
    values.sort_by(f64::total_cmp);
    println!(
        "{name}: {} of {expected} deliveries ({} missing), commit→delivery p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        values.len(),
        expected.saturating_sub(values.len()),
        percentile(&values, 0.50),
        percentile(&values, 0.99),
        values.last().copied().unwrap_or(f64::NAN),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let graphql_count: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1000);
    let socketio_count: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(1000);
    let transitions: usize = args.get(4).and_then(|n| n.parse().ok()).unwrap_or(200);
    let ws = base.replacen("http://", "ws://", 1);
    let mut api = Api {
        base: base.clone(),
        client: reqwest::Client::new(),
        token: None,
    };

    let slug = format!("load-{}", uuid::Uuid::new_v4().simple());
    let signed_up = api
        .call(
            "mutation S($input: SignUpInput!) { signUp(input: $input) { accessToken } }",
            json!({ "input": { "companyName": "Load", "companySlug": &slug, "businessType": "GENERIC",
                "name": "Load", "email": format!("{slug}@load.test"), "password": "load test password" } }),
        )
        .await?;
    let token = text(&signed_up["signUp"]["accessToken"])?;
    api.token = Some(token.clone());
    let states =
        json!([{ "key": "A", "label": "A", "initial": true }, { "key": "B", "label": "B" }]);
    let moves = json!([{ "from": "A", "to": "B", "roles": ["ADMIN"] }, { "from": "B", "to": "A", "roles": ["ADMIN"] }]);
    let workflow = api
        .call(
            "mutation W($input: WorkflowInput!) { createWorkflow(input: $input) { id } }",
            json!({ "input": { "name": "Load", "entityType": "ORDER", "states": states, "transitions": moves } }),
        )
        .await?;
    api.call(
        "mutation A($id: ID!) { activateWorkflow(id: $id) { id } }",
        json!({ "id": workflow["createWorkflow"]["id"] }),
    )
    .await?;
    let customer = api
        .call(
            "mutation { createCustomer(input: { name: \"Load\" }) { id } }",
            json!({}),
        )
        .await?;
    let product = api
        .call("mutation { createProduct(input: { sku: \"L\", name: \"L\", kind: SERVICE, priceMinor: 100 }) { id } }", json!({}))
        .await?;
    let order = api
        .call(
            "mutation O($input: CreateOrderInput!) { createOrder(input: $input) { id } }",
            json!({ "input": { "customerId": customer["createCustomer"]["id"],
                "items": [{ "productId": product["createProduct"]["id"], "quantity": 1 }] } }),
        )
        .await?;
    let order = text(&order["createOrder"]["id"])?;

    let graphql_latencies: Latencies = Arc::default();
    let socketio_latencies: Latencies = Arc::default();
    let opening = Instant::now();
    for _ in 0..graphql_count {
        graphql_subscriber(
            format!("{ws}/graphql/ws"),
            token.clone(),
            order.clone(),
            graphql_latencies.clone(),
        )
        .await?;
    }
    for _ in 0..socketio_count {
        socketio_client(
            format!("{ws}/socket.io"),
            token.clone(),
            socketio_latencies.clone(),
        )
        .await?;
    }
    println!(
        "opened {graphql_count} GraphQL subscriptions and {socketio_count} Socket.IO clients in {:.1} s",
        opening.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let firing = Instant::now();
    for index in 0..transitions {
        let to = if index % 2 == 0 { "B" } else { "A" };
        api.call(
            "mutation T($input: TransitionOrderInput!) { transitionOrder(input: $input) { version } }",
            json!({ "input": { "orderId": order, "to": to } }),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "fired {transitions} transitions in {:.1} s",
        firing.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    report(
        "GraphQL subscriptions",
        &graphql_latencies,
        graphql_count * transitions,
    );
    report(
        "Socket.IO clients",
        &socketio_latencies,
        socketio_count * transitions,
    );
    Ok(())
}
