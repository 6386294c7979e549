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
use std::time::Duration;

pub(crate) use crate::builtin::options::{config_error, typed_options};

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
