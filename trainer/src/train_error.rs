//! The error type of `oxrl train`: a bad configuration (naming the key), or a failure of one of
//! the parts a training run drives (model, data, verifiers, engine, math, files).

use std::path::PathBuf;

/// Why a training run could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration is invalid; `key` is the dotted path of the offending key.
    #[error("{origin}: `{key}`: {message}")]
    Config {
        /// The file (or `--set`) the value came from.
        origin: String,
        /// Dotted key path, e.g. `algorithm.steps`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The model could not be built, loaded, run or saved.
    #[error("model: {0}")]
    Model(#[from] oxrl_models::ModelError),
    /// The task's data could not be loaded or rendered.
    #[error("task: {0}")]
    Dataset(#[from] oxrl_datasets::DatasetError),
    /// The rollout engine failed.
    #[error("rollout: {0}")]
    Rollout(String),
    /// A loss, advantage or optimizer computation failed.
    #[error("math: {0}")]
    Math(#[from] crate::MathError),
    /// The optimizer failed (or was handed a bad configuration).
    #[error("optimizer: {0}")]
    Optim(#[from] crate::optim::OptimError),
    /// A tensor operation of the loop failed.
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A checkpoint is missing, incomplete or does not fit the configuration.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A property the loop guarantees was violated (e.g. a completion from a stale policy).
    #[error("invariant: {0}")]
    Invariant(String),
}

impl TrainError {
    /// A configuration error at `key`.
    pub fn config(
        origin: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        TrainError::Config {
            origin: origin.into(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }

    /// A checkpoint error on `path`.
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        TrainError::Checkpoint {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Result of the training loop's functions.
pub type TrainResult<T> = std::result::Result<T, TrainError>;
