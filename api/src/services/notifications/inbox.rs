//! A member's own in-app notifications: `myNotifications` and `markNotificationsRead`. Only
//! the member they are for reads or marks them, whatever their permissions.

use chrono::Utc;
use entity::notification;
use sea_orm::{ColumnTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;

use super::Status;
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
    Ok(super::newest_first(txn, query, first, after).await?)
}

/// Which notifications `markNotificationsRead` marks.
pub enum Marked {
    These(Vec<Uuid>),
    All,
}

/// Marks the actor's delivered in-app notifications read (`READ` in the log too); returns how
/// many were unread. Ids of anyone else's notifications, or of other channels', mark nothing
/// and are not told apart from unknown ones.
pub async fn mark_read(state: &AppState, actor: &Actor, marked: Marked) -> ApiResult<u64> {
    let user_id = member(actor)?;
    if matches!(&marked, Marked::These(ids) if ids.is_empty()) {
        return Err(ApiError::validation("input.ids", "give ids, or all: true"));
    }
    let now = Utc::now();
    let txn = state.begin_for(actor, Intent::Write).await?;
    let mut update = txn
        .update::<notification::Entity>()
        .col_expr(notification::Column::ReadAt, Expr::value(now))
        .col_expr(
            notification::Column::Status,
            Expr::value(Status::Read.as_str()),
        )
        .col_expr(notification::Column::UpdatedAt, Expr::value(now))
        .filter(notification::Column::UserId.eq(user_id))
        .filter(notification::Column::Channel.eq(Channel::InApp.as_str()))
        // What `myNotifications` shows: a queued one has not reached the member yet.
        .filter(
            notification::Column::Status.is_in([Status::Sent.as_str(), Status::Delivered.as_str()]),
        )
        .filter(notification::Column::ReadAt.is_null());
    if let Marked::These(ids) = marked {
        update = update.filter(notification::Column::Id.is_in(ids));
    }
    let marked = update.exec(&txn).await?.rows_affected;
    txn.commit().await?;
    Ok(marked)
}
