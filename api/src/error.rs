//! The one error type of the API and its mapping to GraphQL `extensions.code`.
//!
//! Services return [`ApiError`]; resolvers use `?` and the client sees a GraphQL error whose
//! `extensions.code` says what went wrong. Database and infrastructure failures become an opaque
//! `INTERNAL` error: the cause chain goes to the log (with the request id), never to the client.
//!
//! `ApiError` deliberately does not implement `Display`: async-graphql converts any `Display`
//! type into an error by its message alone, which would drop the code. Without it, `?` in a
//! resolver can only go through our conversion below.

use async_graphql::ErrorExtensions;
use sea_orm::{DbErr, RuntimeErr, sqlx::error::ErrorKind};

/// Everything that can go wrong in a request, as the client sees it.
#[derive(Debug)]
pub enum ApiError {
    /// `UNAUTHENTICATED`: no credentials, or credentials that are invalid or expired.
    Unauthenticated(String),
    /// `FORBIDDEN`: authenticated, but not allowed. `reason` goes out as `extensions.reason`
    /// (e.g. `COMPANY_SUSPENDED`) when a client needs to tell refusals apart.
    Forbidden {
        message: String,
        reason: Option<&'static str>,
    },
    /// `NOT_FOUND`: the thing does not exist in the actor's company — exactly what another
    /// company's id gets too.
    NotFound(&'static str),
    /// `VALIDATION`: input that breaks a rule; `extensions.field` names the input field.
    Validation {
        field: Option<String>,
        message: String,
    },
    /// `VALIDATION` for a notification template that does not parse or reads what it may not:
    /// `extensions.field` names the input field and `extensions.line` the line (1-based) when
    /// there is one.
    InvalidTemplate {
        field: String,
        line: Option<usize>,
        message: String,
    },
    /// `CONFLICT`: the change collides with the current state (duplicate, stale version).
    Conflict(String),
    /// `RATE_LIMITED`: too many attempts; `extensions.retryAfter` says how many seconds to wait.
    RateLimited { retry_after_secs: u64 },
    /// `QUOTA_EXCEEDED`: the company's plan does not allow more.
    QuotaExceeded(String),
    /// `PAYMENT_PROVIDER_ERROR`: the payment provider refused or failed; `extensions.retryable`
    /// says whether the same request (same idempotency key) may succeed later.
    Provider { message: String, retryable: bool },
    /// `BAD_REQUEST`: the request itself is malformed (not JSON, no query, a batch too large).
    BadRequest(String),
    /// `INTERNAL`: a failure on our side; the message is opaque and the cause is logged.
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden {
            message: message.into(),
            reason: None,
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::Unauthenticated(message.into())
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    /// The message the client reads.
    pub fn message(&self) -> String {
        match self {
            Self::Unauthenticated(message)
            | Self::Conflict(message)
            | Self::QuotaExceeded(message)
            | Self::BadRequest(message)
            | Self::Forbidden { message, .. }
            | Self::Validation { message, .. }
            | Self::InvalidTemplate { message, .. }
            | Self::Provider { message, .. } => message.clone(),
            Self::NotFound(what) => format!("{what} not found"),
            Self::RateLimited { retry_after_secs } => {
                format!("too many requests, retry in {retry_after_secs} s")
            }
            Self::Internal(_) => "internal error".into(),
        }
    }

    /// The message the client reads, for answers given outside GraphQL (a WebSocket's close
    /// reason, a refused Socket.IO handshake): the cause of an internal error goes to the log
    /// first, as [`ErrorExtensions::extend`] does for GraphQL errors, instead of vanishing
    /// behind "internal error".
    pub fn reported_message(&self) -> String {
        self.log_cause();
        self.message()
    }

    /// As an `anyhow::Error`, for callers outside a request (the CLI, the demo seed, provider
    /// events): an internal error is its cause, chain and all; any other is its message.
    pub fn into_anyhow(self) -> anyhow::Error {
        match self {
            Self::Internal(cause) => cause,
            other => anyhow::Error::msg(other.message()),
        }
    }

    fn log_cause(&self) {
        if let Self::Internal(cause) = self {
            // The chain stays in our logs; the request id in the span ties it to the response.
            tracing::error!(error = ?cause, "internal error");
        }
    }

    /// The value of `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden { .. } => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::Validation { .. } | Self::InvalidTemplate { .. } => "VALIDATION",
            Self::Conflict(_) => "CONFLICT",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::QuotaExceeded(_) => "QUOTA_EXCEEDED",
            Self::Provider { .. } => "PAYMENT_PROVIDER_ERROR",
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::Internal(_) => "INTERNAL",
        }
    }

    /// Turns a violation of `key` into `CONFLICT` with `message`; anything else (another key's
    /// violation included) is internal.
    pub fn conflict_on(error: DbErr, key: UniqueKey, message: impl Into<String>) -> Self {
        if key.violated_by(&error) {
            Self::Conflict(message.into())
        } else {
            Self::internal(error)
        }
    }
}

/// One unique constraint or unique index, named the way each database reports its violation:
/// PostgreSQL gives the constraint's (or index's) name; SQLite's message names the columns
/// (`UNIQUE constraint failed: users.email`), or the index when it is on expressions. A caller
/// matches the key it means, so a violation of another key stays an internal error instead of
/// being answered as the one the caller expected.
#[derive(Debug, Clone, Copy)]
pub struct UniqueKey {
    /// As PostgreSQL names it: the migration's index name, or `<table>_<column>_key` for a
    /// column declared unique.
    pub name: &'static str,
    pub table: &'static str,
    /// In the order the index lists them, as SQLite's message does.
    pub columns: &'static [&'static str],
}

