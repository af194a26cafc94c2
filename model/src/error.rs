use std::path::PathBuf;

/// The one error type of the model crate. Checkpoint errors name the file and tensor.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: model_type `{model_type}` is not supported (supported: llama, qwen2)")]
    UnsupportedModelType { path: PathBuf, model_type: String },
    #[error("{dir}: checkpoint is missing tensor(s): {}", names.join(", "))]
    MissingTensors { dir: PathBuf, names: Vec<String> },
    #[error("{file}: unexpected tensor(s) not in the model: {}", names.join(", "))]
    UnexpectedTensors { file: PathBuf, names: Vec<String> },
    #[error("{file}: tensor `{name}` has shape {found:?}, the model expects {expected:?}")]
    TensorShape {
        file: PathBuf,
        name: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    #[error("{file}: tensor `{name}`: {message}")]
    Tensor {
        file: PathBuf,
        name: String,
        message: String,
    },
    #[error("{path}: GGUF: {message}")]
    Gguf { path: PathBuf, message: String },
    #[error("prompt {index} has {tokens} tokens; with {max_new_tokens} new tokens that exceeds the context window of {context} tokens")]
    ContextOverflow {
        index: usize,
        tokens: usize,
        max_new_tokens: usize,
        context: usize,
    },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("step {step}: {what}; stopping before the update so no checkpoint holds non-finite weights (set on_non_finite = \"skip\" to skip such steps)")]
    NonFinite { step: u64, what: String },
    /// A data-parallel job could not start or lost a rank; the message names the rank.
    #[error("distributed: {0}")]
    Distributed(String),
    #[error(transparent)]
    Data(#[from] tiller_data::DataError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
}
