//! `POST /v1/completions`: text or token-id prompts, legacy logprobs, `echo` for prompt scoring
//! and SSE streaming.
//!
//! Streaming with `echo` sends the prompt text as the first chunk of each choice, without
//! prompt logprobs (ask without `stream` to score prompts).

use super::super::common::sampling_inputs;
use super::super::common::{
    check_model, check_serving, finish_str, parse_prompts, prompt_ids, resolve_max_tokens,
    response_policy_version, token_str, validate_request, PromptIn,
};
use super::super::errors::ApiError;
use super::super::extract::ApiJson;
use super::super::openai_types::*;
use super::super::sse;
use super::super::state::AppState;
use super::stream::{self, StreamFormat, TokenDelta};
use super::{finish_all, submit_all};
use crate::types::{Completion, FinishReason, PromptTokenLogprob, RolloutRequest, TokenLogprob};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::BTreeMap;

/// Default `max_tokens` of `/v1/completions` (OpenAI's).
pub const DEFAULT_COMPLETION_MAX_TOKENS: usize = 16;

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
    let mut params = sampling_inputs!(req).to_params(&state)?;
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
        let offsets = vec![0; rxs.len() * n];
        let format = CompletionChunks {
            state: state.clone(),
            id,
            created,
            model,
            n,
            logprobs: logprobs.is_some(),
            echo: echo.then_some(texts),
            offsets,
        };
        tokio::spawn(stream::produce(format, rxs, n, include_usage, tx));
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

/// The chunks of a `/v1/completions` stream.
struct CompletionChunks {
    state: AppState,
    id: String,
    created: u64,
    model: String,
    n: usize,
    logprobs: bool,
    echo: Option<Vec<String>>,
    /// Characters of text each choice has streamed so far (legacy `text_offset`).
    offsets: Vec<usize>,
}

impl CompletionChunks {
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
}

impl StreamFormat for CompletionChunks {
    fn opening(&mut self) -> Vec<Bytes> {
        let Some(texts) = self.echo.take() else {
            return Vec::new();
        };
        let mut frames = Vec::with_capacity(texts.len() * self.n);
        for (p, t) in texts.iter().enumerate() {
            for i in 0..self.n {
                self.offsets[p * self.n + i] = t.chars().count();
                let c = CompletionChoice {
                    index: p * self.n + i,
                    text: t.clone(),
                    logprobs: None,
                    finish_reason: None,
                };
                frames.push(self.chunk(vec![c], None));
            }
        }
        frames
    }

    fn token(&mut self, d: TokenDelta) -> Option<Bytes> {
        let k = d.choice;
        let lp = self.logprobs.then(|| {
            let s = token_str(&self.state, d.token_id);
            let off = self.offsets.get(k).copied().unwrap_or(0);
            LegacyLogprobs {
                top_logprobs: vec![d
                    .top_logprobs
                    .as_ref()
                    .map(|t| top_map(&self.state, t, Some((d.token_id, d.logprob))))],
                tokens: vec![s],
                token_logprobs: vec![Some(d.logprob)],
                text_offset: vec![off],
            }
        });
        if let Some(o) = self.offsets.get_mut(k) {
            *o += d.text_delta.chars().count();
        }
        if d.text_delta.is_empty() && lp.is_none() && d.finish_reason.is_none() {
            return None;
        }
        Some(self.chunk(
            vec![CompletionChoice {
                index: k,
                text: d.text_delta,
                logprobs: lp,
                finish_reason: d.finish_reason.map(finish_str),
            }],
            None,
        ))
    }

    fn close(&mut self, choices: Vec<(usize, FinishReason)>) -> Bytes {
        let choices = choices
            .into_iter()
            .map(|(index, f)| CompletionChoice {
                index,
                text: String::new(),
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
