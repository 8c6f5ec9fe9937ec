//! Domain events, written to the `outbox` in the same transaction as the change they describe.
//! The relay (real-time issue) publishes them after the commit; the `events` query reads them.

use chrono::Utc;
use entity::outbox;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, QuerySelect,
};
use serde_json::Value;
use uuid::Uuid;

/// Version of the payload layout; bumped when a payload changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

/// One event about one aggregate (an order, a payment…).
pub struct Event {
    pub event_type: &'static str,
    pub aggregate_type: &'static str,
    pub aggregate_id: Uuid,
    pub payload: Value,
}

/// Appends an event of `company_id` with the next sequence number of its aggregate. Request
/// code records through [`TenantTxn::record`](crate::db::tenant::TenantTxn::record); a
/// background worker without an actor calls this with the company of the row it handles.
pub async fn append(
    txn: &DatabaseTransaction,
    company_id: Uuid,
    event: Event,
) -> Result<(), DbErr> {
    #[allow(clippy::disallowed_methods)] // scoped: filtered by the caller's company below
    let last: Option<Option<i64>> = outbox::Entity::find()
        .filter(outbox::Column::CompanyId.eq(company_id))
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
        company_id: Set(company_id),
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

/// A notification to one person, delivered by the `notifications` subscription and the
/// user's Socket.IO room once committed.
pub async fn notify(
    txn: &DatabaseTransaction,
    company_id: Uuid,
    user_id: Uuid,
    kind: &str,
    message: &str,
    details: Value,
) -> Result<(), DbErr> {
    append(
        txn,
        company_id,
        Event {
            event_type: "notification.created",
            aggregate_type: "user",
            aggregate_id: user_id,
            payload: serde_json::json!({
                "userId": user_id,
                "kind": kind,
                "message": message,
                "details": details,
            }),
        },
    )
    .await
}
