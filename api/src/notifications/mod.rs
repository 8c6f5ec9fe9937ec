//! Notification channels: the clients of the outside services that carry a message to a person
//! (SMTP, WhatsApp through Evolution API or the Cloud API, SMS through Twilio) and the template
//! engine that writes it. Nothing here reads the database or knows a company's rules; what to
//! send, to whom and when is [`crate::services::notifications`]'s.
//!
//! Every client speaks its provider's documented contract at a configurable base URL and sorts
//! its failures into [`SendError::Retryable`] (timeouts, 429, 5xx: try again later) and
//! [`SendError::Permanent`] (an invalid number, a rejected template: trying again cannot help),
//! keeping the provider's own code.

use std::fmt;

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
