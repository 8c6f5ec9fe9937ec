//! Database connection and migrations, for SQLite (embedded default) and PostgreSQL alike.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};

use crate::configuration::Settings;

/// Connects to the configured database; SQLite gets WAL, foreign keys and a busy timeout.
pub async fn connect(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let url = settings.database_url();
    connect_with(settings, if url.starts_with("sqlite:") { 8 } else { 32 }).await
}

/// Like [`connect`], with a pool of at most `max_connections`.
pub async fn connect_with(
    settings: &Settings,
    max_connections: u32,
) -> anyhow::Result<DatabaseConnection> {
    let url = settings.database_url();
    if settings.database_url.is_none() {
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "Failed to create data directory {}",
                settings.data_dir.display()
            )
        })?;
    }
    let mut options = ConnectOptions::new(url.clone());
    options
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|options| {
            options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                .create_if_missing(true)
        })
        // Every statement is prepared and scoped by an indexed company id. Left to choose,
        // PostgreSQL re-plans each execution of the id-list statements the list pages and
        // loaders send (the planning cost as much as running them); one generic plan serves
        // every company.
        .map_sqlx_postgres_opts(|options| {
            options.options([("plan_cache_mode", "force_generic_plan")])
        });
    options
        .max_connections(max_connections)
        .min_connections(1.min(max_connections))
        // Pinging on every checkout is a round trip before every statement; only a connection
        // idle long enough for a server, proxy or firewall to have dropped it is checked.
        .test_before_acquire_if_idle_for(Duration::from_secs(30));
    let db = Database::connect(options).await.with_context(|| {
        format!(
            "Failed to connect to the database at {}: check DATABASE_URL and that the server is reachable",
            redact(&url)
        )
    })?;
    db.execute_unprepared("SELECT 1")
        .await
        .context("The database accepted the connection but does not answer queries")?;
    Ok(db)
}

/// Counts the SQL statements a connection runs (exported on `/metrics`) and records their
/// durations, so a resolver that starts issuing one query per row shows up at once.
pub fn instrument(db: &mut DatabaseConnection) -> Arc<AtomicU64> {
    let statements = Arc::new(AtomicU64::new(0));
    let counter = statements.clone();
    db.set_metric_callback(move |info| record_statement(&counter, info.elapsed, info.failed));
    statements
}

/// Counts one statement and records its duration: sea-orm's callback and the reads of
/// [`crate::services::rows`], which bypass sea-orm, both report here.
pub fn record_statement(counter: &AtomicU64, elapsed: Duration, failed: bool) {
    counter.fetch_add(1, Ordering::Relaxed);
    metrics::histogram!("db_statement_duration_seconds", "failed" => if failed { "true" } else { "false" })
        .record(elapsed.as_secs_f64());
}

/// Brings the schema up to date.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None)
        .await
        .context("Failed to run database migrations")
}

/// A connection URL without its password, fit for logs and error messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/platform"),
            "postgres://app:***@db:5432/platform"
        );
        assert_eq!(
            redact("sqlite://data/platform.db"),
            "sqlite://data/platform.db"
        );
    }
}
