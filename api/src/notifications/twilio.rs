//! SMS through Twilio's Programmable Messaging. Contract:
//! <https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource>,
//! errors <https://www.twilio.com/docs/usage/twilios-response#response-formats-exceptions>,
//! callbacks <https://www.twilio.com/docs/messaging/guides/track-outbound-message-status> and
//! <https://www.twilio.com/docs/messaging/guides/webhook-request>:
//!
//! - `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP basic auth
//!   `AccountSid:AuthToken`, form fields `To`, `From` or `MessagingServiceSid`, `Body`,
//!   `StatusCallback`; `201` with the Message resource, whose `sid` (`SM…`) the status callbacks
//!   name.
//! - Errors are `{code, message, more_info, status}`. 429, 5xx, Twilio's 20429 (too many
//!   requests) and timeouts are retryable; any other 4xx (21211 invalid `To`, 21610 the person
//!   replied STOP, 21614 not a mobile number, 20003 bad credentials) is permanent. The error's
//!   code is Twilio's `code`, or the HTTP status when the answer has none.
//! - Status callbacks and inbound messages are form posts; [`parse_callback`] reads
//!   `MessageSid`, `MessageStatus` (`queued`, `sending`, `sent`, `delivered`, `undelivered`,
//!   `failed`, `read`), `ErrorCode`, and for an inbound SMS `From` and `Body`. Their
//!   `X-Twilio-Signature` is checked in [`crate::webhooks::incoming`].

use std::fmt;

use reqwest::{StatusCode, Url, header::CONTENT_TYPE};
use serde::Deserialize;

use super::{
    Accepted, DeliveryStatus, SendError, WebhookEvent,
    http::{BaseUrl, ProviderHttp, body_text, bounded, by_status, exchange},
};
use crate::domain::phone::Phone;

/// The name the delivery log records.
pub const PROVIDER: &str = "twilio";
/// Twilio's "Too Many Requests" code, which comes with a 429 but is worth naming.
const TOO_MANY_REQUESTS: i64 = 20429;

/// Who a message comes from: a Twilio number, or a Messaging Service that picks one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwilioSender {
    From(Phone),
    /// A Messaging Service's sid, `MG…`.
    MessagingService(String),
}

/// A company's Twilio account. No `Debug` of the auth token.
#[derive(Clone, PartialEq, Eq)]
pub struct TwilioConfig {
    /// `https://api.twilio.com` in production.
    pub base_url: String,
    /// `AC…`.
    pub account_sid: String,
    pub auth_token: String,
    pub sender: TwilioSender,
    /// Where Twilio posts the message's status changes, e.g.
    /// `https://platform.example.com/webhooks/in/twilio/{companyId}`.
    pub status_callback: Option<Url>,
}

impl fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[redacted]")
            .field("sender", &self.sender)
            .field("status_callback", &self.status_callback)
            .finish()
    }
}

/// Sends SMS from one Twilio account.
#[derive(Clone)]
pub struct TwilioClient {
    http: ProviderHttp,
    base: BaseUrl,
    account_sid: String,
    auth_token: String,
    sender: TwilioSender,
    status_callback: Option<Url>,
}

impl fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioClient")
            .field("base", &self.base)
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct CreatedMessage {
    sid: String,
}

#[derive(Deserialize)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
}

impl TwilioClient {
    /// A client of `config`'s account over `http` (see [`ProviderHttp`]). Refuses a URL
    /// that is not http(s), an account sid that is not `AC` and letters/digits, an empty token.
    pub fn new(http: ProviderHttp, config: &TwilioConfig) -> Result<Self, String> {
        let base = http.base_url("Twilio", &config.base_url)?;
        let sid = config.account_sid.trim();
        if !(sid.starts_with("AC")
            && sid.len() > 2
            && sid.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(format!(
                "`{sid}` is not a Twilio account sid (AC followed by letters and digits)"
            ));
        }
        if config.auth_token.trim().is_empty() {
            return Err("the Twilio auth token is empty".into());
        }
        Ok(Self {
            http,
            base,
            account_sid: sid.to_owned(),
            auth_token: config.auth_token.trim().to_owned(),
            sender: config.sender.clone(),
            status_callback: config.status_callback.clone(),
        })
    }

