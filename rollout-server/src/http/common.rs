//! Request handling shared by the OpenAI and rollout routes: model-name and shutdown checks,
//! prompt parsing (text, token ids, chat messages), sampling-parameter conversion and limits,
//! token strings for logprobs, and merging the response channels of several prompts.

use super::errors::ApiError;
use super::openai_types::{ChatMessageIn, StopSpec};
use super::state::AppState;
use crate::engine::{EngineState, ResponseReceiver};
use crate::types::{FinishReason, RolloutRequest, RolloutResponse, SamplingParams, StreamEvent};
use oxrl_models::ChatMessage;
use serde_json::Value;
use std::collections::BTreeMap;
use tokio::sync::mpsc;

/// A prompt as a client sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptIn {
    /// Text, to be tokenised.
    Text(String),
    /// Token ids.
    Ids(Vec<u32>),
}

/// Fails with 503 once a shutdown has begun, or when the engine no longer runs (saying whether
/// it was shut down or crashed).
pub fn check_serving(state: &AppState) -> Result<(), ApiError> {
    match state.engine().state() {
        EngineState::Crashed => return Err(ApiError::engine_stopped("crashed")),
        EngineState::ShutDown if !state.is_shutting_down_by_request() => {
            return Err(ApiError::engine_stopped("shut down"))
        }
        _ => {}
    }
    if state.is_shutting_down() {
        Err(ApiError::shutting_down())
    } else {
        Ok(())
    }
}

/// Fails with 404 when `model` names another model than the served one.
pub fn check_model(state: &AppState, model: Option<&str>) -> Result<(), ApiError> {
    match model {
        None => Ok(()),
        Some(m) if m == state.cfg().served_model_name || m == state.cfg().model_source => Ok(()),
        Some(m) => Err(ApiError::not_found(format!(
            "the model `{m}` does not exist; this server serves `{}`",
            state.cfg().served_model_name
        ))
        .with_param("model")
        .with_code("model_not_found")),
    }
}

fn token_id(v: &Value, field: &str) -> Result<u32, ApiError> {
    v.as_u64()
        .and_then(|x| u32::try_from(x).ok())
        .ok_or_else(|| {
            ApiError::invalid_param(
                field,
                format!("token ids must be integers in [0, 2^32), got {v}"),
            )
        })
}

/// Token ids from a JSON array of integers.
pub fn token_ids(items: &[Value], field: &str) -> Result<Vec<u32>, ApiError> {
    items.iter().map(|v| token_id(v, field)).collect()
}

/// Parses `prompt`: a string, a list of strings, a list of token ids or a list of token-id lists.
pub fn parse_prompts(v: &Value, field: &str) -> Result<Vec<PromptIn>, ApiError> {
    let bad = || {
        ApiError::invalid_param(
            field,
            format!(
                "`{field}` must be a string, a list of strings, a list of token ids or a list \
                 of token-id lists"
            ),
        )
    };
    match v {
        Value::String(s) => Ok(vec![PromptIn::Text(s.clone())]),
        Value::Array(items) if items.is_empty() => Err(ApiError::invalid_param(
            field,
            format!("`{field}` must not be empty"),
        )),
        Value::Array(items) => match &items[0] {
            Value::String(_) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(|s| PromptIn::Text(s.to_string()))
                        .ok_or_else(bad)
                })
                .collect(),
            Value::Number(_) => Ok(vec![PromptIn::Ids(token_ids(items, field)?)]),
            Value::Array(_) => items
                .iter()
                .map(|i| match i {
                    Value::Array(ids) => Ok(PromptIn::Ids(token_ids(ids, field)?)),
                    _ => Err(bad()),
                })
                .collect(),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// Token ids of a prompt (text is tokenised with the tokenizer's special tokens, e.g. BOS).
pub fn prompt_ids(state: &AppState, p: &PromptIn, field: &str) -> Result<Vec<u32>, ApiError> {
    let ids = match p {
        PromptIn::Ids(ids) => ids.clone(),
        PromptIn::Text(t) => state
            .tokenizer()
            .encode(t, true)
            .map_err(|e| ApiError::invalid_param(field, format!("cannot tokenise: {e}")))?,
    };
    if ids.is_empty() {
        return Err(ApiError::invalid_param(
            field,
            "the prompt is empty (it has no tokens)",
        ));
    }
    Ok(ids)
}

/// The text of a chat message's content (a string or a list of text parts).
fn message_text(content: &Option<Value>, i: usize) -> Result<String, ApiError> {
    let field = format!("messages[{i}].content");
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for p in parts {
                match (
                    p.get("type").and_then(Value::as_str),
                    p.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => out.push_str(t),
                    _ => {
                        return Err(ApiError::invalid_param(
                            field,
                            "only text content parts ({\"type\": \"text\", \"text\": ...}) are \
                             supported",
                        ))
                    }
                }
            }
            Ok(out)
        }
        Some(_) => Err(ApiError::invalid_param(
            field,
            "content must be a string or a list of text parts",
        )),
    }
}

