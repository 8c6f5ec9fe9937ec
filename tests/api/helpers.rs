//! `spawn_app()` and the `TestApp` client every test talks through.

use futures_util::{SinkExt, StreamExt};
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use api::{Application, ShutdownHandle, configuration::Settings, db::rows::ReadPool};
use migration::MigratorTrait;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

/// A running server with its own database, stopped (and its database dropped) on drop.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// The test's own hand on the database, across companies: the server's cross-tenant pool,
    /// which row-level security does not hold.
    pub db: DatabaseConnection,
    /// The server's request pool, which on PostgreSQL sees only the company a transaction sets.
    pub request_db: DatabaseConnection,
    /// SQL statements the server has run, for tests that count them.
    pub statements: Arc<AtomicU64>,
    /// The server's list-page reads, for tests of how they decode.
    pub reads: ReadPool,
    /// The settings it runs with, to start a second instance sharing its database and Redis.
    pub settings: Settings,
    /// What its jobs read the time from; a second instance or a restart reads it too.
    clock: Arc<dyn api::jobs::Clock>,
    shutdown: ShutdownHandle,
    postgres: Option<PostgresDatabase>,
    _data_dir: Option<tempfile::TempDir>,
}

/// A company created through `signUp`, with its first ADMIN's credentials.
pub struct Tenant {
    pub company_id: String,
    pub admin_id: String,
    pub admin_email: String,
    pub access_token: String,
    pub refresh_token: String,
}

pub const PASSWORD: &str = "correct horse battery staple";

pub const SIGN_UP: &str = "mutation SignUp($input: SignUpInput!) { signUp(input: $input) {
    accessToken refreshToken expiresIn user { id email name } company { id slug businessType } } }";

pub const INVITE_MEMBER: &str = "mutation Invite($email: String!, $roles: [String!]!) {
    inviteMember(email: $email, roles: $roles) {
        token invitation { id email roles status companyName companySlug invitedBy createdAt expiresAt respondedAt } } }";

pub const ACCEPT_WITH_TOKEN: &str = "mutation Accept($input: AcceptInvitationWithTokenInput!) {
    acceptInvitationWithToken(input: $input) { accessToken refreshToken user { id email name } company { id slug } } }";

pub const LOGIN: &str = "mutation Login($input: LoginInput!) { login(input: $input) {
    accessToken refreshToken user { id } company { id slug } } }";

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the app with settings adjusted by `customize` (limits, production mode…).
pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_on(Arc::new(api::jobs::SystemClock), customize).await
}

/// [`spawn_app_with`] with its jobs on `clock`: a test moves a `ManualClock` through retries.
pub async fn spawn_app_on(
    clock: Arc<dyn api::jobs::Clock>,
    customize: impl FnOnce(&mut Settings),
) -> TestApp {
    api::install_crypto_provider();
    if std::env::var_os("TEST_LOG").is_some() {
        api::telemetry::init(false, "info,sqlx=warn");
    }
    let data_dir = tempfile::tempdir().expect("Failed to create a temporary data directory");
    let postgres = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(PostgresDatabase::create(&url).await),
        _ => None,
    };
    let mut settings = Settings {
        bind: "127.0.0.1:0".parse().expect("valid address"),
        data_dir: data_dir.path().to_path_buf(),
        database_url: postgres.as_ref().map(|database| database.url.clone()),
        redis_url: std::env::var("TEST_REDIS_URL")
            .ok()
            .filter(|url| !url.is_empty()),
        redis_namespace: format!("test-{}", uuid::Uuid::new_v4().simple()),
        jwt_secret: Some(api::configuration::Secret::new(api::auth::random_token(48))),
        unsubscribe_secret: Some(api::configuration::Secret::new(api::auth::random_token(48))),
        encryption_key: Some(api::configuration::Secret::new(
            api::crypto::SecretBox::generate_key(),
        )),
        ..Settings::default()
    };
    // Webhook receivers in tests listen on loopback; the guard itself has dedicated tests.
    settings.webhooks.allowed_networks = vec!["127.0.0.0/8".into()];
    // Tests make many calls from one address; the limits themselves have dedicated tests.
    settings.rate_limits.api_calls = 100_000;
    settings.rate_limits.login_attempts = 1_000;
    settings.rate_limits.login_failures_per_address = 1_000;
    settings.rate_limits.login_successes_per_address = 1_000;
    settings.rate_limits.signups = 1_000;
    customize(&mut settings);
    start(settings, clock, postgres, Some(data_dir)).await
}

