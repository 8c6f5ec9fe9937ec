//! WhatsApp through Meta's official Cloud API. Contract:
//! <https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages>, errors
//! <https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes>, the phone
//! number's status <https://developers.facebook.com/docs/graph-api/reference/whats-app-business-account-to-number-current-status/>:
//!
//! - `POST {base}/{version}/{phone_number_id}/messages`, `Authorization: Bearer {token}`, JSON
//!   `{messaging_product: "whatsapp", recipient_type: "individual", to, type, …}` with
//!   `type: "text", text: {preview_url, body}` or `type: "template", template: {name,
//!   language: {code}, components: [{type: "body", parameters: [{type: "text", text}]}]}`;
//!   `200` with `{messaging_product, contacts: [{input, wa_id}], messages: [{id}]}`, the
//!   `wamid.…` id status webhooks name.
//! - `GET {base}/{version}/{phone_number_id}?fields=status` → `{status, id}`, `status` one of
//!   `CONNECTED`, `FLAGGED`, `PENDING`, `RATE_LIMITED`, `OFFLINE`, `RESTRICTED`, …
//! - Errors are Graph errors `{error: {message, type, code, error_subcode, error_data:
//!   {details}, fbtrace_id}}`. Retryable: HTTP 429/5xx and the throttling or transient codes
//!   (1, 2, 4, 80007, 130429, 131000, 131016, 131056, 133004); any other code is permanent —
//!   among them 100 (invalid parameter), 190 (expired token), 131026 (undeliverable), 131047
//!   (outside the 24-hour window: send a template), 132000/132001 (template parameters or
//!   template missing). The error's code is Graph's `code`.

use std::fmt;

use reqwest::{
    StatusCode,
    header::{AUTHORIZATION, HeaderValue},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};

use super::{
    Accepted, SendError,
    http::{BaseUrl, ProviderHttp, body_text, bounded, by_status, exchange},
    whatsapp::{CloudTemplate, ConnectionState, WhatsappProvider},
};
use crate::domain::phone::Phone;

/// The name the delivery log records.
pub const PROVIDER: &str = "whatsapp_cloud";
/// Graph error codes that mean "later": throttling and Meta's transient failures.
const RETRYABLE_CODES: [i64; 9] = [1, 2, 4, 80007, 130429, 131000, 131016, 131056, 133004];

/// A company's Cloud API sender. No `Debug` of the token.
#[derive(Clone, PartialEq, Eq)]
pub struct CloudConfig {
    /// `https://graph.facebook.com` in production.
    pub base_url: String,
    /// The Graph API version, e.g. `v21.0`.
    pub version: String,
    /// The business phone number's id (not the number itself).
    pub phone_number_id: String,
    /// A system user's access token with `whatsapp_business_messaging`.
    pub access_token: String,
}

impl fmt::Debug for CloudConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudConfig")
            .field("base_url", &self.base_url)
            .field("version", &self.version)
            .field("phone_number_id", &self.phone_number_id)
            .field("access_token", &"[redacted]")
            .finish()
    }
}

/// [`WhatsappProvider`] over one Cloud API phone number.
#[derive(Clone)]
pub struct CloudClient {
    http: ProviderHttp,
    base: BaseUrl,
    version: String,
    phone_number_id: String,
    authorization: HeaderValue,
}

