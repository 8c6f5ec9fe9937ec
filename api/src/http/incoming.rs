//! `POST /webhooks/in/{provider}/{companyId}`: providers' webhooks, verified before anything
//! is read from them.
//!
//! Twilio signs the URL it called. That URL is the server's public address
//! (`PLATFORM_PUBLIC_URL`, the one the status callbacks were given) with the request's path;
//! without one configured it is rebuilt from `X-Forwarded-Proto`/`X-Forwarded-Host` (set by
//! the proxy in front of us) or `Host`, as Twilio's own middleware does. A forged header only
//! changes which URL's signature would be accepted, and a signature for it exists only if the
//! provider really called it.

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
    let Some(url) = called_url(state.app.settings.public_url.as_deref(), &headers, &uri) else {
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

/// The absolute URL the provider called: on the public address when there is one.
fn called_url(public_url: Option<&str>, headers: &HeaderMap, uri: &Uri) -> Option<Url> {
    let path_and_query = uri.path_and_query().map_or("/", |path| path.as_str());
    if let Some(public_url) = public_url {
        return Url::parse(&format!(
            "{}{path_and_query}",
            public_url.trim_end_matches('/')
        ))
        .ok();
    }
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
    Url::parse(&format!("{scheme}://{host}{path_and_query}")).ok()
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "received": false, "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("10.0.0.7:8080"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        headers.insert(
            "x-forwarded-host",
            HeaderValue::from_static("edge.example.com"),
        );
        headers
    }

    #[test]
    fn the_called_url_is_on_the_public_address_when_one_is_configured() {
        let uri: Uri = "/webhooks/in/twilio/c?x=1".parse().expect("uri");
        let url = called_url(Some("https://api.example.com/"), &headers(), &uri).expect("url");
        assert_eq!(
            url.as_str(),
            "https://api.example.com/webhooks/in/twilio/c?x=1"
        );
    }

    #[test]
    fn without_a_public_address_the_called_url_comes_from_the_proxy_headers() {
        let uri: Uri = "/webhooks/in/twilio/c".parse().expect("uri");
        let url = called_url(None, &headers(), &uri).expect("url");
        assert_eq!(
            url.as_str(),
            "https://edge.example.com/webhooks/in/twilio/c"
        );
        let mut direct = HeaderMap::new();
        direct.insert("host", HeaderValue::from_static("10.0.0.7:8080"));
        let url = called_url(None, &direct, &uri).expect("url");
        assert_eq!(url.as_str(), "http://10.0.0.7:8080/webhooks/in/twilio/c");
    }
}
