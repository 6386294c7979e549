//! The error type of the trainer's math: bad shapes, bad values and unknown names, each saying
//! what was wrong and, for names, which values are accepted.

/// What can go wrong when evaluating a loss, an advantage estimator or an optimizer step.
#[derive(Debug, thiserror::Error)]
pub enum MathError {
    /// A tensor operation failed (usually a shape mismatch inside candle).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Inputs whose shapes do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Inputs with values the formula cannot take (NaN, an empty mask, a group of one where the
    /// estimator needs two, …).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A name (loss type, estimator, aggregation mode, …) that oxrl does not know.
    #[error("unknown {what} `{got}`; accepted: {accepted}")]
    UnknownName {
        /// What kind of name it was ("loss_agg_mode", "estimator", …).
        what: &'static str,
        /// The name given.
        got: String,
        /// The accepted names, comma-separated.
        accepted: String,
    },
}

impl MathError {
    /// An [`MathError::UnknownName`] listing `accepted`.
    pub fn unknown(what: &'static str, got: &str, accepted: &[&str]) -> Self {
        MathError::UnknownName {
            what,
            got: got.to_string(),
            accepted: accepted.join(", "),
        }
    }
}

/// The trainer math's result type.
pub type Result<T> = std::result::Result<T, MathError>;
