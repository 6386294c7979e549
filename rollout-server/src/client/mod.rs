//! The interface the trainer uses to get rollouts and to publish its weights: [`RolloutClient`],
//! with two implementations — in-process on [`EngineHandle`] (the engine reads the trainer's
//! tensors, no copy) and [`HttpRolloutClient`] over one or more `oxrl serve` processes
//! (`POST /v1/rollouts`, `POST /v1/weights`; wire types in [`crate::types`]).
//!
//! Contract, both implementations: `generate` returns only completions sampled entirely by the
//! weights of the latest [`RolloutClient::sync_weights`] (policy version = [`RolloutClient::policy_version`]),
//! and `sync_weights` is all-or-nothing per engine — a refused update leaves the old weights
//! serving and is returned as an error, never swallowed.

mod http;

pub use http::{HttpClientConfig, HttpRolloutClient};

use crate::engine::EngineHandle;
use crate::types::{EngineError, RolloutRequest, RolloutResponse};
use oxrl_models::Transformer;
use std::sync::Arc;

/// Failure of a [`RolloutClient`] call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RolloutError {
    /// The engine refused or failed the request.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The transport to a remote engine failed (connection, timeout, HTTP status).
    #[error("rollout transport: {0}")]
    Transport(String),
    /// A remote engine answered something that could not be understood, or that breaks the
    /// contract (a completion from another policy version, a version that did not advance).
    #[error("rollout protocol: {0}")]
    Protocol(String),
    /// A server refused a weight update; it keeps serving `serving_version`.
    #[error("weight update refused by {server} (it keeps serving policy version {serving_version}): {message}")]
    WeightsRefused {
        /// The server's base URL.
        server: String,
        /// The version it still serves.
        serving_version: u64,
        /// The server's error message.
        message: String,
    },
}

/// Something that turns prompts into groups of completions and takes new weights: the trainer's
/// view of the engine(s).
pub trait RolloutClient: Send + Sync {
    /// Generates every request's `n` completions; responses are in request order.
    fn generate(&self, requests: Vec<RolloutRequest>)
        -> Result<Vec<RolloutResponse>, RolloutError>;
    /// The policy version currently serving (every completion of the next `generate` carries it).
    fn policy_version(&self) -> u64;
    /// Publishes `model`'s current weights and returns the new policy version (one higher).
    fn sync_weights(&self, model: &Transformer) -> Result<u64, RolloutError>;
    /// Where the rollouts come from, for logs (`in-process`, or the server URLs).
    fn describe(&self) -> String;
    /// Whether the engine generates from the very tensors it was given (no copy), so the
    /// caller must hand it a snapshot ([`Transformer::inference_snapshot`]) before changing
    /// them while it generates. Remote engines hold their own copy.
    fn shares_weights(&self) -> bool {
        false
    }
}

impl RolloutClient for EngineHandle {
    fn generate(
        &self,
        requests: Vec<RolloutRequest>,
    ) -> Result<Vec<RolloutResponse>, RolloutError> {
        Ok(EngineHandle::generate(self, requests)?)
    }

    fn policy_version(&self) -> u64 {
        EngineHandle::policy_version(self)
    }

    /// The engine already reads the trainer's tensors (shared storage); serving the model anew
    /// bumps the version, which drops KV computed under the old weights.
    fn sync_weights(&self, model: &Transformer) -> Result<u64, RolloutError> {
        Ok(self.set_model(Arc::new(model.clone()))?)
    }

    fn describe(&self) -> String {
        "in-process engine".into()
    }

    fn shares_weights(&self) -> bool {
        true
    }
}