/// Converts client messages to the tokenizer's chat messages.
pub fn chat_messages(msgs: &[ChatMessageIn]) -> Result<Vec<ChatMessage>, ApiError> {
    if msgs.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "`messages` must not be empty",
        ));
    }
    msgs.iter()
        .enumerate()
        .map(|(i, m)| {
            if !matches!(
                m.role.as_str(),
                "system" | "developer" | "user" | "assistant" | "tool"
            ) {
                return Err(ApiError::invalid_param(
                    format!("messages[{i}].role"),
                    format!(
                        "unknown role `{}` (expected system, developer, user, assistant or tool)",
                        m.role
                    ),
                ));
            }
            Ok(ChatMessage::new(
                m.role.as_str(),
                message_text(&m.content, i)?,
            ))
        })
        .collect()
}

/// Token ids of a conversation rendered with the chat template.
pub fn chat_prompt_ids(
    state: &AppState,
    msgs: &[ChatMessage],
    add_generation_prompt: bool,
    field: &str,
) -> Result<Vec<u32>, ApiError> {
    let text = state
        .tokenizer()
        .apply_chat_template(msgs, add_generation_prompt)
        .map_err(|e| ApiError::invalid_param(field, format!("chat template: {e}")))?;
    let ids = state
        .tokenizer()
        .encode(&text, false)
        .map_err(|e| ApiError::invalid_param(field, format!("cannot tokenise: {e}")))?;
    if ids.is_empty() {
        return Err(ApiError::invalid_param(
            field,
            "the rendered prompt is empty",
        ));
    }
    Ok(ids)
}

/// The sampling fields OpenAI requests share.
#[derive(Debug, Clone, Default)]
pub struct SamplingInputs {
    /// `n`.
    pub n: Option<i64>,
    /// `temperature`.
    pub temperature: Option<f32>,
    /// `top_p`.
    pub top_p: Option<f32>,
    /// `top_k`.
    pub top_k: Option<i64>,
    /// `min_p`.
    pub min_p: Option<f32>,
    /// `stop`.
    pub stop: Option<StopSpec>,
    /// `seed`.
    pub seed: Option<i64>,
    /// `ignore_eos`.
    pub ignore_eos: Option<bool>,
    /// `stop_token_ids`.
    pub stop_token_ids: Option<Vec<u32>>,
    /// `presence_penalty`.
    pub presence_penalty: Option<f32>,
    /// `frequency_penalty`.
    pub frequency_penalty: Option<f32>,
    /// `repetition_penalty`.
    pub repetition_penalty: Option<f32>,
    /// `logit_bias`.
    pub logit_bias: Option<BTreeMap<String, f32>>,
}

/// The one place that gathers the shared sampling fields of an OpenAI request into
/// [`SamplingInputs`]: `CompletionRequest` and `ChatCompletionRequest` name them alike.
macro_rules! sampling_inputs {
    ($req:expr) => {
        $crate::http::common::SamplingInputs {
            n: $req.n,
            temperature: $req.temperature,
            top_p: $req.top_p,
            top_k: $req.top_k,
            min_p: $req.min_p,
            stop: $req.stop.clone(),
            seed: $req.seed,
            ignore_eos: $req.ignore_eos,
            stop_token_ids: $req.stop_token_ids.clone(),
            presence_penalty: $req.presence_penalty,
            frequency_penalty: $req.frequency_penalty,
            repetition_penalty: $req.repetition_penalty,
            logit_bias: $req.logit_bias.clone(),
        }
    };
}
pub(crate) use sampling_inputs;

fn unsupported(field: &str, what: &str) -> ApiError {
    ApiError::invalid_param(
        field,
        format!("`{field}` is not supported by oxrl ({what})"),
    )
    .with_code("unsupported_parameter")
}

