//! Notification delivery load: how fast queued WhatsApp notifications reach a local
//! Evolution-compatible server, and how long one notification takes from `sendNotification` to
//! the provider when nothing else is queued.
//!
//!   cargo run --release --example notifications_load -- http://127.0.0.1:8080 <database-url> 10000 8
//!
//! It signs up its own companies (8 unless told) and points each company's WhatsApp channel
//! at its own instance of a fake Evolution API it runs itself (answering `201` with a message
//! id, as Evolution does), so the server needs sign-up enabled, a high
//! `PLATFORM_API_RATE_LIMIT` and `PLATFORM_WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8` (the fake
//! provider listens on loopback).
//! 1. Idle latency: 200 notifications of the first company one after another, each timed from
//!    the mutation being sent to its text arriving at the fake provider.
//! 2. Sustained sends, twice: the channels' job keys are paused while a backlog is queued
//!    through the API (32 at a time), then resumed; from then on the fake provider counts
//!    arrivals. First the whole backlog spread over every company, each number at its own
//!    limit (4 messages at once) — the platform's rate; then a
//!    tenth of it through the first company's number alone — one number's rate.
//!
//! `bench/notifications-load.sh` runs it.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use futures_util::{StreamExt, stream};
use sea_orm::Database;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use uuid::Uuid;

/// What the fake provider saw: every arrival, and who waits for a given text.
#[path = "support/graphql.rs"]
mod graphql;

use graphql::{call, text};

#[derive(Clone, Default)]
struct Provider {
    arrivals: Arc<Mutex<Vec<(Instant, String)>>>,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Instant>>>>,
}

async fn send_text(
    State(provider): State<Provider>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let now = Instant::now();
    let text = body["text"].as_str().unwrap_or_default().to_string();
    if let Some(waiter) = provider.waiting.lock().expect("lock").remove(&text) {
        let _ = waiter.send(now);
    }
    provider.arrivals.lock().expect("lock").push((now, text));
    let id = Uuid::new_v4().simple().to_string().to_uppercase();
    (
        StatusCode::CREATED,
        Json(
            json!({ "key": { "remoteJid": body["number"], "fromMe": true, "id": id }, "status": "PENDING" }),
        ),
    )
}

const SEND: &str =
    "mutation N($input: SendNotificationInput!) { sendNotification(input: $input) { duplicate } }";

