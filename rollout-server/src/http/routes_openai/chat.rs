//! `POST /v1/chat/completions`: the chat template, chat logprobs, SSE `delta` chunks and
//! `stream_options.include_usage`.

use super::super::common::sampling_inputs;
use super::super::common::{
    chat_messages, chat_prompt_ids, check_model, check_serving, finish_str, resolve_max_tokens,
    response_policy_version, token_str, validate_request,
};
use super::super::errors::ApiError;
use super::super::extract::ApiJson;
use super::super::openai_types::*;
use super::super::sse;
use super::super::state::AppState;
use super::stream::{self, StreamFormat, TokenDelta};
use super::{finish_all, submit_all};
use crate::types::{FinishReason, RolloutRequest, TokenLogprob};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

fn chat_logprobs(
    state: &AppState,
    ids: &[u32],
    lps: &[f32],
    tops: Option<&[Vec<TokenLogprob>]>,
) -> ChatLogprobs {
    let entry = |id: u32, lp: f32| {
        let s = token_str(state, id);
        (s.as_bytes().to_vec(), s, lp)
    };
    ChatLogprobs {
        content: ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let (bytes, token, logprob) = entry(id, lps.get(i).copied().unwrap_or(f32::NAN));
                let top_logprobs = tops
                    .and_then(|t| t.get(i))
                    .map(|t| {
                        t.iter()
                            .map(|a| {
                                let (bytes, token, logprob) = entry(a.token_id, a.logprob);
                                ChatTopLogprob {
                                    token,
                                    logprob,
                                    bytes,
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                ChatTokenLogprob {
                    token,
                    logprob,
                    bytes,
                    top_logprobs,
                }
            })
            .collect(),
    }
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    check_serving(&state)?;
    check_model(&state, req.model.as_deref())?;
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(
            ApiError::invalid_param("tools", "tool calling is not supported by oxrl")
                .with_code("unsupported_parameter"),
        );
    }
    if let Some(tc) = &req.tool_choice {
        if !(tc.is_null() || tc == "none" || tc == "auto") {
            return Err(ApiError::invalid_param(
                "tool_choice",
                "tool calling is not supported by oxrl",
            )
            .with_code("unsupported_parameter"));
        }
    }
    if let Some(rf) = &req.response_format {
        if !(rf.is_null() || rf.get("type").and_then(|t| t.as_str()) == Some("text")) {
            return Err(ApiError::invalid_param(
                "response_format",
                "only {\"type\": \"text\"} is supported",
            )
            .with_code("unsupported_parameter"));
        }
    }
    let msgs = req
        .messages
        .as_deref()
        .ok_or_else(|| ApiError::invalid_param("messages", "`messages` is required"))?;
    let msgs = chat_messages(msgs)?;
    let ids = chat_prompt_ids(
        &state,
        &msgs,
        req.add_generation_prompt.unwrap_or(true),
        "messages",
    )?;
    let mut params = sampling_inputs!(req).to_params(&state)?;
    let want_logprobs = req.logprobs.unwrap_or(false);
    let top = match req.top_logprobs {
        None => 0,
        Some(k) if k < 0 => {
            return Err(ApiError::invalid_param(
                "top_logprobs",
                format!("`top_logprobs` must be >= 0, got {k}"),
            ))
        }
        Some(_) if !want_logprobs => {
            return Err(ApiError::invalid_param(
                "top_logprobs",
                "`top_logprobs` needs `logprobs: true`",
            ))
        }
        Some(k) => usize::try_from(k).unwrap_or(usize::MAX),
    };
    if want_logprobs {
        params.logprobs = Some(top);
        params
            .validate_with(&state.engine().config().limits)
            .map_err(|e| ApiError::invalid_param("top_logprobs", e.to_string()))?;
    }
    let (field, requested) = match (req.max_completion_tokens, req.max_tokens) {
        (Some(m), _) => ("max_completion_tokens", Some(m)),
        (None, m) => ("max_tokens", m),
    };
    params.max_tokens = resolve_max_tokens(&state, requested, field, usize::MAX, ids.len())?;
    let r = RolloutRequest::new(ids, params);
    validate_request(&state, &r, 0, 1, "messages")?;
    let n = r.params.n;
    let id = state.new_id("chatcmpl");
    let created = state.now();
    let model = state.cfg().served_model_name.clone();
    if req.stream.unwrap_or(false) {
        let include_usage = req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let rx = submit_all(&state, vec![r], true)?;
        let (tx, resp) = sse::channel();
        let format = ChatChunks {
            state: state.clone(),
            id,
            created,
            model,
            n,
            logprobs: want_logprobs,
        };
        tokio::spawn(stream::produce(format, rx, n, include_usage, tx));
        return Ok(resp);
    }
    let rx = submit_all(&state, vec![r], false)?;
    let results = finish_all(rx).await?;
    let mut usage = OpenAiUsage::default();
    let mut choices = Vec::new();
    for r in &results {
        usage.add(&r.usage);
        for c in &r.completions {
            choices.push(ChatChoice {
                index: c.index,
                message: ChatMessageOut {
                    role: Some("assistant".into()),
                    content: Some(c.text.clone()),
                },
                logprobs: want_logprobs.then(|| {
                    chat_logprobs(&state, &c.token_ids, &c.logprobs, c.top_logprobs.as_deref())
                }),
                finish_reason: Some(finish_str(c.finish_reason)),
            });
        }
    }
    let version = response_policy_version(&results, state.engine().policy_version());
    Ok(Json(ChatCompletionResponse {
        id,
        object: "chat.completion".into(),
        created,
        model,
        choices,
        usage,
        policy_version: version,
    })
    .into_response())
}

/// The chunks of a `/v1/chat/completions` stream.
struct ChatChunks {
    state: AppState,
    id: String,
    created: u64,
    model: String,
    n: usize,
    logprobs: bool,
}

impl ChatChunks {
    fn chunk(&self, choices: Vec<ChatChunkChoice>, usage: Option<OpenAiUsage>) -> Bytes {
        sse::json_frame(&ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        })
    }
}

impl StreamFormat for ChatChunks {
    fn opening(&mut self) -> Vec<Bytes> {
        (0..self.n)
            .map(|i| {
                let c = ChatChunkChoice {
                    index: i,
                    delta: ChatMessageOut {
                        role: Some("assistant".into()),
                        content: Some(String::new()),
                    },
                    logprobs: None,
                    finish_reason: None,
                };
                self.chunk(vec![c], None)
            })
            .collect()
    }

    fn token(&mut self, d: TokenDelta) -> Option<Bytes> {
        let lp = self.logprobs.then(|| {
            chat_logprobs(
                &self.state,
                &[d.token_id],
                &[d.logprob],
                d.top_logprobs.map(|t| vec![t]).as_deref(),
            )
        });
        if d.text_delta.is_empty() && lp.is_none() && d.finish_reason.is_none() {
            return None;
        }
        Some(self.chunk(
            vec![ChatChunkChoice {
                index: d.choice,
                delta: ChatMessageOut {
                    role: None,
                    content: (!d.text_delta.is_empty()).then_some(d.text_delta),
                },
                logprobs: lp,
                finish_reason: d.finish_reason.map(finish_str),
            }],
            None,
        ))
    }

    fn close(&mut self, choices: Vec<(usize, FinishReason)>) -> Bytes {
        let choices = choices
            .into_iter()
            .map(|(index, f)| ChatChunkChoice {
                index,
                delta: ChatMessageOut::default(),
                logprobs: None,
                finish_reason: Some(finish_str(f)),
            })
            .collect();
        self.chunk(choices, None)
    }

    fn usage(&mut self, usage: OpenAiUsage) -> Bytes {
        self.chunk(Vec::new(), Some(usage))
    }
}
