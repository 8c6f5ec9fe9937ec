//! # Platform API
//!
//! A multi-tenant GraphQL backend: one server runs restaurants, bike shops and clinics, each
//! company seeing only its own data.
//!
//! A tour, in the order a request meets the code, each layer above the ones it uses
//! (`tests/api/architecture.rs` fails when `domain`, `events`, `jobs` or `webhooks` import
//! `services`, or `services` imports `graphql`):
//! - [`configuration`]: defaults, `platform.toml`, then environment variables; [`telemetry`]:
//!   the logs.
//! - [`http`]: the axum router, the layers every response passes through, `POST /graphql`,
//!   health and metrics, and providers' incoming webhooks. [`realtime`]: the GraphQL WebSocket
//!   (`/graphql/ws`) and Socket.IO.
//! - [`graphql`]: the schema, its guard and limits, one module per domain, and
//!   [`graphql::context`], where every transport reads credentials and builds the request's
//!   data (viewer, client address, loaders) once.
//! - [`services`]: one module per domain (payments split by concern in
//!   [`services::payments`]); every call that touches tenant data takes the
//!   [`Actor`](auth::Actor) and acts through the tenant transaction; every mutation runs in one.
//! - [`auth`]: passwords, tokens, API keys and the `Actor`; [`rbac`]: roles and permissions
//!   with casbin; [`rate_limit`]: fixed windows, in Redis or in process.
//! - [`jobs`]: the durable job runtime; background work (webhook deliveries, the payment-expiry
//!   sweep) runs on it. [`webhooks`]: signatures, the SSRF guard, and the delivery job.
//! - [`events`]: the typed [`DomainEvent`](events::DomainEvent), the outbox it is written to,
//!   the relay that publishes it after commit, and the event bus.
//! - [`payments`]: clients of outside payment providers (Stripe); [`crypto`]: secrets at rest.
//! - [`db`]: SQLite or PostgreSQL, migrated at start; [`db::tenant`]: the tenant transaction and
//!   `CompanyId`; [`db::rls`]: PostgreSQL's roles and row-level security; [`db::rows`]: the
//!   order list's pipelined reads. [`state`]: what every handler shares.
//! - [`domain`]: pure types that parse their input (money, PIX, boleto, workflows…), no I/O.
//! - [`error`]: the one [`ApiError`](error::ApiError), its `extensions.code`, and the cause it
//!   keeps for the log.
//! - [`cli`]: `serve`, `migrate`, `print-schema`, `create-operator`, `demo-seed` ([`demo`]).
//!
//! [`Application`] ties them together: `build` binds the port (0 picks a free one, as the tests
//! do), `run_until_stopped` serves until SIGTERM/SIGINT or [`ShutdownHandle::trigger`], letting
//! requests in flight finish.

pub mod auth;
pub mod cli;
pub mod configuration;
pub mod crypto;
pub mod db;
pub mod demo;
pub mod domain;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod jobs;
pub mod notifications;
pub mod payments;
pub mod rate_limit;
pub mod rbac;
pub mod realtime;
pub mod services;
pub mod state;
pub mod telemetry;
pub mod webhooks;

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
};

use anyhow::Context;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::{net::TcpListener, sync::watch};

use crate::{configuration::Settings, state::AppState};

/// A built server, bound to its port and ready to run.
pub struct Application {
    port: u16,
    listener: TcpListener,
    router: Router,
    /// The `PLATFORM_METRICS_BIND` listener and its router, when configured.
    metrics: Option<(TcpListener, Router)>,
    state: AppState,
    jobs: jobs::Runtime,
    shutdown: ShutdownHandle,
}

