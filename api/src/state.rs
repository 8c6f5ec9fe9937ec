//! What every request handler and resolver shares.

use std::sync::{Arc, atomic::AtomicU64};

use anyhow::Context;
use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::Notify;

use crate::{
    crypto::{SecretBox, UnsubscribeTokens},
    events::EventBus,
    payments::stripe::{PaymentProvider, StripeClient},
    webhooks::{
        address::{AddressPolicy, GuardedResolver},
        sender::Sender,
    },
};

use crate::{
    auth::{Actor, jwt::JwtKeys},
    configuration::Settings,
    db::{
        self, Role,
        rows::ReadPool,
        tenant::{CompanyId, Intent, Opening, TenantTxn},
    },
    rate_limit::RateLimiter,
    rbac::Rbac,
};

#[derive(Clone)]
pub struct AppState {
    /// Requests' pool; on PostgreSQL row-level security holds it to the company a transaction
    /// sets (see [`db::rls`]).
    pub db: DatabaseConnection,
    /// The connection of the few cross-tenant places (the relay, workers, the job runtime,
    /// sweeps, the operator, login by email, the RBAC full reload, incoming webhooks before
    /// their company is known, the demo seed); on PostgreSQL its role bypasses row-level
    /// security (see [`db::rls`]).
    pub system_db: DatabaseConnection,
    /// Where list pages read several tables at once (see [`db::rows`]).
    pub reads: ReadPool,
    /// A separate small pool for background workers (the outbox relay), so they neither wait
    /// behind request traffic nor show up in its statement count.
    pub background_db: DatabaseConnection,
    pub redis: Option<redis::aio::ConnectionManager>,
    pub settings: Arc<Settings>,
    pub jwt: JwtKeys,
    pub rbac: Rbac,
    pub limiter: Arc<RateLimiter>,
    /// SQL statements run since start.
    pub statements: Arc<AtomicU64>,
    /// Committed events, after the relay publishes them.
    pub bus: EventBus,
    /// Wakes the relay right after a commit that wrote events.
    pub relay_wake: Arc<Notify>,
    /// Encrypts the secrets kept in the database.
    pub secrets: SecretBox,
    /// Sends webhooks through the address guard; also checks endpoint URLs.
    pub webhook_sender: Sender,
    /// Enqueues background work (webhook deliveries' jobs among it); every job runtime of
    /// this instance shares it, so enqueuing wakes them.
    pub jobs: crate::jobs::Jobs,
    /// The webhook worker's own pool: its attempts must not queue behind requests.
    pub worker_db: DatabaseConnection,
    /// Card payments (Stripe, at `PLATFORM_STRIPE_API_BASE`).
    pub payment_provider: Arc<dyn PaymentProvider>,
    /// The one HTTP client of the notification providers (Evolution, the Cloud API, Twilio),
    /// with `PLATFORM_NOTIFICATION_PROVIDER_TIMEOUT_SECS` as its deadline and the webhooks'
    /// address guard (`PLATFORM_WEBHOOK_ALLOWED_NETWORKS`).
    pub notification_http: crate::notifications::ProviderHttp,
    /// Signs and checks the unsubscribe links of notifications.
    pub unsubscribe_tokens: UnsubscribeTokens,
}

impl AppState {
    /// Opens a transaction acting for the actor's company, declaring what it will do.
    pub async fn begin_for(&self, actor: &Actor, intent: Intent) -> Result<TenantTxn, DbErr> {
        TenantTxn::open(self.opening(), actor.company(), intent).await
    }

    /// Opens a transaction acting for `company` without an actor: a verified incoming webhook
    /// or a job acting on a row it read. `reason` says which, in the trace.
    pub async fn begin_for_company(
        &self,
        company: CompanyId,
        reason: &'static str,
        intent: Intent,
    ) -> Result<TenantTxn, DbErr> {
        tracing::debug!(%company, reason, "acting for a company without an actor");
        TenantTxn::open(self.opening(), company, intent).await
    }

    fn opening(&self) -> Opening<'_> {
        Opening {
            db: &self.db,
            relay_wake: &self.relay_wake,
            rbac: &self.rbac,
        }
    }

    /// Call after committing a transaction that wrote outbox events.
    pub fn events_committed(&self) {
        self.relay_wake.notify_one();
    }

    /// The webhook worker of this instance.
    pub fn webhook_worker(&self) -> crate::webhooks::worker::Worker {
        crate::webhooks::worker::Worker {
            db: self.worker_db.clone(),
            sender: self.webhook_sender.clone(),
            secrets: self.secrets.clone(),
            settings: self.settings.webhooks.clone(),
            jobs: self.jobs.clone(),
            relay_wake: self.relay_wake.clone(),
        }
    }
}

