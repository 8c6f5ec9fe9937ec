//! Automation rules, as data: "when `order.status_changed` with `to = READY`, notify the
//! order's customer on WhatsApp, else SMS, else email, with template `order_ready`". Managed
//! with `notifications:manage`; each company starts with its business type's defaults.
//!
//! Rules run on the job runtime: the relay enqueues an [`EvaluateRules`] job per event a
//! company has rules for ([`crate::events::automation`]) and [`evaluate`] handles it — loads
//! the rules, checks their conditions on the payload, finds each recipient's first channel
//! with an address that [`decide`] allows, and plans the notification under a key derived from
//! the event and the rule, so an event relayed twice notifies once.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use entity::{customer, membership, notification_rule, order, user};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, IntoActiveModel, QueryFilter, QueryOrder,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    Address, Content, NewNotification, QueueOutcome, Recipient as QueueRecipient,
    preferences::{Decision, Subject, Suppression, decide, unsubscribe_token},
    queue,
};
use crate::{
    auth::{Actor, user_of_subject},
    crypto::UnsubscribeTokens,
    db::tenant::{CompanyId, Intent, TenantTxn, global},
    domain::{
        BusinessType, Email,
        notification_rules::{self as domain, Category, Condition, Operator, Recipient},
        phone::Phone,
    },
    error::{ApiError, ApiResult, UniqueKey},
    events::{
        EventType,
        automation::{self, EvaluateRules},
    },
    jobs::{JobContext, RetryPolicy, Runtime},
    notifications::{
        Channel,
        templates::{PURPOSES, Purpose},
    },
    services::{access, authorize, valid_name},
    state::AppState,
};

/// Most rules one company may have.
pub const MAX_RULES: usize = 100;
/// Most conditions one rule may have.
pub const MAX_CONDITIONS: usize = 20;
/// The longest a rule may wait after its event.
pub const MAX_DELAY_SECONDS: i32 = 7 * 24 * 3600;

const NAME_KEY: UniqueKey = UniqueKey::new(
    "notification_rules_company_name_key",
    "notification_rules",
    &["company_id", "name"],
);

/// A rule as stored, its JSON read back.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: Uuid,
    pub name: String,
    pub event_type: String,
    pub conditions: Vec<Condition>,
    pub recipient: Recipient,
    pub channels: Vec<Channel>,
    pub template_name: String,
    pub category: Category,
    pub delay_seconds: i32,
    pub enabled: bool,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Rule {
    fn from_row(row: notification_rule::Model) -> ApiResult<Self> {
        let channels: Vec<String> =
            serde_json::from_str(&row.channels).map_err(ApiError::internal)?;
        Ok(Self {
            id: row.id,
            conditions: serde_json::from_str(&row.conditions).map_err(ApiError::internal)?,
            recipient: serde_json::from_str(&row.recipient).map_err(ApiError::internal)?,
            channels: channels
                .iter()
                .filter_map(|channel| Channel::parse(channel))
                .collect(),
            category: Category::parse(&row.category).ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!(
                    "rule {} has category {}",
                    row.id,
                    row.category
                ))
            })?,
            name: row.name,
            event_type: row.event_type,
            template_name: row.template_name,
            delay_seconds: row.delay_seconds,
            enabled: row.enabled,
            is_default: row.is_default,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// What a rule says; `createNotificationRule` takes it whole.
#[derive(Debug, Clone)]
pub struct RuleDefinition {
    pub name: String,
    pub event_type: String,
    pub conditions: Vec<Condition>,
    pub recipient: Recipient,
    pub channels: Vec<Channel>,
    pub template_name: String,
    pub category: Category,
    pub delay_seconds: i32,
    pub enabled: bool,
}

/// What `updateNotificationRule` may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct RuleChanges {
    pub name: Option<String>,
    pub event_type: Option<String>,
    pub conditions: Option<Vec<Condition>>,
    pub recipient: Option<Recipient>,
    pub channels: Option<Vec<Channel>>,
    pub template_name: Option<String>,
    pub category: Option<Category>,
    pub delay_seconds: Option<i32>,
    pub enabled: Option<bool>,
}

