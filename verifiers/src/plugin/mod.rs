//! Verifier plugins in any language: a pool of long-lived worker processes speaking JSON lines
//! on stdin/stdout ([`command`], registered as `command`) or an HTTP endpoint ([`http`],
//! registered as `http`). Both speak the versioned protocol of [`protocol`], specified in
//! `docs/verifier-protocol.md`. A plugin that hangs, crashes or answers nonsense costs the
//! affected items a recorded error (reward 0), never the run.

pub mod command;
pub mod http;
pub mod protocol;

pub use command::{CommandConfig, CommandVerifier};
pub use http::{HttpConfig, HttpVerifier};

use crate::{Group, Score, VerifierError};
use serde_json::{Map, Value};
use std::time::Duration;

/// A configuration error of the plugin kind `verifier`.
fn config_error(verifier: &str, message: impl Into<String>) -> VerifierError {
    VerifierError::Config {
        verifier: verifier.to_string(),
        message: message.into(),
    }
}

/// Reads the options table into `T` (`deny_unknown_fields` there makes typos errors).
fn parse_options<T: serde::de::DeserializeOwned>(
    verifier: &str,
    options: &Map<String, Value>,
) -> Result<T, VerifierError> {
    serde_json::from_value(Value::Object(options.clone()))
        .map_err(|e| config_error(verifier, e.to_string()))
}

/// A positive, finite number of seconds as a `Duration`, or `default` when absent.
fn seconds(
    verifier: &str,
    key: &str,
    value: Option<f64>,
    default: Duration,
) -> Result<Duration, VerifierError> {
    match value {
        None => Ok(default),
        Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(config_error(
            verifier,
            format!("`{key}` must be a positive number of seconds, got {s}"),
        )),
    }
}

/// The same failed score for every completion of `groups`.
fn fail_all(groups: &[Group], error: &str) -> Vec<Vec<Score>> {
    groups
        .iter()
        .map(|g| vec![Score::failed(error); g.completions.len()])
        .collect()
}
