//! The OpenAI-compatible routes: `POST /v1/completions` (text or token-id prompts, legacy
//! logprobs, `echo` for prompt scoring, SSE streaming), `POST /v1/chat/completions` (chat
//! template, chat logprobs, SSE `delta` chunks, `stream_options.include_usage`) and
//! `GET /v1/models`.
//!
//! Streaming with `echo` sends the prompt text as the first chunk of each choice, without
//! prompt logprobs (ask without `stream` to score prompts).

use super::common::{
    chat_messages, chat_prompt_ids, check_model, check_serving, finish_str, merge_receivers,
    parse_prompts, prompt_ids, resolve_max_tokens, response_policy_version, token_str,
    validate_request, PromptIn, SamplingInputs,
};
use super::errors::ApiError;
use super::extract::ApiJson;
use super::openai_types::*;
use super::sse;
use super::state::AppState;
use crate::engine::ResponseReceiver;
use crate::types::{
    Completion, PromptTokenLogprob, RolloutRequest, RolloutResponse, StreamEvent, TokenLogprob,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::BTreeMap;
use tokio::sync::mpsc;

/// Default `max_tokens` of `/v1/completions` (OpenAI's).
pub const DEFAULT_COMPLETION_MAX_TOKENS: usize = 16;

/// `GET /v1/models`.
pub async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".into(),
        data: vec![ModelCard {
            id: state.cfg().served_model_name.clone(),
            object: "model".into(),
            created: state.created(),
            owned_by: "oxrl".into(),
            root: state.cfg().model_source.clone(),
            max_model_len: state.engine().context_len(),
            policy_version: state.engine().policy_version(),
        }],
    })
}

/// Submits every request (streaming or quiet); on a failure the earlier receivers are dropped,
/// which aborts them.
fn submit_all(
    state: &AppState,
    reqs: Vec<RolloutRequest>,
    stream: bool,
) -> Result<Vec<ResponseReceiver>, ApiError> {
    reqs.into_iter()
        .map(|r| {
            if stream {
                state.engine().submit(r)
            } else {
                state.engine().submit_quiet(r)
            }
            .map_err(ApiError::from)
        })
        .collect()
}

/// Awaits every receiver's final response.
pub(crate) async fn finish_all(
    rxs: Vec<ResponseReceiver>,
) -> Result<Vec<RolloutResponse>, ApiError> {
    let mut out = Vec::with_capacity(rxs.len());
    for r in rxs {
        out.push(r.finish().await?);
    }
    Ok(out)
}

fn top_map(
    state: &AppState,
    top: &[TokenLogprob],
    chosen: Option<(u32, f32)>,
) -> BTreeMap<String, f32> {
    let mut m = BTreeMap::new();
    for t in top.iter().map(|t| (t.token_id, t.logprob)).chain(chosen) {
        let s = token_str(state, t.0);
        let e = m.entry(s).or_insert(f32::NEG_INFINITY);
        if t.1 > *e {
            *e = t.1;
        }
    }
    m
}

