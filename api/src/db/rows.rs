//! Reads of many rows on one pooled connection, decoded by position, sent together.
//!
//! A list page reads five tables, and on the usual sea-orm path each read pays three times
//! over: sqlx pings every connection it takes back into the pool (a round trip to the database
//! per statement), waits for each statement's answer before sending the next, and sea-orm
//! decodes each column by name and allocates an error message for every NULL it meets. A
//! [`Reader`] holds one connection for all of a page's reads and decodes rows by position
//! straight into the entity's model. On PostgreSQL it is a tokio-postgres connection: reads
//! awaited together (`try_join!`) leave in one write and come back in one round trip
//! (pipelining), as prepared statements. Statements are still built by sea-query from the
//! caller's [`Select`], so the application's tenant scoping is the caller's; row-level security
//! holds the reads to the reader's company as well (see [`super::rls`]).

use std::{sync::atomic::AtomicU64, time::Instant};

use entity::{customer, order, order_item, order_status_history, product};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QuerySelect,
    QueryTrait, Select,
    sea_query::{
        ArrayType, Expr, ExprTrait, PostgresQueryBuilder, SqliteQueryBuilder, Value,
        extension::postgres::PgFunc,
    },
    sqlx::{
        self, AssertSqlSafe, FromRow, Sqlite, SqlitePool, pool::PoolConnection, sqlite::SqliteRow,
    },
};
use sea_query_sqlx::SqlxBinder;
use tokio::sync::Mutex;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::{
    db::{self, tenant::CompanyId},
    error::{ApiError, ApiResult},
};

/// A model read by position: `Row` is the tuple of its columns in the order of `columns`.
pub trait Positional: Sized + Send + Unpin {
    type Entity: EntityTrait;
    type Row: for<'r> FromRow<'r, SqliteRow> + Send + Unpin;

    fn columns() -> impl IntoIterator<Item = <Self::Entity as EntityTrait>::Column>;
    fn from_row(row: Self::Row) -> Self;
    fn from_postgres(row: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error>;
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

            fn from_postgres(row: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
                // Fields are initialised in the order written, which is the columns' order.
                let mut index = 0..;
                Ok(Self {
                    $($field: row.try_get::<_, $type>(index.next().unwrap_or_default())?),+
                })
            }
        }
    };
}

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

/// Where [`Reader`]s take their connections.
#[derive(Clone)]
pub enum ReadPool {
    /// tokio-postgres connections ([`db::postgres_read_pool`]).
    Postgres(deadpool_postgres::Pool),
    /// The application's own SQLite pool: SQLite answers in-process, nothing to pipeline.
    Sqlite(SqlitePool),
}

impl ReadPool {
    /// Reads of the database `db` connects to, at `url`, with at most `max_connections` of
    /// their own on PostgreSQL.
    pub fn new(db: &DatabaseConnection, url: &str, max_connections: usize) -> anyhow::Result<Self> {
        Ok(match db.get_database_backend() {
            DbBackend::Postgres => {
                Self::Postgres(db::postgres_read_pool(db, url, max_connections)?)
            }
            _ => Self::Sqlite(db.get_sqlite_connection_pool().clone()),
        })
    }
}

/// One pooled connection that several reads share, for one company; it goes back to the pool
/// when dropped.
pub struct Reader<'a> {
    connection: Connection,
    /// Where the statements are counted, with those sea-orm runs (see [`db::instrument`]).
    statements: &'a AtomicU64,
}

enum Connection {
    Postgres {
        /// Taken when the reader is dropped, to end its transaction.
        client: Option<deadpool_postgres::Object>,
        /// What opens the reads' transaction, until the first read sends it.
        begin: std::sync::Mutex<Option<String>>,
    },
    /// Reads awaited together take turns.
    Sqlite(Mutex<PoolConnection<Sqlite>>),
}

impl<'a> Reader<'a> {
    /// A reader of `company`'s rows. On PostgreSQL its reads run in one read-only transaction
    /// whose first statement sets the company the policies compare with; it leaves with the
    /// first read, so it costs no round trip of its own.
    pub async fn acquire(
        pool: &ReadPool,
        company: CompanyId,
        statements: &'a AtomicU64,
    ) -> ApiResult<Self> {
        let connection = match pool {
            ReadPool::Postgres(pool) => Connection::Postgres {
                client: Some(pool.get().await.map_err(ApiError::internal)?),
                begin: std::sync::Mutex::new(Some(super::rls::begin_reads(company))),
            },
            ReadPool::Sqlite(pool) => Connection::Sqlite(Mutex::new(
                pool.acquire().await.map_err(ApiError::internal)?,
            )),
        };
        Ok(Self {
            connection,
            statements,
        })
    }

    /// `column` is one of `ids` (see [`one_of`]).
    pub fn one_of(&self, column: impl ColumnTrait, ids: Vec<Uuid>) -> Expr {
        let backend = match self.connection {
            Connection::Postgres { .. } => DbBackend::Postgres,
            Connection::Sqlite(_) => DbBackend::Sqlite,
        };
        one_of_on(backend, column, ids)
    }

