//! Errors: `ServeError` for start-up (loading models, binding), and `ApiError`, an
//! OpenAI-shaped error response (`{"error": {"message", "type", "param", "code"}}`) with
//! `param` naming the request field at fault.

use std::path::PathBuf;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The one error type of the serve crate (start-up and shutdown).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--model {spec}: {message}")]
    ModelSpec { spec: String, message: String },
    #[error("{}: {source}", dir.display())]
    Load {
        dir: PathBuf,
        #[source]
        source: tiller_model::ModelError,
    },
    /// A `--adapter NAME=DIR` that does not load over its base (its cause follows in the
    /// error chain; boxed to keep every `Result<_, ServeError>` small).
    #[error("--adapter {name}={}: cannot load this LoRA adapter", dir.display())]
    Adapter {
        name: String,
        dir: PathBuf,
        #[source]
        source: Box<tiller_model::ModelError>,
    },
    /// A `--adapter NAME=DIR` whose adapter_config.json records a base other than the
    /// `--model` it is served over (see `adapter`).
    #[error(
        "--adapter {name}={}: this LoRA adapter was trained over {} (base_model_name_or_path \
         in its adapter_config.json), not over --model {}",
        dir.display(),
        recorded.display(),
        base.display()
    )]
    AdapterBase {
        name: String,
        dir: PathBuf,
        recorded: PathBuf,
        base: PathBuf,
    },
    #[error("{}: {source}", dir.display())]
    Tokenizer {
        dir: PathBuf,
        #[source]
        source: tiller_data::DataError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error("the engine thread of model `{0}` stopped during start-up")]
    EngineGone(String),
}

/// An error answered to a client, in OpenAI's shape.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds for a `Retry-After` header (429 only).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// 400 for a bad value of request field `param`.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.to_owned()),
            code: Some("invalid_value"),
            retry_after: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn model_not_found(name: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("The model `{name}` does not exist"),
            kind: "invalid_request_error",
            param: Some("model".into()),
            code: Some("model_not_found"),
            retry_after: None,
        }
    }

    pub fn not_found(path: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("Unknown path {path}"),
            kind: "invalid_request_error",
            param: None,
            code: Some("unknown_url"),
            retry_after: None,
        }
    }

    pub fn unauthorized() -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "Incorrect or missing API key (send `Authorization: Bearer KEY`)".into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
            retry_after: None,
        }
    }

    pub fn queue_full(limit: usize) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "The server is busy ({limit} sequences queued or running); retry shortly"
            ),
            kind: "rate_limit_error",
            param: None,
            code: Some("rate_limit_exceeded"),
            retry_after: Some(1),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
            retry_after: Some(1),
        }
    }

    /// The JSON body, also sent as the last event of a failed stream.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
