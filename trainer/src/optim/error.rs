//! The optimizer's error type: invalid hyperparameters or group rules, a non-finite gradient
//! norm, and state files that cannot be read or do not fit the parameters.

use std::path::PathBuf;

/// What can go wrong when building the optimizer, clipping gradients, stepping or saving state.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// A tensor operation failed inside candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A hyperparameter, schedule setting or group rule that cannot be used.
    #[error("invalid optimizer config: {0}")]
    Config(String),
    /// A parameter or gradient that does not fit (unsupported dtype, duplicate name, shape
    /// mismatch between a parameter and its gradient).
    #[error("invalid parameter: {0}")]
    Param(String),
    /// The total gradient norm is NaN or infinite; the gradients were left untouched. The
    /// training loop should skip this optimizer step (and log `norm`).
    #[error("non-finite gradient norm {norm}; gradients left unclipped, skip this step")]
    NonFiniteGradNorm {
        /// The pre-clip total L2 norm that was found (NaN or ±inf).
        norm: f64,
    },
    /// Reading or writing a state file failed.
    #[error("optimizer state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A state file that is malformed or does not match this optimizer's parameters.
    #[error("optimizer state file {path}: {msg}")]
    State {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        msg: String,
    },
}

impl OptimError {
    /// An [`OptimError::State`] for `path`.
    pub(crate) fn state(path: &std::path::Path, msg: impl Into<String>) -> Self {
        OptimError::State {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
}

/// The optimizer's result type.
pub type Result<T> = std::result::Result<T, OptimError>;
