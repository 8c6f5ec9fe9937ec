//! The HTTP surface: routes, and the layers every response passes through (request id and
//! access log, metrics, security headers, CORS, compression, body limit, timeout, panics).

mod graphql;
mod health;
mod incoming;
mod observe;
mod unsubscribe;

use std::time::Duration;

use anyhow::Context;
use axum::{
    Json, Router,
    extract::DefaultBodyLimit,
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;
use tower_http::{
    CompressionLevel,
    catch_panic::CatchPanicLayer,
    compression::CompressionLayer,
    cors::{AllowOrigin, CorsLayer},
    set_header::SetResponseHeaderLayer,
    timeout::TimeoutLayer,
};

pub use graphql::RequestId;

use crate::{configuration::Settings, error::ApiError, graphql::AppSchema, state::AppState};

/// Content-Security-Policy of API responses: they are JSON and load nothing.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

#[derive(Clone)]
pub struct HttpState {
    pub app: AppState,
    /// Runs `POST /graphql`.
    pub schema: AppSchema,
    /// Runs subscriptions on `/graphql/ws`.
    pub ws_schema: AppSchema,
    pub guard: crate::graphql::Guard,
    pub operations: crate::graphql::OperationMetrics,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: std::sync::Arc<Vec<ipnet::IpNet>>,
    /// Serves `/socket.io` before the routes.
    pub socketio: socketioxide::layer::SocketIoLayer,
}

pub fn router(state: HttpState) -> anyhow::Result<Router> {
    let settings = state.app.settings.clone();
    let router = Router::new()
        .route(
            "/graphql",
            get(graphql::graphiql).post(graphql::graphql_post),
        )
        .route("/graphql/ws", get(graphql::graphql_ws))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(
            "/webhooks/in/{provider}/{company_id}",
            post(incoming::receive).layer(DefaultBodyLimit::max(incoming::BODY_LIMIT)),
        )
        .route(
            "/notifications/unsubscribe",
            get(unsubscribe::show).post(unsubscribe::confirm),
        )
        .fallback(not_found);
    // With a listener of its own (`metrics_router`), `/metrics` is not on the public one.
    let router = if settings.metrics_bind.is_none() {
        router.route("/metrics", get(health::metrics))
    } else {
        router
    };
    let router = router
        .with_state(state.clone())
        .layer(state.socketio.clone())
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
        // Compressed for the wire, not for storage: the fastest level takes half the CPU of the
        // default and JSON pages still shrink 20–30×.
        .layer(CompressionLayer::new().quality(CompressionLevel::Fastest))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            settings.request_timeout(),
        ))
        .layer(cors(&settings)?)
        .layer(CatchPanicLayer::custom(panic_response));
    let router = security_headers(&settings)
        .into_iter()
        .fold(router, |router, (name, value)| {
            router.layer(SetResponseHeaderLayer::if_not_present(name, value))
        });
    Ok(router.layer(axum::middleware::from_fn(observe::observe)))
}

/// The router of the `PLATFORM_METRICS_BIND` listener: `/metrics` alone.
pub fn metrics_router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .with_state(state)
}

fn security_headers(settings: &Settings) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = vec![
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(API_CSP),
        ),
    ];
    if settings.is_production() {
        headers.push((
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        ));
    }
    headers
}

fn cors(settings: &Settings) -> anyhow::Result<CorsLayer> {
    let allow_origin = if settings.cors_origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        let origins = settings
            .cors_origins
            .iter()
            .map(|origin| {
                HeaderValue::from_str(origin).with_context(|| {
                    format!("PLATFORM_CORS_ORIGINS has an invalid origin `{origin}`")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        AllowOrigin::list(origins)
    };
    Ok(CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(3600)))
}

/// An [`ApiError`] outside GraphQL (a request stopped before GraphQL runs, a REST endpoint),
/// in the GraphQL error shape with its code, fields and the request's id.
fn api_error_response(error: &ApiError, request_id: &RequestId) -> Response {
    let status = match error {
        ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
        ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        ApiError::Conflict(_) => StatusCode::CONFLICT,
        ApiError::RateLimited { .. } | ApiError::QuotaExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
        ApiError::Provider { .. } => StatusCode::BAD_GATEWAY,
        ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        ApiError::Validation { .. }
        | ApiError::InvalidTemplate { .. }
        | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
    };
    let mut graphql = async_graphql::ErrorExtensions::extend(error);
    graphql
        .extensions
        .get_or_insert_with(Default::default)
        .set("requestId", request_id.0.as_str());
    let body = serde_json::json!({ "errors": [{
        "message": graphql.message,
        "extensions": graphql.extensions,
    }]});
    let mut response = (status, Json(body)).into_response();
    if let ApiError::RateLimited { retry_after_secs } = error
        && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// A JSON body in the GraphQL error shape, for failures outside GraphQL execution.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, Json(body)).into_response()
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route")
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL",
        "internal error",
    )
}
