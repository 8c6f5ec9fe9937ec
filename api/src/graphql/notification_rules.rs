//! Notification rules (`notifications:manage`), the caller's own notification preferences, and
//! a customer's preferences and consents (read with `customers:read`, changed with
//! `customers:update`: staff record what a customer asked for).

use async_graphql::{Context, Enum, ID, InputObject, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{notification_consent, notification_preference};
use serde_json::Value;

use super::context::{actor, parse_id, state};
use crate::{
    domain::notification_rules::{Category, Condition, Operator, Recipient},
    error::ApiError,
    notifications::Channel,
    services::notifications::{
        preferences::{self, NewConsent, Preference},
        rules::{self, Rule, RuleChanges, RuleDefinition},
    },
};

/// "When this event, if these conditions, notify this recipient on the first usable channel."
pub struct NotificationRule(Rule);

#[Object]
impl NotificationRule {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The event type it listens to, e.g. `order.status_changed`.
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }
    /// All must hold on the event's payload.
    async fn conditions(&self) -> Vec<NotificationCondition> {
        self.0
            .conditions
            .iter()
            .cloned()
            .map(NotificationCondition::from)
            .collect()
    }
    async fn recipient(&self) -> NotificationRuleRecipient {
        NotificationRuleRecipient::from(&self.0.recipient)
    }
    /// Tried in order; the first with an address the person has not opted out of carries it.
    async fn channels(&self) -> &[Channel] {
        &self.0.channels
    }
    async fn template_name(&self) -> &str {
        &self.0.template_name
    }
    async fn category(&self) -> Category {
        self.0.category
    }
    /// How long after the event it is sent.
    async fn delay_seconds(&self) -> i32 {
        self.0.delay_seconds
    }
    async fn enabled(&self) -> bool {
        self.0.enabled
    }
    /// Installed with the company for its business type.
    async fn is_default(&self) -> bool {
        self.0.is_default
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// `field op value` on the event's payload; `field` is a dotted path (`to`, `totalMinor`).
#[derive(SimpleObject, InputObject)]
#[graphql(input_name = "NotificationConditionInput")]
pub struct NotificationCondition {
    field: String,
    op: Operator,
    /// A string, number or boolean; a list for `IN` and `NOT_IN`; an integer (minor units)
    /// for `GT`, `GTE`, `LT`, `LTE`.
    value: Json<Value>,
}

impl From<Condition> for NotificationCondition {
    fn from(condition: Condition) -> Self {
        Self {
            field: condition.field,
            op: condition.op,
            value: Json(condition.value),
        }
    }
}

impl From<NotificationCondition> for Condition {
    fn from(condition: NotificationCondition) -> Self {
        Self {
            field: condition.field,
            op: condition.op,
            value: condition.value.0,
        }
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum NotificationRuleRecipientKind {
    /// The customer of the event's order.
    Customer,
    /// One member (`userId`).
    Member,
    /// Every member holding a role (`roleName`).
    Role,
    /// The member whose action caused the event.
    Actor,
}

/// Who a rule notifies.
#[derive(SimpleObject)]
pub struct NotificationRuleRecipient {
    kind: NotificationRuleRecipientKind,
    user_id: Option<ID>,
    role_name: Option<String>,
}

impl From<&Recipient> for NotificationRuleRecipient {
    fn from(recipient: &Recipient) -> Self {
        let (kind, user_id, role_name) = match recipient {
            Recipient::Customer => (NotificationRuleRecipientKind::Customer, None, None),
            Recipient::Actor => (NotificationRuleRecipientKind::Actor, None, None),
            Recipient::Member { user_id } => (
                NotificationRuleRecipientKind::Member,
                Some(ID(user_id.to_string())),
                None,
            ),
            Recipient::Role { name } => (
                NotificationRuleRecipientKind::Role,
                None,
                Some(name.clone()),
            ),
        };
        Self {
            kind,
            user_id,
            role_name,
        }
    }
}

#[derive(InputObject)]
pub struct NotificationRuleRecipientInput {
    kind: NotificationRuleRecipientKind,
    /// For `MEMBER`.
    user_id: Option<ID>,
    /// For `ROLE`.
    role_name: Option<String>,
}

impl NotificationRuleRecipientInput {
    fn parse(self) -> Result<Recipient, ApiError> {
        Ok(match self.kind {
            NotificationRuleRecipientKind::Customer => Recipient::Customer,
            NotificationRuleRecipientKind::Actor => Recipient::Actor,
            NotificationRuleRecipientKind::Member => {
                let id = self.user_id.ok_or_else(|| {
                    ApiError::validation(
                        "input.recipient.userId",
                        "a MEMBER recipient needs userId",
                    )
                })?;
                Recipient::Member {
                    user_id: parse_id("input.recipient.userId", &id)?,
                }
            }
            NotificationRuleRecipientKind::Role => Recipient::Role {
                name: self.role_name.ok_or_else(|| {
                    ApiError::validation(
                        "input.recipient.roleName",
                        "a ROLE recipient needs roleName",
                    )
                })?,
            },
        })
    }
}

#[derive(InputObject)]
pub struct CreateNotificationRuleInput {
    name: String,
    /// The event it listens to, e.g. `order.status_changed`; not a `notification.*` event,
    /// which the rule's own notifications would fire.
    event_type: String,
    #[graphql(default)]
    conditions: Vec<NotificationCondition>,
    recipient: NotificationRuleRecipientInput,
    /// In fallback order, e.g. `[WHATSAPP, SMS, EMAIL]`.
    channels: Vec<Channel>,
    /// The purpose whose template writes the message, e.g. `order_ready`.
    template_name: String,
    category: Category,
    #[graphql(default)]
    delay_seconds: i32,
    #[graphql(default = true)]
    enabled: bool,
}

/// Omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateNotificationRuleInput {
    name: Option<String>,
    event_type: Option<String>,
    conditions: Option<Vec<NotificationCondition>>,
    recipient: Option<NotificationRuleRecipientInput>,
    channels: Option<Vec<Channel>>,
    template_name: Option<String>,
    category: Option<Category>,
    delay_seconds: Option<i32>,
    enabled: Option<bool>,
}

/// A category on a channel as it applies to a person.
pub struct NotificationPreference(Preference);

#[Object]
impl NotificationPreference {
    async fn category(&self) -> Category {
        self.0.category
    }
    async fn channel(&self) -> Channel {
        self.0.channel
    }
    /// Whether such notifications are sent (marketing: only with a consent).
    async fn opted_in(&self) -> bool {
        self.0.opted_in
    }
    /// Critical categories cannot be switched off.
    async fn critical(&self) -> bool {
        self.0.critical
    }
    /// Where the stored choice came from (`SELF`, `STAFF`, `UNSUBSCRIBE_LINK`,
    /// `INBOUND_REPLY`); null for the default.
    async fn source(&self) -> Option<&str> {
        self.0.source.as_deref()
    }
    async fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.0.updated_at
    }
}

/// A stored choice, as a change returns it.
#[derive(SimpleObject)]
pub struct StoredNotificationPreference {
    category: Category,
    channel: Channel,
    opted_in: bool,
    source: String,
    updated_at: DateTime<Utc>,
}

impl TryFrom<notification_preference::Model> for StoredNotificationPreference {
    type Error = ApiError;
    fn try_from(row: notification_preference::Model) -> Result<Self, ApiError> {
        Ok(Self {
            category: parse_category(&row.category)?,
            channel: parse_channel(&row.channel)?,
            opted_in: row.opted_in,
            source: row.source,
            updated_at: row.updated_at,
        })
    }
}

/// A customer's recorded consent.
#[derive(SimpleObject)]
pub struct NotificationConsent {
    id: ID,
    purpose: Category,
    channel: Channel,
    granted_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    source: String,
    text_version: String,
    /// The member who recorded it.
    recorded_by: Option<ID>,
}

impl TryFrom<notification_consent::Model> for NotificationConsent {
    type Error = ApiError;
    fn try_from(row: notification_consent::Model) -> Result<Self, ApiError> {
        Ok(Self {
            id: ID(row.id.to_string()),
            purpose: parse_category(&row.purpose)?,
            channel: parse_channel(&row.channel)?,
            granted_at: row.granted_at,
            revoked_at: row.revoked_at,
            source: row.source,
            text_version: row.text_version,
            recorded_by: row.recorded_by.map(|id| ID(id.to_string())),
        })
    }
}

fn parse_category(stored: &str) -> Result<Category, ApiError> {
    Category::parse(stored)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("stored category `{stored}`")))
}