impl RuleChanges {
    fn apply_to(self, rule: Rule) -> RuleDefinition {
        RuleDefinition {
            name: self.name.unwrap_or(rule.name),
            event_type: self.event_type.unwrap_or(rule.event_type),
            conditions: self.conditions.unwrap_or(rule.conditions),
            recipient: self.recipient.unwrap_or(rule.recipient),
            channels: self.channels.unwrap_or(rule.channels),
            template_name: self.template_name.unwrap_or(rule.template_name),
            category: self.category.unwrap_or(rule.category),
            delay_seconds: self.delay_seconds.unwrap_or(rule.delay_seconds),
            enabled: self.enabled.unwrap_or(rule.enabled),
        }
    }
}

/// A definition checked field by field, ready to store.
struct ValidRule {
    name: String,
    event_type: &'static str,
    conditions: String,
    recipient: String,
    channels: String,
    template_name: String,
    category: Category,
    delay_seconds: i32,
    enabled: bool,
}

async fn validate(txn: &TenantTxn, rule: RuleDefinition) -> ApiResult<ValidRule> {
    let name = valid_name("input.name", &rule.name, 200)?;
    let event_type = EventType::parse(rule.event_type.trim())
        .filter(|event_type| automation::can_trigger_rules(*event_type))
        .ok_or_else(|| {
            let triggers: Vec<&str> = automation::rule_triggers().map(EventType::name).collect();
            ApiError::validation(
                "input.eventType",
                format!(
                    "`{}` cannot start a rule; one of: {}",
                    rule.event_type,
                    triggers.join(", ")
                ),
            )
        })?
        .name();
    if rule.conditions.len() > MAX_CONDITIONS {
        return Err(ApiError::validation(
            "input.conditions",
            format!("a rule has at most {MAX_CONDITIONS} conditions"),
        ));
    }
    for (index, condition) in rule.conditions.iter().enumerate() {
        condition.validate().map_err(|invalid| {
            ApiError::validation(format!("input.conditions.{index}"), invalid.0)
        })?;
    }
    let mut seen = Vec::with_capacity(rule.channels.len());
    for channel in &rule.channels {
        if seen.contains(channel) {
            return Err(ApiError::validation(
                "input.channels",
                format!("{} is listed twice", channel.as_str()),
            ));
        }
        seen.push(*channel);
    }
    if seen.is_empty() {
        return Err(ApiError::validation(
            "input.channels",
            "list at least one channel, in the order to try them",
        ));
    }
    if matches!(rule.recipient, Recipient::Customer) && seen.contains(&Channel::InApp) {
        return Err(ApiError::validation(
            "input.channels",
            "customers have no in-app inbox; use WHATSAPP, SMS or EMAIL",
        ));
    }
    check_recipient(txn, &rule.recipient).await?;
    // The template is rendered by purpose name: any other name could never be sent.
    let template_name = Purpose::find(rule.template_name.trim())
        .ok_or_else(|| {
            let purposes: Vec<&str> = PURPOSES.iter().map(|purpose| purpose.name).collect();
            ApiError::validation(
                "input.templateName",
                format!(
                    "`{}` is no notification purpose; one of: {}",
                    rule.template_name,
                    purposes.join(", ")
                ),
            )
        })?
        .name
        .to_string();
    if !(0..=MAX_DELAY_SECONDS).contains(&rule.delay_seconds) {
        return Err(ApiError::validation(
            "input.delaySeconds",
            format!("the delay is 0 to {MAX_DELAY_SECONDS} seconds"),
        ));
    }
    let channels: Vec<&str> = seen.iter().map(|channel| channel.as_str()).collect();
    Ok(ValidRule {
        name,
        event_type,
        conditions: serde_json::to_string(&rule.conditions).map_err(ApiError::internal)?,
        recipient: serde_json::to_string(&rule.recipient).map_err(ApiError::internal)?,
        channels: serde_json::to_string(&channels).map_err(ApiError::internal)?,
        template_name,
        category: rule.category,
        delay_seconds: rule.delay_seconds,
        enabled: rule.enabled,
    })
}

