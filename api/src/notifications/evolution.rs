//! WhatsApp through Evolution API v2, a self-hosted server that drives a WhatsApp Web session
//! (an "instance") per phone. Contract: <https://doc.evolution-api.com/v2/api-reference/message-controller/send-text>
//! and <https://doc.evolution-api.com/v2/api-reference/instance-controller/connection-state>,
//! checked against the server's source (EvolutionAPI/evolution-api 2.3):
//!
//! - `POST {base}/message/sendText/{instance}`, header `apikey`, JSON `{number, text, delay?,
//!   linkPreview?}`; `201` with the sent message, whose `key.id` is the id later status
//!   webhooks name. The number is digits with the country code; the server strips a `+` itself,
//!   we send digits only.
//! - `GET {base}/instance/connectionState/{instance}` → `{instance:{instanceName, state}}`,
//!   `state` one of `open`, `connecting`, `close` (absent while the server has not loaded the
//!   instance).
//! - Errors are `{status, error, response:{message}}`, where `message` is a string or a list
//!   (of strings, or of `{exists:false, jid, number}` for a number not on WhatsApp).
//!
//! Failures: no answer in time → retryable `timeout`; unreachable → retryable `connect`; 408,
//! 429 and 5xx (a session reconnecting answers 500) → retryable with the status as code; any
//! other 4xx (an unknown number, a wrong key, a missing instance) → permanent with the status
//! and the server's message.

use std::{fmt, time::Duration};

use reqwest::{
    StatusCode,
    header::{HeaderName, HeaderValue},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Accepted, SendError,
    http::{BaseUrl, body_text, bounded, status_is_retryable, transport_error},
    whatsapp::{ConnectionState, WhatsappProvider},
};
use crate::domain::phone::Phone;

/// The name the delivery log records.
pub const PROVIDER: &str = "evolution";
/// Evolution's authentication header: the instance's token or the server's global key.
const API_KEY: HeaderName = HeaderName::from_static("apikey");

/// Where a company's Evolution instance lives and how to authenticate to it. No `Debug` of the
/// key.
#[derive(Clone, PartialEq, Eq)]
pub struct EvolutionConfig {
    /// The server's URL, e.g. `https://evolution.example.com` (a path prefix is kept).
    pub base_url: String,
    /// The instance's name as created on the server.
    pub instance: String,
    pub api_key: String,
}

impl fmt::Debug for EvolutionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EvolutionConfig")
            .field("base_url", &self.base_url)
            .field("instance", &self.instance)
            .field("api_key", &"[redacted]")
            .finish()
    }
}

/// Evolution's optional `sendText` fields; `None` leaves the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextOptions {
    /// How long the session shows "typing…" before sending.
    pub delay: Option<Duration>,
    /// Whether a URL in the text gets a preview card.
    pub link_preview: Option<bool>,
}

/// [`WhatsappProvider`] over one Evolution instance.
#[derive(Clone)]
pub struct EvolutionClient {
    http: reqwest::Client,
    base: BaseUrl,
    instance: String,
    api_key: HeaderValue,
    options: TextOptions,
}

