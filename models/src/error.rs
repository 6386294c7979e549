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
    MissingTensor {
        /// The tensor's HF name.
        name: String,
        /// Where it was looked for (a file, an index, a buffer).
        source_desc: String,
    },
    /// A tensor has the wrong shape.
    #[error("tensor `{name}` has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor's HF name.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the checkpoint.
        actual: Vec<usize>,
    },
    /// A weight file could not be read or parsed.
    #[error("cannot read weights from {path}: {message}")]
    Weights {
        /// The weight file (or index).
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A GGUF file could not be read or converted.
    #[error("GGUF {path}: {message}")]
    Gguf {
        /// The GGUF file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Tokenizer loading, encoding or decoding failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Chat template loading or rendering failed.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// A model argument could not be resolved to files.
    #[error("cannot resolve model `{spec}`: {message}")]
    Resolve {
        /// The model argument as given.
        spec: String,
        /// Why it did not resolve.
        message: String,
    },
    /// Bad input to a forward pass (empty batch, token id out of range, ...).
    #[error("invalid input: {0}")]
    Input(String),
    /// The KV cache has no free blocks left.
    #[error("KV cache out of blocks: need {needed}, free {free}")]
    CacheFull {
        /// Blocks the step needed.
        needed: usize,
        /// Blocks that were free.
        free: usize,
    },
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The system's error.
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
