//! Request, response and stream types shared by the in-process engine API and the HTTP server,
//! and the wire types of oxrl's native HTTP routes (`/v1/rollouts`, `/v1/weights`), so that an HTTP
//! client needs no server module.
//!
//! # Logprob convention
//! Every logprob the engine returns for a *sampled* token is
//! `log softmax(logits / T)[token]` over the **full vocabulary**, where `T` is the request's
//! temperature (`T = 1` when `temperature == 0`, i.e. greedy). It is computed **before** any
//! `top_k` / `top_p` / `min_p` truncation, so it is the logprob of the untruncated tempered
//! policy — exactly what the training forward computes on the same tokens (divide its logits by
//! `T` first when `T ≠ 1`). The token itself is drawn from the truncated, renormalised
//! distribution. Top alternatives (`logprobs: Some(k)`) are the `k` most likely tokens under the
//! same full-vocabulary tempered distribution. Prompt logprobs always use `T = 1`.

use serde::{Deserialize, Serialize};

/// Bounds that [`SamplingParams::validate_with`] enforces (the server may configure them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamLimits {
    /// Largest `n` (samples per prompt).
    pub max_n: usize,
    /// Largest `max_tokens`.
    pub max_tokens: usize,
    /// Largest `logprobs` / `prompt_logprobs` (top alternatives per token).
    pub max_logprobs: usize,
    /// Most stop strings per request.
    pub max_stop_strings: usize,
    /// Longest stop string in bytes.
    pub max_stop_len: usize,
    /// Most stop token ids per request.
    pub max_stop_token_ids: usize,
}

impl Default for ParamLimits {
    fn default() -> Self {
        Self {
            max_n: 256,
            max_tokens: 32_768,
            max_logprobs: 20,
            max_stop_strings: 16,
            max_stop_len: 256,
            max_stop_token_ids: 64,
        }
    }
}

/// A sampling parameter that failed validation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid `{field}`: {message}")]
pub struct ParamError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

fn perr(field: &'static str, message: impl Into<String>) -> ParamError {
    ParamError {
        field,
        message: message.into(),
    }
}