/// A member or role a rule names must be the company's.
async fn check_recipient(txn: &TenantTxn, recipient: &Recipient) -> ApiResult<()> {
    let found = match recipient {
        Recipient::Customer | Recipient::Actor => Ok(()),
        Recipient::Member { user_id } => access::find_member(txn, *user_id).await.map(drop),
        Recipient::Role { name } => access::find_role(txn, name).await.map(drop),
    };
    match found {
        Err(ApiError::NotFound(_)) => Err(ApiError::validation(
            "input.recipient",
            "the member or role is not the company's",
        )),
        other => other,
    }
}

async fn manage(state: &AppState, actor: &Actor) -> ApiResult<()> {
    authorize(state, actor, "notifications", "manage").await
}

/// The company's rules, by event type and name.
pub async fn list(state: &AppState, actor: &Actor) -> ApiResult<Vec<Rule>> {
    manage(state, actor).await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let rows = txn
        .find::<notification_rule::Entity>()
        .order_by_asc(notification_rule::Column::EventType)
        .order_by_asc(notification_rule::Column::Name)
        .all(&txn)
        .await?;
    txn.commit().await?;
    rows.into_iter().map(Rule::from_row).collect()
}

pub async fn create(state: &AppState, actor: &Actor, rule: RuleDefinition) -> ApiResult<Rule> {
    manage(state, actor).await?;
    let txn = state.begin_for(actor, Intent::Serialized).await?;
    let existing = txn
        .find::<notification_rule::Entity>()
        .all(&txn)
        .await?
        .len();
    if existing >= MAX_RULES {
        return Err(ApiError::QuotaExceeded(format!(
            "a company can have at most {MAX_RULES} notification rules"
        )));
    }
    let valid = validate(&txn, rule).await?;
    let created = insert(&txn, valid, false).await?;
    txn.commit().await?;
    tracing::info!(company = %actor.company(), rule = %created.id, event_type = %created.event_type,
        "notification rule created");
    Rule::from_row(created)
}

async fn insert(
    txn: &TenantTxn,
    valid: ValidRule,
    is_default: bool,
) -> ApiResult<notification_rule::Model> {
    let now = Utc::now();
    txn.insert(notification_rule::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(valid.name),
        event_type: Set(valid.event_type.to_string()),
        conditions: Set(valid.conditions),
        recipient: Set(valid.recipient),
        channels: Set(valid.channels),
        template_name: Set(valid.template_name),
        category: Set(valid.category.as_str().to_string()),
        delay_seconds: Set(valid.delay_seconds),
        enabled: Set(valid.enabled),
        is_default: Set(is_default),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    })
    .await
    .map_err(|error| ApiError::conflict_on(error, NAME_KEY, "a rule with this name exists"))
}

async fn find(txn: &TenantTxn, id: Uuid) -> ApiResult<notification_rule::Model> {
    txn.find::<notification_rule::Entity>()
        .filter(notification_rule::Column::Id.eq(id))
        .one(txn)
        .await?
        .ok_or(ApiError::NotFound("notification rule"))
}

pub async fn update(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    changes: RuleChanges,
) -> ApiResult<Rule> {
    manage(state, actor).await?;
    let txn = state.begin_for(actor, Intent::Write).await?;
    let row = find(&txn, id).await?;
    let valid = validate(&txn, changes.apply_to(Rule::from_row(row.clone())?)).await?;
    let mut changed = row.into_active_model();
    changed.name = Set(valid.name);
    changed.event_type = Set(valid.event_type.to_string());
    changed.conditions = Set(valid.conditions);
    changed.recipient = Set(valid.recipient);
    changed.channels = Set(valid.channels);
    changed.template_name = Set(valid.template_name);
    changed.category = Set(valid.category.as_str().to_string());
    changed.delay_seconds = Set(valid.delay_seconds);
    changed.enabled = Set(valid.enabled);
    changed.updated_at = Set(Utc::now());
    let updated = changed
        .update(&txn)
        .await
        .map_err(|error| ApiError::conflict_on(error, NAME_KEY, "a rule with this name exists"))?;
    txn.commit().await?;
    tracing::info!(company = %actor.company(), rule = %id, "notification rule updated");
    Rule::from_row(updated)
}

