//! Card payments through Stripe, behind the [`PaymentProvider`] trait.
//!
//! The payment flow talks to the trait, not to Stripe, so it can run against a fake and another
//! provider can be added without touching it. Each company connects its own Stripe account, so
//! the secret key travels with every call instead of living in the client: one [`StripeClient`]
//! (one connection pool) serves every tenant.
//!
//! Every POST carries the caller's idempotency key. After a timeout, a 429, a 5xx or an answer
//! that cannot be read the caller retries with the same key and Stripe answers with the first
//! outcome instead of charging twice; [`ProviderError::is_retryable`] says when such a retry makes
//! sense.
//!
//! Nothing Stripe (or anything pretending to be Stripe) sends can panic this module: unknown
//! statuses and unreadable bodies become [`ProviderError::Unexpected`], error bodies we cannot
//! parse are classified by their HTTP status alone. The secret key goes only into the
//! `Authorization` header, marked sensitive so it never shows in debug output, and is scrubbed
//! from any message that echoes it back. Ids are checked before they go into a URL path, so no
//! input can steer a request to another endpoint.

use std::time::Duration;

use reqwest::{
    StatusCode, Url,
    header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue},
};
use serde::{Deserialize, de::DeserializeOwned};
use url::form_urlencoded;

/// A card payment provider. Every call names the tenant's secret key and an idempotency key;
/// repeating a call with the same idempotency key and the same arguments never repeats its
/// effect.
#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Opens a card payment for the payer's browser to confirm with the intent's client secret.
    async fn create_intent(&self, request: &IntentRequest<'_>) -> Result<Intent, ProviderError>;
    /// Takes the money of an intent created with `manual_capture` once it `RequiresCapture`.
    async fn capture(
        &self,
        secret_key: &str,
        intent_id: &str,
        idempotency_key: &str,
    ) -> Result<Intent, ProviderError>;
    /// Abandons an intent that has not succeeded, releasing any hold on the card.
    async fn cancel(
        &self,
        secret_key: &str,
        intent_id: &str,
        idempotency_key: &str,
    ) -> Result<Intent, ProviderError>;
    /// Returns all or part of a succeeded payment to the card.
    async fn refund(&self, request: &RefundRequest<'_>) -> Result<ProviderRefund, ProviderError>;
}

/// A payment to open. No `Debug`: it carries the secret key.
pub struct IntentRequest<'a> {
    pub secret_key: &'a str,
    /// In the currency's minor unit (cents for EUR).
    pub amount_minor: i64,
    /// ISO 4217, upper case as we store it; Stripe wants it lower case.
    pub currency: &'a str,
    pub idempotency_key: &'a str,
    /// Shown in the Stripe dashboard.
    pub description: Option<&'a str>,
    /// Sent as `metadata[key]`, so a payment can be traced back from the dashboard or a webhook.
    pub metadata: &'a [(&'a str, String)],
    /// Only authorize the card now and take the money with [`PaymentProvider::capture`] later.
    pub manual_capture: bool,
}

/// A Stripe PaymentIntent, reduced to what the payment flow acts on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Intent {
    pub id: String,
    /// What the payer's browser needs to confirm the payment; not part of every answer.
    pub client_secret: Option<String>,
    pub status: IntentStatus,
    /// Minor units actually collected: 0 until the payment succeeds.
    #[serde(rename = "amount_received")]
    pub amount_received_minor: i64,
}

/// Where a PaymentIntent is in Stripe's lifecycle. A status Stripe adds later fails to parse,
/// giving [`ProviderError::Unexpected`] rather than being mistaken for a known one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    RequiresCapture,
    Canceled,
    Succeeded,
}

/// A refund to make. No `Debug`: it carries the secret key.
pub struct RefundRequest<'a> {
    pub secret_key: &'a str,
    pub intent_id: &'a str,
    /// In the currency's minor unit; at most what is left unrefunded.
    pub amount_minor: i64,
    pub idempotency_key: &'a str,
    /// Free text, sent as `metadata[reason]`: Stripe's own `reason` only takes a few fixed
    /// values.
    pub reason: Option<&'a str>,
}

