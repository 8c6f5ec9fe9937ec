//! The request as resolvers see it: the application state, the viewer, the client and the
//! loaders. The transports (`POST /graphql`, the GraphQL WebSocket, Socket.IO) read credentials
//! and build this per-request data here, once, so none of them has a copy of its own.

use std::net::IpAddr;

use async_graphql::{Context, Data, ID, Request};
use axum::http::{HeaderMap, HeaderName, header};
use uuid::Uuid;

use super::loaders::{self, Loaders};
use crate::{
    auth::{Actor, Viewer},
    error::{ApiError, ApiResult},
    services::identity::Credentials,
    state::AppState,
};

/// The client's address, as the HTTP layer established it (proxies considered).
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

/// `Authorization: Bearer …` (a JWT or a `pk_` key) or `X-API-Key`, on an HTTP request.
pub fn credentials(headers: &HeaderMap) -> ApiResult<Credentials> {
    let header_text = |name| {
        headers
            .get(name)
            .map(|value| {
                value
                    .to_str()
                    .map(str::trim)
                    .map_err(|_| ApiError::unauthenticated("malformed credentials header"))
            })
            .transpose()
    };
    if let Some(key) = header_text(HeaderName::from_static("x-api-key"))? {
        return Ok(Credentials::ApiKey(key.to_string()));
    }
    match header_text(header::AUTHORIZATION)? {
        None => Ok(Credentials::None),
        Some(value) => bearer(value)
            .map(|token| Credentials::Bearer(token.to_string()))
            .ok_or_else(|| ApiError::unauthenticated("use `Authorization: Bearer <token>`")),
    }
}

/// The token a real-time client sends (the GraphQL WebSocket's `connection_init`
/// `Authorization`, Socket.IO's handshake `token`): `Bearer <token>`, or the token alone.
pub fn realtime_token(value: &str) -> &str {
    let value = value.trim();
    bearer(value).unwrap_or(value)
}

/// The token of `Bearer <token>`, the scheme in any case.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What every operation of one request (a `POST /graphql`, a WebSocket connection) runs with.
#[derive(Clone)]
pub struct RequestData {
    pub viewer: Viewer,
    pub client: ClientIp,
    /// A member's loaders, which batch and cache the reads of all the request's operations.
    pub loaders: Option<Loaders>,
}

impl RequestData {
    pub fn new(state: &AppState, viewer: Viewer, client: IpAddr) -> Self {
        let loaders = match &viewer {
            Viewer::Member(actor) => Some(loaders::loaders(state.db.clone(), actor.clone())),
            _ => None,
        };
        Self {
            viewer,
            client: ClientIp(client),
            loaders,
        }
    }

    /// `request` with this data on it.
    pub fn attach(&self, request: Request) -> Request {
        let request = request.data(self.client).data(self.viewer.clone());
        match &self.loaders {
            Some(loaders) => request.data(loaders.clone()),
            None => request,
        }
    }

    /// As the data of a WebSocket connection, which every operation on it reads.
    pub fn into_data(self) -> Data {
        let mut data = Data::default();
        data.insert(self.client);
        data.insert(self.viewer);
        if let Some(loaders) = self.loaders {
            data.insert(loaders);
        }
        data
    }
}

/// The request's loaders; present for every member request.
pub fn loaders<'a>(ctx: &Context<'a>) -> ApiResult<&'a Loaders> {
    ctx.data::<Loaders>()
        .map_err(|_| ApiError::unauthenticated("log in first"))
}

pub fn state<'a>(ctx: &Context<'a>) -> ApiResult<&'a AppState> {
    ctx.data::<AppState>()
        .map_err(|_| ApiError::internal(anyhow::anyhow!("application state missing from schema")))
}

fn viewer<'a>(ctx: &Context<'a>) -> &'a Viewer {
    static ANONYMOUS: Viewer = Viewer::Anonymous;
    ctx.data_opt::<Viewer>().unwrap_or(&ANONYMOUS)
}

/// The member the request acts as; `UNAUTHENTICATED` without one.
pub fn actor<'a>(ctx: &Context<'a>) -> ApiResult<&'a Actor> {
    match viewer(ctx) {
        Viewer::Member(actor) => Ok(actor),
        Viewer::Operator { .. } => Err(ApiError::forbidden(
            "platform operators act outside companies; log in as a member",
        )),
        Viewer::Anonymous => Err(ApiError::unauthenticated("log in first")),
    }
}

/// The platform operator the request acts as; `FORBIDDEN` for anyone else.
pub fn operator(ctx: &Context<'_>) -> ApiResult<Uuid> {
    match viewer(ctx) {
        Viewer::Operator { user_id } => Ok(*user_id),
        Viewer::Member(_) => Err(ApiError::forbidden("only platform operators may do this")),
        Viewer::Anonymous => Err(ApiError::unauthenticated("log in first")),
    }
}

pub fn client_ip(ctx: &Context<'_>) -> IpAddr {
    ctx.data_opt::<ClientIp>()
        .map(|client| client.0)
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// A GraphQL `ID` holding one of our UUIDs.
pub fn parse_id(field: &str, id: &ID) -> ApiResult<Uuid> {
    Uuid::parse_str(id.as_str())
        .map_err(|_| ApiError::validation(field, format!("`{}` is not a valid id", id.as_str())))
}

/// Refuses unless the request's actor holds `resource:action`; for fields reachable from
/// other objects (an order's customer) whose contents need their own permission.
pub async fn require(ctx: &Context<'_>, resource: &str, action: &str) -> ApiResult<()> {
    crate::services::authorize(state(ctx)?, actor(ctx)?, resource, action).await
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn every_transport_reads_a_bearer_token_alike() {
        let read = |pairs| match credentials(&headers(pairs)) {
            Ok(Credentials::Bearer(token)) => format!("bearer {token}"),
            Ok(Credentials::ApiKey(key)) => format!("key {key}"),
            Ok(Credentials::None) => "none".into(),
            Err(error) => error.code().into(),
        };
        assert_eq!(read(&[("authorization", "Bearer abc ")]), "bearer abc");
        assert_eq!(read(&[("authorization", "bearer abc")]), "bearer abc");
        assert_eq!(read(&[("authorization", "Basic abc")]), "UNAUTHENTICATED");
        assert_eq!(read(&[("authorization", "Bearer ")]), "UNAUTHENTICATED");
        assert_eq!(
            read(&[("x-api-key", "pk_1"), ("authorization", "Bearer abc")]),
            "key pk_1"
        );
        assert_eq!(read(&[]), "none");

        assert_eq!(realtime_token(" Bearer abc "), "abc");
        assert_eq!(realtime_token("BEARER abc"), "abc");
        assert_eq!(
            realtime_token("abc"),
            "abc",
            "real-time clients may send the token alone"
        );
    }
}
