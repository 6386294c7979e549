//! The error type of oxrl-models: every failure names what was being loaded or computed.

use std::path::{Path, PathBuf};

/// Convenience alias.
pub type Result<T> = std::result::Result<T, ModelError>;

/// Everything that can go wrong while loading, running or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// `model_type` is not one we implement.
    #[error("unsupported model_type `{0}`; supported: {sup}", sup = crate::config::Arch::SUPPORTED)]
    UnsupportedArch(String),
    /// `config.json` is missing a field or has an invalid value.
    #[error("invalid model config: {0}")]
    Config(String),
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("missing tensor `{name}` in {source_desc}")]
    MissingTensor { name: String, source_desc: String },
    /// A tensor has the wrong shape.
    #[error("tensor `{name}` has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    /// A weight file could not be read or parsed.
    #[error("cannot read weights from {path}: {message}")]
    Weights { path: PathBuf, message: String },
    /// A GGUF file could not be read or converted.
    #[error("GGUF {path}: {message}")]
    Gguf { path: PathBuf, message: String },
    /// Tokenizer loading, encoding or decoding failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Chat template loading or rendering failed.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// A model argument could not be resolved to files.
    #[error("cannot resolve model `{spec}`: {message}")]
    Resolve { spec: String, message: String },
    /// Bad input to a forward pass (empty batch, token id out of range, ...).
    #[error("invalid input: {0}")]
    Input(String),
    /// The KV cache has no free blocks left.
    #[error("KV cache out of blocks: need {needed}, free {free}")]
    CacheFull { needed: usize, free: usize },
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A candle operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    /// An I/O error with the path it concerns.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
