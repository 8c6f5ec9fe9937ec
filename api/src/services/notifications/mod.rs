//! Notifications: what is sent to whom, queued as jobs and handed to the providers of
//! [`crate::notifications`].
//!
//! For the other services (automation rules, invoices, appointments) the one entry point is
//! [`queue`]: in the caller's own tenant transaction it writes the notification and its
//! `notifications.send` job ([`SendNotification`]), so both commit with the caller's data or not
//! at all; an idempotency key already used in the company returns the first notification
//! ([`QueueOutcome::Duplicate`]) and sends nothing more. The job ([`delivery`]) renders the
//! text, hands it to the company's provider for the channel, records an attempt per hand-over
//! and retries retryable failures on the channel's schedule (`PLATFORM_NOTIFICATION_RETRY_*`).

pub mod callbacks;
pub mod channels;
pub mod delivery;
pub mod inbox;
pub mod log;
pub mod preferences;
pub mod rules;
pub mod templates;

use std::time::Duration;

use chrono::Utc;
use entity::{notification, notification_channel};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, sea_query::OnConflict};
use serde_json::Value;
use uuid::Uuid;

pub use self::delivery::SendNotification;
use self::preferences::{Decision, Subject, Suppression};
use crate::{
    auth::Actor,
    db::tenant::TenantTxn,
    domain::{Email, Locale, notification_rules::Category, phone::Phone},
    error::{ApiError, ApiResult},
    jobs::{Enqueue, Jobs},
    notifications::Channel,
    state::AppState,
};

/// Configuring channels (`notifications:manage`).
async fn manage(state: &AppState, actor: &Actor) -> ApiResult<()> {
    super::authorize(state, actor, "notifications", "manage").await
}

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A member of the company, in the app ([`Channel::InApp`]).
    Member(Uuid),
    /// One of the company's customers, at one of their addresses.
    Customer { customer_id: Uuid, address: Address },
    /// An address with no customer behind it (a test message, an invitee).
    Address(Address),
}

/// A phone (WhatsApp, SMS) or an email address, parsed by their one type each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Phone(Phone),
    Email(Email),
}

impl Address {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Phone(phone) => phone.as_str(),
            Self::Email(email) => email.as_str(),
        }
    }
}

/// What a notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Written by the caller.
    Text {
        subject: Option<String>,
        body: String,
    },
    /// The company's template of this name for the channel and locale, rendered with the
    /// notification's variables when it is sent.
    Template(String),
}

/// A notification to queue with [`queue`].
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub channel: Channel,
    /// What it is about: the recipient's preferences and consent go by it.
    pub category: Category,
    pub recipient: Recipient,
    pub content: Content,
    /// The template's variables (a JSON object); stored with the notification.
    pub variables: Value,
    /// The template's locale; `None`: the company's.
    pub locale: Option<Locale>,
    /// Queuing the same key again in the company returns the first notification; rules derive
    /// it from the event id and the rule.
    pub idempotency_key: Option<String>,
    /// Higher goes first among notifications due at once; within [`PRIORITIES`].
    pub priority: i32,
    /// Sent no earlier than this after the commit.
    pub delay: Option<Duration>,
}

/// What [`queue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOutcome {
    /// Written and queued: its id.
    Queued(Uuid),
    /// The idempotency key was used before: the first notification's id; nothing was queued.
    Duplicate(Uuid),
    /// The recipient opted out of the category on the channel (or gave no consent to
    /// marketing): written `CANCELLED` with the reason, so the log says why; nothing is sent.
    Suppressed(Uuid),
}

impl QueueOutcome {
    pub fn id(self) -> Uuid {
        match self {
            Self::Queued(id) | Self::Duplicate(id) | Self::Suppressed(id) => id,
        }
    }
}

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, async_graphql::Enum)]
#[graphql(name = "NotificationStatus")]
pub enum Status {
    Queued,
    Sent,
    Delivered,
    Read,
    Failed,
    Cancelled,
}

