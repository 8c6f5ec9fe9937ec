//! Socket.IO at `/socket.io` (socket.io-client v4). The client sends `{ token }` (an access token
//! or an API key) in the handshake `auth`; anything else refuses the connection. A connected
//! socket is in the rooms `company:{id}` and, for a person, `user:{id}`, and nowhere else: there
//! is no way for a client to join a room.
//!
//! Each kind of emit has its own rule, checked at every emit against the current policies:
//! `order:update` needs `orders:read`, `notification` goes to the person it is addressed to. A
//! key without `orders:read` could receive nothing and is refused. Every few seconds, on the
//! cadence of GraphQL subscriptions, each socket's credentials are checked again; a socket whose
//! credentials no longer authenticate (member removed, token expired, company suspended,
//! password changed, key revoked) or no longer allow it anything is disconnected.
//!
//! Every instance receives every event through the event bus, so each emits to its own sockets.
//! (With the socket.io Redis adapter on top, every instance would also fan out every emit to the
//! others, and each event would arrive once per instance.)

use std::{collections::HashMap, fmt};

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use socketioxide::{
    SocketIo,
    extract::{Data, Extension, SocketRef, State},
    handler::ConnectHandler,
    layer::SocketIoLayer,
};
use uuid::Uuid;

use super::websocket::RECHECK;
use crate::{
    auth::{Actor, Viewer},
    events::{BusEvent, DomainEvent},
    graphql::context::realtime_token,
    services::{
        authorize,
        identity::{self, Credentials},
    },
    state::AppState,
};

/// Sockets re-checked at once; each check may read the database (an API key, a cold cache).
const RECHECKS_AT_ONCE: usize = 16;

#[derive(Deserialize)]
struct Handshake {
    token: String,
}

#[derive(Debug)]
struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who is behind a socket, with the credentials to check again while it lives.
#[derive(Clone)]
struct Session {
    token: String,
    actor: Actor,
}

pub fn company_room(company_id: Uuid) -> String {
    format!("company:{company_id}")
}

pub fn user_room(user_id: Uuid) -> String {
    format!("user:{user_id}")
}

/// Whether `actor` may see the company's orders now.
async fn reads_orders(state: &AppState, actor: &Actor) -> bool {
    authorize(state, actor, "orders", "read").await.is_ok()
}

/// The member `token` authenticates, if a socket of theirs may receive anything: a person
/// always has their own notifications, a key only order updates.
async fn admit(state: &AppState, token: &str) -> Result<Actor, Refused> {
    let actor = match identity::authenticate(state, Credentials::Bearer(token.to_string())).await {
        Ok(Viewer::Member(actor)) => actor,
        Ok(_) => return Err(Refused("Socket.IO is for company members".into())),
        Err(error) => return Err(Refused(error.reported_message())),
    };
    if actor.user_id().is_none() && !reads_orders(state, &actor).await {
        return Err(Refused("missing permission orders:read".into()));
    }
    Ok(actor)
}

async fn authenticate(
    socket: SocketRef,
    Data(handshake): Data<Handshake>,
    State(state): State<AppState>,
) -> Result<(), Refused> {
    let token = realtime_token(&handshake.token).to_string();
    let actor = admit(&state, &token).await?;
    // Joined before the client is told it is connected, so no event can slip between.
    let mut rooms = vec![company_room(actor.company_id())];
    if let Some(user_id) = actor.user_id() {
        rooms.push(user_room(user_id));
    }
    socket.join(rooms);
    socket.extensions.insert(Session { token, actor });
    Ok(())
}

async fn on_connect(socket: SocketRef, Extension(session): Extension<Session>) {
    tracing::debug!(company_id = %session.actor.company_id(), socket = %socket.id, "socket.io client connected");
}

/// The layer to mount on the router, and the handle that emits.
pub fn layer(state: &AppState) -> (SocketIoLayer, SocketIo) {
    let (layer, io) = SocketIo::builder().with_state(state.clone()).build_layer();
    io.ns("/", on_connect.with(authenticate));
    (layer, io)
}

/// Who may receive an emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    /// Members holding `orders:read`.
    OrderReaders,
    /// The one person a notification is addressed to.
    Person(Uuid),
}

impl Audience {
    async fn admits(self, state: &AppState, actor: &Actor) -> bool {
        match self {
            Self::OrderReaders => reads_orders(state, actor).await,
            Self::Person(user_id) => actor.user_id() == Some(user_id),
        }
    }
}