fn parse_channel(stored: &str) -> Result<Channel, ApiError> {
    Channel::parse(stored)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("stored channel `{stored}`")))
}

#[derive(InputObject)]
pub struct RecordCustomerConsentInput {
    customer_id: ID,
    purpose: Category,
    channel: Channel,
    /// How the customer agreed, e.g. `COUNTER`, `WEBSITE_FORM`.
    source: String,
    /// The version of the consent text they were shown.
    text_version: String,
}

fn preferences_of(preferences: Vec<Preference>) -> Vec<NotificationPreference> {
    preferences
        .into_iter()
        .map(NotificationPreference)
        .collect()
}

#[derive(Default)]
pub struct NotificationRuleQuery;

#[Object]
impl NotificationRuleQuery {
    /// The company's notification rules (`notifications:manage`).
    async fn notification_rules(&self, ctx: &Context<'_>) -> Result<Vec<NotificationRule>> {
        Ok(rules::list(state(ctx)?, actor(ctx)?)
            .await?
            .into_iter()
            .map(NotificationRule)
            .collect())
    }

    /// Every category on every channel for the caller.
    async fn my_notification_preferences(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Vec<NotificationPreference>> {
        Ok(preferences_of(
            preferences::my_preferences(state(ctx)?, actor(ctx)?).await?,
        ))
    }

    /// Every category on every channel for a customer (`customers:read`).
    async fn customer_notification_preferences(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
    ) -> Result<Vec<NotificationPreference>> {
        let customer_id = parse_id("customerId", &customer_id)?;
        Ok(preferences_of(
            preferences::customer_preferences(state(ctx)?, actor(ctx)?, customer_id).await?,
        ))
    }
}

#[derive(Default)]
pub struct NotificationRuleMutation;

#[Object]
impl NotificationRuleMutation {
    async fn create_notification_rule(
        &self,
        ctx: &Context<'_>,
        input: CreateNotificationRuleInput,
    ) -> Result<NotificationRule> {
        let definition = RuleDefinition {
            name: input.name,
            event_type: input.event_type,
            conditions: input.conditions.into_iter().map(Condition::from).collect(),
            recipient: input.recipient.parse()?,
            channels: input.channels,
            template_name: input.template_name,
            category: input.category,
            delay_seconds: input.delay_seconds,
            enabled: input.enabled,
        };
        Ok(NotificationRule(
            rules::create(state(ctx)?, actor(ctx)?, definition).await?,
        ))
    }