    /// Sends `body` as an SMS to `to`.
    pub async fn send_sms(&self, to: &Phone, body: &str) -> Result<Accepted, SendError> {
        let mut form: Vec<(&str, &str)> = vec![("To", to.as_str()), ("Body", body)];
        match &self.sender {
            TwilioSender::From(phone) => form.push(("From", phone.as_str())),
            TwilioSender::MessagingService(sid) => form.push(("MessagingServiceSid", sid)),
        }
        if let Some(callback) = &self.status_callback {
            form.push(("StatusCallback", callback.as_str()));
        }
        let url = self
            .base
            .join(&["2010-04-01", "Accounts", &self.account_sid, "Messages.json"]);
        let request = self
            .http
            .post(url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish(),
            );
        let created: CreatedMessage =
            exchange("Twilio", "Messages.json", request, classify).await?;
        tracing::info!(provider = PROVIDER, account_sid = %self.account_sid, provider_message_id = %created.sid, "SMS accepted");
        Ok(Accepted {
            provider: PROVIDER,
            provider_message_id: created.sid,
        })
    }
}

/// Sorts an error answer by its HTTP status, keeping Twilio's code and message.
fn classify(status: StatusCode, body: &[u8]) -> SendError {
    let parsed: Option<TwilioError> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().and_then(|error| error.code);
    let message = parsed
        .and_then(|error| error.message)
        .map(|message| bounded(&message))
        .unwrap_or_else(|| body_text(body));
    let message = format!("Twilio answered HTTP {}: {message}", status.as_u16());
    let code_text = code.map_or_else(|| status.as_u16().to_string(), |code| code.to_string());
    if code == Some(TOO_MANY_REQUESTS) {
        SendError::retryable(code_text, message)
    } else {
        by_status(status, code_text, message)
    }
}