/// Deletes a rule; returns whether it was there. Notifications it already planned still go.
pub async fn delete(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<bool> {
    manage(state, actor).await?;
    let txn = state.begin_for(actor, Intent::Write).await?;
    let deleted = txn
        .delete::<notification_rule::Entity>()
        .filter(notification_rule::Column::Id.eq(id))
        .exec(&txn)
        .await?
        .rows_affected;
    txn.commit().await?;
    if deleted > 0 {
        tracing::info!(company = %actor.company(), rule = %id, "notification rule deleted");
    }
    Ok(deleted > 0)
}

fn equals(field: &str, value: &str) -> Condition {
    Condition {
        field: field.into(),
        op: Operator::Eq,
        value: Value::String(value.into()),
    }
}

/// The rules a business type starts with: the moments its customers wait for.
pub fn default_rules(business_type: BusinessType) -> Vec<RuleDefinition> {
    let to_customer = |name: &str, to: &str, template: &str, category| RuleDefinition {
        name: name.into(),
        event_type: EventType::OrderStatusChanged.name().into(),
        conditions: vec![equals("to", to)],
        recipient: Recipient::Customer,
        channels: vec![Channel::Whatsapp, Channel::Sms, Channel::Email],
        template_name: template.into(),
        category,
        delay_seconds: 0,
        enabled: true,
    };
    let receipt = RuleDefinition {
        name: "Payment receipt".into(),
        event_type: EventType::PaymentPaid.name().into(),
        conditions: Vec::new(),
        recipient: Recipient::Customer,
        channels: vec![Channel::Email],
        template_name: "payment_receipt".into(),
        category: Category::Billing,
        delay_seconds: 0,
        enabled: true,
    };
    let mut rules = match business_type {
        BusinessType::Restaurant => {
            vec![to_customer(
                "Order ready",
                "READY",
                "order_ready",
                Category::Orders,
            )]
        }
        // An order's status change carries the order, not a quote, an appointment or the
        // shop's address: the `quote_sent`, `ready_for_pickup` and `appointment_confirmation`
        // purposes read those, so these rules write with the purposes an order supplies.
        BusinessType::BikeShop => vec![
            to_customer(
                "Quote sent",
                "QUOTE_SENT",
                "order_status_changed",
                Category::Orders,
            ),
            to_customer(
                "Ready for pickup",
                "READY_FOR_PICKUP",
                "order_ready",
                Category::Orders,
            ),
        ],
        BusinessType::Clinic => vec![to_customer(
            "Appointment confirmed",
            "CONFIRMED",
            "order_status_changed",
            Category::Appointments,
        )],
        BusinessType::PetStore => {
            vec![to_customer(
                "Order ready",
                "READY",
                "order_ready",
                Category::Orders,
            )]
        }
        BusinessType::Generic => Vec::new(),
    };
    rules.push(receipt);
    rules
}

/// Installs the business type's default rules in a new company (`txn` creates it).
pub async fn install_defaults(txn: &TenantTxn, business_type: BusinessType) -> ApiResult<()> {
    for rule in default_rules(business_type) {
        let valid = validate(txn, rule).await?;
        insert(txn, valid, true).await?;
    }
    Ok(())
}

/// A notification a rule decided to send, for the notification queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub rule_id: Uuid,
    pub subject: Subject,
    pub channel: Channel,
    pub recipient: QueueRecipient,
    pub template_name: String,
    pub category: Category,
    /// The template's variables: the event's payload and the recipient's name.
    pub variables: Value,
    /// Derived from the event and the rule (and the member, for a role): the queue sends once
    /// per key.
    pub idempotency_key: String,
    pub send_at: DateTime<Utc>,
}

impl Planned {
    /// The notification to queue, `now` being when it is queued.
    fn into_notification(self, now: DateTime<Utc>) -> NewNotification {
        let delay = (self.send_at - now)
            .to_std()
            .ok()
            .filter(|delay| !delay.is_zero());
        NewNotification {
            channel: self.channel,
            category: self.category,
            recipient: self.recipient,
            content: Content::Template(self.template_name),
            variables: self.variables,
            locale: None,
            idempotency_key: Some(self.idempotency_key),
            priority: 0,
            delay,
        }
    }
}

/// What a rule did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Planned(Planned),
    /// No channel of the rule could carry it to `subject`: each was suppressed or had no
    /// address.
    Suppressed {
        rule_id: Uuid,
        subject: Subject,
        reasons: Vec<(Channel, ChannelRefusal)>,
        /// The notification on the first channel the person's preferences held back: queued
        /// anyway, the queue writes it `CANCELLED` with the reason, so the delivery log says
        /// why nothing was sent. `None` when no channel had an address.
        held: Option<Planned>,
    },
    /// The event names no recipient of the rule's kind (no customer, no actor).
    NoRecipient {
        rule_id: Uuid,
    },
}

