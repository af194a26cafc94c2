/// The one error type of the reward crate.
#[derive(Debug, thiserror::Error)]
pub enum RewardError {
    #[error(transparent)]
    Model(#[from] tiller_model::ModelError),
    #[error(transparent)]
    Data(#[from] tiller_data::DataError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = RewardError> = std::result::Result<T, E>;
