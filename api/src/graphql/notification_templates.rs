//! Notification templates: a company's own wording of the built-in notifications, the system
//! defaults they replace, the variables each purpose offers, and previews.
//!
//! A system default's id is `system:<purpose>:<CHANNEL>:<locale>` (e.g.
//! `system:order_ready:WHATSAPP:pt-BR`), the same for every company; `previewTemplate` takes it
//! as well as a company template's id, so a default can be tried before it is copied and changed.

use async_graphql::{Context, Enum, ID, InputObject, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::notification_template;

use super::{
    context::{actor, parse_id, state},
    identity::field,
    pagination::{PageInfo, id_cursor, id_page, page_size, parse_id_cursor},
};
use crate::{
    domain::Locale,
    notifications::{
        Channel,
        templates::{PURPOSES, Purpose, Rendered, Variable, VariableKind},
    },
    services::notifications::templates::{
        self, NewTemplate, PreviewTarget, SystemTemplateId, TemplateChanges, TemplateFilter,
    },
};

/// A template a notification is written with: the company's own, or a system default.
pub enum NotificationTemplate {
    Company(notification_template::Model),
    System(SystemTemplateId),
}

#[Object]
impl NotificationTemplate {
    /// A company template's id, or `system:<purpose>:<CHANNEL>:<locale>` for a default.
    async fn id(&self) -> ID {
        match self {
            Self::Company(row) => ID(row.id.to_string()),
            Self::System(id) => ID(id.to_string()),
        }
    }
    /// The purpose, e.g. `order_ready`.
    async fn name(&self) -> &str {
        match self {
            Self::Company(row) => &row.name,
            Self::System(id) => id.purpose.name,
        }
    }
    async fn channel(&self) -> Channel {
        match self {
            Self::Company(row) => Channel::parse(&row.channel).unwrap_or(Channel::InApp),
            Self::System(id) => id.channel,
        }
    }
    /// `pt-BR`, `en-US` or `es-ES`.
    async fn locale(&self) -> &str {
        match self {
            Self::Company(row) => &row.locale,
            Self::System(id) => id.locale.as_str(),
        }
    }
    /// The email subject or in-app title; none for WhatsApp and SMS.
    async fn subject(&self) -> Option<&str> {
        match self {
            Self::Company(row) => row.subject.as_deref(),
            Self::System(id) => id.template().subject.as_deref(),
        }
    }
    /// minijinja source; HTML for email (values are escaped), plain text otherwise.
    async fn body(&self) -> &str {
        match self {
            Self::Company(row) => &row.body,
            Self::System(id) => &id.template().body,
        }
    }
    /// A platform default rather than the company's own.
    async fn system(&self) -> bool {
        matches!(self, Self::System(_))
    }
    /// Cursor of a company template in `notificationTemplates(after:)`.
    async fn cursor(&self) -> Option<String> {
        match self {
            Self::Company(row) => Some(id_cursor(row.id)),
            Self::System(_) => None,
        }
    }
    async fn created_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Company(row) => Some(row.created_at),
            Self::System(_) => None,
        }
    }
    async fn updated_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Company(row) => Some(row.updated_at),
            Self::System(_) => None,
        }
    }
}

#[derive(SimpleObject)]
pub struct NotificationTemplateEdge {
    cursor: String,
    node: NotificationTemplate,
}

#[derive(SimpleObject)]
pub struct NotificationTemplateConnection {
    edges: Vec<NotificationTemplateEdge>,
    page_info: PageInfo,
}

/// What a template variable holds and how to write it.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "VariableKind")]
pub enum NotificationVariableKind {
    Text,
    /// `{"minor": 1234, "currency": "BRL"}`: write it with `| money`.
    Money,
    /// An RFC 3339 instant: write it with `| datetime` (or `| date`), in the company's time zone.
    DateTime,
    /// `YYYY-MM-DD`: write it with `| date`.
    Date,
    Url,
}

