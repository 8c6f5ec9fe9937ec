//! The `notifications.send` job: renders a notification, hands it to the company's provider
//! for its channel (in the app: stores and pushes it), and records the attempt, the
//! notification's new status, its event and the job's end in one transaction.
//!
//! The outcomes are recorded by one recorder per instance, in batches: one transaction per
//! company for every attempt of that company that ended meanwhile, so that the database's
//! commit rate does not cap the sending rate. Until its outcome is committed a job stays
//! leased; a batch that fails is recorded again one outcome per transaction, so that one
//! notification's fault costs no other its record.
//!
//! The job's retries are decided here rather than by the runtime's queue policy, because the
//! schedule is the channel's (`PLATFORM_NOTIFICATION_RETRY_*`) and a permanent refusal must not
//! be tried again at all: a retryable failure ends the attempt with [`Finish::Again`] after the
//! channel's backoff, a permanent one or the last attempt with [`Finish::Dead`] and the
//! notification `FAILED` with the provider's code. The queue's own policy allows the longest
//! channel schedule's attempts and a few spares for the handler's failures (the database);
//! when the handler fails on the queue's last attempt the notification ends `FAILED` with
//! `INTERNAL`, never `QUEUED` behind a dead job.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::{notification, notification_attempt};
use futures_util::StreamExt;
use sea_orm::{ActiveValue::Set, ColumnTrait, QueryFilter, sea_query::Expr};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{
    Status,
    channels::{Configuration, Message as Rendered},
    templates::{self, RenderError},
};
use crate::{
    configuration::NotificationRetry,
    db::tenant::{CompanyId, Intent, TenantTxn},
    domain::Locale,
    events::{DomainEvent, domain::Notification as InAppNotice},
    jobs::{Finish, Job, JobContext, KeyLimit, RetryPolicy, Runtime},
    notifications::{Accepted, Channel, SendError},
    state::AppState,
};

/// Sends one notification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendNotification {
    pub notification_id: Uuid,
}

impl Job for SendNotification {
    const QUEUE: &'static str = "notifications.send";
}

/// The provider name of in-app notifications in the delivery log.
const IN_APP_PROVIDER: &str = "in_app";
/// The provider name of an attempt no provider could take: the channel is not configured.
const NO_PROVIDER: &str = "none";

/// Registers the handler and the per-configuration limits on `runtime`.
pub fn register(runtime: &mut Runtime, state: &AppState) {
    let (recordings, recorded) = mpsc::channel(RECORD_BATCH * 4);
    tokio::spawn(record_outcomes(state.clone(), recorded));
    let sending = Sender {
        state: state.clone(),
        recorder: recordings,
    };
    // The handler's own errors (the database failing) are retried by this policy; provider
    // failures are decided by the channel's schedule in [`write`], within its attempts.
    runtime.handle(
        queue_policy(&state.settings.notifications),
        move |context, job: SendNotification| {
            let sending = sending.clone();
            async move { send(&sending, &context, &job).await }
        },
    );
    // One WhatsApp number is given a few messages at a time: more looks like spam to WhatsApp.
    // The limit holds while the provider has the message, not while its outcome is written,
    // so the bookkeeping of one send overlaps the next ones.
    runtime.limit(
        super::key_prefix(Channel::Whatsapp),
        KeyLimit {
            concurrency: Some(state.settings.notifications.whatsapp_concurrency),
            per_instance: true,
            ..KeyLimit::default()
        },
    );
}

/// What a send job's handler works with: the application, and the recorder of outcomes.
#[derive(Clone)]
struct Sender {
    state: AppState,
    recorder: mpsc::Sender<Recording>,
}

/// One attempt's outcome on its way to the recorder; `answer` ends the job's handler.
struct Recording {
    company: CompanyId,
    context: JobContext,
    outcome: Outcome,
    answer: oneshot::Sender<anyhow::Result<()>>,
}

