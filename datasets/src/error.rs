//! The error type of the crate: every failure names what it was reading (file, line or row, field)
//! so a user can fix the data or the configuration without a debugger.

use std::path::PathBuf;

/// Everything that can go wrong while loading a dataset, or rendering a prompt.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file or folder could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A whole file could not be parsed (not valid JSON, not a Parquet file, ...).
    #[error("cannot parse {}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// One row is malformed: it could not be parsed, or a field is missing or has the wrong type.
    #[error("{location}: {}{message}", field.as_deref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
    Row {
        /// Where the row is (`file line N` / `file row N`).
        location: String,
        /// The field concerned, when one is.
        field: Option<String>,
        /// What was wrong.
        message: String,
    },
    /// A dataset could not be found; `looked` lists every place that was searched.
    #[error("{what} not found; looked in: {}", looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        /// What was searched for.
        what: String,
        /// The places searched.
        looked: Vec<PathBuf>,
    },
    /// An invalid configuration value (task table, generator parameters, split sizes, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A prompt template failed to compile or to render.
    #[error("prompt template: {0}")]
    Template(String),
}

impl DatasetError {
    /// Shorthand for a malformed-row error.
    pub fn row(location: impl ToString, field: Option<&str>, message: impl Into<String>) -> Self {
        Self::Row {
            location: location.to_string(),
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    /// Shorthand for an I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = DatasetError> = std::result::Result<T, E>;