impl SamplingInputs {
    /// Engine parameters (without `max_tokens` / logprobs, set by the caller), validated against
    /// the engine's limits.
    pub fn to_params(&self, state: &AppState) -> Result<SamplingParams, ApiError> {
        for (field, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if v.is_some_and(|v| v != 0.0) {
                return Err(unsupported(field, "only 0 is accepted"));
            }
        }
        if self.repetition_penalty.is_some_and(|v| v != 1.0) {
            return Err(unsupported("repetition_penalty", "only 1 is accepted"));
        }
        if self.logit_bias.as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(unsupported("logit_bias", "only {} is accepted"));
        }
        let n = match self.n {
            None => 1,
            Some(n) if n < 1 => {
                return Err(ApiError::invalid_param(
                    "n",
                    format!("`n` must be at least 1, got {n}"),
                ))
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let top_k = match self.top_k {
            None | Some(-1) | Some(0) => 0,
            Some(k) if k < 0 => {
                return Err(ApiError::invalid_param(
                    "top_k",
                    format!("`top_k` must be >= 0 (or -1 for off), got {k}"),
                ))
            }
            Some(k) => usize::try_from(k).unwrap_or(usize::MAX),
        };
        let d = SamplingParams::default();
        let p = SamplingParams {
            n,
            max_tokens: 0,
            temperature: self.temperature.unwrap_or(d.temperature),
            top_p: self.top_p.unwrap_or(d.top_p),
            top_k,
            min_p: self.min_p.unwrap_or(d.min_p),
            stop: self
                .stop
                .clone()
                .map(StopSpec::into_vec)
                .unwrap_or_default(),
            stop_token_ids: self.stop_token_ids.clone().unwrap_or_default(),
            ignore_eos: self.ignore_eos.unwrap_or(false),
            seed: self.seed.map(|s| s as u64),
            logprobs: None,
            prompt_logprobs: None,
        };
        p.validate_with(&state.engine().config().limits)?;
        Ok(p)
    }
}

/// Checks a `max_tokens`-like field (`field`) against the server limit and the context:
/// `None` takes `default` (clamped to what fits). OpenAI routes reject prompts that cannot fit
/// `prompt + max_tokens` tokens in the context, as OpenAI does.
pub fn resolve_max_tokens(
    state: &AppState,
    requested: Option<i64>,
    field: &str,
    default: usize,
    prompt_len: usize,
) -> Result<usize, ApiError> {
    let ctx = state.engine().context_len();
    let limit = state.max_tokens_limit();
    if prompt_len >= ctx {
        return Err(ApiError::invalid_param(
            "prompt",
            format!("the prompt has {prompt_len} tokens; the model's context is {ctx} tokens"),
        )
        .with_code("context_length_exceeded"));
    }
    let room = ctx - prompt_len;
    match requested {
        None => Ok(default.min(room).min(limit)),
        Some(m) if m < 0 => Err(ApiError::invalid_param(
            field,
            format!("`{field}` must be >= 0, got {m}"),
        )),
        Some(m) => {
            let m = usize::try_from(m).unwrap_or(usize::MAX);
            if m > limit {
                return Err(ApiError::invalid_param(
                    field,
                    format!("`{field}` = {m} exceeds the server's limit of {limit} (--max-tokens-limit)"),
                ));
            }
            if m > room {
                return Err(ApiError::invalid_param(
                    field,
                    format!(
                        "this model's maximum context length is {ctx} tokens; the prompt has \
                         {prompt_len} tokens and `{field}` asks for {m} more"
                    ),
                )
                .with_code("context_length_exceeded"));
            }
            Ok(m)
        }
    }
}

/// Validates a request against the engine, naming the prompt when there are several.
pub fn validate_request(
    state: &AppState,
    req: &RolloutRequest,
    idx: usize,
    count: usize,
    field: &str,
) -> Result<(), ApiError> {
    state.engine().validate(req).map_err(|e| {
        let mut a = ApiError::from(e);
        if count > 1 {
            a.message = format!("{field}[{idx}]: {}", a.message);
            a.param = Some(format!("{field}[{idx}]"));
        } else if a.param.is_none() {
            a.param = Some(field.to_string());
        }
        a
    })
}

/// The `policy_version` a non-streaming OpenAI response (completions and chat alike) reports:
/// the newest policy that produced any of its tokens, i.e. the largest `policy_version_end` over
/// all its completions; `serving` (the version serving now) when there is no completion.
pub fn response_policy_version(results: &[RolloutResponse], serving: u64) -> u64 {
    results
        .iter()
        .flat_map(|r| &r.completions)
        .map(|c| c.policy_version_end)
        .max()
        .unwrap_or(serving)
}

/// The OpenAI name of a finish reason.
pub fn finish_str(f: FinishReason) -> String {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Abort => "abort",
    }
    .to_string()
}

