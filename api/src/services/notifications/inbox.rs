//! A member's own in-app notifications: `myNotifications` and `markNotificationsRead`. Only
//! the member they are for reads or marks them, whatever their permissions.

use chrono::Utc;
use entity::notification;
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr};
use uuid::Uuid;

use crate::{
    auth::Actor,
    db::tenant::Intent,
    error::{ApiError, ApiResult},
    notifications::Channel,
    state::AppState,
};

/// The member behind the actor; an API key has no inbox.
fn member(actor: &Actor) -> ApiResult<Uuid> {
    actor
        .user_id()
        .ok_or_else(|| ApiError::forbidden("API keys have no notifications; log in as a member"))
}

/// One page of the actor's in-app notifications, newest first, before `after`.
pub async fn page(
    state: &AppState,
    actor: &Actor,
    unread_only: bool,
    first: u64,
    after: Option<Uuid>,
) -> ApiResult<Vec<notification::Model>> {
    let user_id = member(actor)?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let mut query = txn
        .find::<notification::Entity>()
        .filter(notification::Column::UserId.eq(user_id))
        .filter(notification::Column::Channel.eq(Channel::InApp.as_str()))
        .filter(notification::Column::SentAt.is_not_null());
    if unread_only {
        query = query.filter(notification::Column::ReadAt.is_null());
    }
    if let Some(after) = after {
        query = query.filter(notification::Column::Id.lt(after));
    }
    let rows = query
        .order_by_desc(notification::Column::Id)
        .limit(first)
        .all(&txn)
        .await?;
    txn.commit().await?;
    Ok(rows)
}

/// Which notifications `markNotificationsRead` marks.
pub enum Marked {
    These(Vec<Uuid>),
    All,
}

/// Marks the actor's notifications read; returns how many were unread. Ids of anyone else's
/// notifications mark nothing.
pub async fn mark_read(state: &AppState, actor: &Actor, marked: Marked) -> ApiResult<u64> {
    let user_id = member(actor)?;
    let txn = state.begin_for(actor, Intent::Write).await?;
    let mut update = txn
        .update::<notification::Entity>()
        .col_expr(notification::Column::ReadAt, Expr::value(Utc::now()))
        .col_expr(notification::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(notification::Column::UserId.eq(user_id))
        .filter(notification::Column::Channel.eq(Channel::InApp.as_str()))
        .filter(notification::Column::ReadAt.is_null());
    if let Marked::These(ids) = marked {
        if ids.is_empty() {
            return Err(ApiError::validation("ids", "give ids, or all: true"));
        }
        update = update.filter(notification::Column::Id.is_in(ids));
    }
    let marked = update.exec(&txn).await?.rows_affected;
    txn.commit().await?;
    Ok(marked)
}
