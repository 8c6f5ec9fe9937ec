//! `Money`: an amount in minor units with its currency, formatted in the company's locale.

use async_graphql::{Context, Object};

use super::{
    context::loaders,
    loaders::CompanyKey,
    plain::{Json, PlainObject, Selected},
};
use crate::{
    domain::{Currency, money::Money as DomainMoney},
    error::{ApiError, ApiResult},
};

/// Money in integer minor units of an ISO 4217 currency (BRL 12.34 = 1234).
pub struct Money(pub DomainMoney);

impl Money {
    pub fn of(minor: i64, currency: &str) -> ApiResult<Self> {
        let currency = Currency::parse(currency)
            .map_err(|message| ApiError::internal(anyhow::anyhow!("stored currency: {message}")))?;
        Ok(Self(DomainMoney::new(minor, currency)))
    }
}

#[Object]
impl Money {
    /// The amount in minor units (cents for BRL). A 64-bit integer; amounts stay far below 2^53.
    async fn amount_minor(&self) -> i64 {
        self.0.minor()
    }
    /// ISO 4217 code.
    async fn currency(&self) -> String {
        self.0.currency().to_string()
    }
    /// In the company's locale, e.g. `R$ 12,34`.
    async fn formatted(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        let locale = match loaders(ctx)?
            .load_one(CompanyKey)
            .await
            .map_err(ApiError::from)?
        {
            Some(company) => company.locale,
            None => "pt-BR".to_string(),
        };
        Ok(self.0.format(&locale))
    }
}

/// `formatted` depends on the company's locale, which the executor loads.
impl PlainObject for Money {
    const TYPE_NAME: &'static str = "Money";

    fn plain_field(&self, field: &Selected<'_>, json: &mut Json) -> Option<()> {
        match field.name() {
            "amountMinor" => json.scalar(&self.0.minor()),
            "currency" => json.text(self.0.currency().as_str()),
            _ => return None,
        }
        Some(())
    }
}
