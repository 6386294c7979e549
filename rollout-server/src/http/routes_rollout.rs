//! `POST /v1/rollouts`: oxrl's native batch call. Many prompts (text, chat messages or token ids)
//! × `n` samples each, with the engine's own [`SamplingParams`](crate::types::SamplingParams);
//! the answer carries, per completion, token ids, text, per-token logprobs (and optional top
//! alternatives), finish and stop reasons and the policy versions that produced it.
//!
//! Unlike the OpenAI routes, a prompt whose `max_tokens` would run past the context is not
//! refused: its completions stop at the context limit with `finish_reason = length`.

use super::common::{
    chat_messages, chat_prompt_ids, check_model, check_serving, prompt_ids, token_ids,
    validate_request, PromptIn,
};
use super::errors::ApiError;
use super::extract::ApiJson;
use super::openai_types::ChatMessageIn;
use super::routes_openai::finish_all;
use super::state::AppState;
use crate::types::{RolloutRequest, RolloutsRequest, RolloutsResponse, Usage};
use axum::extract::State;
use axum::Json;
use serde_json::Value;

/// Token ids of one `/v1/rollouts` prompt.
fn rollout_prompt_ids(
    state: &AppState,
    v: &Value,
    i: usize,
    add_generation_prompt: bool,
) -> Result<Vec<u32>, ApiError> {
    let field = format!("prompts[{i}]");
    let bad = || {
        ApiError::invalid_param(
            field.as_str(),
            "a prompt is a string, a list of token ids, or an object with exactly one of \
             `text`, `messages`, `token_ids`",
        )
    };
    match v {
        Value::String(s) => prompt_ids(state, &PromptIn::Text(s.clone()), &field),
        Value::Array(items) => prompt_ids(state, &PromptIn::Ids(token_ids(items, &field)?), &field),
        Value::Object(o) => {
            if o.len() != 1 {
                return Err(bad());
            }
            if let Some(t) = o.get("text") {
                let t = t.as_str().ok_or_else(bad)?;
                prompt_ids(state, &PromptIn::Text(t.to_string()), &field)
            } else if let Some(ids) = o.get("token_ids") {
                let ids = ids.as_array().ok_or_else(bad)?;
                prompt_ids(state, &PromptIn::Ids(token_ids(ids, &field)?), &field)
            } else if let Some(m) = o.get("messages") {
                let msgs: Vec<ChatMessageIn> = serde_json::from_value(m.clone()).map_err(|e| {
                    ApiError::invalid_param(format!("{field}.messages"), e.to_string())
                })?;
                let msgs = chat_messages(&msgs)
                    .map_err(|e| ApiError::invalid_param(field.as_str(), e.message))?;
                chat_prompt_ids(state, &msgs, add_generation_prompt, &field)
            } else {
                Err(bad())
            }
        }
        _ => Err(bad()),
    }
}

/// `POST /v1/rollouts`.
pub async fn rollouts(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RolloutsRequest>,
) -> Result<Json<RolloutsResponse>, ApiError> {
    check_serving(&state)?;
    check_model(&state, req.model.as_deref())?;
    if req.prompts.is_empty() {
        return Err(ApiError::invalid_param(
            "prompts",
            "`prompts` must not be empty",
        ));
    }
    let limit = state.max_tokens_limit();
    if req.params.max_tokens > limit {
        return Err(ApiError::invalid_param(
            "params.max_tokens",
            format!(
                "`max_tokens` = {} exceeds the server's limit of {limit} (--max-tokens-limit)",
                req.params.max_tokens
            ),
        ));
    }
    req.params
        .validate_with(&state.engine().config().limits)
        .map_err(|e| ApiError::invalid_param(format!("params.{}", e.field), e.to_string()))?;
    let add_gen = req.add_generation_prompt.unwrap_or(true);
    let count = req.prompts.len();
    let mut reqs = Vec::with_capacity(count);
    for (i, p) in req.prompts.iter().enumerate() {
        let ids = rollout_prompt_ids(&state, p, i, add_gen)?;
        let r = RolloutRequest::new(ids, req.params.clone());
        validate_request(&state, &r, i, count, "prompts")?;
        reqs.push(r);
    }
    let rxs = reqs
        .into_iter()
        .map(|r| state.engine().submit_quiet(r).map_err(ApiError::from))
        .collect::<Result<Vec<_>, _>>()?;
    let results = finish_all(rxs).await?;
    let mut usage = Usage::default();
    for r in &results {
        usage.prompt_tokens += r.usage.prompt_tokens;
        usage.completion_tokens += r.usage.completion_tokens;
        usage.cached_prompt_tokens += r.usage.cached_prompt_tokens;
    }
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    Ok(Json(RolloutsResponse {
        id: state.new_id("rollout"),
        object: "rollout".into(),
        created: state.now(),
        model: state.cfg().served_model_name.clone(),
        results,
        usage,
        policy_version: state.engine().policy_version(),
    }))
}