/// Legacy logprobs of one choice: the prompt's tokens first when echoing.
fn legacy_logprobs(
    state: &AppState,
    prompt: Option<(&[u32], &[Option<PromptTokenLogprob>])>,
    c: &Completion,
) -> LegacyLogprobs {
    let mut lp = LegacyLogprobs::default();
    let mut offset = 0usize;
    let mut push = |lp: &mut LegacyLogprobs, s: String, v: Option<f32>, top| {
        lp.text_offset.push(offset);
        offset += s.chars().count();
        lp.tokens.push(s);
        lp.token_logprobs.push(v);
        lp.top_logprobs.push(top);
    };
    if let Some((ids, plps)) = prompt {
        for (i, &id) in ids.iter().enumerate() {
            let entry = plps.get(i).and_then(|e| e.as_ref());
            let (v, top) = match entry {
                Some(e) => (
                    Some(e.logprob),
                    Some(top_map(state, &e.top_logprobs, Some((id, e.logprob)))),
                ),
                None => (None, None),
            };
            push(&mut lp, token_str(state, id), v, top);
        }
    }
    for (i, &id) in c.token_ids.iter().enumerate() {
        let v = c.logprobs.get(i).copied().unwrap_or(f32::NAN);
        let top = c
            .top_logprobs
            .as_ref()
            .and_then(|t| t.get(i))
            .map(|t| top_map(state, t, Some((id, v))));
        push(&mut lp, token_str(state, id), Some(v), top);
    }
    lp
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    check_serving(&state)?;
    check_model(&state, req.model.as_deref())?;
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(
            ApiError::invalid_param("suffix", "`suffix` is not supported by oxrl")
                .with_code("unsupported_parameter"),
        );
    }
    let prompt = req
        .prompt
        .as_ref()
        .ok_or_else(|| ApiError::invalid_param("prompt", "`prompt` is required"))?;
    let prompts = parse_prompts(prompt, "prompt")?;
    let inputs = SamplingInputs {
        n: req.n,
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        min_p: req.min_p,
        stop: req.stop.clone(),
        seed: req.seed,
        ignore_eos: req.ignore_eos,
        stop_token_ids: req.stop_token_ids.clone(),
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        repetition_penalty: req.repetition_penalty,
        logit_bias: req.logit_bias.clone(),
    };
    let mut params = inputs.to_params(&state)?;
    if let Some(b) = req.best_of {
        if b != params.n as i64 {
            return Err(ApiError::invalid_param(
                "best_of",
                "`best_of` is not supported by oxrl (it must equal `n`)",
            )
            .with_code("unsupported_parameter"));
        }
    }
    let logprobs = match req.logprobs {
        None => None,
        Some(k) if k < 0 => {
            return Err(ApiError::invalid_param(
                "logprobs",
                format!("`logprobs` must be >= 0, got {k}"),
            ))
        }
        Some(k) => Some(usize::try_from(k).unwrap_or(usize::MAX)),
    };
    let echo = req.echo.unwrap_or(false);
    params.logprobs = logprobs;
    params.prompt_logprobs = if echo { logprobs } else { None };
    params.validate_with(&state.engine().config().limits)?;
    let count = prompts.len();
    let mut texts = Vec::with_capacity(count);
    let mut reqs = Vec::with_capacity(count);
    for (i, p) in prompts.iter().enumerate() {
        let ids = prompt_ids(&state, p, "prompt")?;
        let max_tokens = resolve_max_tokens(
            &state,
            req.max_tokens,
            "max_tokens",
            DEFAULT_COMPLETION_MAX_TOKENS,
            ids.len(),
        )?;
        let mut pp = params.clone();
        pp.max_tokens = max_tokens;
        let r = RolloutRequest::new(ids, pp);
        validate_request(&state, &r, i, count, "prompt")?;
        texts.push(match p {
            PromptIn::Text(t) => t.clone(),
            PromptIn::Ids(ids) => state.tokenizer().decode(ids, false).unwrap_or_default(),
        });
        reqs.push(r);
    }
    let n = params.n;
    let id = state.new_id("cmpl");
    let created = state.now();
    let model = state.cfg().served_model_name.clone();
    if req.stream.unwrap_or(false) {
        let include_usage = req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let rxs = submit_all(&state, reqs, true)?;
        let (tx, resp) = sse::channel();
        let job = CompletionStream {
            state: state.clone(),
            id,
            created,
            model,
            n,
            logprobs: logprobs.is_some(),
            echo: echo.then_some(texts),
            include_usage,
        };
        tokio::spawn(job.run(rxs, tx));
        return Ok(resp);
    }
    let rxs = submit_all(&state, reqs, false)?;
    let results = finish_all(rxs).await?;
    let mut usage = OpenAiUsage::default();
    let mut choices = Vec::with_capacity(count * n);
    for (p, r) in results.iter().enumerate() {
        usage.add(&r.usage);
        for c in &r.completions {
            let text = if echo {
                format!("{}{}", texts[p], c.text)
            } else {
                c.text.clone()
            };
            let lp = logprobs.map(|_| {
                let prompt = if echo {
                    Some((
                        r.prompt_token_ids.as_slice(),
                        r.prompt_logprobs.as_deref().unwrap_or(&[]),
                    ))
                } else {
                    None
                };
                legacy_logprobs(&state, prompt, c)
            });
            choices.push(CompletionChoice {
                index: p * n + c.index,
                text,
                logprobs: lp,
                finish_reason: Some(finish_str(c.finish_reason)),
            });
        }
    }
    let version = response_policy_version(&results, state.engine().policy_version());
    Ok(Json(CompletionResponse {
        id,
        object: "text_completion".into(),
        created,
        model,
        choices,
        usage: Some(usage),
        policy_version: version,
    })
    .into_response())
}

