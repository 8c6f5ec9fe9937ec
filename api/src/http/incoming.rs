//! `POST /webhooks/in/{provider}/{companyId}`: providers' webhooks, verified before anything
//! is read from them.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, RawQuery, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::json;
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
    RawQuery(query): RawQuery,
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
    match incoming_webhooks::receive(
        &state.app,
        provider,
        company_id,
        &headers,
        query.as_deref(),
        &body,
    )
    .await
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

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "received": false, "error": message }))).into_response()
}
