//! Customers of a company.

use chrono::Utc;
use entity::customer;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::{authorize, optional_text, valid_name};
use crate::{
    auth::Actor,
    db::tenant::Intent,
    domain::{Email, document::TaxDocument, phone::Phone, text},
    error::{ApiError, ApiResult},
    state::AppState,
};

/// A customer's details, parsed. On update, `None` leaves a field as it is.
#[derive(Default)]
pub struct CustomerDetails {
    pub name: Option<String>,
    pub email: Option<Email>,
    pub phone: Option<Phone>,
    pub document: Option<TaxDocument>,
    pub address: Option<String>,
    pub notes: Option<String>,
}

/// One page of customers, oldest first, after the customer `after` (exclusive).
pub async fn list(
    state: &AppState,
    actor: &Actor,
    first: u64,
    after: Option<Uuid>,
    include_archived: bool,
) -> ApiResult<Vec<customer::Model>> {
    authorize(state, actor, "customers", "read").await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let mut query = txn.find::<customer::Entity>();
    if let Some(after) = after {
        query = query.filter(customer::Column::Id.gt(after));
    }
    if !include_archived {
        query = query.filter(customer::Column::ArchivedAt.is_null());
    }
    let page = query
        .order_by_asc(customer::Column::Id)
        .limit(first)
        .all(&txn)
        .await?;
    txn.commit().await?;
    Ok(page)
}

pub async fn get(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<Option<customer::Model>> {
    authorize(state, actor, "customers", "read").await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let customer = txn
        .find::<customer::Entity>()
        .filter(customer::Column::Id.eq(id))
        .one(&txn)
        .await?;
    txn.commit().await?;
    Ok(customer)
}

pub async fn create(
    state: &AppState,
    actor: &Actor,
    details: CustomerDetails,
) -> ApiResult<customer::Model> {
    authorize(state, actor, "customers", "create").await?;
    let name = valid_name(
        "input.name",
        details.name.as_deref().unwrap_or_default(),
        200,
    )?;
    let now = Utc::now();
    let txn = state.begin_for(actor, Intent::Write).await?;
    let created = txn
        .insert(customer::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(name),
            email: Set(details.email.map(|email| email.as_str().to_string())),
            phone: Set(details.phone.map(|phone| phone.as_str().to_string())),
            document: Set(details
                .document
                .map(|document| document.digits().to_string())),
            address: Set(optional_text(
                "input.address",
                details.address.as_deref(),
                text::ADDRESS,
            )?),
            notes: Set(optional_text(
                "input.notes",
                details.notes.as_deref(),
                text::NOTES,
            )?),
            archived_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .await?;
    txn.commit().await?;
    Ok(created)
}

pub async fn update(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    details: CustomerDetails,
) -> ApiResult<customer::Model> {
    authorize(state, actor, "customers", "update").await?;
    let txn = state.begin_for(actor, Intent::Write).await?;
    let mut update = txn
        .update::<customer::Entity>()
        .col_expr(customer::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(customer::Column::Id.eq(id));
    if let Some(name) = details.name {
        update = update.col_expr(
            customer::Column::Name,
            Expr::value(valid_name("input.name", &name, 200)?),
        );
    }
    if let Some(email) = details.email {
        update = update.col_expr(customer::Column::Email, Expr::value(email.as_str()));
    }
    if let Some(phone) = details.phone {
        update = update.col_expr(customer::Column::Phone, Expr::value(phone.as_str()));
    }
    if let Some(document) = details.document {
        update = update.col_expr(customer::Column::Document, Expr::value(document.digits()));
    }
    if let Some(address) = details.address {
        let address = optional_text("input.address", Some(&address), text::ADDRESS)?;
        update = update.col_expr(customer::Column::Address, Expr::value(address));
    }
    if let Some(notes) = details.notes {
        let notes = optional_text("input.notes", Some(&notes), text::NOTES)?;
        update = update.col_expr(customer::Column::Notes, Expr::value(notes));
    }
    if update.exec(&txn).await?.rows_affected == 0 {
        return Err(ApiError::NotFound("customer"));
    }
    let updated = txn
        .find::<customer::Entity>()
        .filter(customer::Column::Id.eq(id))
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound("customer"))?;
    txn.commit().await?;
    Ok(updated)
}

/// Hides a customer from lists and new orders; existing orders keep it.
pub async fn archive(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<customer::Model> {
    authorize(state, actor, "customers", "delete").await?;
    let now = Utc::now();
    let txn = state.begin_for(actor, Intent::Write).await?;
    let archived = txn
        .update::<customer::Entity>()
        .col_expr(customer::Column::ArchivedAt, Expr::value(now))
        .col_expr(customer::Column::UpdatedAt, Expr::value(now))
        .filter(customer::Column::Id.eq(id))
        .filter(customer::Column::ArchivedAt.is_null())
        .exec(&txn)
        .await?;
    let customer = txn
        .find::<customer::Entity>()
        .filter(customer::Column::Id.eq(id))
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound("customer"))?;
    txn.commit().await?;
    if archived.rows_affected == 0 {
        tracing::debug!(customer_id = %id, "customer was archived already");
    }
    Ok(customer)
}
