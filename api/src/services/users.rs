//! Users: the global accounts. Sign-up, the operator's new companies and accepted invitations
//! all create them, so they live below all three instead of in one of them.

use chrono::Utc;
use entity::user;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, QueryFilter};
use uuid::Uuid;

use crate::{
    db::tenant::global,
    domain::{Email, Locale},
    error::{ApiError, ApiResult},
    state::AppState,
};

/// Inserts a user; the email must be free (unique constraint → `CONFLICT`).
pub async fn insert_user(
    txn: &impl ConnectionTrait,
    email: &Email,
    name: &str,
    password_hash: Option<String>,
    locale: Locale,
) -> ApiResult<user::Model> {
    let name = super::valid_name("name", name, 200)?;
    let now = Utc::now();
    user::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(email.as_str().to_string()),
        name: Set(name),
        password_hash: Set(password_hash),
        locale: Set(locale.as_str().to_string()),
        is_operator: Set(false),
        password_changed_at: Set(now),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(txn)
    .await
    .map_err(|error| {
        ApiError::conflict_on_unique(error, "an account with this email exists already")
    })
}

/// A user by id (the actor's own account).
pub async fn user_by_id(state: &AppState, id: Uuid) -> ApiResult<user::Model> {
    global::find::<user::Entity>()
        .filter(user::Column::Id.eq(id))
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("user"))
}