/// How to sample the completions of one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingParams {
    /// Completions to sample for the prompt (the group size). The prompt is prefilled once and its
    /// KV blocks are shared by all `n` samples.
    pub n: usize,
    /// Most tokens to generate per completion (0: only score the prompt). Generation also stops
    /// at the model's context limit (`finish_reason = length`).
    pub max_tokens: usize,
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of most likely tokens whose probability reaches
    /// `top_p`; in (0, 1], 1 = off.
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens; 0 = off.
    pub top_k: usize,
    /// Keep tokens whose probability is at least `min_p` times the top token's; in [0, 1], 0 = off.
    pub min_p: f32,
    /// Stop strings, matched on the detokenised completion. The returned text ends *before* the
    /// stop string (it is not included); `token_ids` / `logprobs` keep every sampled token,
    /// including the one that completed the stop string.
    pub stop: Vec<String>,
    /// Token ids that end a completion (`finish_reason = stop`). The stop token is kept in
    /// `token_ids` / `logprobs` but not in `text`.
    pub stop_token_ids: Vec<u32>,
    /// Do not stop at the model's EOS tokens.
    pub ignore_eos: bool,
    /// Seed of the per-sample RNG (ChaCha8, stream = sample index): the same request with the same
    /// seed gives the same completions regardless of batching. `None`: a fresh random seed.
    pub seed: Option<u64>,
    /// Return this many top alternatives (token id + logprob) per sampled token.
    pub logprobs: Option<usize>,
    /// Return the logprob of every prompt token (T = 1) plus this many top alternatives.
    pub prompt_logprobs: Option<usize>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            n: 1,
            max_tokens: 16,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            ignore_eos: false,
            seed: None,
            logprobs: None,
            prompt_logprobs: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding of `max_tokens` tokens.
    pub fn greedy(max_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            max_tokens,
            ..Self::default()
        }
    }

    /// Checks every field against [`ParamLimits::default`].
    pub fn validate(&self) -> Result<(), ParamError> {
        self.validate_with(&ParamLimits::default())
    }

    /// Checks every field against `limits`.
    pub fn validate_with(&self, limits: &ParamLimits) -> Result<(), ParamError> {
        if self.n == 0 {
            return Err(perr("n", "must be at least 1"));
        }
        if self.n > limits.max_n {
            return Err(perr(
                "n",
                format!("{} exceeds the limit {}", self.n, limits.max_n),
            ));
        }
        if self.max_tokens > limits.max_tokens {
            return Err(perr(
                "max_tokens",
                format!(
                    "{} exceeds the limit {}",
                    self.max_tokens, limits.max_tokens
                ),
            ));
        }
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(perr(
                "temperature",
                format!("must be a finite number >= 0, got {}", self.temperature),
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(perr(
                "top_p",
                format!("must be in (0, 1], got {}", self.top_p),
            ));
        }
        if !(self.min_p >= 0.0 && self.min_p <= 1.0) {
            return Err(perr(
                "min_p",
                format!("must be in [0, 1], got {}", self.min_p),
            ));
        }
        for (field, v) in [
            ("logprobs", self.logprobs),
            ("prompt_logprobs", self.prompt_logprobs),
        ] {
            if let Some(k) = v {
                if k > limits.max_logprobs {
                    return Err(perr(
                        field,
                        format!("{k} exceeds the limit {}", limits.max_logprobs),
                    ));
                }
            }
        }
        if self.stop.len() > limits.max_stop_strings {
            return Err(perr(
                "stop",
                format!(
                    "{} stop strings exceed the limit {}",
                    self.stop.len(),
                    limits.max_stop_strings
                ),
            ));
        }
        if let Some(s) = self.stop.iter().find(|s| s.is_empty()) {
            return Err(perr(
                "stop",
                format!("stop strings must be non-empty: {s:?}"),
            ));
        }
        if let Some(s) = self.stop.iter().find(|s| s.len() > limits.max_stop_len) {
            return Err(perr(
                "stop",
                format!(
                    "a stop string of {} bytes exceeds the limit {}",
                    s.len(),
                    limits.max_stop_len
                ),
            ));
        }
        if self.stop_token_ids.len() > limits.max_stop_token_ids {
            return Err(perr(
                "stop_token_ids",
                format!(
                    "{} ids exceed the limit {}",
                    self.stop_token_ids.len(),
                    limits.max_stop_token_ids
                ),
            ));
        }
        Ok(())
    }

    /// Whether sampling is greedy (`temperature == 0`).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// One prompt (as token ids) and how to sample its completions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    /// The prompt, already tokenised (chat template applied); at least one token.
    pub prompt_token_ids: Vec<u32>,
    /// Sampling parameters.
    #[serde(default)]
    pub params: SamplingParams,
}

impl RolloutRequest {
    /// A request for `prompt` with `params`.
    pub fn new(prompt_token_ids: Vec<u32>, params: SamplingParams) -> Self {
        Self {
            prompt_token_ids,
            params,
        }
    }
}

/// Why a completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token, EOS or stop string was produced.
    Stop,
    /// `max_tokens` or the context limit was reached.
    Length,
    /// The request was aborted (client gone, engine shutdown, or an unrecoverable error).
    Abort,
}

/// Which stop condition ended a completion with [`FinishReason::Stop`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A stop token id or an EOS token.
    Token(u32),
    /// A stop string (the one that matched first in the text).
    String(String),
}

/// A token id with its logprob (see the module docs for what the logprob is).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// Token id.
    pub token_id: u32,
    /// Its logprob.
    pub logprob: f32,
}

/// Logprob of one prompt token under the model (T = 1), with top alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptTokenLogprob {
    /// The prompt token.
    pub token_id: u32,
    /// `log p(token | earlier prompt tokens)`.
    pub logprob: f32,
    /// The most likely tokens at this position, most likely first (`prompt_logprobs` of them).
    pub top_logprobs: Vec<TokenLogprob>,
}

