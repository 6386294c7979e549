//! oxrl-rollout: the generation engine (scheduler, sampler, KV-cache manager) and the axum HTTP
//! server (OpenAI-compatible API, rollout API, versioned weight updates, metrics).
