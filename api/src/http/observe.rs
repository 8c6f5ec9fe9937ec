//! Request id, access log and HTTP metrics for every request.

use std::time::Instant;

use axum::{
    extract::Request,
    http::{HeaderValue, Response},
    middleware::Next,
};
use tracing::{Instrument, field::Empty};

use super::RequestId;

const REQUEST_ID: &str = "x-request-id";

/// Keeps a caller's request id when it is a sane token, so traces can span services;
/// otherwise (or when absent) mints one.
fn request_id(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| {
            !value.is_empty()
                && value.len() <= 64
                && value
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        })
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The route template of a path: bounded, so metrics labels cannot grow without limit.
fn route_of(path: &str) -> &'static str {
    match path {
        "/graphql" => "/graphql",
        "/graphql/ws" => "/graphql/ws",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        _ if path.starts_with("/socket.io") => "/socket.io",
        _ if path.starts_with("/webhooks/in/") => "/webhooks/in/{provider}/{company_id}",
        _ => "unmatched",
    }
}

pub async fn observe(mut request: Request, next: Next) -> Response<axum::body::Body> {
    let id = request_id(&request);
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = route_of(&path);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        path = %path,
        company_id = Empty,
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let latency = started.elapsed();
    let status = response.status().as_u16();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    metrics::counter!(
        "http_requests_total",
        "route" => route,
        "method" => method.to_string(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route)
        .record(latency.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms = latency.as_secs_f64() * 1000.0,
            "request finished"
        );
    });
    response
}

#[cfg(test)]
mod tests {
    use super::route_of;

    #[test]
    fn unknown_paths_share_one_label() {
        assert_eq!(route_of("/graphql"), "/graphql");
        assert_eq!(route_of("/wp-admin/x"), "unmatched");
        assert_eq!(route_of("/random/123"), "unmatched");
    }
}