/// Most outcomes recorded in one round of the recorder.
const RECORD_BATCH: usize = 128;

/// Attempts the handler's own failures (the database) and lost leases may take beyond the
/// longest channel schedule, so that they do not cut the provider's attempts short.
const SPARE_ATTEMPTS: u32 = 3;

/// The send job's queue policy: attempts enough for the longest channel schedule and the
/// spares; its waits follow the handler's own failures. On its last attempt [`write`] retries
/// nothing and [`send`] fails the notification, since the runtime runs no further attempt.
fn queue_policy(settings: &crate::configuration::NotificationSettings) -> RetryPolicy {
    let longest = [
        settings.email_retry,
        settings.whatsapp_retry,
        settings.sms_retry,
    ]
    .iter()
    .map(|retry| retry.max_attempts)
    .max()
    .unwrap_or(1);
    RetryPolicy {
        max_attempts: longest + SPARE_ATTEMPTS,
        ..RetryPolicy::default()
    }
}

/// Whether `context` runs the queue's last attempt: no retry follows, whatever the channel's
/// schedule would allow.
fn last_attempt(state: &AppState, context: &JobContext) -> bool {
    context.attempt >= queue_policy(&state.settings.notifications).max_attempts
}

async fn send(
    sending: &Sender,
    context: &JobContext,
    job: &SendNotification,
) -> anyhow::Result<()> {
    let state = &sending.state;
    let company = CompanyId::from_row(
        context
            .company_id
            .context("a notifications.send job without a company")?,
    );
    let error = match attempt(sending, company, context, job).await {
        Err(error) if last_attempt(state, context) => error,
        attempted => return attempted,
    };
    // The runtime would end the job dead and leave the notification queued behind it.
    if let Err(giving_up) = give_up(state, company, context, job).await {
        tracing::error!(
            notification = %job.notification_id,
            error = ?giving_up,
            "a notification whose last attempt failed could not be marked failed"
        );
    }
    Err(error)
}

