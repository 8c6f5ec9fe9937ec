//! Payments as rules: methods, the payment state machine (fixed in code, unlike order
//! workflows), and what an order's payments add up to.
//!
//! Amounts are integer minor units of the order's currency; nothing here rounds.

use std::fmt;

/// How a customer pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Pix,
    Boleto,
    Card,
    Cash,
}

impl Method {
    pub const ALL: [Method; 4] = [Self::Pix, Self::Boleto, Self::Card, Self::Cash];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pix => "PIX",
            Self::Boleto => "BOLETO",
            Self::Card => "CARD",
            Self::Cash => "CASH",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|method| method.as_str() == text)
    }

    /// Who moves the money for this method.
    pub fn provider(self) -> &'static str {
        match self {
            Self::Pix => "pix",
            Self::Boleto => "boleto",
            Self::Card => "stripe",
            Self::Cash => "manual",
        }
    }

    /// Whether staff may confirm the money arrived (`markPaymentPaid`); a card payment is
    /// confirmed only by its provider.
    pub fn confirmed_by_staff(self) -> bool {
        !matches!(self, Self::Card)
    }
}

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Pending,
    Authorized,
    Paid,
    Failed,
    Cancelled,
    Expired,
    PartiallyRefunded,
    Refunded,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Self::Pending,
        Self::Authorized,
        Self::Paid,
        Self::Failed,
        Self::Cancelled,
        Self::Expired,
        Self::PartiallyRefunded,
        Self::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Authorized => "AUTHORIZED",
            Self::Paid => "PAID",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
            Self::PartiallyRefunded => "PARTIALLY_REFUNDED",
            Self::Refunded => "REFUNDED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// Whether money was collected (and may be, partly, given back).
    pub fn collected(self) -> bool {
        matches!(self, Self::Paid | Self::PartiallyRefunded | Self::Refunded)
    }

    /// The moves the state machine allows. `PARTIALLY_REFUNDED → PARTIALLY_REFUNDED` is a
    /// second partial refund.
    ///
    /// `FAILED` is not final: a declined card leaves its PaymentIntent open
    /// (`requires_payment_method`) and the payer may try again with the same client secret, so a
    /// failed payment can still be authorized, paid, fail again or be cancelled. An authorized
    /// payment cannot fail: Stripe only captures or cancels an intent that requires capture, so
    /// a failure reported after an authorization is a late report of an earlier attempt.
    pub fn can_become(self, next: Status) -> bool {
        use Status::*;
        matches!(
            (self, next),
            (Pending, Authorized | Paid | Failed | Cancelled | Expired)
                | (Authorized, Paid | Cancelled | Expired)
                | (Failed, Authorized | Paid | Failed | Cancelled)
                | (Paid | PartiallyRefunded, PartiallyRefunded | Refunded)
        )
    }

    /// `next`, or a message naming both states when the move is not allowed.
    pub fn transition(self, next: Status) -> Result<Status, String> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(format!(
                "a {} payment cannot become {}",
                self.as_str(),
                next.as_str()
            ))
        }
    }

    /// The status after refunds totalling `refunded` of `amount`.
    pub fn after_refunds(amount: i64, refunded: i64) -> Status {
        if refunded >= amount {
            Self::Refunded
        } else {
            Self::PartiallyRefunded
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an order's payments add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderPaymentStatus {
    Unpaid,
    PartiallyPaid,
    Paid,
    Overpaid,
    PartiallyRefunded,
    Refunded,
}

/// An order's payment position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    pub status: OrderPaymentStatus,
    /// Collected minus refunded.
    pub paid: i64,
    /// What is still owed; never negative.
    pub due: i64,
}

