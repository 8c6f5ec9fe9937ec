//! WhatsApp, behind one trait: [`super::evolution`] (Evolution API v2, a WhatsApp Web session
//! on a self-hosted server) and [`super::whatsapp_cloud`] (Meta's official Cloud API) both
//! implement [`WhatsappProvider`], so the notification jobs do not know which a company uses.

use super::{Accepted, SendError};
use crate::domain::phone::Phone;

/// A template approved in the WhatsApp Business Manager, with the values of its body's
/// `{{1}}`, `{{2}}`… placeholders in order. Outside the 24-hour window after a person last
/// wrote, the Cloud API delivers only templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudTemplate {
    /// The template's name as approved, e.g. `order_ready`.
    pub name: String,
    /// The approved translation's language code, e.g. `pt_BR`, `en_US`.
    pub language: String,
    /// The body's parameters, in placeholder order.
    pub body_parameters: Vec<String>,
}

/// Whether a WhatsApp session can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connected: messages go out.
    Open,
    /// Logged out or never paired: messages fail until someone pairs the session again.
    Closed,
    /// Pairing or reconnecting: messages may go out shortly.
    Connecting,
}

/// Sends WhatsApp messages for one configured sender (an Evolution instance, a Cloud API
/// phone number).
#[async_trait::async_trait]
pub trait WhatsappProvider: Send + Sync {
    /// Sends free text. The Cloud API delivers it only inside the 24-hour customer service
    /// window; Evolution (a WhatsApp Web session) has no such window.
    async fn send_text(&self, to: &Phone, text: &str) -> Result<Accepted, SendError>;

    /// Sends an approved template. Only the Cloud API has templates; a provider without them
    /// refuses permanently, so the job records why instead of retrying.
    async fn send_template(
        &self,
        _to: &Phone,
        _template: &CloudTemplate,
    ) -> Result<Accepted, SendError> {
        Err(SendError::permanent(
            "template_unsupported",
            "this WhatsApp provider cannot send approved templates; send text instead",
        ))
    }

    /// Whether the sender can send now (`testNotificationChannel`, health checks).
    async fn connection_state(&self) -> Result<ConnectionState, SendError>;
}