/// One sampled completion of a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// Sample index within the group, `0..n`.
    pub index: usize,
    /// Every sampled token, including a final stop/EOS token.
    pub token_ids: Vec<u32>,
    /// Detokenised completion (special tokens skipped; a final stop token and a matched stop
    /// string excluded). Empty when the engine has no tokenizer.
    pub text: String,
    /// Logprob of each sampled token: `log softmax(logits / T)` over the full vocabulary, before
    /// top-k / top-p / min-p truncation (T = 1 for greedy). Same length as `token_ids`.
    pub logprobs: Vec<f32>,
    /// With `logprobs: Some(k)`: the `k` most likely tokens at each step under the same
    /// distribution, most likely first.
    pub top_logprobs: Option<Vec<Vec<TokenLogprob>>>,
    /// Why the completion ended.
    pub finish_reason: FinishReason,
    /// With `finish_reason = stop`: which token or string stopped it.
    pub stop_reason: Option<StopReason>,
    /// Policy version when the completion's first token was sampled.
    pub policy_version: u64,
    /// Policy version when its last token was sampled. Weight updates are applied between
    /// decode steps, so a completion that spans an update has `policy_version_end >
    /// policy_version`: tokens before the swap come from the old weights, later ones from the new
    /// weights (reading KV computed by the old weights).
    pub policy_version_end: u64,
}

/// Token accounting of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens over all completions.
    pub completion_tokens: usize,
    /// `prompt_tokens + completion_tokens`.
    pub total_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache instead of being computed.
    pub cached_prompt_tokens: usize,
}

/// The answer to one [`RolloutRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutResponse {
    /// The prompt.
    pub prompt_token_ids: Vec<u32>,
    /// With `prompt_logprobs: Some(k)`: one entry per prompt token, the first `None`.
    pub prompt_logprobs: Option<Vec<Option<PromptTokenLogprob>>>,
    /// `n` completions, in index order.
    pub completions: Vec<Completion>,
    /// Token accounting.
    pub usage: Usage,
}

/// What the engine sends on a request's response channel: zero or more deltas, then exactly one
/// `Done` or `Error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// One new token of completion `index`.
    Delta {
        /// Sample index.
        index: usize,
        /// The sampled token.
        token_id: u32,
        /// Newly decoded text (may be empty while a multi-byte character or a possible stop
        /// string is pending; the concatenated deltas equal the final `text`).
        text_delta: String,
        /// The token's logprob (see the module docs).
        logprob: f32,
        /// Top alternatives when `logprobs` was requested.
        top_logprobs: Option<Vec<TokenLogprob>>,
        /// Set on the completion's last delta.
        finish_reason: Option<FinishReason>,
    },
    /// The request finished; the full response.
    Done(RolloutResponse),
    /// The request failed; nothing more follows.
    Error(EngineError),
}

/// Errors of the engine, shared with HTTP clients (serialisable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum EngineError {
    /// The request is malformed (bad parameters, token id out of range, prompt too long ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The bounded request queue is full; retry later.
    #[error("request queue is full ({0} requests waiting)")]
    QueueFull(usize),
    /// The engine has shut down.
    #[error("the engine has shut down")]
    ShutDown,
    /// A weight update was rejected; the old weights keep serving.
    #[error("weight update rejected: {0}")]
    WeightUpdate(String),
    /// The model failed while running a request.
    #[error("model error: {0}")]
    Model(String),
    /// The request was aborted.
    #[error("request aborted: {0}")]
    Aborted(String),
    /// The engine's configuration is unusable (block size, cache size, bounds); nothing started.
    #[error("invalid engine config: {0}")]
    Config(String),
    /// The KV cache had too few free blocks for a step.
    #[error("KV cache out of blocks: need {needed}, free {free}")]
    CacheFull {
        /// Blocks the step needed.
        needed: usize,
        /// Blocks that were free.
        free: usize,
    },
}

impl From<ParamError> for EngineError {
    fn from(e: ParamError) -> Self {
        EngineError::InvalidRequest(e.to_string())
    }
}

// ---- Wire types of oxrl's native HTTP routes (shared by the server and HTTP clients) ----

/// Body of `POST /v1/rollouts`: many prompts × `n` samples each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutsRequest {
    /// Model id (must be the served model's name, when given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Prompts: each a string (tokenised as is), `{"text": ...}`, `{"messages": [...]}` (chat
    /// template applied) or `{"token_ids": [...]}` / a bare list of token ids.
    pub prompts: Vec<serde_json::Value>,
    /// Sampling parameters shared by all prompts (the engine's [`SamplingParams`]).
    #[serde(default)]
    pub params: SamplingParams,
    /// For `messages` prompts: append the assistant prefix (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_generation_prompt: Option<bool>,
}

