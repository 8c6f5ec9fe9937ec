//! A company's channel configurations: which provider carries its email, WhatsApp and SMS,
//! with which settings, and its credentials sealed with [`Purpose::NotificationCredential`]
//! (written, never read back out).

use std::time::Duration;

use chrono::Utc;
use entity::notification_channel;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, QueryFilter, QueryOrder};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    auth::Actor,
    crypto::Purpose,
    db::tenant::{Intent, TenantTxn},
    domain::{Currency, Email, money::Money, phone::Phone},
    error::{ApiError, ApiResult},
    notifications::{
        Accepted, Channel, SendError,
        email::{EmailMessage, SmtpMailer, SmtpSettings},
        evolution::{EvolutionClient, EvolutionConfig, TextOptions},
        twilio::{TwilioClient, TwilioConfig, TwilioSender},
        whatsapp::{CloudTemplate, ConnectionState, WhatsappProvider},
        whatsapp_cloud::{CloudClient, CloudConfig},
    },
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
    /// The company sending with it.
    pub company_id: Uuid,
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
            company_id: txn.company().get(),
            provider,
            settings: serde_json::from_str(&row.settings)?,
            credentials,
        }));
    }
    let defaults = &state.settings.notifications;
    Ok(match (channel, &defaults.smtp_url, &defaults.smtp_from) {
        (Channel::Email, Some(url), Some(from)) => Some(Configuration {
            id: None,
            company_id: txn.company().get(),
            provider: ProviderKind::Smtp,
            settings: sender_settings(from),
            credentials: serde_json::json!({ "url": url.expose() }),
        }),
        _ => None,
    })
}

/// A configuration's setting or credential as text; `""` when absent (each client refuses
/// what it cannot use, with the reason).
fn field<'a>(object: &'a Value, name: &str) -> &'a str {
    object.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// The WhatsApp client of `configuration`.
fn whatsapp(
    state: &AppState,
    configuration: &Configuration,
) -> Result<Box<dyn WhatsappProvider>, SendError> {
    let misconfigured = |message: String| SendError::permanent("CHANNEL_MISCONFIGURED", message);
    match configuration.provider {
        ProviderKind::Evolution => {
            let client = EvolutionClient::new(
                state.notification_http.clone(),
                &EvolutionConfig {
                    base_url: field(&configuration.settings, "baseUrl").to_string(),
                    instance: field(&configuration.settings, "instance").to_string(),
                    api_key: field(&configuration.credentials, "apiKey").to_string(),
                },
            )
            .map_err(misconfigured)?
            .with_options(
                text_options(&configuration.settings, provider_timeout(state))
                    .map_err(misconfigured)?,
            );
            Ok(Box::new(client))
        }
        ProviderKind::WhatsappCloud => {
            let client = CloudClient::new(
                state.notification_http.clone(),
                &CloudConfig {
                    base_url: field(&configuration.settings, "baseUrl").to_string(),
                    version: field(&configuration.settings, "version").to_string(),
                    phone_number_id: field(&configuration.settings, "phoneNumberId").to_string(),
                    access_token: field(&configuration.credentials, "accessToken").to_string(),
                },
            )
            .map_err(misconfigured)?;
            Ok(Box::new(client))
        }
        other => Err(unavailable(other)),
    }
}

/// Longest "typing…" an Evolution configuration may show before each message: it holds one of
/// the number's few slots for as long.
const MAX_TYPING_DELAY_MS: u64 = 5_000;

/// An Evolution configuration's optional `delayMs` (how long the session shows "typing…"
/// first, as a person would) and `linkPreview` (whether a link gets a preview card). Evolution
/// answers the send only after the delay, so it must end well within `provider_timeout`: a
/// send that timed out is retried, and the message would arrive twice.
fn text_options(settings: &Value, provider_timeout: Duration) -> Result<TextOptions, String> {
    let longest = MAX_TYPING_DELAY_MS
        .min(u64::try_from(provider_timeout.as_millis() / 2).unwrap_or(u64::MAX));
    let delay = match settings.get("delayMs") {
        None | Some(Value::Null) => None,
        Some(value) => Some(Duration::from_millis(
            value.as_u64().filter(|ms| *ms <= longest).ok_or_else(|| {
                format!(
                    "`delayMs`: whole milliseconds, at most {longest} (and under half the \
                         provider timeout)"
                )
            })?,
        )),
    };
    let link_preview = match settings.get("linkPreview") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(shown)) => Some(*shown),
        Some(_) => return Err("`linkPreview`: true or false".into()),
    };
    Ok(TextOptions {
        delay,
        link_preview,
    })
}

