//! Settings: built-in defaults, then an optional TOML file, then environment variables.
//!
//! Secrets never have a compiled-in default. On the embedded default a JWT secret is generated
//! once and kept in the data directory with mode 0600; in production a missing secret is a
//! startup error that names the variable to set.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use serde::Deserialize;

/// Where the server runs; production tightens every default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

impl Environment {
    fn parse(value: &str) -> anyhow::Result<Self> {
        match value.to_ascii_lowercase().as_str() {
            "development" | "dev" | "local" => Ok(Self::Development),
            "production" | "prod" => Ok(Self::Production),
            other => bail!("PLATFORM_ENV must be `development` or `production`, not `{other}`"),
        }
    }
}

/// A secret that never shows up in `Debug` output or logs.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Limits that keep one GraphQL request from costing the server more than it is worth.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GraphqlLimits {
    /// Deepest selection nesting accepted.
    pub max_depth: usize,
    /// Highest summed field complexity accepted.
    pub max_complexity: usize,
    /// Most fields carrying an alias in one document.
    pub max_aliases: usize,
    /// Most fields selected at the root of one operation.
    pub max_root_fields: usize,
    /// Most operations in one batched request.
    pub max_batch: usize,
}

impl Default for GraphqlLimits {
    fn default() -> Self {
        Self {
            max_depth: 15,
            max_complexity: 5_000,
            max_aliases: 30,
            max_root_fields: 20,
            max_batch: 10,
        }
    }
}

/// Rate limits: the seed figures of the product, all adjustable.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    /// Failed logins per account in one window; then the account's logins are refused until
    /// the window ends.
    pub login_attempts: u32,
    pub login_window_secs: u64,
    /// Failed logins per client address in one window, whatever the accounts.
    pub login_failures_per_address: u32,
    /// Successful logins per client address in one window: generous, since many people may
    /// share one address (an office behind NAT).
    pub login_successes_per_address: u32,
    /// Sign-ups per client address in one window.
    pub signups: u32,
    pub signup_window_secs: u64,
    /// Token refreshes per client address in one window.
    pub refreshes: u32,
    pub refresh_window_secs: u64,
    /// GraphQL operations per actor in one window, unless the company sets its own.
    pub api_calls: u32,
    pub api_window_secs: u64,
    /// Invitations one company may send in one window (`inviteMember`).
    pub invitations: u32,
    pub invitation_window_secs: u64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            login_attempts: 5,
            login_window_secs: 15 * 60,
            login_failures_per_address: 50,
            login_successes_per_address: 500,
            signups: 10,
            signup_window_secs: 60 * 60,
            refreshes: 60,
            refresh_window_secs: 15 * 60,
            api_calls: 100,
            api_window_secs: 15 * 60,
            invitations: 30,
            invitation_window_secs: 60 * 60,
        }
    }
}

/// Outgoing webhooks: retries, timeouts and the address guard.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// Delay before each attempt, the first included; after the last failure the delivery is
    /// dead-lettered. `PLATFORM_WEBHOOK_RETRY_SCHEDULE=0s,5s,5m,30m,2h,5h,10h,10h`.
    #[serde(with = "duration_list")]
    pub retry_schedule: Vec<Duration>,
    /// Networks (CIDRs) webhook endpoints and a company's notification providers may resolve
    /// to although they are not public, for local development and tests; nothing else is
    /// exempt from the guard.
    pub allowed_networks: Vec<String>,
    /// Connect and response deadline of one attempt.
    pub timeout_secs: u64,
    /// An endpoint failing without a single success for this long is disabled.
    pub disable_after_secs: u64,
    /// How long the secret replaced by `rotateWebhookSecret` keeps signing.
    pub rotation_grace_secs: u64,
    /// Attempts in flight per instance, and per endpoint per instance.
    pub max_in_flight: usize,
    pub max_in_flight_per_endpoint: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            retry_schedule: [0, 5, 300, 1800, 7200, 18_000, 36_000, 36_000]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            allowed_networks: Vec::new(),
            timeout_secs: 10,
            disable_after_secs: 5 * 24 * 3600,
            rotation_grace_secs: 24 * 3600,
            max_in_flight: 256,
            max_in_flight_per_endpoint: 16,
        }
    }
}

