//! Notifications: channel configurations (`notifications:manage`), the delivery log
//! (`notifications:read`), `sendNotification` (`notifications:create`), and every member's own
//! in-app notifications.

use async_graphql::{Context, ID, InputObject, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{notification, notification_attempt, notification_channel};
use serde_json::Value;

use super::{
    context::{actor, loaders, parse_id, state},
    loaders::AttemptsOfNotification,
    pagination::{PageInfo, id_page, page_size, parse_id_cursor},
};
use crate::{
    domain::notification_rules::Category,
    notifications::Channel,
    services::notifications::{
        QueueOutcome, Status,
        channels::{self, ChannelInput, ProviderKind},
        inbox::{self, Marked},
        log::{self, LogFilter, RecipientInput, SendInput},
    },
};

/// Which provider carries one of the company's channels. Its credentials are write-only.
pub struct NotificationChannelConfiguration(notification_channel::Model);

#[Object]
impl NotificationChannelConfiguration {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn channel(&self) -> Option<Channel> {
        Channel::parse(&self.0.channel)
    }
    async fn provider(&self) -> Option<ProviderKind> {
        ProviderKind::parse(&self.0.provider)
    }
    /// The non-secret settings (base URL, instance, sender).
    async fn settings(&self) -> Json<Value> {
        Json(serde_json::from_str(&self.0.settings).unwrap_or(Value::Null))
    }
    /// Whether credentials are stored; they are never returned.
    async fn has_credentials(&self) -> bool {
        self.0.credentials_ciphertext.is_some()
    }
    async fn enabled(&self) -> bool {
        self.0.enabled
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// One message to one person on one channel, with its delivery state.
pub struct Notification(notification::Model);

#[Object]
impl Notification {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn channel(&self) -> Option<Channel> {
        Channel::parse(&self.0.channel)
    }
    async fn category(&self) -> &str {
        &self.0.category
    }
    async fn status(&self) -> Option<Status> {
        Status::parse(&self.0.status)
    }
    /// The member an in-app notification is for.
    async fn user_id(&self) -> Option<ID> {
        self.0.user_id.map(|id| ID(id.to_string()))
    }
    async fn customer_id(&self) -> Option<ID> {
        self.0.customer_id.map(|id| ID(id.to_string()))
    }
    /// The phone (E.164) or email it goes to.
    async fn address(&self) -> Option<&str> {
        self.0.address.as_deref()
    }
    async fn template(&self) -> Option<&str> {
        self.0.template.as_deref()
    }
    async fn locale(&self) -> Option<&str> {
        self.0.locale.as_deref()
    }
    async fn subject(&self) -> Option<&str> {
        self.0.subject.as_deref()
    }
    /// The text, once written or rendered.
    async fn body(&self) -> Option<&str> {
        self.0.body.as_deref()
    }
    async fn idempotency_key(&self) -> Option<&str> {
        self.0.idempotency_key.as_deref()
    }
    async fn priority(&self) -> i32 {
        self.0.priority
    }
    async fn attempt_count(&self) -> i32 {
        self.0.attempt_count
    }
    async fn provider(&self) -> Option<&str> {
        self.0.provider.as_deref()
    }
    async fn provider_message_id(&self) -> Option<&str> {
        self.0.provider_message_id.as_deref()
    }
    /// The provider's code of the last failure.
    async fn last_error_code(&self) -> Option<&str> {
        self.0.last_error_code.as_deref()
    }
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn sent_at(&self) -> Option<DateTime<Utc>> {
        self.0.sent_at
    }
    async fn delivered_at(&self) -> Option<DateTime<Utc>> {
        self.0.delivered_at
    }
    /// When the member read it, or the provider reported it read.
    async fn read_at(&self) -> Option<DateTime<Utc>> {
        self.0.read_at
    }
    /// Every hand-over to the provider, oldest first.
    async fn attempts(&self, ctx: &Context<'_>) -> Result<Vec<NotificationAttempt>> {
        let attempts = loaders(ctx)?
            .load_one(AttemptsOfNotification(self.0.id))
            .await?
            .unwrap_or_default();
        Ok(attempts.into_iter().map(NotificationAttempt).collect())
    }
}

/// One hand-over of a notification to its provider.
pub struct NotificationAttempt(notification_attempt::Model);

#[Object]
impl NotificationAttempt {
    async fn attempt(&self) -> i32 {
        self.0.attempt
    }
    async fn provider(&self) -> &str {
        &self.0.provider
    }
    async fn provider_message_id(&self) -> Option<&str> {
        self.0.provider_message_id.as_deref()
    }
    /// `SENT`, `RETRYABLE` (tried again later) or `PERMANENT`.
    async fn outcome(&self) -> &str {
        &self.0.outcome
    }
    /// The provider's own code (an HTTP status, an SMTP reply, a Twilio error code).
    async fn error_code(&self) -> Option<&str> {
        self.0.error_code.as_deref()
    }
    async fn error_message(&self) -> Option<&str> {
        self.0.error_message.as_deref()
    }
    async fn started_at(&self) -> DateTime<Utc> {
        self.0.started_at
    }
    async fn finished_at(&self) -> DateTime<Utc> {
        self.0.finished_at
    }
}

#[derive(SimpleObject)]
pub struct NotificationEdge {
    cursor: String,
    node: Notification,
}

#[derive(SimpleObject)]
pub struct NotificationConnection {
    edges: Vec<NotificationEdge>,
    page_info: PageInfo,
}

fn connection(
    rows: Vec<notification::Model>,
    size: u64,
    started_after: bool,
) -> NotificationConnection {
    let (rows, page_info) = id_page(rows, size, started_after, |row| row.id);
    NotificationConnection {
        edges: rows
            .into_iter()
            .map(|(cursor, row)| NotificationEdge {
                cursor,
                node: Notification(row),
            })
            .collect(),
        page_info,
    }
}

#[derive(InputObject)]
pub struct NotificationLogFilter {
    channel: Option<Channel>,
    status: Option<Status>,
    /// Created at or after.
    from: Option<DateTime<Utc>>,
    /// Created before.
    to: Option<DateTime<Utc>>,
}

#[derive(InputObject)]
pub struct ConfigureNotificationChannelInput {
    channel: Channel,
    provider: ProviderKind,
    /// Non-secret settings, e.g. `{"baseUrl": "https://evo.example", "instance": "shop"}`;
    /// Evolution also takes `delayMs` (typing shown before each message, at most 5000) and
    /// `linkPreview`; Twilio `from` or `messagingServiceSid`, and `statusCallback` (by default
    /// this server's own callback URL when `PLATFORM_PUBLIC_URL` is set).
    settings: Json<Value>,
    /// Credentials, e.g. `{"apiKey": "…"}`; stored encrypted and never returned. Omitted: the
    /// stored ones are kept (unless the provider changes).
    credentials: Option<Json<Value>>,
    #[graphql(default = true)]
    enabled: bool,
}

/// Exactly one of a member (in-app), a customer (at their stored phone or email unless one is
/// given), or a bare phone or email.
#[derive(InputObject)]
pub struct NotificationRecipientInput {
    user_id: Option<ID>,
    customer_id: Option<ID>,
    phone: Option<String>,
    email: Option<String>,
}

#[derive(InputObject)]
pub struct SendNotificationInput {
    channel: Channel,
    /// What it is about: the recipient's preferences and consent go by it.
    category: Category,
    recipient: NotificationRecipientInput,
    /// The text; or give `template`.
    body: Option<String>,
    subject: Option<String>,
    template: Option<String>,
    variables: Option<Json<Value>>,
    locale: Option<String>,
    /// The same key again returns the first notification and sends nothing more.
    idempotency_key: String,
    #[graphql(default)]
    priority: i32,
    /// Sent no earlier than this many seconds from now.
    delay_seconds: Option<u32>,
}

/// What `sendNotification` did.
#[derive(SimpleObject)]
pub struct SendNotificationPayload {
    notification: Notification,
    /// True when the idempotency key was used before: `notification` is the first one.
    duplicate: bool,
}

/// What a test message through a channel's provider came to.
#[derive(SimpleObject)]
pub struct NotificationChannelTest {
    provider: ProviderKind,
    /// Whether the provider took the message.
    accepted: bool,
    provider_message_id: Option<String>,
    /// The provider's code when it did not.
    error_code: Option<String>,
    error: Option<String>,
    /// Whether trying again later may succeed.
    retryable: Option<bool>,
    /// Evolution only: `OPEN`, `CLOSED` (pair the session again) or `CONNECTING`.
    connection_state: Option<WhatsappConnectionState>,
}

#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::notifications::whatsapp::ConnectionState")]
pub enum WhatsappConnectionState {
    Open,
    Closed,
    Connecting,
}

#[derive(InputObject)]
pub struct MarkNotificationsReadInput {
    /// These of the caller's notifications…
    ids: Option<Vec<ID>>,
    /// …or all of them.
    #[graphql(default)]
    all: bool,
}

#[derive(Default)]
pub struct NotificationQuery;

#[Object]
impl NotificationQuery {
    /// The company's channel configurations (`notifications:manage`).
    async fn notification_channels(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Vec<NotificationChannelConfiguration>> {
        Ok(channels::list(state(ctx)?, actor(ctx)?)
            .await?
            .into_iter()
            .map(NotificationChannelConfiguration)
            .collect())
    }

    /// The company's notifications, newest first, with their attempts (`notifications:read`).
    async fn notification_log(
        &self,
        ctx: &Context<'_>,
        filter: Option<NotificationLogFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<NotificationConnection> {
        let after = parse_id_cursor("after", after.as_deref())?;
        let size = page_size(first);
        let filter = filter
            .map(|filter| LogFilter {
                channel: filter.channel,
                status: filter.status,
                from: filter.from,
                to: filter.to,
            })
            .unwrap_or_default();
        let rows = log::page(state(ctx)?, actor(ctx)?, filter, size + 1, after).await?;
        Ok(connection(rows, size, after.is_some()))
    }

    /// The caller's own in-app notifications, newest first.
    async fn my_notifications(
        &self,
        ctx: &Context<'_>,
        unread_only: Option<bool>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<NotificationConnection> {
        let after = parse_id_cursor("after", after.as_deref())?;
        let size = page_size(first);
        let rows = inbox::page(
            state(ctx)?,
            actor(ctx)?,
            unread_only.unwrap_or(false),
            size + 1,
            after,
        )
        .await?;
        Ok(connection(rows, size, after.is_some()))
    }
}

#[derive(Default)]
pub struct NotificationMutation;

#[Object]
impl NotificationMutation {
    /// Sets which provider carries a channel, with its settings and credentials
    /// (`notifications:manage`).
    async fn configure_notification_channel(
        &self,
        ctx: &Context<'_>,
        input: ConfigureNotificationChannelInput,
    ) -> Result<NotificationChannelConfiguration> {
        let saved = channels::configure(
            state(ctx)?,
            actor(ctx)?,
            ChannelInput {
                channel: input.channel,
                provider: input.provider,
                settings: input.settings.0,
                credentials: input.credentials.map(|credentials| credentials.0),
                enabled: input.enabled,
            },
        )
        .await?;
        Ok(NotificationChannelConfiguration(saved))
    }

    /// Sends a test message to `to` through the channel's provider now (`notifications:manage`).
    async fn test_notification_channel(
        &self,
        ctx: &Context<'_>,
        channel: Channel,
        to: String,
    ) -> Result<NotificationChannelTest> {
        let tested = channels::test(state(ctx)?, actor(ctx)?, channel, &to).await?;
        let connection_state = match tested.connection_state {
            Ok(connection_state) => connection_state.map(Into::into),
            Err(error) => {
                tracing::info!(%error, "the WhatsApp session's state could not be read");
                None
            }
        };
        Ok(match tested.result {
            Ok(accepted) => NotificationChannelTest {
                provider: tested.provider,
                accepted: true,
                provider_message_id: Some(accepted.provider_message_id),
                error_code: None,
                error: None,
                retryable: None,
                connection_state,
            },
            Err(error) => NotificationChannelTest {
                provider: tested.provider,
                accepted: false,
                provider_message_id: None,
                error_code: Some(error.code().to_string()),
                retryable: Some(error.is_retryable()),
                error: Some(error.to_string()),
                connection_state,
            },
        })
    }

    /// Queues a notification (`notifications:create`).
    async fn send_notification(
        &self,
        ctx: &Context<'_>,
        input: SendNotificationInput,
    ) -> Result<SendNotificationPayload> {
        let recipient = RecipientInput {
            user_id: input
                .recipient
                .user_id
                .as_ref()
                .map(|id| parse_id("input.recipient.userId", id))
                .transpose()?,
            customer_id: input
                .recipient
                .customer_id
                .as_ref()
                .map(|id| parse_id("input.recipient.customerId", id))
                .transpose()?,
            phone: input.recipient.phone,
            email: input.recipient.email,
        };
        let (saved, outcome) = log::send(
            state(ctx)?,
            actor(ctx)?,
            SendInput {
                channel: input.channel,
                category: input.category,
                recipient,
                subject: input.subject,
                body: input.body,
                template: input.template,
                variables: input.variables.map(|variables| variables.0),
                locale: input.locale,
                idempotency_key: input.idempotency_key,
                priority: input.priority,
                delay: input
                    .delay_seconds
                    .map(|seconds| std::time::Duration::from_secs(seconds.into())),
            },
        )
        .await?;
        Ok(SendNotificationPayload {
            notification: Notification(saved),
            duplicate: matches!(outcome, QueueOutcome::Duplicate(_)),
        })
    }

    /// Marks the caller's in-app notifications read; returns how many were unread.
    async fn mark_notifications_read(
        &self,
        ctx: &Context<'_>,
        input: MarkNotificationsReadInput,
    ) -> Result<u64> {
        let marked = match (input.ids, input.all) {
            (None, true) => Marked::All,
            (Some(ids), false) => Marked::These(
                ids.iter()
                    .map(|id| parse_id("input.ids", id))
                    .collect::<Result<_, _>>()?,
            ),
            _ => {
                return Err(crate::error::ApiError::validation(
                    "input.ids",
                    "give ids, or all: true",
                )
                .into());
            }
        };
        Ok(inbox::mark_read(state(ctx)?, actor(ctx)?, marked).await?)
    }
}
