//! Notification channels: the clients of the outside services that carry a message to a person
//! (SMTP, WhatsApp through Evolution API or the Cloud API, SMS through Twilio) and the template
//! engine that writes it. Nothing here reads the database or knows a company's rules; what to
//! send, to whom and when is [`crate::services::notifications`]'s.
//!
//! Every client speaks its provider's documented contract at a configurable base URL and sorts
//! its failures into [`SendError::Retryable`] (timeouts, 429, 5xx: try again later) and
//! [`SendError::Permanent`] (an invalid number, a rejected template: trying again cannot help),
//! keeping the provider's own code.

pub mod templates;

use std::fmt;

use crate::domain::phone::Phone;

pub mod email;
pub mod evolution;
mod http;
pub mod twilio;
pub mod whatsapp;
pub mod whatsapp_cloud;

pub use http::{ADDRESS_NOT_ALLOWED, ProviderHttp};

/// How a message reaches a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, async_graphql::Enum)]
#[graphql(name = "NotificationChannel")]
pub enum Channel {
    Email,
    Whatsapp,
    Sms,
    /// Stored for a member and pushed to their open sessions; no outside provider.
    InApp,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Self::Email, Self::Whatsapp, Self::Sms, Self::InApp];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "EMAIL",
            Self::Whatsapp => "WHATSAPP",
            Self::Sms => "SMS",
            Self::InApp => "IN_APP",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|channel| channel.as_str() == text)
    }
}

/// What a provider said when it took a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The provider's name as stored in the delivery log, e.g. `evolution`, `twilio`, `smtp`.
    pub provider: &'static str,
    /// The provider's id of the message; status callbacks refer to it.
    pub provider_message_id: String,
}

/// Why a provider did not take a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth trying again later: a timeout, a refused connection, 429, a 5xx.
    Retryable { code: String, message: String },
    /// Trying again cannot help: an invalid number or address, a rejected template, bad
    /// credentials.
    Permanent { code: String, message: String },
}

impl SendError {
    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Retryable {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Permanent {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
    }

    /// The provider's own code (an HTTP status, an SMTP reply code, a Twilio error code).
    pub fn code(&self) -> &str {
        match self {
            Self::Retryable { code, .. } | Self::Permanent { code, .. } => code,
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Retryable { code, message } => write!(f, "retryable ({code}): {message}"),
            Self::Permanent { code, message } => write!(f, "permanent ({code}): {message}"),
        }
    }
}

impl std::error::Error for SendError {}

/// How far a message got, as a provider's status callback reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// The provider handed it to the network (one tick on WhatsApp).
    Sent,
    /// It reached the person's device.
    Delivered,
    /// The person opened it (or played a voice message).
    Read,
    /// The provider gave up on it.
    Failed,
}

/// What a provider's webhook tells us, once read into our terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// A message we sent moved on.
    StatusUpdate {
        /// The id [`Accepted::provider_message_id`] returned when it was sent.
        provider_message_id: String,
        status: DeliveryStatus,
        /// The provider's code for a failure (Twilio's `ErrorCode`), when it gives one.
        error_code: Option<String>,
    },
    /// A person wrote to us.
    Inbound { from: Phone, text: String },
}

/// The replies that opt a person out of WhatsApp and SMS messages, in Portuguese, Spanish and
/// English.
const OPT_OUT_WORDS: [&str; 4] = ["SAIR", "PARAR", "STOP", "BAJA"];

/// Whether an inbound text asks to stop the messages: one of [`OPT_OUT_WORDS`] alone, in any
/// case, with surrounding spaces and punctuation ignored (`"Parar."`, `" stop!"`). A sentence
/// that merely contains the word (`"não quero parar"`) is not an opt-out.
pub fn is_opt_out_reply(text: &str) -> bool {
    let word = text.trim_matches(|c: char| c.is_whitespace() || c.is_ascii_punctuation());
    OPT_OUT_WORDS
        .iter()
        .any(|opt_out| word.eq_ignore_ascii_case(opt_out))
}

#[cfg(test)]
mod tests {
    use super::is_opt_out_reply;

    #[test]
    fn opt_out_replies_are_the_words_alone_in_any_case() {
        for reply in ["SAIR", "sair", " Parar. ", "stop!", "STOP\n", "Baja"] {
            assert!(is_opt_out_reply(reply), "{reply:?}");
        }
        for other in [
            "",
            "obrigado",
            "não quero parar",
            "stopped",
            "SAIR AGORA",
            "ok stop",
        ] {
            assert!(!is_opt_out_reply(other), "{other:?}");
        }
    }
}
