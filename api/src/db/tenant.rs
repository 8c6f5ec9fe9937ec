//! The one way to act for a company: a [`TenantTxn`], opened by
//! [`AppState::begin_for`](crate::state::AppState::begin_for) for an authenticated actor or by
//! [`AppState::begin_for_company`](crate::state::AppState::begin_for_company) for a verified
//! webhook or a job. Every select, update and delete it builds carries `company_id = <its
//! company>`, its inserts take the company from it, and on PostgreSQL its first statement sets
//! `app.company_id`, which the row-level security policies read.
//!
//! `clippy.toml` forbids `EntityTrait::find`, `find_by_id`, `update_many` and `delete_many`
//! elsewhere; the tables of no company go through [`global`], and the few cross-tenant places
//! allow the lint one by one, each saying why.

use std::sync::{
    Arc, Mutex, PoisonError,
    atomic::{AtomicBool, Ordering},
};

use chrono::Utc;
use entity::{
    api_key, casbin_rule, company, customer, financial_transaction, incoming_webhook, invitation,
    membership, notification, notification_attempt, notification_channel, notification_consent,
    notification_early_status, notification_preference, notification_rule, notification_template,
    order, order_counter, order_item, order_status_history, outbox, payment, payment_settings,
    product, provider_secret, refresh_token, refund, role, webhook_attempt, webhook_delivery,
    webhook_endpoint, workflow,
};
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, DeleteMany, EntityTrait, ExecResult, IntoActiveModel,
    QueryFilter, QueryResult, Select, SqliteTransactionMode, Statement, TransactionOptions,
    TransactionTrait, UpdateMany,
    sea_query::{Expr, OnConflict},
};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::{events::DomainEvent, rbac::Rbac};

/// The company a transaction acts for. It comes only from an authenticated actor
/// ([`Actor::company`](crate::auth::Actor::company)), from an incoming webhook whose signature
/// verified with that company's secret, from a row a cross-tenant path read, or fresh for a
/// company being created: never from input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CompanyId(Uuid);

impl CompanyId {
    /// The company of an authenticated actor; only authentication builds actors.
    pub(crate) fn of_actor(id: Uuid) -> Self {
        Self(id)
    }

    /// The company whose secret verified an incoming webhook's signature. Call only after the
    /// signature verified.
    pub fn from_verified_webhook(id: Uuid) -> Self {
        Self(id)
    }

    /// The company of a row a cross-tenant path read (a job's or worker's row, a company the
    /// operator or the demo seed picked, a refresh token or invitation found by its secret, a
    /// membership found by its user): it acts for that row's company.
    pub fn from_row(id: Uuid) -> Self {
        Self(id)
    }

    /// A fresh id for a company being created (sign-up, the operator, the demo seed): it
    /// reaches no existing rows.
    pub fn new_company() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn get(self) -> Uuid {
        self.0
    }
}

impl std::fmt::Display for CompanyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What a transaction will do, declared when it is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Reads only: PostgreSQL refuses writes in it; SQLite starts it deferred.
    Read,
    /// Writes the company's rows. SQLite takes the write lock at `BEGIN IMMEDIATE`, so two
    /// writers wait for each other instead of one failing with `SQLITE_BUSY` when both read
    /// first and then try to upgrade their read locks.
    Write,
    /// A write that must not interleave with another such write of the same company (access
    /// rules, workflows, invitations, payments and refunds decided by idempotency key, payment
    /// settings, webhook endpoints): it takes the company row's lock
    /// as its first write, so a concurrent one waits and then sees this one's result.
    Serialized,
    /// A [`Serialized`](Intent::Serialized) write that changes who may do what (rules,
    /// memberships, roles, the company's status or limits): the commit reloads the company's
    /// policies here and notifies the other instances.
    ChangeAccess,
}

impl Intent {
    fn locks_company(self) -> bool {
        matches!(self, Intent::Serialized | Intent::ChangeAccess)
    }
}

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
    order_counter,
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
    notification_channel,
    notification,
    notification_attempt,
    notification_template,
    notification_preference,
    notification_consent,
    notification_early_status,
    notification_rule,
);

