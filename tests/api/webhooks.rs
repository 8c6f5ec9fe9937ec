//! Webhooks end to end: real HTTP receivers on loopback, signatures checked by an independent
//! implementation of the Standard Webhooks specification, retries, dead letters, tenancy, the
//! address guard, crashes and several instances; and providers calling us.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Notify;

use crate::helpers::{Tenant, TestApp, first_error_code, spawn_app, spawn_app_with, text};

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    pub at: Instant,
}

/// What the receiver answers next.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// Holds the request this long before answering 200.
    Delay(Duration),
    /// Holds the request until then, and answers 200 with this body.
    AnswerAt(Instant, &'static str),
}

#[derive(Clone, Default)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    /// Replies to use in order; when empty, 200.
    script: Arc<Mutex<VecDeque<Reply>>>,
    /// The reply once the script is used up.
    fallback: Arc<Mutex<Option<Reply>>>,
    arrived: Arc<Notify>,
}

/// A webhook receiver on a free loopback port.
pub struct Receiver {
    pub url: String,
    state: ReceiverState,
}

impl Receiver {
    pub async fn start() -> Self {
        let state = ReceiverState::default();
        let router = Router::new()
            .route("/hook", post(receive))
            .with_state(state.clone());
        let url = format!("{}/hook", crate::helpers::serve_router(router).await);
        Self { url, state }
    }

    /// The next replies, in order.
    pub fn script(&self, replies: &[Reply]) {
        self.state
            .script
            .lock()
            .expect("lock")
            .extend(replies.iter().copied());
    }

    /// The reply after the script; `None` answers 200.
    pub fn always(&self, reply: Option<Reply>) {
        *self.state.fallback.lock().expect("lock") = reply;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }

    /// Waits until `count` requests arrived; returns them.
    pub async fn wait_for(&self, count: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let arrived = self.state.arrived.notified();
            let received = self.received();
            if received.len() >= count || Instant::now() >= deadline {
                return received;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), arrived).await;
        }
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    state.received.lock().expect("lock").push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    });
    state.arrived.notify_waiters();
    let reply = state
        .script
        .lock()
        .expect("lock")
        .pop_front()
        .or(*state.fallback.lock().expect("lock"));
    match reply {
        None => (StatusCode::OK, "ok"),
        Some(Reply::Status(code)) => (
            StatusCode::from_u16(code).expect("status"),
            "receiver says no",
        ),
        Some(Reply::Delay(wait)) => {
            tokio::time::sleep(wait).await;
            (StatusCode::OK, "late ok")
        }
        Some(Reply::AnswerAt(at, body)) => {
            tokio::time::sleep_until(at.into()).await;
            (StatusCode::OK, body)
        }
    }
}

/// The Standard Webhooks check, written from the specification and independent of the server:
/// HMAC-SHA256 keyed with the base64-decoded secret over `{id}.{timestamp}.{body}`.
pub fn signature_verifies(secret: &str, received: &Received) -> bool {
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("secret is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{}.{}.{}", received.id, received.timestamp, received.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    received
        .signature
        .split(' ')
        .any(|signature| signature == expected)
}

const CREATE_ENDPOINT: &str = "mutation E($input: CreateWebhookEndpointInput!) {
    createWebhookEndpoint(input: $input) { secret endpoint { id url events enabled } } }";

const DELIVERIES: &str = "query D($id: ID!, $status: WebhookDeliveryStatus) {
    webhookDeliveries(endpointId: $id, status: $status, first: 100) { edges { node {
        id webhookId eventType status attemptCount lastStatusCode
        attempts { statusCode latencyMs responseBody error } } } } }";

/// Registers `url` for `events`; returns (endpoint id, secret).
pub async fn register(app: &TestApp, token: &str, url: &str, events: &[&str]) -> (String, String) {
    let body = app
        .graphql_as(
            token,
            CREATE_ENDPOINT,
            json!({ "input": { "url": url, "events": events, "description": "test receiver" } }),
        )
        .await;
    let created = &body["data"]["createWebhookEndpoint"];
    assert!(
        created["endpoint"]["id"].is_string(),
        "createWebhookEndpoint: {body}"
    );
    (text(&created["endpoint"]["id"]), text(&created["secret"]))
}

/// A company with a customer and a product, ready to take orders.
pub struct Shop {
    pub tenant: Tenant,
    pub customer: String,
    pub product: String,
}

pub async fn shop(app: &TestApp, slug: &str) -> Shop {
    let tenant = app.sign_up(slug, "RESTAURANT").await;
    let customer = app.create_customer(&tenant.access_token, "Ana").await;
    let product = app
        .create_product(&tenant.access_token, "BURGER", 2500, None)
        .await;
    Shop {
        tenant,
        customer,
        product,
    }
}

pub async fn order(app: &TestApp, shop: &Shop) -> String {
    let body = app
        .create_order(
            &shop.tenant.access_token,
            &shop.customer,
            &[(&shop.product, 1)],
        )
        .await;
    assert!(body["data"]["createOrder"]["id"].is_string(), "{body}");
    text(&body["data"]["createOrder"]["id"])
}