/// The text of one token (special tokens kept, invalid UTF-8 replaced), for logprobs.
pub fn token_str(state: &AppState, id: u32) -> String {
    state
        .tokenizer()
        .decode(&[id], false)
        .unwrap_or_else(|_| format!("<{id}>"))
}

/// Forwards the events of several requests into one channel, tagged with the request's index.
/// When the returned receiver is dropped the forwarders stop and drop the engine receivers
/// (which aborts the requests).
pub fn merge_receivers(rxs: Vec<ResponseReceiver>) -> mpsc::Receiver<(usize, StreamEvent)> {
    let (tx, rx) = mpsc::channel(256);
    for (i, mut r) in rxs.into_iter().enumerate() {
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = r.recv() => match ev {
                        Some(ev) => {
                            let last = !matches!(ev, StreamEvent::Delta { .. });
                            if tx.send((i, ev)).await.is_err() || last {
                                break;
                            }
                        }
                        None => {
                            let _ = tx
                                .send((i, StreamEvent::Error(crate::types::EngineError::ShutDown)))
                                .await;
                            break;
                        }
                    },
                    _ = tx.closed() => break,
                }
            }
        });
    }
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Both OpenAI endpoints report the newest policy that produced any token: with completions
    /// ending at versions 3 and then 1 (the last completion older), the answer is 3, not 1.
    #[test]
    fn response_policy_version_is_the_newest_producing_policy() {
        use crate::types::{Completion, Usage};
        let c = |index: usize, start: u64, end: u64| Completion {
            index,
            token_ids: vec![5],
            text: String::new(),
            logprobs: vec![-1.0],
            top_logprobs: None,
            finish_reason: FinishReason::Length,
            stop_reason: None,
            policy_version: start,
            policy_version_end: end,
        };
        let r = |completions: Vec<Completion>| RolloutResponse {
            prompt_token_ids: vec![2],
            prompt_logprobs: None,
            completions,
            usage: Usage::default(),
        };
        let results = vec![r(vec![c(0, 2, 3), c(1, 1, 1)]), r(vec![c(0, 0, 2)])];
        assert_eq!(response_policy_version(&results, 7), 3);
        let one = vec![r(vec![c(0, 3, 3), c(1, 1, 1)])];
        assert_eq!(response_policy_version(&one, 0), 3);
        // No completion at all: the version serving now.
        assert_eq!(response_policy_version(&[r(vec![])], 7), 7);
        assert_eq!(response_policy_version(&[], 4), 4);
    }

    #[test]
    fn prompt_forms() {
        assert_eq!(
            parse_prompts(&json!("hi"), "prompt").unwrap(),
            vec![PromptIn::Text("hi".into())]
        );
        assert_eq!(
            parse_prompts(&json!(["a", "b"]), "prompt").unwrap().len(),
            2
        );
        assert_eq!(
            parse_prompts(&json!([1, 2, 3]), "prompt").unwrap(),
            vec![PromptIn::Ids(vec![1, 2, 3])]
        );
        assert_eq!(
            parse_prompts(&json!([[1], [2, 3]]), "prompt").unwrap(),
            vec![PromptIn::Ids(vec![1]), PromptIn::Ids(vec![2, 3])]
        );
        for bad in [
            json!([]),
            json!([1, -2]),
            json!([1.5]),
            json!(["a", 1]),
            json!([[1], "a"]),
            json!({"a": 1}),
            json!(5),
            json!([4294967296u64]),
        ] {
            let e = parse_prompts(&bad, "prompt").unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
            assert_eq!(e.param.as_deref(), Some("prompt"));
        }
    }

    #[test]
    fn messages_forms() {
        let m: Vec<ChatMessageIn> = serde_json::from_value(json!([
            {"role": "system", "content": "s"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": null}
        ]))
        .unwrap();
        let out = chat_messages(&m).unwrap();
        assert_eq!(out[1].content, "ab");
        assert_eq!(out[2].content, "");
        let bad: Vec<ChatMessageIn> =
            serde_json::from_value(json!([{"role": "wizard", "content": "x"}])).unwrap();
        assert_eq!(
            chat_messages(&bad).unwrap_err().param.as_deref(),
            Some("messages[0].role")
        );
        let bad: Vec<ChatMessageIn> = serde_json::from_value(
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
        )
        .unwrap();
        assert!(chat_messages(&bad).is_err());
        assert!(chat_messages(&[]).is_err());
    }
}