impl WebhookSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// How long a claimed delivery stays claimed: the attempt's deadline plus time to record
    /// it. A worker that dies mid-attempt loses its claim after this, and the delivery goes out
    /// again with the same `webhook-id`.
    pub fn lease(&self) -> Duration {
        self.timeout() + Duration::from_secs(5)
    }

    pub fn allowed_networks(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        parse_networks("PLATFORM_WEBHOOK_ALLOWED_NETWORKS", &self.allowed_networks)
    }
}

/// A count of at least 1 from the variable `name`.
fn parse_count(name: &str, value: &str) -> anyhow::Result<usize> {
    match value.parse::<usize>() {
        Ok(count) if count >= 1 => Ok(count),
        _ => anyhow::bail!("{name} must be a whole number of at least 1, not `{value}`"),
    }
}

/// How often a notification is handed to its provider after retryable failures: exponential
/// backoff from `first_delay` up to `max_delay`, `max_attempts` in all
/// ([`NOTIFICATION_ATTEMPTS`]), then dead-lettered.
/// `PLATFORM_NOTIFICATION_RETRY_WHATSAPP=8,10s,1h` (attempts, first delay, longest delay).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct NotificationRetry {
    pub max_attempts: u32,
    #[serde(with = "duration_text")]
    pub first_delay: Duration,
    #[serde(with = "duration_text")]
    pub max_delay: Duration,
}

/// The attempts a channel's retry schedule may allow. The send job's queue allows as many as
/// the longest schedule, so this also bounds how long a notification can stay queued.
pub const NOTIFICATION_ATTEMPTS: std::ops::RangeInclusive<u32> = 1..=20;

impl NotificationRetry {
    fn parse(variable: &str, value: &str) -> anyhow::Result<Self> {
        let parts = split_list(value);
        let [attempts, first, max] = parts.as_slice() else {
            bail!(
                "{variable} must be `attempts,first delay,longest delay` like `8,10s,1h`, not `{value}`"
            );
        };
        Ok(Self {
            max_attempts: attempts
                .parse()
                .with_context(|| format!("{variable}: `{attempts}` is not a number of attempts"))?,
            first_delay: parse_duration(first).with_context(|| variable.to_string())?,
            max_delay: parse_duration(max).with_context(|| variable.to_string())?,
        })
    }
}

/// Notifications: the server's default email sender and the retry schedule of each channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct NotificationSettings {
    /// SMTP server for companies without their own email configuration,
    /// `smtp://user:password@host:587` (STARTTLS), `smtps://…` (TLS) or `smtp://host:25?tls=none`.
    pub smtp_url: Option<Secret>,
    /// `Name <address>` the default SMTP server sends from.
    pub smtp_from: Option<String>,
    pub email_retry: NotificationRetry,
    pub whatsapp_retry: NotificationRetry,
    pub sms_retry: NotificationRetry,
    /// Timeout of one request to a provider.
    pub provider_timeout_secs: u64,
    /// Messages one WhatsApp configuration (an Evolution instance, a Cloud API number) is
    /// given at once by each instance of the server.
    pub whatsapp_concurrency: usize,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        let retry = NotificationRetry {
            max_attempts: 8,
            first_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(3600),
        };
        Self {
            smtp_url: None,
            smtp_from: None,
            email_retry: retry,
            whatsapp_retry: retry,
            sms_retry: retry,
            provider_timeout_secs: 15,
            whatsapp_concurrency: 4,
        }
    }
}

