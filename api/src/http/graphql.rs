//! `POST /graphql`, GraphiQL on `GET /graphql`, and the `graphql-transport-ws` endpoint.
//!
//! The POST handler parses the body itself rather than through the async-graphql-axum
//! extractor, so a malformed body gets a GraphQL-shaped error with a code instead of plain text.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use async_graphql::{
    BatchRequest, BatchResponse, Request, Response as GraphqlResponse, ServerError,
};
use axum::{
    Extension,
    body::Bytes,
    extract::{ConnectInfo, State, WebSocketUpgrade, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use ipnet::IpNet;

use super::{HttpState, api_error_response, error_response};
use crate::{
    auth::Viewer,
    error::ApiResult,
    graphql::{
        MAX_NAME_CHARS, Operation, VALIDATION_FAILED, code_request_error,
        context::{RequestData, credentials},
        plain::PreparedJson,
        shortened, with_code,
    },
    rate_limit::Limit,
    realtime::websocket,
    services::identity,
};

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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
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
    let client = client_ip(peer.ip(), &headers, &state.trusted_proxies);
    let operations = u32::try_from(batch.iter().count()).unwrap_or(u32::MAX);
    let viewer = match admit(&state, &headers, operations).await {
        Ok(viewer) => viewer,
        Err(error) => return api_error_response(&error, &request_id),
    };
    if let Viewer::Member(actor) = &viewer {
        tracing::Span::current().record("company_id", tracing::field::display(actor.company_id()));
    }
    let context = RequestContext {
        request_id: request_id.clone(),
        data: RequestData::new(&state.app, viewer, client),
        prepared: Arc::default(),
    };
    let response = match batch {
        BatchRequest::Single(request) => {
            BatchResponse::Single(execute(&state, request, &context).await)
        }
        BatchRequest::Batch(requests) => BatchResponse::Batch(
            futures_util::future::join_all(
                requests
                    .into_iter()
                    .map(|request| execute(&state, request, &context)),
            )
            .await,
        ),
    };
    let refused_for_rate = retry_after_if_refused_for_rate(&response);
    let body = serde_json::to_vec(&with_error_codes(response, &request_id))
        .expect("a GraphQL response always serialises");
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        context.prepared.fill(body),
    )
        .into_response();
    if let Some(retry_after_secs) = refused_for_rate {
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    }
    response
}

/// When every operation of the request was refused for rate and nothing else (no data, every
/// error `RATE_LIMITED`), the longest `retryAfter`: such a request gets HTTP 429 with
/// `Retry-After`, as one refused before GraphQL runs does, so clients and proxies that only
/// read the status back off too.
fn retry_after_if_refused_for_rate(response: &BatchResponse) -> Option<u64> {
    let responses: Vec<&GraphqlResponse> = match response {
        BatchResponse::Single(single) => vec![single],
        BatchResponse::Batch(many) => many.iter().collect(),
    };
    let mut longest = None;
    for single in responses {
        if single.data != async_graphql::Value::Null || single.errors.is_empty() {
            return None;
        }
        for error in &single.errors {
            let extensions = error.extensions.as_ref()?;
            if extensions.get("code") != Some(&async_graphql::Value::from("RATE_LIMITED")) {
                return None;
            }
            let retry_after = match extensions.get("retryAfter") {
                Some(async_graphql::Value::Number(secs)) => secs.as_u64(),
                _ => None,
            }
            .unwrap_or(1);
            longest = longest.max(Some(retry_after));
        }
    }
    longest
}

/// What every operation of one HTTP request shares.
struct RequestContext {
    request_id: RequestId,
    data: RequestData,
    /// What the plain walk wrote, put into the serialised response.
    prepared: Arc<PreparedJson>,
}

/// Guards, runs and measures one operation.
async fn execute(
    state: &HttpState,
    mut request: Request,
    context: &RequestContext,
) -> GraphqlResponse {
    if let Err(error) = state.guard.prepare(&mut request) {
        return GraphqlResponse::from_errors(vec![error]);
    }
    let operation = match operation_of(&mut request) {
        Ok(operation) => operation,
        Err(error) => return GraphqlResponse::from_errors(vec![error]),
    };
    let request = context.data.attach(
        request
            .data(context.request_id.clone())
            .data(context.prepared.clone()),
    );
    let started = Instant::now();
    let response = state.schema.execute(request).await;
    state
        .operations
        .record(&operation, response.errors.is_empty(), started.elapsed());
    response
}

