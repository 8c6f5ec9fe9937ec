//! Identity: sign-up, login, refresh-token rotation, logout, switching company, password
//! changes, and turning credentials into a [`Viewer`].
//!
//! Users are global; what a user may do lives in a company. Lookups here start from a
//! credential (an email, a token hash), before any actor exists — they are the only reads that
//! are not scoped to one company, and they return at most the credential holder's own rows.

use std::{net::IpAddr, time::Duration};

use chrono::{DateTime, Utc};
use entity::{api_key, company, membership, refresh_token, user};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, JoinType,
    QueryFilter, QuerySelect, RelationTrait, TransactionTrait, sea_query::Expr,
};
use uuid::Uuid;

use super::{companies, users::insert_user};
use crate::{
    auth::{
        self, API_KEY_PREFIX, Actor, Principal, Viewer, api_key_subject, jwt, password,
        secret_hash, user_subject,
    },
    db::tenant::{CompanyId, Intent, TenantTxn, global},
    domain::{BusinessType, CompanyStatus, Currency, Email, Locale, Slug, Timezone},
    error::{ApiError, ApiResult},
    rate_limit::Limit,
    rbac::MemberState,
    state::AppState,
};

pub const REFRESH_TTL_DAYS: i64 = 30;
/// `lastUsedAt` of an API key is written at most this often, not on every request.
const API_KEY_TOUCH_INTERVAL_SECS: i64 = 60;

/// Tokens for a user acting in a company.
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub user: user::Model,
    pub company: company::Model,
}

/// A platform operator's access token (operators get no refresh token: they log in again).
pub struct OperatorSession {
    pub access_token: String,
    pub expires_in: i64,
    pub user: user::Model,
}

/// What `signUp` needs, parsed.
pub struct NewSignUp {
    pub company_name: String,
    pub company_slug: Slug,
    pub business_type: BusinessType,
    pub name: String,
    pub email: Email,
    pub password: String,
    pub locale: Locale,
    pub timezone: Timezone,
    pub currency: Currency,
}

/// The credentials a request presented.
pub enum Credentials {
    None,
    Bearer(String),
    ApiKey(String),
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthenticated("invalid email or password")
}

/// A suspended company's members and keys can do nothing (`FORBIDDEN`, `COMPANY_SUSPENDED`).
pub(super) fn ensure_active(status: &str) -> ApiResult<()> {
    if status == CompanyStatus::Active.as_str() {
        Ok(())
    } else {
        Err(ApiError::Forbidden {
            message: "the company is suspended".into(),
            reason: Some("COMPANY_SUSPENDED"),
        })
    }
}

/// The rate-limit key of a client address: IPv6 clients usually hold a whole /64, so they are
/// counted per /64 rather than per address; an IPv4-mapped IPv6 address is its IPv4 address.
fn client_key(client: IpAddr) -> String {
    match client.to_canonical() {
        IpAddr::V4(address) => address.to_string(),
        IpAddr::V6(address) => {
            let segments = address.segments();
            format!(
                "{:x}:{:x}:{:x}:{:x}::/64",
                segments[0], segments[1], segments[2], segments[3]
            )
        }
    }
}

fn limit(max: u32, window_secs: u64) -> Limit {
    Limit::per(max, Duration::from_secs(window_secs))
}

/// Creates a company with its first ADMIN and logs them in.
#[tracing::instrument(skip_all, fields(company_slug = %input.company_slug.as_str()))]
pub async fn sign_up(state: &AppState, input: NewSignUp, client: IpAddr) -> ApiResult<Session> {
    if !state.settings.signup_enabled {
        return Err(ApiError::forbidden("sign-up is disabled on this server"));
    }
    let limits = &state.settings.rate_limits;
    state
        .limiter
        .hit(
            &format!("signup:ip:{}", client_key(client)),
            limit(limits.signups, limits.signup_window_secs),
        )
        .await?;
    password::validate("input.password", &input.password)?;
    let password_hash = password::hash(input.password.clone()).await?;

    let txn = state
        .begin_for_company(CompanyId::new_company(), "sign-up", Intent::ChangeAccess)
        .await?;
    // The unique email answers for a taken one.
    let user = insert_user(
        &txn,
        &input.email,
        &input.name,
        Some(password_hash),
        input.locale,
    )
    .await
    .map_err(|error| match error {
        ApiError::Conflict(_) => ApiError::Conflict(
            "an account with this email exists already: log in, then create the company".into(),
        ),
        other => other,
    })?;
    let company = companies::create_with_admin(
        &txn,
        companies::NewCompany {
            name: input.company_name,
            slug: input.company_slug,
            business_type: input.business_type,
            locale: input.locale,
            timezone: input.timezone,
            currency: input.currency,
        },
        user.id,
    )
    .await?;
    let session = issue_session(state, &txn, user, company, None).await?;
    txn.commit().await?;
    tracing::info!(company_id = %session.company.id, "company signed up");
    Ok(session)
}

