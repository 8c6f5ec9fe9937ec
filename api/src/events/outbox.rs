//! Domain events, written to the `outbox` in the same transaction as the change they describe.
//! The relay publishes them after the commit; the `events` query reads them.

use chrono::Utc;
use entity::outbox;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, QuerySelect,
};
use uuid::Uuid;

use super::domain::{DomainEvent, Notification};

/// Appends an event of `company_id` with the next sequence number of its aggregate. Request
/// code records through [`TenantTxn::record`](crate::db::tenant::TenantTxn::record); a
/// background worker without an actor calls this with the company of the row it handles.
pub async fn append(
    txn: &DatabaseTransaction,
    company_id: Uuid,
    event: DomainEvent,
) -> Result<(), DbErr> {
    let event_type = event.event_type();
    let aggregate_id = event.aggregate_id();
    #[allow(clippy::disallowed_methods)] // scoped: the first filter names the company written for
    let last: Option<Option<i64>> = outbox::Entity::find()
        .filter(outbox::Column::CompanyId.eq(company_id))
        .select_only()
        .column_as(outbox::Column::Sequence.max(), "last")
        .filter(outbox::Column::AggregateId.eq(aggregate_id))
        .into_tuple()
        .one(txn)
        .await?;
    outbox::ActiveModel {
        event_id: Set(Uuid::now_v7()),
        company_id: Set(company_id),
        event_type: Set(event_type.name().to_string()),
        aggregate_type: Set(event_type.aggregate().name().to_string()),
        aggregate_id: Set(aggregate_id),
        sequence: Set(last.flatten().unwrap_or(0) + 1),
        payload: Set(event.payload().to_string()),
        occurred_at: Set(Utc::now()),
        relayed_at: Set(None),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    Ok(())
}

/// Tells `user_id` about `event` in `message`: a notification delivered by the
/// `notifications` subscription and the user's Socket.IO room once committed.
pub async fn notify(
    txn: &DatabaseTransaction,
    company_id: Uuid,
    user_id: Uuid,
    event: &DomainEvent,
    message: String,
) -> Result<(), DbErr> {
    let notification = Notification::about(user_id, event, message);
    append(
        txn,
        company_id,
        DomainEvent::NotificationCreated(notification),
    )
    .await
}