impl fmt::Debug for CloudClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudClient")
            .field("base", &self.base)
            .field("version", &self.version)
            .field("phone_number_id", &self.phone_number_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct SentMessages {
    messages: Vec<SentMessage>,
}

#[derive(Deserialize)]
struct SentMessage {
    id: String,
}

#[derive(Deserialize)]
struct PhoneNumberStatus {
    status: Option<String>,
}

#[derive(Deserialize)]
struct GraphErrorAnswer {
    error: GraphError,
}

#[derive(Deserialize)]
struct GraphError {
    code: Option<i64>,
    error_subcode: Option<i64>,
    message: Option<String>,
    error_data: Option<GraphErrorData>,
}

#[derive(Deserialize)]
struct GraphErrorData {
    details: Option<String>,
}

impl CloudClient {
    /// A client of `config`'s phone number over `http` (see [`ProviderHttp`]). Refuses a
    /// URL that is not http(s), a version not like `v21.0`, a phone number id that is not
    /// digits, a token a header cannot carry.
    pub fn new(http: ProviderHttp, config: &CloudConfig) -> Result<Self, String> {
        let base = http.base_url("WhatsApp Cloud API", &config.base_url)?;
        let version = config.version.trim();
        let digits_and_dots =
            |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if !version.strip_prefix('v').is_some_and(digits_and_dots) {
            return Err(format!("`{version}` is not a Graph API version like v21.0"));
        }
        let phone_number_id = config.phone_number_id.trim();
        if phone_number_id.is_empty() || !phone_number_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "`{phone_number_id}` is not a WhatsApp phone number id (digits)"
            ));
        }
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", config.access_token.trim()))
                .ok()
                .filter(|_| !config.access_token.trim().is_empty())
                .ok_or(
                    "the WhatsApp access token is empty or has characters a header cannot carry",
                )?;
        authorization.set_sensitive(true);
        Ok(Self {
            http,
            base,
            version: version.to_owned(),
            phone_number_id: phone_number_id.to_owned(),
            authorization,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        action: &str,
    ) -> Result<T, SendError> {
        let request = request.header(AUTHORIZATION, self.authorization.clone());
        exchange("the WhatsApp Cloud API", action, request, classify).await
    }

    async fn send(&self, message: Value) -> Result<Accepted, SendError> {
        let request = self
            .http
            .post(
                self.base
                    .join(&[&self.version, &self.phone_number_id, "messages"]),
            )
            .json(&message);
        let sent: SentMessages = self.call(request, "messages").await?;
        let id = sent
            .messages
            .into_iter()
            .next()
            .map(|message| message.id)
            .ok_or_else(|| {
                SendError::permanent(
                    "unreadable_answer",
                    "the WhatsApp Cloud API accepted the message but named no message id",
                )
            })?;
        tracing::info!(provider = PROVIDER, phone_number_id = %self.phone_number_id, provider_message_id = %id, "WhatsApp message accepted");
        Ok(Accepted {
            provider: PROVIDER,
            provider_message_id: id,
        })
    }
}

/// The recipient as the Cloud API documents it: digits with the country code.
fn recipient(to: &Phone) -> &str {
    to.as_str().trim_start_matches('+')
}

#[async_trait::async_trait]
impl WhatsappProvider for CloudClient {
    async fn send_text(&self, to: &Phone, text: &str) -> Result<Accepted, SendError> {
        self.send(json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": recipient(to),
            "type": "text",
            "text": {"preview_url": false, "body": text}
        }))
        .await
    }

    async fn send_template(
        &self,
        to: &Phone,
        template: &CloudTemplate,
    ) -> Result<Accepted, SendError> {
        let mut body = json!({"name": template.name, "language": {"code": template.language}});
        // A template without placeholders takes no components.
        if !template.body_parameters.is_empty() {
            let parameters: Vec<Value> = template
                .body_parameters
                .iter()
                .map(|text| json!({"type": "text", "text": text}))
                .collect();
            body["components"] = json!([{"type": "body", "parameters": parameters}]);
        }
        self.send(json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": recipient(to),
            "type": "template",
            "template": body
        }))
        .await
    }

    async fn connection_state(&self) -> Result<ConnectionState, SendError> {
        let mut url = self.base.join(&[&self.version, &self.phone_number_id]);
        url.query_pairs_mut().append_pair("fields", "status");
        let answer: PhoneNumberStatus = self.call(self.http.get(url), "status").await?;
        Ok(match answer.status.as_deref() {
            // A flagged number still sends; its quality is at risk, not its connection.
            Some("CONNECTED" | "FLAGGED") => ConnectionState::Open,
            Some("PENDING" | "RATE_LIMITED") => ConnectionState::Connecting,
            _ => ConnectionState::Closed,
        })
    }
}

