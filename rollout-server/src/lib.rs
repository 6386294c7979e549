//! oxrl-rollout: the generation engine (scheduler, sampler, KV-cache manager) and the axum HTTP
//! server (OpenAI-compatible API, rollout API, versioned weight updates, metrics).
#![forbid(unsafe_code)]

pub mod client;
pub mod engine;
pub mod http;
pub mod types;

pub use client::{HttpClientConfig, HttpRolloutClient, RolloutClient, RolloutError};
pub use engine::{
    EngineConfig, EngineHandle, EngineMetrics, EngineState, ResponseReceiver, TokenDecoder,
};
pub use types::*;