/// A second server sharing `app`'s database, Redis and secret, as in a multi-instance deployment.
pub async fn spawn_second_instance(app: &TestApp) -> TestApp {
    let mut settings = app.settings.clone();
    settings.bind = "127.0.0.1:0".parse().expect("valid address");
    start(settings, app.clock.clone(), None, None).await
}

async fn start(
    settings: Settings,
    clock: Arc<dyn api::jobs::Clock>,
    postgres: Option<PostgresDatabase>,
    data_dir: Option<tempfile::TempDir>,
) -> TestApp {
    let application = Application::build_with_clock(settings.clone(), clock.clone())
        .await
        .expect("Failed to build the application");
    let address = format!("http://127.0.0.1:{}", application.port());
    let db = application.state().system_db.clone();
    let request_db = application.state().db.clone();
    let statements = application.state().statements.clone();
    let reads = application.state().reads.clone();
    let shutdown = application.shutdown_handle();
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("Failed to build the HTTP client"),
        db,
        request_db,
        statements,
        reads,
        settings,
        clock,
        shutdown,
        postgres,
        _data_dir: data_dir,
    }
}

impl TestApp {
    /// POSTs one GraphQL operation and returns the JSON body.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        self.post_graphql(&json!({ "query": query, "variables": variables }))
            .await
            .json()
            .await
            .expect("GraphQL responses are JSON")
    }

    pub async fn post_graphql(&self, body: &Value) -> reqwest::Response {
        self.post_raw(body.to_string(), "application/json").await
    }

    /// POSTs one GraphQL operation with `Authorization: Bearer {token}`.
    pub async fn graphql_as(&self, token: &str, query: &str, variables: Value) -> Value {
        self.client
            .post(format!("{}/graphql", self.address))
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("Failed to reach the server")
            .json()
            .await
            .expect("GraphQL responses are JSON")
    }

    /// Signs up a company of `business_type` with an ADMIN `admin@{slug}.test`.
    pub async fn sign_up(&self, slug: &str, business_type: &str) -> Tenant {
        let email = format!("admin@{slug}.test");
        let body = self
            .graphql(
                SIGN_UP,
                json!({ "input": {
                    "companyName": format!("Company {slug}"), "companySlug": slug,
                    "businessType": business_type, "name": "Admin", "email": email,
                    "password": PASSWORD } }),
            )
            .await;
        let payload = &body["data"]["signUp"];
        assert!(payload.is_object(), "signUp failed: {body}");
        Tenant {
            company_id: text(&payload["company"]["id"]),
            admin_id: text(&payload["user"]["id"]),
            admin_email: email,
            access_token: text(&payload["accessToken"]),
            refresh_token: text(&payload["refreshToken"]),
        }
    }

    /// Invites `email` with `roles`; returns the invitation's id and its one-time token.
    pub async fn send_invitation(
        &self,
        admin_token: &str,
        email: &str,
        roles: &[&str],
    ) -> (String, String) {
        let body = self
            .graphql_as(
                admin_token,
                INVITE_MEMBER,
                json!({ "email": email, "roles": roles }),
            )
            .await;
        let created = &body["data"]["inviteMember"];
        assert!(created["token"].is_string(), "inviteMember failed: {body}");
        (text(&created["invitation"]["id"]), text(&created["token"]))
    }

    /// Invites a person who has no account yet and has them accept with the token and the test
    /// password, as a new colleague would; returns the new member's user id.
    pub async fn invite(&self, admin_token: &str, email: &str, roles: &[&str]) -> String {
        let (_, token) = self.send_invitation(admin_token, email, roles).await;
        let body = self.accept_with_token(&token, "Member").await;
        let id = &body["data"]["acceptInvitationWithToken"]["user"]["id"];
        assert!(id.is_string(), "acceptInvitationWithToken failed: {body}");
        text(id)
    }

    /// Invites the holder of an existing account, who accepts logged in (`invitee_token`).
    pub async fn invite_existing(
        &self,
        admin_token: &str,
        invitee_token: &str,
        email: &str,
        roles: &[&str],
    ) {
        let (id, _) = self.send_invitation(admin_token, email, roles).await;
        let body = self
            .graphql_as(
                invitee_token,
                "mutation A($id: ID!) { acceptInvitation(id: $id) { status } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(
            body["data"]["acceptInvitation"]["status"], "ACCEPTED",
            "acceptInvitation failed: {body}"
        );
    }

    /// Calls `acceptInvitationWithToken` with the test password; returns the whole response.
    pub async fn accept_with_token(&self, token: &str, name: &str) -> Value {
        self.graphql(
            ACCEPT_WITH_TOKEN,
            json!({ "input": { "token": token, "name": name, "password": PASSWORD } }),
        )
        .await
    }

    /// Stops this server as a restart would and starts a new one on the same database.
    pub async fn restart(mut self) -> TestApp {
        let postgres = self.postgres.take();
        let data_dir = self._data_dir.take();
        let mut settings = self.settings.clone();
        settings.bind = "127.0.0.1:0".parse().expect("valid address");
        let clock = self.clock.clone();
        self.shutdown.trigger();
        drop(self);
        tokio::time::sleep(Duration::from_millis(200)).await;
        start(settings, clock, postgres, data_dir).await
    }

    /// Stops the server (and its background workers) but keeps its database, for tests that
    /// run the binary against it.
    pub fn stop(&self) {
        self.shutdown.trigger();
    }

    /// `ws://…` of this server.
    pub fn ws_url(&self, path: &str) -> String {
        format!("{}{}", self.address.replacen("http://", "ws://", 1), path)
    }

    pub fn statement_count(&self) -> u64 {
        self.statements.load(Ordering::SeqCst)
    }

    /// Creates a customer and returns its id.
    pub async fn create_customer(&self, token: &str, name: &str) -> String {
        let body = self
            .graphql_as(
                token,
                "mutation C($name: String!) { createCustomer(input: { name: $name }) { id } }",
                json!({ "name": name }),
            )
            .await;
        text(&body["data"]["createCustomer"]["id"])
    }

    /// Creates a product priced `price_minor`, tracking `stock` when given; returns its id.
    pub async fn create_product(
        &self,
        token: &str,
        sku: &str,
        price_minor: i64,
        stock: Option<i32>,
    ) -> String {
        let body = self
            .graphql_as(
                token,
                "mutation P($input: CreateProductInput!) { createProduct(input: $input) { id } }",
                json!({ "input": { "sku": sku, "name": format!("Product {sku}"), "kind": "PRODUCT",
                    "priceMinor": price_minor, "trackStock": stock.is_some(), "stock": stock } }),
            )
            .await;
        assert!(
            body["data"]["createProduct"]["id"].is_string(),
            "createProduct: {body}"
        );
        text(&body["data"]["createProduct"]["id"])
    }

    /// Calls `createOrder` and returns the whole response.
    pub async fn create_order(&self, token: &str, customer: &str, items: &[(&str, i32)]) -> Value {
        let items: Vec<Value> = items
            .iter()
            .map(|(product, quantity)| json!({ "productId": product, "quantity": quantity }))
            .collect();
        self.graphql_as(
            token,
            "mutation O($input: CreateOrderInput!) { createOrder(input: $input) {
                id number status version total { amountMinor currency formatted } } }",
            json!({ "input": { "customerId": customer, "items": items } }),
        )
        .await
    }

    /// Calls `transitionOrder` and returns the whole response.
    pub async fn transition(
        &self,
        token: &str,
        order: &str,
        to: &str,
        expected_version: Option<i64>,
    ) -> Value {
        self.graphql_as(
            token,
            "mutation T($input: TransitionOrderInput!) { transitionOrder(input: $input) { status version } }",
            json!({ "input": { "orderId": order, "to": to, "expectedVersion": expected_version } }),
        )
        .await
    }

    /// Logs in and returns the access token.
    pub async fn login(&self, email: &str, company_slug: Option<&str>) -> String {
        let body = self
            .graphql(
                LOGIN,
                json!({ "input": { "email": email, "password": PASSWORD, "companySlug": company_slug } }),
            )
            .await;
        let token = &body["data"]["login"]["accessToken"];
        assert!(token.is_string(), "login failed: {body}");
        text(token)
    }

    pub async fn post_raw(
        &self,
        body: impl Into<reqwest::Body>,
        content_type: &str,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}/graphql", self.address))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("Failed to reach the server")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{}", self.address, path))
            .send()
            .await
            .expect("Failed to reach the server")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(database) = self.postgres.take() {
            database.drop_blocking();
        }
    }
}

