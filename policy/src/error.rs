use std::path::PathBuf;

/// The one error type of the policy crate.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Model(#[from] tiller_model::ModelError),
    #[error(transparent)]
    Data(#[from] tiller_data::DataError),
    #[error(transparent)]
    Reward(#[from] tiller_reward::RewardError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = PolicyError> = std::result::Result<T, E>;

impl PolicyError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PolicyError::Io {
            path: path.into(),
            source,
        }
    }
}