/// A Stripe Refund, reduced to what the payment flow acts on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProviderRefund {
    pub id: String,
    pub status: RefundStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
    Canceled,
    RequiresAction,
}

/// Why a provider call failed, sorted by what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// The card was declined or the request was refused for a reason the payer or staff can act
    /// on (HTTP 402, or 400 with type `card_error`); the message is Stripe's, meant for people.
    Declined(String),
    /// Our request was invalid (400 `invalid_request_error`, 404): a bug or bad configuration.
    Invalid(String),
    /// Bad or missing API key (401/403).
    Unauthorized(String),
    /// Idempotency conflict (409 / `idempotency_error`): the same key was used with other
    /// parameters.
    Conflict(String),
    /// Network error, timeout, 429 or 5xx: safe to retry with the same idempotency key.
    Unavailable(String),
    /// A response we could not read. Stripe may well have done what was asked (created the
    /// intent, made the refund), so the outcome is unknown, as after a timeout: retry with the
    /// same idempotency key to learn it.
    Unexpected(String),
}

impl ProviderError {
    pub fn message(&self) -> &str {
        match self {
            Self::Declined(message)
            | Self::Invalid(message)
            | Self::Unauthorized(message)
            | Self::Conflict(message)
            | Self::Unavailable(message)
            | Self::Unexpected(message) => message,
        }
    }

    /// Whether the same call, with the same idempotency key, may succeed later: when Stripe
    /// could not be heard (unavailable) or could not be understood (unexpected), the outcome is
    /// unknown and must not be taken for a refusal.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Unexpected(_))
    }
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Self::Declined(_) => "payment declined",
            Self::Invalid(_) => "invalid payment request",
            Self::Unauthorized(_) => "payment provider refused the credentials",
            Self::Conflict(_) => "idempotency conflict",
            Self::Unavailable(_) => "payment provider unavailable",
            Self::Unexpected(_) => "unexpected payment provider answer",
        };
        write!(f, "{kind}: {}", self.message())
    }
}

impl std::error::Error for ProviderError {}

/// Stripe's `Idempotency-Key` header.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Stripe sets this when the status code alone does not say whether a retry can help, e.g. a 409
/// because a request with the same idempotency key is still in progress.
const SHOULD_RETRY: HeaderName = HeaderName::from_static("stripe-should-retry");
/// Stands in for the secret key wherever a message would repeat it.
const REDACTED: &str = "[redacted]";

/// [`PaymentProvider`] over Stripe's REST API.
#[derive(Debug, Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    /// Without a trailing slash, so paths starting with `/` append to it.
    base_url: String,
}

impl StripeClient {
    /// `base_url` is `https://api.stripe.com` in production (one trailing slash is tolerated);
    /// `timeout` bounds both connecting and each whole request.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, String> {
        let base_url = base_url.strip_suffix('/').unwrap_or(base_url);
        let parsed = Url::parse(base_url)
            .map_err(|error| format!("the Stripe API URL `{base_url}` is not valid: {error}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "the Stripe API URL `{base_url}` must start with https:// (or http:// in tests)"
            ));
        }
        let http = reqwest::Client::builder()
            // A redirect would carry the secret key to wherever it points; Stripe never sends one.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("Platform/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("failed to build the Stripe HTTP client: {error}"))?;
        Ok(Self {
            http,
            base_url: base_url.to_owned(),
        })
    }

    /// `capture` and `cancel`: an empty POST to `/v1/payment_intents/{id}/{action}`.
    async fn intent_action(
        &self,
        action: &str,
        secret_key: &str,
        intent_id: &str,
        idempotency_key: &str,
    ) -> Result<Intent, ProviderError> {
        let intent_id = path_id(intent_id)?;
        self.post(
            &format!("/v1/payment_intents/{intent_id}/{action}"),
            secret_key,
            idempotency_key,
            String::new(),
        )
        .await
    }

    /// POSTs a form and reads the answer as `T`, or classifies the failure.
    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        secret_key: &str,
        idempotency_key: &str,
        form: String,
    ) -> Result<T, ProviderError> {
        // Checked here rather than left to reqwest, whose error would not say which value was
        // wrong; neither message repeats the value, the key being a secret.
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {secret_key}")).map_err(|_| {
                ProviderError::Unauthorized(
                    "the Stripe secret key contains characters a header cannot carry".into(),
                )
            })?;
        authorization.set_sensitive(true);
        let idempotency_key = HeaderValue::from_str(idempotency_key).map_err(|_| {
            ProviderError::Invalid(
                "the idempotency key contains characters a header cannot carry".into(),
            )
        })?;

        let response = self
            .http
            .post(format!("{}{path}", self.base_url))
            .header(AUTHORIZATION, authorization)
            .header(IDEMPOTENCY_KEY, idempotency_key)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|error| transport_error("could not reach Stripe", &error))?;
        let status = response.status();
        let should_retry = response
            .headers()
            .get(SHOULD_RETRY)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"true"));
        let body = response
            .bytes()
            .await
            .map_err(|error| transport_error("Stripe's answer was cut off", &error))?;

        if status.is_success() {
            serde_json::from_slice(&body).map_err(|error| {
                ProviderError::Unexpected(format!(
                    "could not read Stripe's answer to {path} (HTTP {status}): {error}"
                ))
            })
        } else {
            Err(classify(status, &body, should_retry, secret_key))
        }
    }
}