/// How long a provider is given to answer a request.
fn provider_timeout(state: &AppState) -> Duration {
    Duration::from_secs(state.settings.notifications.provider_timeout_secs)
}

/// The Twilio client of `configuration`: sending from `settings.from` (a phone) or
/// `settings.messagingServiceSid`, with status callbacks to `settings.statusCallback` or else
/// this server's incoming-webhook URL for the company.
fn twilio(state: &AppState, configuration: &Configuration) -> Result<TwilioClient, SendError> {
    let misconfigured = |message: String| SendError::permanent("CHANNEL_MISCONFIGURED", message);
    let settings = &configuration.settings;
    let sender = match (
        field(settings, "from"),
        field(settings, "messagingServiceSid"),
    ) {
        ("", "") => {
            return Err(misconfigured(
                "the Twilio configuration needs `from` or `messagingServiceSid`".into(),
            ));
        }
        ("", service) => TwilioSender::MessagingService(service.to_string()),
        (from, _) => TwilioSender::From(
            Phone::parse(from).map_err(|reason| misconfigured(format!("`from`: {reason}")))?,
        ),
    };
    // By default the statuses come back to this server, when it knows its public address.
    let status_callback = match (
        field(settings, "statusCallback"),
        &state.settings.public_url,
    ) {
        ("", None) => None,
        ("", Some(public_url)) => Some(
            url::Url::parse(&format!(
                "{}/webhooks/in/twilio/{}",
                public_url.trim_end_matches('/'),
                configuration.company_id
            ))
            .map_err(|error| misconfigured(format!("PLATFORM_PUBLIC_URL: {error}")))?,
        ),
        (url, _) => Some(
            url::Url::parse(url)
                .map_err(|error| misconfigured(format!("`statusCallback`: {error}")))?,
        ),
    };
    TwilioClient::new(
        state.notification_http.clone(),
        &TwilioConfig {
            base_url: field(settings, "baseUrl").to_string(),
            account_sid: field(settings, "accountSid").to_string(),
            auth_token: field(&configuration.credentials, "authToken").to_string(),
            sender,
            status_callback,
        },
    )
    .map_err(misconfigured)
}

fn unavailable(provider: ProviderKind) -> SendError {
    SendError::permanent(
        "PROVIDER_UNAVAILABLE",
        format!("this server has no {} client", provider.as_str()),
    )
}

/// What a provider is given to send.
#[derive(Debug, Clone)]
pub struct Message {
    /// Email only.
    pub subject: Option<String>,
    /// The plain text: the whole message on WhatsApp and SMS.
    pub body: String,
    /// The HTML part of an email rendered from a template.
    pub html: Option<String>,
    /// The recipient's unsubscribe link, sent as an email's `List-Unsubscribe` header.
    pub unsubscribe: Option<url::Url>,
    /// The template's purpose and variables, when the message came from one: a WhatsApp Cloud
    /// API configuration may map the purpose to a template Meta approved.
    pub template: Option<(String, Value)>,
}

/// Sends one message to `address` (E.164 phone or email, as the notification stores it)
/// through `configuration`'s provider.
pub async fn send(
    state: &AppState,
    configuration: &Configuration,
    address: &str,
    message: &Message,
) -> Result<Accepted, SendError> {
    let phone =
        || Phone::parse(address).map_err(|reason| SendError::permanent("INVALID_ADDRESS", reason));
    match configuration.provider.channel() {
        Channel::Whatsapp => {
            let client = whatsapp(state, configuration)?;
            match approved_template(configuration, message)? {
                Some(template) => client.send_template(&phone()?, &template).await,
                None => client.send_text(&phone()?, &message.body).await,
            }
        }
        Channel::Sms => {
            twilio(state, configuration)?
                .send_sms(&phone()?, &message.body)
                .await
        }
        Channel::Email => {
            let to = Email::parse(address)
                .map_err(|reason| SendError::permanent("INVALID_ADDRESS", reason))?;
            mailer(state, configuration)
                .await?
                .send(&EmailMessage {
                    to,
                    to_name: None,
                    subject: message.subject.clone().unwrap_or_default(),
                    text: message.body.clone(),
                    html: message.html.clone(),
                    list_unsubscribe: message.unsubscribe.clone(),
                })
                .await
        }
        Channel::InApp => Err(unavailable(configuration.provider)),
    }
}