    /// The rows `select` finds, with every column of the model. On PostgreSQL, reads of one
    /// reader awaited together share a round trip, and each statement is prepared once per
    /// connection: lists of ids travel as one array parameter, so the number of statements a
    /// connection keeps is bounded by the filters' combinations, not by the data.
    pub async fn all<M: Positional>(&self, select: Select<M::Entity>) -> ApiResult<Vec<M>> {
        let query = select.select_only().columns(M::columns()).into_query();
        let started = Instant::now();
        let rows = match &self.connection {
            Connection::Postgres { client, begin } => {
                let client = client.as_ref().ok_or_else(|| {
                    ApiError::internal(anyhow::anyhow!("the reader's connection is gone"))
                })?;
                let (sql, values) = query.build(PostgresQueryBuilder);
                let parameters = values
                    .into_iter()
                    .map(parameter)
                    .collect::<ApiResult<Vec<_>>>()?;
                let begin = begin
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                // A future sends its first message when first polled, and the join polls in
                // order: the transaction's opening is on the wire before this read (and before
                // any read awaited with this one), prepared or not.
                let opened = async {
                    match &begin {
                        Some(sql) => client.batch_execute(sql).await,
                        None => Ok(()),
                    }
                };
                let rows = async {
                    let statement = client.prepare_cached(&sql).await?;
                    let parameters: Vec<&(dyn ToSql + Sync)> = parameters
                        .iter()
                        .map(|parameter| &**parameter as &(dyn ToSql + Sync))
                        .collect();
                    let rows = client.query(&statement, &parameters).await?;
                    rows.iter()
                        .map(M::from_postgres)
                        .collect::<Result<Vec<M>, _>>()
                };
                futures_util::try_join!(opened, rows)
                    .map(|((), rows)| rows)
                    .map_err(ApiError::internal)
            }
            Connection::Sqlite(connection) => {
                let (sql, values) = query.build_sqlx(SqliteQueryBuilder);
                let mut connection = connection.lock().await;
                sqlx::query_as_with::<_, M::Row, _>(AssertSqlSafe(sql), values)
                    .fetch_all(&mut **connection)
                    .await
                    .map(|rows| rows.into_iter().map(M::from_row).collect())
                    .map_err(ApiError::internal)
            }
        };
        db::record_statement(self.statements, started.elapsed(), rows.is_err());
        rows
    }
}

impl Drop for Reader<'_> {
    /// Ends the transaction off the request's path: the page is answered without waiting for
    /// the `COMMIT`, and the connection returns to the pool only once it is out of the
    /// transaction. A connection that cannot be brought back is closed instead, never reused
    /// with another company's setting.
    fn drop(&mut self) {
        let Connection::Postgres { client, begin } = &mut self.connection else {
            return;
        };
        let Some(client) = client.take() else { return };
        let begun = begin
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_none();
        if !begun {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    // After a failed read the transaction is aborted and this rolls it back.
                    if client.batch_execute("COMMIT").await.is_err() {
                        drop(deadpool_postgres::Object::take(client));
                    }
                });
            }
            Err(_) => drop(deadpool_postgres::Object::take(client)),
        }
    }
}

/// `column` is one of `ids`. On PostgreSQL the ids go as one array parameter (`= ANY($1)`):
/// an `IN ($1, …, $n)` list is a different prepared statement for every length, and pages and
/// loaders send every length from 1 to 100. SQLite has no arrays and gets the list.
pub fn one_of(column: impl ColumnTrait, ids: Vec<Uuid>, db: &impl ConnectionTrait) -> Expr {
    one_of_on(db.get_database_backend(), column, ids)
}

fn one_of_on(backend: DbBackend, column: impl ColumnTrait, ids: Vec<Uuid>) -> Expr {
    match backend {
        DbBackend::Postgres => Expr::col(column.as_column_ref()).eq(PgFunc::any(Expr::val(ids))),
        _ => column.is_in(ids),
    }
}

/// A sea-query value as a tokio-postgres parameter of the matching Rust type. tokio-postgres
/// checks it against the type PostgreSQL infers for its place, so a mismatch is an error rather
/// than bytes of one type read as another. Only the kinds of values list reads bind are here.
fn parameter(value: Value) -> ApiResult<Box<dyn ToSql + Sync + Send>> {
    Ok(match value {
        Value::Bool(value) => Box::new(value),
        Value::SmallInt(value) => Box::new(value),
        Value::Int(value) => Box::new(value),
        Value::BigInt(value) => Box::new(value),
        // Limits and offsets.
        Value::BigUnsigned(value) => Box::new(
            value
                .map(i64::try_from)
                .transpose()
                .map_err(ApiError::internal)?,
        ),
        Value::String(value) => Box::new(value),
        Value::Uuid(value) => Box::new(value),
        Value::ChronoDateTimeUtc(value) => Box::new(value),
        Value::Array(ArrayType::Uuid, values) => Box::new(
            values
                .map(|values| {
                    values
                        .into_iter()
                        .map(uuid_element)
                        .collect::<ApiResult<Vec<_>>>()
                })
                .transpose()?,
        ),
        other => {
            return Err(ApiError::internal(anyhow::anyhow!(
                "no PostgreSQL parameter for the value {other:?}"
            )));
        }
    })
}

fn uuid_element(value: Value) -> ApiResult<Uuid> {
    match value {
        Value::Uuid(Some(id)) => Ok(id),
        other => Err(ApiError::internal(anyhow::anyhow!(
            "a uuid array holds {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use entity::customer;
    use sea_orm::{EntityTrait, QueryFilter, QueryTrait};

    use super::*;

    fn sql(backend: DbBackend, count: usize) -> String {
        let ids = (0..count).map(|_| Uuid::now_v7()).collect();
        #[allow(clippy::disallowed_methods)] // builds the SQL only, never runs it
        customer::Entity::find()
            .filter(one_of_on(backend, customer::Column::Id, ids))
            .build(backend)
            .sql
    }

    #[test]
    fn postgres_gets_one_statement_for_any_number_of_ids() {
        assert_eq!(sql(DbBackend::Postgres, 2), sql(DbBackend::Postgres, 20));
        assert!(sql(DbBackend::Postgres, 2).ends_with(r#""customers"."id" = ANY($1)"#));
        assert!(sql(DbBackend::Sqlite, 2).ends_with(r#""customers"."id" IN (?, ?)"#));
    }
}
