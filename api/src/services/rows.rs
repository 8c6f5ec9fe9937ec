//! Reads of many rows on one pooled connection, decoded by position.
//!
//! A list page reads five tables, and on the usual sea-orm path each read pays twice over:
//! sqlx pings every connection it takes back into the pool (a round trip to the database per
//! statement), and sea-orm decodes each column by name and allocates an error message for every
//! NULL it meets. A [`Reader`] holds one connection for all of a page's reads and decodes rows
//! by position straight into the entity's model. Its statements are still built by sea-query
//! from the caller's [`Select`], so tenant scoping is exactly that of [`super::tenant::find`].

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::Instant,
};

use entity::{customer, order, order_item, order_status_history, product};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QuerySelect, QueryTrait,
    RuntimeErr, Select,
    sea_query::{Expr, PostgresQueryBuilder, SqliteQueryBuilder},
    sqlx::{
        self, AssertSqlSafe, FromRow, Postgres, Sqlite, pool::PoolConnection, postgres::PgRow,
        sqlite::SqliteRow,
    },
};
use sea_query_sqlx::SqlxBinder;

use crate::{db, error::ApiResult};

/// A model read by position: `Row` is the tuple of its columns in the order of `columns`.
pub trait Positional: Sized + Send + Unpin {
    type Entity: EntityTrait;
    type Row: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin;

    fn columns() -> impl IntoIterator<Item = <Self::Entity as EntityTrait>::Column>;
    fn from_row(row: Self::Row) -> Self;
}

/// Implements [`Positional`] for an entity's model from one list of `field: type => Column`, so
/// the selected columns and the decoded tuple cannot disagree on order; the struct literal fails
/// to compile if a field is missing.
macro_rules! positional {
    ($module:ident { $($field:ident: $type:ty => $column:ident),+ $(,)? }) => {
        impl Positional for $module::Model {
            type Entity = $module::Entity;
            type Row = ($($type,)+);

            fn columns() -> impl IntoIterator<Item = $module::Column> {
                [$($module::Column::$column),+]
            }

            fn from_row(($($field,)+): Self::Row) -> Self {
                Self { $($field),+ }
            }
        }
    };
}

type Uuid = uuid::Uuid;
type Time = chrono::DateTime<chrono::Utc>;

positional!(order {
    id: Uuid => Id,
    company_id: Uuid => CompanyId,
    number: i64 => Number,
    customer_id: Uuid => CustomerId,
    workflow_id: Uuid => WorkflowId,
    status: String => Status,
    version: i32 => Version,
    subtotal_minor: i64 => SubtotalMinor,
    total_minor: i64 => TotalMinor,
    currency: String => Currency,
    notes: Option<String> => Notes,
    created_at: Time => CreatedAt,
    updated_at: Time => UpdatedAt,
});

positional!(customer {
    id: Uuid => Id,
    company_id: Uuid => CompanyId,
    name: String => Name,
    email: Option<String> => Email,
    phone: Option<String> => Phone,
    document: Option<String> => Document,
    address: Option<String> => Address,
    notes: Option<String> => Notes,
    archived_at: Option<Time> => ArchivedAt,
    created_at: Time => CreatedAt,
    updated_at: Time => UpdatedAt,
});

positional!(order_item {
    id: Uuid => Id,
    company_id: Uuid => CompanyId,
    order_id: Uuid => OrderId,
    product_id: Uuid => ProductId,
    position: i32 => Position,
    quantity: i32 => Quantity,
    unit_price_minor: i64 => UnitPriceMinor,
    line_total_minor: i64 => LineTotalMinor,
    created_at: Time => CreatedAt,
    updated_at: Time => UpdatedAt,
});

positional!(product {
    id: Uuid => Id,
    company_id: Uuid => CompanyId,
    sku: String => Sku,
    name: String => Name,
    kind: String => Kind,
    price_minor: i64 => PriceMinor,
    currency: String => Currency,
    active: bool => Active,
    track_stock: bool => TrackStock,
    stock: Option<i32> => Stock,
    created_at: Time => CreatedAt,
    updated_at: Time => UpdatedAt,
});

positional!(order_status_history {
    id: Uuid => Id,
    company_id: Uuid => CompanyId,
    order_id: Uuid => OrderId,
    from_status: Option<String> => FromStatus,
    to_status: String => ToStatus,
    actor_user_id: Option<Uuid> => ActorUserId,
    actor_api_key_id: Option<Uuid> => ActorApiKeyId,
    comment: Option<String> => Comment,
    created_at: Time => CreatedAt,
    updated_at: Time => UpdatedAt,
});

/// One pooled connection that several reads share; it goes back to the pool when dropped.
pub struct Reader<'a> {
    connection: Connection,
    /// Where the statements are counted, with those sea-orm runs (see [`db::instrument`]).
    statements: &'a AtomicU64,
}

enum Connection {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

impl<'a> Reader<'a> {
    pub async fn acquire(db: &DatabaseConnection, statements: &'a AtomicU64) -> ApiResult<Self> {
        let connection = match db.get_database_backend() {
            DbBackend::Postgres => Connection::Postgres(
                db.get_postgres_connection_pool()
                    .acquire()
                    .await
                    .map_err(db_error)?,
            ),
            _ => Connection::Sqlite(
                db.get_sqlite_connection_pool()
                    .acquire()
                    .await
                    .map_err(db_error)?,
            ),
        };
        Ok(Self {
            connection,
            statements,
        })
    }

    /// `column` is one of `ids` (see [`super::one_of`]).
    pub fn one_of(&self, column: impl ColumnTrait, ids: Vec<uuid::Uuid>) -> Expr {
        let backend = match self.connection {
            Connection::Postgres(_) => DbBackend::Postgres,
            Connection::Sqlite(_) => DbBackend::Sqlite,
        };
        super::one_of_on(backend, column, ids)
    }

    /// The rows `select` finds, with every column of the model.
    pub async fn all<M: Positional>(&mut self, select: Select<M::Entity>) -> ApiResult<Vec<M>> {
        let query = select.select_only().columns(M::columns()).into_query();
        let started = Instant::now();
        let rows = match &mut self.connection {
            Connection::Postgres(connection) => {
                let (sql, values) = query.build_sqlx(PostgresQueryBuilder);
                sqlx::query_as_with::<_, M::Row, _>(AssertSqlSafe(sql), values)
                    .fetch_all(&mut **connection)
                    .await
            }
            Connection::Sqlite(connection) => {
                let (sql, values) = query.build_sqlx(SqliteQueryBuilder);
                sqlx::query_as_with::<_, M::Row, _>(AssertSqlSafe(sql), values)
                    .fetch_all(&mut **connection)
                    .await
            }
        };
        db::record_statement(self.statements, started.elapsed(), rows.is_err());
        Ok(rows
            .map_err(db_error)?
            .into_iter()
            .map(M::from_row)
            .collect())
    }
}

fn db_error(error: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(error)))
}
