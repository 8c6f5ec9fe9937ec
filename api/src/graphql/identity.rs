//! Companies, users and sessions: sign-up, login, tokens, and the company's own settings.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use entity::{company, user};

use super::context::{actor, client_ip, parse_id, state};
use crate::{
    domain::{BusinessType, Currency, Email, Locale, Slug, Timezone},
    error::ApiError,
    services::{
        companies::{self, CompanyChanges},
        identity::{self, NewSignUp, Session},
        users,
    },
};

/// A tenant: a business running on the platform.
pub struct Company(pub company::Model);

#[Object]
impl Company {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Unique URL-safe handle, used to choose the company at login.
    async fn slug(&self) -> &str {
        &self.0.slug
    }
    async fn business_type(&self) -> Result<BusinessType> {
        Ok(self
            .0
            .business_type
            .parse::<BusinessType>()
            .map_err(|message| ApiError::internal(anyhow::anyhow!(message)))?)
    }
    /// BCP 47 locale: `pt-BR`, `en-US` or `es-ES`.
    async fn locale(&self) -> &str {
        &self.0.locale
    }
    /// IANA time zone, e.g. `America/Sao_Paulo`.
    async fn timezone(&self) -> &str {
        &self.0.timezone
    }
    /// ISO 4217 currency of prices and payments.
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    /// `ACTIVE` or `SUSPENDED`.
    async fn status(&self) -> &str {
        &self.0.status
    }
    /// API calls each actor may make per rate-limit window; null means the server default.
    async fn api_rate_limit(&self) -> Option<i32> {
        self.0.api_rate_limit
    }
}

/// A person. One user may belong to several companies, with different roles in each.
pub struct User(pub user::Model);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
}

/// Tokens for a member acting in one company.
#[derive(SimpleObject)]
pub struct AuthPayload {
    /// JWT for `Authorization: Bearer …`, valid for `expiresIn` seconds.
    access_token: String,
    /// Opaque, single use: exchange it with `refreshToken` for a new pair. Valid 30 days.
    refresh_token: String,
    /// Seconds until the access token expires.
    expires_in: i64,
    user: User,
    company: Company,
}

impl From<Session> for AuthPayload {
    fn from(session: Session) -> Self {
        Self {
            access_token: session.access_token,
            refresh_token: session.refresh_token,
            expires_in: session.expires_in,
            user: User(session.user),
            company: Company(session.company),
        }
    }
}

/// Creates a company and its first administrator.
#[derive(InputObject)]
pub struct SignUpInput {
    company_name: String,
    /// 3–64 lower-case letters, digits and hyphens; unique.
    company_slug: String,
    business_type: BusinessType,
    name: String,
    email: String,
    /// At least 10 characters.
    password: String,
    /// Defaults to `pt-BR`.
    locale: Option<String>,
    /// Defaults to `America/Sao_Paulo`.
    timezone: Option<String>,
    /// Defaults to `BRL`.
    currency: Option<String>,
}

/// Maps a domain parse error onto the input field it came from.
pub(super) fn field(name: &'static str) -> impl Fn(String) -> ApiError {
    move |message| ApiError::validation(name, message)
}

/// A new company's locale, time zone and currency, each defaulted when not given.
pub(super) fn company_defaults(
    locale: Option<&str>,
    timezone: Option<&str>,
    currency: Option<&str>,
) -> Result<(Locale, Timezone, Currency), ApiError> {
    Ok((
        locale
            .map(Locale::parse)
            .transpose()
            .map_err(field("input.locale"))?
            .unwrap_or(Locale::DEFAULT),
        Timezone::parse(timezone.unwrap_or(Timezone::DEFAULT)).map_err(field("input.timezone"))?,
        currency
            .map(Currency::parse)
            .transpose()
            .map_err(field("input.currency"))?
            .unwrap_or(Currency::BRL),
    ))
}

impl TryFrom<SignUpInput> for NewSignUp {
    type Error = ApiError;

    fn try_from(input: SignUpInput) -> Result<Self, ApiError> {
        let (locale, timezone, currency) = company_defaults(
            input.locale.as_deref(),
            input.timezone.as_deref(),
            input.currency.as_deref(),
        )?;
        Ok(Self {
            company_name: input.company_name,
            company_slug: Slug::parse(&input.company_slug).map_err(field("input.companySlug"))?,
            business_type: input.business_type,
            name: input.name,
            email: Email::parse(&input.email).map_err(field("input.email"))?,
            password: input.password,
            locale,
            timezone,
            currency,
        })
    }
}