#[async_trait::async_trait]
impl PaymentProvider for StripeClient {
    async fn create_intent(&self, request: &IntentRequest<'_>) -> Result<Intent, ProviderError> {
        self.post(
            "/v1/payment_intents",
            request.secret_key,
            request.idempotency_key,
            intent_form(request),
        )
        .await
    }

    async fn capture(
        &self,
        secret_key: &str,
        intent_id: &str,
        idempotency_key: &str,
    ) -> Result<Intent, ProviderError> {
        self.intent_action("capture", secret_key, intent_id, idempotency_key)
            .await
    }

    async fn cancel(
        &self,
        secret_key: &str,
        intent_id: &str,
        idempotency_key: &str,
    ) -> Result<Intent, ProviderError> {
        self.intent_action("cancel", secret_key, intent_id, idempotency_key)
            .await
    }

    async fn refund(&self, request: &RefundRequest<'_>) -> Result<ProviderRefund, ProviderError> {
        self.post(
            "/v1/refunds",
            request.secret_key,
            request.idempotency_key,
            refund_form(request),
        )
        .await
    }
}

// The forms are built in plain functions: the serializer is not `Send`, so it must not live
// across an await in the provider's futures.

fn intent_form(request: &IntentRequest<'_>) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("amount", &request.amount_minor.to_string())
        .append_pair("currency", &request.currency.to_ascii_lowercase())
        .append_pair(
            "capture_method",
            if request.manual_capture {
                "manual"
            } else {
                "automatic"
            },
        )
        // Cards only: the payment flow knows no other method, and Stripe would otherwise offer
        // whatever the account's dashboard has enabled.
        .append_pair("payment_method_types[]", "card");
    if let Some(description) = request.description {
        form.append_pair("description", description);
    }
    for (key, value) in request.metadata {
        form.append_pair(&format!("metadata[{key}]"), value);
    }
    form.finish()
}

fn refund_form(request: &RefundRequest<'_>) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("payment_intent", request.intent_id)
        .append_pair("amount", &request.amount_minor.to_string());
    if let Some(reason) = request.reason {
        form.append_pair("metadata[reason]", reason);
    }
    form.finish()
}

/// The id, if it can go into a URL path as is. Stripe ids are `prefix_` plus letters and
/// digits; anything else (a `/`, `..`, `?`, `%`) could point the request at another endpoint.
fn path_id(id: &str) -> Result<&str, ProviderError> {
    if !id.is_empty()
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
    {
        Ok(id)
    } else {
        Err(ProviderError::Invalid(format!(
            "{id:?} is not a Stripe object id"
        )))
    }
}