/// What Socket.IO clients receive for a bus event.
struct Emission {
    room: String,
    audience: Audience,
    name: &'static str,
    payload: serde_json::Value,
}

fn emission(published: &BusEvent) -> Option<Emission> {
    let order_update = |number: i64, status: &str, previous: Option<&str>, version: i32| Emission {
        room: company_room(published.company_id),
        audience: Audience::OrderReaders,
        name: "order:update",
        payload: json!({
            "orderId": published.aggregate_id,
            "number": number,
            "status": status,
            "previousStatus": previous,
            "version": version,
            "event": published.event_type(),
            "occurredAt": published.occurred_at,
        }),
    };
    let Ok(event) = &published.event else {
        return None;
    };
    match event {
        DomainEvent::OrderCreated(created) => Some(order_update(
            created.number,
            &created.status,
            None,
            created.version,
        )),
        DomainEvent::OrderStatusChanged(changed) => Some(order_update(
            changed.number,
            &changed.to,
            Some(&changed.from),
            changed.version,
        )),
        DomainEvent::NotificationCreated(notification) => Some(Emission {
            room: user_room(notification.user_id),
            audience: Audience::Person(notification.user_id),
            name: "notification",
            payload: event.payload(),
        }),
        DomainEvent::PaymentCreated(_)
        | DomainEvent::PaymentPaid(_)
        | DomainEvent::PaymentFailed(_)
        | DomainEvent::PaymentRefunded(_)
        | DomainEvent::PaymentCancelled(_)
        | DomainEvent::PaymentExpired(_)
        | DomainEvent::WebhookEndpointDisabled(_)
        | DomainEvent::NotificationSent(_)
        | DomainEvent::NotificationFailed(_)
        | DomainEvent::NotificationDelivered(_) => None,
    }
}

/// Emits to each socket of the room that may receive it now; the verdict is taken once per
/// member, however many sockets they have open.
async fn emit(io: &SocketIo, state: &AppState, emission: &Emission) {
    let mut verdicts: HashMap<String, bool> = HashMap::new();
    for socket in io.to(emission.room.clone()).sockets() {
        let Some(session) = socket.extensions.get::<Session>() else {
            continue;
        };
        let subject = session.actor.subject();
        let admitted = match verdicts.get(&subject) {
            Some(admitted) => *admitted,
            None => {
                let admitted = emission.audience.admits(state, &session.actor).await;
                verdicts.insert(subject, admitted);
                admitted
            }
        };
        if !admitted {
            continue;
        }
        if let Err(error) = socket.emit(emission.name, &emission.payload) {
            tracing::warn!(%error, socket = %socket.id, "failed to emit to a socket.io client");
        }
    }
}

/// Checks a socket's credentials again; disconnects it when they no longer admit it.
async fn recheck(state: &AppState, socket: SocketRef) {
    let Some(session) = socket.extensions.get::<Session>() else {
        return;
    };
    match admit(state, &session.token).await {
        Ok(actor) => {
            socket.extensions.insert(Session {
                token: session.token,
                actor,
            });
        }
        Err(refused) => {
            tracing::info!(socket = %socket.id, reason = %refused, "socket.io client disconnected: access ended");
            if let Err(error) = socket.disconnect() {
                tracing::warn!(%error, "failed to disconnect a socket.io client");
            }
        }
    }
}

/// Re-checks every socket of this instance on the cadence of GraphQL subscriptions.
async fn recheck_sockets(io: &SocketIo, state: &AppState) {
    let mut ticker = tokio::time::interval(RECHECK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        futures_util::stream::iter(io.sockets())
            .for_each_concurrent(RECHECKS_AT_ONCE, |socket| recheck(state, socket))
            .await;
    }
}

/// Forwards bus events to this instance's sockets.
async fn forward_events(io: &SocketIo, state: &AppState) {
    let mut events = state.bus.subscribe();
    loop {
        match events.recv().await {
            Ok(event) => {
                if let Some(emission) = emission(&event) {
                    emit(io, state, &emission).await;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "socket.io forwarding fell behind");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Forwards bus events to this instance's sockets and re-checks them, until the bus closes.
pub async fn forward(io: SocketIo, state: AppState) {
    tokio::select! {
        () = forward_events(&io, &state) => {}
        () = recheck_sockets(&io, &state) => {}
    }
}