/// Everything the server needs to start. Build it with [`Settings::load`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub environment: Environment,
    /// Address the HTTP server binds; port 0 picks a free one.
    pub bind: SocketAddr,
    /// Directory for the SQLite database and generated secrets on the embedded default.
    pub data_dir: PathBuf,
    /// PostgreSQL or SQLite URL; `None` means SQLite at `{data_dir}/platform.db`.
    pub database_url: Option<String>,
    /// Connections of the PostgreSQL pool list pages read through, several statements per
    /// round trip (see `db::rows`). PostgreSQL answers more of them with a few busy
    /// connections than with many: a handful per database core.
    pub database_list_connections: usize,
    /// Redis URL; `None` keeps everything in-process.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel, so several deployments can share one Redis.
    pub redis_namespace: String,
    /// HS256 signing secret for access tokens.
    pub jwt_secret: Option<Secret>,
    /// How long a just-rotated refresh token still answers with its successor instead of
    /// counting as reuse (two tabs refreshing at once).
    pub refresh_grace_secs: u64,
    /// Bearer token `/metrics` requires when set; without it `/metrics` is open to anyone who
    /// reaches the port.
    pub metrics_token: Option<Secret>,
    /// A separate listen address for `/metrics` (then not served on `bind`), so that it can stay
    /// on an internal interface.
    pub metrics_bind: Option<SocketAddr>,
    /// Serve GraphiQL on `GET /graphql`; defaults to on outside production.
    pub graphiql: Option<bool>,
    /// Answer introspection queries; defaults to on outside production.
    pub introspection: Option<bool>,
    /// Origins allowed by CORS; `*` allows any. Empty: no cross-origin access.
    pub cors_origins: Vec<String>,
    /// Longest a request may take before it is answered with 408.
    pub request_timeout_secs: u64,
    /// Largest request body accepted (413 above it).
    pub body_limit_bytes: usize,
    /// `json` or `pretty`; defaults to JSON in production.
    pub log_format: Option<String>,
    pub graphql: GraphqlLimits,
    /// Whether anyone may create a company with `signUp`.
    pub signup_enabled: bool,
    /// Proxies (CIDRs) whose `X-Forwarded-For` is believed; nobody else's is.
    pub trusted_proxies: Vec<String>,
    pub rate_limits: RateLimitSettings,
    /// AES-256-GCM key (base64 of 32 bytes) for secrets stored in the database.
    pub encryption_key: Option<Secret>,
    pub webhooks: WebhookSettings,
    /// The address people reach this server at (`https://api.example.com`), for the links in
    /// notifications; `http://{bind}` when unset.
    pub public_url: Option<String>,
    /// HMAC secret of the unsubscribe links in notifications (at least 32 characters).
    pub unsubscribe_secret: Option<Secret>,
    /// Base URL of Stripe's API; a local server in tests.
    pub stripe_api_base: String,
    pub notifications: NotificationSettings,
    /// Jobs the background runtime of each instance runs at once (notifications, automation
    /// rules, sweeps; webhooks have their own, `webhooks.max_in_flight`).
    pub jobs_max_in_flight: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            environment: Environment::Development,
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            database_url: None,
            database_list_connections: 8,
            redis_url: None,
            redis_namespace: "platform".into(),
            jwt_secret: None,
            public_url: None,
            unsubscribe_secret: None,
            refresh_grace_secs: 10,
            metrics_token: None,
            metrics_bind: None,
            graphiql: None,
            introspection: None,
            cors_origins: Vec::new(),
            request_timeout_secs: 30,
            body_limit_bytes: 1024 * 1024,
            log_format: None,
            graphql: GraphqlLimits::default(),
            signup_enabled: true,
            trusted_proxies: Vec::new(),
            rate_limits: RateLimitSettings::default(),
            encryption_key: None,
            webhooks: WebhookSettings::default(),
            stripe_api_base: "https://api.stripe.com".into(),
            notifications: NotificationSettings::default(),
            jobs_max_in_flight: 64,
        }
    }
}

/// Reads one environment variable; the indirection lets tests feed a map instead.
pub trait EnvSource {
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|value| !value.is_empty())
    }
}

impl<const N: usize> EnvSource for [(&str, &str); N] {
    fn get(&self, key: &str) -> Option<String> {
        self.iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| (*value).to_string())
            .filter(|value| !value.is_empty())
    }
}

impl Settings {
    /// Defaults, then `PLATFORM_CONFIG` (or `platform.toml` when present), then the environment.
    pub fn load() -> anyhow::Result<Self> {
        Self::load_from(&ProcessEnv)
    }