/// Redis commands fail fast while Redis is down, rather than each waiting through the default six
/// reconnection attempts (about six seconds): requests fall back (see [`crate::rate_limit`]) and
/// the relay and `/readyz` carry on without it.
fn redis_connection_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_connection_timeout(Some(std::time::Duration::from_secs(1)))
        .set_response_timeout(Some(std::time::Duration::from_secs(1)))
}

impl AppState {
    /// Validates the settings, connects to the database (migrating it) and, when configured, to
    /// Redis. The server and the CLI commands that act through services both start here.
    pub async fn connect(settings: Settings) -> anyhow::Result<Self> {
        Self::connect_with_clock(settings, Arc::new(crate::jobs::SystemClock)).await
    }

    /// [`AppState::connect`] with the job runtime reading `clock` (due jobs, retries, leases):
    /// tests move a [`crate::jobs::ManualClock`] through a job's retries instead of waiting.
    pub async fn connect_with_clock(
        settings: Settings,
        clock: Arc<dyn crate::jobs::Clock>,
    ) -> anyhow::Result<Self> {
        crate::install_crypto_provider();
        settings.validate()?;
        // Resolved up front so a missing production secret stops the start, not the first login.
        let jwt = JwtKeys::new(&settings.resolve_jwt_secret()?);
        let secrets = settings.resolve_encryption_key()?;
        let unsubscribe_tokens = UnsubscribeTokens::new(&settings.resolve_unsubscribe_secret()?);
        // One guard for every client that connects where a tenant points it.
        let address_guard = Arc::new(GuardedResolver::new(AddressPolicy::new(
            settings.webhooks.allowed_networks()?,
        )));
        let webhook_sender = Sender::new(&settings, address_guard.clone())?;
        let payment_provider = Arc::new(
            StripeClient::new(
                &settings.stripe_api_base,
                std::time::Duration::from_secs(20),
            )
            .map_err(anyhow::Error::msg)?,
        );
        let notification_http = crate::notifications::ProviderHttp::new(
            std::time::Duration::from_secs(settings.notifications.provider_timeout_secs),
            address_guard,
        )
        .map_err(anyhow::Error::msg)?;
        db::migrate_as_owner(&settings).await?;
        let mut db = db::connect(&settings, Role::Tenant).await?;
        db::rls::check_tenant_pool(&db).await?;
        let statements = db::instrument(&mut db);
        let reads = ReadPool::new(
            &db,
            &settings.database_url(),
            settings.database_list_connections,
        )?;
        let system_db = db::connect_with(&settings, Role::CrossTenant, 8).await?;
        let background_db = db::connect_with(&settings, Role::CrossTenant, 2).await?;
        let worker_db = db::connect_with(&settings, Role::CrossTenant, 4).await?;
        let mut rbac = Rbac::load(system_db.clone()).await?;
        let (redis, limiter, bus) = match &settings.redis_url {
            Some(url) => {
                let client = redis::Client::open(url.as_str())
                    .context("REDIS_URL is not a valid Redis URL")?;
                let connection = redis::aio::ConnectionManager::new_with_config(
                    client.clone(),
                    redis_connection_config(),
                )
                .await
                .context(
                    "Failed to connect to Redis: check REDIS_URL and that the server is reachable",
                )?;
                rbac = rbac
                    .with_redis(&client, connection.clone(), &settings.redis_namespace)
                    .await?;
                let limiter = RateLimiter::redis(connection.clone(), &settings.redis_namespace);
                let bus =
                    EventBus::redis(&client, connection.clone(), &settings.redis_namespace).await?;
                (Some(connection), limiter, bus)
            }
            None => (None, RateLimiter::in_process(), EventBus::in_process()),
        };
        Ok(Self {
            db,
            system_db,
            reads,
            background_db,
            redis,
            settings: Arc::new(settings),
            jwt,
            rbac,
            limiter: Arc::new(limiter),
            statements,
            bus,
            relay_wake: Arc::new(Notify::new()),
            secrets,
            webhook_sender,
            jobs: crate::jobs::Jobs::new(clock),
            worker_db,
            payment_provider,
            notification_http,
            unsubscribe_tokens,
        })
    }
}
