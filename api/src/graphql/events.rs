//! Domain events: the `events` catch-up query and the real-time subscriptions.
//!
//! A subscriber receives only its company's events: every stream filters on the actor's
//! company before anything else, whatever ids the client names. A stream that needs a
//! permission checks it again for every event against the current policies, and records it in
//! the connection's [`SubscriptionPermissions`], which the WebSocket re-checks every few
//! seconds and closes the connection over when it no longer holds.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex, PoisonError},
};

use async_graphql::{Context, ID, Json, Object, Result, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::{
    context::{actor, parse_id, state},
    pagination::{PageInfo, decode_cursor, encode_cursor, page_size},
};
use crate::{
    auth::Actor,
    error::ApiError,
    events::{AggregateType, BusEvent},
    services::{authorize, events as published_events},
    state::AppState,
};

/// A permission as `(resource, action)`.
type Permission = (&'static str, &'static str);

/// The permissions the subscriptions of one connection rely on. The connection puts one in the
/// request data; each subscription records what it needs.
#[derive(Clone, Default)]
pub struct SubscriptionPermissions(Arc<Mutex<BTreeSet<Permission>>>);

impl SubscriptionPermissions {
    fn require(&self, permission: Permission) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(permission);
    }

    /// What the connection's subscriptions need, to check while it lives.
    pub fn required(&self) -> Vec<Permission> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }
}

/// Something that happened in the company, e.g. `order.status_changed`.
#[derive(SimpleObject, Clone)]
pub struct DomainEvent {
    id: ID,
    #[graphql(name = "type")]
    event_type: String,
    /// The order (or other entity) the event is about.
    aggregate_id: ID,
    /// 1, 2, 3… per aggregate: events of one entity arrive in this order.
    sequence: i64,
    occurred_at: DateTime<Utc>,
    /// Event data; carries `schemaVersion`.
    payload: Json<serde_json::Value>,
}

impl From<&BusEvent> for DomainEvent {
    fn from(published: &BusEvent) -> Self {
        Self {
            id: ID(published.event_id.to_string()),
            event_type: published.event_type().to_string(),
            aggregate_id: ID(published.aggregate_id.to_string()),
            sequence: published.sequence,
            occurred_at: published.occurred_at,
            payload: Json(published.payload()),
        }
    }
}

/// A notification to the logged-in person, as the `notifications` subscription pushes it.
#[derive(SimpleObject)]
#[graphql(name = "NotificationPush")]
pub struct PushedNotification {
    /// The in-app notification (`myNotifications`, `markNotificationsRead`); null for notices
    /// that are not kept there (an endpoint disabled).
    notification_id: Option<ID>,
    user_id: ID,
    /// Its category, or the type of the event it is about.
    kind: String,
    message: String,
    /// What it is about: the subject, or the event's payload.
    details: Json<serde_json::Value>,
    occurred_at: DateTime<Utc>,
}

#[derive(SimpleObject)]
pub struct EventEdge {
    cursor: String,
    node: DomainEvent,
}

#[derive(SimpleObject)]
pub struct EventConnection {
    edges: Vec<EventEdge>,
    page_info: PageInfo,
}

fn position_cursor(position: i64) -> String {
    encode_cursor(&format!("event:{position}"))
}

fn parse_position(cursor: &str) -> Result<i64, ApiError> {
    decode_cursor("after", cursor)?
        .strip_prefix("event:")
        .and_then(|position| position.parse().ok())
        .ok_or_else(|| ApiError::validation("after", "this cursor did not come from this API"))
}

#[derive(Default)]
pub struct EventQuery;

#[Object]
impl EventQuery {
    /// The company's events in publication order (`events:read`). Keep the last `cursor` and
    /// pass it as `after` to receive only what happened since: nothing is ever skipped.
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        types: Option<Vec<String>>,
        first: Option<i32>,
    ) -> Result<EventConnection> {
        let after = after.as_deref().map(parse_position).transpose()?;
        let page = published_events::list(
            state(ctx)?,
            actor(ctx)?,
            after,
            &types.unwrap_or_default(),
            page_size(first),
        )
        .await?;
        let edges: Vec<EventEdge> = page
            .events
            .into_iter()
            .map(|published| EventEdge {
                cursor: position_cursor(published.position),
                node: DomainEvent::from(&published),
            })
            .collect();
        Ok(EventConnection {
            page_info: PageInfo::of(
                edges.iter().map(|edge| &edge.cursor),
                page.has_next_page,
                after.is_some(),
            ),
            edges,
        })
    }
}