/// The balance of an order of `total` from its payments' (status, amount, refunded); an error
/// when the sums do not fit in an `i64`.
pub fn balance(
    total: i64,
    payments: impl IntoIterator<Item = (Status, i64, i64)>,
) -> Result<Balance, String> {
    let overflow = || "the payments of this order add up to more than can be counted".to_string();
    let (collected, refunded) = payments
        .into_iter()
        .filter(|(status, _, _)| status.collected())
        .try_fold((0i64, 0i64), |(collected, refunded), (_, amount, back)| {
            Some((collected.checked_add(amount)?, refunded.checked_add(back)?))
        })
        .ok_or_else(overflow)?;
    let paid = collected.checked_sub(refunded).ok_or_else(overflow)?;
    let status = if collected == 0 {
        OrderPaymentStatus::Unpaid
    } else if refunded > 0 && paid <= 0 {
        OrderPaymentStatus::Refunded
    } else if refunded > 0 && paid < total {
        OrderPaymentStatus::PartiallyRefunded
    } else if paid < total {
        OrderPaymentStatus::PartiallyPaid
    } else if paid == total {
        OrderPaymentStatus::Paid
    } else {
        OrderPaymentStatus::Overpaid
    };
    Ok(Balance {
        status,
        paid,
        due: total.checked_sub(paid).ok_or_else(overflow)?.max(0),
    })
}

impl Balance {
    /// Whether a `requiresPayment` transition may be taken.
    pub fn settled(&self) -> bool {
        self.due == 0 && self.paid > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_machine_allows_exactly_its_moves() {
        use Status::*;
        let allowed = [
            (Pending, Authorized),
            (Pending, Paid),
            (Pending, Failed),
            (Pending, Cancelled),
            (Pending, Expired),
            (Authorized, Paid),
            (Authorized, Cancelled),
            (Authorized, Expired),
            (Failed, Authorized),
            (Failed, Paid),
            (Failed, Failed),
            (Failed, Cancelled),
            (Paid, PartiallyRefunded),
            (Paid, Refunded),
            (PartiallyRefunded, PartiallyRefunded),
            (PartiallyRefunded, Refunded),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} → {to}"
                );
            }
        }
        let refused = Refunded.transition(Paid).expect_err("terminal");
        assert!(
            refused.contains("REFUNDED") && refused.contains("PAID"),
            "{refused}"
        );
    }

    #[test]
    fn statuses_and_methods_round_trip_their_names() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        for method in Method::ALL {
            assert_eq!(Method::parse(method.as_str()), Some(method));
        }
        assert_eq!(Method::parse("BITCOIN"), None);
    }

    #[test]
    fn an_orders_balance_follows_partial_payments_and_refunds() {
        use OrderPaymentStatus as O;
        use Status::*;
        // (payments as (status, amount, refunded), expected status, paid, due)
        type Case = (&'static [(Status, i64, i64)], O, i64, i64);
        let cases: [Case; 8] = [
            (&[], O::Unpaid, 0, 1000),
            (&[(Pending, 1000, 0), (Failed, 1000, 0)], O::Unpaid, 0, 1000),
            (&[(Paid, 400, 0)], O::PartiallyPaid, 400, 600),
            (&[(Paid, 400, 0), (Paid, 600, 0)], O::Paid, 1000, 0),
            (&[(Paid, 1000, 0), (Paid, 200, 0)], O::Overpaid, 1200, 0),
            (
                &[(PartiallyRefunded, 1000, 300)],
                O::PartiallyRefunded,
                700,
                300,
            ),
            (&[(Refunded, 1000, 1000)], O::Refunded, 0, 1000),
            (&[(PartiallyRefunded, 1200, 200)], O::Paid, 1000, 0),
        ];
        for (payments, status, paid, due) in cases {
            let balance = balance(1000, payments.iter().copied());
            assert_eq!(balance, Ok(Balance { status, paid, due }), "{payments:?}");
        }
        let settled = |payments: &[(Status, i64, i64)]| {
            balance(1000, payments.iter().copied()).map(|balance| balance.settled())
        };
        assert_eq!(settled(&[(Paid, 1000, 0)]), Ok(true));
        assert_eq!(settled(&[(Paid, 999, 0)]), Ok(false));
        assert_eq!(settled(&[(PartiallyRefunded, 1000, 1)]), Ok(false));
    }

    #[test]
    fn a_balance_that_does_not_fit_is_an_error_not_a_wrap() {
        use Status::*;
        let collected = balance(1000, [(Paid, i64::MAX, 0), (Paid, 1, 0)]);
        let refunded = balance(1000, [(Refunded, 1, i64::MAX), (Refunded, 1, 1)]);
        let owed = balance(i64::MIN, [(Paid, 1, 0)]);
        for outcome in [collected, refunded, owed] {
            let error = outcome.expect_err("overflow");
            assert!(error.contains("more than can be counted"), "{error}");
        }
    }
}
