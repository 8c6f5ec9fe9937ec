//! `/graphql/ws`: the access token or API key arrives in `connection_init`
//! (`{ "Authorization": "Bearer …" }`). Without a valid one the socket closes with 4401 (bad
//! credentials) or 4403 (refused, e.g. a suspended company). The connection also closes when the
//! token expires, the member loses access, or loses a permission one of the connection's
//! subscriptions needs (4403), checked every few seconds.
//!
//! Only subscriptions run here: queries and mutations go through `POST /graphql`, where rate
//! limits and batching rules apply.

use std::{net::IpAddr, str::FromStr, time::Duration};

use async_graphql::http::{
    ALL_WEBSOCKET_PROTOCOLS, WebSocket as GraphqlWebSocket, WebSocketProtocols, WsMessage,
};
use axum::{
    extract::ws::{CloseFrame, Message, WebSocket},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::{SinkExt, StreamExt, future};
use tokio::sync::mpsc;

use crate::{
    auth::Viewer,
    error::ApiError,
    graphql::{
        AppSchema, SubscriptionPermissions,
        context::{RequestData, realtime_token},
    },
    services::{
        authorize,
        identity::{self, Credentials},
    },
    state::AppState,
};

/// How often a live connection re-checks its credentials (Socket.IO's too).
pub const RECHECK: Duration = Duration::from_secs(5);
pub const CLOSE_UNAUTHENTICATED: u16 = 4401;
pub const CLOSE_FORBIDDEN: u16 = 4403;

/// The sub-protocol the client asked for, if it is one we speak.
pub fn protocol(headers: &HeaderMap) -> Option<WebSocketProtocols> {
    headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|protocols| {
            protocols
                .split(',')
                .find_map(|protocol| WebSocketProtocols::from_str(protocol.trim()).ok())
        })
}

/// The answer to an upgrade without a sub-protocol we speak.
pub fn unsupported_protocol() -> Response {
    (
        StatusCode::BAD_REQUEST,
        "use the graphql-transport-ws sub-protocol",
    )
        .into_response()
}

pub fn subprotocols() -> [&'static str; 2] {
    ALL_WEBSOCKET_PROTOCOLS
}

/// Who the `connection_init` payload authenticates, or the close code and reason.
async fn authenticate(
    state: &AppState,
    payload: &serde_json::Value,
) -> Result<(Viewer, String), (u16, String)> {
    let Some(header) = payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"))
        .and_then(|value| value.as_str())
    else {
        return Err((
            CLOSE_UNAUTHENTICATED,
            "send Authorization in connection_init".into(),
        ));
    };
    let token = realtime_token(header).to_string();
    match identity::authenticate(state, Credentials::Bearer(token.clone())).await {
        Ok(viewer @ Viewer::Member(_)) => Ok((viewer, token)),
        Ok(_) => Err((
            CLOSE_FORBIDDEN,
            "subscriptions are for company members".into(),
        )),
        Err(ApiError::Unauthenticated(message)) => Err((CLOSE_UNAUTHENTICATED, message)),
        Err(error) => Err((CLOSE_FORBIDDEN, error.reported_message())),
    }
}

fn close(code: u16, reason: String) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

pub async fn serve(
    socket: WebSocket,
    schema: AppSchema,
    state: AppState,
    protocol: WebSocketProtocols,
    client: IpAddr,
) {
    let (mut sink, stream) = socket.split();
    let input = stream
        .take_while(|message| future::ready(message.is_ok()))
        .filter_map(|message| {
            future::ready(match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => Some(message.into_data()),
                _ => None,
            })
        });
    // The credentials accepted at init, so the connection can re-check them while it lives.
    let (accepted, mut accepted_rx) = mpsc::channel::<String>(1);
    // A refusal at init; async-graphql closes with 1002, we close with 4401/4403 instead.
    let (refused, mut refused_rx) = mpsc::channel::<(u16, String)>(1);
    let init_state = state.clone();
    let permissions = SubscriptionPermissions::default();
    let init_permissions = permissions.clone();
    let graphql = GraphqlWebSocket::new(schema, input, protocol)
        .keepalive_timeout(Duration::from_secs(60))
        .on_connection_init(move |payload| async move {
            match authenticate(&init_state, &payload).await {
                Ok((viewer, token)) => {
                    drop(accepted.send(token).await);
                    let mut data = RequestData::new(&init_state, viewer, client).into_data();
                    data.insert(init_permissions);
                    Ok(data)
                }
                Err((code, reason)) => {
                    drop(refused.send((code, reason.clone())).await);
                    Err(async_graphql::Error::new(reason))
                }
            }
        });
    futures_util::pin_mut!(graphql);
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.tick().await;
    let mut token: Option<String> = None;
    loop {
        tokio::select! {
            message = graphql.next() => {
                let Some(message) = message else { break };
                let outgoing = match message {
                    WsMessage::Text(text) => Message::Text(text.into()),
                    WsMessage::Close(code, reason) => match refused_rx.try_recv() {
                        Ok((code, reason)) => close(code, reason),
                        Err(_) => close(code, reason),
                    },
                };
                let closing = matches!(outgoing, Message::Close(_));
                if sink.send(outgoing).await.is_err() || closing {
                    break;
                }
            }
            Some(accepted) = accepted_rx.recv() => token = Some(accepted),
            _ = recheck.tick(), if token.is_some() => {
                let token = token.clone().unwrap_or_default();
                if let Some((code, reason)) = still_admitted(&state, token, &permissions).await {
                    drop(sink.send(close(code, reason)).await);
                    break;
                }
            }
        }
    }
}

/// `None` while the token still authenticates a member holding every permission the
/// connection's subscriptions need; otherwise the close code and reason.
async fn still_admitted(
    state: &AppState,
    token: String,
    permissions: &SubscriptionPermissions,
) -> Option<(u16, String)> {
    let actor = match identity::authenticate(state, Credentials::Bearer(token)).await {
        Ok(Viewer::Member(actor)) => actor,
        Ok(_) => return Some((CLOSE_FORBIDDEN, "access ended".to_string())),
        Err(ApiError::Unauthenticated(message)) => return Some((CLOSE_UNAUTHENTICATED, message)),
        Err(error) => return Some((CLOSE_FORBIDDEN, error.reported_message())),
    };
    for (resource, action) in permissions.required() {
        if let Err(error) = authorize(state, &actor, resource, action).await {
            return Some((CLOSE_FORBIDDEN, error.reported_message()));
        }
    }
    None
}