#[derive(InputObject)]
pub struct LoginInput {
    email: String,
    password: String,
    /// Needed when the person belongs to several companies.
    company_slug: Option<String>,
}

/// Changes to the company; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateCompanyInput {
    name: Option<String>,
    locale: Option<String>,
    timezone: Option<String>,
    currency: Option<String>,
}

impl TryFrom<UpdateCompanyInput> for CompanyChanges {
    type Error = ApiError;

    fn try_from(input: UpdateCompanyInput) -> Result<Self, ApiError> {
        Ok(Self {
            name: input.name,
            locale: input
                .locale
                .as_deref()
                .map(Locale::parse)
                .transpose()
                .map_err(field("input.locale"))?,
            timezone: input
                .timezone
                .as_deref()
                .map(Timezone::parse)
                .transpose()
                .map_err(field("input.timezone"))?,
            currency: input
                .currency
                .as_deref()
                .map(Currency::parse)
                .transpose()
                .map_err(field("input.currency"))?,
        })
    }
}

#[derive(Default)]
pub struct IdentityQuery;

#[Object]
impl IdentityQuery {
    /// The logged-in person.
    async fn me(&self, ctx: &Context<'_>) -> Result<User> {
        let actor = actor(ctx)?;
        let user_id = actor
            .user_id()
            .ok_or_else(|| ApiError::forbidden("an API key is not a person"))?;
        let user = users::user_by_id(state(ctx)?, user_id).await?;
        Ok(User(user))
    }

    /// The company the request acts in.
    async fn company(&self, ctx: &Context<'_>) -> Result<Company> {
        Ok(Company(companies::current(state(ctx)?, actor(ctx)?).await?))
    }
}

#[derive(Default)]
pub struct IdentityMutation;

#[Object]
impl IdentityMutation {
    /// Creates a company with its first ADMIN and logs them in. Can be disabled by the server.
    async fn sign_up(&self, ctx: &Context<'_>, input: SignUpInput) -> Result<AuthPayload> {
        let input = NewSignUp::try_from(input)?;
        Ok(identity::sign_up(state(ctx)?, input, client_ip(ctx))
            .await?
            .into())
    }

    /// Logs in with email and password. Limited to 5 attempts per 15 minutes per account and
    /// per client address; every attempt counts, also when aliased or batched.
    async fn login(&self, ctx: &Context<'_>, input: LoginInput) -> Result<AuthPayload> {
        let session = identity::login(
            state(ctx)?,
            &input.email,
            input.password,
            input.company_slug.as_deref(),
            client_ip(ctx),
        )
        .await?;
        Ok(session.into())
    }

    /// Exchanges a refresh token for a new pair. Each token works once; presenting a used one
    /// again revokes every token descended from the same login.
    async fn refresh_token(&self, ctx: &Context<'_>, refresh_token: String) -> Result<AuthPayload> {
        Ok(
            identity::refresh(state(ctx)?, &refresh_token, client_ip(ctx))
                .await?
                .into(),
        )
    }

    /// Revokes the refresh token and every token descended from the same login.
    async fn logout(&self, ctx: &Context<'_>, refresh_token: String) -> Result<bool> {
        Ok(identity::logout(state(ctx)?, &refresh_token).await?)
    }

    /// New tokens for another company the logged-in person belongs to.
    async fn switch_company(&self, ctx: &Context<'_>, company_id: ID) -> Result<AuthPayload> {
        let company_id = parse_id("companyId", &company_id)?;
        Ok(
            identity::switch_company(state(ctx)?, actor(ctx)?, company_id)
                .await?
                .into(),
        )
    }

    /// Changes the logged-in person's password and ends all their sessions.
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        current_password: String,
        new_password: String,
    ) -> Result<bool> {
        Ok(
            identity::change_password(state(ctx)?, actor(ctx)?, current_password, new_password)
                .await?,
        )
    }

    /// Changes the company's name, locale, time zone or currency (`settings:manage`).
    async fn update_company(
        &self,
        ctx: &Context<'_>,
        input: UpdateCompanyInput,
    ) -> Result<Company> {
        let changes = CompanyChanges::try_from(input)?;
        Ok(Company(
            companies::update(state(ctx)?, actor(ctx)?, changes).await?,
        ))
    }
}