/// A request that got no complete answer. Only a request reqwest could not even build is our
/// fault; anything else (refused, reset, timed out) may work on a retry with the same key.
fn transport_error(context: &str, error: &reqwest::Error) -> ProviderError {
    // reqwest's own message rarely says what went wrong; the causes do.
    let mut text = format!("{context}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if error.is_builder() {
        ProviderError::Invalid(text)
    } else {
        ProviderError::Unavailable(text)
    }
}

/// Stripe's error body: `{"error": {"type": …, "code": …, "message": …}}`. Every field is
/// optional so that a partial body still contributes what it has.
#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorDetail,
}

#[derive(Default, Deserialize)]
struct ErrorDetail {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

/// Sorts a non-2xx answer by what the caller can do about it. The status decides first, the
/// error type second, so a proxy's HTML error page is still classified sensibly.
fn classify(
    status: StatusCode,
    body: &[u8],
    should_retry: bool,
    secret_key: &str,
) -> ProviderError {
    let status = status.as_u16();
    let detail = serde_json::from_slice::<ErrorEnvelope>(body)
        .map(|envelope| envelope.error)
        .unwrap_or_default();
    let message = detail
        .message
        .filter(|message| !message.trim().is_empty())
        .map(|message| redact(message, secret_key));
    let kind = detail.kind.as_deref().unwrap_or_default();
    let described = || {
        let code = detail
            .code
            .as_deref()
            .filter(|code| !code.is_empty())
            .map(|code| format!(" ({code})"))
            .unwrap_or_default();
        let message = message.as_deref().unwrap_or("no error message");
        format!("Stripe answered HTTP {status}{code}: {message}")
    };

    if should_retry || status == 429 || status >= 500 {
        ProviderError::Unavailable(described())
    } else if status == 401 || status == 403 {
        ProviderError::Unauthorized(described())
    } else if status == 409 || kind == "idempotency_error" {
        ProviderError::Conflict(described())
    } else if status == 402 || kind == "card_error" {
        // Stripe writes this message for the payer ("Your card was declined."), so it goes out
        // as is.
        ProviderError::Declined(message.unwrap_or_else(|| "the payment was declined".to_owned()))
    } else if (400..500).contains(&status) {
        ProviderError::Invalid(described())
    } else {
        // 1xx or 3xx: redirects are not followed, and Stripe sends neither.
        ProviderError::Unexpected(described())
    }
}

fn redact(message: String, secret_key: &str) -> String {
    if secret_key.is_empty() {
        message
    } else {
        message.replace(secret_key, REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{any, body_string, body_string_contains, header, method, path},
    };

    use super::*;

    const KEY: &str = "sk_test_x";

    fn client(server: &MockServer) -> StripeClient {
        StripeClient::new(&server.uri(), Duration::from_secs(5)).expect("client builds")
    }

    /// A PaymentIntent as Stripe documents it, trimmed of fields that play no part here.
    fn payment_intent(id: &str, status: &str, amount_received: i64, capture_method: &str) -> Value {
        json!({
            "id": id,
            "object": "payment_intent",
            "amount": 1050,
            "amount_capturable": if status == "requires_capture" { 1050 } else { 0 },
            "amount_received": amount_received,
            "canceled_at": null,
            "cancellation_reason": null,
            "capture_method": capture_method,
            "client_secret": format!("{id}_secret_AbCdEf123"),
            "confirmation_method": "automatic",
            "created": 1_717_171_717,
            "currency": "eur",
            "customer": null,
            "description": "Table 4",
            "last_payment_error": null,
            "latest_charge": null,
            "livemode": false,
            "metadata": {"order_id": "ord_42", "tenant": "bistro"},
            "next_action": null,
            "payment_method": null,
            "payment_method_types": ["card"],
            "status": status
        })
    }

    fn stripe_error(kind: &str, code: &str, message: &str) -> Value {
        json!({
            "error": {
                "type": kind,
                "code": code,
                "message": message,
                "request_log_url": "https://dashboard.stripe.com/test/logs/req_abc123"
            }
        })
    }

    /// The error a capture gets when Stripe answers with `response`.
    async fn capture_answered_with(response: ResponseTemplate) -> ProviderError {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/payment_intents/pi_1/capture"))
            .respond_with(response)
            .expect(1)
            .mount(&server)
            .await;
        client(&server)
            .capture(KEY, "pi_1", "capture-1")
            .await
            .expect_err("the capture fails")
    }

    #[tokio::test]
    async fn create_sends_amount_currency_capture_method_metadata_and_idempotency_key() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/payment_intents"))
            .and(header("Idempotency-Key", "order-42-attempt-1"))
            .and(header("authorization", "Bearer sk_test_x"))
            .and(header("content-type", "application/x-www-form-urlencoded"))
            .and(body_string(
                "amount=1050&currency=eur&capture_method=manual\
                 &payment_method_types%5B%5D=card&description=Table+4\
                 &metadata%5Border_id%5D=ord_42&metadata%5Btenant%5D=bistro",
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(payment_intent(
                "pi_3MtwBwLkdIwHu7ix28a3tqPa",
                "requires_payment_method",
                0,
                "manual",
            )))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/payment_intents"))
            .and(header("Idempotency-Key", "order-43-attempt-1"))
            .and(body_string_contains("amount=990&currency=usd"))
            .and(body_string_contains("capture_method=automatic"))
            .respond_with(ResponseTemplate::new(200).set_body_json(payment_intent(
                "pi_3MtwBwLkdIwHu7ix28a3tqPb",
                "requires_payment_method",
                0,
                "automatic",
            )))
            .expect(1)
            .mount(&server)
            .await;
        let provider: &dyn PaymentProvider = &client(&server);
        let metadata = [
            ("order_id", "ord_42".to_owned()),
            ("tenant", "bistro".to_owned()),
        ];

        let manual = provider
            .create_intent(&IntentRequest {
                secret_key: KEY,
                amount_minor: 1050,
                currency: "EUR",
                idempotency_key: "order-42-attempt-1",
                description: Some("Table 4"),
                metadata: &metadata,
                manual_capture: true,
            })
            .await
            .expect("the intent is created");
        let automatic = provider
            .create_intent(&IntentRequest {
                secret_key: KEY,
                amount_minor: 990,
                currency: "USD",
                idempotency_key: "order-43-attempt-1",
                description: None,
                metadata: &[],
                manual_capture: false,
            })
            .await
            .expect("the intent is created");

        assert_eq!(
            manual,
            Intent {
                id: "pi_3MtwBwLkdIwHu7ix28a3tqPa".into(),
                client_secret: Some("pi_3MtwBwLkdIwHu7ix28a3tqPa_secret_AbCdEf123".into()),
                status: IntentStatus::RequiresPaymentMethod,
                amount_received_minor: 0,
            }
        );
        assert_eq!(automatic.id, "pi_3MtwBwLkdIwHu7ix28a3tqPb");
        let requests = server
            .received_requests()
            .await
            .expect("requests are recorded");
        assert!(
            requests
                .iter()
                .all(|request| !request.headers.contains_key("stripe-version")),
            "no Stripe-Version header: the account's default API version applies"
        );
    }

    #[tokio::test]
    async fn capture_and_cancel_post_to_the_intent_paths_and_parse_the_intent() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/payment_intents/pi_1Abc/capture"))
            .and(header("Idempotency-Key", "capture-pi_1Abc"))
            .and(header("authorization", "Bearer sk_test_x"))
            .and(body_string(""))
            .respond_with(ResponseTemplate::new(200).set_body_json(payment_intent(
                "pi_1Abc",
                "succeeded",
                1050,
                "manual",
            )))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/payment_intents/pi_2Def/cancel"))
            .and(header("Idempotency-Key", "cancel-pi_2Def"))
            .and(header("authorization", "Bearer sk_test_x"))
            .and(body_string(""))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(payment_intent("pi_2Def", "canceled", 0, "manual")),
            )
            .expect(1)
            .mount(&server)
            .await;
        let stripe = client(&server);

        let captured = stripe
            .capture(KEY, "pi_1Abc", "capture-pi_1Abc")
            .await
            .expect("captured");
        let canceled = stripe
            .cancel(KEY, "pi_2Def", "cancel-pi_2Def")
            .await
            .expect("canceled");

        assert_eq!(captured.id, "pi_1Abc");
        assert_eq!(captured.status, IntentStatus::Succeeded);
        assert_eq!(captured.amount_received_minor, 1050);
        assert_eq!(canceled.id, "pi_2Def");
        assert_eq!(canceled.status, IntentStatus::Canceled);
        assert_eq!(canceled.amount_received_minor, 0);
    }