/// The last attempt's handler failed: the notification ends `FAILED` (`INTERNAL`, the cause
/// is the job's error and the log's, not the company's to read) with its
/// `notification.failed` event. The job's end is left to the runtime, which writes the error.
async fn give_up(
    state: &AppState,
    company: CompanyId,
    context: &JobContext,
    job: &SendNotification,
) -> anyhow::Result<()> {
    const CODE: &str = "INTERNAL";
    const MESSAGE: &str = "the notification could not be processed";
    let txn = state
        .begin_for_company(company, "notifications.send job", Intent::Write)
        .await?;
    let failed = txn
        .update::<notification::Entity>()
        .col_expr(
            notification::Column::Status,
            Expr::value(Status::Failed.as_str()),
        )
        .col_expr(notification::Column::LastErrorCode, Expr::value(CODE))
        .col_expr(notification::Column::LastError, Expr::value(MESSAGE))
        .col_expr(notification::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(notification::Column::Id.eq(job.notification_id))
        .filter(notification::Column::Status.eq(Status::Queued.as_str()))
        .exec(&txn)
        .await?;
    if failed.rows_affected == 1
        && let Some(found) = find(&txn, job.notification_id).await?
    {
        txn.record(DomainEvent::NotificationFailed(super::event_state(
            &found,
            Status::Failed,
            found.provider.clone(),
            found.provider_message_id.clone(),
            Some((CODE.to_string(), MESSAGE.to_string())),
        )))
        .await?;
    }
    txn.commit().await?;
    tracing::warn!(
        notification = %job.notification_id,
        attempt = context.attempt,
        "notification failed: its last attempt could not be processed"
    );
    Ok(())
}

/// One attempt: reads the notification, hands it over and has the recorder [`write`] the
/// outcome.
async fn attempt(
    sending: &Sender,
    company: CompanyId,
    context: &JobContext,
    job: &SendNotification,
) -> anyhow::Result<()> {
    let state = &sending.state;
    let txn = state
        .begin_for_company(company, "notifications.send job", Intent::Read)
        .await?;
    let Some(found) = find(&txn, job.notification_id).await? else {
        // Deleted with its company: nothing to send.
        return Ok(());
    };
    if found.status != Status::Queued.as_str() {
        // Cancelled, or an earlier run recorded its outcome although the job's end was lost.
        return Ok(());
    }
    let channel =
        Channel::parse(&found.channel).context("a notification with an unknown channel")?;
    let configuration = match channel {
        Channel::InApp => None,
        _ => super::channels::configuration(state, &txn, channel).await?,
    };
    let rendered = render(&txn, &found, channel).await?;
    txn.commit().await?;

    let started_at = Utc::now();
    let provider = provider_name(channel, configuration.as_ref());
    let outcome = match &rendered {
        Ok(rendered) => hand_over(state, channel, configuration.as_ref(), &found, rendered).await,
        Err(refused) => Err(refused.clone()),
    };
    context.release_key();
    let finished_at = Utc::now();
    let (answer, answered) = oneshot::channel();
    sending
        .recorder
        .send(Recording {
            company,
            context: context.clone(),
            outcome: Outcome {
                notification: found,
                channel,
                provider,
                rendered: rendered.ok(),
                result: outcome,
                started_at,
                finished_at,
            },
            answer,
        })
        .await
        .map_err(|_| anyhow::anyhow!("the notification recorder stopped"))?;
    answered
        .await
        .map_err(|_| anyhow::anyhow!("the notification's outcome was never recorded"))?
}

async fn find(txn: &TenantTxn, id: Uuid) -> Result<Option<notification::Model>, sea_orm::DbErr> {
    txn.find::<notification::Entity>()
        .filter(notification::Column::Id.eq(id))
        .one(txn)
        .await
}

/// The notification's text: as the caller wrote it, or its template rendered in the
/// notification's locale (or the company's). A template that cannot render is a permanent
/// failure: the same variables fail again; a database error fails the attempt, to retry.
async fn render(
    txn: &TenantTxn,
    found: &notification::Model,
    channel: Channel,
) -> anyhow::Result<Result<Rendered, SendError>> {
    let template = match (&found.body, &found.template) {
        (Some(body), _) => {
            return Ok(Ok(Rendered {
                subject: found.subject.clone(),
                body: body.clone(),
                html: None,
                unsubscribe: None,
                template: None,
            }));
        }
        (None, Some(template)) => template,
        (None, None) => {
            return Ok(Err(SendError::permanent(
                "EMPTY",
                "the notification has no text",
            )));
        }
    };
    let company = txn
        .find_company()
        .one(txn)
        .await?
        .context("the notification's company is gone")?;
    let locale = found
        .locale
        .as_deref()
        .and_then(|locale| Locale::parse(locale).ok());
    let variables: serde_json::Value = serde_json::from_str(&found.variables).unwrap_or_default();
    let unsubscribe = variables["notification"]["unsubscribe_url"]
        .as_str()
        .and_then(|link| url::Url::parse(link).ok());
    Ok(
        match templates::render_for(txn, &company, template, channel, locale, variables.clone())
            .await
        {
            Ok(rendered) => Ok(Rendered {
                subject: rendered.subject,
                body: rendered.text,
                html: rendered.html,
                unsubscribe,
                template: Some((template.clone(), variables)),
            }),
            Err(RenderError::Database(error)) => return Err(error.into()),
            Err(RenderError::UnknownPurpose(name)) => Err(SendError::permanent(
                "TEMPLATE_NOT_FOUND",
                format!("no template `{name}` for {}", channel.as_str()),
            )),
            Err(error @ RenderError::Template(_)) => {
                Err(SendError::permanent("TEMPLATE_FAILED", error.to_string()))
            }
        },
    )
}

fn provider_name(channel: Channel, configuration: Option<&Configuration>) -> &'static str {
    match (channel, configuration) {
        (Channel::InApp, _) => IN_APP_PROVIDER,
        (_, Some(configuration)) => configuration.provider.as_str(),
        (_, None) => NO_PROVIDER,
    }
}

