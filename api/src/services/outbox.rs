//! Domain events, written to the `outbox` in the same transaction as the change they describe.
//! The relay (real-time issue) publishes them after the commit; the `events` query reads them.

use chrono::Utc;
use entity::outbox;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, QueryFilter, QuerySelect,
};
use serde_json::Value;
use uuid::Uuid;

use super::tenant;
use crate::{auth::Actor, error::ApiResult};

/// Version of the payload layout; bumped when a payload changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

/// One event about one aggregate (an order, a payment…).
pub struct Event {
    pub event_type: &'static str,
    pub aggregate_type: &'static str,
    pub aggregate_id: Uuid,
    pub payload: Value,
}

/// Appends `event` with the next sequence number of its aggregate.
pub async fn record(txn: &DatabaseTransaction, actor: &Actor, event: Event) -> ApiResult<()> {
    let last: Option<Option<i64>> = tenant::find::<outbox::Entity>(actor)
        .select_only()
        .column_as(outbox::Column::Sequence.max(), "last")
        .filter(outbox::Column::AggregateId.eq(event.aggregate_id))
        .into_tuple()
        .one(txn)
        .await?;
    let mut payload = event.payload;
    if let Value::Object(fields) = &mut payload {
        fields.insert("schemaVersion".into(), SCHEMA_VERSION.into());
    }
    outbox::ActiveModel {
        event_id: Set(Uuid::now_v7()),
        company_id: Set(tenant::company_of(actor)),
        event_type: Set(event.event_type.to_string()),
        aggregate_type: Set(event.aggregate_type.to_string()),
        aggregate_id: Set(event.aggregate_id),
        sequence: Set(last.flatten().unwrap_or(0) + 1),
        payload: Set(payload.to_string()),
        occurred_at: Set(Utc::now()),
        relayed_at: Set(None),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    Ok(())
}