    pub fn load_from(env: &impl EnvSource) -> anyhow::Result<Self> {
        let explicit_file = env.get("PLATFORM_CONFIG").map(PathBuf::from);
        let file = explicit_file
            .clone()
            .unwrap_or_else(|| PathBuf::from("platform.toml"));
        let mut settings = if file.exists() {
            Self::from_file(&file)?
        } else if let Some(missing) = explicit_file {
            bail!(
                "PLATFORM_CONFIG points to {}, which does not exist",
                missing.display()
            );
        } else {
            Self::default()
        };
        settings.apply_env(env)?;
        Ok(settings)
    }

    fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("Failed to read configuration file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("Failed to parse configuration file {}", path.display()))
    }

    fn apply_env(&mut self, env: &impl EnvSource) -> anyhow::Result<()> {
        if let Some(value) = env.get("PLATFORM_ENV") {
            self.environment = Environment::parse(&value)?;
        }
        if let Some(value) = env.get("PLATFORM_BIND") {
            self.bind = value
                .parse()
                .with_context(|| format!("PLATFORM_BIND must be host:port, not `{value}`"))?;
        }
        if let Some(value) = env.get("PLATFORM_DATA_DIR") {
            self.data_dir = PathBuf::from(value);
        }
        if let Some(value) = env.get("DATABASE_URL") {
            self.database_url = Some(value);
        }
        if let Some(value) = env.get("REDIS_URL") {
            self.redis_url = Some(value);
        }
        if let Some(value) = env.get("PLATFORM_REDIS_NAMESPACE") {
            self.redis_namespace = value;
        }
        if let Some(value) = env.get("PLATFORM_JWT_SECRET") {
            self.jwt_secret = Some(Secret::new(value));
        }
        if let Some(value) = env.get("PLATFORM_PUBLIC_URL") {
            self.public_url = Some(value);
        }
        if let Some(value) = env.get("PLATFORM_UNSUBSCRIBE_SECRET") {
            self.unsubscribe_secret = Some(Secret::new(value));
        }
        if let Some(value) = env.get("PLATFORM_REFRESH_GRACE_SECS") {
            self.refresh_grace_secs = value.parse().with_context(|| {
                format!("PLATFORM_REFRESH_GRACE_SECS must be a number of seconds, not `{value}`")
            })?;
        }
        if let Some(value) = env.get("PLATFORM_METRICS_TOKEN") {
            self.metrics_token = Some(Secret::new(value));
        }
        if let Some(value) = env.get("PLATFORM_METRICS_BIND") {
            self.metrics_bind = Some(value.parse().with_context(|| {
                format!("PLATFORM_METRICS_BIND must be host:port, not `{value}`")
            })?);
        }
        if let Some(value) = env.get("PLATFORM_GRAPHIQL") {
            self.graphiql = Some(parse_bool("PLATFORM_GRAPHIQL", &value)?);
        }
        if let Some(value) = env.get("PLATFORM_INTROSPECTION") {
            self.introspection = Some(parse_bool("PLATFORM_INTROSPECTION", &value)?);
        }
        if let Some(value) = env.get("PLATFORM_CORS_ORIGINS") {
            self.cors_origins = split_list(&value);
        }
        if let Some(value) = env.get("PLATFORM_DATABASE_LIST_CONNECTIONS") {
            self.database_list_connections = value.parse().with_context(|| {
                format!("PLATFORM_DATABASE_LIST_CONNECTIONS must be a number, not `{value}`")
            })?;
        }
        if let Some(value) = env.get("PLATFORM_REQUEST_TIMEOUT_SECS") {
            self.request_timeout_secs = value.parse().with_context(|| {
                format!("PLATFORM_REQUEST_TIMEOUT_SECS must be a number of seconds, not `{value}`")
            })?;
        }
        if let Some(value) = env.get("PLATFORM_SIGNUP_ENABLED") {
            self.signup_enabled = parse_bool("PLATFORM_SIGNUP_ENABLED", &value)?;
        }
        if let Some(value) = env.get("PLATFORM_TRUSTED_PROXIES") {
            self.trusted_proxies = split_list(&value);
        }
        if let Some(value) = env.get("PLATFORM_API_RATE_LIMIT") {
            self.rate_limits.api_calls = value.parse().with_context(|| {
                format!(
                    "PLATFORM_API_RATE_LIMIT must be a number of calls per window, not `{value}`"
                )
            })?;
        }
        if let Some(value) = env.get("PLATFORM_ENCRYPTION_KEY") {
            self.encryption_key = Some(Secret::new(value));
        }
        if let Some(value) = env.get("PLATFORM_WEBHOOK_RETRY_SCHEDULE") {
            self.webhooks.retry_schedule = split_list(&value)
                .iter()
                .map(|item| parse_duration(item))
                .collect::<Result<_, _>>()
                .with_context(|| format!("PLATFORM_WEBHOOK_RETRY_SCHEDULE must list delays like `0s,5s,5m,2h`, not `{value}`"))?;
        }
        if let Some(value) = env.get("PLATFORM_WEBHOOK_ALLOWED_NETWORKS") {
            self.webhooks.allowed_networks = split_list(&value);
        }
        if let Some(value) = env.get("PLATFORM_WEBHOOK_TIMEOUT_SECS") {
            self.webhooks.timeout_secs = value.parse().with_context(|| {
                format!("PLATFORM_WEBHOOK_TIMEOUT_SECS must be a number of seconds, not `{value}`")
            })?;
        }
        if let Some(value) = env.get("PLATFORM_WEBHOOK_DISABLE_AFTER") {
            self.webhooks.disable_after_secs = parse_duration(&value)
                .with_context(|| {
                    format!(
                        "PLATFORM_WEBHOOK_DISABLE_AFTER must be a duration like `5d`, not `{value}`"
                    )
                })?
                .as_secs();
        }
        if let Some(value) = env.get("PLATFORM_STRIPE_API_BASE") {
            self.stripe_api_base = value.trim_end_matches('/').to_string();
        }
        if let Some(value) = env.get("PLATFORM_SMTP_URL") {
            self.notifications.smtp_url = Some(Secret::new(value));
        }
        if let Some(value) = env.get("PLATFORM_SMTP_FROM") {
            self.notifications.smtp_from = Some(value);
        }
        if let Some(value) = env.get("PLATFORM_JOBS_MAX_IN_FLIGHT") {
            self.jobs_max_in_flight = parse_count("PLATFORM_JOBS_MAX_IN_FLIGHT", &value)?;
        }
        if let Some(value) = env.get("PLATFORM_WHATSAPP_CONCURRENCY") {
            self.notifications.whatsapp_concurrency =
                parse_count("PLATFORM_WHATSAPP_CONCURRENCY", &value)?;
        }
        if let Some(value) = env.get("PLATFORM_NOTIFICATION_PROVIDER_TIMEOUT_SECS") {
            self.notifications.provider_timeout_secs = value.parse().with_context(|| {
                format!("PLATFORM_NOTIFICATION_PROVIDER_TIMEOUT_SECS must be a number of seconds, not `{value}`")
            })?;
        }
        for (variable, retry) in [
            (
                "PLATFORM_NOTIFICATION_RETRY_EMAIL",
                &mut self.notifications.email_retry,
            ),
            (
                "PLATFORM_NOTIFICATION_RETRY_WHATSAPP",
                &mut self.notifications.whatsapp_retry,
            ),
            (
                "PLATFORM_NOTIFICATION_RETRY_SMS",
                &mut self.notifications.sms_retry,
            ),
        ] {
            if let Some(value) = env.get(variable) {
                *retry = NotificationRetry::parse(variable, &value)?;
            }
        }
        if let Some(value) = env.get("PLATFORM_LOG_FORMAT") {
            self.log_format = Some(value);
        }
        Ok(())
    }

