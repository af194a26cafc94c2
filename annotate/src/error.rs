//! The crate's one error type. Every failure — bad input, a missing token, a vote on an
//! item that is not yours, a broken database — is an [`AppError`]; the HTTP layer turns
//! it into a status code and a JSON body `{"error": "..."}` whose message names the
//! field or id at fault.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Result alias used throughout the crate.
pub type Result<T, E = AppError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is well-formed JSON but a field has an unacceptable value.
    #[error("invalid field `{field}`: {message}")]
    InvalidField { field: String, message: String },
    /// The body could not be parsed (malformed JSON, wrong type, unknown field).
    #[error("bad request body: {0}")]
    BadBody(String),
    /// One line of an uploaded JSONL file is bad.
    #[error("line {line}: {message}")]
    BadLine { line: usize, message: String },
    #[error("request body is larger than this endpoint's limit")]
    BodyTooLarge,
    #[error("missing or malformed `Authorization: Bearer <token>` header")]
    MissingToken,
    #[error("unknown token")]
    UnknownToken,
    #[error("{0}")]
    Forbidden(String),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The request conflicts with the current state (already voted, name taken, ...).
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("database error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("cannot connect to the database {url}: {source}")]
    PgConnect {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A column held a value of another type than the code reads (a schema mismatch).
    #[error("database column type: {0}")]
    ColumnType(String),
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("json error: {0}")]
    Json(#[from] serde_json::Error),
    /// Writing an exported table (JSONL or Parquet) failed.
    #[error(transparent)]
    Table(#[from] tiller_data::DataError),
    #[error("database schema version {found} is newer than this build understands ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    /// Writing a format that needs a component this build does not have.
    #[error("{0}")]
    Unsupported(String),
    /// The store's writer thread has stopped (only after a panic or shutdown).
    #[error("the database writer has shut down")]
    WriterGone,
    /// The batch transaction holding this request failed to commit; nothing was written.
    #[error("database commit failed: {0}")]
    CommitFailed(String),
    #[error("background task failed: {0}")]
    Background(String),
    /// An arena model's endpoint failed (down, slow, an error status, a broken stream);
    /// the message is what the annotator is told and never names the model.
    #[error("{0}")]
    ModelEndpoint(String),
}

impl AppError {
    /// Shorthand for [`AppError::InvalidField`].
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`AppError::NotFound`].
    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        AppError::NotFound {
            what,
            id: id.to_string(),
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        AppError::Io {
            context: context.into(),
            source,
        }
    }

    /// A constraint of the schema refused the write (SQLite's constraint error, or
    /// PostgreSQL's SQLSTATE class 23, integrity constraint violation).
    pub(crate) fn is_constraint_violation(&self) -> bool {
        match self {
            AppError::Database(rusqlite::Error::SqliteFailure(err, _)) => {
                err.code == rusqlite::ErrorCode::ConstraintViolation
            }
            AppError::Postgres(err) => err.code().is_some_and(|c| c.code().starts_with("23")),
            _ => false,
        }
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        use AppError::*;
        match self {
            InvalidField { .. } | BadBody(_) | BadLine { .. } => StatusCode::BAD_REQUEST,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            MissingToken | UnknownToken => StatusCode::UNAUTHORIZED,
            Forbidden(_) => StatusCode::FORBIDDEN,
            NotFound { .. } => StatusCode::NOT_FOUND,
            Conflict(_) => StatusCode::CONFLICT,
            Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            ModelEndpoint(_) => StatusCode::BAD_GATEWAY,
            Database(_)
            | Postgres(_)
            | PgConnect { .. }
            | ColumnType(_)
            | Open { .. }
            | Io { .. }
            | Json(_)
            | Table(_)
            | SchemaTooNew { .. }
            | WriterGone
            | CommitFailed(_)
            | Background(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body = crate::api::wire::ErrorBody {
            error: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}
