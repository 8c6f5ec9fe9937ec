//! A company's channel configurations: which provider carries its email, WhatsApp and SMS,
//! with which settings, and its credentials sealed with [`Purpose::NotificationCredential`]
//! (written, never read back out).

use serde_json::Value;
use uuid::Uuid;

use entity::notification_channel;
use sea_orm::{ColumnTrait, QueryFilter};

use crate::{
    crypto::Purpose,
    db::tenant::TenantTxn,
    notifications::{Accepted, Channel, SendError},
    state::AppState,
};

/// Who carries a channel's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, async_graphql::Enum)]
#[graphql(name = "NotificationProvider")]
pub enum ProviderKind {
    /// Evolution API v2 (WhatsApp).
    Evolution,
    /// The official WhatsApp Cloud API.
    WhatsappCloud,
    /// Twilio's Messages API (SMS).
    Twilio,
    /// An SMTP server (email).
    Smtp,
}

impl ProviderKind {
    pub const ALL: [Self; 4] = [
        Self::Evolution,
        Self::WhatsappCloud,
        Self::Twilio,
        Self::Smtp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Evolution => "evolution",
            Self::WhatsappCloud => "whatsapp_cloud",
            Self::Twilio => "twilio",
            Self::Smtp => "smtp",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// The channel this provider carries.
    pub fn channel(self) -> Channel {
        match self {
            Self::Evolution | Self::WhatsappCloud => Channel::Whatsapp,
            Self::Twilio => Channel::Sms,
            Self::Smtp => Channel::Email,
        }
    }
}

/// A channel's configuration, ready to send with: the company's own, or the server's default
/// SMTP server for email.
#[derive(Debug, Clone)]
pub struct Configuration {
    /// The company's configuration row; `None` for the server's default.
    pub id: Option<Uuid>,
    pub provider: ProviderKind,
    /// Non-secret settings (base URL, instance, sender).
    pub settings: Value,
    /// The credentials, opened.
    pub credentials: Value,
}

/// The configuration `channel` sends with in `txn`'s company, if any. A configuration that is
/// disabled counts as none (email then falls back to the server's default).
pub async fn configuration(
    state: &AppState,
    txn: &TenantTxn,
    channel: Channel,
) -> anyhow::Result<Option<Configuration>> {
    let row = txn
        .find::<notification_channel::Entity>()
        .filter(notification_channel::Column::Channel.eq(channel.as_str()))
        .filter(notification_channel::Column::Enabled.eq(true))
        .one(txn)
        .await?;
    if let Some(row) = row {
        let provider = ProviderKind::parse(&row.provider)
            .ok_or_else(|| anyhow::anyhow!("unknown notification provider `{}`", row.provider))?;
        let credentials = match &row.credentials_ciphertext {
            Some(sealed) => serde_json::from_str(&state.secrets.open(
                txn.company().get(),
                Purpose::NotificationCredential,
                sealed,
            )?)?,
            None => Value::Object(Default::default()),
        };
        return Ok(Some(Configuration {
            id: Some(row.id),
            provider,
            settings: serde_json::from_str(&row.settings)?,
            credentials,
        }));
    }
    let defaults = &state.settings.notifications;
    Ok(match (channel, &defaults.smtp_url, &defaults.smtp_from) {
        (Channel::Email, Some(url), Some(from)) => Some(Configuration {
            id: None,
            provider: ProviderKind::Smtp,
            settings: serde_json::json!({ "from": from }),
            credentials: serde_json::json!({ "url": url.expose() }),
        }),
        _ => None,
    })
}

/// Sends one message through `configuration`'s provider.
pub async fn send(
    _state: &AppState,
    configuration: &Configuration,
    _address: &str,
    _subject: Option<&str>,
    _body: &str,
) -> Result<Accepted, SendError> {
    Err(SendError::permanent(
        "PROVIDER_UNAVAILABLE",
        format!(
            "no {} client in this build",
            configuration.provider.as_str()
        ),
    ))
}
