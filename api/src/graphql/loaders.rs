//! Per-request DataLoaders. One loader is built for each request with the request's actor
//! inside, so every batch query is scoped to that actor's company and no cache outlives the
//! request or crosses tenants.

use std::{collections::HashMap, fmt, sync::Arc};

use async_graphql::dataloader::{DataLoader, Loader};
use entity::{
    company, customer, notification_attempt, order_item, order_status_history, payment, product,
    refund, user, workflow,
};
use sea_orm::{DatabaseConnection, DbErr, QueryFilter, QueryOrder};
use uuid::Uuid;

use crate::{
    auth::Actor,
    db::tenant::TenantTxn,
    error::ApiError,
    services::{one_of, workflows::WorkflowVersion},
};

/// Batches lookups of one request; keyed by the newtypes below.
pub struct TenantLoader {
    db: DatabaseConnection,
    actor: Actor,
}

pub type Loaders = Arc<DataLoader<TenantLoader>>;

pub fn loaders(db: DatabaseConnection, actor: Actor) -> Loaders {
    Arc::new(DataLoader::new(TenantLoader { db, actor }, tokio::spawn))
}

/// A failed batch, shared by every resolver that waited on it (hence the `Arc`), with its
/// cause: a resolver's error logs the database's own message, not only that a batch failed.
#[derive(Clone, Debug)]
pub struct LoadError(Arc<anyhow::Error>);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("batch load failed")
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref().as_ref())
    }
}

impl From<DbErr> for LoadError {
    fn from(error: DbErr) -> Self {
        Self(Arc::new(error.into()))
    }
}

impl From<ApiError> for LoadError {
    fn from(error: ApiError) -> Self {
        Self(Arc::new(error.into_anyhow()))
    }
}

impl From<LoadError> for ApiError {
    fn from(error: LoadError) -> Self {
        ApiError::internal(error)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CustomerKey(pub Uuid);
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProductKey(pub Uuid);
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ItemsOfOrder(pub Uuid);
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HistoryOfOrder(pub Uuid);
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PaymentsOfOrder(pub Uuid);
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RefundsOfPayment(pub Uuid);
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttemptsOfNotification(pub Uuid);
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkflowKey(pub Uuid);
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserKey(pub Uuid);
/// The actor's own company (for its locale and currency).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CompanyKey;

fn ids<K, F: Fn(&K) -> Uuid>(keys: &[K], id: F) -> Vec<Uuid> {
    keys.iter().map(id).collect()
}

impl TenantLoader {
    /// A batch's read transaction, in the actor's company.
    async fn read(&self) -> Result<TenantTxn, DbErr> {
        TenantTxn::read(&self.db, self.actor.company()).await
    }
}

impl Loader<CustomerKey> for TenantLoader {
    type Value = customer::Model;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[CustomerKey],
    ) -> Result<HashMap<CustomerKey, Self::Value>, Self::Error> {
        let txn = self.read().await?;
        let rows = txn
            .find::<customer::Entity>()
            .filter(one_of(customer::Column::Id, ids(keys, |key| key.0), &txn))
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows
            .into_iter()
            .map(|row| (CustomerKey(row.id), row))
            .collect())
    }
}

impl Loader<ProductKey> for TenantLoader {
    type Value = product::Model;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[ProductKey],
    ) -> Result<HashMap<ProductKey, Self::Value>, Self::Error> {
        let txn = self.read().await?;
        let rows = txn
            .find::<product::Entity>()
            .filter(one_of(product::Column::Id, ids(keys, |key| key.0), &txn))
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows
            .into_iter()
            .map(|row| (ProductKey(row.id), row))
            .collect())
    }
}

/// The rows of a table that belong to each parent (an order, a payment), in `order` order,
/// one query per batch.
macro_rules! rows_of {
    ($key:ident, $module:ident, ($parent:ident, $parent_field:ident), $($order:expr),+) => {
        impl Loader<$key> for TenantLoader {
            type Value = Vec<$module::Model>;
            type Error = LoadError;

            async fn load(&self, keys: &[$key]) -> Result<HashMap<$key, Self::Value>, Self::Error> {
                let mut grouped: HashMap<$key, Self::Value> =
                    keys.iter().map(|key| (*key, Vec::new())).collect();
                let txn = self.read().await?;
                let rows = txn
                    .find::<$module::Entity>()
                    .filter(one_of($module::Column::$parent, ids(keys, |key| key.0), &txn))
                    $(.order_by_asc($order))+
                    .all(&txn)
                    .await?;
                txn.commit().await?;
                for row in rows {
                    grouped.entry($key(row.$parent_field)).or_default().push(row);
                }
                Ok(grouped)
            }
        }
    };
}

rows_of!(
    ItemsOfOrder,
    order_item,
    (OrderId, order_id),
    order_item::Column::Position
);
rows_of!(
    HistoryOfOrder,
    order_status_history,
    (OrderId, order_id),
    order_status_history::Column::CreatedAt,
    order_status_history::Column::Id
);
rows_of!(
    PaymentsOfOrder,
    payment,
    (OrderId, order_id),
    payment::Column::Id
);
rows_of!(
    RefundsOfPayment,
    refund,
    (PaymentId, payment_id),
    refund::Column::Id
);
rows_of!(
    AttemptsOfNotification,
    notification_attempt,
    (NotificationId, notification_id),
    notification_attempt::Column::Attempt
);

impl Loader<WorkflowKey> for TenantLoader {
    type Value = WorkflowVersion;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[WorkflowKey],
    ) -> Result<HashMap<WorkflowKey, Self::Value>, Self::Error> {
        let txn = self.read().await?;
        let rows = txn
            .find::<workflow::Entity>()
            .filter(one_of(workflow::Column::Id, ids(keys, |key| key.0), &txn))
            .all(&txn)
            .await?;
        txn.commit().await?;
        rows.into_iter()
            .map(|row| {
                let id = row.id;
                WorkflowVersion::from_row(row)
                    .map(|version| (WorkflowKey(id), version))
                    .map_err(LoadError::from)
            })
            .collect()
    }
}

/// Users are global identities; only those that are members of the actor's company load,
/// so history from a person who has since left shows no name rather than crossing tenants.
impl Loader<UserKey> for TenantLoader {
    type Value = user::Model;
    type Error = LoadError;

    async fn load(&self, keys: &[UserKey]) -> Result<HashMap<UserKey, Self::Value>, Self::Error> {
        let txn = self.read().await?;
        let members = txn
            .find::<entity::membership::Entity>()
            .filter(one_of(
                entity::membership::Column::UserId,
                ids(keys, |key| key.0),
                &txn,
            ))
            .find_also_related(user::Entity)
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(members
            .into_iter()
            .filter_map(|(_, user)| user)
            .map(|user| (UserKey(user.id), user))
            .collect())
    }
}

impl Loader<CompanyKey> for TenantLoader {
    type Value = company::Model;
    type Error = LoadError;

    async fn load(
        &self,
        _: &[CompanyKey],
    ) -> Result<HashMap<CompanyKey, Self::Value>, Self::Error> {
        let txn = self.read().await?;
        let company = txn.find_company().one(&txn).await?;
        txn.commit().await?;
        Ok(company
            .map(|company| (CompanyKey, company))
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_batch_keeps_its_cause() {
        let failed = LoadError::from(DbErr::Custom("no such table: customers".into()));
        let chain = format!("{:#}", ApiError::from(failed).into_anyhow());
        assert!(
            chain.starts_with("batch load failed: ") && chain.contains("no such table: customers"),
            "{chain}"
        );
    }
}