impl UniqueKey {
    pub const fn new(
        name: &'static str,
        table: &'static str,
        columns: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            table,
            columns,
        }
    }

    /// Whether `error` is a violation of this key (and not of another unique key).
    pub fn violated_by(&self, error: &DbErr) -> bool {
        let (DbErr::Exec(RuntimeErr::SqlxError(error))
        | DbErr::Query(RuntimeErr::SqlxError(error))) = error
        else {
            return false;
        };
        let Some(database) = error.as_database_error() else {
            return false;
        };
        if database.kind() != ErrorKind::UniqueViolation {
            return false;
        }
        if let Some(constraint) = database.constraint() {
            return constraint == self.name;
        }
        let Some(named) = database
            .message()
            .strip_prefix("UNIQUE constraint failed: ")
        else {
            return false;
        };
        if let Some(index) = named.strip_prefix("index '") {
            return index.strip_suffix('\'') == Some(self.name);
        }
        let mut columns = named.split(", ");
        self.columns.iter().all(|column| {
            columns.next().is_some_and(|named| {
                named
                    .split_once('.')
                    .is_some_and(|(table, named)| table == self.table && named == *column)
            })
        }) && columns.next().is_none()
    }
}

impl From<DbErr> for ApiError {
    fn from(error: DbErr) -> Self {
        Self::internal(error)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        Self::Internal(error)
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        self.log_cause();
        async_graphql::Error::new(self.message()).extend_with(|_, extensions| {
            extensions.set("code", self.code());
            match self {
                Self::Validation {
                    field: Some(field), ..
                } => extensions.set("field", field.as_str()),
                Self::InvalidTemplate { field, line, .. } => {
                    extensions.set("field", field.as_str());
                    if let Some(line) = line {
                        extensions.set("line", *line);
                    }
                }
                Self::Forbidden {
                    reason: Some(reason),
                    ..
                } => extensions.set("reason", *reason),
                Self::RateLimited { retry_after_secs } => {
                    extensions.set("retryAfter", *retry_after_secs)
                }
                Self::Provider { retryable, .. } => extensions.set("retryable", *retryable),
                _ => {}
            }
        })
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> Self {
        error.extend()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use sea_orm::{Database, EntityTrait};
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// What the log received while `during` ran.
    fn logged(during: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("log buffer").extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl MakeWriter<'_> for Captured {
            type Writer = Self;
            fn make_writer(&self) -> Self {
                self.clone()
            }
        }
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, during);
        let bytes = captured.0.lock().expect("log buffer").clone();
        String::from_utf8(bytes).expect("utf-8 log")
    }

    /// A real database failure: a query of a table that does not exist.
    async fn database_failure() -> DbErr {
        let db = Database::connect("sqlite::memory:").await.expect("sqlite");
        #[allow(clippy::disallowed_methods)] // an empty, unmigrated database: no tenant to scope to
        entity::customer::Entity::find()
            .all(&db)
            .await
            .expect_err("no tables in a new database")
    }

    #[tokio::test]
    async fn an_internal_error_keeps_its_cause_on_every_way_out() {
        let cause = database_failure().await.to_string();
        assert!(cause.contains("no such table"), "{cause}");

        let chain = format!(
            "{:#}",
            ApiError::from(database_failure().await)
                .into_anyhow()
                .context("applying payment_intent.succeeded")
        );
        assert!(
            chain.starts_with("applying payment_intent.succeeded: ") && chain.contains(&cause),
            "{chain}"
        );

        let error = ApiError::from(database_failure().await);
        let mut message = String::new();
        let log = logged(|| message = error.reported_message());
        assert_eq!(message, "internal error", "the client still sees no cause");
        assert!(log.contains(&cause), "the log has the cause: {log}");

        let error = ApiError::from(DbErr::Custom(cause.clone()));
        let log = logged(|| drop(error.extend()));
        assert!(log.contains(&cause), "a GraphQL error logs it too: {log}");

        let refused = ApiError::validation("input.name", "too long").into_anyhow();
        assert_eq!(refused.to_string(), "too long");
    }

    fn code_of(error: ApiError) -> String {
        let graphql = error.extend();
        let extensions = graphql.extensions.expect("extensions set");
        extensions.get("code").expect("code set").to_string()
    }

    #[test]
    fn every_variant_carries_its_code() {
        let cases = [
            (ApiError::unauthenticated("x"), "UNAUTHENTICATED"),
            (ApiError::forbidden("x"), "FORBIDDEN"),
            (ApiError::NotFound("order"), "NOT_FOUND"),
            (ApiError::validation("email", "bad"), "VALIDATION"),
            (ApiError::Conflict("x".into()), "CONFLICT"),
            (
                ApiError::RateLimited {
                    retry_after_secs: 3,
                },
                "RATE_LIMITED",
            ),
            (ApiError::QuotaExceeded("x".into()), "QUOTA_EXCEEDED"),
            (ApiError::BadRequest("x".into()), "BAD_REQUEST"),
            (ApiError::internal(anyhow::anyhow!("boom")), "INTERNAL"),
        ];
        for (error, code) in cases {
            assert_eq!(code_of(error), format!("\"{code}\""));
        }
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let error = ApiError::internal(anyhow::anyhow!("password=hunter2 in connection string"));
        let graphql = error.extend();
        assert_eq!(graphql.message, "internal error");
    }

    #[test]
    fn validation_names_the_field() {
        let graphql = ApiError::validation("input.email", "not an email").extend();
        let extensions = graphql.extensions.expect("extensions");
        assert_eq!(
            extensions.get("field").expect("field").to_string(),
            "\"input.email\""
        );
    }
}
