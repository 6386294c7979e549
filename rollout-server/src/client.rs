//! The interface the trainer uses to get rollouts, with the in-process implementation on
//! [`EngineHandle`](crate::engine::EngineHandle). There is no HTTP implementation yet (the
//! training-loop work adds one); its wire types are in [`crate::types`] (`RolloutsRequest`,
//! `RolloutsResponse`, `WeightsResponse`).

use crate::engine::EngineHandle;
use crate::types::{EngineError, RolloutRequest, RolloutResponse};

/// Failure of a [`RolloutClient`] call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RolloutError {
    /// The engine refused or failed the request.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The transport to a remote engine failed (connection, timeout, HTTP status).
    #[error("rollout transport: {0}")]
    Transport(String),
    /// A remote engine answered something that could not be understood.
    #[error("rollout protocol: {0}")]
    Protocol(String),
}

/// Something that turns prompts into groups of completions: the trainer's view of the engine.
pub trait RolloutClient {
    /// Generates every request's `n` completions; responses are in request order.
    fn generate(&self, requests: Vec<RolloutRequest>)
        -> Result<Vec<RolloutResponse>, RolloutError>;
    /// The policy version currently serving.
    fn policy_version(&self) -> u64;
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
}