/// Logs a member in; `company_slug` chooses among several companies.
#[tracing::instrument(skip_all)]
pub async fn login(
    state: &AppState,
    email: &str,
    password: String,
    company_slug: Option<&str>,
    client: IpAddr,
) -> ApiResult<Session> {
    let user = verify_password(state, email, password, client).await?;
    let companies = member_companies(state, user.id).await?;
    let company = match company_slug {
        Some(slug) => companies
            .into_iter()
            .find(|company| company.slug.eq_ignore_ascii_case(slug.trim()))
            .ok_or_else(|| {
                ApiError::validation("input.companySlug", "you are not a member of that company")
            })?,
        None => match <[company::Model; 1]>::try_from(companies) {
            Ok([only]) => only,
            Err(companies) if companies.is_empty() => return Err(invalid_credentials()),
            Err(companies) => {
                let slugs: Vec<&str> = companies.iter().map(|c| c.slug.as_str()).collect();
                return Err(ApiError::validation(
                    "input.companySlug",
                    format!(
                        "you belong to several companies; choose one with companySlug: {}",
                        slugs.join(", ")
                    ),
                ));
            }
        },
    };
    ensure_active(&company.status)?;
    let txn = state
        .begin_for_company(CompanyId::from_row(company.id), "login", Intent::Write)
        .await?;
    let session = issue_session(state, &txn, user, company, None).await?;
    txn.commit().await?;
    Ok(session)
}

/// Logs a platform operator in (outside every company).
pub async fn operator_login(
    state: &AppState,
    email: &str,
    password: String,
    client: IpAddr,
) -> ApiResult<OperatorSession> {
    let user = verify_password(state, email, password, client).await?;
    if !user.is_operator {
        return Err(invalid_credentials());
    }
    Ok(OperatorSession {
        access_token: state.jwt.issue(user.id, None)?,
        expires_in: jwt::ACCESS_TTL_SECS,
        user,
    })
}

/// Checks the password under three limits: failures per account, failures per client address,
/// and (generous, since people behind one NAT share an address) successes per address.
///
/// Every attempt is counted as a failure before the password is checked and a success takes
/// its count back, so aliasing, batching or racing a login N times costs N attempts.
async fn verify_password(
    state: &AppState,
    email: &str,
    password: String,
    client: IpAddr,
) -> ApiResult<user::Model> {
    let limits = &state.settings.rate_limits;
    let window = limits.login_window_secs;
    let email = Email::parse(email).map_err(|_| invalid_credentials());
    let account_key = match &email {
        Ok(email) => format!("login:failed:account:{email}"),
        Err(_) => "login:failed:account:-".to_string(),
    };
    let address = client_key(client);
    let address_key = format!("login:failed:ip:{address}");
    state
        .limiter
        .hit(&account_key, limit(limits.login_attempts, window))
        .await?;
    state
        .limiter
        .hit(
            &address_key,
            limit(limits.login_failures_per_address, window),
        )
        .await?;
    let email = email?;
    let user = global::find::<user::Entity>()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(&state.system_db)
        .await?;
    let stored = user.as_ref().and_then(|user| user.password_hash.clone());
    if !password::verify(password, stored).await? {
        tracing::info!("failed login");
        return Err(invalid_credentials());
    }
    let user = user.ok_or_else(invalid_credentials)?;
    state.limiter.refund(&account_key).await?;
    state.limiter.refund(&address_key).await?;
    state
        .limiter
        .hit(
            &format!("login:succeeded:ip:{address}"),
            limit(limits.login_successes_per_address, window),
        )
        .await?;
    Ok(user)
}