/// The producer of a `/v1/completions` stream.
struct CompletionStream {
    state: AppState,
    id: String,
    created: u64,
    model: String,
    n: usize,
    logprobs: bool,
    echo: Option<Vec<String>>,
    include_usage: bool,
}

impl CompletionStream {
    fn chunk(&self, choices: Vec<CompletionChoice>, usage: Option<OpenAiUsage>) -> Bytes {
        sse::json_frame(&CompletionResponse {
            id: self.id.clone(),
            object: "text_completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
            policy_version: self.state.engine().policy_version(),
        })
    }

    async fn run(self, rxs: Vec<ResponseReceiver>, tx: mpsc::Sender<Bytes>) {
        let prompts = rxs.len();
        let mut events = merge_receivers(rxs);
        let mut finished = vec![false; prompts * self.n];
        let mut offsets = vec![0usize; prompts * self.n];
        if let Some(texts) = &self.echo {
            for (p, t) in texts.iter().enumerate() {
                for i in 0..self.n {
                    offsets[p * self.n + i] = t.chars().count();
                    let c = CompletionChoice {
                        index: p * self.n + i,
                        text: t.clone(),
                        logprobs: None,
                        finish_reason: None,
                    };
                    if tx.send(self.chunk(vec![c], None)).await.is_err() {
                        return;
                    }
                }
            }
        }
        let mut usage = OpenAiUsage::default();
        let mut done = 0;
        while done < prompts {
            let Some((p, ev)) = events.recv().await else {
                break;
            };
            let frame = match ev {
                StreamEvent::Delta {
                    index,
                    token_id,
                    text_delta,
                    logprob,
                    top_logprobs,
                    finish_reason,
                } => {
                    let k = p * self.n + index;
                    let lp = self.logprobs.then(|| {
                        let s = token_str(&self.state, token_id);
                        let off = offsets.get(k).copied().unwrap_or(0);
                        LegacyLogprobs {
                            top_logprobs: vec![top_logprobs
                                .as_ref()
                                .map(|t| top_map(&self.state, t, Some((token_id, logprob))))],
                            tokens: vec![s],
                            token_logprobs: vec![Some(logprob)],
                            text_offset: vec![off],
                        }
                    });
                    if let Some(o) = offsets.get_mut(k) {
                        *o += text_delta.chars().count();
                    }
                    if finish_reason.is_some() {
                        if let Some(f) = finished.get_mut(k) {
                            *f = true;
                        }
                    }
                    if text_delta.is_empty() && lp.is_none() && finish_reason.is_none() {
                        continue;
                    }
                    self.chunk(
                        vec![CompletionChoice {
                            index: k,
                            text: text_delta,
                            logprobs: lp,
                            finish_reason: finish_reason.map(finish_str),
                        }],
                        None,
                    )
                }
                StreamEvent::Done(r) => {
                    done += 1;
                    usage.add(&r.usage);
                    let rest: Vec<CompletionChoice> = r
                        .completions
                        .iter()
                        .filter(|c| !finished.get(p * self.n + c.index).copied().unwrap_or(true))
                        .map(|c| CompletionChoice {
                            index: p * self.n + c.index,
                            text: String::new(),
                            logprobs: None,
                            finish_reason: Some(finish_str(c.finish_reason)),
                        })
                        .collect();
                    if rest.is_empty() {
                        continue;
                    }
                    self.chunk(rest, None)
                }
                StreamEvent::Error(e) => {
                    let _ = tx.send(sse::json_frame(&ApiError::from(e).body())).await;
                    let _ = tx.send(sse::done_frame()).await;
                    return;
                }
            };
            if tx.send(frame).await.is_err() {
                return;
            }
        }
        if self.include_usage {
            let _ = tx.send(self.chunk(Vec::new(), Some(usage))).await;
        }
        let _ = tx.send(sse::done_frame()).await;
    }
}

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
    let inputs = SamplingInputs {
        n: req.n,
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        min_p: req.min_p,
        stop: req.stop.clone(),
        seed: req.seed,
        ignore_eos: req.ignore_eos,
        stop_token_ids: req.stop_token_ids.clone(),
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        repetition_penalty: req.repetition_penalty,
        logit_bias: req.logit_bias.clone(),
    };
    let mut params = inputs.to_params(&state)?;
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
        let job = ChatStream {
            state: state.clone(),
            id,
            created,
            model,
            n,
            logprobs: want_logprobs,
            include_usage,
        };
        tokio::spawn(job.run(rx, tx));
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

