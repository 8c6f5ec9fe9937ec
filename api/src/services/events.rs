//! Reading the company's published events, for integrators catching up after a disconnect.

use entity::outbox;
use sea_orm::{ColumnTrait, Condition, QueryFilter, QueryOrder, QuerySelect};

use super::authorize;
use crate::{
    auth::Actor,
    db::tenant::Intent,
    error::ApiResult,
    events::{AggregateType, BusEvent},
    state::AppState,
};

pub struct EventPage {
    pub events: Vec<BusEvent>,
    pub has_next_page: bool,
}

/// Published events after position `after`, oldest first, optionally of some types only.
pub async fn list(
    state: &AppState,
    actor: &Actor,
    after: Option<i64>,
    types: &[String],
    first: u64,
) -> ApiResult<EventPage> {
    authorize(state, actor, "events", "read").await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let mut query = txn
        .find::<outbox::Entity>()
        .filter(outbox::Column::Position.is_not_null())
        .filter(outbox::Column::Position.gt(after.unwrap_or(0)));
    if !types.is_empty() {
        query = query.filter(outbox::Column::EventType.is_in(types.to_vec()));
    }
    // Events about a person (their notifications) are theirs alone (`BusEvent::visible_to`).
    let mut visible =
        Condition::any().add(outbox::Column::AggregateType.ne(AggregateType::User.name()));
    if let Some(user_id) = actor.user_id() {
        visible = visible.add(outbox::Column::AggregateId.eq(user_id));
    }
    query = query.filter(visible);
    let mut rows = query
        .order_by_asc(outbox::Column::Position)
        .limit(first + 1)
        .all(&txn)
        .await?;
    txn.commit().await?;
    let has_next_page = rows.len() as u64 > first;
    rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
    let events = rows
        .into_iter()
        .map(|row| {
            let position = row.position.unwrap_or_default();
            BusEvent::from_row(row, position)
        })
        .collect();
    Ok(EventPage {
        events,
        has_next_page,
    })
}
