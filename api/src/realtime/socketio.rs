//! Socket.IO at `/socket.io` (socket.io-client v4). The client sends `{ token }` (an access token
//! or an API key) in the handshake `auth`; anything else refuses the connection. A connected
//! socket is in the rooms `company:{id}` and, for a person, `user:{id}`, and nowhere else: there
//! is no way for a client to join a room.
//!
//! Every instance receives every event through the event bus, so each emits to its own sockets.
//! (With the socket.io Redis adapter on top, every instance would also fan out every emit to the
//! others, and each event would arrive once per instance.)

use std::fmt;

use serde::Deserialize;
use serde_json::json;
use socketioxide::{
    SocketIo,
    extract::{Data, Extension, SocketRef, State},
    handler::ConnectHandler,
    layer::SocketIoLayer,
};

use crate::{
    auth::{Actor, Viewer},
    events::BusEvent,
    services::identity::{self, Credentials},
    state::AppState,
};

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

pub fn company_room(company_id: uuid::Uuid) -> String {
    format!("company:{company_id}")
}

pub fn user_room(user_id: uuid::Uuid) -> String {
    format!("user:{user_id}")
}

async fn authenticate(
    socket: SocketRef,
    Data(handshake): Data<Handshake>,
    State(state): State<AppState>,
) -> Result<(), Refused> {
    let token = handshake.token.trim().to_string();
    match identity::authenticate(&state, Credentials::Bearer(token)).await {
        Ok(Viewer::Member(actor)) => {
            // Joined before the client is told it is connected, so no event can slip between.
            let mut rooms = vec![company_room(actor.company_id())];
            if let Some(user_id) = actor.user_id() {
                rooms.push(user_room(user_id));
            }
            socket.join(rooms);
            socket.extensions.insert(actor);
            Ok(())
        }
        Ok(_) => Err(Refused("Socket.IO is for company members".into())),
        Err(error) => Err(Refused(error.message())),
    }
}

async fn on_connect(socket: SocketRef, Extension(actor): Extension<Actor>) {
    tracing::debug!(company_id = %actor.company_id(), socket = %socket.id, "socket.io client connected");
}

/// The layer to mount on the router, and the handle that emits.
pub fn layer(state: &AppState) -> (SocketIoLayer, SocketIo) {
    let (layer, io) = SocketIo::builder().with_state(state.clone()).build_layer();
    io.ns("/", on_connect.with(authenticate));
    (layer, io)
}

/// What a Socket.IO client receives for a bus event, and in which room.
fn emission(event: &BusEvent) -> Option<(String, &'static str, serde_json::Value)> {
    let payload = &event.payload;
    match event.event_type.as_str() {
        "order.created" | "order.status_changed" => Some((
            company_room(event.company_id),
            "order:update",
            json!({
                "orderId": event.aggregate_id,
                "number": payload.get("number"),
                "status": payload.get("to").or_else(|| payload.get("status")),
                "previousStatus": payload.get("from"),
                "version": payload.get("version"),
                "event": event.event_type,
                "occurredAt": event.occurred_at,
            }),
        )),
        "notification.created" => {
            let user = payload.get("userId")?.as_str()?.parse().ok()?;
            Some((user_room(user), "notification", payload.clone()))
        }
        _ => None,
    }
}

/// Forwards bus events to this instance's sockets until the bus closes.
pub async fn forward(io: SocketIo, state: AppState) {
    let mut events = state.bus.subscribe();
    loop {
        match events.recv().await {
            Ok(event) => {
                if let Some((room, name, payload)) = emission(&event)
                    && let Err(error) = io.to(room).emit(name, &payload).await
                {
                    tracing::warn!(%error, "failed to emit to socket.io clients");
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "socket.io forwarding fell behind");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
