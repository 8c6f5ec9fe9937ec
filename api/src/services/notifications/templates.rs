//! A company's notification templates: its own wording of a built-in purpose (`order_ready`,
//! `payment_receipt`, …) per channel and locale, validated when saved, and the lookup that
//! falls back to the system defaults when rendering.
//!
//! The lookup goes locale by locale along the chain requested → company's → pt-BR, and in each
//! locale takes the company's template before the system default: a customer is written to in
//! their language first, in the company's wording when there is one.

use std::fmt;

use chrono::Utc;
use chrono_tz::Tz;
use entity::{company, notification_template};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DbErr, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::{
    auth::Actor,
    db::tenant::{Intent, TenantTxn},
    domain::Locale,
    error::{ApiError, ApiResult, UniqueKey},
    notifications::{
        Channel,
        templates::{
            Purpose, RenderContext, Rendered, Template, TemplateError, locale_chain, system_default,
        },
    },
    services::authorize,
    state::AppState,
};

/// The most characters of a template's body; a WhatsApp message renders to at most 4096.
pub const MAX_BODY_CHARS: usize = 20_000;
/// The most characters of a subject's source (it renders to one line of at most 200).
pub const MAX_SUBJECT_CHARS: usize = 1_000;

const UNIQUE: UniqueKey = UniqueKey::new(
    "notification_templates_company_name_channel_locale_key",
    "notification_templates",
    &["company_id", "name", "channel", "locale"],
);

/// A template to save for a purpose, channel and locale.
pub struct NewTemplate {
    pub name: String,
    pub channel: Channel,
    pub locale: Locale,
    pub subject: Option<String>,
    pub body: String,
}

/// What `updateNotificationTemplate` may change; `None` leaves a field as it is, an empty
/// subject removes it.
#[derive(Default)]
pub struct TemplateChanges {
    pub subject: Option<String>,
    pub body: Option<String>,
}

/// Which templates a list shows.
#[derive(Default)]
pub struct TemplateFilter {
    pub channel: Option<Channel>,
    pub name: Option<String>,
}

/// A system default's id in the API: `system:<purpose>:<CHANNEL>:<locale>`, e.g.
/// `system:order_ready:WHATSAPP:pt-BR`. The same for every company; it names no row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemTemplateId {
    pub purpose: &'static Purpose,
    pub channel: Channel,
    pub locale: Locale,
}

impl SystemTemplateId {
    const PREFIX: &'static str = "system:";

    /// `None` for anything that is not a system default's id.
    pub fn parse(id: &str) -> Option<Self> {
        let mut parts = id.strip_prefix(Self::PREFIX)?.split(':');
        let purpose = Purpose::find(parts.next()?)?;
        let channel = Channel::parse(parts.next()?)?;
        let locale = Locale::parse(parts.next()?).ok()?;
        parts.next().is_none().then_some(Self {
            purpose,
            channel,
            locale,
        })
    }

    /// The default itself.
    pub fn template(&self) -> &'static Template {
        system_default(self.purpose.name, self.channel, self.locale)
            .expect("every purpose has a default per channel and locale (tested)")
    }
}

impl fmt::Display for SystemTemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}:{}:{}",
            Self::PREFIX,
            self.purpose.name,
            self.channel.as_str(),
            self.locale.as_str()
        )
    }
}

/// Every system default, by purpose, channel and locale, optionally of one purpose or channel.
pub fn system_defaults(filter: &TemplateFilter) -> Vec<SystemTemplateId> {
    crate::notifications::templates::PURPOSES
        .iter()
        .filter(|purpose| {
            filter
                .name
                .as_deref()
                .is_none_or(|name| name == purpose.name)
        })
        .flat_map(|purpose| {
            Channel::ALL
                .into_iter()
                .filter(|channel| filter.channel.is_none_or(|wanted| wanted == *channel))
                .flat_map(move |channel| {
                    Locale::SUPPORTED
                        .into_iter()
                        .map(move |code| SystemTemplateId {
                            purpose,
                            channel,
                            locale: Locale::parse(code).expect("a supported locale"),
                        })
                })
        })
        .collect()
}

/// What a preview renders: a company's template or a system default.
pub enum PreviewTarget {
    Company(Uuid),
    System(SystemTemplateId),
}

/// Where a resolved template came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateSource {
    Company(Uuid),
    System,
}

impl TemplateSource {
    fn label(self) -> &'static str {
        match self {
            Self::Company(_) => "company",
            Self::System => "system",
        }
    }
}

