//! What the HTTP providers (Evolution API, the WhatsApp Cloud API, Twilio) share: one client
//! with a deadline, no redirects, no proxy and the address guard, URLs built from a configured
//! base by pushing escaped path segments, and the classes of failure every one of them
//! documents alike.

use std::{sync::Arc, time::Duration};

use reqwest::{RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;

use super::SendError;
use crate::webhooks::{
    address::{GuardError, GuardedResolver, refused_by_guard},
    sender::{self, BodyEnd},
};

/// The code of a send refused because the provider's host is an address the guard forbids.
pub const ADDRESS_NOT_ALLOWED: &str = "ADDRESS_NOT_ALLOWED";
/// The most of an answer read: the documented answers are a few KiB, and a provider answering
/// more must not make us buffer it.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The most of an error answer kept in a message, so a provider echoing a huge page cannot
/// bloat the delivery log.
const MAX_MESSAGE_CHARS: usize = 500;

/// The HTTP client every provider call goes through: one connection pool for every company
/// and provider, a deadline on connecting and on each whole request, no redirects (one would
/// carry the credentials to wherever it points; no provider sends one), no proxy, and the
/// address guard: a company chooses the base URL, so it must not reach inside our network.
#[derive(Clone)]
pub struct ProviderHttp {
    client: reqwest::Client,
    guard: Arc<GuardedResolver>,
}

impl ProviderHttp {
    /// Names resolve through `guard` as the client connects; literal addresses are checked in
    /// [`Self::base_url`], since no resolver sees them.
    pub(crate) fn new(timeout: Duration, guard: Arc<GuardedResolver>) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .dns_resolver(guard.clone())
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!(
                "Platform-Notifications/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|error| format!("failed to build the notifications HTTP client: {error}"))?;
        Ok(Self { client, guard })
    }

    /// The guard this client connects through, for the providers that connect on their own
    /// (SMTP) and for checking a URL when it is saved.
    pub(crate) fn guard(&self) -> &GuardedResolver {
        &self.guard
    }

    /// A provider's base URL, refused when its host is a literal address the guard forbids.
    pub(super) fn base_url(&self, provider: &str, base_url: &str) -> Result<BaseUrl, String> {
        let base = BaseUrl::parse(provider, base_url)?;
        self.guard
            .check_literal_host(&base.0)
            .map_err(|refused| format!("the {provider} URL cannot be used: {refused}"))?;
        Ok(base)
    }

    pub(super) fn get(&self, url: Url) -> RequestBuilder {
        self.client.get(url)
    }

    pub(super) fn post(&self, url: Url) -> RequestBuilder {
        self.client.post(url)
    }
}

/// A provider's configured base URL.
#[derive(Debug, Clone)]
pub(super) struct BaseUrl(Url);

impl BaseUrl {
    /// `base_url` is the provider's documented origin, optionally with a path prefix (a
    /// self-hosted Evolution behind a reverse proxy); `http://` is accepted for local servers.
    fn parse(provider: &str, base_url: &str) -> Result<Self, String> {
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

/// A provider's host the guard would not hand out: refused for good, or not resolving for now.
impl From<GuardError> for SendError {
    fn from(error: GuardError) -> Self {
        match error {
            GuardError::NotAllowed(message) => Self::permanent(ADDRESS_NOT_ALLOWED, message),
            GuardError::Unresolved(message) => Self::retryable("connect", message),
        }
    }
}

/// A request that got no answer: a timeout or an unreachable provider is worth retrying; a
/// provider the address guard refuses stays refused.
pub(super) fn transport_error(provider: &str, error: reqwest::Error) -> SendError {
    if refused_by_guard(&error) {
        return SendError::permanent(
            ADDRESS_NOT_ALLOWED,
            format!("{provider} cannot be reached: its address is not allowed"),
        );
    }
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

/// A failure sorted by its HTTP status alone: 408/429/5xx later, anything else never.
pub(super) fn by_status(status: StatusCode, code: String, message: String) -> SendError {
    if status_is_retryable(status) {
        SendError::retryable(code, message)
    } else {
        SendError::permanent(code, message)
    }
}

/// Sends `request` and reads a 2xx answer as `T`; an error answer goes through `classify`. A
/// 2xx that is not the documented answer, or whose body cannot be read whole, is permanent:
/// the provider took the message, and sending again could deliver it twice.
pub(super) async fn exchange<T: DeserializeOwned>(
    provider: &str,
    action: &str,
    request: RequestBuilder,
    classify: fn(StatusCode, &[u8]) -> SendError,
) -> Result<T, SendError> {
    let response = request
        .send()
        .await
        .map_err(|error| transport_error(provider, error))?;
    let status = response.status();
    let body = read_capped(response).await;
    if !status.is_success() {
        // Sorted by its status; what could be read of it is enough for the message.
        let body = body.unwrap_or_else(|(read, _)| read);
        let error = classify(status, &body);
        tracing::warn!(provider, action, %status, code = error.code(), "the provider refused the request");
        return Err(error);
    }
    let body = body.map_err(|(_, reason)| {
        SendError::permanent(
            "unreadable_answer",
            format!("{provider} answered {action} with HTTP {status} but {reason}"),
        )
    })?;
    serde_json::from_slice(&body).map_err(|error| {
        SendError::permanent(
            "unreadable_answer",
            format!(
                "{provider} answered {action} with HTTP {status} but not as documented ({error}): {}",
                body_text(&body)
            ),
        )
    })
}

/// The whole body when it is at most [`MAX_ANSWER_BYTES`]; otherwise what was read (never more
/// than that) and why the rest is missing. The rest is never read.
async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>, (Vec<u8>, String)> {
    let body = sender::read_capped(response, MAX_ANSWER_BYTES).await;
    match body.end {
        BodyEnd::Whole => Ok(body.bytes),
        BodyEnd::OverCap => Err((
            body.bytes,
            format!("its answer is over {} KiB", MAX_ANSWER_BYTES / 1024),
        )),
        BodyEnd::Broken(error) => Err((
            body.bytes,
            format!("its answer could not be read: {}", error.without_url()),
        )),
    }
}

/// A client that may reach loopback, where the tests' local providers listen.
#[cfg(test)]
pub(super) fn loopback_http(timeout: Duration) -> ProviderHttp {
    let policy = crate::webhooks::address::AddressPolicy::new(vec![
        "127.0.0.0/8".parse().expect("a network"),
        "::1/128".parse().expect("a network"),
    ]);
    ProviderHttp::new(timeout, Arc::new(GuardedResolver::new(policy))).expect("the client builds")
}

/// A local server answering the next POST, and only one, with `response`: the provider in a
/// client's error tests.
#[cfg(test)]
pub(super) async fn answering_one_post(
    response: wiremock::ResponseTemplate,
) -> wiremock::MockServer {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    server
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use wiremock::ResponseTemplate;

    use super::*;

    fn classify(status: StatusCode, body: &[u8]) -> SendError {
        by_status(status, status.as_u16().to_string(), body_text(body))
    }

    async fn exchange_with(url: String) -> Result<Value, SendError> {
        let http = loopback_http(Duration::from_secs(5));
        let url = Url::parse(&url).expect("a URL");
        exchange("Provider", "send", http.post(url), classify).await
    }

    #[tokio::test]
    async fn an_answer_over_the_cap_is_not_taken_and_a_2xx_one_is_not_retried() {
        let padding = "x".repeat(MAX_ANSWER_BYTES);
        let accepted = answering_one_post(
            ResponseTemplate::new(201).set_body_json(json!({"id": "1", "padding": padding})),
        )
        .await;
        let huge_error = answering_one_post(
            ResponseTemplate::new(503).set_body_string("e".repeat(10 * MAX_ANSWER_BYTES)),
        )
        .await;

        let too_long = exchange_with(accepted.uri())
            .await
            .expect_err("over the cap");
        let refused = exchange_with(huge_error.uri()).await.expect_err("refused");

        assert_eq!(too_long.code(), "unreadable_answer", "{too_long}");
        assert!(!too_long.is_retryable(), "{too_long}");
        assert!(too_long.to_string().contains("over 64 KiB"), "{too_long}");
        assert_eq!(refused.code(), "503");
        assert!(refused.is_retryable());
        assert!(refused.to_string().len() < 1000, "{refused}");
    }

    #[tokio::test]
    async fn a_2xx_whose_body_breaks_off_is_permanent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("a connection");
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            // Promises 1000 bytes, sends 8, hangs up.
            let _ = stream
                .write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 1000\r\n\r\n{\"id\": \"")
                .await;
        });

        let error = exchange_with(format!("http://{address}/"))
            .await
            .expect_err("broken off");

        assert_eq!(error.code(), "unreadable_answer", "{error}");
        assert!(!error.is_retryable(), "{error}");
    }
}
