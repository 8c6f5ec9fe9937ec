//! The catalog: products and services a company sells, priced in integer minor units of the
//! company currency, optionally with tracked stock.

use chrono::Utc;
use entity::{company, product};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::{authorize, valid_name};
use crate::{
    auth::Actor,
    db::tenant::Intent,
    domain::money::MAX_AMOUNT_MINOR,
    error::{ApiError, ApiResult, UniqueKey},
    state::AppState,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProductKind {
    Product,
    Service,
}

impl ProductKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Product => "PRODUCT",
            Self::Service => "SERVICE",
        }
    }
}

pub struct NewProduct {
    pub sku: String,
    pub name: String,
    pub kind: ProductKind,
    pub price_minor: i64,
    pub track_stock: bool,
    pub stock: Option<i32>,
}

/// Changes to a product; `None` leaves a field as it is.
#[derive(Default)]
pub struct ProductChanges {
    pub name: Option<String>,
    pub price_minor: Option<i64>,
    pub active: Option<bool>,
    pub stock: Option<i32>,
}

fn valid_sku(sku: &str) -> ApiResult<String> {
    let sku = sku.trim();
    let valid = (1..=64).contains(&sku.len())
        && sku
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(sku.to_string())
    } else {
        Err(ApiError::validation(
            "input.sku",
            "a SKU is 1 to 64 letters, digits, dots, dashes or underscores",
        ))
    }
}

fn valid_price(price_minor: i64) -> ApiResult<i64> {
    if !(0..=MAX_AMOUNT_MINOR).contains(&price_minor) {
        return Err(ApiError::validation(
            "input.priceMinor",
            format!("a price is 0 to {MAX_AMOUNT_MINOR} minor units"),
        ));
    }
    Ok(price_minor)
}

fn valid_stock(stock: i32) -> ApiResult<i32> {
    if stock < 0 {
        return Err(ApiError::validation(
            "input.stock",
            "stock cannot be negative",
        ));
    }
    Ok(stock)
}

pub async fn list(
    state: &AppState,
    actor: &Actor,
    first: u64,
    after: Option<Uuid>,
    include_inactive: bool,
) -> ApiResult<Vec<product::Model>> {
    authorize(state, actor, "catalog", "read").await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let mut query = txn.find::<product::Entity>();
    if let Some(after) = after {
        query = query.filter(product::Column::Id.gt(after));
    }
    if !include_inactive {
        query = query.filter(product::Column::Active.eq(true));
    }
    let page = query
        .order_by_asc(product::Column::Id)
        .limit(first)
        .all(&txn)
        .await?;
    txn.commit().await?;
    Ok(page)
}

pub async fn get(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<Option<product::Model>> {
    authorize(state, actor, "catalog", "read").await?;
    let txn = state.begin_for(actor, Intent::Read).await?;
    let product = txn
        .find::<product::Entity>()
        .filter(product::Column::Id.eq(id))
        .one(&txn)
        .await?;
    txn.commit().await?;
    Ok(product)
}

pub async fn create(state: &AppState, actor: &Actor, new: NewProduct) -> ApiResult<product::Model> {
    authorize(state, actor, "catalog", "create").await?;
    let sku = valid_sku(&new.sku)?;
    let name = valid_name("input.name", &new.name, 200)?;
    let price_minor = valid_price(new.price_minor)?;
    let stock = match (new.track_stock, new.stock) {
        (true, stock) => Some(valid_stock(stock.unwrap_or(0))?),
        (false, None) => None,
        (false, Some(_)) => {
            return Err(ApiError::validation(
                "input.stock",
                "stock is only kept for products with trackStock: true",
            ));
        }
    };
    if new.track_stock && new.kind == ProductKind::Service {
        return Err(ApiError::validation(
            "input.trackStock",
            "services have no stock",
        ));
    }
    // Reads before it writes: `Intent::Write` takes SQLite's write lock at the start.
    let txn = state.begin_for(actor, Intent::Write).await?;
    let currency: Option<String> = txn
        .find_company()
        .select_only()
        .column(company::Column::Currency)
        .into_tuple()
        .one(&txn)
        .await?;
    let currency = currency.ok_or(ApiError::NotFound("company"))?;
    let now = Utc::now();
    let created = txn
        .insert(product::ActiveModel {
            id: Set(Uuid::now_v7()),
            sku: Set(sku.clone()),
            name: Set(name),
            kind: Set(new.kind.as_str().to_string()),
            price_minor: Set(price_minor),
            currency: Set(currency),
            active: Set(true),
            track_stock: Set(new.track_stock),
            stock: Set(stock),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .await
        .map_err(|error| {
            if UniqueKey::new(
                "products_company_sku_key",
                "products",
                &["company_id", "sku"],
            )
            .violated_by(&error)
            {
                ApiError::validation("input.sku", format!("SKU {sku} is taken"))
            } else {
                ApiError::from(error)
            }
        })?;
    txn.commit().await?;
    Ok(created)
}

pub async fn update(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    changes: ProductChanges,
) -> ApiResult<product::Model> {
    authorize(state, actor, "catalog", "update").await?;
    let txn = state.begin_for(actor, Intent::Write).await?;
    let mut update = txn
        .update::<product::Entity>()
        .col_expr(product::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(product::Column::Id.eq(id));
    if let Some(name) = changes.name {
        update = update.col_expr(
            product::Column::Name,
            Expr::value(valid_name("input.name", &name, 200)?),
        );
    }
    if let Some(price) = changes.price_minor {
        update = update.col_expr(
            product::Column::PriceMinor,
            Expr::value(valid_price(price)?),
        );
    }
    if let Some(active) = changes.active {
        update = update.col_expr(product::Column::Active, Expr::value(active));
    }
    if let Some(stock) = changes.stock {
        update = update
            .col_expr(product::Column::Stock, Expr::value(valid_stock(stock)?))
            .filter(product::Column::TrackStock.eq(true));
    }
    let changed = update.exec(&txn).await?.rows_affected;
    let product = txn
        .find::<product::Entity>()
        .filter(product::Column::Id.eq(id))
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound("product"))?;
    if changed == 0 {
        return Err(ApiError::validation(
            "input.stock",
            "stock is only kept for products with trackStock: true",
        ));
    }
    txn.commit().await?;
    Ok(product)
}

/// Takes a product out of sale; orders that have it keep it.
pub async fn archive(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<product::Model> {
    authorize(state, actor, "catalog", "delete").await?;
    update_active(state, actor, id).await
}

async fn update_active(state: &AppState, actor: &Actor, id: Uuid) -> ApiResult<product::Model> {
    let txn = state.begin_for(actor, Intent::Write).await?;
    txn.update::<product::Entity>()
        .col_expr(product::Column::Active, Expr::value(false))
        .col_expr(product::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(product::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    let product = txn
        .find::<product::Entity>()
        .filter(product::Column::Id.eq(id))
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound("product"))?;
    txn.commit().await?;
    Ok(product)
}