/// The approved template a WhatsApp Cloud API configuration maps the message's purpose to
/// (`settings.templates.<purpose> = { name, language, parameters: ["customer.name", …] }`),
/// its body parameters read from the message's variables in order. Outside the customer's
/// 24-hour window Meta takes only approved templates; a purpose with no mapping goes as text.
fn approved_template(
    configuration: &Configuration,
    message: &Message,
) -> Result<Option<CloudTemplate>, SendError> {
    let (Some((purpose, variables)), ProviderKind::WhatsappCloud) =
        (&message.template, configuration.provider)
    else {
        return Ok(None);
    };
    let Some(mapping) = configuration.settings["templates"].get(purpose) else {
        return Ok(None);
    };
    let misconfigured = |message: String| SendError::permanent("CHANNEL_MISCONFIGURED", message);
    let name = field(mapping, "name");
    let language = field(mapping, "language");
    if name.is_empty() || language.is_empty() {
        return Err(misconfigured(format!(
            "the Cloud API template of `{purpose}` needs a `name` and a `language`"
        )));
    }
    let locale = language.replace('_', "-");
    let body_parameters = mapping["parameters"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|path| {
            let path = path.as_str().unwrap_or_default();
            let value = path
                .split('.')
                .try_fold(variables, |value, key| value.get(key))
                .ok_or_else(|| {
                    SendError::permanent(
                        "TEMPLATE_PARAMETER_MISSING",
                        format!(
                            "the variables have no `{path}` for the Cloud API template `{name}`"
                        ),
                    )
                })?;
            Ok(parameter_text(value, &locale))
        })
        .collect::<Result<Vec<_>, SendError>>()?;
    Ok(Some(CloudTemplate {
        name: name.to_string(),
        language: language.to_string(),
        body_parameters,
    }))
}

/// A variable as a template parameter's text: money (`{minor, currency}`) in the template's
/// locale, other values as written.
fn parameter_text(value: &Value, locale: &str) -> String {
    let money = value["minor"].as_i64().zip(
        value["currency"]
            .as_str()
            .and_then(|code| Currency::parse(code).ok()),
    );
    match (money, value) {
        (Some((minor, currency)), _) => Money::new(minor, currency).format(locale),
        (None, Value::String(text)) => text.clone(),
        (None, other) => other.to_string(),
    }
}

/// The SMTP mailer of `configuration`: the server at `credentials.url` (it carries the
/// password), sending as `settings.fromName <settings.fromAddress>`. A company's server is
/// reached only at an address the guard allows; the server's default is the operator's choice
/// (a relay on the same host is usual) and is not checked.
async fn mailer(state: &AppState, configuration: &Configuration) -> Result<SmtpMailer, SendError> {
    let misconfigured = |message: String| SendError::permanent("CHANNEL_MISCONFIGURED", message);
    let smtp = SmtpSettings::parse(field(&configuration.credentials, "url"))
        .map_err(|reason| misconfigured(format!("`url`: {reason}")))?;
    let smtp = match configuration.id {
        Some(_) => smtp.guarded(state.notification_http.guard()).await?,
        None => smtp,
    };
    let from = Email::parse(field(&configuration.settings, "fromAddress"))
        .map_err(|reason| misconfigured(format!("`fromAddress`: {reason}")))?;
    let from_name =
        Some(field(&configuration.settings, "fromName")).filter(|name| !name.is_empty());
    SmtpMailer::new(&smtp, from_name, &from, provider_timeout(state)).map_err(misconfigured)
}

