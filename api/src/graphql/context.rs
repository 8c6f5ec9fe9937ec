//! What a resolver reads from the request: the application state, the viewer and the client.

use std::net::IpAddr;

use async_graphql::{Context, ID};
use uuid::Uuid;

use crate::{
    auth::{Actor, Viewer},
    error::{ApiError, ApiResult},
    state::AppState,
};

/// The client's address, as the HTTP layer established it (proxies considered).
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

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