impl fmt::Debug for EvolutionClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EvolutionClient")
            .field("base", &self.base)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl EvolutionClient {
    /// A client of `config`'s instance over `http` (see [`super::http_client`]; one is shared by
    /// every company). Refuses a URL that is not http(s), an empty instance, a key a header
    /// cannot carry.
    pub fn new(http: reqwest::Client, config: &EvolutionConfig) -> Result<Self, String> {
        let base = BaseUrl::parse("Evolution API", &config.base_url)?;
        let instance = config.instance.trim();
        if instance.is_empty() {
            return Err("the Evolution instance name is empty".into());
        }
        // The message does not repeat the key: it is a secret.
        let mut api_key = HeaderValue::from_str(config.api_key.trim())
            .ok()
            .filter(|key| !key.is_empty())
            .ok_or("the Evolution API key is empty or has characters a header cannot carry")?;
        api_key.set_sensitive(true);
        Ok(Self {
            http,
            base,
            instance: instance.to_owned(),
            api_key,
            options: TextOptions::default(),
        })
    }

    /// The same client sending every text with `options`.
    pub fn with_options(mut self, options: TextOptions) -> Self {
        self.options = options;
        self
    }

    /// Sends a request and reads a 2xx answer as `T`, or classifies the failure.
    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        request: reqwest::RequestBuilder,
        action: &str,
    ) -> Result<T, SendError> {
        let response = request
            .header(API_KEY, self.api_key.clone())
            .send()
            .await
            .map_err(|error| transport_error("Evolution API", error))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| transport_error("Evolution API", error))?;
        if !status.is_success() {
            let error = classify(status, &body);
            tracing::warn!(provider = PROVIDER, instance = %self.instance, action, %status, code = error.code(), "Evolution API refused the request");
            return Err(error);
        }
        serde_json::from_slice(&body).map_err(|error| {
            // The server took the request but its answer is not the documented one: sending
            // again could deliver twice, so this is not retried.
            SendError::permanent(
                "unreadable_answer",
                format!(
                    "Evolution API answered {action} with HTTP {status} but not as documented ({error}): {}",
                    body_text(&body)
                ),
            )
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SendText<'a> {
    number: &'a str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link_preview: Option<bool>,
}

#[derive(Deserialize)]
struct SentMessage {
    key: MessageKey,
}

#[derive(Deserialize)]
struct MessageKey {
    id: String,
}

#[derive(Deserialize)]
struct ConnectionStateAnswer {
    instance: InstanceState,
}

#[derive(Deserialize)]
struct InstanceState {
    state: Option<String>,
}

#[async_trait::async_trait]
impl WhatsappProvider for EvolutionClient {
    async fn send_text(&self, to: &Phone, text: &str) -> Result<Accepted, SendError> {
        let body = SendText {
            number: to.as_str().trim_start_matches('+'),
            text,
            delay: self
                .options
                .delay
                .map(|delay| u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
            link_preview: self.options.link_preview,
        };
        let request = self
            .http
            .post(self.base.join(&["message", "sendText", &self.instance]))
            .json(&body);
        let sent: SentMessage = self.call(request, "sendText").await?;
        tracing::info!(provider = PROVIDER, instance = %self.instance, provider_message_id = %sent.key.id, "WhatsApp message accepted");
        Ok(Accepted {
            provider: PROVIDER,
            provider_message_id: sent.key.id,
        })
    }

    async fn connection_state(&self) -> Result<ConnectionState, SendError> {
        let request =
            self.http.get(
                self.base
                    .join(&["instance", "connectionState", &self.instance]),
            );
        let answer: ConnectionStateAnswer = self.call(request, "connectionState").await?;
        match answer.instance.state.as_deref() {
            Some("open") => Ok(ConnectionState::Open),
            Some("connecting") => Ok(ConnectionState::Connecting),
            // Absent while the server has not loaded the instance: it cannot send either.
            Some("close") | None => Ok(ConnectionState::Closed),
            Some(other) => Err(SendError::permanent(
                "unexpected_state",
                format!(
                    "Evolution API reported the unknown connection state `{}`",
                    bounded(other)
                ),
            )),
        }
    }
}

/// Sorts an error answer: 408/429/5xx later, anything else never.
fn classify(status: StatusCode, body: &[u8]) -> SendError {
    let message = error_message(body).unwrap_or_else(|| body_text(body));
    let message = format!("Evolution API answered HTTP {}: {message}", status.as_u16());
    let code = status.as_u16().to_string();
    if status_is_retryable(status) {
        SendError::retryable(code, message)
    } else {
        SendError::permanent(code, message)
    }
}

/// The readable part of `{status, error, response:{message}}`.
fn error_message(body: &[u8]) -> Option<String> {
    let answer: Value = serde_json::from_slice(body).ok()?;
    let message = answer.pointer("/response/message")?;
    let parts: Vec<String> = match message {
        Value::Array(items) => items.iter().map(message_part).collect(),
        other => vec![message_part(other)],
    };
    Some(bounded(&parts.join("; ")))
}

fn message_part(part: &Value) -> String {
    match part {
        Value::String(text) => text.clone(),
        // `{exists:false, jid, number}`: the number has no WhatsApp account.
        Value::Object(fields) if fields.get("exists") == Some(&Value::Bool(false)) => {
            let number = fields.get("number").and_then(Value::as_str).unwrap_or("?");
            format!("the number {number} is not on WhatsApp")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{body_json, header, method, path},
    };

    use super::*;
    use crate::notifications::http_client;

    const KEY: &str = "evo-key-123";

    fn config(server: &MockServer) -> EvolutionConfig {
        EvolutionConfig {
            base_url: server.uri(),
            instance: "loja centro".into(),
            api_key: KEY.into(),
        }
    }

    fn client(server: &MockServer) -> EvolutionClient {
        let http = http_client(Duration::from_secs(5)).expect("client builds");
        EvolutionClient::new(http, &config(server)).expect("valid config")
    }

    fn phone() -> Phone {
        Phone::parse("+55 11 98765-4321").expect("phone")
    }

    /// The answer Evolution 2.3 gives a sendText, as its source builds it.
    fn sent(id: &str) -> Value {
        json!({
            "key": {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": true, "id": id},
            "pushName": "",
            "status": "PENDING",
            "message": {"conversation": "Seu pedido está pronto"},
            "contextInfo": null,
            "messageType": "conversation",
            "messageTimestamp": 1_764_680_000,
            "instanceId": "2f1c0d7e-1111-4a4a-9b9b-123456789abc",
            "source": "unknown"
        })
    }

    fn evolution_error(status: u16, error: &str, message: Value) -> ResponseTemplate {
        ResponseTemplate::new(status).set_body_json(
            json!({"status": status, "error": error, "response": {"message": message}}),
        )
    }

    async fn send_answered_with(response: ResponseTemplate) -> SendError {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(response)
            .expect(1)
            .mount(&server)
            .await;
        client(&server)
            .send_text(&phone(), "oi")
            .await
            .expect_err("the send fails")
    }

    #[tokio::test]
    async fn send_text_posts_the_documented_request_and_returns_the_key_id() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/message/sendText/loja%20centro"))
            .and(header("apikey", KEY))
            .and(header("content-type", "application/json"))
            .and(body_json(
                json!({"number": "5511987654321", "text": "Seu pedido está pronto"}),
            ))
            .respond_with(ResponseTemplate::new(201).set_body_json(sent("BAE594145F4C59B4")))
            .expect(1)
            .mount(&server)
            .await;

        let accepted = client(&server)
            .send_text(&phone(), "Seu pedido está pronto")
            .await
            .expect("sent");

        assert_eq!(
            accepted,
            Accepted {
                provider: "evolution",
                provider_message_id: "BAE594145F4C59B4".into()
            }
        );
    }

    #[tokio::test]
    async fn options_add_delay_and_link_preview_under_a_path_prefix() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/evolution/message/sendText/loja%20centro"))
            .and(body_json(json!({
                "number": "5511987654321",
                "text": "veja https://example.com",
                "delay": 1200,
                "linkPreview": false
            })))
            .respond_with(ResponseTemplate::new(201).set_body_json(sent("ABC")))
            .expect(1)
            .mount(&server)
            .await;
        let http = http_client(Duration::from_secs(5)).expect("client builds");
        let prefixed = EvolutionConfig {
            base_url: format!("{}/evolution/", server.uri()),
            ..config(&server)
        };
        let client = EvolutionClient::new(http, &prefixed)
            .expect("valid config")
            .with_options(TextOptions {
                delay: Some(Duration::from_millis(1200)),
                link_preview: Some(false),
            });

        let accepted = client
            .send_text(&phone(), "veja https://example.com")
            .await
            .expect("sent");

        assert_eq!(accepted.provider_message_id, "ABC");
    }

    #[tokio::test]
    async fn rate_limits_and_server_errors_are_retryable_with_the_status() {
        for status in [429, 500, 502, 503] {
            let error = send_answered_with(evolution_error(
                status,
                "Internal Server Error",
                json!("Connection Closed"),
            ))
            .await;
            assert!(error.is_retryable(), "{status}: {error}");
            assert_eq!(error.code(), status.to_string());
        }
    }

    #[tokio::test]
    async fn client_errors_are_permanent_with_the_providers_message() {
        let not_on_whatsapp = send_answered_with(evolution_error(
            400,
            "Bad Request",
            json!([{"jid": "5511987654321@s.whatsapp.net", "exists": false, "number": "5511987654321"}]),
        ))
        .await;
        assert_eq!(
            not_on_whatsapp,
            SendError::permanent(
                "400",
                "Evolution API answered HTTP 400: the number 5511987654321 is not on WhatsApp"
            )
        );

        for (status, error, message, expected) in [
            (401, "Unauthorized", json!("Unauthorized"), "Unauthorized"),
            (
                403,
                "Forbidden",
                json!(["Missing global api key"]),
                "Missing global api key",
            ),
            (
                404,
                "Not Found",
                json!(["The \"loja centro\" instance does not exist"]),
                "The \"loja centro\" instance does not exist",
            ),
        ] {
            let refused = send_answered_with(evolution_error(status, error, message)).await;
            assert!(!refused.is_retryable(), "{status}: {refused}");
            assert_eq!(refused.code(), status.to_string());
            assert!(refused.to_string().contains(expected), "{refused}");
        }
    }

    #[tokio::test]
    async fn an_answer_that_is_not_json_is_reported_with_its_text() {
        let error =
            send_answered_with(ResponseTemplate::new(502).set_body_string("<h1>Bad Gateway</h1>"))
                .await;
        assert_eq!(
            error,
            SendError::retryable(
                "502",
                "Evolution API answered HTTP 502: <h1>Bad Gateway</h1>"
            )
        );
        let unreadable =
            send_answered_with(ResponseTemplate::new(201).set_body_json(json!({"ok": true}))).await;
        assert_eq!(unreadable.code(), "unreadable_answer");
        assert!(!unreadable.is_retryable());
    }

    #[tokio::test]
    async fn a_slow_server_is_a_retryable_timeout_and_a_closed_port_a_retryable_connect() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(sent("late"))
                    .set_delay(Duration::from_secs(2)),
            )
            .mount(&server)
            .await;
        let http = http_client(Duration::from_millis(200)).expect("client builds");
        let impatient = EvolutionClient::new(http.clone(), &config(&server)).expect("valid config");
        let timeout = impatient
            .send_text(&phone(), "oi")
            .await
            .expect_err("times out");
        assert!(timeout.is_retryable());
        assert_eq!(timeout.code(), "timeout");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let closed = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let unreachable = EvolutionClient::new(
            http,
            &EvolutionConfig {
                base_url: closed,
                ..config(&server)
            },
        )
        .expect("valid config");
        let refused = unreachable
            .send_text(&phone(), "oi")
            .await
            .expect_err("refused");
        assert!(refused.is_retryable());
        assert_eq!(refused.code(), "connect");
    }

    #[tokio::test]
    async fn connection_state_reads_each_documented_state() {
        for (state, expected) in [
            (json!("open"), ConnectionState::Open),
            (json!("connecting"), ConnectionState::Connecting),
            (json!("close"), ConnectionState::Closed),
            (Value::Null, ConnectionState::Closed),
        ] {
            let server = MockServer::start().await;
            Mock::given(method("GET"))
                .and(path("/instance/connectionState/loja%20centro"))
                .and(header("apikey", KEY))
                .respond_with(ResponseTemplate::new(200).set_body_json(
                    json!({"instance": {"instanceName": "loja centro", "state": state}}),
                ))
                .expect(1)
                .mount(&server)
                .await;
            let read = client(&server).connection_state().await.expect("read");
            assert_eq!(read, expected, "{state}");
        }
    }

    #[tokio::test]
    async fn connection_state_of_a_missing_instance_is_a_permanent_404() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(evolution_error(
                404,
                "Not Found",
                json!(["The \"loja centro\" instance does not exist"]),
            ))
            .mount(&server)
            .await;
        let error = client(&server)
            .connection_state()
            .await
            .expect_err("missing");
        assert_eq!(error.code(), "404");
        assert!(!error.is_retryable());
    }

    #[test]
    fn a_config_that_cannot_work_is_refused_without_repeating_the_key() {
        let http = http_client(Duration::from_secs(1)).expect("client builds");
        let good = EvolutionConfig {
            base_url: "https://evolution.example.com".into(),
            instance: "main".into(),
            api_key: KEY.into(),
        };
        assert!(EvolutionClient::new(http.clone(), &good).is_ok());
        for bad in [
            EvolutionConfig {
                base_url: "ftp://evolution.example.com".into(),
                ..good.clone()
            },
            EvolutionConfig {
                base_url: "not a url".into(),
                ..good.clone()
            },
            EvolutionConfig {
                instance: "  ".into(),
                ..good.clone()
            },
            EvolutionConfig {
                api_key: String::new(),
                ..good.clone()
            },
            EvolutionConfig {
                api_key: "line\nbreak".into(),
                ..good.clone()
            },
        ] {
            let error = EvolutionClient::new(http.clone(), &bad).expect_err("refused");
            assert!(!error.contains(KEY), "{error}");
        }
        assert!(!format!("{good:?}").contains(KEY));
    }
}