/// The template a message is written with, and the locale it is in (its amounts and dates
/// are formatted in that locale).
#[derive(Debug, Clone)]
pub struct ResolvedTemplate {
    pub template: Template,
    pub locale: Locale,
    pub source: TemplateSource,
}

/// Why [`render_for`] wrote no message.
#[derive(Debug)]
pub enum RenderError {
    /// The name is no built-in purpose.
    UnknownPurpose(String),
    /// The template failed with these variables (a missing value, a message too long).
    /// Rendering again with the same variables fails again.
    Template(TemplateError),
    Database(DbErr),
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownPurpose(name) => write!(f, "no notification purpose named `{name}`"),
            Self::Template(error) => write!(f, "the template failed: {error}"),
            Self::Database(error) => write!(f, "the template could not be read: {error}"),
        }
    }
}

impl std::error::Error for RenderError {}

impl From<DbErr> for RenderError {
    fn from(error: DbErr) -> Self {
        Self::Database(error)
    }
}

impl From<RenderError> for ApiError {
    fn from(error: RenderError) -> Self {
        match error {
            RenderError::UnknownPurpose(name) => {
                ApiError::validation("name", format!("no notification purpose named `{name}`"))
            }
            RenderError::Template(error) => invalid("sample", &error),
            RenderError::Database(error) => ApiError::internal(error),
        }
    }
}

fn invalid(field: &str, error: &TemplateError) -> ApiError {
    ApiError::InvalidTemplate {
        field: field.to_string(),
        line: error.line,
        message: error.to_string(),
    }
}

async fn manage(state: &AppState, actor: &Actor) -> ApiResult<()> {
    authorize(state, actor, "notifications", "manage").await
}

/// Refuses with `FORBIDDEN` unless the actor may read templates (`notifications:read`).
pub async fn authorize_read(state: &AppState, actor: &Actor) -> ApiResult<()> {
    authorize(state, actor, "notifications", "read").await
}

