//! The ledger: its rows and the financial summary read from them.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use entity::{financial_transaction, payment};
use sea_orm::{ActiveValue::Set, ColumnTrait, QueryFilter};
use uuid::Uuid;

use crate::{
    auth::Actor,
    db::tenant::{Intent, TenantTxn},
    error::{ApiError, ApiResult},
    services::authorize,
    state::AppState,
};

pub(super) async fn record(
    txn: &TenantTxn,
    payment: &payment::Model,
    kind: &str,
    amount: i64,
    refund_id: Option<Uuid>,
    description: &str,
) -> ApiResult<()> {
    txn.insert(financial_transaction::ActiveModel {
        payment_id: Set(Some(payment.id)),
        refund_id: Set(refund_id),
        kind: Set(kind.to_string()),
        method: Set(payment.method.clone()),
        amount_minor: Set(amount),
        currency: Set(payment.currency.clone()),
        description: Set(Some(description.to_string())),
        occurred_at: Set(Utc::now()),
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Gross, refunds, fees and net of one slice of the ledger.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub gross: i64,
    pub refunds: i64,
    pub fees: i64,
    /// Gross minus refunds minus fees, kept as the others change so that it is known to fit.
    net: i64,
}

impl Totals {
    pub fn net(&self) -> i64 {
        self.net
    }

    /// Counts one ledger row; an error when a figure would no longer fit in an `i64`.
    fn add(&mut self, kind: &str, amount: i64) -> ApiResult<()> {
        let (figure, net) = match kind {
            "CHARGE" => (&mut self.gross, self.net.checked_add(amount)),
            "REFUND" => (&mut self.refunds, self.net.checked_sub(amount)),
            "FEE" => (&mut self.fees, self.net.checked_sub(amount)),
            // Payouts move money to the bank; they change no sales figure.
            _ => return Ok(()),
        };
        let (Some(sum), Some(net)) = (figure.checked_add(amount), net) else {
            return Err(ApiError::validation(
                "from",
                "the ledger in this period adds up to more than can be counted; ask for a shorter period",
            ));
        };
        *figure = sum;
        self.net = net;
        Ok(())
    }
}

/// The ledger between two instants, totalled overall, per method and per day (in the
/// company's time zone).
pub struct Summary {
    pub currency: String,
    pub totals: Totals,
    pub by_method: Vec<(String, Totals)>,
    pub by_day: Vec<(NaiveDate, Totals)>,
}

pub async fn financial_summary(
    state: &AppState,
    actor: &Actor,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<Summary> {
    authorize(state, actor, "reports", "read").await?;
    if to <= from || to - from > Duration::days(366) {
        return Err(ApiError::validation(
            "to",
            "`to` must come after `from`, at most 366 days later",
        ));
    }
    let txn = state.begin_for(actor, Intent::Read).await?;
    let company = txn
        .find_company()
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound("company"))?;
    let zone: chrono_tz::Tz = company
        .timezone
        .parse()
        .unwrap_or(chrono_tz::America::Sao_Paulo);
    let rows = txn
        .find::<financial_transaction::Entity>()
        .filter(financial_transaction::Column::OccurredAt.gte(from))
        .filter(financial_transaction::Column::OccurredAt.lt(to))
        .all(&txn)
        .await?;
    txn.commit().await?;
    let mut totals = Totals::default();
    let mut by_method: std::collections::BTreeMap<String, Totals> = Default::default();
    let mut by_day: std::collections::BTreeMap<NaiveDate, Totals> = Default::default();
    for row in &rows {
        totals.add(&row.kind, row.amount_minor)?;
        by_method
            .entry(row.method.clone())
            .or_default()
            .add(&row.kind, row.amount_minor)?;
        by_day
            .entry(row.occurred_at.with_timezone(&zone).date_naive())
            .or_default()
            .add(&row.kind, row.amount_minor)?;
    }
    Ok(Summary {
        currency: company.currency,
        totals,
        by_method: by_method.into_iter().collect(),
        by_day: by_day.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_follow_the_ledger_and_refuse_to_wrap() {
        let mut totals = Totals::default();
        for (kind, amount) in [
            ("CHARGE", 2500),
            ("REFUND", 500),
            ("FEE", 100),
            ("PAYOUT", 1900),
        ] {
            totals.add(kind, amount).expect("fits");
        }
        assert_eq!(
            (totals.gross, totals.refunds, totals.fees),
            (2500, 500, 100)
        );
        assert_eq!(totals.net(), 1900);

        let mut huge = Totals::default();
        huge.add("CHARGE", i64::MAX).expect("fits");
        let before = huge;
        let error = huge.add("CHARGE", 1).expect_err("overflow");
        assert_eq!(error.code(), "VALIDATION");
        assert_eq!(huge, before, "a refused row changes nothing");

        let mut refunds_only = Totals::default();
        refunds_only.add("REFUND", i64::MAX).expect("fits");
        assert!(
            refunds_only.add("FEE", i64::MAX).is_err(),
            "the net would not fit"
        );
    }
}
