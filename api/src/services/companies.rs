//! Companies: the actor's own, changes by its admins, and the platform operator's list,
//! creation and suspension of companies.

use chrono::Utc;
use entity::company;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use super::{access, authorize, users, valid_name, workflows};
use crate::{
    auth::{Actor, password, user_subject},
    db::tenant::{CompanyId, Intent, TenantTxn, global},
    domain::{BusinessType, CompanyStatus, Currency, Email, Locale, Slug, Timezone},
    error::{ApiError, ApiResult, UniqueKey},
    rbac::{ADMIN, built_in_roles},
    state::AppState,
};

pub struct NewCompany {
    pub name: String,
    pub slug: Slug,
    pub business_type: BusinessType,
    pub locale: Locale,
    pub timezone: Timezone,
    pub currency: Currency,
}

/// What an admin may change; `None` leaves a field as it is.
#[derive(Default)]
pub struct CompanyChanges {
    pub name: Option<String>,
    pub locale: Option<Locale>,
    pub timezone: Option<Timezone>,
    pub currency: Option<Currency>,
}

/// Creates the company `txn` acts for (opened with [`CompanyId::new_company`]) with its
/// built-in roles, and makes `admin` its first ADMIN.
pub async fn create_with_admin(
    txn: &TenantTxn,
    new: NewCompany,
    admin: Uuid,
) -> ApiResult<company::Model> {
    let now = Utc::now();
    let company = company::ActiveModel {
        id: Set(txn.company().get()),
        name: Set(valid_name("input.companyName", &new.name, 200)?),
        slug: Set(new.slug.as_str().to_string()),
        business_type: Set(new.business_type.as_str().to_string()),
        locale: Set(new.locale.as_str().to_string()),
        timezone: Set(new.timezone.as_str().to_string()),
        currency: Set(new.currency.as_str().to_string()),
        status: Set(CompanyStatus::Active.as_str().to_string()),
        api_rate_limit: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(txn)
    .await
    .map_err(|error| {
        if UniqueKey::new("companies_slug_key", "companies", &["slug"]).violated_by(&error) {
            ApiError::validation("input.companySlug", "this slug is taken; choose another")
        } else {
            ApiError::from(error)
        }
    })?;
    for role in built_in_roles(new.business_type.as_str()) {
        access::insert_role(txn, role.name, true, &role.permissions).await?;
    }
    workflows::install_templates(txn, new.business_type.as_str()).await?;
    super::notifications::rules::install_defaults(txn, new.business_type).await?;
    access::add_member(txn, admin).await?;
    access::grant(txn, &user_subject(admin), ADMIN).await?;
    Ok(company)
}

/// The actor's company.
pub async fn current(state: &AppState, actor: &Actor) -> ApiResult<company::Model> {
    global::find::<company::Entity>()
        .filter(company::Column::Id.eq(actor.company_id()))
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("company"))
}

/// Changes the actor's company (`settings:manage`).
pub async fn update(
    state: &AppState,
    actor: &Actor,
    changes: CompanyChanges,
) -> ApiResult<company::Model> {
    authorize(state, actor, "settings", "manage").await?;
    let mut model = company::ActiveModel {
        id: Set(actor.company_id()),
        updated_at: Set(Utc::now()),
        ..Default::default()
    };
    if let Some(name) = changes.name {
        model.name = Set(valid_name("input.name", &name, 200)?);
    }
    if let Some(locale) = changes.locale {
        model.locale = Set(locale.as_str().to_string());
    }
    if let Some(timezone) = changes.timezone {
        model.timezone = Set(timezone.as_str().to_string());
    }
    let txn = state.begin_for(actor, Intent::Write).await?;
    if let Some(currency) = changes.currency {
        let current = txn
            .find_company()
            .one(&txn)
            .await?
            .ok_or(ApiError::NotFound("company"))?;
        if current.currency != currency.as_str() {
            let priced = txn.find::<entity::product::Entity>().count(&txn).await?
                + txn.find::<entity::order::Entity>().count(&txn).await?;
            if priced > 0 {
                return Err(ApiError::validation(
                    "input.currency",
                    "the currency cannot change once products or orders are priced in it",
                ));
            }
        }
        model.currency = Set(currency.as_str().to_string());
    }
    let updated = model.update(&txn).await?;
    txn.commit().await?;
    Ok(updated)
}