/// Gives the message to the channel's provider. In the app there is none: the notification
/// is stored already and [`record`] pushes it with its status.
async fn hand_over(
    state: &AppState,
    channel: Channel,
    configuration: Option<&Configuration>,
    found: &notification::Model,
    rendered: &Rendered,
) -> Result<Accepted, SendError> {
    if channel == Channel::InApp {
        return Ok(Accepted {
            provider: IN_APP_PROVIDER,
            provider_message_id: found.id.to_string(),
        });
    }
    let address = found
        .address
        .as_deref()
        .ok_or_else(|| SendError::permanent("NO_ADDRESS", "the notification has no address"))?;
    let Some(configuration) = configuration else {
        return Err(SendError::permanent(
            "CHANNEL_NOT_CONFIGURED",
            format!(
                "the company has no {} provider configured",
                channel.as_str()
            ),
        ));
    };
    super::channels::send(state, configuration, address, rendered).await
}

/// What one attempt came to.
struct Outcome {
    notification: notification::Model,
    channel: Channel,
    provider: &'static str,
    /// The text given to the provider, stored on the notification when a template wrote it.
    rendered: Option<Rendered>,
    result: Result<Accepted, SendError>,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
}

/// Records outcomes as they come, in batches, until every handler is gone.
async fn record_outcomes(state: AppState, mut recordings: mpsc::Receiver<Recording>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while recordings.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let mut by_company: BTreeMap<Uuid, Vec<Recording>> = BTreeMap::new();
        for recording in batch.drain(..) {
            by_company
                .entry(recording.company.get())
                .or_default()
                .push(recording);
        }
        // Each company's transaction on its own; side by side where the database allows.
        futures_util::stream::iter(
            by_company
                .into_values()
                .map(|recordings| record_for_company(&state, recordings)),
        )
        .buffer_unordered(crate::db::concurrent_writes(&state.db))
        .collect::<()>()
        .await;
    }
}

/// Records one company's outcomes in one transaction; when it fails, each in its own, so that
/// the outcome at fault fails its job alone (which then runs again, as after a lost lease).
async fn record_for_company(state: &AppState, recordings: Vec<Recording>) {
    if recordings.len() > 1 {
        match record(state, &recordings).await {
            Ok(finishes) => return answer(recordings, finishes),
            Err(error) => tracing::warn!(
                error = ?error,
                outcomes = recordings.len(),
                "recording a batch of notification outcomes failed; recording each alone"
            ),
        }
    }
    for recording in recordings {
        let recordings = [recording];
        match record(state, &recordings).await {
            Ok(finishes) => answer(recordings, finishes),
            Err(error) => {
                let [recording] = recordings;
                let _ = recording.answer.send(Err(error));
            }
        }
    }
}

/// Ends the handlers of `recordings`, whose outcomes committed with `finishes`.
fn answer(recordings: impl IntoIterator<Item = Recording>, finishes: Vec<Option<Finish>>) {
    for (recording, finish) in recordings.into_iter().zip(finishes) {
        if let Some(finish) = finish {
            recording.context.finished(&finish);
            observe(&recording.outcome, &finish);
        }
        let _ = recording.answer.send(Ok(()));
    }
}

/// Writes `recordings`, outcomes of one company, and their jobs' ends in one transaction;
/// returns each job's end (`None`: cancelled meanwhile, the runtime ends the job).
async fn record(state: &AppState, recordings: &[Recording]) -> anyhow::Result<Vec<Option<Finish>>> {
    let Some(company) = recordings.first().map(|recording| recording.company) else {
        return Ok(Vec::new());
    };
    let txn = state
        .begin_for_company(company, "notifications.send job", Intent::Write)
        .await?;
    let mut finishes = Vec::with_capacity(recordings.len());
    for recording in recordings {
        finishes.push(write(state, &txn, &recording.context, &recording.outcome).await?);
    }
    let ends: Vec<(&JobContext, Finish)> = recordings
        .iter()
        .zip(&finishes)
        .filter_map(|(recording, finish)| Some((&recording.context, finish.clone()?)))
        .collect();
    state.jobs.finish_within(&txn, &ends).await?;
    txn.commit().await?;
    Ok(finishes)
}

