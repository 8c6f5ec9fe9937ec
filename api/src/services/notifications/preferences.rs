//! Who wants which notifications. [`decide`] is the one answer to "may this go out?": critical
//! categories always do, marketing needs a recorded consent, and everything else follows the
//! person's preference for the category and channel, opted in by default. Opt-outs (a setting,
//! an unsubscribe link, a `STOP` reply) are rows read by the next [`decide`], so they hold at
//! once.
//!
//! Members change their own preferences; a customer's are changed by staff with
//! `customers:update` (read with `customers:read`), since customers have no login.

use chrono::{DateTime, Duration, Utc};
use entity::{customer, notification_consent, notification_preference};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DbErr, QueryFilter, QueryOrder,
    sea_query::{Expr, OnConflict},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    auth::Actor,
    crypto::{TokenRefused, UnsubscribeTokens},
    db::tenant::{CompanyId, Intent, TenantTxn},
    domain::notification_rules::Category,
    error::{ApiError, ApiResult},
    notifications::{Channel, WebhookEvent, is_opt_out_reply},
    services::{authorize, text},
    state::AppState,
};

/// Whose preference it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Subject {
    /// A user who is a member of the company.
    Member(Uuid),
    Customer(Uuid),
}

impl Subject {
    fn kind(self) -> &'static str {
        match self {
            Self::Member(_) => "MEMBER",
            Self::Customer(_) => "CUSTOMER",
        }
    }

    fn id(self) -> Uuid {
        match self {
            Self::Member(id) | Self::Customer(id) => id,
        }
    }
}

/// Where a preference or consent came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The member, about themselves.
    OwnChoice,
    /// A member, for a customer.
    Staff,
    UnsubscribeLink,
    /// A `SAIR`/`PARAR`/`STOP` reply on WhatsApp or SMS.
    InboundReply,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OwnChoice => "SELF",
            Self::Staff => "STAFF",
            Self::UnsubscribeLink => "UNSUBSCRIBE_LINK",
            Self::InboundReply => "INBOUND_REPLY",
        }
    }
}

/// Whether a notification may go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Send,
    Suppressed { reason: Suppression },
}

/// Why a notification was not sent; recorded in logs and the delivery log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suppression {
    /// The person switched the category off on the channel.
    OptedOut,
    /// Marketing without a recorded, unrevoked consent for the channel.
    NoConsent,
}

impl Suppression {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OptedOut => "OPTED_OUT",
            Self::NoConsent => "NO_CONSENT",
        }
    }
}

/// Whether `subject` may be sent a notification of `category` on `channel`, in `txn`'s
/// company: [`standing`] on what is stored for them.
pub async fn decide(
    txn: &TenantTxn,
    subject: Subject,
    category: Category,
    channel: Channel,
) -> Result<Decision, DbErr> {
    if category.is_critical() {
        return Ok(Decision::Send);
    }
    let consented = category.needs_consent()
        && active_consent(txn, subject, category, channel)
            .await?
            .is_some();
    let preference = stored_preference(txn, subject, category, channel).await?;
    Ok(standing(
        category,
        preference.map(|preference| preference.opted_in),
        consented,
    ))
}

/// The one rule: critical categories always go; marketing needs a recorded consent
/// (`consented`); everything else goes unless the person's stored choice (`opted_in`) says no.
fn standing(category: Category, opted_in: Option<bool>, consented: bool) -> Decision {
    if category.is_critical() {
        Decision::Send
    } else if category.needs_consent() && !consented {
        Decision::Suppressed {
            reason: Suppression::NoConsent,
        }
    } else if opted_in == Some(false) {
        Decision::Suppressed {
            reason: Suppression::OptedOut,
        }
    } else {
        Decision::Send
    }
}

