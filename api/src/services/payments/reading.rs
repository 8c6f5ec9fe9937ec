//! Reading payments: one by id and pages of the `payments` query.

use entity::payment;
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::{
    auth::Actor,
    db::tenant::Intent,
    domain::payment::{Method, Status},
    error::ApiResult,
    services::authorize,
    state::AppState,
};

/// Filters of the `payments` query.
#[derive(Default)]
pub struct PaymentFilter {
    pub status: Option<Status>,
    pub method: Option<Method>,
    pub order_id: Option<Uuid>,
}

pub async fn get(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<Option<payment::Model>> {
    authorize(state, actor, "payments", "read").await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let payment = txn
        .find::<payment::Entity>()
        .filter(payment::Column::Id.eq(id))
        .one(&txn)
        .await?;
    txn.commit().await?;
    Ok(payment)
}

/// One page of payments, newest first, before the payment `after`.
pub async fn list(
    state: &AppState,
    actor: &Actor,
    filter: &PaymentFilter,
    first: u64,
    after: Option<Uuid>,
) -> ApiResult<Vec<payment::Model>> {
    authorize(state, actor, "payments", "read").await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let mut query = txn.find::<payment::Entity>();
    if let Some(status) = filter.status {
        query = query.filter(payment::Column::Status.eq(status.as_str()));
    }
    if let Some(method) = filter.method {
        query = query.filter(payment::Column::Method.eq(method.as_str()));
    }
    if let Some(order_id) = filter.order_id {
        query = query.filter(payment::Column::OrderId.eq(order_id));
    }
    if let Some(after) = after {
        query = query.filter(payment::Column::Id.lt(after));
    }
    let page = query
        .order_by_desc(payment::Column::Id)
        .limit(first)
        .all(&txn)
        .await?;
    txn.commit().await?;
    Ok(page)
}