/// The companies a user belongs to, by slug.
async fn member_companies(state: &AppState, user_id: Uuid) -> ApiResult<Vec<company::Model>> {
    #[allow(clippy::disallowed_methods)] // cross-tenant: logging in finds the user's companies
    let rows = membership::Entity::find()
        .filter(membership::Column::UserId.eq(user_id))
        .find_also_related(company::Entity)
        .all(&state.system_db)
        .await?;
    let mut companies: Vec<company::Model> = rows
        .into_iter()
        .filter_map(|(_, company)| company)
        .collect();
    companies.sort_by(|a, b| a.slug.cmp(&b.slug));
    Ok(companies)
}

/// The refresh token a rotation issues: the successor derived from the token it replaces, in
/// that token's family.
pub(super) struct Rotation {
    family_id: Uuid,
    successor: String,
}

/// Signs an access token and stores a new refresh token: a random one in a new family, or the
/// successor of a rotation.
/// `txn` acts for `company`.
pub(super) async fn issue_session(
    state: &AppState,
    txn: &TenantTxn,
    user: user::Model,
    company: company::Model,
    rotation: Option<Rotation>,
) -> ApiResult<Session> {
    let (family_id, refresh_token) = match rotation {
        Some(rotation) => (rotation.family_id, rotation.successor),
        None => (Uuid::now_v7(), auth::random_token(32)),
    };
    let now = Utc::now();
    txn.insert(refresh_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user.id),
        family_id: Set(family_id),
        token_hash: Set(secret_hash(&refresh_token)),
        expires_at: Set(now + chrono::Duration::days(REFRESH_TTL_DAYS)),
        used_at: Set(None),
        revoked_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    })
    .await?;
    Ok(Session {
        access_token: state.jwt.issue(user.id, Some(company.id))?,
        refresh_token,
        expires_in: jwt::ACCESS_TTL_SECS,
        user,
        company,
    })
}

fn invalid_refresh() -> ApiError {
    ApiError::unauthenticated("the refresh token is invalid, expired or revoked")
}

/// Rotates a refresh token. The token is consumed by a conditional update, so of two
/// concurrent uses exactly one rotates it. Its successor is derived from it
/// ([`JwtKeys::refresh_successor`](crate::auth::jwt::JwtKeys::refresh_successor)), so the
/// other use, and any within `refresh_grace_secs` of the rotation (two tabs refreshing at
/// once), gets the same successor while that is unused. Presenting a rotated token later is
/// treated as theft (RFC 9700): the whole family is revoked, including the newest token.
#[tracing::instrument(skip_all)]
pub async fn refresh(state: &AppState, token: &str, client: IpAddr) -> ApiResult<Session> {
    let limits = &state.settings.rate_limits;
    state
        .limiter
        .hit(
            &format!("refresh:ip:{}", client_key(client)),
            // A refresh token cannot be guessed; refusing would log everyone out.
            limit(limits.refreshes, limits.refresh_window_secs).or_per_instance(),
        )
        .await?;
    let hash = secret_hash(token);
    let Some(found) = by_secret(state, &hash).await? else {
        return Err(invalid_refresh());
    };
    let txn = state
        .begin_for_company(
            CompanyId::from_row(found.company_id),
            "refresh",
            Intent::Write,
        )
        .await?;
    let now = Utc::now();
    let consumed = txn
        .update::<refresh_token::Entity>()
        .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
        .col_expr(refresh_token::Column::UpdatedAt, Expr::value(now))
        .filter(refresh_token::Column::TokenHash.eq(&hash))
        .filter(refresh_token::Column::UsedAt.is_null())
        .filter(refresh_token::Column::RevokedAt.is_null())
        .filter(refresh_token::Column::ExpiresAt.gt(now))
        .exec(&txn)
        .await?;
    let Some(row) = txn
        .find::<refresh_token::Entity>()
        .filter(refresh_token::Column::TokenHash.eq(&hash))
        .one(&txn)
        .await?
    else {
        return Err(invalid_refresh());
    };
    if consumed.rows_affected != 1 {
        if let Some(session) = successor_within_grace(state, &txn, &row, token, now).await? {
            txn.commit().await?;
            return Ok(session);
        }
        if row.used_at.is_some() && row.revoked_at.is_none() {
            revoke_family(&txn, row.family_id, now).await?;
            txn.commit().await?;
            tracing::warn!(user_id = %row.user_id, family_id = %row.family_id,
                "refresh token reused: family revoked");
        }
        return Err(invalid_refresh());
    }
    let (user, company) = membership_of(&txn, row.user_id, row.company_id)
        .await?
        .ok_or_else(invalid_refresh)?;
    ensure_active(&company.status)?;
    let rotation = Rotation {
        family_id: row.family_id,
        successor: state.jwt.refresh_successor(token),
    };
    let session = issue_session(state, &txn, user, company, Some(rotation)).await?;
    txn.commit().await?;
    Ok(session)
}