async fn stored_preference(
    txn: &TenantTxn,
    subject: Subject,
    category: Category,
    channel: Channel,
) -> Result<Option<notification_preference::Model>, DbErr> {
    txn.find::<notification_preference::Entity>()
        .filter(notification_preference::Column::SubjectKind.eq(subject.kind()))
        .filter(notification_preference::Column::SubjectId.eq(subject.id()))
        .filter(notification_preference::Column::Category.eq(category.as_str()))
        .filter(notification_preference::Column::Channel.eq(channel.as_str()))
        .one(txn)
        .await
}

async fn active_consent(
    txn: &TenantTxn,
    subject: Subject,
    purpose: Category,
    channel: Channel,
) -> Result<Option<notification_consent::Model>, DbErr> {
    txn.find::<notification_consent::Entity>()
        .filter(notification_consent::Column::SubjectKind.eq(subject.kind()))
        .filter(notification_consent::Column::SubjectId.eq(subject.id()))
        .filter(notification_consent::Column::Purpose.eq(purpose.as_str()))
        .filter(notification_consent::Column::Channel.eq(channel.as_str()))
        .filter(notification_consent::Column::RevokedAt.is_null())
        .order_by_desc(notification_consent::Column::GrantedAt)
        .one(txn)
        .await
}

/// Records that `subject` wants (or does not want) `category` on `channel`. Critical
/// categories cannot be switched off.
pub async fn record_preference(
    txn: &TenantTxn,
    subject: Subject,
    category: Category,
    channel: Channel,
    opted_in: bool,
    source: Source,
) -> ApiResult<notification_preference::Model> {
    if category.is_critical() && !opted_in {
        return Err(ApiError::validation(
            "input.category",
            format!(
                "`{}` notifications are critical and cannot be switched off",
                category.as_str()
            ),
        ));
    }
    txn.upsert(
        notification_preference::ActiveModel {
            id: Set(Uuid::now_v7()),
            subject_kind: Set(subject.kind().to_string()),
            subject_id: Set(subject.id()),
            category: Set(category.as_str().to_string()),
            channel: Set(channel.as_str().to_string()),
            opted_in: Set(opted_in),
            source: Set(source.as_str().to_string()),
            updated_at: Set(Utc::now()),
            ..Default::default()
        },
        OnConflict::columns([
            notification_preference::Column::CompanyId,
            notification_preference::Column::SubjectKind,
            notification_preference::Column::SubjectId,
            notification_preference::Column::Category,
            notification_preference::Column::Channel,
        ])
        .update_columns([
            notification_preference::Column::OptedIn,
            notification_preference::Column::Source,
            notification_preference::Column::UpdatedAt,
        ])
        .to_owned(),
    )
    .await?;
    let stored = stored_preference(txn, subject, category, channel)
        .await?
        .ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("the upserted preference is not there"))
        })?;
    tracing::info!(
        company = %txn.company(),
        subject = subject.kind(),
        category = category.as_str(),
        channel = channel.as_str(),
        opted_in,
        source = source.as_str(),
        "notification preference recorded"
    );
    Ok(stored)
}