/// Why one channel could not carry a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelRefusal {
    NoAddress,
    Suppressed(Suppression),
}

impl ChannelRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoAddress => "NO_ADDRESS",
            Self::Suppressed(reason) => reason.as_str(),
        }
    }
}

/// Someone a rule may notify, with their addresses.
struct Addressee {
    subject: Subject,
    name: String,
    email: Option<Email>,
    phone: Option<Phone>,
}

impl Addressee {
    /// Where `channel` reaches them, as the queue takes it.
    fn recipient(&self, channel: Channel) -> Option<QueueRecipient> {
        let address = match channel {
            Channel::Email => Address::Email(self.email.clone()?),
            Channel::Whatsapp | Channel::Sms => Address::Phone(self.phone.clone()?),
            Channel::InApp => {
                return match self.subject {
                    Subject::Member(user_id) => Some(QueueRecipient::Member(user_id)),
                    Subject::Customer(_) => None,
                };
            }
        };
        Some(match self.subject {
            Subject::Customer(customer_id) => QueueRecipient::Customer {
                customer_id,
                address,
            },
            Subject::Member(_) => QueueRecipient::Address(address),
        })
    }

    /// The template's variables: the event's, this person's name, and the link that opts
    /// them out of the category on the channel.
    fn variables(&self, event: &Value, unsubscribe_url: String) -> Value {
        let person = match self.subject {
            Subject::Customer(_) => "customer",
            Subject::Member(_) => "member",
        };
        let mut variables = event.clone();
        variables[person] = json!({ "name": self.name });
        variables["notification"] = json!({ "unsubscribe_url": unsubscribe_url });
        variables
    }

    fn of_customer(customer: customer::Model) -> Self {
        Self {
            subject: Subject::Customer(customer.id),
            name: customer.name,
            // Stored through their types; what no longer parses is no address.
            email: customer
                .email
                .as_deref()
                .and_then(|email| Email::parse(email).ok()),
            phone: customer
                .phone
                .as_deref()
                .and_then(|phone| Phone::parse(phone).ok()),
        }
    }

    fn of_user(user: user::Model) -> Self {
        Self {
            subject: Subject::Member(user.id),
            name: user.name,
            email: Email::parse(&user.email).ok(),
            phone: None,
        }
    }
}

/// Evaluates `txn`'s company's enabled rules for one event: what each decided.
pub async fn outcomes(
    txn: &TenantTxn,
    event: &EvaluateRules,
    links: &Links<'_>,
) -> ApiResult<Vec<Outcome>> {
    let rules = txn
        .find::<notification_rule::Entity>()
        .filter(notification_rule::Column::EventType.eq(event.event_type.as_str()))
        .filter(notification_rule::Column::Enabled.eq(true))
        .order_by_asc(notification_rule::Column::Id)
        .all(txn)
        .await?;
    let variables = load_event_variables(txn, event).await?;
    let mut outcomes = Vec::new();
    for rule in rules {
        let rule = Rule::from_row(rule)?;
        if !domain::all_hold(&rule.conditions, &event.payload) {
            continue;
        }
        let addressees = addressees(txn, &rule.recipient, &event.payload).await?;
        if addressees.is_empty() {
            outcomes.push(Outcome::NoRecipient { rule_id: rule.id });
        }
        let several = addressees.len() > 1;
        for addressee in addressees {
            let planning = Planning {
                rule: &rule,
                event,
                variables: &variables,
                links,
            };
            outcomes.push(choose_channel(txn, &planning, &addressee, several).await?);
        }
    }
    Ok(outcomes)
}

/// One matching rule being turned into notifications for an event.
struct Planning<'a> {
    rule: &'a Rule,
    event: &'a EvaluateRules,
    /// The variables every recipient's notification shares ([`event_variables`]).
    variables: &'a Value,
    links: &'a Links<'a>,
}