/// The session of a token's successor when the token was rotated less than
/// `refresh_grace_secs` ago and the successor is still unused and valid; `None` otherwise.
/// The rotation committed before this reads (the conditional update waited for it), so the
/// successor's row is there when it exists.
async fn successor_within_grace(
    state: &AppState,
    txn: &TenantTxn,
    row: &refresh_token::Model,
    token: &str,
    now: DateTime<Utc>,
) -> ApiResult<Option<Session>> {
    let grace = chrono::Duration::seconds(
        i64::try_from(state.settings.refresh_grace_secs)
            .unwrap_or(i64::MAX)
            .min(REFRESH_TTL_DAYS * 86_400),
    );
    let rotated_moments_ago = row
        .used_at
        .is_some_and(|used_at| now.signed_duration_since(used_at) < grace);
    if !rotated_moments_ago || row.revoked_at.is_some() {
        return Ok(None);
    }
    let successor = state.jwt.refresh_successor(token);
    let unused = txn
        .find::<refresh_token::Entity>()
        .filter(refresh_token::Column::TokenHash.eq(secret_hash(&successor)))
        .filter(refresh_token::Column::FamilyId.eq(row.family_id))
        .filter(refresh_token::Column::UsedAt.is_null())
        .filter(refresh_token::Column::RevokedAt.is_null())
        .filter(refresh_token::Column::ExpiresAt.gt(now))
        .one(txn)
        .await?
        .is_some();
    if !unused {
        return Ok(None);
    }
    let (user, company) = membership_of(txn, row.user_id, row.company_id)
        .await?
        .ok_or_else(invalid_refresh)?;
    ensure_active(&company.status)?;
    Ok(Some(Session {
        access_token: state.jwt.issue(user.id, Some(company.id))?,
        refresh_token: successor,
        expires_in: jwt::ACCESS_TTL_SECS,
        user,
        company,
    }))
}