    /// The trusted proxy networks, parsed.
    pub fn trusted_proxy_networks(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        parse_networks("PLATFORM_TRUSTED_PROXIES", &self.trusted_proxies)
    }

    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }

    pub fn graphiql_enabled(&self) -> bool {
        self.graphiql.unwrap_or(!self.is_production())
    }

    pub fn introspection_enabled(&self) -> bool {
        self.introspection.unwrap_or(!self.is_production())
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    pub fn json_logs(&self) -> bool {
        match self.log_format.as_deref() {
            Some(format) => format.eq_ignore_ascii_case("json"),
            None => self.is_production(),
        }
    }

    /// The database URL, defaulting to SQLite under the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("platform.db").display()
            ),
        }
    }

    pub fn uses_embedded_database(&self) -> bool {
        self.database_url().starts_with("sqlite:")
    }

    /// The JWT secret: configured, or (outside production) generated once into the data directory.
    pub fn resolve_jwt_secret(&self) -> anyhow::Result<Secret> {
        if let Some(secret) = &self.jwt_secret {
            if secret.expose().len() < 32 {
                bail!("PLATFORM_JWT_SECRET must be at least 32 characters long");
            }
            return Ok(secret.clone());
        }
        if self.is_production() {
            bail!(
                "PLATFORM_JWT_SECRET is not set: production requires a signing secret of at least 32 characters \
                 (e.g. `openssl rand -base64 48`)"
            );
        }
        load_or_create_secret_file(&self.data_dir.join("jwt_secret"), || {
            crate::auth::random_token(48)
        })
    }

    /// Where links in notifications point: `PLATFORM_PUBLIC_URL`, or this server's bind address.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.bind))
    }

    /// The secret that signs unsubscribe links: configured, or (outside production) generated
    /// once into the data directory. Changing it invalidates the links already sent.
    pub fn resolve_unsubscribe_secret(&self) -> anyhow::Result<Secret> {
        if let Some(secret) = &self.unsubscribe_secret {
            if secret.expose().len() < 32 {
                bail!("PLATFORM_UNSUBSCRIBE_SECRET must be at least 32 characters long");
            }
            return Ok(secret.clone());
        }
        if self.is_production() {
            bail!(
                "PLATFORM_UNSUBSCRIBE_SECRET is not set: production requires a secret of at least 32 characters \
                 for the unsubscribe links (e.g. `openssl rand -base64 48`)"
            );
        }
        load_or_create_secret_file(&self.data_dir.join("unsubscribe_secret"), || {
            crate::auth::random_token(48)
        })
    }

    /// The key that encrypts stored secrets: configured, or (outside production) generated
    /// once into the data directory. Losing it makes stored webhook and provider secrets
    /// unreadable, so production must set it explicitly and back it up.
    pub fn resolve_encryption_key(&self) -> anyhow::Result<crate::crypto::SecretBox> {
        if let Some(key) = &self.encryption_key {
            return crate::crypto::SecretBox::from_base64(key.expose());
        }
        if self.is_production() {
            bail!(
                "PLATFORM_ENCRYPTION_KEY is not set: production requires a 32-byte key, base64-encoded \
                 (e.g. `openssl rand -base64 32`)"
            );
        }
        let key = load_or_create_secret_file(
            &self.data_dir.join("encryption_key"),
            crate::crypto::SecretBox::generate_key,
        )?;
        crate::crypto::SecretBox::from_base64(key.expose())
    }

    /// Refuses settings that are unsafe in production, naming what to change.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.trusted_proxy_networks()?;
        self.webhooks.allowed_networks()?;
        if self.webhooks.retry_schedule.is_empty() {
            bail!("PLATFORM_WEBHOOK_RETRY_SCHEDULE needs at least one delay");
        }
        if self.database_list_connections == 0 {
            bail!("PLATFORM_DATABASE_LIST_CONNECTIONS must be at least 1");
        }
        if self
            .metrics_token
            .as_ref()
            .is_some_and(|token| token.expose().len() < 16)
        {
            bail!("PLATFORM_METRICS_TOKEN must be at least 16 characters long");
        }
        if self.graphql.max_batch == 0 || self.graphql.max_depth == 0 {
            bail!("graphql.max_batch and graphql.max_depth must be at least 1");
        }
        let notifications = &self.notifications;
        for (channel, retry) in [
            ("EMAIL", &notifications.email_retry),
            ("WHATSAPP", &notifications.whatsapp_retry),
            ("SMS", &notifications.sms_retry),
        ] {
            if !NOTIFICATION_ATTEMPTS.contains(&retry.max_attempts) {
                bail!(
                    "PLATFORM_NOTIFICATION_RETRY_{channel} must allow {} to {} attempts, not {}",
                    NOTIFICATION_ATTEMPTS.start(),
                    NOTIFICATION_ATTEMPTS.end(),
                    retry.max_attempts
                );
            }
        }
        if self.is_production() {
            self.resolve_jwt_secret()?;
            self.resolve_encryption_key()?;
            self.resolve_unsubscribe_secret()?;
            if self.database_url.is_none() {
                bail!(
                    "DATABASE_URL is not set: production runs on PostgreSQL (postgres://user:password@host/db)"
                );
            }
            if self.cors_origins.iter().any(|origin| origin == "*") {
                bail!(
                    "PLATFORM_CORS_ORIGINS=* is refused in production: list the front ends' origins"
                );
            }
        }
        Ok(())
    }
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(String::from)
        .collect()
}