/// The company's events as they are published, filtered by `keep`; with a `permission`, only
/// while the actor holds it.
fn company_stream<F>(
    ctx: &Context<'_>,
    actor: &Actor,
    permission: Option<Permission>,
    keep: F,
) -> Result<impl Stream<Item = DomainEvent> + use<F>, ApiError>
where
    F: Fn(&BusEvent) -> bool + Send + 'static,
{
    let state = state(ctx)?.clone();
    if let (Some(permission), Ok(connection)) = (permission, ctx.data::<SubscriptionPermissions>())
    {
        connection.require(permission);
    }
    let company_id = actor.company_id();
    let user_id = actor.user_id();
    let receiver = state.bus.subscribe();
    let viewer = Arc::new((state, actor.clone()));
    Ok(BroadcastStream::new(receiver).filter_map(move |received| {
        let event = match received {
            Ok(event) => Some(event),
            Err(lagged) => {
                tracing::warn!(%lagged, "a subscriber fell behind; it can catch up with `events`");
                None
            }
        };
        let kept = event
            .filter(|event: &Arc<BusEvent>| {
                event.company_id == company_id && event.visible_to(user_id) && keep(event)
            })
            .map(|event| DomainEvent::from(event.as_ref()));
        let viewer = kept.is_some().then(|| viewer.clone());
        async move {
            let (event, viewer) = (kept?, viewer?);
            let (state, actor) = viewer.as_ref();
            still_allowed(state, actor, permission)
                .await
                .then_some(event)
        }
    }))
}

/// Whether the actor holds `permission` now (no permission: always).
async fn still_allowed(state: &AppState, actor: &Actor, permission: Option<Permission>) -> bool {
    match permission {
        Some((resource, action)) => authorize(state, actor, resource, action).await.is_ok(),
        None => true,
    }
}

const ORDERS_READ: Permission = ("orders", "read");
const EVENTS_READ: Permission = ("events", "read");

pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Events of the company's orders (`orders:read`), or of one order.
    async fn order_events(
        &self,
        ctx: &Context<'_>,
        order_id: Option<ID>,
    ) -> Result<impl Stream<Item = DomainEvent> + use<>> {
        let actor = actor(ctx)?;
        authorize(state(ctx)?, actor, ORDERS_READ.0, ORDERS_READ.1).await?;
        let order_id = order_id
            .as_ref()
            .map(|id| parse_id("orderId", id))
            .transpose()?;
        Ok(company_stream(
            ctx,
            actor,
            Some(ORDERS_READ),
            move |published| {
                let about_an_order = match &published.event {
                    Ok(event) => event.event_type().aggregate() == AggregateType::Order,
                    Err(opaque) => opaque.aggregate_type == AggregateType::Order.name(),
                };
                about_an_order && order_id.is_none_or(|order_id| published.aggregate_id == order_id)
            },
        )?)
    }

    /// Every event of the company (`events:read`), optionally of some types only.
    async fn events(
        &self,
        ctx: &Context<'_>,
        types: Option<Vec<String>>,
    ) -> Result<impl Stream<Item = DomainEvent> + use<>> {
        let actor = actor(ctx)?;
        authorize(state(ctx)?, actor, EVENTS_READ.0, EVENTS_READ.1).await?;
        let types = types.unwrap_or_default();
        Ok(company_stream(
            ctx,
            actor,
            Some(EVENTS_READ),
            move |published| {
                types.is_empty() || types.iter().any(|wanted| wanted == published.event_type())
            },
        )?)
    }

    /// Notifications addressed to the logged-in person, as they are created.
    async fn notifications(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = PushedNotification> + use<>> {
        let actor = actor(ctx)?;
        let user_id = actor
            .user_id()
            .ok_or_else(|| ApiError::forbidden("API keys receive no personal notifications"))?;
        let stream = company_stream(ctx, actor, None, move |published| {
            matches!(&published.event,
                Ok(crate::events::DomainEvent::NotificationCreated(notification)) if notification.user_id == user_id)
        })?;
        Ok(stream.filter_map(|event| async move {
            let crate::events::DomainEvent::NotificationCreated(notification) =
                crate::events::DomainEvent::parse(&event.event_type, &event.payload.0).ok()?
            else {
                return None;
            };
            Some(PushedNotification {
                notification_id: notification.notification_id.map(|id| ID(id.to_string())),
                user_id: ID(notification.user_id.to_string()),
                kind: notification.kind,
                message: notification.message,
                details: Json(notification.details),
                occurred_at: event.occurred_at,
            })
        }))
    }
}