/// Serves `router` on a free loopback port, for as long as the test runs: a provider or a
/// receiver the test plays. Returns its base URL (`http://127.0.0.1:port`).
pub async fn serve_router(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let base_url = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    base_url
}

/// The company's events of `types` once there are at least `count` of them (the relay numbers
/// them a moment after their transaction), within 5 s.
pub async fn events_of(app: &TestApp, token: &str, types: &[&str], count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let events = app
            .graphql_as(
                token,
                "query E($types: [String!]) { events(types: $types) { edges { node { type payload } } } }",
                json!({ "types": types }),
            )
            .await;
        let nodes: Vec<Value> = events["data"]["events"]["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("{events}"))
            .iter()
            .map(|edge| edge["node"].clone())
            .collect();
        if nodes.len() >= count {
            return nodes;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than {count} events of {types:?}: {events}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
        .to_string()
}

/// The `extensions.code` of the first error of a GraphQL response.
pub fn first_error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a code, got {body}"))
}

/// A fresh PostgreSQL database cloned from a template that holds the migrated schema.
struct PostgresDatabase {
    admin_url: String,
    name: String,
    url: String,
}

/// Serialises template creation across test processes running at once.
const TEMPLATE_LOCK: i64 = 7_245_001;

impl PostgresDatabase {
    async fn create(admin_url: &str) -> Self {
        let admin = connect_single(admin_url).await;
        let template = template_name();
        admin
            .execute_unprepared(&format!("SELECT pg_advisory_lock({TEMPLATE_LOCK})"))
            .await
            .expect("Failed to take the template lock");
        let exists = admin
            .query_one_raw(sea_orm::Statement::from_string(
                admin.get_database_backend(),
                format!("SELECT 1 FROM pg_database WHERE datname = '{template}'"),
            ))
            .await
            .expect("Failed to look for the template database")
            .is_some();
        if !exists {
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{template}\""))
                .await
                .expect("Failed to create the template database");
            let template_db = connect_single(&with_database(admin_url, &template)).await;
            migration::Migrator::up(&template_db, None)
                .await
                .expect("Failed to migrate the template database");
            template_db
                .close()
                .await
                .expect("Failed to close the template");
        }
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
            ))
            .await
            .expect("Failed to create the test database");
        admin
            .execute_unprepared(&format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK})"))
            .await
            .expect("Failed to release the template lock");
        admin.close().await.ok();
        Self {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_string(),
            name,
        }
    }

    /// Drop runs outside async code, so the database is dropped on a thread of its own.
    fn drop_blocking(self) {
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("Failed to build a runtime");
            runtime.block_on(async {
                let admin = connect_single(&self.admin_url).await;
                admin
                    .execute_unprepared(&format!(
                        "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                        self.name
                    ))
                    .await
                    .ok();
                admin.close().await.ok();
            });
        });
        handle.join().ok();
    }
}

