//! `POST /webhooks/in/{provider}/{companyId}`: providers' webhooks, verified before anything
//! is read from them.
//!
//! The URL a provider called is rebuilt from `X-Forwarded-Proto`/`X-Forwarded-Host` (set by
//! the proxy in front of us) or `Host`, as Twilio's own middleware does: Twilio signs that URL.
//! A forged header only changes which URL's signature would be accepted, and a signature for
//! it exists only if the provider really called it.

use axum::{
    Json,
    body::Bytes,
    extract::{OriginalUri, Path, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde_json::json;
use url::Url;
use uuid::Uuid;

use super::HttpState;
use crate::{
    services::incoming_webhooks::{self, Receipt},
    webhooks::incoming::Provider,
};

/// Largest webhook body accepted; providers send a few KiB.
pub const BODY_LIMIT: usize = 256 * 1024;

pub async fn receive(
    State(state): State<HttpState>,
    Path((provider, company_id)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(provider) = Provider::parse(&provider) else {
        return refuse(StatusCode::NOT_FOUND, "unknown webhook provider");
    };
    let Ok(company_id) = Uuid::parse_str(&company_id) else {
        return refuse(StatusCode::BAD_REQUEST, "the company id is not a UUID");
    };
    let Ok(body) = body else {
        return refuse(
            StatusCode::BAD_REQUEST,
            &format!("the body is over {BODY_LIMIT} bytes"),
        );
    };
    let Some(url) = called_url(&headers, &uri) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the request has no usable Host header",
        );
    };
    match incoming_webhooks::receive(&state.app, provider, company_id, &headers, &url, &body).await
    {
        Ok(Ok(receipt)) => Json(json!({
            "received": true,
            "duplicate": receipt == Receipt::Duplicate,
        }))
        .into_response(),
        Ok(Err(refused)) => {
            tracing::warn!(provider = provider.as_str(), %company_id, reason = %refused, "incoming webhook refused");
            metrics::counter!("incoming_webhooks_refused_total", "provider" => provider.as_str())
                .increment(1);
            refuse(StatusCode::BAD_REQUEST, &refused.0)
        }
        Err(error) => {
            tracing::error!(error = ?error, provider = provider.as_str(), %company_id, "incoming webhook failed");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; retry later",
            )
        }
    }
}

/// The absolute URL the provider called.
fn called_url(headers: &HeaderMap, uri: &Uri) -> Option<Url> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let scheme = match header("x-forwarded-proto") {
        Some("https") => "https",
        _ => "http",
    };
    let host = header("x-forwarded-host").or_else(|| header("host"))?;
    let path_and_query = uri.path_and_query().map_or("/", |path| path.as_str());
    Url::parse(&format!("{scheme}://{host}{path_and_query}")).ok()
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "received": false, "error": message }))).into_response()
}