impl Status {
    pub const ALL: [Self; 6] = [
        Self::Queued,
        Self::Sent,
        Self::Delivered,
        Self::Read,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Sent => "SENT",
            Self::Delivered => "DELIVERED",
            Self::Read => "READ",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

/// Longest idempotency key.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// The priorities a notification may have; rules queue theirs at 0.
pub const PRIORITIES: std::ops::RangeInclusive<i32> = -10..=10;

/// Writes `new` in `txn` and enqueues its `notifications.send` job there; see the module
/// documentation. Errors are `VALIDATION` (a recipient that does not fit the channel, an empty
/// body, a key too long, a priority outside [`PRIORITIES`]) with the input field named as
/// `input.<field>`.
pub async fn queue(jobs: &Jobs, txn: &TenantTxn, new: NewNotification) -> ApiResult<QueueOutcome> {
    let (user_id, customer_id, address) = recipient_columns(new.channel, &new.recipient)?;
    let category = new.category;
    if !PRIORITIES.contains(&new.priority) {
        return Err(ApiError::validation(
            "input.priority",
            format!(
                "the priority must be from {} to {}",
                PRIORITIES.start(),
                PRIORITIES.end()
            ),
        ));
    }
    if let Some(key) = &new.idempotency_key
        && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY)
    {
        return Err(ApiError::validation(
            "input.idempotencyKey",
            format!("the idempotency key must have 1 to {MAX_IDEMPOTENCY_KEY} characters"),
        ));
    }
    let (template, subject, body) = match new.content {
        Content::Text { subject, body } => {
            if body.trim().is_empty() {
                return Err(ApiError::validation("input.body", "the message is empty"));
            }
            (None, subject, Some(body))
        }
        Content::Template(name) => (Some(name), None, None),
    };
    if !new.variables.is_object() {
        return Err(ApiError::validation(
            "input.variables",
            "the variables must be a JSON object",
        ));
    }
    if let Some(key) = &new.idempotency_key
        && let Some(existing) = by_idempotency_key(txn, key).await?
    {
        return Ok(QueueOutcome::Duplicate(existing));
    }
    let suppressed = suppression(txn, &new.recipient, category, new.channel).await?;
    let now = Utc::now();
    let id = Uuid::now_v7();
    let row = notification::ActiveModel {
        id: Set(id),
        company_id: Set(txn.company().get()),
        channel: Set(new.channel.as_str().to_string()),
        category: Set(category.as_str().to_string()),
        user_id: Set(user_id),
        customer_id: Set(customer_id),
        address: Set(address),
        template: Set(template),
        locale: Set(new.locale.map(|locale| locale.as_str().to_string())),
        variables: Set(new.variables.to_string()),
        subject: Set(subject),
        body: Set(body),
        status: Set(match suppressed {
            Some(_) => Status::Cancelled,
            None => Status::Queued,
        }
        .as_str()
        .to_string()),
        idempotency_key: Set(new.idempotency_key.clone()),
        priority: Set(new.priority),
        job_id: Set(suppressed.is_none().then_some(id)),
        attempt_count: Set(0),
        provider: Set(None),
        provider_message_id: Set(None),
        last_error_code: Set(suppressed.map(|reason| reason.as_str().to_string())),
        last_error: Set(suppressed.map(|reason| suppression_message(reason).to_string())),
        created_at: Set(now),
        updated_at: Set(now),
        sent_at: Set(None),
        delivered_at: Set(None),
        read_at: Set(None),
    };
    // A concurrent transaction with the same key waits on the unique index and then inserts
    // nothing, instead of failing (which on PostgreSQL would abort the caller's transaction).
    let inserted = notification::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                notification::Column::CompanyId,
                notification::Column::IdempotencyKey,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    if inserted == 0 {
        let key = new.idempotency_key.as_deref().unwrap_or_default();
        let existing = by_idempotency_key(txn, key).await?.ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "a notification was neither inserted nor found"
            ))
        })?;
        return Ok(QueueOutcome::Duplicate(existing));
    }
    if let Some(reason) = suppressed {
        tracing::info!(
            notification = %id,
            company = %txn.company(),
            channel = new.channel.as_str(),
            category = category.as_str(),
            reason = reason.as_str(),
            "notification suppressed by the recipient's preferences"
        );
        return Ok(QueueOutcome::Suppressed(id));
    }
    let mut options = Enqueue::default()
        .id(id)
        .company(txn.company().get())
        .priority(new.priority)
        .key(job_key(txn, new.channel).await?);
    if let Some(delay) = new.delay {
        options = options.run_at(jobs.now() + delay);
    }
    jobs.enqueue(
        txn,
        &SendNotification {
            notification_id: id,
        },
        options,
    )
    .await
    .map_err(ApiError::Internal)?;
    let waking = jobs.clone();
    txn.after_commit(move || waking.wake());
    tracing::info!(
        notification = %id,
        company = %txn.company(),
        channel = new.channel.as_str(),
        category = category.as_str(),
        "notification queued"
    );
    Ok(QueueOutcome::Queued(id))
}

