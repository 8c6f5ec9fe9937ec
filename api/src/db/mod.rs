//! Database connection and migrations, for SQLite (embedded default) and PostgreSQL alike;
//! each pool acts as the [`Role`] its work calls for ([`rls`]), and [`rows`] reads list pages.

pub mod rls;
pub mod rows;

pub mod tenant;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use migration::{Migrator, MigratorTrait};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    sqlx::{
        postgres::{PgConnectOptions, PgSslMode},
        sqlite::{SqliteJournalMode, SqliteSynchronous},
    },
};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

pub use rls::Role;

use crate::configuration::Settings;

/// Connects to the configured database as `role`; SQLite gets WAL, foreign keys and a busy
/// timeout.
pub async fn connect(settings: &Settings, role: Role) -> anyhow::Result<DatabaseConnection> {
    let url = settings.database_url();
    connect_with(
        settings,
        role,
        if url.starts_with("sqlite:") { 8 } else { 32 },
    )
    .await
}

/// Like [`connect`], with a pool of at most `max_connections`.
pub async fn connect_with(
    settings: &Settings,
    role: Role,
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
        .map_sqlx_postgres_opts(move |options| {
            options.options(
                [("plan_cache_mode", "force_generic_plan")]
                    .into_iter()
                    .chain(role.postgres_role().map(|role| ("role", role))),
            )
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

/// A pool of tokio-postgres connections for the reads [`rows`] pipelines, which sqlx cannot. It
/// connects as `db`'s pool does, in the same role (see [`read_connection`]).
pub fn postgres_read_pool(
    db: &DatabaseConnection,
    url: &str,
    max_connections: usize,
) -> anyhow::Result<Pool> {
    let options = db.get_postgres_connection_pool().connect_options();
    let (config, server_check) = read_connection(&options, url)?;
    let manager = Manager::from_config(
        config,
        MakeRustlsConnect::new(tls_config(server_check)?),
        // A connection the server closed shows as closed; asking it a question on every
        // checkout would be the round trip this pool exists to save.
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_connections)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(Duration::from_secs(5)))
        .wait_timeout(Some(Duration::from_secs(10)))
        .build()
        .context("Failed to build the PostgreSQL read pool")
}

/// How TLS checks the server, from `sslmode`.
#[derive(Debug, PartialEq, Eq)]
enum ServerCheck {
    /// `prefer` and `require`: encrypted but not authenticated, as libpq and sqlx do it.
    Unchecked,
    /// `verify-ca` and `verify-full`: the certificate must chain to the web's roots or to
    /// `sslrootcert` and name the host.
    Certificate { root_certificate: Option<String> },
}

/// The tokio-postgres settings for the server sqlx parsed from `url` into `options`: the same
/// host or socket, port, user, password, database, application name, session options
/// (`plan_cache_mode`, `role`) and TLS mode. The password and `sslrootcert`, which sqlx keeps to itself,
/// are read from the URL or from `PGPASSWORD` and `PGSSLROOTCERT`, as sqlx reads them.
fn read_connection(
    options: &PgConnectOptions,
    url: &str,
) -> anyhow::Result<(tokio_postgres::Config, ServerCheck)> {
    let mut config = tokio_postgres::Config::new();
    match options.get_socket() {
        Some(directory) => config.host_path(directory),
        None => config.host(options.get_host()),
    };
    config
        .port(options.get_port())
        .user(options.get_username())
        .connect_timeout(Duration::from_secs(5));
    if let Some(database) = options.get_database() {
        config.dbname(database);
    }
    if let Some(name) = options.get_application_name() {
        config.application_name(name);
    }
    if let Some(session) = options.get_options() {
        config.options(session);
    }
    let url = url::Url::parse(url).context("DATABASE_URL is not a valid URL")?;
    let parameter = |name: &str| {
        url.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    match url.password() {
        Some(password) => {
            config.password(percent_encoding::percent_decode_str(password).collect::<Vec<u8>>());
        }
        None => {
            if let Some(password) =
                parameter("password").or_else(|| std::env::var("PGPASSWORD").ok())
            {
                config.password(password);
            }
        }
    }
    let (mode, server_check) = match options.get_ssl_mode() {
        PgSslMode::Disable => (SslMode::Disable, ServerCheck::Unchecked),
        PgSslMode::Allow | PgSslMode::Prefer => (SslMode::Prefer, ServerCheck::Unchecked),
        PgSslMode::Require => (SslMode::Require, ServerCheck::Unchecked),
        PgSslMode::VerifyCa | PgSslMode::VerifyFull => (
            SslMode::Require,
            ServerCheck::Certificate {
                root_certificate: parameter("sslrootcert")
                    .or_else(|| std::env::var("PGSSLROOTCERT").ok()),
            },
        ),
    };
    config.ssl_mode(mode);
    Ok((config, server_check))
}

/// The TLS client for `server_check`; with `sslmode=disable` it is never used.
fn tls_config(server_check: ServerCheck) -> anyhow::Result<ClientConfig> {
    let builder = ClientConfig::builder();
    let root_certificate = match server_check {
        ServerCheck::Unchecked => {
            let provider = CryptoProvider::get_default()
                .cloned()
                .context("no TLS crypto provider is installed")?;
            return Ok(builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(UncheckedCertificate(provider)))
                .with_no_client_auth());
        }
        ServerCheck::Certificate { root_certificate } => root_certificate,
    };
    let mut roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = root_certificate {
        let pem = std::fs::read(&path)
            .with_context(|| format!("Failed to read the database's root certificate {path}"))?;
        for certificate in CertificateDer::pem_slice_iter(&pem) {
            roots
                .add(certificate.with_context(|| format!("{path} is not a PEM certificate"))?)
                .with_context(|| format!("{path} holds an unusable certificate"))?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Encryption without authentication of the server, which is what `sslmode=prefer` and
/// `sslmode=require` mean; the handshake's signatures are still checked.
#[derive(Debug)]
struct UncheckedCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for UncheckedCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How many write transactions on `db` are worth running at once. SQLite has one writer: a
/// second concurrent write only waits for the lock, in the busy handler's sleeps (1, 2, 5, 10…
/// ms), so writes there go one after another.
pub fn concurrent_writes(db: &DatabaseConnection) -> usize {
    match db.get_database_backend() {
        sea_orm::DbBackend::Sqlite => 1,
        _ => 8,
    }
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
/// [`rows`], which bypass sea-orm, both report here.
pub fn record_statement(counter: &AtomicU64, elapsed: Duration, failed: bool) {
    counter.fetch_add(1, Ordering::Relaxed);
    metrics::histogram!("db_statement_duration_seconds", "failed" => if failed { "true" } else { "false" })
        .record(elapsed.as_secs_f64());
}

/// Brings the schema up to date; `db` acts as the owner ([`Role::Owner`]).
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None)
        .await
        .context("Failed to run database migrations")
}

/// Migrates on a connection of the owner's own, closed after: the server's pools act as roles
/// that may not change the schema, and which the first migration of a database creates.
pub async fn migrate_as_owner(settings: &Settings) -> anyhow::Result<()> {
    let owner = connect_with(settings, Role::Owner, 1).await?;
    migrate(&owner).await?;
    owner
        .close()
        .await
        .context("Failed to close the migration connection")
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
    use std::str::FromStr;

    use sea_orm::sqlx::postgres::PgConnectOptions;
    use tokio_postgres::config::{Host, SslMode};

    use super::{ServerCheck, read_connection, redact};

    fn read_connection_for(url: &str) -> (tokio_postgres::Config, ServerCheck) {
        let options = PgConnectOptions::from_str(url)
            .expect("sqlx parses the URL")
            .options([
                ("plan_cache_mode", "force_generic_plan"),
                ("role", "platform_app"),
            ]);
        read_connection(&options, url).expect("a read connection")
    }

    #[test]
    fn the_read_pool_connects_where_and_as_sqlx_does() {
        let url = "postgres://app:p%40ss%2Fw@db.internal:6543/platform?sslmode=verify-full\
                   &sslrootcert=/etc/platform/ca.pem&application_name=platform-api";
        let (config, server_check) = read_connection_for(url);

        assert_eq!(config.get_hosts(), [Host::Tcp("db.internal".into())]);
        assert_eq!(config.get_ports(), [6543]);
        assert_eq!(config.get_user(), Some("app"));
        assert_eq!(config.get_password(), Some(&b"p@ss/w"[..]));
        assert_eq!(config.get_dbname(), Some("platform"));
        assert_eq!(config.get_application_name(), Some("platform-api"));
        assert_eq!(
            config.get_options(),
            Some("-c plan_cache_mode=force_generic_plan -c role=platform_app")
        );
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        assert_eq!(
            server_check,
            ServerCheck::Certificate {
                root_certificate: Some("/etc/platform/ca.pem".into())
            }
        );
    }

    #[test]
    fn the_read_pool_keeps_the_urls_tls_mode() {
        let mode = |url: &str| {
            let (config, server_check) = read_connection_for(url);
            (config.get_ssl_mode(), server_check)
        };
        let base = "postgres://postgres@127.0.0.1:5432/test";

        // Spelt out: without it sqlx takes the mode from PGSSLMODE, which a developer may set.
        assert_eq!(
            mode(&format!("{base}?sslmode=prefer")),
            (SslMode::Prefer, ServerCheck::Unchecked)
        );
        assert_eq!(
            mode(&format!("{base}?sslmode=allow")),
            (SslMode::Prefer, ServerCheck::Unchecked)
        );
        assert_eq!(
            mode(&format!("{base}?sslmode=disable")),
            (SslMode::Disable, ServerCheck::Unchecked)
        );
        assert_eq!(
            mode(&format!("{base}?sslmode=require")),
            (SslMode::Require, ServerCheck::Unchecked)
        );
        assert!(matches!(
            mode(&format!("{base}?sslmode=verify-ca")),
            (SslMode::Require, ServerCheck::Certificate { .. })
        ));
    }

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
