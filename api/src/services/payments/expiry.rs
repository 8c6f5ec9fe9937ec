//! The sweep that expires unpaid PIX charges and boletos.

use chrono::{DateTime, Duration, Utc};
use entity::payment;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};

use crate::{
    domain::payment::{Method, Status},
    events::{DomainEvent, domain::PaymentState, outbox},
};

/// How long a PIX charge stays payable: BACEN's Pix API default (`calendario.expiracao`).
pub const PIX_VALIDITY: Duration = Duration::hours(24);
/// Most payments one sweep expires; the next sweep takes the rest.
const EXPIRY_BATCH: u64 = 500;

/// Moves unpaid charges past their validity to `EXPIRED` with `payment.expired`: PIX charges
/// 24 h after they were created, boletos once their due date has passed. Card payments expire
/// at Stripe, which says so with `payment_intent.canceled`. Returns how many expired. Safe to
/// run on several instances at once: each payment is expired by one conditional update.
pub async fn expire_overdue(db: &DatabaseConnection, now: DateTime<Utc>) -> anyhow::Result<usize> {
    #[allow(clippy::disallowed_methods)] // cross-tenant: the sweep serves every company
    let overdue = payment::Entity::find()
        .filter(payment::Column::Status.eq(Status::Pending.as_str()))
        .filter(
            sea_orm::Condition::any()
                .add(
                    sea_orm::Condition::all()
                        .add(payment::Column::Method.eq(Method::Pix.as_str()))
                        .add(payment::Column::CreatedAt.lt(now - PIX_VALIDITY)),
                )
                .add(
                    sea_orm::Condition::all()
                        .add(payment::Column::Method.eq(Method::Boleto.as_str()))
                        .add(payment::Column::BoletoDueDate.lt(now.date_naive())),
                ),
        )
        .limit(EXPIRY_BATCH)
        .all(db)
        .await?;
    let mut expired = 0;
    for payment in overdue {
        let txn = db.begin().await?;
        #[allow(clippy::disallowed_methods)] // cross-tenant: the row the sweep read, by its id
        let changed = payment::Entity::update_many()
            .col_expr(
                payment::Column::Status,
                sea_orm::sea_query::Expr::value(Status::Expired.as_str()),
            )
            .col_expr(
                payment::Column::UpdatedAt,
                sea_orm::sea_query::Expr::value(now),
            )
            .filter(payment::Column::Id.eq(payment.id))
            .filter(payment::Column::Status.eq(Status::Pending.as_str()))
            .exec(&txn)
            .await?;
        if changed.rows_affected == 1 {
            let mut moved = payment;
            moved.status = Status::Expired.as_str().to_string();
            outbox::append(
                &txn,
                moved.company_id,
                DomainEvent::PaymentExpired(PaymentState::of(&moved)),
            )
            .await?;
            expired += 1;
        }
        txn.commit().await?;
    }
    if expired > 0 {
        tracing::info!(expired, "expired unpaid PIX charges and boletos");
    }
    Ok(expired)
}