async fn deliveries(app: &TestApp, token: &str, endpoint: &str) -> Vec<Value> {
    let body = app
        .graphql_as(token, DELIVERIES, json!({ "id": endpoint }))
        .await;
    body["data"]["webhookDeliveries"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("webhookDeliveries: {body}"))
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

/// Polls the endpoint's deliveries until one has `status`.
async fn wait_for_status(app: &TestApp, token: &str, endpoint: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = deliveries(app, token, endpoint).await;
        if let Some(delivery) = found.iter().find(|delivery| delivery["status"] == status) {
            return delivery.clone();
        }
        assert!(Instant::now() < deadline, "no {status} delivery: {found:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn with_schedule(schedule: &str) -> impl FnOnce(&mut api::configuration::Settings) {
    let schedule: Vec<Duration> = schedule
        .split(',')
        .map(|item| api::configuration::parse_duration(item).expect("duration"))
        .collect();
    move |settings| settings.webhooks.retry_schedule = schedule
}

#[tokio::test]
async fn events_arrive_signed_as_the_specification_says() {
    let app = spawn_app().await;
    let shop = shop(&app, "signed").await;
    let receiver = Receiver::start().await;
    let (endpoint, secret) =
        register(&app, &shop.tenant.access_token, &receiver.url, &["order.*"]).await;

    let order_id = order(&app, &shop).await;
    let received = receiver.wait_for(1, Duration::from_secs(10)).await;

    assert_eq!(received.len(), 1, "{received:?}");
    let delivery = &received[0];
    assert!(signature_verifies(&secret, delivery), "{delivery:?}");
    assert!(!signature_verifies(
        &format!("whsec_{}", STANDARD.encode([7u8; 32])),
        delivery
    ));
    assert!(delivery.id.starts_with("msg_"), "{delivery:?}");
    let age =
        chrono::Utc::now().timestamp() - delivery.timestamp.parse::<i64>().expect("unix time");
    assert!((0..30).contains(&age), "timestamp {age} s old");
    let body: Value = serde_json::from_str(&delivery.body).expect("JSON body");
    assert_eq!(body["type"], "order.created");
    assert_eq!(body["companyId"], shop.tenant.company_id.as_str());
    assert_eq!(body["data"]["orderId"], order_id.as_str(), "{body}");
    let recorded = wait_for_status(&app, &shop.tenant.access_token, &endpoint, "DELIVERED").await;
    assert_eq!(recorded["webhookId"], delivery.id.as_str());
    assert_eq!(recorded["attempts"][0]["statusCode"], 200);
    assert_eq!(recorded["attempts"][0]["responseBody"], "ok");
}

#[tokio::test]
async fn failed_attempts_are_retried_on_the_schedule_until_the_receiver_recovers() {
    let app = spawn_app_with(with_schedule("0s,1s,2s,2s")).await;
    let shop = shop(&app, "retries").await;
    let receiver = Receiver::start().await;
    receiver.script(&[Reply::Status(500), Reply::Status(503)]);
    let (endpoint, secret) = register(
        &app,
        &shop.tenant.access_token,
        &receiver.url,
        &["order.created"],
    )
    .await;

    order(&app, &shop).await;
    let received = receiver.wait_for(3, Duration::from_secs(15)).await;

    assert_eq!(received.len(), 3, "{received:?}");
    assert!(
        received.iter().all(|attempt| attempt.id == received[0].id),
        "one webhook-id"
    );
    assert!(
        received
            .iter()
            .all(|attempt| signature_verifies(&secret, attempt))
    );
    let first_gap = received[1].at - received[0].at;
    let second_gap = received[2].at - received[1].at;
    assert!(first_gap >= Duration::from_millis(900), "{first_gap:?}");
    assert!(second_gap >= Duration::from_millis(1900), "{second_gap:?}");
    let delivered = wait_for_status(&app, &shop.tenant.access_token, &endpoint, "DELIVERED").await;
    let codes: Vec<Value> = delivered["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|attempt| attempt["statusCode"].clone())
        .collect();
    assert_eq!(codes, [json!(500), json!(503), json!(200)]);
    assert_eq!(delivered["attemptCount"], 3);
}

/// A delivery whose attempt is at the receiver cannot be redelivered until that attempt is
/// recorded; then it can, and goes out again with the same `webhook-id`.
#[tokio::test]
async fn a_delivery_in_flight_is_redelivered_only_once_its_attempt_is_recorded() {
    let app = spawn_app().await;
    let shop = shop(&app, "in-flight").await;
    let token = shop.tenant.access_token.clone();
    let receiver = Receiver::start().await;
    receiver.script(&[Reply::Delay(Duration::from_secs(2))]);
    let (endpoint, _) = register(&app, &token, &receiver.url, &["order.created"]).await;
    order(&app, &shop).await;
    let held = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(held.len(), 1, "the attempt is at the receiver");
    let pending = deliveries(&app, &token, &endpoint).await;
    let redeliver = || {
        app.graphql_as(
            &token,
            "mutation R($id: ID!) { redeliverWebhook(deliveryId: $id) { status attemptCount } }",
            json!({ "id": pending[0]["id"] }),
        )
    };
    let refused = redeliver().await;
    assert_eq!(first_error_code(&refused), "CONFLICT", "{refused}");

    let delivered = wait_for_status(&app, &token, &endpoint, "DELIVERED").await;
    assert_eq!(delivered["attemptCount"], 1, "{delivered}");
    let redelivered = redeliver().await;
    assert_eq!(
        redelivered["data"]["redeliverWebhook"],
        json!({ "status": "PENDING", "attemptCount": 0 }),
        "{redelivered}"
    );
    let received = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(received[0].id, received[1].id, "the same webhook-id");
}

#[tokio::test]
async fn a_dead_lettered_delivery_is_delivered_by_redeliver_with_its_webhook_id() {
    let app = spawn_app_with(with_schedule("0s,1s")).await;
    let shop = shop(&app, "dead-letter").await;
    let token = shop.tenant.access_token.clone();
    let receiver = Receiver::start().await;
    receiver.always(Some(Reply::Status(500)));
    let (endpoint, _) = register(&app, &token, &receiver.url, &["order.created"]).await;

    order(&app, &shop).await;
    let dead = wait_for_status(&app, &token, &endpoint, "DEAD").await;
    receiver.always(None);
    let redelivered = app
        .graphql_as(
            &token,
            "mutation R($id: ID!) { redeliverWebhook(deliveryId: $id) { status attemptCount } }",
            json!({ "id": dead["id"] }),
        )
        .await;
    let delivered = wait_for_status(&app, &token, &endpoint, "DELIVERED").await;

    assert_eq!(dead["attemptCount"], 2, "{dead}");
    assert_eq!(
        redelivered["data"]["redeliverWebhook"]["status"], "PENDING",
        "{redelivered}"
    );
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    assert!(
        received
            .iter()
            .all(|attempt| attempt.id == dead["webhookId"].as_str().unwrap_or_default())
    );
    assert_eq!(delivered["attempts"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn a_company_never_receives_sees_or_redelivers_another_companys_webhooks() {
    let app = spawn_app().await;
    let alpha = shop(&app, "alpha-hooks").await;
    let beta = shop(&app, "beta-hooks").await;
    let alpha_receiver = Receiver::start().await;
    let beta_receiver = Receiver::start().await;
    let (alpha_endpoint, _) = register(
        &app,
        &alpha.tenant.access_token,
        &alpha_receiver.url,
        &["*"],
    )
    .await;
    let (beta_endpoint, _) =
        register(&app, &beta.tenant.access_token, &beta_receiver.url, &["*"]).await;

    let beta_order = order(&app, &beta).await;
    beta_receiver.wait_for(1, Duration::from_secs(10)).await;
    let beta_delivery =
        wait_for_status(&app, &beta.tenant.access_token, &beta_endpoint, "DELIVERED").await;
    let alpha_token = &alpha.tenant.access_token;
    let listed = app
        .graphql_as(alpha_token, DELIVERIES, json!({ "id": beta_endpoint }))
        .await;
    let redeliver = app
        .graphql_as(
            alpha_token,
            "mutation R($id: ID!) { redeliverWebhook(deliveryId: $id) { id } }",
            json!({ "id": beta_delivery["id"] }),
        )
        .await;
    let endpoint = app
        .graphql_as(
            alpha_token,
            "query E($id: ID!) { webhookEndpoint(id: $id) { id } webhookEndpoints { id } }",
            json!({ "id": beta_endpoint }),
        )
        .await;
    let test = app
        .graphql_as(
            alpha_token,
            "mutation T($id: ID!) { sendTestWebhook(endpointId: $id) { id } }",
            json!({ "id": beta_endpoint }),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert!(
        alpha_receiver.received().is_empty(),
        "alpha got beta's event"
    );
    assert!(beta_receiver.received()[0].body.contains(&beta_order));
    assert_eq!(first_error_code(&listed), "NOT_FOUND", "{listed}");
    assert_eq!(first_error_code(&redeliver), "NOT_FOUND", "{redeliver}");
    assert_eq!(first_error_code(&test), "NOT_FOUND", "{test}");
    assert!(endpoint["data"]["webhookEndpoint"].is_null(), "{endpoint}");
    assert_eq!(
        endpoint["data"]["webhookEndpoints"],
        json!([{ "id": alpha_endpoint }])
    );
}

#[tokio::test]
async fn internal_addresses_are_refused_when_the_guard_is_on() {
    let app = spawn_app_with(|settings| settings.webhooks.allowed_networks.clear()).await;
    let tenant = app.sign_up("guarded", "RESTAURANT").await;

    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.7/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://100.64.0.1/hook",
        "file:///etc/passwd",
    ] {
        let body = app
            .graphql_as(
                &tenant.access_token,
                CREATE_ENDPOINT,
                json!({ "input": { "url": url, "events": ["*"] } }),
            )
            .await;
        assert_eq!(first_error_code(&body), "VALIDATION", "{url}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["field"], "input.url",
            "{url}"
        );
    }
}

#[tokio::test]
async fn endpoints_need_the_webhooks_permission_and_known_events() {
    let app = spawn_app().await;
    let tenant = app.sign_up("perm-hooks", "RESTAURANT").await;
    app.invite(
        &tenant.access_token,
        "kitchen@perm-hooks.test",
        &["KITCHEN"],
    )
    .await;
    let kitchen = app
        .login("kitchen@perm-hooks.test", Some("perm-hooks"))
        .await;
    let receiver = Receiver::start().await;

    let forbidden = app
        .graphql_as(
            &kitchen,
            CREATE_ENDPOINT,
            json!({ "input": { "url": receiver.url, "events": ["*"] } }),
        )
        .await;
    let unknown = app
        .graphql_as(
            &tenant.access_token,
            CREATE_ENDPOINT,
            json!({ "input": { "url": receiver.url, "events": ["order.shipped"] } }),
        )
        .await;

    assert_eq!(first_error_code(&forbidden), "FORBIDDEN", "{forbidden}");
    assert_eq!(first_error_code(&unknown), "VALIDATION", "{unknown}");
    assert_eq!(unknown["errors"][0]["extensions"]["field"], "input.events");
}

#[tokio::test]
async fn a_rotated_secret_signs_alongside_the_new_one_during_the_grace_period() {
    let app = spawn_app().await;
    let tenant = app.sign_up("rotation", "RESTAURANT").await;
    let token = &tenant.access_token;
    let receiver = Receiver::start().await;
    let (endpoint, old_secret) = register(&app, token, &receiver.url, &["webhook.test"]).await;

    let rotated = app
        .graphql_as(
            token,
            "mutation R($id: ID!) { rotateWebhookSecret(id: $id) { secret endpoint { previousSecretExpiresAt } } }",
            json!({ "id": endpoint }),
        )
        .await;
    let new_secret = text(&rotated["data"]["rotateWebhookSecret"]["secret"]);
    let sent = app
        .graphql_as(
            token,
            "mutation T($id: ID!) { sendTestWebhook(endpointId: $id) { eventType status } }",
            json!({ "id": endpoint }),
        )
        .await;
    let received = receiver.wait_for(1, Duration::from_secs(10)).await;

    assert_ne!(new_secret, old_secret);
    assert!(
        rotated["data"]["rotateWebhookSecret"]["endpoint"]["previousSecretExpiresAt"].is_string(),
        "{rotated}"
    );
    assert_eq!(
        sent["data"]["sendTestWebhook"]["eventType"], "webhook.test",
        "{sent}"
    );
    let delivery = &received[0];
    assert_eq!(delivery.signature.split(' ').count(), 2, "{delivery:?}");
    assert!(signature_verifies(&new_secret, delivery));
    assert!(signature_verifies(&old_secret, delivery));
}

#[tokio::test]
async fn an_endpoint_failing_past_the_limit_is_disabled_with_an_event() {
    let app = spawn_app_with(|settings| {
        with_schedule("0s,1s,1s,1s")(settings);
        settings.webhooks.disable_after_secs = 1;
    })
    .await;
    let shop = shop(&app, "disabled").await;
    let token = shop.tenant.access_token.clone();
    let receiver = Receiver::start().await;
    receiver.always(Some(Reply::Status(502)));
    let (endpoint, _) = register(&app, &token, &receiver.url, &["order.created"]).await;

    order(&app, &shop).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let state = loop {
        let body = app
            .graphql_as(
                &token,
                "query E($id: ID!) { webhookEndpoint(id: $id) { enabled disabledReason failingSince } }",
                json!({ "id": endpoint }),
            )
            .await;
        let state = body["data"]["webhookEndpoint"].clone();
        if state["enabled"] == false || Instant::now() > deadline {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // `events` lists what the relay has published, which follows the disabling commit.
    let events = loop {
        let events = app
            .graphql_as(
                &token,
                "{ events(first: 50) { edges { node { type payload } } } }",
                json!({}),
            )
            .await;
        let published = |kind: &str| {
            events["data"]["events"]["edges"]
                .as_array()
                .is_some_and(|edges| edges.iter().any(|edge| edge["node"]["type"] == kind))
        };
        let both = published("webhook.endpoint_disabled") && published("notification.created");
        if both || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    assert_eq!(state["enabled"], false, "{state}");
    assert!(
        state["disabledReason"]
            .as_str()
            .unwrap_or_default()
            .contains("failed")
    );
    let types: Vec<&str> = events["data"]["events"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("events: {events}"))
        .iter()
        .filter_map(|edge| edge["node"]["type"].as_str())
        .collect();
    assert!(types.contains(&"webhook.endpoint_disabled"), "{types:?}");
    let notified = events["data"]["events"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|edge| &edge["node"])
        .find(|node| node["type"] == "notification.created")
        .unwrap_or_else(|| panic!("no notification: {events}"));
    assert_eq!(notified["payload"]["userId"], shop.tenant.admin_id.as_str());
    assert_eq!(notified["payload"]["kind"], "webhook.endpoint_disabled");
}

#[tokio::test]
async fn a_slow_endpoint_does_not_delay_another_endpoints_deliveries() {
    let app = spawn_app_with(|settings| {
        settings.webhooks.timeout_secs = 5;
        settings.webhooks.max_in_flight_per_endpoint = 2;
    })
    .await;
    let shop = shop(&app, "slow-fast").await;
    let token = shop.tenant.access_token.clone();
    let slow = Receiver::start().await;
    slow.always(Some(Reply::Delay(Duration::from_secs(4))));
    let fast = Receiver::start().await;
    register(&app, &token, &slow.url, &["order.created"]).await;
    register(&app, &token, &fast.url, &["order.created"]).await;

    for _ in 0..10 {
        order(&app, &shop).await;
    }
    let created = Instant::now();
    let fast_received = fast.wait_for(10, Duration::from_secs(10)).await;
    let waited = created.elapsed();
    let slow_received = slow.received();

    assert_eq!(fast_received.len(), 10);
    assert!(
        waited < Duration::from_secs(3),
        "fast deliveries waited behind the slow endpoint: {waited:?}"
    );
    // Until the first answer comes back, no more than the cap was sent to the slow endpoint.
    let first = slow_received
        .first()
        .expect("the slow endpoint was called")
        .at;
    let before_any_answer = slow_received
        .iter()
        .filter(|request| request.at < first + Duration::from_millis(3900))
        .count();
    assert_eq!(before_any_answer, 2, "{slow_received:?}");
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL"]
async fn two_instances_deliver_a_thousand_events_with_no_attempt_sent_twice() {
    crate::helpers::require_shared_infrastructure();
    let app = spawn_app().await;
    let second = crate::helpers::spawn_second_instance(&app).await;
    let shop = shop(&app, "thousand").await;
    let token = shop.tenant.access_token.clone();
    let receiver = Receiver::start().await;
    register(&app, &token, &receiver.url, &["order.created"]).await;

    let instances = [&app, &second];
    let creators = (0..8).map(|worker| {
        let instance = instances[worker % 2];
        let shop = &shop;
        async move {
            for _ in 0..125 {
                order(instance, shop).await;
            }
        }
    });
    futures_util::future::join_all(creators).await;
    let received = receiver.wait_for(1000, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut per_id: HashMap<String, usize> = HashMap::new();
    for delivery in receiver.received() {
        *per_id.entry(delivery.id).or_default() += 1;
    }
    assert_eq!(received.len(), 1000);
    assert_eq!(per_id.len(), 1000, "one webhook-id per event");
    assert!(
        per_id.values().all(|count| *count == 1),
        "an attempt was sent twice"
    );
}

#[tokio::test]
async fn a_delivery_cut_off_by_kill_9_is_sent_again_with_the_same_webhook_id() {
    let app = spawn_app().await;
    let shop = shop(&app, "killed-hooks").await;
    let receiver = Receiver::start().await;
    // The first attempt hangs: the instance is killed while it waits for the answer.
    receiver.script(&[Reply::Delay(Duration::from_secs(30))]);
    register(
        &app,
        &shop.tenant.access_token,
        &receiver.url,
        &["order.created"],
    )
    .await;
    // From here on only the binary serves this database.
    app.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let data = tempfile::tempdir().expect("temp dir");
    let run = || {
        let mut command = crate::lifecycle::platform();
        command
            .env("PLATFORM_DATA_DIR", data.path())
            .env("DATABASE_URL", app.settings.database_url())
            .env(
                "PLATFORM_JWT_SECRET",
                app.settings.jwt_secret.clone().expect("secret").expose(),
            )
            .env(
                "PLATFORM_ENCRYPTION_KEY",
                app.settings.encryption_key.clone().expect("key").expose(),
            )
            .env("PLATFORM_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
            .env("PLATFORM_WEBHOOK_TIMEOUT_SECS", "2")
            .env("PLATFORM_API_RATE_LIMIT", "100000");
        crate::lifecycle::serve_with(command)
    };
    let (mut first, port) = run();

    let created: Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/graphql"))
        .bearer_auth(&shop.tenant.access_token)
        .json(&json!({
            "query": "mutation O($input: CreateOrderInput!) { createOrder(input: $input) { id } }",
            "variables": { "input": { "customerId": shop.customer,
                "items": [{ "productId": shop.product, "quantity": 1 }] } } }))
        .send()
        .await
        .expect("reachable")
        .json()
        .await
        .expect("json");
    assert!(
        created["data"]["createOrder"]["id"].is_string(),
        "{created}"
    );
    let cut_off = receiver.wait_for(1, Duration::from_secs(10)).await;
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let (mut restarted, _) = run();
    let received = receiver.wait_for(2, Duration::from_secs(20)).await;
    restarted.kill().ok();
    restarted.wait().ok();

    assert_eq!(cut_off.len(), 1);
    assert_eq!(received.len(), 2, "the cut-off delivery was sent again");
    assert_eq!(received[1].id, received[0].id, "with the same webhook-id");
}

const STRIPE_EVENT: &str =
    r#"{"id":"evt_1QAbc","type":"payment_intent.succeeded","data":{"object":{"id":"pi_123"}}}"#;

pub fn stripe_signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex_lower(&mac.finalize().into_bytes())
    )
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

async fn post_stripe(
    app: &TestApp,
    company: &str,
    signature: &str,
    body: String,
) -> reqwest::Response {
    app.client
        .post(format!("{}/webhooks/in/stripe/{company}", app.address))
        .header("stripe-signature", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("reachable")
}

async fn stored_incoming(app: &TestApp) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    app.db
        .query_one_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT count(*) AS n FROM incoming_webhooks",
        ))
        .await
        .expect("query")
        .and_then(|row| row.try_get::<i64>("", "n").ok())
        .unwrap_or(-1)
}

#[tokio::test]
async fn incoming_stripe_webhooks_are_verified_and_processed_once() {
    let app = spawn_app().await;
    let tenant = app.sign_up("stripe-in", "RESTAURANT").await;
    let other = app.sign_up("stripe-other", "RESTAURANT").await;
    let secret = "whsec_test_0123456789abcdef";
    let set = app
        .graphql_as(
            &tenant.access_token,
            "mutation S($secret: String!) { setWebhookProviderSecret(provider: STRIPE, secret: $secret) }",
            json!({ "secret": secret }),
        )
        .await;
    assert_eq!(set["data"]["setWebhookProviderSecret"], true, "{set}");
    let now = chrono::Utc::now().timestamp();
    let signature = stripe_signature(secret, now, STRIPE_EVENT);

    let sends =
        (0..10).map(|_| post_stripe(&app, &tenant.company_id, &signature, STRIPE_EVENT.into()));
    let responses = futures_util::future::join_all(sends).await;
    let mut duplicates = 0;
    for response in responses {
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        if body["duplicate"] == true {
            duplicates += 1;
        }
    }
    let tampered = post_stripe(
        &app,
        &tenant.company_id,
        &signature,
        STRIPE_EVENT.replace("pi_123", "pi_999"),
    )
    .await;
    let stale = post_stripe(
        &app,
        &tenant.company_id,
        &stripe_signature(secret, now - 301, STRIPE_EVENT),
        STRIPE_EVENT.into(),
    )
    .await;
    let unsigned = app
        .client
        .post(format!(
            "{}/webhooks/in/stripe/{}",
            app.address, tenant.company_id
        ))
        .body(STRIPE_EVENT)
        .send()
        .await
        .expect("reachable");
    // Signed with the first company's secret, sent to a company that has none.
    let elsewhere = post_stripe(&app, &other.company_id, &signature, STRIPE_EVENT.into()).await;
    let oversized = post_stripe(
        &app,
        &tenant.company_id,
        &signature,
        format!("{{\"pad\":\"{}\"}}", "x".repeat(300 * 1024)),
    )
    .await;

    assert_eq!(duplicates, 9, "one of ten identical events processed");
    for (name, response) in [
        ("tampered", tampered),
        ("stale", stale),
        ("unsigned", unsigned),
        ("elsewhere", elsewhere),
        ("oversized", oversized),
    ] {
        assert_eq!(response.status(), 400, "{name}");
    }
    assert_eq!(stored_incoming(&app).await, 1);
}

#[tokio::test]
async fn incoming_standard_webhooks_verify_with_the_partners_secret() {
    let app = spawn_app().await;
    let tenant = app.sign_up("standard-in", "RESTAURANT").await;
    let secret = format!("whsec_{}", STANDARD.encode([42u8; 32]));
    app.graphql_as(
        &tenant.access_token,
        "mutation S($secret: String!) { setWebhookProviderSecret(provider: STANDARD, secret: $secret) }",
        json!({ "secret": secret }),
    )
    .await;
    let body = r#"{"type":"invoice.paid","data":{}}"#;
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signed = |id: &str| {
        let mut mac = Hmac::<Sha256>::new_from_slice(&[42u8; 32]).expect("key");
        mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    };
    let send = |signature: String| {
        app.client
            .post(format!(
                "{}/webhooks/in/standard/{}",
                app.address, tenant.company_id
            ))
            .header("webhook-id", "msg_partner_1")
            .header("webhook-timestamp", &timestamp)
            .header("webhook-signature", signature)
            .body(body)
            .send()
    };

    let accepted = send(signed("msg_partner_1")).await.expect("reachable");
    let wrong = send(signed("msg_other")).await.expect("reachable");

    assert_eq!(accepted.status(), 200);
    assert_eq!(wrong.status(), 400);
    assert_eq!(stored_incoming(&app).await, 1);
}

#[tokio::test]
async fn incoming_twilio_callbacks_verify_against_the_url_twilio_called() {
    let app = spawn_app().await;
    let tenant = app.sign_up("twilio-in", "RESTAURANT").await;
    app.graphql_as(
        &tenant.access_token,
        "mutation { setWebhookProviderSecret(provider: TWILIO, secret: \"twilio-auth-token\") }",
        json!({}),
    )
    .await;
    let url = format!("{}/webhooks/in/twilio/{}", app.address, tenant.company_id);
    let body = "MessageSid=SM1f0e&MessageStatus=delivered&SmsStatus=delivered&To=%2B5511987654321";
    let params: Vec<(String, String)> = [
        ("MessageSid", "SM1f0e"),
        ("MessageStatus", "delivered"),
        ("SmsStatus", "delivered"),
        ("To", "+5511987654321"),
    ]
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .into();
    let send = |signature: String| {
        app.client
            .post(&url)
            .header("x-twilio-signature", signature)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let signed = api::webhooks::signature::twilio_signature("twilio-auth-token", &url, &params);
    let for_elsewhere = api::webhooks::signature::twilio_signature(
        "twilio-auth-token",
        &format!("{url}?other=1"),
        &params,
    );

    let accepted = send(signed.clone()).await.expect("reachable");
    let repeated = send(signed).await.expect("reachable");
    let wrong = send(for_elsewhere).await.expect("reachable");

    assert_eq!(accepted.status(), 200);
    let repeated: Value = repeated.json().await.expect("json");
    assert_eq!(repeated["duplicate"], true);
    assert_eq!(wrong.status(), 400);
    assert_eq!(stored_incoming(&app).await, 1);
}

#[tokio::test]
async fn incoming_evolution_webhooks_verify_the_companys_secret_header() {
    let app = spawn_app().await;
    let tenant = app.sign_up("evolution-in", "RESTAURANT").await;
    app.graphql_as(
        &tenant.access_token,
        "mutation { setWebhookProviderSecret(provider: EVOLUTION, secret: \"evo-webhook-secret-1\") }",
        json!({}),
    )
    .await;
    let body = r#"{"event":"messages.update","instance":"loja","data":{"keyId":"BAE5","fromMe":true,"status":"DELIVERY_ACK"}}"#;
    let send = |secret: &'static str| {
        app.client
            .post(format!(
                "{}/webhooks/in/evolution/{}",
                app.address, tenant.company_id
            ))
            .header("x-webhook-secret", secret)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let accepted = send("evo-webhook-secret-1").await.expect("reachable");
    let wrong = send("evo-webhook-secret-2").await.expect("reachable");

    assert_eq!(accepted.status(), 200);
    assert_eq!(wrong.status(), 400);
    assert_eq!(stored_incoming(&app).await, 1);
}

/// Two companies, each with an endpoint for `order.created` whose receiver holds the request
/// until the same instant, so that both outcomes reach the recorder together; A's receiver
/// answers `a_body`.
struct TwoTenants {
    app: TestApp,
    a: Shop,
    b: Shop,
    a_receiver: Receiver,
    b_receiver: Receiver,
    a_endpoint: String,
    b_endpoint: String,
    answer_at: Instant,
}

fn assert_on_postgres() {
    assert!(
        std::env::var("TEST_DATABASE_URL").is_ok_and(|url| !url.is_empty()),
        "this test needs TEST_DATABASE_URL"
    );
}

async fn two_tenants(prefix: &str, a_body: &'static str) -> TwoTenants {
    // A short deadline, so that a delivery whose outcome was lost goes out again soon.
    let app = spawn_app_with(|settings| settings.webhooks.timeout_secs = 3).await;
    let a = shop(&app, &format!("{prefix}-a")).await;
    let b = shop(&app, &format!("{prefix}-b")).await;
    let a_receiver = Receiver::start().await;
    let b_receiver = Receiver::start().await;
    let (a_endpoint, _) = register(
        &app,
        &a.tenant.access_token,
        &a_receiver.url,
        &["order.created"],
    )
    .await;
    let (b_endpoint, _) = register(
        &app,
        &b.tenant.access_token,
        &b_receiver.url,
        &["order.created"],
    )
    .await;
    // Held about 500 ms past their arrival, both answered at once.
    let answer_at = Instant::now() + Duration::from_millis(1500);
    a_receiver.script(&[Reply::AnswerAt(answer_at, a_body)]);
    b_receiver.script(&[Reply::AnswerAt(answer_at, "ok")]);
    futures_util::future::join(order(&app, &a), order(&app, &b)).await;
    TwoTenants {
        app,
        a,
        b,
        a_receiver,
        b_receiver,
        a_endpoint,
        b_endpoint,
        answer_at,
    }
}

impl TwoTenants {
    /// B's delivery once DELIVERED, with how many requests B's receiver got per webhook-id.
    async fn b_outcome(&self) -> (Value, HashMap<String, usize>) {
        let delivered = wait_for_status(
            &self.app,
            &self.b.tenant.access_token,
            &self.b_endpoint,
            "DELIVERED",
        )
        .await;
        let mut per_id: HashMap<String, usize> = HashMap::new();
        for request in self.b_receiver.received() {
            *per_id.entry(request.id).or_default() += 1;
        }
        (delivered, per_id)
    }

    fn both_arrived_before_the_answer(&self) -> bool {
        [&self.a_receiver, &self.b_receiver].iter().all(|receiver| {
            receiver
                .received()
                .first()
                .is_some_and(|request| request.at < self.answer_at)
        })
    }
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL"]
async fn a_nul_in_one_tenants_answer_costs_no_other_tenant_its_outcome() {
    assert_on_postgres();
    let tenants = two_tenants("nul", "ok\0").await;

    let a_delivered = wait_for_status(
        &tenants.app,
        &tenants.a.tenant.access_token,
        &tenants.a_endpoint,
        "DELIVERED",
    )
    .await;
    let (b_delivered, b_requests) = tenants.b_outcome().await;

    assert!(tenants.both_arrived_before_the_answer());
    assert_eq!(a_delivered["attemptCount"], 1, "{a_delivered}");
    assert_eq!(a_delivered["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(a_delivered["attempts"][0]["responseBody"], "ok\u{fffd}");
    assert_eq!(b_delivered["attemptCount"], 1, "{b_delivered}");
    assert_eq!(b_delivered["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(tenants.a_receiver.received().len(), 1);
    assert_eq!(b_requests.len(), 1, "{b_requests:?}");
    assert!(
        b_requests.values().all(|count| *count == 1),
        "{b_requests:?}"
    );
}

#[tokio::test]
async fn an_endpoint_deleted_during_its_attempt_costs_no_other_tenant_its_outcome() {
    let tenants = two_tenants("deleted", "ok").await;
    tenants.a_receiver.wait_for(1, Duration::from_secs(5)).await;

    let deleted = tenants
        .app
        .graphql_as(
            &tenants.a.tenant.access_token,
            "mutation D($id: ID!) { deleteWebhookEndpoint(id: $id) }",
            json!({ "id": tenants.a_endpoint }),
        )
        .await;
    let (b_delivered, b_requests) = tenants.b_outcome().await;

    assert_eq!(deleted["data"]["deleteWebhookEndpoint"], true, "{deleted}");
    assert!(Instant::now() > tenants.answer_at);
    assert!(tenants.both_arrived_before_the_answer());
    assert_eq!(b_delivered["attemptCount"], 1, "{b_delivered}");
    assert_eq!(b_delivered["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(b_requests.len(), 1, "{b_requests:?}");
    assert!(
        b_requests.values().all(|count| *count == 1),
        "{b_requests:?}"
    );
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL"]
async fn an_outcome_the_database_refuses_is_recorded_alone_without_its_excerpt() {
    use sea_orm::ConnectionTrait;
    assert_on_postgres();
    let tenants = two_tenants("refused", "poison").await;
    // Stands for any row the database refuses that nothing foresaw.
    tenants
        .app
        .owner_db()
        .await
        .execute_unprepared(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.response_body = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF;
             RETURN NEW; END $$;
             CREATE TRIGGER refuse_poison BEFORE INSERT ON webhook_attempts
             FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
        )
        .await
        .expect("trigger created");

    let a_delivered = wait_for_status(
        &tenants.app,
        &tenants.a.tenant.access_token,
        &tenants.a_endpoint,
        "DELIVERED",
    )
    .await;
    let (b_delivered, b_requests) = tenants.b_outcome().await;

    assert!(tenants.both_arrived_before_the_answer());
    assert_eq!(a_delivered["attemptCount"], 1, "{a_delivered}");
    assert_eq!(a_delivered["attempts"][0]["statusCode"], 200);
    assert_eq!(a_delivered["attempts"][0]["responseBody"], Value::Null);
    assert_eq!(tenants.a_receiver.received().len(), 1);
    assert_eq!(b_delivered["attemptCount"], 1, "{b_delivered}");
    assert_eq!(b_requests.len(), 1, "{b_requests:?}");
    assert!(
        b_requests.values().all(|count| *count == 1),
        "{b_requests:?}"
    );
}

#[tokio::test]
async fn an_address_refusal_never_names_the_address_a_host_resolves_to() {
    let app = spawn_app_with(|settings| settings.webhooks.allowed_networks.clear()).await;
    let tenant = app.sign_up("guard-words", "RESTAURANT").await;

    for url in [
        "http://localhost:9/hook",
        "http://127.0.0.1:9/hook",
        "http://[::ffff:10.0.0.1]/hook",
    ] {
        let body = app
            .graphql_as(
                &tenant.access_token,
                CREATE_ENDPOINT,
                json!({ "input": { "url": url, "events": ["*"] } }),
            )
            .await;
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();

        assert_eq!(first_error_code(&body), "VALIDATION", "{url}: {body}");
        assert!(message.contains("not allowed"), "{url}: {message}");
        for revealing in ["127.0.0.1", "::1", "10.0.0.1", "loopback", "private"] {
            assert!(!message.contains(revealing), "{url}: {message}");
        }
    }
}

/// The delivery's id from its `webhook-id` (`msg_{id}`).
fn delivery_id(received: &Received) -> uuid::Uuid {
    let id = received.id.strip_prefix("msg_").expect("a msg_ id");
    uuid::Uuid::parse_str(id).expect("a delivery id")
}

async fn set_enabled(app: &TestApp, token: &str, endpoint: &str, enabled: bool) {
    let body = app
        .graphql_as(
            token,
            "mutation U($id: ID!, $enabled: Boolean!) {
                updateWebhookEndpoint(id: $id, input: { enabled: $enabled }) { enabled } }",
            json!({ "id": endpoint, "enabled": enabled }),
        )
        .await;
    assert_eq!(
        body["data"]["updateWebhookEndpoint"]["enabled"], enabled,
        "{body}"
    );
}

#[tokio::test]
async fn a_disabled_endpoints_retry_waits_behind_its_paused_key_and_goes_out_once_enabled() {
    use sea_orm::EntityTrait;

    let app = spawn_app_with(with_schedule("0s,1s,1s,1s")).await;
    let shop = shop(&app, "held-hooks").await;
    let token = shop.tenant.access_token.clone();
    let receiver = Receiver::start().await;
    receiver.script(&[Reply::Status(500)]);
    let (endpoint, _) = register(&app, &token, &receiver.url, &["order.created"]).await;
    order(&app, &shop).await;
    let failed = receiver.wait_for(1, Duration::from_secs(10)).await;
    wait_for_status(&app, &token, &endpoint, "PENDING").await;
    set_enabled(&app, &token, &endpoint, false).await;

    // The retry comes due a second later; its job is claimed, finds the endpoint disabled and
    // goes back behind the endpoint's key, paused.
    let endpoint_id = uuid::Uuid::parse_str(&endpoint).expect("an id");
    let key = api::webhooks::worker::endpoint_key(endpoint_id);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let paused = entity::job_key::Entity::find_by_id(key.clone())
            .one(&app.db)
            .await
            .expect("a query")
            .is_some_and(|row| row.paused);
        if paused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the endpoint's key was never paused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), 1, "sent while disabled");
    let job = entity::job::Entity::find_by_id(delivery_id(&failed[0]))
        .one(&app.db)
        .await
        .expect("a query")
        .expect("the delivery's job");
    assert_eq!(job.status, "QUEUED");

    set_enabled(&app, &token, &endpoint, true).await;
    let received = receiver.wait_for(2, Duration::from_secs(5)).await;

    assert_eq!(received.len(), 2, "the held retry went out once enabled");
    assert_eq!(received[1].id, received[0].id, "with the same webhook-id");
    wait_for_status(&app, &token, &endpoint, "DELIVERED").await;
    // The attempt's record ended its job in the same transaction.
    let job = entity::job::Entity::find_by_id(delivery_id(&received[1]))
        .one(&app.db)
        .await
        .expect("a query")
        .expect("the delivery's job");
    assert_eq!(job.status, "DONE");
    assert_eq!(job.lease_id, None);
}