fn parse_networks(variable: &str, items: &[String]) -> anyhow::Result<Vec<ipnet::IpNet>> {
    items
        .iter()
        .map(|cidr| {
            cidr.parse::<ipnet::IpNet>()
                .or_else(|_| cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .with_context(|| {
                    format!("{variable} holds `{cidr}`, which is not an address or CIDR")
                })
        })
        .collect()
}

/// `250ms`, `5s`, `5m`, `2h` or `5d`.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .with_context(|| format!("`{text}` has no unit (ms, s, m, h or d)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("`{text}` does not start with a number"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => bail!("`{other}` is not a unit: use ms, s, m, h or d"),
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

mod duration_list {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|item| super::parse_duration(item).map_err(D::Error::custom))
            .collect()
    }
}

mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        super::parse_duration(&String::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

fn parse_bool(name: &str, value: &str) -> anyhow::Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => bail!("{name} must be true or false, not `{value}`"),
    }
}

/// Reads a generated secret, or creates it with mode 0600 so only the server's user can read it.
pub fn load_or_create_secret_file(
    path: &Path,
    generate: impl FnOnce() -> String,
) -> anyhow::Result<Secret> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim();
        if !existing.is_empty() {
            return Ok(Secret::new(existing));
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("Failed to create data directory {}", dir.display()))?;
    }
    let secret = generate();
    write_private_file(path, &secret)
        .with_context(|| format!("Failed to write generated secret to {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a new secret");
    Ok(Secret::new(secret))
}

