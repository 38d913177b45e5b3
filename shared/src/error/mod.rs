//! The one domain error of both services and its one mapping to the wire.
//!
//! Handlers return [`Error`] with `?`; `From<Error> for tonic::Status` is the
//! only place a status is built. Every status carries a `google.rpc.ErrorInfo`
//! (UPPER_SNAKE_CASE reason, domain `docverify`) and a `RequestInfo` with the
//! request id. Internal causes go to the log, never to the client.

use std::time::Duration;

use tonic::Code;
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::identity::current_request_id;

mod reason;
pub use reason::Reason;

/// The `google.rpc.ErrorInfo` domain of every docverify error.
pub const ERROR_DOMAIN: &str = "docverify";

pub type Result<T, E = Error> = std::result::Result<T, E>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// UNAUTHENTICATED: no, bad or expired credentials.
    #[error("{message}")]
    Unauthenticated {
        reason: Reason,
        message: &'static str,
    },
    /// PERMISSION_DENIED: authenticated, but not allowed.
    #[error("{message}")]
    PermissionDenied {
        reason: Reason,
        message: &'static str,
    },
    /// NOT_FOUND: missing, or not visible to this caller.
    #[error("{resource} not found")]
    NotFound { resource: &'static str },
    /// ALREADY_EXISTS.
    #[error("{message}")]
    AlreadyExists {
        reason: Reason,
        message: &'static str,
    },
    /// FAILED_PRECONDITION: the state does not allow this change.
    #[error("{message}")]
    FailedPrecondition {
        reason: Reason,
        message: &'static str,
    },
    /// ABORTED: a concurrent change got in the way (a document deleted
    /// during its download); retrying the whole operation may work.
    #[error("{message}")]
    Aborted {
        reason: Reason,
        message: &'static str,
    },
    /// DEADLINE_EXCEEDED: a bound on time ran out (a stream the client
    /// stopped reading).
    #[error("{message}")]
    DeadlineExceeded {
        reason: Reason,
        message: &'static str,
    },
    /// INVALID_ARGUMENT with one `BadRequest` field violation per bad field.
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// RESOURCE_EXHAUSTED, with `RetryInfo` when waiting helps.
    #[error("{message}")]
    ResourceExhausted {
        reason: Reason,
        message: &'static str,
        retry_after: Option<Duration>,
    },
    /// RESOURCE_EXHAUSTED (`RATE_LIMITED`) with `RetryInfo` and a
    /// `QuotaFailure` naming the limit: a client address over a public RPC's
    /// token bucket.
    #[error("too many calls from this client address: {description}")]
    RateLimited {
        description: String,
        retry_after: Duration,
    },
    /// UNAVAILABLE: a dependency (database, auth-service) cannot be reached.
    #[error("service unavailable")]
    Unavailable(#[source] BoxError),
    /// INTERNAL: a bug. The client sees "internal error" and the request id.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    pub fn internal(cause: impl Into<BoxError>) -> Self {
        Self::Internal(cause.into())
    }

    pub fn unavailable(cause: impl Into<BoxError>) -> Self {
        Self::Unavailable(cause.into())
    }

    /// INVALID_ARGUMENT for one field.
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub fn not_found(resource: &'static str) -> Self {
        Self::NotFound { resource }
    }

    pub fn code(&self) -> Code {
        match self {
            Self::Unauthenticated { .. } => Code::Unauthenticated,
            Self::PermissionDenied { .. } => Code::PermissionDenied,
            Self::NotFound { .. } => Code::NotFound,
            Self::AlreadyExists { .. } => Code::AlreadyExists,
            Self::FailedPrecondition { .. } => Code::FailedPrecondition,
            Self::Aborted { .. } => Code::Aborted,
            Self::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::ResourceExhausted { .. } | Self::RateLimited { .. } => Code::ResourceExhausted,
            Self::Unavailable(_) => Code::Unavailable,
            Self::Internal(_) => Code::Internal,
        }
    }

    /// The `ErrorInfo` reason.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Unauthenticated { reason, .. }
            | Self::PermissionDenied { reason, .. }
            | Self::AlreadyExists { reason, .. }
            | Self::FailedPrecondition { reason, .. }
            | Self::Aborted { reason, .. }
            | Self::DeadlineExceeded { reason, .. }
            | Self::ResourceExhausted { reason, .. } => *reason,
            Self::NotFound { .. } => Reason::NotFound,
            Self::InvalidArgument(_) => Reason::InvalidArgument,
            Self::RateLimited { .. } => Reason::RateLimited,
            Self::Unavailable(_) => Reason::Unavailable,
            Self::Internal(_) => Reason::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        let request_id = current_request_id().unwrap_or_default();
        let mut details = ErrorDetails::new();
        details.set_error_info(
            error.reason().as_str(),
            ERROR_DOMAIN,
            std::collections::HashMap::new(),
        );
        details.set_request_info(request_id.clone(), "");
        let message = match &error {
            Error::Internal(cause) => {
                tracing::error!(error = %cause, cause = ?cause, "internal error");
                format!("internal error (request id {request_id})")
            }
            Error::Unavailable(cause) => {
                tracing::warn!(error = %cause, "dependency unavailable");
                "service unavailable, retry later".to_owned()
            }
            Error::InvalidArgument(violations) => {
                details.set_bad_request(violations.clone());
                error.to_string()
            }
            Error::ResourceExhausted {
                retry_after: Some(after),
                ..
            } => {
                details.set_retry_info(Some(*after));
                error.to_string()
            }
            Error::RateLimited {
                description,
                retry_after,
            } => {
                details.set_retry_info(Some(*retry_after));
                details.add_quota_failure_violation("client address", description.clone());
                error.to_string()
            }
            _ => error.to_string(),
        };
        tonic::Status::with_error_details(error.code(), message, details)
    }
}