/// Every company, for the platform operator, newest first.
pub async fn list_all(
    state: &AppState,
    limit: u64,
    offset: u64,
) -> ApiResult<(Vec<company::Model>, u64)> {
    let query = global::find::<company::Entity>().order_by_desc(company::Column::CreatedAt);
    let total = query.clone().count(&state.system_db).await?;
    let companies = query
        .limit(limit)
        .offset(offset)
        .all(&state.system_db)
        .await?;
    Ok((companies, total))
}

/// The operator creates a company and its first ADMIN (an existing user, or a new one).
pub async fn create_for_operator(
    state: &AppState,
    new: NewCompany,
    admin_email: Email,
    admin_name: &str,
    admin_password: Option<String>,
) -> ApiResult<company::Model> {
    let password_hash = match admin_password {
        Some(password) => {
            password::validate("input.adminPassword", &password)?;
            Some(password::hash(password).await?)
        }
        None => None,
    };
    let txn = state
        .begin_for_company(
            CompanyId::new_company(),
            "the operator creates a company",
            Intent::ChangeAccess,
        )
        .await?;
    let existing = global::find::<entity::user::Entity>()
        .filter(entity::user::Column::Email.eq(admin_email.as_str()))
        .one(&txn)
        .await?;
    let admin = match existing {
        Some(user) => user,
        None => {
            users::insert_user(&txn, &admin_email, admin_name, password_hash, new.locale).await?
        }
    };
    let company = create_with_admin(&txn, new, admin.id).await?;
    txn.commit().await?;
    tracing::info!(company_id = %company.id, "operator created a company");
    Ok(company)
}

/// Sets the company's own limit on API calls per actor and window (`None`: the server default).
pub async fn set_api_rate_limit(
    state: &AppState,
    company_id: Uuid,
    calls_per_window: Option<u32>,
) -> ApiResult<company::Model> {
    let limit = calls_per_window
        .map(|calls| {
            i32::try_from(calls)
                .ok()
                .filter(|calls| *calls > 0)
                .ok_or_else(|| {
                    ApiError::validation("apiCallsPerWindow", "give a positive number of calls")
                })
        })
        .transpose()?;
    let txn = operator_change(state, company_id).await?;
    let updated = company::ActiveModel {
        id: Set(txn.company().get()),
        api_rate_limit: Set(limit),
        updated_at: Set(Utc::now()),
        ..Default::default()
    }
    .update(&txn)
    .await?;
    txn.commit().await?;
    Ok(updated)
}

/// Suspends or reactivates a company; a suspended company's tokens and keys stop at once.
pub async fn set_status(
    state: &AppState,
    company_id: Uuid,
    status: CompanyStatus,
) -> ApiResult<company::Model> {
    let txn = operator_change(state, company_id).await?;
    let updated = company::ActiveModel {
        id: Set(txn.company().get()),
        status: Set(status.as_str().to_string()),
        updated_at: Set(Utc::now()),
        ..Default::default()
    }
    .update(&txn)
    .await?;
    // Its members' tokens and keys stop (or work again) on every instance at once.
    txn.commit().await?;
    tracing::info!(%company_id, status = status.as_str(), "company status changed");
    Ok(updated)
}

/// The operator's change to a company's status or limits: it acts for the company it named,
/// once that exists, and the commit announces the change of access.
async fn operator_change(state: &AppState, company_id: Uuid) -> ApiResult<TenantTxn> {
    let company = global::find::<company::Entity>()
        .filter(company::Column::Id.eq(company_id))
        .one(&state.system_db)
        .await?
        .ok_or(ApiError::NotFound("company"))?;
    Ok(state
        .begin_for_company(
            CompanyId::from_row(company.id),
            "the operator changes a company",
            Intent::ChangeAccess,
        )
        .await?)
}