/// `Name <address>` or a bare address (`PLATFORM_SMTP_FROM`) as the settings of a channel.
fn sender_settings(from: &str) -> Value {
    match from
        .trim()
        .strip_suffix('>')
        .and_then(|rest| rest.rsplit_once('<'))
    {
        Some((name, address)) => {
            serde_json::json!({ "fromName": name.trim().trim_matches('"'), "fromAddress": address.trim() })
        }
        None => serde_json::json!({ "fromAddress": from.trim() }),
    }
}

/// Whether a WhatsApp configuration's session can send (Evolution's `connectionState`).
pub async fn connection_state(
    state: &AppState,
    configuration: &Configuration,
) -> Result<Option<ConnectionState>, SendError> {
    if configuration.provider != ProviderKind::Evolution {
        return Ok(None);
    }
    whatsapp(state, configuration)?
        .connection_state()
        .await
        .map(Some)
}

/// What `configureNotificationChannel` writes.
pub struct ChannelInput {
    pub channel: Channel,
    pub provider: ProviderKind,
    /// A JSON object of non-secret settings; `baseUrl`, when given, must be an http(s) URL.
    pub settings: Value,
    /// A JSON object of credentials; `None` keeps the stored ones.
    pub credentials: Option<Value>,
    pub enabled: bool,
}