impl From<sqlx::Error> for Error {
    /// Lost connections and exhausted pools are UNAVAILABLE (retrying helps);
    /// anything else from the database is a bug.
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Error::unavailable(e),
            sqlx::Error::Database(db) if is_unavailable(db.as_ref()) => Error::unavailable(e),
            _ => Error::internal(e),
        }
    }
}

/// PostgreSQL class 08 (connection), 53 (resources), 57P0x (shutdown) and
/// refused connections;
/// SQLite BUSY, LOCKED, IOERR and CANTOPEN (extended codes keep the primary
/// code in the low byte).
fn is_unavailable(db: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = db.code() else { return false };
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        return code
            .parse::<i64>()
            .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 14));
    }
    // 55000: the database refuses connections for now; 3D000: it is gone;
    // 57014: statement_timeout; 55P03: lock_timeout; 25P03: the session sat
    // idle in a transaction too long; 40001 and 40P01: a serialisation
    // failure or deadlock, which a retry resolves.
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P0")
        || matches!(
            code.as_ref(),
            "55000" | "3D000" | "57014" | "55P03" | "25P03" | "40001" | "40P01"
        )
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    fn reason(status: &tonic::Status) -> String {
        status
            .get_error_details()
            .error_info()
            .map(|i| i.reason.clone())
            .unwrap_or_default()
    }

    #[test]
    fn each_error_maps_to_its_code_and_reason() {
        let cases = [
            (
                Error::Unauthenticated {
                    reason: Reason::InvalidToken,
                    message: "m",
                },
                Code::Unauthenticated,
                "INVALID_TOKEN",
            ),
            (
                Error::PermissionDenied {
                    reason: Reason::PermissionDenied,
                    message: "m",
                },
                Code::PermissionDenied,
                "PERMISSION_DENIED",
            ),
            (Error::not_found("document"), Code::NotFound, "NOT_FOUND"),
            (
                Error::AlreadyExists {
                    reason: Reason::EmailTaken,
                    message: "m",
                },
                Code::AlreadyExists,
                "EMAIL_TAKEN",
            ),
            (
                Error::FailedPrecondition {
                    reason: Reason::DocumentNotPending,
                    message: "m",
                },
                Code::FailedPrecondition,
                "DOCUMENT_NOT_PENDING",
            ),
            (
                Error::invalid("email", "bad"),
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            ),
            (
                Error::ResourceExhausted {
                    reason: Reason::LoginThrottled,
                    message: "m",
                    retry_after: Some(Duration::from_secs(60)),
                },
                Code::ResourceExhausted,
                "LOGIN_THROTTLED",
            ),
            (
                Error::RateLimited {
                    description: "10 logins a minute".into(),
                    retry_after: Duration::from_secs(7),
                },
                Code::ResourceExhausted,
                "RATE_LIMITED",
            ),
            (
                Error::unavailable("db down"),
                Code::Unavailable,
                "UNAVAILABLE",
            ),
            (Error::internal("boom"), Code::Internal, "INTERNAL"),
        ];
        for (error, code, why) in cases {
            let status = crate::identity::REQUEST_ID
                .sync_scope("req-1".to_owned(), || tonic::Status::from(error));
            assert_eq!(status.code(), code);
            assert_eq!(reason(&status), why);
            let details = status.get_error_details();
            assert_eq!(
                details.error_info().map(|i| i.domain.as_str()),
                Some(ERROR_DOMAIN)
            );
            assert_eq!(
                details.request_info().map(|r| r.request_id.as_str()),
                Some("req-1")
            );
            match code {
                Code::InvalidArgument => {
                    assert_eq!(
                        details
                            .bad_request()
                            .map(|b| b.field_violations[0].field.as_str()),
                        Some("email")
                    );
                    // A client without the details still reads the field.
                    assert!(
                        status.message().contains("email: bad"),
                        "{}",
                        status.message()
                    );
                }
                Code::ResourceExhausted if why == "RATE_LIMITED" => {
                    assert_eq!(
                        details.retry_info().and_then(|r| r.retry_delay),
                        Some(Duration::from_secs(7))
                    );
                    let quota = details.quota_failure().expect("which quota");
                    assert_eq!(quota.violations[0].subject, "client address");
                    assert_eq!(quota.violations[0].description, "10 logins a minute");
                }
                Code::ResourceExhausted => assert_eq!(
                    details.retry_info().and_then(|r| r.retry_delay),
                    Some(Duration::from_secs(60))
                ),
                // The client is told to retry; the cause stays in the log.
                Code::Unavailable => {
                    assert_eq!(status.message(), "service unavailable, retry later");
                }
                _ => {}
            }
        }
    }

    #[tokio::test]
    async fn internal_errors_keep_sql_and_paths_to_the_log() {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        let cause = sqlx::query("SELECT secret_column FROM /etc/passwd")
            .execute(&mut conn)
            .await
            .unwrap_err();
        let error = Error::from(cause);
        assert_eq!(error.code(), Code::Internal);
        let status = crate::identity::REQUEST_ID
            .scope("req-2".to_owned(), async { tonic::Status::from(error) })
            .await;
        assert_eq!(status.message(), "internal error (request id req-2)");
        assert!(!format!("{:?}", status.details()).contains("SELECT"));
    }

    /// A database error as a driver reports it, by its SQLSTATE.
    #[derive(Debug)]
    struct Sqlstate(&'static str);

    impl std::fmt::Display for Sqlstate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Sqlstate {}

    impl sqlx::error::DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            "made by the test"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    #[test]
    fn postgres_errors_that_a_retry_resolves_are_unavailable_the_rest_internal() {
        let code = |state| Error::from(sqlx::Error::Database(Box::new(Sqlstate(state)))).code();
        for state in [
            "08006", "08001", "53300", "53100", "57P01", "57P03", "55000", "3D000", "57014",
            "55P03", "25P03", "40001", "40P01",
        ] {
            assert_eq!(code(state), Code::Unavailable, "{state}");
        }
        // A unique violation, a missing table, a too long value, an
        // operator intervention that is not a shutdown, a raised exception.
        for state in ["23505", "42P01", "22001", "57000", "P0001", "25P02"] {
            assert_eq!(code(state), Code::Internal, "{state}");
        }
    }

    #[tokio::test]
    async fn sqlite_busy_is_unavailable_and_a_constraint_internal() {
        use sqlx::{Connection, SqliteConnection, sqlite::SqliteConnectOptions};
        let path = std::env::temp_dir().join(format!("docverify-busy-{}.db", uuid::Uuid::now_v7()));
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .busy_timeout(Duration::ZERO);
        let mut holder = SqliteConnection::connect_with(&options).await.unwrap();
        let mut waiter = SqliteConnection::connect_with(&options).await.unwrap();
        for statement in [
            "CREATE TABLE t (id INTEGER PRIMARY KEY)",
            "INSERT INTO t VALUES (1)",
        ] {
            sqlx::query(statement).execute(&mut holder).await.unwrap();
        }
        let unique = sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut holder)
            .await
            .unwrap_err();
        assert_eq!(Error::from(unique).code(), Code::Internal);
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut holder)
            .await
            .unwrap();
        let busy = sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut waiter)
            .await
            .unwrap_err();
        assert_eq!(Error::from(busy).code(), Code::Unavailable);
        drop((holder, waiter));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_exhausted_pool_is_unavailable_not_internal() {
        assert_eq!(
            Error::from(sqlx::Error::PoolTimedOut).code(),
            Code::Unavailable
        );
        assert_eq!(
            Error::from(sqlx::Error::PoolClosed).code(),
            Code::Unavailable
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(Error::from(sqlx::Error::Io(io)).code(), Code::Unavailable);
        let status = tonic::Status::from(Error::from(sqlx::Error::PoolTimedOut));
        assert!(!status.message().contains("pool"), "{}", status.message());
    }
}