/// The producer of a `/v1/chat/completions` stream.
struct ChatStream {
    state: AppState,
    id: String,
    created: u64,
    model: String,
    n: usize,
    logprobs: bool,
    include_usage: bool,
}

impl ChatStream {
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

    async fn run(self, rxs: Vec<ResponseReceiver>, tx: mpsc::Sender<Bytes>) {
        let mut events = merge_receivers(rxs);
        for i in 0..self.n {
            let c = ChatChunkChoice {
                index: i,
                delta: ChatMessageOut {
                    role: Some("assistant".into()),
                    content: Some(String::new()),
                },
                logprobs: None,
                finish_reason: None,
            };
            if tx.send(self.chunk(vec![c], None)).await.is_err() {
                return;
            }
        }
        let mut finished = vec![false; self.n];
        let mut usage = OpenAiUsage::default();
        loop {
            let Some((_, ev)) = events.recv().await else {
                break;
            };
            let frame = match ev {
                StreamEvent::Delta {
                    index,
                    token_id,
                    text_delta,
                    logprob,
                    top_logprobs,
                    finish_reason,
                } => {
                    if finish_reason.is_some() {
                        if let Some(f) = finished.get_mut(index) {
                            *f = true;
                        }
                    }
                    let lp = self.logprobs.then(|| {
                        chat_logprobs(
                            &self.state,
                            &[token_id],
                            &[logprob],
                            top_logprobs.map(|t| vec![t]).as_deref(),
                        )
                    });
                    if text_delta.is_empty() && lp.is_none() && finish_reason.is_none() {
                        continue;
                    }
                    self.chunk(
                        vec![ChatChunkChoice {
                            index,
                            delta: ChatMessageOut {
                                role: None,
                                content: (!text_delta.is_empty()).then_some(text_delta),
                            },
                            logprobs: lp,
                            finish_reason: finish_reason.map(finish_str),
                        }],
                        None,
                    )
                }
                StreamEvent::Done(r) => {
                    usage.add(&r.usage);
                    let rest: Vec<ChatChunkChoice> = r
                        .completions
                        .iter()
                        .filter(|c| !finished.get(c.index).copied().unwrap_or(true))
                        .map(|c| ChatChunkChoice {
                            index: c.index,
                            delta: ChatMessageOut::default(),
                            logprobs: None,
                            finish_reason: Some(finish_str(c.finish_reason)),
                        })
                        .collect();
                    if !rest.is_empty() && tx.send(self.chunk(rest, None)).await.is_err() {
                        return;
                    }
                    break;
                }
                StreamEvent::Error(e) => {
                    let _ = tx.send(sse::json_frame(&ApiError::from(e).body())).await;
                    let _ = tx.send(sse::done_frame()).await;
                    return;
                }
            };
            if tx.send(frame).await.is_err() {
                return;
            }
        }
        if self.include_usage {
            let _ = tx.send(self.chunk(Vec::new(), Some(usage))).await;
        }
        let _ = tx.send(sse::done_frame()).await;
    }
}