/// Rows of `company`, for the pipelined reads of the order list ([`crate::db::rows`]),
/// which run outside a [`TenantTxn`] and set `app.company_id` on their own connection.
pub fn select_in<E: TenantEntity>(company: CompanyId) -> Select<E> {
    #[allow(clippy::disallowed_methods)] // scoped on the next line
    E::find().filter(E::company_column().eq(company.get()))
}

/// A transaction acting for one company. Run its scoped queries on it (`.one(&txn)`,
/// `.exec(&txn)`); dropping it without [`commit`](TenantTxn::commit) rolls back.
pub struct TenantTxn {
    txn: DatabaseTransaction,
    company: CompanyId,
    intent: Intent,
    recorded: AtomicBool,
    /// Woken at commit when events were recorded.
    relay_wake: Option<Arc<Notify>>,
    /// Only for [`Intent::ChangeAccess`], which announces through it.
    rbac: Option<Rbac>,
    /// Run once the transaction committed ([`TenantTxn::after_commit`]).
    committed: Mutex<Vec<Box<dyn FnOnce() + Send>>>,
}

/// What [`TenantTxn::open`] needs of the application.
pub(crate) struct Opening<'a> {
    pub db: &'a DatabaseConnection,
    pub relay_wake: &'a Arc<Notify>,
    pub rbac: &'a Rbac,
}

impl TenantTxn {
    pub(crate) async fn open(
        opening: Opening<'_>,
        company: CompanyId,
        intent: Intent,
    ) -> Result<Self, DbErr> {
        let mut txn = Self::begin(opening.db, company, intent).await?;
        txn.relay_wake = (intent != Intent::Read).then(|| opening.relay_wake.clone());
        txn.rbac = (intent == Intent::ChangeAccess).then(|| opening.rbac.clone());
        Ok(txn)
    }

    /// A read transaction on `db`, for the per-request loaders, which hold a connection
    /// rather than the application's state.
    pub(crate) async fn read(db: &DatabaseConnection, company: CompanyId) -> Result<Self, DbErr> {
        Self::begin(db, company, Intent::Read).await
    }