/// Writes the attempt, the notification's status and its event on `txn`; returns how the
/// job ends, or `None` when the notification was cancelled while the provider had it.
async fn write(
    state: &AppState,
    txn: &TenantTxn,
    context: &JobContext,
    outcome: &Outcome,
) -> anyhow::Result<Option<Finish>> {
    let company = txn.company();
    let found = &outcome.notification;
    let attempt = found.attempt_count + 1;
    let channel = outcome.channel;
    let (provider_message_id, error) = match &outcome.result {
        Ok(accepted) => (Some(accepted.provider_message_id.clone()), None),
        Err(error) => (None, Some(error)),
    };
    let provider = match &outcome.result {
        Ok(accepted) => accepted.provider,
        Err(_) => outcome.provider,
    };
    let retry_at = error
        .filter(|error| error.is_retryable() && !last_attempt(state, context))
        .and_then(|_| retry_policy(&state.settings.notifications, channel))
        .and_then(|policy| policy.delay_after(u32::try_from(attempt).unwrap_or(u32::MAX)))
        .map(|delay| state.jobs.now() + delay);
    txn.insert(notification_attempt::ActiveModel {
        id: Set(Uuid::now_v7()),
        company_id: Set(company.get()),
        notification_id: Set(found.id),
        attempt: Set(attempt),
        provider: Set(provider.to_string()),
        provider_message_id: Set(provider_message_id.clone()),
        outcome: Set(match error {
            None => "SENT",
            Some(error) if error.is_retryable() => "RETRYABLE",
            Some(_) => "PERMANENT",
        }
        .to_string()),
        error_code: Set(error.map(|error| error.code().to_string())),
        error_message: Set(error.map(error_message)),
        started_at: Set(outcome.started_at),
        finished_at: Set(outcome.finished_at),
    })
    .await?;

    let status = match (error, retry_at) {
        (None, _) => Status::Sent,
        (Some(_), Some(_)) => Status::Queued,
        (Some(_), None) => Status::Failed,
    };
    let mut update = txn
        .update::<notification::Entity>()
        .col_expr(notification::Column::Status, Expr::value(status.as_str()))
        .col_expr(notification::Column::AttemptCount, Expr::value(attempt))
        .col_expr(notification::Column::Provider, Expr::value(provider))
        .col_expr(
            notification::Column::UpdatedAt,
            Expr::value(outcome.finished_at),
        );
    if let Some(rendered) = &outcome.rendered {
        update = update
            .col_expr(
                notification::Column::Subject,
                Expr::value(rendered.subject.clone()),
            )
            .col_expr(
                notification::Column::Body,
                Expr::value(rendered.body.clone()),
            );
    }
    update = match error {
        None => update
            .col_expr(
                notification::Column::ProviderMessageId,
                Expr::value(provider_message_id.clone()),
            )
            .col_expr(
                notification::Column::SentAt,
                Expr::value(outcome.finished_at),
            )
            .col_expr(
                notification::Column::LastErrorCode,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                notification::Column::LastError,
                Expr::value(Option::<String>::None),
            ),
        Some(error) => update
            .col_expr(
                notification::Column::LastErrorCode,
                Expr::value(error.code().to_string()),
            )
            .col_expr(
                notification::Column::LastError,
                Expr::value(error_message(error)),
            ),
    };
    let updated = update
        .filter(notification::Column::Id.eq(found.id))
        .filter(notification::Column::Status.eq(Status::Queued.as_str()))
        .exec(txn)
        .await?;
    if updated.rows_affected == 0 {
        // Cancelled while the provider had it: the provider's answer is in the log, the
        // cancellation stands.
        return Ok(None);
    }

    let state_of = |status: Status| {
        super::event_state(
            found,
            status,
            Some(provider.to_string()),
            provider_message_id.clone(),
            error.map(|error| (error.code().to_string(), error_message(error))),
        )
    };
    match status {
        Status::Sent => {
            if let (Channel::InApp, Some(user_id), Some(rendered)) =
                (channel, found.user_id, &outcome.rendered)
            {
                txn.record(DomainEvent::NotificationCreated(InAppNotice {
                    notification_id: Some(found.id),
                    user_id,
                    kind: found.category.clone(),
                    message: rendered.body.clone(),
                    details: json!({ "subject": rendered.subject }),
                }))
                .await?;
            }
            txn.record(DomainEvent::NotificationSent(state_of(Status::Sent)))
                .await?;
            let sent = notification::Model {
                status: Status::Sent.as_str().to_string(),
                provider: Some(provider.to_string()),
                provider_message_id: provider_message_id.clone(),
                ..found.clone()
            };
            super::callbacks::apply_early(txn, &sent).await?;
        }
        Status::Failed => {
            txn.record(DomainEvent::NotificationFailed(state_of(Status::Failed)))
                .await?;
        }
        _ => {}
    }
    Ok(Some(match (error, retry_at) {
        (None, _) => Finish::Done,
        (Some(error), Some(at)) => Finish::Again {
            at,
            error: Some(error.to_string()),
        },
        (Some(error), None) => Finish::Dead(error.to_string()),
    }))
}

