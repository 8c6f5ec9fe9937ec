//! What the HTTP providers (Evolution API, the WhatsApp Cloud API, Twilio) share: one client
//! with a deadline and no redirects, URLs built from a configured base by pushing
//! escaped path segments, and the classes of failure every one of them documents alike.

use std::time::Duration;

use reqwest::{StatusCode, Url};

use super::SendError;

/// The most of an error answer kept in a message, so a provider echoing a huge page cannot
/// bloat the delivery log.
const MAX_MESSAGE_CHARS: usize = 500;

/// The HTTP client every provider call goes through: one connection pool for every company
/// and provider, a deadline on connecting and on each whole request, no redirects (one would
/// carry the credentials to wherever it points; no provider sends one).
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(concat!(
            "Platform-Notifications/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .map_err(|error| format!("failed to build the notifications HTTP client: {error}"))
}

/// A provider's configured base URL.
#[derive(Debug, Clone)]
pub(super) struct BaseUrl(Url);

impl BaseUrl {
    /// `base_url` is the provider's documented origin, optionally with a path prefix (a
    /// self-hosted Evolution behind a reverse proxy); `http://` is accepted for local servers.
    pub(super) fn parse(provider: &str, base_url: &str) -> Result<Self, String> {
        let url = Url::parse(base_url)
            .map_err(|error| format!("the {provider} URL `{base_url}` is not valid: {error}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(format!(
                "the {provider} URL `{base_url}` must start with https:// (or http:// for a local server)"
            ));
        }
        Ok(Self(url))
    }

    /// The base URL with `segments` appended, each escaped, so no configured name (an instance,
    /// an account sid) can steer the request to another endpoint.
    pub(super) fn join(&self, segments: &[&str]) -> Url {
        let mut url = self.0.clone();
        url.path_segments_mut()
            .expect("checked in parse: the base URL can be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }
}

/// A request that got no answer: a timeout or an unreachable provider is worth retrying.
pub(super) fn transport_error(provider: &str, error: reqwest::Error) -> SendError {
    let code = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else {
        "transport"
    };
    // Without the URL: it may carry an account id, and the log has it already.
    SendError::retryable(
        code,
        format!("could not reach {provider}: {}", error.without_url()),
    )
}

/// Whether a provider's HTTP status means "later" rather than "never": 408, 429 and 5xx.
pub(super) fn status_is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// A provider's message cut to a length the delivery log keeps.
pub(super) fn bounded(message: &str) -> String {
    let message = message.trim();
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_owned(),
    }
}

/// The answer's body as text for a message, when it is not the JSON the provider documents.
pub(super) fn body_text(body: &[u8]) -> String {
    bounded(&String::from_utf8_lossy(body))
}