    async fn begin(
        db: &DatabaseConnection,
        company: CompanyId,
        intent: Intent,
    ) -> Result<Self, DbErr> {
        let txn = db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(match intent {
                    Intent::Read => SqliteTransactionMode::Deferred,
                    _ => SqliteTransactionMode::Immediate,
                }),
                ..Default::default()
            })
            .await?;
        if txn.get_database_backend() == DbBackend::Postgres {
            // One round trip for both: the policies read `app.company_id`, and a read
            // transaction that tries to write fails instead of writing.
            let sql = match intent {
                Intent::Read => {
                    "SELECT set_config('app.company_id', $1, true), \
                     set_config('transaction_read_only', 'on', true)"
                }
                _ => "SELECT set_config('app.company_id', $1, true)",
            };
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                [company.get().to_string().into()],
            ))
            .await?;
        }
        if intent.locks_company() {
            // The row lock on PostgreSQL; on SQLite `BEGIN IMMEDIATE` holds the write lock
            // already, and the update keeps the company's `updated_at` alike on both.
            #[allow(clippy::disallowed_methods)] // non-tenant table: the company row itself
            company::Entity::update_many()
                .col_expr(company::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(company::Column::Id.eq(company.get()))
                .exec(&txn)
                .await?;
        }
        Ok(Self {
            txn,
            company,
            intent,
            recorded: AtomicBool::new(false),
            relay_wake: None,
            rbac: None,
            committed: Mutex::default(),
        })
    }

    /// The company this transaction acts for.
    pub fn company(&self) -> CompanyId {
        self.company
    }

    /// Rows of the company.
    pub fn find<E: TenantEntity>(&self) -> Select<E> {
        select_in(self.company)
    }

    /// The company's own row (its currency, locale, status).
    pub fn find_company(&self) -> Select<company::Entity> {
        global::find::<company::Entity>().filter(company::Column::Id.eq(self.company.get()))
    }

    /// An update limited to the company's rows.
    pub fn update<E: TenantEntity>(&self) -> UpdateMany<E> {
        #[allow(clippy::disallowed_methods)] // scoped on the next line
        E::update_many().filter(E::company_column().eq(self.company.get()))
    }

    /// A delete limited to the company's rows.
    pub fn delete<E: TenantEntity>(&self) -> DeleteMany<E> {
        #[allow(clippy::disallowed_methods)] // scoped on the next line
        E::delete_many().filter(E::company_column().eq(self.company.get()))
    }

    /// Inserts `row` as a row of the company, whatever `company_id` it carried.
    pub async fn insert<A>(&self, mut row: A) -> Result<<A::Entity as EntityTrait>::Model, DbErr>
    where
        A: ActiveModelTrait + ActiveModelBehavior + Send,
        A::Entity: TenantEntity,
        <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
    {
        self.writable()?;
        row.set(A::Entity::company_column(), self.company.get().into());
        row.insert(&self.txn).await
    }

    /// Inserts `row` as a row of the company or, where it collides on `on_conflict`'s unique
    /// columns (which start with `company_id`, so only the company's own row is met), does what
    /// `on_conflict` says instead. One statement: a concurrent writer of the same row waits on
    /// the unique index and then updates, instead of failing as read-then-insert does.
    pub async fn upsert<A>(&self, mut row: A, on_conflict: OnConflict) -> Result<(), DbErr>
    where
        A: ActiveModelTrait + Send,
        A::Entity: TenantEntity,
    {
        self.writable()?;
        row.set(A::Entity::company_column(), self.company.get().into());
        A::Entity::insert(row)
            .on_conflict(on_conflict)
            .exec_without_returning(&self.txn)
            .await?;
        Ok(())
    }

    /// Inserts `rows` as rows of the company, in one statement.
    pub async fn insert_many<A>(&self, rows: impl IntoIterator<Item = A>) -> Result<(), DbErr>
    where
        A: ActiveModelTrait + Send,
        A::Entity: TenantEntity,
    {
        self.writable()?;
        let rows: Vec<A> = rows
            .into_iter()
            .map(|mut row| {
                row.set(A::Entity::company_column(), self.company.get().into());
                row
            })
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        A::Entity::insert_many(rows).exec(&self.txn).await?;
        Ok(())
    }

    /// Appends `event` to the company's outbox; the commit wakes the relay.
    pub async fn record(&self, event: DomainEvent) -> Result<(), DbErr> {
        self.writable()?;
        crate::events::outbox::append(&self.txn, self.company.get(), event).await?;
        self.recorded.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Runs `then` once this transaction has committed, never if it rolls back: for what
    /// others may only see after the commit, such as waking the job runtimes for jobs it wrote
    /// (woken before, a runtime on PostgreSQL finds nothing and waits for its next poll).
    pub fn after_commit(&self, then: impl FnOnce() + Send + 'static) {
        self.committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(then));
    }

    /// Commits; then wakes the relay when events were recorded, runs what waited for the
    /// commit ([`TenantTxn::after_commit`]) and, for [`Intent::ChangeAccess`], reloads and
    /// announces the company's access.
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await?;
        for then in self
            .committed
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
        {
            then();
        }
        if self.recorded.load(Ordering::Relaxed)
            && let Some(relay_wake) = &self.relay_wake
        {
            relay_wake.notify_one();
        }
        if let Some(rbac) = &self.rbac {
            rbac.access_changed(self.company.get()).await;
        }
        Ok(())
    }

    /// Undoes everything the transaction did (dropping it does the same).
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }

    fn writable(&self) -> Result<(), DbErr> {
        if self.intent == Intent::Read {
            return Err(DbErr::Custom(
                "a write in a transaction opened to read".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for TenantTxn {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.txn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn.query_all_raw(stmt).await
    }
}

/// The tables that belong to no company (users, companies), read and written without a
/// company scope.
pub mod global {
    use entity::{company, user};
    use sea_orm::{DeleteMany, EntityTrait, Select, UpdateMany};

    /// A table of no company.
    pub trait GlobalEntity: EntityTrait {}

    impl GlobalEntity for user::Entity {}
    impl GlobalEntity for company::Entity {}

    pub fn find<E: GlobalEntity>() -> Select<E> {
        #[allow(clippy::disallowed_methods)] // non-tenant table
        E::find()
    }

    pub fn update<E: GlobalEntity>() -> UpdateMany<E> {
        #[allow(clippy::disallowed_methods)] // non-tenant table
        E::update_many()
    }

    pub fn delete<E: GlobalEntity>() -> DeleteMany<E> {
        #[allow(clippy::disallowed_methods)] // non-tenant table
        E::delete_many()
    }
}
