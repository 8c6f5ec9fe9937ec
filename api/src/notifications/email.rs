//! Email over SMTP (RFC 5321) with `lettre`, messages as RFC 5322 with a `multipart/alternative`
//! text and HTML body (RFC 2046) and one-click unsubscribe headers (RFC 2369, RFC 8058).
//!
//! The server comes from a URL ([`SmtpSettings::parse`]): `smtps://user:pass@host:465` (TLS from
//! the first byte), `smtp://user:pass@host:587` (STARTTLS required), `?tls=opportunistic`
//! (STARTTLS when offered) or `?tls=none` (plain text, for a relay on the same host or a test
//! listener). The user and password are percent-decoded.
//!
//! A company's own server is reached only at an address the address guard allows
//! ([`SmtpSettings::guarded`]): the host is resolved once, every address checked, and lettre
//! connects to a checked address rather than resolving the name again.
//!
//! The Message-ID is ours (`<uuid@sender's domain>`), set before sending, so the delivery log
//! can name the message whatever the server says. Failures: an SMTP 4xx reply, a timeout or a
//! connection/TLS failure is retryable (the code is the reply code, `timeout` or `connect`); a
//! 5xx reply is permanent with its code; a message lettre cannot build is permanent `invalid`.

use std::{fmt, net::IpAddr, time::Duration};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{
        Mailbox, MultiPart, SinglePart,
        header::{Header, HeaderName, HeaderValue},
    },
    transport::smtp::{
        authentication::Credentials,
        client::{Tls, TlsParameters},
    },
};
use url::Url;

use super::{Accepted, SendError};
use crate::{
    domain::Email,
    webhooks::address::{GuardError, GuardedResolver},
};

/// The name the delivery log records.
pub const PROVIDER: &str = "smtp";

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// TLS from the first byte (`smtps://`, usually port 465).
    Implicit,
    /// STARTTLS, refusing a server that does not offer it (`smtp://`, usually port 587).
    StartTls,
    /// STARTTLS when the server offers it, plain text otherwise.
    Opportunistic,
    /// Plain text: only for a relay on the same host or network, or a test listener.
    None,
}

/// Where and how to send mail. No `Debug` of the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// User and password, when the server wants them.
    pub credentials: Option<(String, String)>,
    /// Where to connect instead of resolving `host` as the mail goes out: an address the guard
    /// checked ([`Self::guarded`]). TLS still verifies the certificate against `host`.
    connect_to: Option<IpAddr>,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

impl SmtpSettings {
    /// Reads `smtp[s]://[user[:password]@]host[:port][?tls=starttls|opportunistic|none]`. The
    /// error never repeats the URL: it may hold the password.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = Url::parse(url.trim())
            .map_err(|error| format!("the SMTP URL is not valid: {error}"))?;
        let mut tls = match url.scheme() {
            "smtps" => SmtpTls::Implicit,
            "smtp" => SmtpTls::StartTls,
            other => {
                return Err(format!(
                    "the SMTP URL must start with smtp:// or smtps://, not {other}://"
                ));
            }
        };
        for (name, value) in url.query_pairs() {
            match (name.as_ref(), value.as_ref(), tls) {
                ("tls", "starttls", SmtpTls::StartTls) => {}
                ("tls", "opportunistic", SmtpTls::StartTls) => tls = SmtpTls::Opportunistic,
                ("tls", "none", SmtpTls::StartTls) => tls = SmtpTls::None,
                ("tls", _, SmtpTls::Implicit) => {
                    return Err(
                        "an smtps:// URL is TLS from the start; `tls=` applies to smtp:// only"
                            .into(),
                    );
                }
                ("tls", other, _) => {
                    return Err(format!(
                        "`tls={other}` is not one of starttls, opportunistic, none"
                    ));
                }
                (other, _, _) => {
                    return Err(format!("the SMTP URL has an unknown parameter `{other}`"));
                }
            }
        }
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or("the SMTP URL has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(match tls {
            SmtpTls::Implicit => 465,
            _ => 587,
        });
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map(|decoded| decoded.into_owned())
                .map_err(|_| "the SMTP user or password is not UTF-8 once decoded".to_owned())
        };
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            ("", Some(_)) => return Err("the SMTP URL has a password but no user".into()),
            (user, password) => Some((decode(user)?, decode(password.unwrap_or_default())?)),
        };
        Ok(Self {
            host,
            port,
            tls,
            credentials,
            connect_to: None,
        })
    }

    /// These settings connecting only to an address of the host that `guard` allows, resolved
    /// now: a name resolved again as lettre connects could answer differently (rebinding).
    pub(crate) async fn guarded(self, guard: &GuardedResolver) -> Result<Self, GuardError> {
        let addresses = guard.lookup(&self.host, self.port).await?;
        Ok(Self {
            connect_to: addresses.first().map(|address| address.ip()),
            ..self
        })
    }
}

