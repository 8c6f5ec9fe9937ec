//! Payments, refunds, payment settings and the financial summary.

use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, NaiveDate, Utc};
use entity::{payment, refund};

use super::{
    context::{actor, loaders, parse_id, state},
    loaders::RefundsOfPayment,
    money::Money,
    pagination::{PageInfo, id_page, page_size, parse_id_cursor},
};
use crate::{
    domain::{
        boleto::Barcode,
        payment::{Method, OrderPaymentStatus as DomainOrderPaymentStatus, Status},
    },
    error::ApiError,
    services::payments::{
        self as service, NewPayment, NewRefund, PaymentFilter, SettingsChanges, Totals,
    },
};

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::domain::payment::Method")]
pub enum PaymentMethod {
    /// Instant transfer by PIX (static BR Code).
    Pix,
    /// Brazilian bank slip.
    Boleto,
    /// Card, through Stripe.
    Card,
    Cash,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::domain::payment::Status")]
pub enum PaymentStatus {
    Pending,
    /// Card authorized, waiting for `capturePayment`.
    Authorized,
    Paid,
    Failed,
    Cancelled,
    Expired,
    PartiallyRefunded,
    Refunded,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::domain::payment::OrderPaymentStatus")]
pub enum OrderPaymentStatus {
    Unpaid,
    PartiallyPaid,
    Paid,
    Overpaid,
    PartiallyRefunded,
    Refunded,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum RefundStatus {
    /// Asked of the card provider, answer not recorded yet.
    Pending,
    Succeeded,
    /// Refused by the provider; nothing was given back.
    Failed,
}

/// What a PIX payer scans or pastes.
#[derive(SimpleObject)]
pub struct PixCharge {
    /// The "copia e cola" payload (BR Code); render it as a QR code.
    br_code: String,
    txid: String,
}

/// What a boleto payer types or scans.
#[derive(SimpleObject)]
pub struct BoletoCharge {
    /// 44 digits, for the bar code.
    barcode: String,
    /// 47 digits, the "linha digitável".
    digitable_line: String,
    /// The line as printed, in groups.
    formatted_line: String,
    due_date: NaiveDate,
}

pub struct Payment(pub payment::Model);

impl Payment {
    fn status(&self) -> Status {
        Status::parse(&self.0.status).unwrap_or(Status::Pending)
    }
}

#[Object]
impl Payment {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn order_id(&self) -> ID {
        ID(self.0.order_id.to_string())
    }
    async fn method(&self) -> PaymentMethod {
        Method::parse(&self.0.method).unwrap_or(Method::Cash).into()
    }
    /// `pix`, `boleto`, `stripe` or `manual`.
    async fn provider(&self) -> &str {
        &self.0.provider
    }
    #[graphql(name = "status")]
    async fn status_field(&self) -> PaymentStatus {
        self.status().into()
    }
    async fn amount(&self) -> Result<Money> {
        Ok(Money::of(self.0.amount_minor, &self.0.currency)?)
    }
    /// Refunded so far (including refunds being processed).
    async fn refunded(&self) -> Result<Money> {
        Ok(Money::of(self.0.refunded_minor, &self.0.currency)?)
    }
    /// Stripe's PaymentIntent id, the PIX txid or the boleto bar code.
    async fn provider_reference(&self) -> Option<&str> {
        self.0.provider_reference.as_deref()
    }
    /// For card payments: what the front end passes to Stripe.js to collect the card.
    async fn client_secret(&self) -> Option<&str> {
        self.0.client_secret.as_deref()
    }
    /// A hosted page to pay on, when the provider offers one.
    async fn checkout_url(&self) -> Option<&str> {
        self.0.checkout_url.as_deref()
    }
    async fn pix(&self) -> Option<PixCharge> {
        Some(PixCharge {
            br_code: self.0.pix_br_code.clone()?,
            txid: self.0.pix_txid.clone()?,
        })
    }
    async fn boleto(&self) -> Option<BoletoCharge> {
        let barcode = Barcode::parse(self.0.boleto_barcode.as_deref()?).ok()?;
        let line = barcode.to_line();
        Some(BoletoCharge {
            barcode: barcode.as_str().to_string(),
            digitable_line: line.as_str().to_string(),
            formatted_line: line.formatted(),
            due_date: self.0.boleto_due_date?,
        })
    }
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }
    async fn note(&self) -> Option<&str> {
        self.0.note.as_deref()
    }
    async fn idempotency_key(&self) -> &str {
        &self.0.idempotency_key
    }
    /// Oldest first.
    async fn refunds(&self, ctx: &Context<'_>) -> Result<Vec<Refund>> {
        Ok(loaders(ctx)?
            .load_one(RefundsOfPayment(self.0.id))
            .await
            .map_err(ApiError::from)?
            .unwrap_or_default()
            .into_iter()
            .map(Refund)
            .collect())
    }
    async fn paid_at(&self) -> Option<DateTime<Utc>> {
        self.0.paid_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

pub struct Refund(refund::Model);

#[Object]
impl Refund {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn payment_id(&self) -> ID {
        ID(self.0.payment_id.to_string())
    }
    async fn amount(&self) -> Result<Money> {
        Ok(Money::of(self.0.amount_minor, &self.0.currency)?)
    }
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }
    async fn status(&self) -> RefundStatus {
        match self.0.status.as_str() {
            "SUCCEEDED" => RefundStatus::Succeeded,
            "FAILED" => RefundStatus::Failed,
            _ => RefundStatus::Pending,
        }
    }
    async fn provider_reference(&self) -> Option<&str> {
        self.0.provider_reference.as_deref()
    }
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// An order's payment position, from its payments.
pub struct OrderBalance {
    pub status: DomainOrderPaymentStatus,
    pub paid: i64,
    pub due: i64,
    pub currency: String,
}

impl OrderBalance {
    pub fn status(&self) -> OrderPaymentStatus {
        self.status.into()
    }
    pub fn paid(&self) -> Result<Money> {
        Ok(Money::of(self.paid, &self.currency)?)
    }
    pub fn due(&self) -> Result<Money> {
        Ok(Money::of(self.due, &self.currency)?)
    }
}

#[derive(SimpleObject)]
pub struct PaymentEdge {
    cursor: String,
    node: Payment,
}

#[derive(SimpleObject)]
pub struct PaymentConnection {
    edges: Vec<PaymentEdge>,
    page_info: PageInfo,
}

/// How the company gets paid. Secrets are write-only: only whether they are set shows.
pub struct PaymentSettings(service::SettingsView);

#[Object]
impl PaymentSettings {
    async fn pix_key(&self) -> Option<&str> {
        self.0.settings.as_ref()?.pix_key.as_deref()
    }
    async fn pix_merchant_name(&self) -> Option<&str> {
        self.0.settings.as_ref()?.pix_merchant_name.as_deref()
    }
    async fn pix_merchant_city(&self) -> Option<&str> {
        self.0.settings.as_ref()?.pix_merchant_city.as_deref()
    }
    async fn boleto_bank_code(&self) -> Option<&str> {
        self.0.settings.as_ref()?.boleto_bank_code.as_deref()
    }
    async fn boleto_agency(&self) -> Option<&str> {
        self.0.settings.as_ref()?.boleto_agency.as_deref()
    }
    async fn boleto_account(&self) -> Option<&str> {
        self.0.settings.as_ref()?.boleto_account.as_deref()
    }
    async fn boleto_wallet(&self) -> Option<&str> {
        self.0.settings.as_ref()?.boleto_wallet.as_deref()
    }
    async fn stripe_secret_key_set(&self) -> bool {
        self.0
            .settings
            .as_ref()
            .is_some_and(|settings| settings.stripe_secret_key_ciphertext.is_some())
    }
    async fn stripe_webhook_secret_set(&self) -> bool {
        self.0.stripe_webhook_secret_set
    }
}

/// Gross, refunds, fees and net, in minor units of the company currency.
#[derive(SimpleObject)]
pub struct FinancialTotals {
    gross_minor: i64,
    refunds_minor: i64,
    fees_minor: i64,
    net_minor: i64,
}

impl From<Totals> for FinancialTotals {
    fn from(totals: Totals) -> Self {
        Self {
            gross_minor: totals.gross,
            refunds_minor: totals.refunds,
            fees_minor: totals.fees,
            net_minor: totals.net(),
        }
    }
}

#[derive(SimpleObject)]
pub struct MethodTotals {
    method: String,
    totals: FinancialTotals,
}

#[derive(SimpleObject)]
pub struct DayTotals {
    /// The day in the company's time zone.
    date: NaiveDate,
    totals: FinancialTotals,
}

#[derive(SimpleObject)]
pub struct FinancialSummary {
    currency: String,
    totals: FinancialTotals,
    by_method: Vec<MethodTotals>,
    by_day: Vec<DayTotals>,
}

#[derive(InputObject, Default)]
pub struct PaymentFilterInput {
    status: Option<PaymentStatus>,
    method: Option<PaymentMethod>,
    order_id: Option<ID>,
}

#[derive(InputObject)]
pub struct CreatePaymentInput {
    order_id: ID,
    method: PaymentMethod,
    /// Defaults to what the order still owes less what its open payments already ask for. While
    /// a payment of the order is open (pending, authorized, or a declined card whose intent the
    /// payer may retry) a new one may ask for no more than that (`CONFLICT`).
    amount_minor: Option<i64>,
    /// The same key with the same input returns the same payment; keys are per company.
    idempotency_key: String,
}

#[derive(InputObject)]
pub struct RefundPaymentInput {
    payment_id: ID,
    /// Defaults to everything not refunded yet.
    amount_minor: Option<i64>,
    reason: Option<String>,
    idempotency_key: String,
}

/// Changes to the payment settings: omitted fields stay, an empty string clears one.
#[derive(InputObject, Default)]
pub struct UpdatePaymentSettingsInput {
    pix_key: Option<String>,
    pix_merchant_name: Option<String>,
    pix_merchant_city: Option<String>,
    boleto_bank_code: Option<String>,
    boleto_agency: Option<String>,
    boleto_account: Option<String>,
    boleto_wallet: Option<String>,
    /// Write-only; stored encrypted.
    stripe_secret_key: Option<String>,
    /// Write-only; verifies `/webhooks/in/stripe/{companyId}`.
    stripe_webhook_secret: Option<String>,
}

#[derive(Default)]
pub struct PaymentQuery;

#[Object]
impl PaymentQuery {
    /// The company's payments, newest first (`payments:read`).
    async fn payments(
        &self,
        ctx: &Context<'_>,
        filter: Option<PaymentFilterInput>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<PaymentConnection> {
        let filter = filter.unwrap_or_default();
        let filter = PaymentFilter {
            status: filter.status.map(Into::into),
            method: filter.method.map(Into::into),
            order_id: filter
                .order_id
                .map(|id| parse_id("filter.orderId", &id))
                .transpose()?,
        };
        let after = parse_id_cursor("after", after.as_deref())?;
        let size = page_size(first);
        let rows = service::list(state(ctx)?, actor(ctx)?, &filter, size + 1, after).await?;
        let (rows, page_info) = id_page(rows, size, after.is_some(), |payment| payment.id);
        Ok(PaymentConnection {
            edges: rows
                .into_iter()
                .map(|(cursor, payment)| PaymentEdge {
                    cursor,
                    node: Payment(payment),
                })
                .collect(),
            page_info,
        })
    }

    /// A payment of the company; null for any other id.
    async fn payment(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Payment>> {
        let id = parse_id("id", &id)?;
        Ok(service::get(state(ctx)?, actor(ctx)?, id)
            .await?
            .map(Payment))
    }

    /// Admins only (`settings:manage`).
    async fn payment_settings(&self, ctx: &Context<'_>) -> Result<PaymentSettings> {
        Ok(PaymentSettings(
            service::settings(state(ctx)?, actor(ctx)?).await?,
        ))
    }

    /// Money in and out between `from` (inclusive) and `to` (exclusive), from the ledger
    /// (`reports:read`).
    async fn financial_summary(
        &self,
        ctx: &Context<'_>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<FinancialSummary> {
        let summary = service::financial_summary(state(ctx)?, actor(ctx)?, from, to).await?;
        Ok(FinancialSummary {
            currency: summary.currency,
            totals: summary.totals.into(),
            by_method: summary
                .by_method
                .into_iter()
                .map(|(method, totals)| MethodTotals {
                    method,
                    totals: totals.into(),
                })
                .collect(),
            by_day: summary
                .by_day
                .into_iter()
                .map(|(date, totals)| DayTotals {
                    date,
                    totals: totals.into(),
                })
                .collect(),
        })
    }
}

#[derive(Default)]
pub struct PaymentMutation;

#[Object]
impl PaymentMutation {
    /// Starts collecting money for an order (`payments:create`).
    async fn create_payment(
        &self,
        ctx: &Context<'_>,
        input: CreatePaymentInput,
    ) -> Result<Payment> {
        let request = NewPayment {
            order_id: parse_id("input.orderId", &input.order_id)?,
            method: input.method.into(),
            amount_minor: input.amount_minor,
            idempotency_key: input.idempotency_key,
        };
        Ok(Payment(
            service::create(state(ctx)?, actor(ctx)?, request).await?,
        ))
    }

    /// Captures an authorized card payment (`payments:update`).
    async fn capture_payment(&self, ctx: &Context<'_>, id: ID) -> Result<Payment> {
        let id = parse_id("id", &id)?;
        Ok(Payment(
            service::capture(state(ctx)?, actor(ctx)?, id).await?,
        ))
    }

    /// Cancels a payment not collected yet (`payments:update`).
    async fn cancel_payment(&self, ctx: &Context<'_>, id: ID) -> Result<Payment> {
        let id = parse_id("id", &id)?;
        Ok(Payment(
            service::cancel(state(ctx)?, actor(ctx)?, id).await?,
        ))
    }

    /// Confirms cash, or a PIX / boleto seen in the bank, as received (`payments:update`).
    async fn mark_payment_paid(
        &self,
        ctx: &Context<'_>,
        id: ID,
        note: Option<String>,
    ) -> Result<Payment> {
        let id = parse_id("id", &id)?;
        Ok(Payment(
            service::mark_paid(state(ctx)?, actor(ctx)?, id, note).await?,
        ))
    }

    /// Gives money back (`payments:refund`); refunds never exceed what was paid.
    async fn refund_payment(&self, ctx: &Context<'_>, input: RefundPaymentInput) -> Result<Refund> {
        let request = NewRefund {
            payment_id: parse_id("input.paymentId", &input.payment_id)?,
            amount_minor: input.amount_minor,
            reason: input.reason,
            idempotency_key: input.idempotency_key,
        };
        Ok(Refund(
            service::refund(state(ctx)?, actor(ctx)?, request).await?,
        ))
    }

    /// Admins only (`settings:manage`).
    async fn update_payment_settings(
        &self,
        ctx: &Context<'_>,
        input: UpdatePaymentSettingsInput,
    ) -> Result<PaymentSettings> {
        let changes = SettingsChanges {
            pix_key: input.pix_key,
            pix_merchant_name: input.pix_merchant_name,
            pix_merchant_city: input.pix_merchant_city,
            boleto_bank_code: input.boleto_bank_code,
            boleto_agency: input.boleto_agency,
            boleto_account: input.boleto_account,
            boleto_wallet: input.boleto_wallet,
            stripe_secret_key: input.stripe_secret_key,
            stripe_webhook_secret: input.stripe_webhook_secret,
        };
        Ok(PaymentSettings(
            service::update_settings(state(ctx)?, actor(ctx)?, changes).await?,
        ))
    }
}
