//! The delivery log (`notificationLog`, `notifications:read`) and notifications sent by hand
//! or by an integration (`sendNotification`, `notifications:create`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{customer, membership, notification};
use sea_orm::{ColumnTrait, Condition, QueryFilter};
use serde_json::Value;
use uuid::Uuid;

use super::{Address, Content, NewNotification, QueueOutcome, Recipient, Status, queue, templates};
use crate::{
    auth::Actor,
    db::tenant::{Intent, TenantTxn},
    domain::{Email, Locale, notification_rules::Category, phone::Phone},
    error::{ApiError, ApiResult},
    notifications::Channel,
    services::authorize,
    state::AppState,
};

/// Who `sendNotification` addresses: one of a member, a customer (at their stored phone or
/// email unless one is given), or a bare phone or email.
#[derive(Debug, Default)]
pub struct RecipientInput {
    pub user_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

pub struct SendInput {
    pub channel: Channel,
    pub category: Category,
    pub recipient: RecipientInput,
    pub subject: Option<String>,
    pub body: Option<String>,
    pub template: Option<String>,
    pub variables: Option<Value>,
    pub locale: Option<String>,
    pub idempotency_key: String,
    pub priority: i32,
    pub delay: Option<Duration>,
}

/// Longest delay `sendNotification` accepts.
const MAX_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);

/// Queues a notification (`notifications:create`); a key used before answers with the first
/// notification, queuing nothing.
pub async fn send(
    state: &AppState,
    actor: &Actor,
    input: SendInput,
) -> ApiResult<(notification::Model, QueueOutcome)> {
    authorize(state, actor, "notifications", "create").await?;
    if input.delay.is_some_and(|delay| delay > MAX_DELAY) {
        return Err(ApiError::validation(
            "input.delaySeconds",
            "a notification waits at most 30 days",
        ));
    }
    let locale = input
        .locale
        .as_deref()
        .map(|locale| {
            Locale::parse(locale).map_err(|reason| ApiError::validation("input.locale", reason))
        })
        .transpose()?;
    let content = match (input.body, input.template) {
        (Some(body), None) => Content::Text {
            subject: input.subject,
            body,
        },
        (None, Some(template)) => Content::Template(template),
        _ => {
            return Err(ApiError::validation(
                "input.body",
                "give either a body or a template",
            ));
        }
    };
    let txn = state.begin_for(actor, Intent::Write).await?;
    if let Content::Template(name) = &content
        && !templates::available_for(&txn, name, input.channel, locale).await?
    {
        return Err(ApiError::validation(
            "input.template",
            format!("no template `{name}` for {}", input.channel.as_str()),
        ));
    }
    let recipient = recipient(&txn, input.channel, input.recipient).await?;
    let outcome = queue(
        &state.jobs,
        &txn,
        NewNotification {
            channel: input.channel,
            category: input.category,
            recipient,
            content,
            variables: input
                .variables
                .unwrap_or_else(|| Value::Object(Default::default())),
            locale,
            idempotency_key: Some(input.idempotency_key),
            priority: input.priority,
            delay: input.delay,
        },
    )
    .await?;
    let saved = find(&txn, outcome.id())
        .await?
        .ok_or(ApiError::NotFound("notification"))?;
    txn.commit().await?;
    Ok((saved, outcome))
}

async fn recipient(
    txn: &TenantTxn,
    channel: Channel,
    input: RecipientInput,
) -> ApiResult<Recipient> {
    let phone = input
        .phone
        .as_deref()
        .map(|phone| {
            Phone::parse(phone)
                .map_err(|reason| ApiError::validation("input.recipient.phone", reason))
        })
        .transpose()?;
    let email = input
        .email
        .as_deref()
        .map(|email| {
            Email::parse(email)
                .map_err(|reason| ApiError::validation("input.recipient.email", reason))
        })
        .transpose()?;
    let given = match (phone, email) {
        (Some(phone), None) => Some(Address::Phone(phone)),
        (None, Some(email)) => Some(Address::Email(email)),
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "input.recipient",
                "give a phone or an email, not both",
            ));
        }
    };
    match (input.user_id, input.customer_id, given) {
        (Some(user_id), None, None) => {
            txn.find::<membership::Entity>()
                .filter(membership::Column::UserId.eq(user_id))
                .one(txn)
                .await?
                .ok_or(ApiError::NotFound("member"))?;
            Ok(Recipient::Member(user_id))
        }
        (None, Some(customer_id), given) => {
            let found = txn
                .find::<customer::Entity>()
                .filter(customer::Column::Id.eq(customer_id))
                .one(txn)
                .await?
                .ok_or(ApiError::NotFound("customer"))?;
            let address = match given {
                Some(address) => address,
                None => stored_address(channel, &found)?,
            };
            Ok(Recipient::Customer {
                customer_id,
                address,
            })
        }
        (None, None, Some(address)) => Ok(Recipient::Address(address)),
        _ => Err(ApiError::validation(
            "input.recipient",
            "give one of userId, customerId, phone or email",
        )),
    }
}

/// The customer's stored address for `channel`.
fn stored_address(channel: Channel, found: &customer::Model) -> ApiResult<Address> {
    let missing = || {
        ApiError::validation(
            "input.recipient.customerId",
            format!("the customer has no address for {}", channel.as_str()),
        )
    };
    match channel {
        Channel::Email => {
            let email = found.email.as_deref().ok_or_else(missing)?;
            Email::parse(email)
                .map(Address::Email)
                .map_err(|_| missing())
        }
        Channel::Whatsapp | Channel::Sms => {
            let phone = found.phone.as_deref().ok_or_else(missing)?;
            Phone::parse(phone)
                .map(Address::Phone)
                .map_err(|_| missing())
        }
        Channel::InApp => Err(missing()),
    }
}

async fn find(txn: &TenantTxn, id: Uuid) -> Result<Option<notification::Model>, sea_orm::DbErr> {
    txn.find::<notification::Entity>()
        .filter(notification::Column::Id.eq(id))
        .one(txn)
        .await
}

/// What `notificationLog` shows.
#[derive(Debug, Default)]
pub struct LogFilter {
    pub channel: Option<Channel>,
    pub status: Option<Status>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// One page of the company's notifications, newest first, before `after`
/// (`notifications:read`).
pub async fn page(
    state: &AppState,
    actor: &Actor,
    filter: LogFilter,
    first: u64,
    after: Option<Uuid>,
) -> ApiResult<Vec<notification::Model>> {
    authorize(state, actor, "notifications", "read").await?;
    let manager = authorize(state, actor, "notifications", "manage")
        .await
        .is_ok();
    let txn = state.begin_for(actor, Intent::Read).await?;
    let mut query = txn.find::<notification::Entity>();
    if !manager {
        // In-app notifications are personal: the log shows a member's to them, and everyone's
        // only to those who manage notifications.
        let mut visible =
            Condition::any().add(notification::Column::Channel.ne(Channel::InApp.as_str()));
        if let Some(user_id) = actor.user_id() {
            visible = visible.add(notification::Column::UserId.eq(user_id));
        }
        query = query.filter(visible);
    }
    if let Some(channel) = filter.channel {
        query = query.filter(notification::Column::Channel.eq(channel.as_str()));
    }
    if let Some(status) = filter.status {
        query = query.filter(notification::Column::Status.eq(status.as_str()));
    }
    if let Some(from) = filter.from {
        query = query.filter(notification::Column::CreatedAt.gte(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(notification::Column::CreatedAt.lt(to));
    }
    Ok(super::newest_first(txn, query, first, after).await?)
}