/// Response of `POST /v1/rollouts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutsResponse {
    /// Response id.
    pub id: String,
    /// Always `rollout`.
    pub object: String,
    /// Unix time.
    pub created: u64,
    /// Served model name.
    pub model: String,
    /// One result per prompt, in order: prompt token ids, optional prompt logprobs, `n`
    /// completions (token ids, text, logprobs, finish reason, policy versions), usage.
    pub results: Vec<RolloutResponse>,
    /// Totals over all prompts.
    pub usage: Usage,
    /// Policy version serving when the response was written.
    pub policy_version: u64,
}

/// Body of a JSON `POST /v1/weights`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsPathRequest {
    /// A safetensors file or an HF-layout directory on the server's disk.
    pub path: String,
}

/// Response of a successful `POST /v1/weights`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsResponse {
    /// Always `weights_update`.
    pub object: String,
    /// The new policy version.
    pub policy_version: u64,
    /// Tensors replaced.
    pub num_tensors: usize,
    /// Bytes of weights received or read.
    pub bytes: u64,
    /// Wall time of the update on the server (read + parse + validate + swap), in milliseconds.
    pub elapsed_ms: f64,
    /// Of which: receiving the body or reading the files and parsing them into tensors.
    pub load_ms: f64,
    /// Of which: validating the tensors and swapping them in (`EngineHandle::update_weights`).
    pub apply_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::extract::parse_json;

    #[test]
    fn defaults_validate_and_bad_values_name_the_field() {
        assert!(SamplingParams::default().validate().is_ok());
        let bad = |f: fn(&mut SamplingParams)| {
            let mut p = SamplingParams::default();
            f(&mut p);
            p.validate().unwrap_err().field
        };
        assert_eq!(bad(|p| p.n = 0), "n");
        assert_eq!(bad(|p| p.n = 100_000), "n");
        assert_eq!(bad(|p| p.temperature = -0.5), "temperature");
        assert_eq!(bad(|p| p.temperature = f32::NAN), "temperature");
        assert_eq!(bad(|p| p.temperature = f32::INFINITY), "temperature");
        assert_eq!(bad(|p| p.top_p = 0.0), "top_p");
        assert_eq!(bad(|p| p.top_p = 1.5), "top_p");
        assert_eq!(bad(|p| p.top_p = f32::NAN), "top_p");
        assert_eq!(bad(|p| p.min_p = -0.1), "min_p");
        assert_eq!(bad(|p| p.max_tokens = 1 << 30), "max_tokens");
        assert_eq!(bad(|p| p.logprobs = Some(1000)), "logprobs");
        assert_eq!(bad(|p| p.prompt_logprobs = Some(1000)), "prompt_logprobs");
        assert_eq!(bad(|p| p.stop = vec![String::new()]), "stop");
        assert_eq!(bad(|p| p.stop = vec!["x".repeat(10_000)]), "stop");
    }

    #[test]
    fn serde_round_trip_and_strictness() {
        let r: RolloutRequest =
            serde_json::from_str(r#"{"prompt_token_ids":[1,2],"params":{"n":4,"seed":7}}"#)
                .unwrap();
        assert_eq!(r.params.n, 4);
        assert_eq!(r.params.seed, Some(7));
        assert_eq!(r.params.max_tokens, 16);
        assert!(serde_json::from_str::<RolloutRequest>(
            r#"{"prompt_token_ids":[1],"params":{"temprature":1}}"#
        )
        .is_err());
        let e = serde_json::to_value(EngineError::QueueFull(3)).unwrap();
        assert_eq!(e, serde_json::json!({"kind":"queue_full","message":3}));
        let ev = StreamEvent::Error(EngineError::ShutDown);
        let s = serde_json::to_string(&ev).unwrap();
        assert_eq!(serde_json::from_str::<StreamEvent>(&s).unwrap(), ev);
    }

    #[test]
    fn rollouts_request_defaults_and_strictness() {
        let r: RolloutsRequest =
            parse_json(br#"{"prompts":["hi",{"token_ids":[1,2]}],"params":{"n":4}}"#).unwrap();
        assert_eq!(r.prompts.len(), 2);
        assert_eq!(r.params.n, 4);
        assert_eq!(r.params.max_tokens, SamplingParams::default().max_tokens);
        let e = parse_json::<RolloutsRequest>(br#"{"prompts":[],"params":{"nn":4}}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("params.nn"));
    }
}
