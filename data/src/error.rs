use std::path::PathBuf;

use crate::table::RowLocation;

/// The one error type of the data crate. Messages name the file (and where it makes
/// sense the line and field) so a user can fix their input without a debugger.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("tokenizer: {0}")]
    Encode(String),
    #[error("chat template: {0}")]
    ChatTemplate(String),
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A table file whose extension names no format we read or write.
    #[error("{path}: unsupported table format (expected .jsonl, .json or .parquet)")]
    UnsupportedFormat { path: PathBuf },
    /// Parquet or Arrow failed on a whole file (corrupt file, schema that cannot be inferred).
    #[error("{path}: {message}")]
    Parquet { path: PathBuf, message: String },
    /// One bad row: names the file, the line (JSONL) or row (Parquet) and, when known, the field.
    #[error("{location}: {}{message}", field_prefix(.field))]
    Row {
        location: RowLocation,
        field: Option<String>,
        message: String,
    },
    /// A bad field of a row whose place is given in words (`file:line`, `--prompt`).
    #[error("{location}: {message}")]
    Field { location: String, message: String },
    /// A dataset that cannot be used as a whole (no rows left, resume on another dataset).
    #[error("{0}")]
    Dataset(String),
}

fn field_prefix(field: &Option<String>) -> String {
    match field {
        Some(f) => format!("field `{f}`: "),
        None => String::new(),
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    /// A row error at `location`, naming `field` (use dotted/indexed paths like `messages[2].role`).
    pub fn row(location: &RowLocation, field: Option<&str>, message: impl Into<String>) -> Self {
        DataError::Row {
            location: location.clone(),
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