#[cfg(unix)]
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_sqlite_on_localhost_8080() {
        let settings = Settings::load_from(&[("PLATFORM_CONFIG", "")]).expect("defaults load");
        assert_eq!(settings.bind.to_string(), "127.0.0.1:8080");
        assert!(settings.uses_embedded_database());
        assert!(settings.graphiql_enabled());
        assert!(settings.introspection_enabled());
    }

    #[test]
    fn production_without_a_secret_names_the_variable() {
        let settings = Settings::load_from(&[
            ("PLATFORM_ENV", "production"),
            ("DATABASE_URL", "postgres://localhost/x"),
        ])
        .expect("loads");
        let error = settings.validate().expect_err("must refuse");
        assert!(error.to_string().contains("PLATFORM_JWT_SECRET"), "{error}");
    }

    #[test]
    fn production_turns_graphiql_and_introspection_off_by_default() {
        let settings = Settings::load_from(&[("PLATFORM_ENV", "production")]).expect("loads");
        assert!(!settings.graphiql_enabled());
        assert!(!settings.introspection_enabled());
    }

    #[test]
    fn short_secrets_are_refused() {
        let settings = Settings::load_from(&[("PLATFORM_JWT_SECRET", "short")]).expect("loads");
        assert!(settings.resolve_jwt_secret().is_err());
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (key, value) in [
            ("PLATFORM_BIND", "nonsense"),
            ("PLATFORM_ENV", "staging"),
            ("PLATFORM_GRAPHIQL", "maybe"),
            ("PLATFORM_REFRESH_GRACE_SECS", "ten"),
            ("PLATFORM_METRICS_BIND", "9100"),
        ] {
            let error = Settings::load_from(&[(key, value)]).expect_err("must refuse");
            assert!(error.to_string().contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn a_short_metrics_token_is_refused() {
        let settings = Settings::load_from(&[("PLATFORM_METRICS_TOKEN", "short")]).expect("loads");
        let error = settings.validate().expect_err("must refuse");
        assert!(
            error.to_string().contains("PLATFORM_METRICS_TOKEN"),
            "{error}"
        );
        let settings = Settings::load_from(&[("PLATFORM_METRICS_TOKEN", "a-long-enough-token")])
            .expect("loads");
        settings.validate().expect("accepted");
    }

    #[test]
    fn allowed_webhook_networks_must_be_cidrs() {
        let settings = Settings::load_from(&[(
            "PLATFORM_WEBHOOK_ALLOWED_NETWORKS",
            "127.0.0.0/8, localhost",
        )])
        .expect("loads");
        let error = settings.validate().expect_err("must refuse");
        assert!(error.to_string().contains("`localhost`"), "{error}");
        let settings =
            Settings::load_from(&[("PLATFORM_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8, ::1")])
                .expect("loads");
        assert_eq!(
            settings.webhooks.allowed_networks().expect("valid").len(),
            2
        );
    }

    #[test]
    fn generated_secret_is_private_and_stable() {
        let dir = tempfile_dir();
        let path = dir.join("jwt_secret");
        let first =
            load_or_create_secret_file(&path, || crate::auth::random_token(48)).expect("created");
        let second = load_or_create_secret_file(&path, || unreachable!("already exists"))
            .expect("read back");
        assert_eq!(first.expose(), second.expose());
        assert!(first.expose().len() >= 48);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_notification_retry_schedule_allows_1_to_20_attempts() {
        for (attempts, allowed) in [("0", false), ("1", true), ("20", true), ("21", false)] {
            let settings = Settings::load_from(&[(
                "PLATFORM_NOTIFICATION_RETRY_SMS",
                format!("{attempts},1s,1m").as_str(),
            )])
            .expect("loads");
            assert_eq!(
                settings.notifications.sms_retry.max_attempts.to_string(),
                attempts
            );
            match settings.validate() {
                Ok(()) => assert!(allowed, "{attempts} attempts were accepted"),
                Err(error) => {
                    assert!(!allowed, "{attempts} attempts were refused: {error}");
                    assert!(
                        error
                            .to_string()
                            .contains("PLATFORM_NOTIFICATION_RETRY_SMS"),
                        "{error}"
                    );
                }
            }
        }
    }

    #[test]
    fn retry_schedules_parse_with_units() {
        let settings =
            Settings::load_from(&[("PLATFORM_WEBHOOK_RETRY_SCHEDULE", "0s, 1s,250ms,5m,2h,1d")])
                .expect("loads");
        assert_eq!(
            settings.webhooks.retry_schedule,
            [0, 1000, 250, 300_000, 7_200_000, 86_400_000].map(Duration::from_millis)
        );
        assert_eq!(Settings::default().webhooks.retry_schedule.len(), 8);
        for bad in ["5", "5x", "s", "-1s"] {
            let error = Settings::load_from(&[("PLATFORM_WEBHOOK_RETRY_SCHEDULE", bad)])
                .expect_err("must refuse");
            assert!(
                error
                    .to_string()
                    .contains("PLATFORM_WEBHOOK_RETRY_SCHEDULE"),
                "{error}"
            );
        }
    }

    #[test]
    fn production_requires_an_encryption_key() {
        let settings = Settings::load_from(&[
            ("PLATFORM_ENV", "production"),
            ("DATABASE_URL", "postgres://localhost/x"),
            ("PLATFORM_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
        .expect("loads");
        let error = settings.validate().expect_err("must refuse");
        assert!(
            error.to_string().contains("PLATFORM_ENCRYPTION_KEY"),
            "{error}"
        );
    }

    #[test]
    fn production_requires_an_unsubscribe_secret() {
        let settings = Settings::load_from(&[
            ("PLATFORM_ENV", "production"),
            ("DATABASE_URL", "postgres://localhost/x"),
            ("PLATFORM_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            (
                "PLATFORM_ENCRYPTION_KEY",
                &crate::crypto::SecretBox::generate_key(),
            ),
        ])
        .expect("loads");
        let error = settings.validate().expect_err("must refuse");
        assert!(
            error.to_string().contains("PLATFORM_UNSUBSCRIBE_SECRET"),
            "{error}"
        );
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("platform-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}