/// Stops a running [`Application`] gracefully, as SIGTERM does.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Application {
    /// Connects to the database (and Redis when configured), migrates, and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(jobs::SystemClock)).await
    }

    /// [`Application::build`] with the job runtime on `clock` ([`AppState::connect_with_clock`]).
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn jobs::Clock>,
    ) -> anyhow::Result<Self> {
        let state = AppState::connect_with_clock(settings, clock).await?;
        let schema = graphql::build_schema(&state.settings, state.clone());
        let ws_schema = graphql::build_ws_schema(&state.settings, state.clone());
        let (socketio, io) = realtime::socketio::layer(&state);
        tokio::spawn(realtime::socketio::forward(io, state.clone()));
        let http_state = http::HttpState {
            app: state.clone(),
            schema,
            ws_schema,
            guard: graphql::guard(&state.settings),
            operations: graphql::OperationMetrics::default(),
            metrics: metrics_handle(),
            trusted_proxies: Arc::new(state.settings.trusted_proxy_networks()?),
            socketio,
        };
        let metrics = match state.settings.metrics_bind {
            None => None,
            Some(address) => {
                let listener = TcpListener::bind(address)
                    .await
                    .with_context(|| format!("Failed to bind PLATFORM_METRICS_BIND {address}"))?;
                Some((listener, http::metrics_router(http_state.clone())))
            }
        };
        let router = http::router(http_state)?;
        let listener = TcpListener::bind(state.settings.bind)
            .await
            .with_context(|| format!("Failed to bind {}", state.settings.bind))?;
        let port = listener
            .local_addr()
            .context("Failed to read bound address")?
            .port();
        let (sender, _) = watch::channel(false);
        let jobs = background_jobs(&state).await?;
        Ok(Self {
            port,
            listener,
            router,
            metrics,
            state,
            jobs,
            shutdown: ShutdownHandle(Arc::new(sender)),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serves until a signal or the shutdown handle; requests in flight are finished first.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let mut stop = self.shutdown.0.subscribe();
        self.state.bus.spawn_forwarder(
            self.state.background_db.clone(),
            self.shutdown.0.subscribe(),
        );
        self.state
            .rbac
            .spawn_periodic_reload(self.shutdown.0.subscribe());
        self.state
            .rbac
            .spawn_notice_listener(self.shutdown.0.subscribe());
        let relay = tokio::spawn(events::relay::run(
            self.state.background_db.clone(),
            self.state.bus.clone(),
            self.state.relay_wake.clone(),
            self.state.jobs.clone(),
            self.shutdown.0.subscribe(),
        ));
        let webhook_worker = tokio::spawn(
            self.state
                .webhook_worker()
                .runtime()
                .run(self.shutdown.0.subscribe()),
        );
        let jobs = tokio::spawn(self.jobs.run(self.shutdown.0.subscribe()));
        if let Some((listener, router)) = self.metrics {
            let mut stop = self.shutdown.0.subscribe();
            tracing::info!(address = %listener.local_addr()?, "serving /metrics");
            tokio::spawn(async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        // A closed channel means the application is gone: stop too.
                        drop(stop.wait_for(|stopped| *stopped).await);
                    })
                    .await;
                if let Err(error) = served {
                    tracing::error!(%error, "the metrics listener failed");
                }
            });
        }
        let address = self.listener.local_addr()?;
        tracing::info!(%address, "listening on http://{address}");
        axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = termination_signal() => {}
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
            tracing::info!("shutting down: finishing requests in flight");
        })
        .await
        .context("The HTTP server failed")?;
        // The server has stopped; let the relay finish its batch, then close.
        self.shutdown.trigger();
        if relay.await.is_err() {
            tracing::warn!("the outbox relay ended abnormally");
        }
        if webhook_worker.await.is_err() {
            tracing::warn!("the webhook worker ended abnormally");
        }
        if jobs.await.is_err() {
            tracing::warn!("the job runtime ended abnormally");
        }
        self.state
            .db
            .close()
            .await
            .context("Failed to close the database")?;
        self.state
            .background_db
            .close()
            .await
            .context("Failed to close the background database pool")?;
        self.state
            .worker_db
            .close()
            .await
            .context("Failed to close the webhook worker's database pool")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Expires unpaid PIX charges and boletos past their validity; a recurring job, once a
/// minute across all instances.
#[derive(serde::Serialize, serde::Deserialize)]
struct ExpireOverduePayments;

impl jobs::Job for ExpireOverduePayments {
    const QUEUE: &'static str = "payments.expire-overdue";
}

/// This instance's job runtime, on its own pool, with the server's handlers and schedules.
async fn background_jobs(state: &AppState) -> anyhow::Result<jobs::Runtime> {
    let pool = db::connect_with(&state.settings, db::Role::CrossTenant, 4).await?;
    let settings = jobs::RuntimeSettings {
        max_in_flight: state.settings.jobs_max_in_flight,
        // Its jobs are short (a notification's send): claiming for a few freed slots at once
        // spares a claim per job.
        claim_batch: 4.min(state.settings.jobs_max_in_flight),
        ..jobs::RuntimeSettings::default()
    };
    let mut runtime = jobs::Runtime::sharing(pool, settings, &state.jobs);
    let sweeping = state.clone();
    runtime
        // A failed sweep is not retried: the next tick is a minute away.
        .handle(
            jobs::RetryPolicy::once(),
            move |job, ExpireOverduePayments| {
                let state = sweeping.clone();
                async move {
                    // Cross-tenant: one sweep expires every company's overdue payments.
                    let expired =
                        services::payments::expire_overdue(&state.background_db, job.started_at)
                            .await?;
                    if expired > 0 {
                        state.events_committed();
                    }
                    Ok(())
                }
            },
        )
        .schedule(jobs::Recurring::new(
            <ExpireOverduePayments as jobs::Job>::QUEUE,
            "* * * * *",
            &ExpireOverduePayments,
        )?);
    services::notifications::delivery::register(&mut runtime, state);
    services::notifications::rules::register(&mut runtime, state);
    runtime.declare_schedules().await?;
    Ok(runtime)
}

async fn termination_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// Two TLS backends are compiled in; rustls needs to be told which one to use process-wide.
pub fn install_crypto_provider() {
    // An error means a provider is installed already, which is what we want.
    drop(rustls::crypto::aws_lc_rs::default_provider().install_default());
}

/// The process-wide Prometheus recorder; several applications in one process share it.
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}