/// How unsubscribe links are made: signed with the server's secret, under its public URL.
pub struct Links<'a> {
    pub tokens: &'a UnsubscribeTokens,
    pub public_url: &'a str,
}

async fn choose_channel(
    txn: &TenantTxn,
    planning: &Planning<'_>,
    addressee: &Addressee,
    several: bool,
) -> ApiResult<Outcome> {
    let (rule, event) = (planning.rule, planning.event);
    let mut reasons = Vec::new();
    let mut held = None;
    for &channel in &rule.channels {
        let Some(recipient) = addressee.recipient(channel) else {
            reasons.push((channel, ChannelRefusal::NoAddress));
            continue;
        };
        let planned = || {
            let mut idempotency_key = domain::idempotency_key(event.event_id, rule.id);
            if several {
                // A role's members each get their own.
                if let Subject::Member(user_id) = addressee.subject {
                    idempotency_key.push_str(&format!(":user:{user_id}"));
                }
            }
            Planned {
                rule_id: rule.id,
                subject: addressee.subject,
                channel,
                recipient,
                template_name: rule.template_name.clone(),
                category: rule.category,
                variables: addressee.variables(
                    planning.variables,
                    format!(
                        "{}/notifications/unsubscribe?token={}",
                        planning.links.public_url.trim_end_matches('/'),
                        unsubscribe_token(
                            planning.links.tokens,
                            txn.company(),
                            addressee.subject,
                            rule.category,
                            channel,
                            Utc::now(),
                        )
                    ),
                ),
                idempotency_key,
                send_at: event.occurred_at + Duration::seconds(rule.delay_seconds.into()),
            }
        };
        match decide(txn, addressee.subject, rule.category, channel).await? {
            Decision::Suppressed { reason } => {
                reasons.push((channel, ChannelRefusal::Suppressed(reason)));
                held.get_or_insert_with(planned);
            }
            Decision::Send => return Ok(Outcome::Planned(planned())),
        }
    }
    Ok(Outcome::Suppressed {
        rule_id: rule.id,
        subject: addressee.subject,
        reasons,
        held,
    })
}

/// Reads what [`event_variables`] needs: the company, and the event's order when it names one.
async fn load_event_variables(txn: &TenantTxn, event: &EvaluateRules) -> ApiResult<Value> {
    let company = txn
        .find_company()
        .one(txn)
        .await?
        .ok_or(ApiError::NotFound("company"))?;
    let order = match uuid_at(&event.payload, "orderId") {
        Some(order_id) => {
            txn.find::<order::Entity>()
                .filter(order::Column::Id.eq(order_id))
                .one(txn)
                .await?
        }
        None => None,
    };
    Ok(event_variables(event, &company.name, order.as_ref()))
}

/// What the templates of an event's notifications read: the company, the event's order and
/// payment as the built-in purposes name them, and the payload itself as `event`.
fn event_variables(
    event: &EvaluateRules,
    company_name: &str,
    order: Option<&order::Model>,
) -> Value {
    let payload = &event.payload;
    let mut variables = json!({
        "event": payload,
        "company": { "name": company_name },
    });
    if let Some(order) = order {
        variables["order"] = json!({
            "number": order.number.to_string(),
            "total": { "minor": order.total_minor, "currency": order.currency },
            "status": order.status,
            "previous_status": payload.get("from"),
            "changed_at": event.occurred_at,
        });
    }
    if let (Some(amount), Some(currency)) = (
        payload.get("amountMinor").and_then(Value::as_i64),
        payload.get("currency").and_then(Value::as_str),
    ) {
        variables["payment"] = json!({
            "amount": { "minor": amount, "currency": currency },
            "method": payload.get("method"),
            "paid_at": event.occurred_at,
        });
    }
    variables
}

/// The id at `field` of an event's payload.
fn uuid_at(payload: &Value, field: &str) -> Option<Uuid> {
    payload
        .get(field)
        .and_then(Value::as_str)
        .and_then(|id| Uuid::parse_str(id).ok())
}