/// One email to one person. `text` is always sent; `html`, when present, is the preferred
/// alternative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    pub to: Email,
    pub to_name: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// The one-click unsubscribe link (an https URL that takes a POST, RFC 8058).
    pub list_unsubscribe: Option<Url>,
}

/// `List-Unsubscribe: <https://…>` (RFC 2369).
#[derive(Debug, Clone)]
struct ListUnsubscribe(Url);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(text: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let inner = text.trim().trim_start_matches('<').trim_end_matches('>');
        Ok(Self(Url::parse(inner)?))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), format!("<{}>", self.0))
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058): the link unsubscribes on a
/// POST, so mail clients can offer the button and scanners that GET links do not unsubscribe.
#[derive(Debug, Clone)]
struct OneClickUnsubscribe;

impl Header for OneClickUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".into())
    }
}

/// Sends mail through one SMTP server from one sender.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The right-hand side of our Message-IDs: the sender's domain.
    id_domain: String,
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer through `settings`' server from `from_name <from_address>`; `timeout` bounds
    /// each SMTP command.
    pub fn new(
        settings: &SmtpSettings,
        from_name: Option<&str>,
        from_address: &Email,
        timeout: Duration,
    ) -> Result<Self, String> {
        let tls_parameters = || {
            TlsParameters::new(settings.host.clone())
                .map_err(|error| format!("cannot set up TLS for {}: {error}", settings.host))
        };
        let tls = match settings.tls {
            SmtpTls::Implicit => Tls::Wrapper(tls_parameters()?),
            SmtpTls::StartTls => Tls::Required(tls_parameters()?),
            SmtpTls::Opportunistic => Tls::Opportunistic(tls_parameters()?),
            SmtpTls::None => Tls::None,
        };
        let server = settings
            .connect_to
            .map_or_else(|| settings.host.clone(), |address| address.to_string());
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server)
            .port(settings.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some((user, password)) = &settings.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let address = from_address
            .as_str()
            .parse()
            .map_err(|error| format!("`{from_address}` cannot send mail: {error}"))?;
        let id_domain = from_address
            .as_str()
            .rsplit_once('@')
            .map(|(_, domain)| domain.to_owned())
            .ok_or_else(|| format!("`{from_address}` has no domain"))?;
        Ok(Self {
            transport: builder.build(),
            from: Mailbox::new(from_name.map(str::to_owned), address),
            id_domain,
        })
    }

    /// Builds and sends `message`; the answer names our Message-ID.
    pub async fn send(&self, message: &EmailMessage) -> Result<Accepted, SendError> {
        let message_id = format!("<{}@{}>", uuid::Uuid::now_v7(), self.id_domain);
        let email = self.build(message, &message_id)?;
        self.transport.send(email).await.map_err(|error| {
            let failure = classify(&error);
            tracing::warn!(provider = PROVIDER, code = failure.code(), %message_id, "the SMTP server did not take the message");
            failure
        })?;
        tracing::info!(provider = PROVIDER, %message_id, "email accepted");
        Ok(Accepted {
            provider: PROVIDER,
            provider_message_id: message_id,
        })
    }

    fn build(&self, message: &EmailMessage, message_id: &str) -> Result<Message, SendError> {
        let invalid = |error: &dyn fmt::Display| {
            SendError::permanent("invalid", format!("the email cannot be built: {error}"))
        };
        let to = Mailbox::new(
            message.to_name.clone(),
            message
                .to
                .as_str()
                .parse()
                .map_err(|error| invalid(&error))?,
        );
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject.clone())
            .message_id(Some(message_id.to_owned()));
        if let Some(link) = &message.list_unsubscribe {
            builder = builder
                .header(ListUnsubscribe(link.clone()))
                .header(OneClickUnsubscribe);
        }
        let built = match &message.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                message.text.clone(),
                html.clone(),
            )),
            None => builder.singlepart(SinglePart::plain(message.text.clone())),
        };
        built.map_err(|error| invalid(&error))
    }
}

