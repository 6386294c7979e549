//! Errors raised while *building* verifiers (bad configuration, unknown names). Scoring itself never
//! fails: problems while scoring become `Score::error`.

/// A verifier could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// No verifier is registered under this name.
    #[error("unknown verifier `{name}`; known verifiers: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// A verifier table is malformed (no `name`, a bad `weight`, not a table); the message
    /// names the table.
    #[error("verifier table {0}")]
    Table(String),
    /// The options of a verifier are invalid.
    #[error("invalid configuration for verifier `{verifier}`: {message}")]
    Config {
        /// The verifier's name.
        verifier: String,
        /// What is wrong, naming the option.
        message: String,
    },
    /// An I/O problem while setting a verifier up (starting a plugin, reading a file).
    #[error("verifier `{verifier}`: {source}")]
    Io {
        /// The verifier's name.
        verifier: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}
