//! The platform operator's view: every company, and the power to create and suspend them.
//! Operators exist only through `platform create-operator`.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};

use super::{
    context::{client_ip, operator, parse_id, state},
    identity::{Company, User, company_defaults, field},
};
use crate::{
    domain::{BusinessType, CompanyStatus, Email, Slug},
    services::{
        companies::{self, NewCompany},
        identity,
    },
};

const MAX_PAGE: i32 = 100;

#[derive(SimpleObject)]
pub struct OperatorAuthPayload {
    access_token: String,
    expires_in: i64,
    user: User,
}

#[derive(SimpleObject)]
pub struct CompanyPage {
    companies: Vec<Company>,
    total_count: u64,
}

#[derive(InputObject)]
pub struct CreateCompanyInput {
    name: String,
    slug: String,
    business_type: BusinessType,
    admin_email: String,
    admin_name: String,
    /// Optional: without one the admin cannot log in until a password is set.
    admin_password: Option<String>,
    locale: Option<String>,
    timezone: Option<String>,
    currency: Option<String>,
}

#[derive(Default)]
pub struct OperatorQuery;

#[Object]
impl OperatorQuery {
    /// Every company, newest first (operators only).
    async fn operator_companies(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
        #[graphql(default = 0)] offset: i32,
    ) -> Result<CompanyPage> {
        operator(ctx)?;
        let first = u64::try_from(first.clamp(1, MAX_PAGE)).unwrap_or(50);
        let offset = u64::try_from(offset.max(0)).unwrap_or(0);
        let (companies, total_count) = companies::list_all(state(ctx)?, first, offset).await?;
        Ok(CompanyPage {
            companies: companies.into_iter().map(Company).collect(),
            total_count,
        })
    }
}

#[derive(Default)]
pub struct OperatorMutation;

#[Object]
impl OperatorMutation {
    /// Logs a platform operator in (rate-limited like `login`).
    async fn operator_login(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
    ) -> Result<OperatorAuthPayload> {
        let session =
            identity::operator_login(state(ctx)?, &email, password, client_ip(ctx)).await?;
        Ok(OperatorAuthPayload {
            access_token: session.access_token,
            expires_in: session.expires_in,
            user: User(session.user),
        })
    }

    /// Creates a company and its first ADMIN (operators only).
    async fn operator_create_company(
        &self,
        ctx: &Context<'_>,
        input: CreateCompanyInput,
    ) -> Result<Company> {
        operator(ctx)?;
        let (locale, timezone, currency) = company_defaults(
            input.locale.as_deref(),
            input.timezone.as_deref(),
            input.currency.as_deref(),
        )?;
        let new = NewCompany {
            name: input.name,
            slug: Slug::parse(&input.slug).map_err(field("input.slug"))?,
            business_type: input.business_type,
            locale,
            timezone,
            currency,
        };
        let admin_email = Email::parse(&input.admin_email).map_err(field("input.adminEmail"))?;
        let company = companies::create_for_operator(
            state(ctx)?,
            new,
            admin_email,
            &input.admin_name,
            input.admin_password,
        )
        .await?;
        Ok(Company(company))
    }

    /// Suspends a company: its tokens and keys stop working at once (operators only).
    async fn operator_suspend_company(&self, ctx: &Context<'_>, id: ID) -> Result<Company> {
        operator(ctx)?;
        let id = parse_id("id", &id)?;
        Ok(Company(
            companies::set_status(state(ctx)?, id, CompanyStatus::Suspended).await?,
        ))
    }

    /// Sets how many API calls each actor of the company may make per rate-limit window;
    /// null returns to the server default (operators only).
    async fn operator_set_api_rate_limit(
        &self,
        ctx: &Context<'_>,
        id: ID,
        api_calls_per_window: Option<u32>,
    ) -> Result<Company> {
        operator(ctx)?;
        let id = parse_id("id", &id)?;
        Ok(Company(
            companies::set_api_rate_limit(state(ctx)?, id, api_calls_per_window).await?,
        ))
    }

    /// Lifts a suspension (operators only).
    async fn operator_reactivate_company(&self, ctx: &Context<'_>, id: ID) -> Result<Company> {
        operator(ctx)?;
        let id = parse_id("id", &id)?;
        Ok(Company(
            companies::set_status(state(ctx)?, id, CompanyStatus::Active).await?,
        ))
    }
}