fn notification(body: &str) -> Value {
    json!({ "input": { "channel": "WHATSAPP", "category": "ORDERS",
        "recipient": { "phone": "+5511987654321" }, "body": body,
        "idempotencyKey": body } })
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// One company of the run: its access token and its WhatsApp channel's job key.
struct Company {
    token: String,
    key: String,
}

async fn sign_up(
    client: &reqwest::Client,
    base: &str,
    provider_url: &str,
) -> anyhow::Result<Company> {
    let slug = format!("notify-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let signed_up = call(client, base, None,
        "mutation S($input: SignUpInput!) { signUp(input: $input) { accessToken } }",
        json!({ "input": { "companyName": "Notification load", "companySlug": slug, "businessType": "RESTAURANT",
            "name": "Load", "email": format!("load@{slug}.test"), "password": "correct horse battery staple" } })).await?;
    let token = text(&signed_up["signUp"]["accessToken"])?;
    let configured = call(client, base, Some(&token),
        "mutation C($input: ConfigureNotificationChannelInput!) { configureNotificationChannel(input: $input) { id } }",
        json!({ "input": { "channel": "WHATSAPP", "provider": "EVOLUTION",
            "settings": { "baseUrl": provider_url, "instance": slug },
            "credentials": { "apiKey": "load-test-key" } } })).await?;
    let configuration = text(&configured["configureNotificationChannel"]["id"])?;
    let key = format!(
        "{}:{configuration}",
        api::services::notifications::key_prefix(api::notifications::Channel::Whatsapp)
    );
    Ok(Company { token, key })
}

/// Queues `total` notifications spread over `companies` with their keys paused, resumes them
/// and prints the rate at which they arrive at the provider.
async fn sustained(
    label: &str,
    client: &reqwest::Client,
    base: &str,
    db: &sea_orm::DatabaseConnection,
    provider: &Provider,
    companies: &[Company],
    total: usize,
) -> anyhow::Result<()> {
    let jobs = api::jobs::Jobs::new(Arc::new(api::jobs::SystemClock));
    for company in companies {
        jobs.pause_key(db, &company.key).await?;
    }
    provider.arrivals.lock().expect("lock").clear();
    let queued = Instant::now();
    let results: Vec<anyhow::Result<Value>> = stream::iter(0..total)
        .map(|n| {
            let token = &companies[n % companies.len()].token;
            async move {
                call(
                    client,
                    base,
                    Some(token),
                    SEND,
                    notification(&format!("{label} {n}")),
                )
                .await
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    println!(
        "{label}: queued {total} notifications through sendNotification in {:.1} s ({:.0}/s)",
        queued.elapsed().as_secs_f64(),
        total as f64 / queued.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    for company in companies {
        jobs.resume_key(db, &company.key).await?;
    }
    let deadline = started + Duration::from_secs(600);
    loop {
        let count = provider.arrivals.lock().expect("lock").len();
        if count >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrived = provider.arrivals.lock().expect("lock").clone();
    let (first, last) = match (arrived.first(), arrived.last()) {
        (Some((first, _)), Some((last, _))) => (*first, *last),
        _ => anyhow::bail!("no notification arrived at the provider"),
    };
    let unique: HashSet<&String> = arrived.iter().map(|(_, text)| text).collect();
    let sending = last.duration_since(first).max(Duration::from_millis(1));
    println!(
        "{label}: sent {} of {total} ({} distinct) over {} WhatsApp number(s) in {:.2} s from the first arrival: {:.0} sends/s sustained (resume → first send {:.0} ms)",
        arrived.len(),
        unique.len(),
        companies.len(),
        sending.as_secs_f64(),
        arrived.len() as f64 / sending.as_secs_f64(),
        first.duration_since(started).as_secs_f64() * 1e3
    );
    // Give the worker a moment to record the last attempts before going on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let database_url = args.next().ok_or_else(|| {
        anyhow::anyhow!(
            "usage: notifications_load <server> <database-url> [notifications] [companies]"
        )
    })?;
    let total: usize = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(10_000);
    let company_count: usize = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(8)
        .max(1);

    let provider = Provider::default();
    let provider_url = graphql::serve(
        Router::new()
            .route("/message/sendText/{instance}", post(send_text))
            .with_state(provider.clone()),
    )
    .await?;

    let client = reqwest::Client::new();
    let mut companies = Vec::new();
    for _ in 0..company_count {
        companies.push(sign_up(&client, &base, &provider_url).await?);
    }

    let mut latencies = Vec::new();
    for n in 0..200 {
        let body = format!("idle {n}");
        let (arrived, arrival) = oneshot::channel();
        provider
            .waiting
            .lock()
            .expect("lock")
            .insert(body.clone(), arrived);
        let sent = Instant::now();
        call(
            &client,
            &base,
            Some(&companies[0].token),
            SEND,
            notification(&body),
        )
        .await?;
        let at = tokio::time::timeout(Duration::from_secs(30), arrival).await??;
        latencies.push(at.duration_since(sent));
    }
    latencies.sort();
    println!(
        "idle: sendNotification → provider p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} notifications one at a time)",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().map_or(0.0, |max| max.as_secs_f64() * 1e3),
        latencies.len()
    );

    let db = Database::connect(database_url.as_str()).await?;
    sustained(
        "platform", &client, &base, &db, &provider, &companies, total,
    )
    .await?;
    sustained(
        "one number",
        &client,
        &base,
        &db,
        &provider,
        &companies[..1],
        (total / 10).max(1),
    )
    .await?;
    Ok(())
}
