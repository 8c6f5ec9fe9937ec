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
//!
//! Webhooks ([`parse_webhook`]): Evolution posts `{event, instance, data, destination, date_time,
//! sender, server_url, apikey}` to the URL set with `POST /webhook/set/{instance}`, `event` in
//! the dotted form (`messages.update`) or, in some configurations, the constant form
//! (`MESSAGES_UPDATE`); both are read. `messages.update` carries `{keyId, remoteJid, fromMe,
//! status}` with `status` one of `ERROR`, `PENDING`, `SERVER_ACK`, `DELIVERY_ACK`, `READ`,
//! `PLAYED` (`src/utils/renderStatus.ts`); `messages.upsert` carries a received message, `{key:
//! {remoteJid, remoteJidAlt?, fromMe, id}, message: {conversation | extendedTextMessage: {text}}}`.
//! How the webhook is authenticated is [`crate::webhooks::incoming`]'s.

use std::{fmt, time::Duration};

use reqwest::{
    StatusCode,
    header::{HeaderName, HeaderValue},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::{
    Accepted, DeliveryStatus, SendError, WebhookEvent,
    http::{BaseUrl, ProviderHttp, body_text, bounded, by_status, exchange},
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
    http: ProviderHttp,
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
    /// A client of `config`'s instance over `http` (see [`ProviderHttp`]; one is shared by
    /// every company). Refuses a URL that is not http(s), an empty instance, a key a header
    /// cannot carry.
    pub fn new(http: ProviderHttp, config: &EvolutionConfig) -> Result<Self, String> {
        let base = http.base_url("Evolution API", &config.base_url)?;
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

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        action: &str,
    ) -> Result<T, SendError> {
        let request = request.header(API_KEY, self.api_key.clone());
        exchange("Evolution API", action, request, classify).await
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
    by_status(status, status.as_u16().to_string(), message)
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

/// The `event` of a webhook in one form: `MESSAGES_UPDATE` and `messages-update` both become
/// `messages.update`.
pub fn event_name(event: &str) -> String {
    event.replace(['_', '-'], ".").to_ascii_lowercase()
}

/// Reads the events we act on out of a webhook body: delivery statuses of messages we sent
/// and texts people sent us. Other events (connection, contacts, chats), our own messages
/// echoed back, group and broadcast messages, statuses that say nothing new (`PENDING`, a
/// deletion) give no event. `data` may be one object or a list of them. A body that is not an
/// Evolution webhook is refused with the reason.
pub fn parse_webhook(payload: &Value) -> Result<Vec<WebhookEvent>, String> {
    let event = payload
        .get("event")
        .and_then(Value::as_str)
        .ok_or("the Evolution webhook has no `event`")?;
    let data = payload
        .get("data")
        .ok_or("the Evolution webhook has no `data`")?;
    let items = match data {
        Value::Array(items) => items.iter().collect(),
        item => vec![item],
    };
    let read: fn(&Value) -> Option<WebhookEvent> = match event_name(event).as_str() {
        "messages.update" => status_update,
        "messages.upsert" => inbound_text,
        _ => return Ok(Vec::new()),
    };
    Ok(items.into_iter().filter_map(read).collect())
}

/// The idempotency key of a webhook: Evolution sends no event id, but a message's id with its
/// new status (or a received message's id) names one event; a retried delivery repeats it.
pub fn webhook_event_id(payload: &Value) -> Option<String> {
    let event = event_name(payload.get("event")?.as_str()?);
    let data = payload.get("data")?;
    match event.as_str() {
        "messages.update" => {
            let id = data.get("keyId")?.as_str()?;
            let status = data.get("status")?.as_str()?;
            Some(format!("{id}:{status}"))
        }
        "messages.upsert" => Some(data.pointer("/key/id")?.as_str()?.to_owned()),
        _ => None,
    }
}

fn status_update(data: &Value) -> Option<WebhookEvent> {
    if data.get("fromMe").and_then(Value::as_bool) == Some(false) {
        // A status of a message someone sent us (we read it): not one of ours.
        return None;
    }
    let status = match data.get("status")?.as_str()? {
        "SERVER_ACK" => DeliveryStatus::Sent,
        "DELIVERY_ACK" => DeliveryStatus::Delivered,
        "READ" | "PLAYED" => DeliveryStatus::Read,
        "ERROR" => DeliveryStatus::Failed,
        _ => return None,
    };
    Some(WebhookEvent::StatusUpdate {
        provider_message_id: data.get("keyId")?.as_str()?.to_owned(),
        status,
        error_code: None,
    })
}

fn inbound_text(data: &Value) -> Option<WebhookEvent> {
    let key = data.get("key")?;
    if key.get("fromMe").and_then(Value::as_bool) != Some(false) {
        return None;
    }
    // With WhatsApp's LID addressing the chat is `…@lid` and the phone is the alternate jid.
    let phone_jid = ["remoteJid", "remoteJidAlt", "senderPn"]
        .into_iter()
        .filter_map(|field| key.get(field).and_then(Value::as_str))
        .find_map(|jid| jid.strip_suffix("@s.whatsapp.net"))?;
    let from = Phone::parse(&format!("+{phone_jid}")).ok()?;
    let message = data.get("message")?;
    let text = message
        .get("conversation")
        .or_else(|| message.pointer("/extendedTextMessage/text"))?
        .as_str()?;
    Some(WebhookEvent::Inbound {
        from,
        text: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{body_json, header, method, path},
    };

    use super::*;
    use crate::notifications::http::{answering_one_post, loopback_http};

    const KEY: &str = "evo-key-123";

    fn config(server: &MockServer) -> EvolutionConfig {
        EvolutionConfig {
            base_url: server.uri(),
            instance: "loja centro".into(),
            api_key: KEY.into(),
        }
    }

    fn client(server: &MockServer) -> EvolutionClient {
        let http = loopback_http(Duration::from_secs(5));
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
        let server = answering_one_post(response).await;
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
        let http = loopback_http(Duration::from_secs(5));
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
        let http = loopback_http(Duration::from_millis(200));
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

    #[tokio::test]
    async fn an_internal_provider_is_refused_as_a_literal_and_as_a_name_for_good() {
        let server = MockServer::start().await;
        let guarded = ProviderHttp::new(
            Duration::from_secs(5),
            std::sync::Arc::new(crate::webhooks::address::GuardedResolver::default()),
        )
        .expect("client builds");
        let port = server.address().port();
        for literal in [
            format!("http://127.0.0.1:{port}"),
            "http://169.254.169.254".to_string(),
            "http://[::ffff:10.0.0.1]".to_string(),
        ] {
            let refused = EvolutionClient::new(
                guarded.clone(),
                &EvolutionConfig {
                    base_url: literal.clone(),
                    ..config(&server)
                },
            )
            .expect_err("refused");
            assert!(refused.contains("not allowed"), "{literal}: {refused}");
        }

        let named = EvolutionClient::new(
            guarded,
            &EvolutionConfig {
                base_url: format!("http://localhost:{port}"),
                ..config(&server)
            },
        )
        .expect("a name is checked as the client connects");
        let error = named.send_text(&phone(), "oi").await.expect_err("refused");

        assert_eq!(
            error.code(),
            crate::notifications::ADDRESS_NOT_ALLOWED,
            "{error}"
        );
        assert!(!error.is_retryable(), "{error}");
        assert!(
            server
                .received_requests()
                .await
                .unwrap_or_default()
                .is_empty()
        );
    }

    #[test]
    fn a_config_that_cannot_work_is_refused_without_repeating_the_key() {
        let http = loopback_http(Duration::from_secs(1));
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

    /// A `messages.update` webhook as Evolution 2.3 posts it.
    fn status_webhook(event: &str, status: &str, from_me: bool) -> Value {
        json!({
            "event": event,
            "instance": "loja centro",
            "data": {
                "keyId": "BAE594145F4C59B4",
                "remoteJid": "5511987654321@s.whatsapp.net",
                "fromMe": from_me,
                "participant": null,
                "status": status,
                "instanceId": "2f1c0d7e-1111-4a4a-9b9b-123456789abc",
                "messageId": "cm4b9x0000001"
            },
            "destination": "https://platform.example.com/webhooks/in/evolution/c1",
            "date_time": "2026-12-02T09:30:00.000Z",
            "sender": "5511900000000@s.whatsapp.net",
            "server_url": "https://evolution.example.com",
            "apikey": null
        })
    }

    fn inbound_webhook(key: Value, message: Value) -> Value {
        json!({
            "event": "messages.upsert",
            "instance": "loja centro",
            "data": {
                "key": key,
                "pushName": "Maria",
                "message": message,
                "messageType": "conversation",
                "messageTimestamp": 1_764_667_800,
                "instanceId": "2f1c0d7e-1111-4a4a-9b9b-123456789abc",
                "source": "android"
            },
            "date_time": "2026-12-02T09:30:00.000Z"
        })
    }

    #[test]
    fn status_updates_map_to_delivery_statuses_in_either_event_form() {
        for (status, expected) in [
            ("SERVER_ACK", DeliveryStatus::Sent),
            ("DELIVERY_ACK", DeliveryStatus::Delivered),
            ("READ", DeliveryStatus::Read),
            ("PLAYED", DeliveryStatus::Read),
            ("ERROR", DeliveryStatus::Failed),
        ] {
            for event in ["messages.update", "MESSAGES_UPDATE"] {
                let events = parse_webhook(&status_webhook(event, status, true)).expect("parses");
                assert_eq!(
                    events,
                    vec![WebhookEvent::StatusUpdate {
                        provider_message_id: "BAE594145F4C59B4".into(),
                        status: expected,
                        error_code: None
                    }],
                    "{event} {status}"
                );
            }
        }
        assert_eq!(
            webhook_event_id(&status_webhook("MESSAGES_UPDATE", "READ", true)).as_deref(),
            Some("BAE594145F4C59B4:READ")
        );
    }

    #[test]
    fn statuses_that_say_nothing_about_our_messages_are_skipped() {
        for (status, from_me) in [("PENDING", true), ("DELETED", true), ("READ", false)] {
            let events =
                parse_webhook(&status_webhook("messages.update", status, from_me)).expect("parses");
            assert!(events.is_empty(), "{status} from_me={from_me}: {events:?}");
        }
        let connection =
            json!({"event": "connection.update", "instance": "x", "data": {"state": "open"}});
        assert_eq!(parse_webhook(&connection), Ok(Vec::new()));
        assert!(parse_webhook(&json!({"data": {}})).is_err());
        assert!(parse_webhook(&json!({"event": "messages.update"})).is_err());
    }

    #[test]
    fn inbound_texts_are_read_with_the_senders_phone() {
        let plain = inbound_webhook(
            json!({"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": false, "id": "3EB0A1"}),
            json!({"conversation": "SAIR"}),
        );
        let expected = WebhookEvent::Inbound {
            from: Phone::parse("+5511987654321").expect("phone"),
            text: "SAIR".into(),
        };
        assert_eq!(parse_webhook(&plain), Ok(vec![expected.clone()]));
        assert_eq!(webhook_event_id(&plain).as_deref(), Some("3EB0A1"));

        let lid_addressed = inbound_webhook(
            json!({
                "remoteJid": "190283749283@lid",
                "remoteJidAlt": "5511987654321@s.whatsapp.net",
                "addressingMode": "lid",
                "fromMe": false,
                "id": "3EB0A2"
            }),
            json!({"extendedTextMessage": {"text": "SAIR"}}),
        );
        assert_eq!(parse_webhook(&lid_addressed), Ok(vec![expected]));
    }

    #[test]
    fn our_own_group_and_non_text_messages_are_not_inbound_texts() {
        for (key, message) in [
            (
                json!({"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": true, "id": "1"}),
                json!({"conversation": "Seu pedido está pronto"}),
            ),
            (
                json!({"remoteJid": "120363025246125486@g.us", "fromMe": false, "id": "2", "participant": "5511987654321@s.whatsapp.net"}),
                json!({"conversation": "SAIR"}),
            ),
            (
                json!({"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": false, "id": "3"}),
                json!({"imageMessage": {"mimetype": "image/jpeg"}}),
            ),
        ] {
            let events = parse_webhook(&inbound_webhook(key.clone(), message)).expect("parses");
            assert!(events.is_empty(), "{key}: {events:?}");
        }
    }
}