/// A variable a template of a purpose may read.
pub struct NotificationVariable(&'static Variable);

#[Object]
impl NotificationVariable {
    /// The dotted path, e.g. `order.total`.
    async fn path(&self) -> &str {
        self.0.path
    }
    async fn kind(&self) -> NotificationVariableKind {
        self.0.kind.into()
    }
    /// The value previews use unless the sample gives another.
    async fn sample(&self) -> &str {
        self.0.sample
    }
}

/// A built-in purpose a template can be written for, with its variables.
pub struct NotificationPurpose(&'static Purpose);

#[Object]
impl NotificationPurpose {
    async fn name(&self) -> &str {
        self.0.name
    }
    async fn variables(&self) -> Vec<NotificationVariable> {
        self.0.variables.iter().map(NotificationVariable).collect()
    }
}

/// A rendered template.
#[derive(SimpleObject)]
pub struct NotificationTemplatePreview {
    subject: Option<String>,
    /// The message as sent on WhatsApp, SMS or in-app; an email's plain-text part.
    text: String,
    /// An email's HTML part.
    html: Option<String>,
}

impl From<Rendered> for NotificationTemplatePreview {
    fn from(rendered: Rendered) -> Self {
        Self {
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
        }
    }
}

fn filter(channel: Option<Channel>, name: Option<String>) -> TemplateFilter {
    TemplateFilter { channel, name }
}

#[derive(Default)]
pub struct NotificationTemplateQuery;

#[Object]
impl NotificationTemplateQuery {
    /// The company's own templates in creation order, optionally of one channel or purpose
    /// (`notifications:read`).
    async fn notification_templates(
        &self,
        ctx: &Context<'_>,
        channel: Option<Channel>,
        name: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<NotificationTemplateConnection> {
        let after = parse_id_cursor("after", after.as_deref())?;
        let size = page_size(first);
        let rows = templates::list(
            state(ctx)?,
            actor(ctx)?,
            filter(channel, name),
            size + 1,
            after,
        )
        .await?;
        let (rows, page_info) = id_page(rows, size, after.is_some(), |row| row.id);
        Ok(NotificationTemplateConnection {
            edges: rows
                .into_iter()
                .map(|(cursor, row)| NotificationTemplateEdge {
                    cursor,
                    node: NotificationTemplate::Company(row),
                })
                .collect(),
            page_info,
        })
    }

    /// One of the company's templates, or a system default by its `system:…` id; null for any
    /// other id (`notifications:read`).
    async fn notification_template(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<Option<NotificationTemplate>> {
        match SystemTemplateId::parse(id.as_str()) {
            Some(system) => {
                templates::authorize_read(state(ctx)?, actor(ctx)?).await?;
                Ok(Some(NotificationTemplate::System(system)))
            }
            None => {
                let id = parse_id("id", &id)?;
                Ok(templates::get(state(ctx)?, actor(ctx)?, id)
                    .await?
                    .map(NotificationTemplate::Company))
            }
        }
    }

    /// The platform's default templates, optionally of one channel or purpose
    /// (`notifications:read`).
    async fn notification_template_defaults(
        &self,
        ctx: &Context<'_>,
        channel: Option<Channel>,
        name: Option<String>,
    ) -> Result<Vec<NotificationTemplate>> {
        templates::authorize_read(state(ctx)?, actor(ctx)?).await?;
        Ok(templates::system_defaults(&filter(channel, name))
            .into_iter()
            .map(NotificationTemplate::System)
            .collect())
    }

    /// The purposes templates are written for, with the variables each may read.
    async fn notification_purposes(&self, ctx: &Context<'_>) -> Result<Vec<NotificationPurpose>> {
        templates::authorize_read(state(ctx)?, actor(ctx)?).await?;
        Ok(PURPOSES.iter().map(NotificationPurpose).collect())
    }

    /// Renders a company template or a system default (`system:…` id) with `sample` laid over
    /// the purpose's sample values, in the template's locale and the company's time zone
    /// (`notifications:read`). A render failure is `VALIDATION` with `extensions.line`.
    async fn preview_template(
        &self,
        ctx: &Context<'_>,
        id: ID,
        sample: Option<Json<serde_json::Value>>,
    ) -> Result<NotificationTemplatePreview> {
        let target = match SystemTemplateId::parse(id.as_str()) {
            Some(system) => PreviewTarget::System(system),
            None => PreviewTarget::Company(parse_id("id", &id)?),
        };
        let rendered = templates::preview(
            state(ctx)?,
            actor(ctx)?,
            target,
            sample.map(|Json(sample)| sample),
        )
        .await?;
        Ok(rendered.into())
    }
}

#[derive(InputObject)]
pub struct CreateNotificationTemplateInput {
    /// The purpose, e.g. `order_ready` (see `notificationPurposes`).
    name: String,
    channel: Channel,
    /// `pt-BR`, `en-US` or `es-ES`.
    locale: String,
    /// Required for email (one line of at most 200 characters once rendered); an optional title
    /// in-app; none for WhatsApp and SMS.
    subject: Option<String>,
    body: String,
}

/// Changes to a template; omitted fields stay as they are, an empty subject removes it.
#[derive(InputObject)]
pub struct UpdateNotificationTemplateInput {
    subject: Option<String>,
    body: Option<String>,
}

#[derive(Default)]
pub struct NotificationTemplateMutation;

#[Object]
impl NotificationTemplateMutation {
    /// Saves the company's template for a purpose, channel and locale (`notifications:manage`).
    /// A syntax error or a variable the purpose does not offer is `VALIDATION` with
    /// `extensions.field` (`input.body`, `input.subject`) and `extensions.line`; a second
    /// template for the same purpose, channel and locale is `CONFLICT`.
    async fn create_notification_template(
        &self,
        ctx: &Context<'_>,
        input: CreateNotificationTemplateInput,
    ) -> Result<NotificationTemplate> {
        let new = NewTemplate {
            name: input.name,
            channel: input.channel,
            locale: Locale::parse(&input.locale).map_err(field("input.locale"))?,
            subject: input.subject,
            body: input.body,
        };
        Ok(NotificationTemplate::Company(
            templates::create(state(ctx)?, actor(ctx)?, new).await?,
        ))
    }

    /// Changes a template's subject or body, validated as at creation (`notifications:manage`).
    async fn update_notification_template(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateNotificationTemplateInput,
    ) -> Result<NotificationTemplate> {
        let id = parse_id("id", &id)?;
        let changes = TemplateChanges {
            subject: input.subject,
            body: input.body,
        };
        Ok(NotificationTemplate::Company(
            templates::update(state(ctx)?, actor(ctx)?, id, changes).await?,
        ))
    }

    /// Deletes a template; the system default applies again (`notifications:manage`).
    async fn delete_notification_template(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let id = parse_id("id", &id)?;
        Ok(templates::delete(state(ctx)?, actor(ctx)?, id).await?)
    }
}