/// One category on one channel as it applies to a person: stored, or the default.
#[derive(Debug, Clone)]
pub struct Preference {
    pub category: Category,
    pub channel: Channel,
    pub opted_in: bool,
    /// Whether the category cannot be switched off.
    pub critical: bool,
    /// Where the stored choice came from; `None` for the default.
    pub source: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Every category on every channel for `subject`, stored choices over defaults (critical and
/// transactional on, marketing on only where consented), each decided by [`standing`] on the
/// subject's rows read once.
async fn effective_preferences(txn: &TenantTxn, subject: Subject) -> ApiResult<Vec<Preference>> {
    let stored = txn
        .find::<notification_preference::Entity>()
        .filter(notification_preference::Column::SubjectKind.eq(subject.kind()))
        .filter(notification_preference::Column::SubjectId.eq(subject.id()))
        .all(txn)
        .await?;
    let consents = txn
        .find::<notification_consent::Entity>()
        .filter(notification_consent::Column::SubjectKind.eq(subject.kind()))
        .filter(notification_consent::Column::SubjectId.eq(subject.id()))
        .filter(notification_consent::Column::RevokedAt.is_null())
        .all(txn)
        .await?;
    let mut preferences = Vec::with_capacity(Category::ALL.len() * Channel::ALL.len());
    for category in Category::ALL {
        for channel in Channel::ALL {
            let row = stored
                .iter()
                .find(|row| row.category == category.as_str() && row.channel == channel.as_str());
            let consented = consents.iter().any(|consent| {
                consent.purpose == category.as_str() && consent.channel == channel.as_str()
            });
            let decision = standing(category, row.map(|row| row.opted_in), consented);
            preferences.push(Preference {
                category,
                channel,
                opted_in: decision == Decision::Send,
                critical: category.is_critical(),
                source: row.map(|row| row.source.clone()),
                updated_at: row.map(|row| row.updated_at),
            });
        }
    }
    Ok(preferences)
}

fn member_of(actor: &Actor) -> ApiResult<Subject> {
    actor
        .user_id()
        .map(Subject::Member)
        .ok_or_else(|| ApiError::forbidden("an API key has no notification preferences of its own"))
}

/// The caller's own preferences.
pub async fn my_preferences(state: &AppState, actor: &Actor) -> ApiResult<Vec<Preference>> {
    let subject = member_of(actor)?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let preferences = effective_preferences(&txn, subject).await?;
    txn.commit().await?;
    Ok(preferences)
}

/// Changes one of the caller's own preferences.
pub async fn set_my_preference(
    state: &AppState,
    actor: &Actor,
    category: Category,
    channel: Channel,
    opted_in: bool,
) -> ApiResult<notification_preference::Model> {
    let subject = member_of(actor)?;
    let txn = state.begin_for(actor, Intent::Write).await?;
    let stored = record_preference(
        &txn,
        subject,
        category,
        channel,
        opted_in,
        Source::OwnChoice,
    )
    .await?;
    txn.commit().await?;
    Ok(stored)
}

async fn existing_customer(txn: &TenantTxn, customer_id: Uuid) -> ApiResult<Subject> {
    txn.find::<customer::Entity>()
        .filter(customer::Column::Id.eq(customer_id))
        .one(txn)
        .await?
        .map(|customer| Subject::Customer(customer.id))
        .ok_or(ApiError::NotFound("customer"))
}

/// A customer's preferences (`customers:read`).
pub async fn customer_preferences(
    state: &AppState,
    actor: &Actor,
    customer_id: Uuid,
) -> ApiResult<Vec<Preference>> {
    authorize(state, actor, "customers", "read").await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let subject = existing_customer(&txn, customer_id).await?;
    let preferences = effective_preferences(&txn, subject).await?;
    txn.commit().await?;
    Ok(preferences)
}

/// Changes a customer's preference on their behalf (`customers:update`).
pub async fn set_customer_preference(
    state: &AppState,
    actor: &Actor,
    customer_id: Uuid,
    category: Category,
    channel: Channel,
    opted_in: bool,
) -> ApiResult<notification_preference::Model> {
    authorize(state, actor, "customers", "update").await?;
    let txn = state.begin_for(actor, Intent::Write).await?;
    let subject = existing_customer(&txn, customer_id).await?;
    let stored =
        record_preference(&txn, subject, category, channel, opted_in, Source::Staff).await?;
    txn.commit().await?;
    Ok(stored)
}

/// What a customer agreed to, as staff record it.
pub struct NewConsent {
    pub purpose: Category,
    pub channel: Channel,
    /// How the customer agreed (`COUNTER`, `WEBSITE_FORM`, …).
    pub source: String,
    /// The version of the consent text shown to them.
    pub text_version: String,
}

/// The member taking down a customer's consent or its revocation. Consent is the customer's
/// own statement, heard by a person: an API key (an integration) may not record or revoke
/// it, whatever its role allows.
fn consent_recorder(actor: &Actor) -> ApiResult<Uuid> {
    actor.user_id().ok_or_else(|| {
        ApiError::forbidden(
            "an API key cannot record or revoke a customer's consent; a member takes it down",
        )
    })
}

/// Records a customer's consent (`customers:update`, by a member); an earlier active consent
/// for the same purpose and channel is superseded (revoked now), so one is active at a time.
pub async fn record_customer_consent(
    state: &AppState,
    actor: &Actor,
    customer_id: Uuid,
    consent: NewConsent,
) -> ApiResult<notification_consent::Model> {
    authorize(state, actor, "customers", "update").await?;
    let recorded_by = consent_recorder(actor)?;
    let source = consent_label("input.source", &consent.source, MAX_CONSENT_SOURCE_CHARS)?;
    let text_version = consent_label(
        "input.textVersion",
        &consent.text_version,
        MAX_CONSENT_TEXT_VERSION_CHARS,
    )?;
    // Serialized: two recordings for one customer at once would each find no active consent
    // to supersede and leave two active.
    let txn = state.begin_for(actor, Intent::Serialized).await?;
    let subject = existing_customer(&txn, customer_id).await?;
    let now = Utc::now();
    revoke_active(&txn, subject, consent.purpose, consent.channel, now).await?;
    let recorded = txn
        .insert(notification_consent::ActiveModel {
            id: Set(Uuid::now_v7()),
            subject_kind: Set(subject.kind().to_string()),
            subject_id: Set(subject.id()),
            purpose: Set(consent.purpose.as_str().to_string()),
            channel: Set(consent.channel.as_str().to_string()),
            granted_at: Set(now),
            revoked_at: Set(None),
            source: Set(source),
            text_version: Set(text_version),
            recorded_by: Set(Some(recorded_by)),
            ..Default::default()
        })
        .await?;
    txn.commit().await?;
    tracing::info!(company = %actor.company(), consent = %recorded.id, %recorded_by,
        purpose = consent.purpose.as_str(), channel = consent.channel.as_str(),
        "customer consent recorded");
    Ok(recorded)
}

/// Revokes a customer's active consent (`customers:update`, by a member); returns whether
/// there was one. The record stays, with when it was revoked.
pub async fn revoke_customer_consent(
    state: &AppState,
    actor: &Actor,
    customer_id: Uuid,
    purpose: Category,
    channel: Channel,
) -> ApiResult<bool> {
    authorize(state, actor, "customers", "update").await?;
    let revoked_by = consent_recorder(actor)?;
    let txn = state.begin_for(actor, Intent::Serialized).await?;
    let subject = existing_customer(&txn, customer_id).await?;
    let revoked = revoke_active(&txn, subject, purpose, channel, Utc::now()).await?;
    txn.commit().await?;
    if revoked > 0 {
        tracing::info!(company = %actor.company(), customer = %customer_id, %revoked_by,
            purpose = purpose.as_str(), channel = channel.as_str(), "customer consent revoked");
    }
    Ok(revoked > 0)
}

async fn revoke_active(
    txn: &TenantTxn,
    subject: Subject,
    purpose: Category,
    channel: Channel,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    Ok(txn
        .update::<notification_consent::Entity>()
        .col_expr(notification_consent::Column::RevokedAt, Expr::value(now))
        .filter(notification_consent::Column::SubjectKind.eq(subject.kind()))
        .filter(notification_consent::Column::SubjectId.eq(subject.id()))
        .filter(notification_consent::Column::Purpose.eq(purpose.as_str()))
        .filter(notification_consent::Column::Channel.eq(channel.as_str()))
        .filter(notification_consent::Column::RevokedAt.is_null())
        .exec(txn)
        .await?
        .rows_affected)
}

/// The longest a consent's source may be (its column's width).
pub const MAX_CONSENT_SOURCE_CHARS: usize = 32;
/// The longest a consent text's version may be (its column's width).
pub const MAX_CONSENT_TEXT_VERSION_CHARS: usize = 64;

fn consent_label(field: &str, value: &str, max_chars: usize) -> ApiResult<String> {
    let value = text(
        field,
        value,
        crate::domain::TextRule::single_line(max_chars),
    )?;
    if value.is_empty() {
        return Err(ApiError::validation(field, "must not be empty"));
    }
    Ok(value)
}

/// How long an unsubscribe link in a notification works.
pub const UNSUBSCRIBE_LINK_VALIDITY: Duration = Duration::days(60);

/// What an unsubscribe link opts out of.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UnsubscribeClaims {
    company: Uuid,
    subject: Subject,
    category: String,
    channel: String,
}

/// The token of the unsubscribe link for a notification of `category` on `channel` to
/// `subject`: put `/notifications/unsubscribe?token=…` in the message. `tokens` is
/// [`AppState::unsubscribe_tokens`].
pub fn unsubscribe_token(
    tokens: &UnsubscribeTokens,
    company: CompanyId,
    subject: Subject,
    category: Category,
    channel: Channel,
    now: DateTime<Utc>,
) -> String {
    tokens.sign(
        UnsubscribeClaims {
            company: company.get(),
            subject,
            category: category.as_str().to_string(),
            channel: channel.as_str().to_string(),
        },
        now,
        now + UNSUBSCRIBE_LINK_VALIDITY,
    )
}

/// What an unsubscribe link said, once checked.
#[derive(Debug, Clone)]
pub struct UnsubscribeRequest {
    pub category: Category,
    pub channel: Channel,
    /// Critical categories are not switched off by a link.
    pub critical: bool,
    claims_company: Uuid,
    subject: Subject,
}

/// Checks an unsubscribe link's token without changing anything (what `GET` shows).
pub fn read_unsubscribe(state: &AppState, token: &str) -> Result<UnsubscribeRequest, TokenRefused> {
    let claims: UnsubscribeClaims = state.unsubscribe_tokens.verify(token)?;
    let (Some(category), Some(channel)) = (
        Category::parse(&claims.category),
        Channel::parse(&claims.channel),
    ) else {
        return Err(TokenRefused::Invalid);
    };
    Ok(UnsubscribeRequest {
        category,
        channel,
        critical: category.is_critical(),
        claims_company: claims.company,
        subject: claims.subject,
    })
}

/// Records the opt-out an unsubscribe link asks for (what `POST` does).
pub async fn unsubscribe(state: &AppState, request: &UnsubscribeRequest) -> ApiResult<()> {
    // The company comes from a token this server signed: only we could have named it.
    let company = CompanyId::from_row(request.claims_company);
    let txn = state
        .begin_for_company(company, "unsubscribe link", Intent::Write)
        .await?;
    record_preference(
        &txn,
        request.subject,
        request.category,
        request.channel,
        false,
        Source::UnsubscribeLink,
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Records the opt-outs among `events` (a customer replying `SAIR`, `PARAR` or `STOP` on
/// `channel`): every customer of `txn`'s company with that phone is opted out of every
/// non-critical category on the channel at once. Returns how many customers it was.
pub async fn opt_out_replies(
    txn: &TenantTxn,
    channel: Channel,
    events: &[WebhookEvent],
) -> ApiResult<usize> {
    let mut opted_out = 0;
    for event in events {
        let WebhookEvent::Inbound { from, text } = event else {
            continue;
        };
        if !is_opt_out_reply(text) {
            continue;
        }
        let customers = txn
            .find::<customer::Entity>()
            .filter(customer::Column::Phone.eq(from.as_str()))
            .all(txn)
            .await?;
        for customer in &customers {
            for category in Category::ALL.into_iter().filter(|c| !c.is_critical()) {
                record_preference(
                    txn,
                    Subject::Customer(customer.id),
                    category,
                    channel,
                    false,
                    Source::InboundReply,
                )
                .await?;
            }
        }
        opted_out += customers.len();
    }
    Ok(opted_out)
}
