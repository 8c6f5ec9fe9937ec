//! Sends webhook requests to integrators' URLs without letting a URL reach inside our network.
//!
//! A URL's host is resolved and every address it resolves to must pass the
//! [`super::address::AddressPolicy`], at registration and again at each send. The HTTP client
//! resolves through the same [`GuardedResolver`], so it connects only to an address that passed
//! — a DNS answer that changes between the check and the connection (rebinding) cannot slip a
//! private address in. No proxy, no redirects, a deadline on the whole attempt and at most
//! 1 KiB of the answer read.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use reqwest::{
    Url,
    header::{HeaderMap, HeaderName, HeaderValue},
};

use super::address::GuardedResolver;
use crate::configuration::Settings;

/// How much of a response body an attempt keeps.
pub const RESPONSE_CAPTURE: usize = 1024;
/// Longest `Retry-After` honoured; a longer one waits this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What one attempt produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub status: Option<u16>,
    pub body: Option<String>,
    pub error: Option<String>,
    /// The receiver's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
    pub latency: Duration,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.status
            .is_some_and(|status| (200..300).contains(&status))
    }
}

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    resolver: Arc<GuardedResolver>,
    require_https: bool,
    timeout: Duration,
}

impl Sender {
    /// A sender that connects only where `resolver` allows (the guard the notification
    /// providers share).
    pub(crate) fn new(settings: &Settings, resolver: Arc<GuardedResolver>) -> anyhow::Result<Self> {
        let timeout = settings.webhooks.timeout();
        let client = reqwest::Client::builder()
            .dns_resolver(resolver.clone())
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .pool_max_idle_per_host(8)
            .user_agent(concat!("Platform-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("Failed to build the webhook HTTP client")?;
        Ok(Self {
            client,
            resolver,
            require_https: settings.is_production(),
            timeout,
        })
    }

    /// The URL, parsed, if it may receive webhooks: http(s) (https only in production), no
    /// credentials, and a host whose every address passes the guard.
    pub async fn check_url(&self, url: &str) -> Result<Url, String> {
        let parsed = Url::parse(url.trim()).map_err(|error| format!("not a valid URL: {error}"))?;
        match parsed.scheme() {
            "https" => {}
            "http" if !self.require_https => {}
            "http" => return Err("webhook URLs must use https".into()),
            other => return Err(format!("`{other}` URLs cannot receive webhooks; use https")),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("put credentials in a header secret, not in the URL".into());
        }
        if parsed.fragment().is_some() {
            return Err("a webhook URL cannot have a #fragment".into());
        }
        self.resolver
            .check_url(&parsed)
            .await
            .map_err(|refused| refused.to_string())?;
        Ok(parsed)
    }

    /// POSTs `body` with `headers`; never fails, the outcome says what happened.
    pub async fn post(&self, url: &str, headers: HeaderMap, body: String) -> Outcome {
        let started = Instant::now();
        let mut outcome =
            match tokio::time::timeout(self.timeout, self.send(url, headers, body)).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome {
                    error: Some(format!(
                        "no response within {} s",
                        self.timeout.as_secs_f32()
                    )),
                    ..Outcome::default()
                },
            };
        outcome.latency = started.elapsed();
        // The receiver chose these bytes; what is stored must be valid text on every database.
        outcome.body = outcome.body.as_deref().map(printable);
        outcome.error = outcome.error.as_deref().map(printable);
        outcome
    }

    async fn send(&self, url: &str, headers: HeaderMap, body: String) -> Outcome {
        let url = match Url::parse(url) {
            Ok(url) => url,
            Err(error) => return failure(format!("not a valid URL: {error}")),
        };
        // Names are resolved (and checked) by the client's guarded resolver as it connects;
        // literal addresses never reach a resolver, so they are checked here.
        if let Err(refused) = self.resolver.check_literal_host(&url) {
            return failure(format!("refused by the address guard: {refused}"));
        }
        let response = match self
            .client
            .post(url)
            .headers(headers)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => return failure(describe(&error)),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        // The first KiB of the body; the rest is not read.
        let body = read_capped(response, RESPONSE_CAPTURE).await;
        Outcome {
            status: Some(status),
            body: Some(String::from_utf8_lossy(&body.bytes).into_owned()),
            error: match &body.end {
                BodyEnd::Broken(error) => Some(describe(error)),
                BodyEnd::Whole | BodyEnd::OverCap => None,
            },
            retry_after,
            latency: Duration::ZERO,
        }
    }
}

fn failure(error: String) -> Outcome {
    Outcome {
        error: Some(error),
        ..Outcome::default()
    }
}

/// The whole error chain: reqwest's own message alone rarely says what went wrong.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A response body read up to a cap ([`read_capped`]).
pub struct CappedBody {
    /// What was read, never more than the cap.
    pub bytes: Vec<u8>,
    pub end: BodyEnd,
}

/// Why reading a [`CappedBody`] stopped.
pub enum BodyEnd {
    /// The whole body is in.
    Whole,
    /// The body is longer than the cap; the rest was not read.
    OverCap,
    /// The body broke off.
    Broken(reqwest::Error),
}

/// At most `cap` bytes of `response`'s body: an answer is never buffered whole, whatever its
/// sender makes it. Shared by every client of an address someone else configured.
pub async fn read_capped(mut response: reqwest::Response, cap: usize) -> CappedBody {
    let mut bytes = Vec::new();
    let end = loop {
        match response.chunk().await {
            Ok(Some(chunk)) if bytes.len() + chunk.len() > cap => {
                bytes.extend_from_slice(&chunk[..cap - bytes.len()]);
                break BodyEnd::OverCap;
            }
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => break BodyEnd::Whole,
            Err(error) => break BodyEnd::Broken(error),
        }
    };
    CappedBody { bytes, end }
}

/// `text` with NUL and every other control character but newline, carriage return and tab
/// replaced by U+FFFD: PostgreSQL refuses NUL in text, and the rest garbles whoever reads it.
fn printable(text: &str) -> String {
    text.chars()
        .map(|character| match character {
            '\n' | '\r' | '\t' => character,
            control if control.is_control() => char::REPLACEMENT_CHARACTER,
            other => other,
        })
        .collect()
}

/// `Retry-After` in seconds or as an HTTP date, capped.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let wait = match value.trim().parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Standard Webhooks headers for one attempt.
pub fn signed_headers(message_id: &str, timestamp: i64, signature: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("webhook-id", message_id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature.to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::address::AddressPolicy;

    fn sender(allowed: &[&str], production: bool) -> Sender {
        let mut settings = Settings::default();
        settings.webhooks.allowed_networks = allowed.iter().map(|item| item.to_string()).collect();
        if production {
            settings.environment = crate::configuration::Environment::Production;
        }
        let policy = AddressPolicy::new(settings.webhooks.allowed_networks().expect("valid"));
        Sender::new(&settings, Arc::new(GuardedResolver::new(policy))).expect("builds")
    }

    #[tokio::test]
    async fn internal_urls_are_refused_unless_their_network_is_allowed() {
        let guarded = sender(&[], false);
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://10.1.2.3/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://[fd00:ec2::254]/hook",
            "http://100.64.0.1/hook",
        ] {
            assert!(
                guarded.check_url(url).await.is_err(),
                "{url} must be refused"
            );
        }
        let allowed = sender(&["127.0.0.0/8"], false);
        assert!(allowed.check_url("http://127.0.0.1:9/hook").await.is_ok());
        assert!(allowed.check_url("http://10.1.2.3/hook").await.is_err());
    }

    #[tokio::test]
    async fn production_accepts_https_only_and_no_credentials() {
        let production = sender(&["127.0.0.0/8"], true);
        let error = production
            .check_url("http://127.0.0.1/hook")
            .await
            .expect_err("http refused");
        assert!(error.contains("https"), "{error}");
        assert!(production.check_url("https://127.0.0.1/hook").await.is_ok());
        assert!(
            production
                .check_url("https://user:pass@127.0.0.1/hook")
                .await
                .is_err()
        );
        assert!(production.check_url("ftp://127.0.0.1/x").await.is_err());
    }

    #[tokio::test]
    async fn a_send_to_a_refused_address_never_connects() {
        let guarded = sender(&[], false);
        let literal = guarded
            .post("http://127.0.0.1:9/hook", HeaderMap::new(), "{}".into())
            .await;
        // A name is checked by the client's resolver as it connects.
        let named = guarded
            .post("http://localhost:9/hook", HeaderMap::new(), "{}".into())
            .await;

        assert_eq!(literal.status, None);
        assert!(
            literal
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("address guard"),
            "{literal:?}"
        );
        assert_eq!(named.status, None);
        assert!(
            named
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("resolves to"),
            "{named:?}"
        );
    }

    #[tokio::test]
    async fn a_refusal_says_the_address_is_not_allowed_and_never_which_it_is() {
        let guarded = sender(&[], false);
        let mut refusals = Vec::new();
        for url in [
            "http://localhost:9/hook",
            "http://127.0.0.1:9/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://[::ffff:10.0.0.1]/hook",
        ] {
            refusals.push(guarded.check_url(url).await.expect_err("refused"));
            let sent = guarded.post(url, HeaderMap::new(), "{}".into()).await;
            refusals.push(sent.error.unwrap_or_default());
        }

        for refusal in refusals {
            assert!(refusal.contains("not allowed"), "{refusal}");
            for revealing in [
                "127.0.0.1",
                "::1",
                "169.254",
                "10.0.0.1",
                "loopback",
                "metadata",
                "private",
            ] {
                assert!(
                    !refusal.contains(revealing),
                    "{refusal} reveals {revealing}"
                );
            }
        }
    }

    #[test]
    fn stored_text_has_no_nul_or_control_characters() {
        assert_eq!(printable("ok\0"), "ok\u{fffd}");
        assert_eq!(
            printable("a\u{1b}[31mb\u{7f}\u{85}"),
            "a\u{fffd}[31mb\u{fffd}\u{fffd}"
        );
        assert_eq!(printable("line\r\nnext\tcell é"), "line\r\nnext\tcell é");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_capped() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("99999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