async fn revoke_family(txn: &TenantTxn, family_id: Uuid, now: DateTime<Utc>) -> ApiResult<()> {
    txn.update::<refresh_token::Entity>()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
        .col_expr(refresh_token::Column::UpdatedAt, Expr::value(now))
        .filter(refresh_token::Column::FamilyId.eq(family_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(txn)
        .await?;
    Ok(())
}

/// Revokes the family of `token`; unknown tokens are accepted silently (logging out twice is fine).
pub async fn logout(state: &AppState, token: &str) -> ApiResult<bool> {
    if let Some(row) = by_secret(state, &secret_hash(token)).await? {
        let txn = state
            .begin_for_company(CompanyId::from_row(row.company_id), "logout", Intent::Write)
            .await?;
        revoke_family(&txn, row.family_id, Utc::now()).await?;
        txn.commit().await?;
    }
    Ok(true)
}

/// The refresh token whose secret hashes to `hash`, in whichever company it was issued.
async fn by_secret(state: &AppState, hash: &str) -> ApiResult<Option<refresh_token::Model>> {
    #[allow(clippy::disallowed_methods)] // cross-tenant: the holder of the secret is its user
    let row = refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(hash))
        .one(&state.system_db)
        .await?;
    Ok(row)
}

/// New tokens for the same user in another company they belong to.
pub async fn switch_company(
    state: &AppState,
    actor: &Actor,
    company_id: Uuid,
) -> ApiResult<Session> {
    let user_id = actor
        .user_id()
        .ok_or_else(|| ApiError::forbidden("API keys belong to one company and cannot switch"))?;
    let (user, company) = membership_of(&state.system_db, user_id, company_id)
        .await?
        .ok_or(ApiError::NotFound("company"))?;
    ensure_active(&company.status)?;
    let txn = state
        .begin_for_company(
            CompanyId::from_row(company.id),
            "switch company",
            Intent::Write,
        )
        .await?;
    let session = issue_session(state, &txn, user, company, None).await?;
    txn.commit().await?;
    Ok(session)
}

/// Changes the actor's password; every refresh token of the user is revoked and access tokens
/// issued before the change stop working.
pub async fn change_password(
    state: &AppState,
    actor: &Actor,
    current: String,
    new: String,
) -> ApiResult<bool> {
    let user_id = actor
        .user_id()
        .ok_or_else(|| ApiError::forbidden("API keys have no password"))?;
    password::validate("newPassword", &new)?;
    let limits = &state.settings.rate_limits;
    state
        .limiter
        .hit(
            &format!("password:user:{user_id}"),
            limit(limits.login_attempts, limits.login_window_secs),
        )
        .await?;
    let user = global::find::<user::Entity>()
        .filter(user::Column::Id.eq(user_id))
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    if !password::verify(current, user.password_hash.clone()).await? {
        return Err(ApiError::validation(
            "currentPassword",
            "the current password is wrong",
        ));
    }
    let hash = password::hash(new).await?;
    let now = Utc::now();
    let txn = state.system_db.begin().await?;
    user::ActiveModel {
        id: Set(user.id),
        password_hash: Set(Some(hash)),
        password_changed_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .update(&txn)
    .await?;
    #[allow(clippy::disallowed_methods)] // cross-tenant: the user's sessions in every company
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
        .filter(refresh_token::Column::UserId.eq(user.id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    txn.commit().await?;
    // Tokens issued before now stop working on every instance.
    state.rbac.members_changed().await;
    Ok(true)
}

/// The user and company of a membership, if it exists.
async fn membership_of(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    company_id: Uuid,
) -> ApiResult<Option<(user::Model, company::Model)>> {
    #[allow(clippy::disallowed_methods)] // cross-tenant: whether the user belongs to the company
    let found = membership::Entity::find()
        .filter(membership::Column::UserId.eq(user_id))
        .filter(membership::Column::CompanyId.eq(company_id))
        .find_also_related(company::Entity)
        .one(db)
        .await?;
    let Some((_, Some(company))) = found else {
        return Ok(None);
    };
    let user = global::find::<user::Entity>()
        .filter(user::Column::Id.eq(user_id))
        .one(db)
        .await?;
    Ok(user.map(|user| (user, company)))
}

/// Turns the request's credentials into the viewer it runs as. Invalid credentials are an
/// error, not an anonymous request: a client with a bad token must learn it.
pub async fn authenticate(state: &AppState, credentials: Credentials) -> ApiResult<Viewer> {
    match credentials {
        Credentials::None => Ok(Viewer::Anonymous),
        Credentials::ApiKey(secret) => authenticate_api_key(state, &secret).await,
        Credentials::Bearer(token) if token.starts_with(API_KEY_PREFIX) => {
            authenticate_api_key(state, &token).await
        }
        Credentials::Bearer(token) => authenticate_access_token(state, &token).await,
    }
}

async fn authenticate_access_token(state: &AppState, token: &str) -> ApiResult<Viewer> {
    let unauthenticated = || ApiError::unauthenticated("the access token is invalid or expired");
    let claims = state.jwt.verify(token).ok_or_else(unauthenticated)?;
    let Some(company_id) = claims.cid else {
        let operator = global::find::<user::Entity>()
            .filter(user::Column::Id.eq(claims.sub))
            .one(&state.system_db)
            .await?
            .filter(|user| user.is_operator && claims.iat >= user.password_changed_at.timestamp())
            .ok_or_else(unauthenticated)?;
        return Ok(Viewer::Operator {
            user_id: operator.id,
        });
    };
    let member = member_state(state, claims.sub, company_id)
        .await?
        .ok_or_else(unauthenticated)?;
    if claims.iat < member.password_changed_at.timestamp() {
        return Err(unauthenticated());
    }
    ensure_active(&member.company_status)?;
    let roles = state
        .rbac
        .roles_of(&user_subject(claims.sub), company_id)
        .await;
    Ok(Viewer::Member(Actor::new(
        company_id,
        Principal::User(claims.sub),
        roles,
        member
            .api_rate_limit
            .and_then(|limit| u32::try_from(limit).ok()),
    )))
}

/// The member's company status, API limit and password change time; from the cache when
/// access has not changed since it was read.
async fn member_state(
    state: &AppState,
    user_id: Uuid,
    company_id: Uuid,
) -> ApiResult<Option<MemberState>> {
    let members = state.rbac.members();
    if let Some(member) = members.get(user_id, company_id) {
        return Ok(Some(member));
    }
    let generation = members.generation();
    #[allow(clippy::disallowed_methods)] // cross-tenant: authentication, before an actor exists
    let found: Option<(String, Option<i32>, DateTime<Utc>)> = membership::Entity::find()
        .select_only()
        .column(company::Column::Status)
        .column(company::Column::ApiRateLimit)
        .column(user::Column::PasswordChangedAt)
        .join(JoinType::InnerJoin, membership::Relation::Company.def())
        .join(JoinType::InnerJoin, membership::Relation::User.def())
        .filter(membership::Column::UserId.eq(user_id))
        .filter(membership::Column::CompanyId.eq(company_id))
        .into_tuple()
        .one(&state.system_db)
        .await?;
    Ok(
        found.map(|(company_status, api_rate_limit, password_changed_at)| {
            let member = MemberState {
                company_status,
                api_rate_limit,
                password_changed_at,
            };
            members.put(user_id, company_id, member.clone(), generation);
            member
        }),
    )
}

async fn authenticate_api_key(state: &AppState, secret: &str) -> ApiResult<Viewer> {
    let unauthenticated = || ApiError::unauthenticated("the API key is invalid or revoked");
    #[allow(clippy::disallowed_methods)] // cross-tenant: authentication finds the key by its secret
    let found = api_key::Entity::find()
        .filter(api_key::Column::SecretHash.eq(secret_hash(secret)))
        .filter(api_key::Column::RevokedAt.is_null())
        .find_also_related(company::Entity)
        .one(&state.system_db)
        .await?;
    let Some((key, Some(company))) = found else {
        return Err(unauthenticated());
    };
    ensure_active(&company.status)?;
    // A key acts with its role only while its creator still holds that role too.
    let creator_roles = state
        .rbac
        .roles_of(&user_subject(key.created_by), key.company_id)
        .await;
    let roles: Vec<String> = state
        .rbac
        .roles_of(&api_key_subject(key.id), key.company_id)
        .await
        .into_iter()
        .filter(|role| creator_roles.contains(role))
        .collect();
    let actor = Actor::new(
        key.company_id,
        Principal::ApiKey {
            id: key.id,
            created_by: key.created_by,
        },
        roles,
        company
            .api_rate_limit
            .and_then(|limit| u32::try_from(limit).ok()),
    );
    let now = Utc::now();
    let stale = key
        .last_used_at
        .is_none_or(|at| (now - at).num_seconds() >= API_KEY_TOUCH_INTERVAL_SECS);
    if stale {
        // Bookkeeping only: a failure must not refuse the request.
        if let Err(error) = touch(state, &actor, key.id, now).await {
            tracing::warn!(%error, "failed to record API key use");
        }
    }
    Ok(Viewer::Member(actor))
}

/// Records that the key was used just now.
async fn touch(
    state: &AppState,
    actor: &Actor,
    key: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sea_orm::DbErr> {
    let txn = state.begin_for(actor, Intent::Write).await?;
    txn.update::<api_key::Entity>()
        .col_expr(api_key::Column::LastUsedAt, Expr::value(now))
        .filter(api_key::Column::Id.eq(key))
        .exec(&txn)
        .await?;
    txn.commit().await
}

/// `platform create-operator`: a user outside every company who manages companies.
pub async fn create_operator(
    db: &sea_orm::DatabaseConnection,
    email: &str,
    name: &str,
    password: String,
) -> anyhow::Result<()> {
    let email = Email::parse(email).map_err(anyhow::Error::msg)?;
    password::validate("password", &password).map_err(|error| anyhow::anyhow!(error.message()))?;
    let hash = password::hash(password)
        .await
        .map_err(|error| anyhow::anyhow!(error.message()))?;
    let txn = db.begin().await?;
    let existing = global::find::<user::Entity>()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(&txn)
        .await?;
    let now = Utc::now();
    match existing {
        Some(user) => {
            user::ActiveModel {
                id: Set(user.id),
                is_operator: Set(true),
                password_hash: Set(Some(hash)),
                password_changed_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            }
            .update(&txn)
            .await?;
        }
        None => {
            let user = insert_user(&txn, &email, name, Some(hash), Locale::DEFAULT)
                .await
                .map_err(|error| anyhow::anyhow!(error.message()))?;
            user::ActiveModel {
                id: Set(user.id),
                is_operator: Set(true),
                ..Default::default()
            }
            .update(&txn)
            .await?;
        }
    }
    txn.commit().await?;
    Ok(())
}