/// Who `recipient` is for an event with `payload`.
async fn addressees(
    txn: &TenantTxn,
    recipient: &Recipient,
    payload: &Value,
) -> ApiResult<Vec<Addressee>> {
    let users = match recipient {
        Recipient::Customer => {
            let customer_id = match uuid_at(payload, "customerId") {
                Some(id) => Some(id),
                None => match uuid_at(payload, "orderId") {
                    Some(order_id) => txn
                        .find::<order::Entity>()
                        .filter(order::Column::Id.eq(order_id))
                        .one(txn)
                        .await?
                        .map(|order| order.customer_id),
                    None => None,
                },
            };
            let Some(customer_id) = customer_id else {
                return Ok(Vec::new());
            };
            return Ok(txn
                .find::<customer::Entity>()
                .filter(customer::Column::Id.eq(customer_id))
                .one(txn)
                .await?
                .map(Addressee::of_customer)
                .into_iter()
                .collect());
        }
        Recipient::Member { user_id } => vec![*user_id],
        Recipient::Actor => payload
            .get("actor")
            .and_then(Value::as_str)
            .and_then(user_of_subject)
            .into_iter()
            .collect(),
        Recipient::Role { name } => access::role_holders(txn, name).await?,
    };
    // Only members of this company: a rule naming someone who left notifies no one.
    let members: Vec<Uuid> = txn
        .find::<membership::Entity>()
        .filter(membership::Column::UserId.is_in(users))
        .all(txn)
        .await?
        .into_iter()
        .map(|membership| membership.user_id)
        .collect();
    if members.is_empty() {
        return Ok(Vec::new());
    }
    Ok(global::find::<user::Entity>()
        .filter(user::Column::Id.is_in(members))
        .order_by_asc(user::Column::Id)
        .all(txn)
        .await?
        .into_iter()
        .map(Addressee::of_user)
        .collect())
}

/// Registers the `notifications.evaluate-rules` handler ([`evaluate`]) on `runtime`.
pub fn register(runtime: &mut Runtime, state: &AppState) {
    let evaluating = state.clone();
    runtime.handle(
        RetryPolicy::default(),
        move |context, event: EvaluateRules| {
            let state = evaluating.clone();
            async move {
                evaluate(&state, &context, &event).await?;
                Ok(())
            }
        },
    );
}

