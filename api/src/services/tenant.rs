//! The one path to tenant-owned rows: every select, update and delete built here carries
//! `company_id = actor.company_id()`, and inserts take the company from the actor. Services
//! never call `Entity::find()` on a tenant-owned entity directly.
//!
//! Without an [`Actor`] there is no way to call these, so a request without one reads nothing.

use chrono::Utc;
use entity::{
    api_key, casbin_rule, company, customer, financial_transaction, incoming_webhook, invitation,
    membership, order, order_item, order_status_history, outbox, payment, payment_settings,
    product, provider_secret, refresh_token, refund, role, webhook_attempt, webhook_delivery,
    webhook_endpoint, workflow,
};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, DeleteMany, EntityTrait, QueryFilter, Select,
    UpdateMany, sea_query::Expr,
};
use uuid::Uuid;

use crate::auth::Actor;

/// A table whose rows belong to one company.
pub trait TenantEntity: EntityTrait {
    fn company_column() -> Self::Column;
}

macro_rules! tenant_entities {
    ($($module:ident),* $(,)?) => {
        $(impl TenantEntity for $module::Entity {
            fn company_column() -> Self::Column {
                $module::Column::CompanyId
            }
        })*
    };
}

tenant_entities!(
    membership,
    invitation,
    role,
    casbin_rule,
    refresh_token,
    api_key,
    customer,
    product,
    workflow,
    order,
    order_item,
    order_status_history,
    outbox,
    webhook_endpoint,
    webhook_delivery,
    webhook_attempt,
    provider_secret,
    incoming_webhook,
    payment,
    refund,
    financial_transaction,
    payment_settings,
);

/// Rows of the actor's company.
pub fn find<E: TenantEntity>(actor: &Actor) -> Select<E> {
    find_in(actor.company_id())
}

/// Rows of `company_id`, for callers that act for a company without an actor: a provider's
/// webhook whose signature verified with that company's secret. Request code uses [`find`].
pub fn find_in<E: TenantEntity>(company_id: Uuid) -> Select<E> {
    E::find().filter(E::company_column().eq(company_id))
}

/// An update limited to the actor's company.
pub fn update<E: TenantEntity>(actor: &Actor) -> UpdateMany<E> {
    E::update_many().filter(E::company_column().eq(actor.company_id()))
}

/// A delete limited to the actor's company.
pub fn delete<E: TenantEntity>(actor: &Actor) -> DeleteMany<E> {
    E::delete_many().filter(E::company_column().eq(actor.company_id()))
}

/// Serialises changes to one company's access rules and workflows: the update takes the
/// company row's lock on PostgreSQL and the write lock on SQLite, as the transaction's first
/// statement, so two concurrent changes cannot both act on what they read before the other.
pub async fn lock_company(txn: &DatabaseTransaction, actor: &Actor) -> Result<(), DbErr> {
    company::Entity::update_many()
        .col_expr(company::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(company::Column::Id.eq(actor.company_id()))
        .exec(txn)
        .await?;
    Ok(())
}

/// The company new rows of the actor belong to.
pub fn company_of(actor: &Actor) -> Uuid {
    actor.company_id()
}
