//! Webhook delivery load: queues a backlog of deliveries for one endpoint and measures how fast
//! the server's worker delivers them to a local receiver.
//!
//!   cargo run --release --example webhook_load -- http://127.0.0.1:8080 <database-url> [deliveries]
//!
//! It signs up its own company and registers an endpoint on a receiver it runs itself, so the
//! server needs sign-up enabled, a high `PLATFORM_API_RATE_LIMIT` and
//! `PLATFORM_WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8`. The endpoint is disabled (its job key
//! paused) while the backlog — deliveries and their jobs — is written straight into the
//! server's database, then enabled: from then on the receiver counts arrivals. `bench/webhook-load.sh` runs it.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, extract::State, http::HeaderMap, routing::post};
use sea_orm::{Database, EntityTrait, TransactionTrait, TryIntoModel};
use serde_json::json;
use uuid::Uuid;

#[path = "support/graphql.rs"]
mod graphql;

use graphql::{call, text};

#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<(Instant, String)>>>);

async fn receive(State(arrivals): State<Arrivals>, headers: HeaderMap) -> &'static str {
    let id = headers
        .get("webhook-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    arrivals.0.lock().expect("lock").push((Instant::now(), id));
    "ok"
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let database_url = args.next().ok_or_else(|| {
        anyhow::anyhow!("usage: webhook_load <server> <database-url> [deliveries]")
    })?;
    let total: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(5000);

    let arrivals = Arrivals::default();
    let receiver_url = format!(
        "{}/hook",
        graphql::serve(
            Router::new()
                .route("/hook", post(receive))
                .with_state(arrivals.clone()),
        )
        .await?
    );

    let client = reqwest::Client::new();
    let slug = format!("hooks-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let signed_up = call(&client, &base, None,
        "mutation S($input: SignUpInput!) { signUp(input: $input) { accessToken company { id } } }",
        json!({ "input": { "companyName": "Webhook load", "companySlug": slug, "businessType": "RESTAURANT",
            "name": "Load", "email": format!("load@{slug}.test"), "password": "correct horse battery staple" } })).await?;
    let token = text(&signed_up["signUp"]["accessToken"])?;
    let company_id: Uuid = text(&signed_up["signUp"]["company"]["id"])?.parse()?;
    let created = call(&client, &base, Some(&token),
        "mutation E($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { endpoint { id } } }",
        json!({ "input": { "url": receiver_url, "events": ["webhook.test"] } })).await?;
    let endpoint = text(&created["createWebhookEndpoint"]["endpoint"]["id"])?;
    let set_enabled = |enabled: bool| {
        call(
            &client,
            &base,
            Some(&token),
            "mutation U($id: ID!, $enabled: Boolean!) { updateWebhookEndpoint(id: $id, input: { enabled: $enabled }) { enabled } }",
            json!({ "id": endpoint, "enabled": enabled }),
        )
    };
    set_enabled(false).await?;

    let db = Database::connect(database_url.as_str()).await?;
    let endpoint_id: Uuid = endpoint.parse()?;
    let jobs = api::jobs::Jobs::new(Arc::new(api::jobs::SystemClock));
    jobs.pause_key(&db, &api::webhooks::worker::endpoint_key(endpoint_id))
        .await?;
    let now = chrono::Utc::now();
    let queued = Instant::now();
    for chunk in (0..total).collect::<Vec<_>>().chunks(500) {
        let deliveries = chunk.iter().map(|n| {
            let event_id = Uuid::now_v7();
            let body = api::webhooks::envelope(
                event_id,
                "webhook.test",
                company_id,
                now,
                json!({ "n": n }),
            );
            api::webhooks::new_delivery(
                company_id,
                endpoint_id,
                event_id,
                "webhook.test",
                body,
                now,
            )
        });
        let deliveries: Vec<_> = deliveries.collect();
        let models = deliveries
            .iter()
            .map(|delivery| delivery.clone().try_into_model())
            .collect::<Result<Vec<_>, _>>()?;
        let txn = db.begin().await?;
        entity::webhook_delivery::Entity::insert_many(deliveries)
            .exec_without_returning(&txn)
            .await?;
        api::webhooks::worker::schedule(&jobs, &txn, &models).await?;
        txn.commit().await?;
    }
    println!(
        "queued {total} deliveries in {:.1} s",
        queued.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    set_enabled(true).await?;
    let deadline = started + Duration::from_secs(600);
    loop {
        let count = arrivals.0.lock().expect("lock").len();
        if count >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrived = arrivals.0.lock().expect("lock").clone();
    let elapsed = arrived
        .last()
        .map_or(started.elapsed(), |(at, _)| at.duration_since(started));
    let unique: HashSet<&String> = arrived.iter().map(|(_, id)| id).collect();
    println!(
        "delivered {} of {total} ({} distinct webhook-ids) in {:.2} s: {:.0} deliveries/s",
        arrived.len(),
        unique.len(),
        elapsed.as_secs_f64(),
        arrived.len() as f64 / elapsed.as_secs_f64()
    );
    // Give the worker a moment to record the last attempts before the server is stopped.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}
