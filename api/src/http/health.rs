//! Liveness, readiness and Prometheus metrics.

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use sea_orm::ConnectionTrait;

use super::{HttpState, error_response};
use crate::{auth::secret_hash, graphql::context::bearer};

/// Alive: the process answers. Says nothing about its dependencies.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready: the database and, when configured, Redis answer and this instance is subscribed to
/// Redis (events and access-change notices). While a subscription is down the instance still
/// serves, but its subscribers get events only from its outbox catch-up and its access changes
/// wait for the periodic reload, so the balancer should prefer the others.
pub async fn readyz(State(state): State<HttpState>) -> Response {
    let database = state.app.db.execute_unprepared("SELECT 1").await.is_ok();
    let redis = match &state.app.redis {
        None => None,
        Some(connection) => {
            let mut connection = connection.clone();
            let pong: Result<String, _> = redis::cmd("PING").query_async(&mut connection).await;
            Some(pong.is_ok())
        }
    };
    let events = state.app.bus.subscription_health();
    let access_changes = state.app.rbac.subscription_health();
    let subscribed = events.unwrap_or(true) && access_changes.unwrap_or(true);
    let subscriptions = state
        .app
        .redis
        .as_ref()
        .map(|_| serde_json::json!({ "events": events, "accessChanges": access_changes }));
    let ready = database && redis.unwrap_or(true) && subscribed;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "unavailable" },
        "database": database,
        "redis": redis,
        "subscriptions": subscriptions,
    });
    (status, axum::Json(body)).into_response()
}

/// Prometheus metrics; with `PLATFORM_METRICS_TOKEN` set, only for `Authorization: Bearer`
/// with that token (401 otherwise).
pub async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.app.settings.metrics_token
        && !presents(&headers, token.expose())
    {
        let mut response = error_response(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "/metrics needs `Authorization: Bearer <PLATFORM_METRICS_TOKEN>`",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let statements = state
        .app
        .statements
        .load(std::sync::atomic::Ordering::Relaxed);
    let body = format!(
        "{}# HELP db_statements_total SQL statements run by this instance.\n\
         # TYPE db_statements_total counter\ndb_statements_total {statements}\n",
        state.metrics.render()
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Whether the request carries `Authorization: Bearer {token}`. The hashes are compared, so
/// the time taken says nothing about how much of the token was right.
fn presents(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer)
        .is_some_and(|presented| secret_hash(presented) == secret_hash(token))
}
