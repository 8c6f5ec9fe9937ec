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
//! caller's [`Select`], so tenant scoping is exactly that of [`super::tenant::find`].

use std::{sync::atomic::AtomicU64, time::Instant};

use entity::{customer, order, order_item, order_status_history, product};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, EntityTrait, QuerySelect, QueryTrait, Select,
    sea_query::{ArrayType, Expr, PostgresQueryBuilder, SqliteQueryBuilder, Value},
    sqlx::{
        self, AssertSqlSafe, FromRow, Sqlite, SqlitePool, pool::PoolConnection, sqlite::SqliteRow,
    },
};
use sea_query_sqlx::SqlxBinder;
use tokio::sync::Mutex;
use tokio_postgres::types::ToSql;

use crate::{
    db,
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

/// One pooled connection that several reads share; it goes back to the pool when dropped.
pub struct Reader<'a> {
    connection: Connection,
    /// Where the statements are counted, with those sea-orm runs (see [`db::instrument`]).
    statements: &'a AtomicU64,
}

enum Connection {
    Postgres(deadpool_postgres::Object),
    /// Reads awaited together take turns.
    Sqlite(Mutex<PoolConnection<Sqlite>>),
}

impl<'a> Reader<'a> {
    pub async fn acquire(pool: &ReadPool, statements: &'a AtomicU64) -> ApiResult<Self> {
        let connection = match pool {
            ReadPool::Postgres(pool) => {
                Connection::Postgres(pool.get().await.map_err(ApiError::internal)?)
            }
            ReadPool::Sqlite(pool) => Connection::Sqlite(Mutex::new(
                pool.acquire().await.map_err(ApiError::internal)?,
            )),
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

    /// The rows `select` finds, with every column of the model. On PostgreSQL, reads of one
    /// reader awaited together share a round trip, and each statement is prepared once per
    /// connection: lists of ids travel as one array parameter, so the number of statements a
    /// connection keeps is bounded by the filters' combinations, not by the data.
    pub async fn all<M: Positional>(&self, select: Select<M::Entity>) -> ApiResult<Vec<M>> {
        let query = select.select_only().columns(M::columns()).into_query();
        let started = Instant::now();
        let rows = match &self.connection {
            Connection::Postgres(client) => {
                let (sql, values) = query.build(PostgresQueryBuilder);
                let parameters = values
                    .into_iter()
                    .map(parameter)
                    .collect::<ApiResult<Vec<_>>>()?;
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
                }
                .await;
                rows.map_err(ApiError::internal)
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

fn uuid_element(value: Value) -> ApiResult<uuid::Uuid> {
    match value {
        Value::Uuid(Some(id)) => Ok(id),
        other => Err(ApiError::internal(anyhow::anyhow!(
            "a uuid array holds {other:?}"
        ))),
    }
}