/// Named after the migrations, so adding one builds a new template.
/// Named after the migrations' source, so a changed migration gets a fresh template instead
/// of one migrated by its earlier text.
fn template_name() -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let sources = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migration/src");
    let mut files: Vec<_> = std::fs::read_dir(&sources)
        .expect("the migration sources are readable")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    files.sort();
    for file in files {
        std::fs::read(&file)
            .expect("a migration source is readable")
            .hash(&mut hasher);
    }
    format!("platform_template_{:016x}", hasher.finish())
}

async fn connect_single(url: &str) -> DatabaseConnection {
    let mut options = ConnectOptions::new(url.to_string());
    options
        .max_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    Database::connect(options)
        .await
        .unwrap_or_else(|error| panic!("TEST_DATABASE_URL is set but unreachable: {error}"))
}

fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(slash) if slash > base.find("://").map_or(0, |scheme| scheme + 2) => &base[..slash],
        _ => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// An HS256 JWT signed with `secret`, for tests that need tokens the server would not issue.
pub fn forge(secret: &str, header: Value, claims: Value) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use hmac::{Hmac, Mac};
    let head = URL_SAFE_NO_PAD.encode(header.to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(format!("{head}.{body}").as_bytes());
    format!(
        "{head}.{body}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// Whether the tests run against shared PostgreSQL and Redis, where several instances can work
/// as one; on the embedded default a single instance runs everything.
pub fn shared_infrastructure() -> bool {
    let set = |name| std::env::var(name).is_ok_and(|url: String| !url.is_empty());
    set("TEST_DATABASE_URL") && set("TEST_REDIS_URL")
}

/// For the tests marked `#[ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL"]`: run with
/// `--include-ignored` but without the variables, they fail instead of passing unchecked.
pub fn require_shared_infrastructure() {
    assert!(
        shared_infrastructure(),
        "this test needs TEST_DATABASE_URL and TEST_REDIS_URL (PostgreSQL and Redis)"
    );
}

// Real-time clients, shared by the realtime and sockets tests.

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a socket produced within a time limit.
#[derive(Debug)]
pub enum Received {
    Json(Value),
    Closed(u16),
    Nothing,
}

pub async fn receive(socket: &mut Socket, within: Duration) -> Received {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let next = tokio::time::timeout_at(deadline, socket.next()).await;
        match next {
            Err(_) => return Received::Nothing,
            Ok(None) => return Received::Closed(0),
            Ok(Some(Err(_))) => return Received::Closed(0),
            Ok(Some(Ok(Message::Text(text)))) => {
                return Received::Json(serde_json::from_str(&text).unwrap_or(Value::Null));
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Received::Closed(frame.map(|frame| u16::from(frame.code)).unwrap_or(0));
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// A graphql-transport-ws connection after `connection_init` with `token`.
pub async fn graphql_ws(app: &TestApp, token: &str) -> (Socket, Received) {
    let mut request = app
        .ws_url("/graphql/ws")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) = connect_async(request).await.expect("the upgrade succeeds");
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    socket
        .send(Message::text(init.to_string()))
        .await
        .expect("sends");
    let ack = receive(&mut socket, Duration::from_secs(5)).await;
    (socket, ack)
}

pub async fn subscribe(app: &TestApp, token: &str, query: &str, variables: Value) -> Socket {
    let (mut socket, ack) = graphql_ws(app, token).await;
    assert!(
        matches!(&ack, Received::Json(message) if message["type"] == "connection_ack"),
        "{ack:?}"
    );
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": variables } });
    socket
        .send(Message::text(subscribe.to_string()))
        .await
        .expect("sends");
    // The subscription is registered when the server has read the message; give it a moment.
    tokio::time::sleep(Duration::from_millis(150)).await;
    socket
}

/// The next status change of an order, skipping its creation (which may still be on its way).
pub async fn next_status_change(socket: &mut Socket, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = next_event(socket, left).await?;
        if event["orderEvents"]["type"] == "order.status_changed" {
            return Some(event);
        }
    }
}

/// The next `next` payload's data, skipping pings.
pub async fn next_event(socket: &mut Socket, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match receive(socket, left).await {
            Received::Json(message) if message["type"] == "next" => {
                return Some(message["payload"]["data"].clone());
            }
            Received::Json(message) if message["type"] == "ping" => {
                socket.send(Message::text(r#"{"type":"pong"}"#)).await.ok();
            }
            Received::Json(message) => panic!("unexpected message {message}"),
            _ => return None,
        }
    }
}

pub const ORDER_EVENTS: &str = "subscription S($orderId: ID) { orderEvents(orderId: $orderId) {
    type aggregateId sequence payload } }";

/// A Socket.IO v4 client speaking the wire protocol (Engine.IO 4 over WebSocket).
pub async fn socketio(app: &TestApp, token: &str) -> (Socket, Value) {
    let (mut socket, _) = connect_async(app.ws_url("/socket.io/?EIO=4&transport=websocket"))
        .await
        .expect("the upgrade succeeds");
    let open = socket.next().await.expect("open packet").expect("ok");
    assert!(
        open.to_text().unwrap_or_default().starts_with('0'),
        "{open:?}"
    );
    let connect = format!("40{}", json!({ "token": token }));
    socket.send(Message::text(connect)).await.expect("sends");
    let answer = socketio_packet(&mut socket, Duration::from_secs(5)).await;
    (socket, answer)
}

/// The next Socket.IO packet as `[type, data]` (`["disconnect"]` when the server disconnects
/// the socket, `["closed"]` when the connection ends), answering Engine.IO pings on the way;
/// `null` when nothing came `within`.
pub async fn socketio_packet(socket: &mut Socket, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let message = match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return Value::Null,
            Ok(Some(Ok(Message::Close(_))) | Some(Err(_)) | None) => return json!(["closed"]),
            Ok(Some(Ok(message))) => message,
        };
        let Ok(text) = message.to_text() else {
            continue;
        };
        if text == "2" {
            socket.send(Message::text("3")).await.ok();
            continue;
        }
        if let Some(body) = text.strip_prefix("40") {
            return json!([
                "connect",
                serde_json::from_str::<Value>(body).unwrap_or(Value::Null)
            ]);
        }
        if let Some(body) = text.strip_prefix("44") {
            return json!([
                "connect_error",
                serde_json::from_str::<Value>(body).unwrap_or(Value::Null)
            ]);
        }
        if text == "41" {
            return json!(["disconnect"]);
        }
        if let Some(body) = text.strip_prefix("42") {
            return json!([
                "event",
                serde_json::from_str::<Value>(body).unwrap_or(Value::Null)
            ]);
        }
    }
}

/// A `redis-server` of the test's own on a free port, for tests that stop, restart or kill its
/// clients (the shared Redis is never touched). Killed on drop.
pub struct RedisServer {
    pub port: u16,
    process: Option<std::process::Child>,
}

impl RedisServer {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self {
            port,
            process: None,
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port, with nothing persisted; returns once it answers.
    pub async fn restart(&mut self) {
        assert!(self.process.is_none(), "the Redis server is running");
        let process = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.process = Some(process);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().ok();
            process.wait().ok();
        }
    }

    /// Runs one command with `redis-cli`; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli is installed");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// For the tests marked `#[ignore = "needs TEST_DATABASE_URL"]` that need PostgreSQL alone: run
/// with `--include-ignored` but without it, they fail instead of passing unchecked.
pub fn require_postgres() {
    assert!(
        std::env::var("TEST_DATABASE_URL").is_ok_and(|url| !url.is_empty()),
        "this test needs TEST_DATABASE_URL (PostgreSQL)"
    );
}

impl TestApp {
    /// A connection of the database's owner (the URL's user), for what the server's roles may
    /// not do, such as changing the schema.
    pub async fn owner_db(&self) -> DatabaseConnection {
        connect_single(&self.settings.database_url()).await
    }
}
