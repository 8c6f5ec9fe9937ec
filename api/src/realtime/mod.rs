//! Real time: GraphQL subscriptions over `graphql-transport-ws` (and the legacy `graphql-ws`) at
//! `/graphql/ws`, and Socket.IO at `/socket.io`.

pub mod socketio;
pub mod websocket;