/// Sorts lettre's error: a 5xx reply never, a 4xx reply, a timeout or a broken connection later.
fn classify(error: &lettre::transport::smtp::Error) -> SendError {
    let message = format!("the SMTP server did not take the message: {error}");
    match error.status() {
        Some(code) if error.is_permanent() => SendError::permanent(code.to_string(), message),
        Some(code) => SendError::retryable(code.to_string(), message),
        None if error.is_timeout() => SendError::retryable("timeout", message),
        None if error.is_client() => SendError::permanent("invalid", message),
        None => SendError::retryable("connect", message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_name_the_server_the_protection_and_the_credentials() {
        let cases = [
            (
                "smtps://mailer:s%40cret@smtp.example.com",
                "smtp.example.com",
                465,
                SmtpTls::Implicit,
                Some(("mailer", "s@cret")),
            ),
            (
                "smtp://apikey:xyz@smtp.example.com:2525",
                "smtp.example.com",
                2525,
                SmtpTls::StartTls,
                Some(("apikey", "xyz")),
            ),
            (
                "smtp://smtp.example.com?tls=starttls",
                "smtp.example.com",
                587,
                SmtpTls::StartTls,
                None,
            ),
            (
                "smtp://relay.internal:25?tls=opportunistic",
                "relay.internal",
                25,
                SmtpTls::Opportunistic,
                None,
            ),
            (
                "smtp://127.0.0.1:2525?tls=none",
                "127.0.0.1",
                2525,
                SmtpTls::None,
                None,
            ),
            (
                "smtp://[::1]:2525?tls=none",
                "::1",
                2525,
                SmtpTls::None,
                None,
            ),
        ];
        for (url, host, port, tls, credentials) in cases {
            let settings = SmtpSettings::parse(url).expect(url);
            assert_eq!(settings.host, host, "{url}");
            assert_eq!(settings.port, port, "{url}");
            assert_eq!(settings.tls, tls, "{url}");
            assert_eq!(
                settings.credentials,
                credentials.map(|(user, password)| (user.to_owned(), password.to_owned())),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn a_guarded_server_connects_only_to_an_address_the_guard_allows() {
        let loopback = GuardedResolver::new(crate::webhooks::address::AddressPolicy::new(vec![
            "127.0.0.0/8".parse().expect("a network"),
        ]));
        let pinned = SmtpSettings::parse("smtp://127.0.0.1:2525?tls=none")
            .expect("valid")
            .guarded(&loopback)
            .await
            .expect("allowed");
        assert_eq!(pinned.connect_to, Some(IpAddr::from([127, 0, 0, 1])));

        let guard = GuardedResolver::default();
        for url in [
            "smtp://127.0.0.1:25?tls=none",
            "smtp://localhost:25?tls=none",
            "smtps://169.254.169.254",
            "smtp://[::1]:25?tls=none",
        ] {
            let refused = SmtpSettings::parse(url)
                .expect(url)
                .guarded(&guard)
                .await
                .expect_err(url);
            assert!(
                matches!(refused, GuardError::NotAllowed(_)),
                "{url}: {refused:?}"
            );
            assert!(!SendError::from(refused).is_retryable(), "{url}");
        }
    }

    #[test]
    fn smtp_urls_that_cannot_work_are_refused_without_repeating_the_password() {
        for url in [
            "http://smtp.example.com",
            "smtp://",
            "smtp://:pass@smtp.example.com",
            "smtp://smtp.example.com?tls=maybe",
            "smtps://smtp.example.com?tls=none",
            "smtp://smtp.example.com?secure=1",
            "not a url",
        ] {
            let error = SmtpSettings::parse(url).expect_err(url);
            assert!(!error.contains("pass@"), "{error}");
        }
        let settings =
            SmtpSettings::parse("smtp://user:topsecret@smtp.example.com").expect("valid");
        assert!(!format!("{settings:?}").contains("topsecret"));
    }
}