/// Reads a status callback or an inbound SMS (their form fields, decoded). `None` for the
/// statuses that say nothing new (`queued`, `accepted`, `scheduled`, `sending`) and for posts
/// that are neither.
pub fn parse_callback<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
) -> Option<WebhookEvent> {
    let field = |name: &str| {
        fields
            .clone()
            .into_iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
            .filter(|value| !value.is_empty())
    };
    let sid = field("MessageSid")?;
    match field("MessageStatus").or_else(|| field("SmsStatus")) {
        Some("received") | None => Some(WebhookEvent::Inbound {
            from: Phone::parse(field("From")?).ok()?,
            text: field("Body")?.to_owned(),
        }),
        Some(status) => {
            let status = match status {
                "sent" => DeliveryStatus::Sent,
                "delivered" => DeliveryStatus::Delivered,
                "read" => DeliveryStatus::Read,
                "undelivered" | "failed" => DeliveryStatus::Failed,
                _ => return None,
            };
            Some(WebhookEvent::StatusUpdate {
                provider_message_id: sid.to_owned(),
                status,
                error_code: field("ErrorCode").map(str::to_owned),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use wiremock::{
        Mock, MockServer, Request, ResponseTemplate,
        matchers::{header, method, path},
    };

    use super::*;
    use crate::notifications::http::{answering_one_post, loopback_http};

    const SID: &str = "AC0123456789abcdef0123456789abcdef";
    const TOKEN: &str = "twilio-token";

    fn config(server: &MockServer) -> TwilioConfig {
        TwilioConfig {
            base_url: server.uri(),
            account_sid: SID.into(),
            auth_token: TOKEN.into(),
            sender: TwilioSender::From(Phone::parse("+15005550006").expect("phone")),
            status_callback: Some(
                Url::parse("https://platform.example.com/webhooks/in/twilio/c1").expect("url"),
            ),
        }
    }

    fn client(config: &TwilioConfig) -> TwilioClient {
        TwilioClient::new(loopback_http(Duration::from_secs(5)), config).expect("valid config")
    }

    fn phone() -> Phone {
        Phone::parse("+5511987654321").expect("phone")
    }

    fn form(request: &Request) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect()
    }

    /// The Message resource Twilio answers a create with, trimmed.
    fn message_resource(sid: &str) -> serde_json::Value {
        json!({
            "account_sid": SID, "api_version": "2010-04-01", "body": "Seu pedido está pronto",
            "date_created": "Wed, 02 Dec 2026 12:00:00 +0000", "direction": "outbound-api",
            "error_code": null, "error_message": null, "from": "+15005550006",
            "num_segments": "1", "price": null, "sid": sid, "status": "queued",
            "to": "+5511987654321", "uri": format!("/2010-04-01/Accounts/{SID}/Messages/{sid}.json")
        })
    }

    async fn send_answered_with(response: ResponseTemplate) -> SendError {
        let server = answering_one_post(response).await;
        client(&config(&server))
            .send_sms(&phone(), "oi")
            .await
            .expect_err("the send fails")
    }

    fn twilio_error(status: u16, code: i64, message: &str) -> ResponseTemplate {
        ResponseTemplate::new(status).set_body_json(json!({
            "code": code, "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status
        }))
    }

    #[tokio::test]
    async fn send_sms_posts_the_documented_form_with_basic_auth() {
        let server = MockServer::start().await;
        // base64("AC…:twilio-token")
        let basic = format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{SID}:{TOKEN}")
            )
        );
        Mock::given(method("POST"))
            .and(path(format!("/2010-04-01/Accounts/{SID}/Messages.json")))
            .and(header("authorization", basic.as_str()))
            .and(header("content-type", "application/x-www-form-urlencoded"))
            .respond_with(ResponseTemplate::new(201).set_body_json(message_resource("SM1f0e")))
            .expect(1)
            .mount(&server)
            .await;

        let accepted = client(&config(&server))
            .send_sms(&phone(), "Seu pedido está pronto")
            .await
            .expect("sent");

        assert_eq!(
            accepted,
            Accepted {
                provider: "twilio",
                provider_message_id: "SM1f0e".into()
            }
        );
        let requests = server.received_requests().await.expect("recorded");
        assert_eq!(
            form(&requests[0]),
            [
                ("To", "+5511987654321"),
                ("Body", "Seu pedido está pronto"),
                ("From", "+15005550006"),
                (
                    "StatusCallback",
                    "https://platform.example.com/webhooks/in/twilio/c1"
                ),
            ]
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
        );
    }

    #[tokio::test]
    async fn a_messaging_service_replaces_from() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201).set_body_json(message_resource("SM2")))
            .mount(&server)
            .await;
        let through_service = TwilioConfig {
            sender: TwilioSender::MessagingService("MG0123".into()),
            status_callback: None,
            ..config(&server)
        };
        client(&through_service)
            .send_sms(&phone(), "oi")
            .await
            .expect("sent");
        let requests = server.received_requests().await.expect("recorded");
        assert_eq!(
            form(&requests[0]),
            [
                ("To", "+5511987654321"),
                ("Body", "oi"),
                ("MessagingServiceSid", "MG0123")
            ]
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
        );
    }

    #[tokio::test]
    async fn invalid_numbers_and_opted_out_people_are_permanent_with_twilios_code() {
        for (code, message) in [
            (21211, "The 'To' number +5511 is not a valid phone number."),
            (21610, "Attempt to send to unsubscribed recipient"),
            (21614, "'To' number is not a valid mobile number"),
        ] {
            let error = send_answered_with(twilio_error(400, code, message)).await;
            assert_eq!(
                error,
                SendError::permanent(
                    code.to_string(),
                    format!("Twilio answered HTTP 400: {message}")
                )
            );
        }
        let unauthorized = send_answered_with(twilio_error(401, 20003, "Authenticate")).await;
        assert_eq!(unauthorized.code(), "20003");
        assert!(!unauthorized.is_retryable());
    }

    #[tokio::test]
    async fn rate_limits_and_outages_are_retryable() {
        let limited = send_answered_with(twilio_error(429, 20429, "Too Many Requests")).await;
        assert_eq!(
            limited,
            SendError::retryable("20429", "Twilio answered HTTP 429: Too Many Requests")
        );
        for status in [500, 503] {
            let error =
                send_answered_with(ResponseTemplate::new(status).set_body_string("upstream down"))
                    .await;
            assert_eq!(
                error,
                SendError::retryable(
                    status.to_string(),
                    format!("Twilio answered HTTP {status}: upstream down")
                )
            );
        }
    }

    #[test]
    fn a_config_that_cannot_work_is_refused() {
        let http = loopback_http(Duration::from_secs(1));
        let good = TwilioConfig {
            base_url: "https://api.twilio.com".into(),
            account_sid: SID.into(),
            auth_token: TOKEN.into(),
            sender: TwilioSender::MessagingService("MG1".into()),
            status_callback: None,
        };
        assert!(TwilioClient::new(http.clone(), &good).is_ok());
        for bad in [
            TwilioConfig {
                account_sid: "AC/../x".into(),
                ..good.clone()
            },
            TwilioConfig {
                account_sid: "SK0123".into(),
                ..good.clone()
            },
            TwilioConfig {
                auth_token: " ".into(),
                ..good.clone()
            },
            TwilioConfig {
                base_url: "file:///etc".into(),
                ..good.clone()
            },
        ] {
            assert!(TwilioClient::new(http.clone(), &bad).is_err(), "{bad:?}");
        }
        assert!(!format!("{good:?}").contains(TOKEN));
    }

    #[test]
    fn status_callbacks_map_to_delivery_statuses() {
        for (status, expected) in [
            ("sent", DeliveryStatus::Sent),
            ("delivered", DeliveryStatus::Delivered),
            ("read", DeliveryStatus::Read),
            ("undelivered", DeliveryStatus::Failed),
            ("failed", DeliveryStatus::Failed),
        ] {
            let fields = [
                ("MessageSid", "SM1"),
                ("MessageStatus", status),
                ("SmsStatus", status),
                ("AccountSid", SID),
            ];
            assert_eq!(
                parse_callback(fields),
                Some(WebhookEvent::StatusUpdate {
                    provider_message_id: "SM1".into(),
                    status: expected,
                    error_code: None
                }),
                "{status}"
            );
        }
        let failed = [
            ("MessageSid", "SM1"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
        ];
        assert!(matches!(
            parse_callback(failed),
            Some(WebhookEvent::StatusUpdate { error_code: Some(code), .. }) if code == "30003"
        ));
        for status in ["queued", "accepted", "sending"] {
            assert_eq!(
                parse_callback([("MessageSid", "SM1"), ("MessageStatus", status)]),
                None
            );
        }
    }

    #[test]
    fn inbound_sms_is_read_with_the_senders_phone() {
        let fields = [
            ("MessageSid", "SM9"),
            ("SmsStatus", "received"),
            ("From", "+5511987654321"),
            ("To", "+15005550006"),
            ("Body", "PARAR"),
            ("NumMedia", "0"),
        ];
        assert_eq!(
            parse_callback(fields),
            Some(WebhookEvent::Inbound {
                from: phone(),
                text: "PARAR".into()
            })
        );
        assert_eq!(
            parse_callback([("MessageSid", "SM9"), ("From", "+5511987654321")]),
            None
        );
        assert_eq!(
            parse_callback([("Body", "PARAR"), ("From", "+5511987654321")]),
            None
        );
    }
}