/// Sorts a Graph error: throttling, transient codes, 429 and 5xx later; anything else never.
fn classify(status: StatusCode, body: &[u8]) -> SendError {
    let Ok(GraphErrorAnswer { error }) = serde_json::from_slice(body) else {
        let message = format!(
            "the WhatsApp Cloud API answered HTTP {}: {}",
            status.as_u16(),
            body_text(body)
        );
        return by_status(status, status.as_u16().to_string(), message);
    };
    let mut message = error.message.unwrap_or_default();
    if let Some(details) = error.error_data.and_then(|data| data.details) {
        message = format!("{message}: {details}");
    }
    if let Some(subcode) = error.error_subcode {
        message = format!("{message} (subcode {subcode})");
    }
    let message = bounded(&format!(
        "the WhatsApp Cloud API answered HTTP {}: {message}",
        status.as_u16()
    ));
    let code = error
        .code
        .map_or_else(|| status.as_u16().to_string(), |code| code.to_string());
    if error
        .code
        .is_some_and(|code| RETRYABLE_CODES.contains(&code))
    {
        SendError::retryable(code, message)
    } else {
        by_status(status, code, message)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{body_json, header, method, path, query_param},
    };

    use super::*;
    use crate::notifications::http::{answering_one_post, loopback_http};

    const TOKEN: &str = "EAAG-test-token";

    fn config(server: &MockServer) -> CloudConfig {
        CloudConfig {
            base_url: server.uri(),
            version: "v21.0".into(),
            phone_number_id: "106540352242922".into(),
            access_token: TOKEN.into(),
        }
    }

    fn client(server: &MockServer) -> CloudClient {
        CloudClient::new(loopback_http(Duration::from_secs(5)), &config(server))
            .expect("valid config")
    }

    fn phone() -> Phone {
        Phone::parse("+5511987654321").expect("phone")
    }

    fn sent(id: &str) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": "5511987654321", "wa_id": "5511987654321"}],
            "messages": [{"id": id, "message_status": "accepted"}]
        }))
    }

    fn graph_error(
        status: u16,
        code: i64,
        subcode: Option<i64>,
        message: &str,
    ) -> ResponseTemplate {
        ResponseTemplate::new(status).set_body_json(json!({
            "error": {
                "message": message, "type": "OAuthException", "code": code,
                "error_subcode": subcode, "error_data": {"messaging_product": "whatsapp", "details": "see the template"},
                "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam"
            }
        }))
    }

    async fn send_answered_with(response: ResponseTemplate) -> SendError {
        let server = answering_one_post(response).await;
        client(&server)
            .send_text(&phone(), "oi")
            .await
            .expect_err("the send fails")
    }

    #[tokio::test]
    async fn templates_are_sent_with_their_language_and_body_parameters() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v21.0/106540352242922/messages"))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .and(body_json(json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "5511987654321",
                "type": "template",
                "template": {
                    "name": "order_ready",
                    "language": {"code": "pt_BR"},
                    "components": [{"type": "body", "parameters": [
                        {"type": "text", "text": "Maria"},
                        {"type": "text", "text": "#1042"}
                    ]}]
                }
            })))
            .respond_with(sent(
                "wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
            ))
            .expect(1)
            .mount(&server)
            .await;
        let template = CloudTemplate {
            name: "order_ready".into(),
            language: "pt_BR".into(),
            body_parameters: vec!["Maria".into(), "#1042".into()],
        };

        let accepted = client(&server)
            .send_template(&phone(), &template)
            .await
            .expect("sent");

        assert_eq!(
            accepted,
            Accepted {
                provider: "whatsapp_cloud",
                provider_message_id: "wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
                    .into()
            }
        );
    }

    #[tokio::test]
    async fn text_and_templates_without_placeholders_follow_the_contract() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(body_json(json!({
                "messaging_product": "whatsapp", "recipient_type": "individual",
                "to": "5511987654321", "type": "text",
                "text": {"preview_url": false, "body": "Seu pedido está pronto"}
            })))
            .respond_with(sent("wamid.text"))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(body_json(json!({
                "messaging_product": "whatsapp", "recipient_type": "individual",
                "to": "5511987654321", "type": "template",
                "template": {"name": "hello_world", "language": {"code": "en_US"}}
            })))
            .respond_with(sent("wamid.template"))
            .expect(1)
            .mount(&server)
            .await;
        let client = client(&server);

        let text = client
            .send_text(&phone(), "Seu pedido está pronto")
            .await
            .expect("sent");
        let hello = CloudTemplate {
            name: "hello_world".into(),
            language: "en_US".into(),
            body_parameters: vec![],
        };
        let template = client.send_template(&phone(), &hello).await.expect("sent");

        assert_eq!(text.provider_message_id, "wamid.text");
        assert_eq!(template.provider_message_id, "wamid.template");
    }

    #[tokio::test]
    async fn throttling_and_transient_codes_are_retryable() {
        for (status, code) in [
            (400, 130429),
            (400, 131056),
            (400, 4),
            (400, 80007),
            (500, 131000),
            (503, 131016),
        ] {
            let error = send_answered_with(graph_error(status, code, None, "Rate limit hit")).await;
            assert!(error.is_retryable(), "{code}: {error}");
            assert_eq!(error.code(), code.to_string());
        }
        let outage =
            send_answered_with(ResponseTemplate::new(502).set_body_string("Bad Gateway")).await;
        assert_eq!(
            outage,
            SendError::retryable(
                "502",
                "the WhatsApp Cloud API answered HTTP 502: Bad Gateway"
            )
        );
    }

    #[tokio::test]
    async fn rejected_templates_and_invalid_parameters_are_permanent() {
        let mismatch = send_answered_with(graph_error(
            400,
            132000,
            Some(2_494_073),
            "Number of parameters does not match the expected number of params",
        ))
        .await;
        assert_eq!(
            mismatch,
            SendError::permanent(
                "132000",
                "the WhatsApp Cloud API answered HTTP 400: Number of parameters does not match the expected number of params: see the template (subcode 2494073)"
            )
        );
        for (status, code) in [
            (404, 132001),
            (400, 131026),
            (400, 100),
            (401, 190),
            (400, 131047),
        ] {
            let error = send_answered_with(graph_error(status, code, None, "refused")).await;
            assert!(!error.is_retryable(), "{code}: {error}");
            assert_eq!(error.code(), code.to_string());
        }
    }

    #[tokio::test]
    async fn an_answer_without_a_message_id_is_not_retried() {
        let error = send_answered_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"messaging_product": "whatsapp", "messages": []})),
        )
        .await;
        assert_eq!(error.code(), "unreadable_answer");
        assert!(!error.is_retryable());
    }

    #[tokio::test]
    async fn connection_state_reads_the_phone_numbers_status() {
        for (status, expected) in [
            ("CONNECTED", ConnectionState::Open),
            ("FLAGGED", ConnectionState::Open),
            ("PENDING", ConnectionState::Connecting),
            ("RATE_LIMITED", ConnectionState::Connecting),
            ("OFFLINE", ConnectionState::Closed),
            ("RESTRICTED", ConnectionState::Closed),
        ] {
            let server = MockServer::start().await;
            Mock::given(method("GET"))
                .and(path("/v21.0/106540352242922"))
                .and(query_param("fields", "status"))
                .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
                .respond_with(
                    ResponseTemplate::new(200)
                        .set_body_json(json!({"status": status, "id": "106540352242922"})),
                )
                .expect(1)
                .mount(&server)
                .await;
            assert_eq!(
                client(&server).connection_state().await,
                Ok(expected),
                "{status}"
            );
        }
    }

    #[test]
    fn a_config_that_cannot_work_is_refused_without_repeating_the_token() {
        let http = loopback_http(Duration::from_secs(1));
        let good = CloudConfig {
            base_url: "https://graph.facebook.com".into(),
            version: "v21.0".into(),
            phone_number_id: "106540352242922".into(),
            access_token: TOKEN.into(),
        };
        assert!(CloudClient::new(http.clone(), &good).is_ok());
        for bad in [
            CloudConfig {
                version: "21.0".into(),
                ..good.clone()
            },
            CloudConfig {
                version: "v".into(),
                ..good.clone()
            },
            CloudConfig {
                phone_number_id: "../me".into(),
                ..good.clone()
            },
            CloudConfig {
                access_token: "".into(),
                ..good.clone()
            },
            CloudConfig {
                access_token: "a\nb".into(),
                ..good.clone()
            },
        ] {
            let error = CloudClient::new(http.clone(), &bad).expect_err("refused");
            assert!(!error.contains(TOKEN), "{error}");
        }
        assert!(!format!("{good:?}").contains(TOKEN));
    }
}
