//! The error type of the crate.

use std::path::PathBuf;

/// What can go wrong while reading a task, loading its data or building its verifiers.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The task file could not be parsed or is invalid.
    #[error("cannot parse {}: {message}", path.display())]
    File {
        /// The task file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// Loading the dataset or rendering a prompt failed.
    #[error(transparent)]
    Dataset(#[from] oxrl_datasets::DatasetError),
    /// A verifier table is invalid or a verifier could not be built.
    #[error(transparent)]
    Verifier(#[from] oxrl_verifiers::VerifierError),
    /// The task lists no verifiers.
    #[error("the task has no [[task.verifiers]]")]
    NoVerifiers,
    /// The task's dataset failed to load earlier (the message of that failure; see
    /// [`crate::Joiner::lookup`]).
    #[error("{0}")]
    DatasetUnavailable(String),
}

/// The crate's result type.
pub type Result<T, E = TaskError> = std::result::Result<T, E>;