/// Why the recipient's preferences hold `category` back on `channel`, if they do. Only people
/// have preferences (members, customers); a bare address is sent as asked.
async fn suppression(
    txn: &TenantTxn,
    recipient: &Recipient,
    category: Category,
    channel: Channel,
) -> ApiResult<Option<Suppression>> {
    let subject = match recipient {
        Recipient::Member(user_id) => Subject::Member(*user_id),
        Recipient::Customer { customer_id, .. } => Subject::Customer(*customer_id),
        Recipient::Address(_) => return Ok(None),
    };
    Ok(
        match preferences::decide(txn, subject, category, channel).await? {
            Decision::Send => None,
            Decision::Suppressed { reason } => Some(reason),
        },
    )
}

fn suppression_message(reason: Suppression) -> &'static str {
    match reason {
        Suppression::OptedOut => "the recipient opted out of this category on this channel",
        Suppression::NoConsent => "no recorded consent to marketing on this channel",
    }
}

/// The columns the recipient fills, once it is checked against the channel.
fn recipient_columns(
    channel: Channel,
    recipient: &Recipient,
) -> ApiResult<(Option<Uuid>, Option<Uuid>, Option<String>)> {
    let (user_id, customer_id, address) = match recipient {
        Recipient::Member(user_id) => (Some(*user_id), None, None),
        Recipient::Customer {
            customer_id,
            address,
        } => (None, Some(*customer_id), Some(address)),
        Recipient::Address(address) => (None, None, Some(address)),
    };
    let fits = matches!(
        (channel, address),
        (Channel::InApp, None)
            | (Channel::Email, Some(Address::Email(_)))
            | (Channel::Whatsapp | Channel::Sms, Some(Address::Phone(_)))
    );
    if !fits {
        let wanted = match channel {
            Channel::InApp => "a member",
            Channel::Email => "an email address",
            Channel::Whatsapp | Channel::Sms => "a phone number",
        };
        return Err(ApiError::validation(
            "input.recipient",
            format!("a {} notification goes to {wanted}", channel.as_str()),
        ));
    }
    Ok((
        user_id,
        customer_id,
        address.map(|address| address.as_str().to_string()),
    ))
}

async fn by_idempotency_key(txn: &TenantTxn, key: &str) -> Result<Option<Uuid>, sea_orm::DbErr> {
    Ok(txn
        .find::<notification::Entity>()
        .filter(notification::Column::IdempotencyKey.eq(key))
        .one(txn)
        .await?
        .map(|found| found.id))
}

/// The job key the runtime limits a channel configuration's sends by
/// (`notifications-whatsapp:{configuration id}`: one Evolution instance's pace), or the
/// channel's alone when the company has no configuration of its own (in-app, the server's
/// default SMTP).
async fn job_key(txn: &TenantTxn, channel: Channel) -> Result<String, sea_orm::DbErr> {
    let prefix = key_prefix(channel);
    let configured = txn
        .find::<notification_channel::Entity>()
        .filter(notification_channel::Column::Channel.eq(channel.as_str()))
        .one(txn)
        .await?;
    Ok(match configured {
        Some(configuration) => format!("{prefix}:{}", configuration.id),
        None => format!("{prefix}:{}", txn.company()),
    })
}

/// The name of the channel's job keys, which [`crate::jobs::Runtime::limit`] goes by.
pub fn key_prefix(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "notifications-email",
        Channel::Whatsapp => "notifications-whatsapp",
        Channel::Sms => "notifications-sms",
        Channel::InApp => "notifications-in-app",
    }
}

/// One page of `query`'s notifications, newest first, before `after`, read in `txn`, which it
/// commits.
async fn newest_first(
    txn: TenantTxn,
    mut query: sea_orm::Select<notification::Entity>,
    first: u64,
    after: Option<Uuid>,
) -> Result<Vec<notification::Model>, sea_orm::DbErr> {
    use sea_orm::{QueryOrder, QuerySelect};
    if let Some(after) = after {
        query = query.filter(notification::Column::Id.lt(after));
    }
    let rows = query
        .order_by_desc(notification::Column::Id)
        .limit(first)
        .all(&txn)
        .await?;
    txn.commit().await?;
    Ok(rows)
}

/// The payload of a notification's `notification.sent|failed|delivered` event: where `found`
/// stands now, with the provider's code and reason when it failed.
fn event_state(
    found: &notification::Model,
    status: Status,
    provider: Option<String>,
    provider_message_id: Option<String>,
    failure: Option<(String, String)>,
) -> crate::events::domain::NotificationState {
    let (error_code, error) = failure.unzip();
    crate::events::domain::NotificationState {
        notification_id: found.id,
        channel: found.channel.clone(),
        category: found.category.clone(),
        status: status.as_str().to_string(),
        customer_id: found.customer_id,
        provider,
        provider_message_id,
        error_code,
        error,
    }
}