/// The operation a (parsed) request runs. A request naming an operation its document does not
/// hold is refused here, with the name shortened: async-graphql would echo it whole.
fn operation_of(request: &mut Request) -> Result<Operation, ServerError> {
    let name = request.operation_name.clone();
    let operation = match request.parsed_query() {
        Ok(document) => Operation::of(document, name.as_deref()),
        Err(_) => Operation::Anonymous,
    };
    if operation != Operation::Unknown {
        return Ok(operation);
    }
    let name = shortened(name.as_deref().unwrap_or_default(), MAX_NAME_CHARS);
    Err(with_code(
        ServerError::new(
            format!("the document holds no operation named \"{name}\""),
            None,
        ),
        VALIDATION_FAILED,
    ))
}

/// Authenticates the request and counts its operations against the actor's API limit.
async fn admit(state: &HttpState, headers: &HeaderMap, operations: u32) -> ApiResult<Viewer> {
    let viewer = identity::authenticate(&state.app, credentials(headers)?).await?;
    if let Viewer::Member(actor) = &viewer {
        let limits = &state.app.settings.rate_limits;
        let limit = Limit::per(
            actor.api_call_limit().unwrap_or(limits.api_calls),
            Duration::from_secs(limits.api_window_secs),
        )
        .or_per_instance();
        let key = format!("api:{}", actor.subject());
        for _ in 0..operations {
            state.app.limiter.hit(&key, limit).await?;
        }
    }
    Ok(viewer)
}

/// The client address: the peer, unless the peer is a trusted proxy, in which case the
/// rightmost `X-Forwarded-For` entry that is not a trusted proxy itself. An IPv4-mapped IPv6
/// address (`::ffff:a.b.c.d`, what a dual-stack listener sees of an IPv4 client) is the IPv4
/// address it maps: rate limits key IPv6 clients by /64, which would put every IPv4 client
/// in one bucket.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|network| network.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    // Walk from the nearest hop; an entry that is not an address ends the trusted chain, since
    // everything left of it is the client's word.
    for entry in entries.into_iter().rev() {
        match entry.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(ip) if is_trusted(&ip) => continue,
            Ok(ip) => return ip,
            Err(_) => return peer,
        }
    }
    peer
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
/// carry no code: request-level ones failed validation or a limit, field-level ones are
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
    let mut error = if error.path.is_empty() {
        code_request_error(error)
    } else {
        with_code(error, "VALIDATION")
    };
    if let Some(extensions) = error.extensions.as_mut() {
        extensions.set("requestId", request_id.0.as_str());
    }
    error
}

pub async fn graphql_ws(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(protocol) = websocket::protocol(&headers) else {
        return websocket::unsupported_protocol();
    };
    let client = client_ip(peer.ip(), &headers, &state.trusted_proxies);
    let schema = state.ws_schema.clone();
    let app = state.app.clone();
    upgrade
        .protocols(websocket::subprotocols())
        .on_upgrade(move |socket| websocket::serve(socket, schema, app, protocol, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_str(value).expect("ascii"),
        );
        headers
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.5".parse().expect("ip");
        let stranger: IpAddr = "203.0.113.9".parse().expect("ip");
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let headers = forwarded("198.51.100.1, 10.0.0.7");

        assert_eq!(
            client_ip(proxy, &headers, &trusted),
            "198.51.100.1".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(client_ip(stranger, &headers, &trusted), stranger);
        assert_eq!(client_ip(proxy, &headers, &[]), proxy);
        assert_eq!(client_ip(proxy, &forwarded("garbage"), &trusted), proxy);
    }

    #[test]
    fn ipv4_mapped_addresses_are_their_ipv4_address() {
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().expect("ip");
        let ipv4: IpAddr = "203.0.113.9".parse().expect("ip");
        let proxy: IpAddr = "::ffff:10.0.0.5".parse().expect("ip");
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];

        assert_eq!(client_ip(mapped, &HeaderMap::new(), &[]), ipv4);
        assert_eq!(
            client_ip(
                proxy,
                &forwarded("::ffff:203.0.113.9, ::ffff:10.0.0.7"),
                &trusted
            ),
            ipv4
        );
    }
}