/// The `notifications.evaluate-rules` handler: evaluates the event's rules for its company and
/// hands what they planned to the notification queue, in one transaction.
pub async fn evaluate(
    state: &AppState,
    context: &JobContext,
    event: &EvaluateRules,
) -> anyhow::Result<Vec<Outcome>> {
    let started = Instant::now();
    let company = context
        .company_id
        .map(CompanyId::from_row)
        .ok_or_else(|| anyhow::anyhow!("a rules evaluation job without its company"))?;
    let txn = state
        .begin_for_company(
            company,
            "notification rules of a relayed event",
            Intent::Write,
        )
        .await?;
    let public_url = state.settings.public_url();
    let links = Links {
        tokens: &state.unsubscribe_tokens,
        public_url: &public_url,
    };
    let outcomes = outcomes(&txn, event, &links)
        .await
        .map_err(ApiError::into_anyhow)?;
    for outcome in &outcomes {
        match outcome {
            Outcome::Planned(planned) => {
                let (rule, channel) = (planned.rule_id, planned.channel);
                let queued = queue(
                    &state.jobs,
                    &txn,
                    planned.clone().into_notification(state.jobs.now()),
                )
                .await
                .map_err(ApiError::into_anyhow)?;
                metrics::counter!("notification_rules_planned_total", "channel" => channel.as_str())
                    .increment(1);
                tracing::info!(%company, event = %event.event_id, %rule,
                    channel = channel.as_str(), notification = %queued.id(),
                    duplicate = matches!(queued, QueueOutcome::Duplicate(_)),
                    "a rule queued a notification");
            }
            Outcome::Suppressed {
                rule_id,
                reasons,
                held,
                ..
            } => {
                if let Some(held) = held {
                    queue(
                        &state.jobs,
                        &txn,
                        held.clone().into_notification(state.jobs.now()),
                    )
                    .await
                    .map_err(ApiError::into_anyhow)?;
                }
                let reasons: Vec<String> = reasons
                    .iter()
                    .map(|(channel, why)| format!("{}: {}", channel.as_str(), why.as_str()))
                    .collect();
                metrics::counter!("notification_rules_suppressed_total").increment(1);
                tracing::info!(%company, event = %event.event_id, rule = %rule_id,
                    reasons = %reasons.join(", "), "a rule's notification was suppressed");
            }
            Outcome::NoRecipient { rule_id } => {
                tracing::info!(%company, event = %event.event_id, rule = %rule_id,
                    "the event names no recipient for the rule");
            }
        }
    }
    txn.commit().await?;
    metrics::histogram!("notification_rules_evaluation_seconds")
        .record(started.elapsed().as_secs_f64());
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::{
        domain::Locale,
        events::{
            DomainEvent,
            domain::{OrderStatusChanged, PaymentState},
        },
        notifications::templates::{RenderContext, system_default},
    };

    /// An event of `event_type` for which `rule`'s conditions hold, and the order it is about.
    fn sample_event(rule: &RuleDefinition) -> (EvaluateRules, order::Model) {
        let occurred_at = Utc.with_ymd_and_hms(2026, 12, 2, 15, 30, 0).unwrap();
        let order = order::Model {
            id: Uuid::now_v7(),
            company_id: Uuid::now_v7(),
            number: 1042,
            customer_id: Uuid::now_v7(),
            workflow_id: Uuid::now_v7(),
            status: "PENDING".into(),
            version: 3,
            subtotal_minor: 15990,
            total_minor: 15990,
            currency: "BRL".into(),
            notes: None,
            created_at: occurred_at,
            updated_at: occurred_at,
        };
        let event = match EventType::parse(&rule.event_type) {
            Some(EventType::OrderStatusChanged) => {
                DomainEvent::OrderStatusChanged(OrderStatusChanged {
                    order_id: order.id,
                    number: order.number,
                    from: "PENDING".into(),
                    to: "PENDING".into(),
                    version: order.version,
                    actor: crate::auth::user_subject(Uuid::now_v7()),
                })
            }
            Some(EventType::PaymentPaid) => DomainEvent::PaymentPaid(PaymentState {
                payment_id: Uuid::now_v7(),
                order_id: order.id,
                method: "PIX".into(),
                status: "PAID".into(),
                amount_minor: order.total_minor,
                refunded_minor: 0,
                currency: order.currency.clone(),
            }),
            other => panic!("a default rule listens to {other:?}: add a sample of it here"),
        };
        let mut payload = event.payload();
        // What the rule waits for: `to = READY` makes the sample a change to READY.
        for condition in &rule.conditions {
            if condition.op == Operator::Eq {
                payload[condition.field.as_str()] = condition.value.clone();
            }
        }
        assert!(
            domain::all_hold(&rule.conditions, &payload),
            "{}: the sample does not trigger it",
            rule.name
        );
        let order = order::Model {
            status: payload
                .get("to")
                .and_then(Value::as_str)
                .unwrap_or("PAID")
                .to_string(),
            ..order
        };
        let event = EvaluateRules {
            event_id: Uuid::now_v7(),
            event_type: rule.event_type.clone(),
            occurred_at,
            payload,
        };
        (event, order)
    }

    #[test]
    fn every_default_rule_renders_with_its_events_variables() {
        let customer = Addressee {
            subject: Subject::Customer(Uuid::now_v7()),
            name: "Maria Souza".into(),
            email: None,
            phone: None,
        };
        for business_type in BusinessType::ALL {
            for rule in default_rules(business_type) {
                let (event, order) = sample_event(&rule);
                let variables = customer.variables(
                    &event_variables(&event, "Bicicletaria Aro 29", Some(&order)),
                    "https://app.example.com/notifications/unsubscribe?token=t".into(),
                );
                for &channel in &rule.channels {
                    for code in Locale::SUPPORTED {
                        let locale = Locale::parse(code).expect("a supported locale");
                        let template = system_default(&rule.template_name, channel, locale)
                            .unwrap_or_else(|| {
                                panic!("{}: no template {}", rule.name, rule.template_name)
                            });
                        let rendered = template.render(&RenderContext {
                            locale,
                            timezone: chrono_tz::America::Sao_Paulo,
                            variables: variables.clone(),
                        });
                        assert!(
                            rendered.is_ok(),
                            "{business_type:?} rule `{}` ({}, {}, {code}): {:?}",
                            rule.name,
                            rule.template_name,
                            channel.as_str(),
                            rendered.err()
                        );
                    }
                }
            }
        }
    }
}