    async fn update_notification_rule(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateNotificationRuleInput,
    ) -> Result<NotificationRule> {
        let id = parse_id("id", &id)?;
        let changes = RuleChanges {
            name: input.name,
            event_type: input.event_type,
            conditions: input
                .conditions
                .map(|conditions| conditions.into_iter().map(Condition::from).collect()),
            recipient: input
                .recipient
                .map(NotificationRuleRecipientInput::parse)
                .transpose()?,
            channels: input.channels,
            template_name: input.template_name,
            category: input.category,
            delay_seconds: input.delay_seconds,
            enabled: input.enabled,
        };
        Ok(NotificationRule(
            rules::update(state(ctx)?, actor(ctx)?, id, changes).await?,
        ))
    }

    /// True when the rule was there.
    async fn delete_notification_rule(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let id = parse_id("id", &id)?;
        Ok(rules::delete(state(ctx)?, actor(ctx)?, id).await?)
    }

    /// Switches a category on a channel on or off for the caller; critical categories are
    /// refused with `VALIDATION`.
    async fn set_my_notification_preference(
        &self,
        ctx: &Context<'_>,
        category: Category,
        channel: Channel,
        opted_in: bool,
    ) -> Result<StoredNotificationPreference> {
        Ok(
            preferences::set_my_preference(state(ctx)?, actor(ctx)?, category, channel, opted_in)
                .await?
                .try_into()?,
        )
    }

    /// Records a customer's choice on their behalf (`customers:update`).
    async fn set_customer_notification_preference(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        category: Category,
        channel: Channel,
        opted_in: bool,
    ) -> Result<StoredNotificationPreference> {
        let customer_id = parse_id("customerId", &customer_id)?;
        Ok(preferences::set_customer_preference(
            state(ctx)?,
            actor(ctx)?,
            customer_id,
            category,
            channel,
            opted_in,
        )
        .await?
        .try_into()?)
    }

    /// Records a customer's consent, e.g. to marketing on WhatsApp (`customers:update`); a
    /// member takes it down, an API key is refused with `FORBIDDEN`.
    async fn record_customer_consent(
        &self,
        ctx: &Context<'_>,
        input: RecordCustomerConsentInput,
    ) -> Result<NotificationConsent> {
        let customer_id = parse_id("input.customerId", &input.customer_id)?;
        let consent = NewConsent {
            purpose: input.purpose,
            channel: input.channel,
            source: input.source,
            text_version: input.text_version,
        };
        Ok(
            preferences::record_customer_consent(state(ctx)?, actor(ctx)?, customer_id, consent)
                .await?
                .try_into()?,
        )
    }

    /// Revokes a customer's active consent; true when there was one (`customers:update`, a
    /// member; an API key is refused with `FORBIDDEN`).
    async fn revoke_customer_consent(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        purpose: Category,
        channel: Channel,
    ) -> Result<bool> {
        let customer_id = parse_id("customerId", &customer_id)?;
        Ok(preferences::revoke_customer_consent(
            state(ctx)?,
            actor(ctx)?,
            customer_id,
            purpose,
            channel,
        )
        .await?)
    }
}