fn purpose(name: &str) -> ApiResult<&'static Purpose> {
    Purpose::find(name.trim()).ok_or_else(|| {
        ApiError::validation(
            "input.name",
            format!(
                "no notification purpose named `{name}`; one of: {}",
                crate::notifications::templates::PURPOSES
                    .iter()
                    .map(|purpose| purpose.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

/// Checks a template before it is saved: sizes, then the engine's validation against the
/// purpose; the error names `input.subject` or `input.body` and the line.
fn checked(purpose: &Purpose, template: Template) -> ApiResult<Template> {
    if template.body.chars().count() > MAX_BODY_CHARS {
        return Err(ApiError::validation(
            "input.body",
            format!("the body is longer than {MAX_BODY_CHARS} characters"),
        ));
    }
    if template
        .subject
        .as_ref()
        .is_some_and(|subject| subject.chars().count() > MAX_SUBJECT_CHARS)
    {
        return Err(ApiError::validation(
            "input.subject",
            format!("the subject is longer than {MAX_SUBJECT_CHARS} characters"),
        ));
    }
    template
        .validate(purpose)
        .map_err(|error| invalid(&format!("input.{}", error.field.as_str()), &error))?;
    Ok(template)
}

/// A subject as given: blank means none.
fn subject(subject: Option<String>) -> Option<String> {
    subject.filter(|subject| !subject.trim().is_empty())
}

fn template_of(row: &notification_template::Model) -> Result<Template, DbErr> {
    let channel = Channel::parse(&row.channel).ok_or_else(|| {
        DbErr::Custom(format!(
            "notification template with channel `{}`",
            row.channel
        ))
    })?;
    Ok(Template {
        channel,
        subject: row.subject.clone(),
        body: row.body.clone(),
    })
}

fn locale_of(row: &notification_template::Model) -> Result<Locale, DbErr> {
    Locale::parse(&row.locale).map_err(DbErr::Custom)
}

async fn find(txn: &TenantTxn, id: Uuid) -> Result<Option<notification_template::Model>, DbErr> {
    txn.find::<notification_template::Entity>()
        .filter(notification_template::Column::Id.eq(id))
        .one(txn)
        .await
}

/// One page of the company's templates in id order, after the template `after` (exclusive).
pub async fn list(
    state: &AppState,
    actor: &Actor,
    filter: TemplateFilter,
    first: u64,
    after: Option<Uuid>,
) -> ApiResult<Vec<notification_template::Model>> {
    authorize_read(state, actor).await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let mut query = txn.find::<notification_template::Entity>();
    if let Some(channel) = filter.channel {
        query = query.filter(notification_template::Column::Channel.eq(channel.as_str()));
    }
    if let Some(name) = filter.name {
        query = query.filter(notification_template::Column::Name.eq(name));
    }
    if let Some(after) = after {
        query = query.filter(notification_template::Column::Id.gt(after));
    }
    let rows = query
        .order_by_asc(notification_template::Column::Id)
        .limit(first)
        .all(&txn)
        .await?;
    txn.commit().await?;
    Ok(rows)
}

/// One of the company's templates; `None` for any other id.
pub async fn get(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
) -> ApiResult<Option<notification_template::Model>> {
    authorize_read(state, actor).await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let row = find(&txn, id).await?;
    txn.commit().await?;
    Ok(row)
}

/// Saves the company's template for a purpose, channel and locale (`notifications:manage`);
/// a second one for the same three is a `CONFLICT`.
pub async fn create(
    state: &AppState,
    actor: &Actor,
    new: NewTemplate,
) -> ApiResult<notification_template::Model> {
    manage(state, actor).await?;
    let purpose = purpose(&new.name)?;
    let template = checked(
        purpose,
        Template {
            channel: new.channel,
            subject: subject(new.subject),
            body: new.body,
        },
    )?;
    let now = Utc::now();
    let txn = state.begin_for(actor, Intent::Write).await?;
    let row = txn
        .insert(notification_template::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(purpose.name.to_string()),
            channel: Set(template.channel.as_str().to_string()),
            locale: Set(new.locale.as_str().to_string()),
            subject: Set(template.subject),
            body: Set(template.body),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .await
        .map_err(|error| {
            ApiError::conflict_on(
                error,
                UNIQUE,
                format!(
                    "a {} template for {} in {} exists already; update it instead",
                    new.channel.as_str(),
                    purpose.name,
                    new.locale.as_str()
                ),
            )
        })?;
    txn.commit().await?;
    tracing::info!(template = %row.id, company = %row.company_id, name = %row.name, channel = %row.channel, locale = %row.locale, "notification template created");
    Ok(row)
}

/// Changes the subject or body of one of the company's templates (`notifications:manage`),
/// validated as at creation.
pub async fn update(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    changes: TemplateChanges,
) -> ApiResult<notification_template::Model> {
    manage(state, actor).await?;
    let txn = state.begin_for(actor, Intent::Write).await?;
    let current = txn
        .find::<notification_template::Entity>()
        .filter(notification_template::Column::Id.eq(id))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound("notification template"))?;
    let purpose = purpose(&current.name)?;
    let mut template = template_of(&current)?;
    if let Some(new_subject) = changes.subject {
        template.subject = subject(Some(new_subject));
    }
    if let Some(body) = changes.body {
        template.body = body;
    }
    let template = checked(purpose, template)?;
    let mut row: notification_template::ActiveModel = current.into();
    row.subject = Set(template.subject);
    row.body = Set(template.body);
    row.updated_at = Set(Utc::now());
    let row = row.update(&txn).await?;
    txn.commit().await?;
    tracing::info!(template = %row.id, company = %row.company_id, "notification template updated");
    Ok(row)
}

/// Deletes one of the company's templates (`notifications:manage`); the system default applies
/// again.
pub async fn delete(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<bool> {
    manage(state, actor).await?;
    let txn = state.begin_for(actor, Intent::Write).await?;
    let deleted = txn
        .delete::<notification_template::Entity>()
        .filter(notification_template::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(ApiError::NotFound("notification template"));
    }
    txn.commit().await?;
    tracing::info!(template = %id, company = %actor.company_id(), "notification template deleted");
    Ok(true)
}

/// Renders a company's template or a system default with `sample` laid over the purpose's
/// sample data (so a partial sample is enough), in the template's locale and the company's
/// time zone (`notifications:read`).
pub async fn preview(
    state: &AppState,
    actor: &Actor,
    target: PreviewTarget,
    sample: Option<serde_json::Value>,
) -> ApiResult<Rendered> {
    authorize_read(state, actor).await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let company = company_of(&txn).await?;
    let (name, template, locale) = match target {
        PreviewTarget::Company(id) => {
            let row = find(&txn, id)
                .await?
                .ok_or(ApiError::NotFound("notification template"))?;
            (row.name.clone(), template_of(&row)?, locale_of(&row)?)
        }
        PreviewTarget::System(id) => (
            id.purpose.name.to_string(),
            id.template().clone(),
            id.locale,
        ),
    };
    txn.commit().await?;
    let purpose = purpose(&name)?;
    let mut variables = purpose.sample();
    if let Some(sample) = sample {
        if !sample.is_object() {
            return Err(ApiError::validation(
                "sample",
                "the sample is a JSON object of the template's variables",
            ));
        }
        overlay(&mut variables, sample);
    }
    template
        .render(&RenderContext {
            locale,
            timezone: timezone_of(&company),
            variables,
        })
        .map_err(|error| invalid("sample", &error))
}

/// Lays `over` onto `base`: objects merge key by key, anything else replaces.
fn overlay(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) => overlay(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

async fn company_of(txn: &TenantTxn) -> Result<company::Model, DbErr> {
    txn.find_company()
        .one(txn)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the transaction's company".into()))
}

fn timezone_of(company: &company::Model) -> Tz {
    company
        .timezone
        .parse()
        .unwrap_or(chrono_tz::America::Sao_Paulo)
}

fn company_locale(company: &company::Model) -> Locale {
    Locale::parse(&company.locale).unwrap_or(Locale::DEFAULT)
}

/// The template for `name` on `channel`: along `chain`, locale by locale, the company's own
/// template, else the system default. `None` when `name` is no built-in purpose.
pub async fn resolve(
    txn: &TenantTxn,
    name: &str,
    channel: Channel,
    chain: &[Locale],
) -> Result<Option<ResolvedTemplate>, DbErr> {
    let Some(purpose) = Purpose::find(name) else {
        return Ok(None);
    };
    let rows = txn
        .find::<notification_template::Entity>()
        .filter(notification_template::Column::Name.eq(purpose.name))
        .filter(notification_template::Column::Channel.eq(channel.as_str()))
        .filter(
            notification_template::Column::Locale.is_in(chain.iter().map(|locale| locale.as_str())),
        )
        .all(txn)
        .await?;
    for locale in chain {
        if let Some(row) = rows.iter().find(|row| row.locale == locale.as_str()) {
            return Ok(Some(ResolvedTemplate {
                template: template_of(row)?,
                locale: *locale,
                source: TemplateSource::Company(row.id),
            }));
        }
        if let Some(template) = system_default(purpose.name, channel, *locale) {
            return Ok(Some(ResolvedTemplate {
                template: template.clone(),
                locale: *locale,
                source: TemplateSource::System,
            }));
        }
    }
    Ok(None)
}

/// Whether [`render_for`] finds a template for `name` on `channel` for someone who asked for
/// `requested_locale`: `sendNotification` refuses at once what its job could not render.
pub async fn available_for(
    txn: &TenantTxn,
    name: &str,
    channel: Channel,
    requested_locale: Option<Locale>,
) -> Result<bool, DbErr> {
    let company = txn
        .find_company()
        .one(txn)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the transaction's company".to_string()))?;
    let chain = locale_chain(requested_locale, company_locale(&company));
    Ok(resolve(txn, name, channel, &chain).await?.is_some())
}

/// Writes the message for `name` on `channel` to someone who asked for `requested_locale`
/// (their own, when known): the template [`resolve`] finds along requested → company's →
/// pt-BR, rendered with `variables` in that template's locale and the company's time zone.
pub async fn render_for(
    txn: &TenantTxn,
    company: &company::Model,
    name: &str,
    channel: Channel,
    requested_locale: Option<Locale>,
    mut variables: serde_json::Value,
) -> Result<Rendered, RenderError> {
    // Every purpose offers `company.*`: the sender is known, so no caller has to pass it.
    if let Some(object) = variables.as_object_mut() {
        object
            .entry("company")
            .or_insert_with(|| serde_json::json!({ "name": company.name }));
    }
    let chain = locale_chain(requested_locale, company_locale(company));
    let resolved = resolve(txn, name, channel, &chain)
        .await?
        .ok_or_else(|| RenderError::UnknownPurpose(name.to_string()))?;
    let rendered = resolved.template.render(&RenderContext {
        locale: resolved.locale,
        timezone: timezone_of(company),
        variables,
    });
    let outcome = if rendered.is_ok() {
        "rendered"
    } else {
        "failed"
    };
    metrics::counter!(
        "notification_template_renders_total",
        "channel" => channel.as_str(),
        "source" => resolved.source.label(),
        "outcome" => outcome,
    )
    .increment(1);
    rendered.map_err(|error| {
        tracing::warn!(company = %company.id, name, channel = channel.as_str(), %error, "notification template failed to render");
        RenderError::Template(error)
    })
}