/// Creates or replaces the company's configuration of `input.channel`
/// (`notifications:manage`).
pub async fn configure(
    state: &AppState,
    actor: &Actor,
    input: ChannelInput,
) -> ApiResult<notification_channel::Model> {
    super::manage(state, actor).await?;
    if input.channel == Channel::InApp {
        return Err(ApiError::validation(
            "input.channel",
            "in-app notifications need no provider",
        ));
    }
    if input.provider.channel() != input.channel {
        return Err(ApiError::validation(
            "input.provider",
            format!(
                "{} carries {}, not {}",
                input.provider.as_str(),
                input.provider.channel().as_str(),
                input.channel.as_str()
            ),
        ));
    }
    let settings = valid_settings(state, input.provider, &input.settings).await?;
    let credentials = match input.credentials {
        Some(credentials) => Some(valid_credentials(state, input.provider, &credentials).await?),
        None => None,
    };
    let now = Utc::now();
    // Serialized: two administrators configuring at once both see one row, not two inserts.
    let txn = state.begin_for(actor, Intent::Serialized).await?;
    let company_id = txn.company().get();
    let existing = txn
        .find::<notification_channel::Entity>()
        .filter(notification_channel::Column::Channel.eq(input.channel.as_str()))
        .one(&txn)
        .await?;
    let sealed = credentials.map(|credentials| {
        state
            .secrets
            .seal(company_id, Purpose::NotificationCredential, &credentials)
    });
    let saved = match existing {
        Some(existing) => {
            let keeps_credentials = existing.provider == input.provider.as_str();
            let mut row: notification_channel::ActiveModel = existing.into();
            row.provider = Set(input.provider.as_str().to_string());
            row.settings = Set(settings);
            match sealed {
                Some(sealed) => row.credentials_ciphertext = Set(Some(sealed)),
                // Another provider's credentials mean nothing to this one.
                None if !keeps_credentials => row.credentials_ciphertext = Set(None),
                None => {}
            }
            row.enabled = Set(input.enabled);
            row.updated_at = Set(now);
            row.update(&txn).await?
        }
        None => {
            txn.insert(notification_channel::ActiveModel {
                id: Set(Uuid::now_v7()),
                company_id: Set(company_id),
                channel: Set(input.channel.as_str().to_string()),
                provider: Set(input.provider.as_str().to_string()),
                settings: Set(settings),
                credentials_ciphertext: Set(sealed),
                enabled: Set(input.enabled),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .await?
        }
    };
    txn.commit().await?;
    tracing::info!(
        company = %actor.company(),
        channel = input.channel.as_str(),
        provider = input.provider.as_str(),
        "notification channel configured"
    );
    Ok(saved)
}

/// The settings as stored, when they are a JSON object whose `baseUrl`, if any, is an http(s)
/// URL at an address the guard allows (resolved now; checked again at each send), and whose
/// Evolution options are ones [`text_options`] takes.
async fn valid_settings(
    state: &AppState,
    provider: ProviderKind,
    settings: &Value,
) -> ApiResult<String> {
    let Some(fields) = settings.as_object() else {
        return Err(ApiError::validation(
            "input.settings",
            "the settings must be a JSON object",
        ));
    };
    if provider == ProviderKind::Evolution {
        text_options(settings, provider_timeout(state))
            .map_err(|reason| ApiError::validation("input.settings", reason))?;
    }
    if let Some(base_url) = fields.get("baseUrl") {
        let url = base_url
            .as_str()
            .and_then(|text| url::Url::parse(text).ok())
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .ok_or_else(|| {
                ApiError::validation(
                    "input.settings.baseUrl",
                    "the base URL must be an http(s) URL",
                )
            })?;
        state
            .notification_http
            .guard()
            .check_url(&url)
            .await
            .map_err(|refused| {
                ApiError::validation("input.settings.baseUrl", refused.to_string())
            })?;
    }
    Ok(settings.to_string())
}

/// The credentials as stored, when they are a JSON object; an SMTP server's `url` must parse
/// and be at an address the guard allows (resolved now; checked again at each send).
async fn valid_credentials(
    state: &AppState,
    provider: ProviderKind,
    credentials: &Value,
) -> ApiResult<String> {
    if !credentials.is_object() {
        return Err(ApiError::validation(
            "input.credentials",
            "the credentials must be a JSON object",
        ));
    }
    if provider == ProviderKind::Smtp {
        SmtpSettings::parse(field(credentials, "url"))
            .map_err(|reason| ApiError::validation("input.credentials.url", reason))?
            .guarded(state.notification_http.guard())
            .await
            .map_err(|refused| {
                ApiError::validation("input.credentials.url", refused.to_string())
            })?;
    }
    Ok(credentials.to_string())
}

/// The company's channel configurations (`notifications:manage`).
pub async fn list(state: &AppState, actor: &Actor) -> ApiResult<Vec<notification_channel::Model>> {
    super::manage(state, actor).await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let rows = txn
        .find::<notification_channel::Entity>()
        .order_by_asc(notification_channel::Column::Channel)
        .all(&txn)
        .await?;
    txn.commit().await?;
    Ok(rows)
}

/// What `testNotificationChannel` found.
pub struct ChannelTest {
    pub provider: ProviderKind,
    pub result: Result<Accepted, SendError>,
    /// For Evolution: whether its session can send, or why that could not be read.
    pub connection_state: Result<Option<ConnectionState>, SendError>,
}

/// Sends a test message to `to` through the company's configuration of `channel`
/// (`notifications:manage`); nothing is queued or logged.
pub async fn test(
    state: &AppState,
    actor: &Actor,
    channel: Channel,
    to: &str,
) -> ApiResult<ChannelTest> {
    super::manage(state, actor).await?;
    let address = match channel {
        Channel::Email => crate::domain::Email::parse(to)
            .map_err(|reason| ApiError::validation("to", reason))?
            .to_string(),
        Channel::Whatsapp | Channel::Sms => crate::domain::phone::Phone::parse(to)
            .map_err(|reason| ApiError::validation("to", reason))?
            .to_string(),
        Channel::InApp => {
            return Err(ApiError::validation(
                "channel",
                "in-app notifications need no provider",
            ));
        }
    };
    let txn = state.begin_for(actor, Intent::Read).await?;
    let configuration = configuration(state, &txn, channel)
        .await
        .map_err(ApiError::Internal)?
        .ok_or(ApiError::NotFound("notification channel"))?;
    let company = txn
        .find_company()
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound("company"))?;
    txn.commit().await?;
    let body = format!("{}: a test message from the platform.", company.name);
    let message = Message {
        subject: Some("Test message".into()),
        body,
        html: None,
        unsubscribe: None,
        template: None,
    };
    let result = send(state, &configuration, &address, &message).await;
    Ok(ChannelTest {
        provider: configuration.provider,
        result,
        connection_state: connection_state(state, &configuration).await,
    })
}