/// The metrics and the log line of a recorded outcome.
fn observe(outcome: &Outcome, finish: &Finish) {
    let found = &outcome.notification;
    let attempt = found.attempt_count + 1;
    let channel = outcome.channel;
    let error = outcome.result.as_ref().err();
    let provider = match &outcome.result {
        Ok(accepted) => accepted.provider,
        Err(_) => outcome.provider,
    };
    let labels = [
        ("channel", channel.as_str().to_string()),
        ("provider", provider.to_string()),
    ];
    match error {
        None => {
            metrics::counter!("notifications_sent_total", &labels).increment(1);
            let waited = (outcome.finished_at - found.created_at)
                .to_std()
                .unwrap_or_default();
            metrics::histogram!("notification_queue_seconds", "channel" => channel.as_str())
                .record(waited.as_secs_f64());
            tracing::info!(notification = %found.id, channel = channel.as_str(), provider, attempt, "notification sent");
        }
        Some(error) => {
            let kind = if error.is_retryable() {
                "retryable"
            } else {
                "permanent"
            };
            let mut labels = labels.to_vec();
            labels.push(("kind", kind.to_string()));
            metrics::counter!("notifications_failed_total", &labels).increment(1);
            tracing::warn!(
                notification = %found.id,
                channel = channel.as_str(),
                provider,
                attempt,
                code = error.code(),
                retry = matches!(finish, Finish::Again { .. }),
                "notification not sent"
            );
        }
    }
}

fn error_message(error: &SendError) -> String {
    match error {
        SendError::Retryable { message, .. } | SendError::Permanent { message, .. } => {
            message.clone()
        }
    }
}

/// The channel's retry schedule; in the app nothing is handed over, so nothing is retried.
fn retry_policy(
    settings: &crate::configuration::NotificationSettings,
    channel: Channel,
) -> Option<RetryPolicy> {
    let retry: &NotificationRetry = match channel {
        Channel::Email => &settings.email_retry,
        Channel::Whatsapp => &settings.whatsapp_retry,
        Channel::Sms => &settings.sms_retry,
        Channel::InApp => return None,
    };
    Some(RetryPolicy {
        max_attempts: retry.max_attempts,
        first_delay: retry.first_delay,
        max_delay: retry.max_delay,
        ..RetryPolicy::default()
    })
}