    #[tokio::test]
    async fn refund_sends_intent_amount_and_reason_as_metadata() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/refunds"))
            .and(header("Idempotency-Key", "refund-7"))
            .and(header("authorization", "Bearer sk_test_x"))
            .and(body_string(
                "payment_intent=pi_1Abc&amount=500&metadata%5Breason%5D=Cold+soup+%26+late",
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "re_1Nispe2eZvKYlo2Cd31jOCgZ",
                "object": "refund",
                "amount": 500,
                "balance_transaction": "txn_1Nispe2eZvKYlo2CYezqFhEx",
                "charge": "ch_1NirD82eZvKYlo2CIvbtLWuY",
                "created": 1_692_942_318,
                "currency": "eur",
                "destination_details": {"card": {"type": "refund"}, "type": "card"},
                "metadata": {"reason": "Cold soup & late"},
                "payment_intent": "pi_1Abc",
                "reason": null,
                "receipt_number": null,
                "source_transfer_reversal": null,
                "status": "pending",
                "transfer_reversal": null
            })))
            .expect(1)
            .mount(&server)
            .await;

        let refund = client(&server)
            .refund(&RefundRequest {
                secret_key: KEY,
                intent_id: "pi_1Abc",
                amount_minor: 500,
                idempotency_key: "refund-7",
                reason: Some("Cold soup & late"),
            })
            .await
            .expect("refunded");

        assert_eq!(
            refund,
            ProviderRefund {
                id: "re_1Nispe2eZvKYlo2Cd31jOCgZ".into(),
                status: RefundStatus::Pending,
            }
        );
    }

    #[tokio::test]
    async fn a_card_error_is_declined_with_stripes_message() {
        let payment_required = capture_answered_with(ResponseTemplate::new(402).set_body_json(
            stripe_error("card_error", "card_declined", "Your card was declined."),
        ))
        .await;
        let bad_request =
            capture_answered_with(ResponseTemplate::new(400).set_body_json(stripe_error(
                "card_error",
                "incorrect_cvc",
                "Your card's security code is incorrect.",
            )))
            .await;

        assert_eq!(
            payment_required,
            ProviderError::Declined("Your card was declined.".into())
        );
        assert_eq!(
            bad_request,
            ProviderError::Declined("Your card's security code is incorrect.".into())
        );
        assert!(!payment_required.is_retryable());
        assert_eq!(
            payment_required.to_string(),
            "payment declined: Your card was declined."
        );
    }

    #[tokio::test]
    async fn an_invalid_request_or_unknown_object_is_invalid() {
        let bad_request =
            capture_answered_with(ResponseTemplate::new(400).set_body_json(stripe_error(
                "invalid_request_error",
                "payment_intent_unexpected_state",
                "This PaymentIntent could not be captured because it has a status of canceled.",
            )))
            .await;
        let not_found =
            capture_answered_with(ResponseTemplate::new(404).set_body_json(stripe_error(
                "invalid_request_error",
                "resource_missing",
                "No such payment_intent: 'pi_1'",
            )))
            .await;

        assert!(
            matches!(bad_request, ProviderError::Invalid(_)),
            "{bad_request:?}"
        );
        assert!(
            bad_request
                .message()
                .contains("HTTP 400 (payment_intent_unexpected_state)")
        );
        assert!(
            bad_request
                .message()
                .contains("it has a status of canceled")
        );
        assert!(
            matches!(not_found, ProviderError::Invalid(_)),
            "{not_found:?}"
        );
        assert!(
            not_found
                .message()
                .contains("No such payment_intent: 'pi_1'")
        );
        assert!(!not_found.is_retryable());
    }

    #[tokio::test]
    async fn a_rejected_key_is_unauthorized_and_never_echoed() {
        let unauthorized =
            capture_answered_with(ResponseTemplate::new(401).set_body_json(stripe_error(
                "invalid_request_error",
                "",
                "Invalid API Key provided: sk_test_x",
            )))
            .await;
        let forbidden =
            capture_answered_with(ResponseTemplate::new(403).set_body_json(stripe_error(
                "invalid_request_error",
                "secret_key_required",
                "This API call cannot be made with a restricted key.",
            )))
            .await;

        assert!(
            matches!(unauthorized, ProviderError::Unauthorized(_)),
            "{unauthorized:?}"
        );
        assert_eq!(
            unauthorized.message(),
            "Stripe answered HTTP 401: Invalid API Key provided: [redacted]"
        );
        assert!(!unauthorized.message().contains(KEY));
        assert!(
            matches!(forbidden, ProviderError::Unauthorized(_)),
            "{forbidden:?}"
        );
        assert!(!forbidden.is_retryable());
    }

    #[tokio::test]
    async fn a_reused_idempotency_key_is_a_conflict_unless_stripe_says_retry() {
        let conflict =
            capture_answered_with(ResponseTemplate::new(409).set_body_json(stripe_error(
                "idempotency_error",
                "idempotency_key_in_use",
                "Keys for idempotent requests can only be used with the same parameters they \
                 were first used with.",
            )))
            .await;
        let in_progress = capture_answered_with(
            ResponseTemplate::new(409)
                .insert_header("Stripe-Should-Retry", "true")
                .set_body_json(stripe_error(
                    "idempotency_error",
                    "idempotency_key_in_use",
                    "There is currently another in-progress request using this Idempotent Key.",
                )),
        )
        .await;

        assert!(
            matches!(conflict, ProviderError::Conflict(_)),
            "{conflict:?}"
        );
        assert!(
            conflict
                .message()
                .contains("can only be used with the same parameters")
        );
        assert!(!conflict.is_retryable());
        assert!(
            matches!(in_progress, ProviderError::Unavailable(_)),
            "{in_progress:?}"
        );
        assert!(in_progress.is_retryable());
    }

    #[tokio::test]
    async fn server_errors_and_rate_limits_are_unavailable_and_retryable() {
        let server_error =
            capture_answered_with(ResponseTemplate::new(500).set_body_json(stripe_error(
                "api_error",
                "",
                "An unknown error occurred",
            )))
            .await;
        let rate_limited =
            capture_answered_with(ResponseTemplate::new(429).set_body_json(stripe_error(
                "invalid_request_error",
                "rate_limit",
                "Request rate limit exceeded.",
            )))
            .await;
        // What a load balancer in front of Stripe might send instead of JSON.
        let bad_gateway = capture_answered_with(
            ResponseTemplate::new(502).set_body_string("<html><body>502 Bad Gateway</body></html>"),
        )
        .await;

        for error in [&server_error, &rate_limited, &bad_gateway] {
            assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
            assert!(error.is_retryable());
        }
        assert!(server_error.message().contains("An unknown error occurred"));
        assert!(rate_limited.message().contains("HTTP 429 (rate_limit)"));
        assert_eq!(
            bad_gateway.message(),
            "Stripe answered HTTP 502: no error message"
        );
    }

    #[tokio::test]
    async fn an_unreadable_answer_is_unexpected_and_retryable() {
        let garbage = capture_answered_with(
            ResponseTemplate::new(200).set_body_string("<html>definitely not JSON</html>"),
        )
        .await;
        let unknown_status =
            capture_answered_with(ResponseTemplate::new(200).set_body_json(payment_intent(
                "pi_1",
                "requires_magic",
                0,
                "manual",
            )))
            .await;
        let redirect = capture_answered_with(
            ResponseTemplate::new(302).insert_header("Location", "https://example.com/"),
        )
        .await;

        assert!(
            matches!(garbage, ProviderError::Unexpected(_)),
            "{garbage:?}"
        );
        assert!(
            garbage
                .message()
                .contains("/v1/payment_intents/pi_1/capture")
        );
        assert!(
            matches!(unknown_status, ProviderError::Unexpected(_)),
            "{unknown_status:?}"
        );
        assert!(unknown_status.message().contains("requires_magic"));
        assert!(
            matches!(redirect, ProviderError::Unexpected(_)),
            "{redirect:?}"
        );
        for unknown_outcome in [&garbage, &unknown_status, &redirect] {
            assert!(unknown_outcome.is_retryable(), "{unknown_outcome:?}");
        }
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_in_time_is_unavailable() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(payment_intent("pi_1", "succeeded", 1050, "manual"))
                    .set_delay(Duration::from_secs(30)),
            )
            .mount(&server)
            .await;
        let stripe =
            StripeClient::new(&server.uri(), Duration::from_millis(200)).expect("client builds");

        let started = std::time::Instant::now();
        let error = stripe
            .capture(KEY, "pi_1", "capture-1")
            .await
            .expect_err("times out");

        assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
        assert!(error.is_retryable());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable() {
        // A port that was just free: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let address = listener.local_addr().expect("has an address");
        drop(listener);
        let stripe = StripeClient::new(&format!("http://{address}"), Duration::from_secs(2))
            .expect("client builds");

        let error = stripe
            .cancel(KEY, "pi_1", "cancel-1")
            .await
            .expect_err("cannot connect");

        assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
        assert!(error.message().starts_with("could not reach Stripe"));
    }

    #[tokio::test]
    async fn ids_that_are_not_path_safe_are_refused_without_a_request() {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200))
            .expect(0)
            .mount(&server)
            .await;
        let stripe = client(&server);

        for id in ["pi_1/../x", "", "pi_1?expand=x", "pi_1%2F", "pi 1", "pi_é"] {
            let captured = stripe.capture(KEY, id, "capture-1").await;
            let canceled = stripe.cancel(KEY, id, "cancel-1").await;

            for result in [captured, canceled] {
                let error = result.expect_err("refused");
                assert!(
                    matches!(error, ProviderError::Invalid(_)),
                    "{id:?}: {error:?}"
                );
                assert!(error.message().contains("is not a Stripe object id"));
            }
        }
    }

    #[tokio::test]
    async fn keys_a_header_cannot_carry_are_refused_without_a_request() {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200))
            .expect(0)
            .mount(&server)
            .await;
        let stripe = client(&server);

        let bad_secret = stripe
            .capture("sk_test_x\r\nX-Injected: 1", "pi_1", "capture-1")
            .await
            .expect_err("refused");
        let bad_idempotency_key = stripe
            .refund(&RefundRequest {
                secret_key: KEY,
                intent_id: "pi_1",
                amount_minor: 100,
                idempotency_key: "refund\n1",
                reason: None,
            })
            .await
            .expect_err("refused");

        assert!(
            matches!(bad_secret, ProviderError::Unauthorized(_)),
            "{bad_secret:?}"
        );
        assert!(!bad_secret.message().contains("sk_test_x"));
        assert!(
            matches!(bad_idempotency_key, ProviderError::Invalid(_)),
            "{bad_idempotency_key:?}"
        );
    }

    #[tokio::test]
    async fn new_trims_one_trailing_slash_and_refuses_urls_it_cannot_use() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/payment_intents/pi_1/cancel"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(payment_intent("pi_1", "canceled", 0, "manual")),
            )
            .expect(1)
            .mount(&server)
            .await;
        let stripe = StripeClient::new(&format!("{}/", server.uri()), Duration::from_secs(5))
            .expect("client builds");

        let canceled = stripe
            .cancel(KEY, "pi_1", "cancel-1")
            .await
            .expect("canceled");

        assert_eq!(canceled.status, IntentStatus::Canceled);
        assert!(StripeClient::new("api.stripe.com", Duration::from_secs(5)).is_err());
        assert!(StripeClient::new("ftp://api.stripe.com", Duration::from_secs(5)).is_err());
    }
}
