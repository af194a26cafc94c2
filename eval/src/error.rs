//! The one error type of the eval crate. Messages name the file, line and field of bad
//! input; an option error names the option by its field in [`crate::EvalOptions`], and
//! the caller words it as a flag (`--reward`) or a pipeline key (`[stages.eval] reward`).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Data(#[from] tiller_data::DataError),
    #[error(transparent)]
    Model(#[from] tiller_model::ModelError),
    #[error(transparent)]
    Reward(#[from] tiller_reward::RewardError),
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Bad input: the message names the file, the line and the field.
    #[error("{0}")]
    Input(String),
    /// Options that cannot run together, or one that is missing. `option` is the field's
    /// name in the options struct (`reward`, `baseline`, `out`).
    #[error("{option}: {message}")]
    Option {
        option: &'static str,
        message: String,
    },
    /// A failure while running a model, with what was being done.
    #[error("{what}: {source}")]
    Running {
        what: String,
        #[source]
        source: Box<EvalError>,
    },
}

pub type Result<T, E = EvalError> = std::result::Result<T, E>;

impl EvalError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EvalError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn option(option: &'static str, message: impl Into<String>) -> Self {
        EvalError::Option {
            option,
            message: message.into(),
        }
    }

    /// Wraps `self` with what was being done (`answering: generation failed`).
    pub fn running(self, what: impl Into<String>) -> Self {
        EvalError::Running {
            what: what.into(),
            source: Box::new(self),
        }
    }
}

/// `bail!`-style early return with an [`EvalError::Input`] message.
macro_rules! input_err {
    ($($arg:tt)*) => {
        return Err($crate::error::EvalError::Input(format!($($arg)*)))
    };
}
pub(crate) use input_err;
