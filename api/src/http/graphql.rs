//! `POST /graphql`, GraphiQL on `GET /graphql`, and the `graphql-transport-ws` endpoint.
//!
//! The POST handler parses the body itself rather than through the async-graphql-axum
//! extractor, so a malformed body gets a GraphQL-shaped error with a code instead of plain text.

use async_graphql::{BatchRequest, BatchResponse, Response as GraphqlResponse, ServerError};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::{
    Extension, Json,
    body::Bytes,
    extract::{State, WebSocketUpgrade, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};

use super::{HttpState, error_response};
use crate::graphql::with_code;

/// The id of the HTTP request, echoed in `X-Request-Id` and in every error's extensions.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// GraphiQL loads its scripts from a CDN, so its page gets a policy that allows exactly that.
const GRAPHIQL_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline' https://unpkg.com; \
     style-src 'self' 'unsafe-inline' https://unpkg.com; img-src 'self' data: https://graphql.org; \
     font-src 'self' data: https://unpkg.com; connect-src 'self' ws: wss:; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

pub async fn graphiql(State(state): State<HttpState>) -> Response {
    if !state.app.settings.graphiql_enabled() {
        return error_response(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "GraphiQL is disabled; set PLATFORM_GRAPHIQL=true to enable it",
        );
    }
    let page = async_graphql::http::GraphiQLSource::build()
        .endpoint("/graphql")
        .subscription_endpoint("/graphql/ws")
        .title("Platform GraphiQL")
        .finish();
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(GRAPHIQL_CSP),
        )],
        Html(page),
    )
        .into_response()
}

pub async fn graphql_post(
    State(state): State<HttpState>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let limit = state.app.settings.body_limit_bytes;
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                &format!("the request body exceeds {limit} bytes"),
            );
        }
        Err(rejection) => {
            return error_response(rejection.status(), "BAD_REQUEST", &rejection.body_text());
        }
    };
    if !is_json(&headers) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "BAD_REQUEST",
            "send the GraphQL request as JSON (Content-Type: application/json)",
        );
    }
    let batch = match parse_batch(&body, state.app.settings.graphql.max_batch) {
        Ok(batch) => batch,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message),
    };
    let batch = batch.data(request_id.clone());
    let response = state.schema.execute_batch(batch).await;
    Json(with_error_codes(response, &request_id)).into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|media| {
            let media = media.trim();
            media.eq_ignore_ascii_case("application/json")
                || media.eq_ignore_ascii_case("application/graphql-response+json")
        })
        .unwrap_or(false)
}

fn parse_batch(body: &[u8], max_batch: usize) -> Result<BatchRequest, String> {
    let batch: BatchRequest = serde_json::from_slice(body)
        .map_err(|error| format!("the body is not a GraphQL request: {error}"))?;
    let count = batch.iter().count();
    if count > max_batch {
        return Err(format!(
            "the batch holds {count} operations; at most {max_batch} are allowed"
        ));
    }
    if batch.iter().any(|request| request.query.trim().is_empty()) {
        return Err("the request has no query".into());
    }
    Ok(batch)
}

/// Every error leaves with a code and the request id. Errors async-graphql raises on its own
/// carry no code: request-level ones are the client's malformed request, field-level ones are
/// arguments that failed to parse.
fn with_error_codes(mut response: BatchResponse, request_id: &RequestId) -> BatchResponse {
    let responses: Vec<&mut GraphqlResponse> = match &mut response {
        BatchResponse::Single(single) => vec![single],
        BatchResponse::Batch(many) => many.iter_mut().collect(),
    };
    for single in responses {
        let errors = std::mem::take(&mut single.errors);
        single.errors = errors
            .into_iter()
            .map(|error| code_and_request_id(error, request_id))
            .collect();
    }
    response
}

fn code_and_request_id(error: ServerError, request_id: &RequestId) -> ServerError {
    let code = if error.path.is_empty() {
        "BAD_REQUEST"
    } else {
        "VALIDATION"
    };
    let mut error = with_code(error, code);
    if let Some(extensions) = error.extensions.as_mut() {
        extensions.set("requestId", request_id.0.as_str());
    }
    error
}

pub async fn graphql_ws(
    State(state): State<HttpState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let schema = state.schema.clone();
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| GraphQLWebSocket::new(stream, schema, protocol).serve())
}
