//! The one SSE producer of the OpenAI routes: it merges the engine's event channels of every
//! prompt, tracks which choices have finished, and sends a frame per token delta, closing frames
//! for choices that ended without a finish delta, an error frame on failure, the optional usage
//! chunk and `[DONE]`. What each frame looks like is the route's [`StreamFormat`].

use super::super::common::merge_receivers;
use super::super::errors::ApiError;
use super::super::openai_types::OpenAiUsage;
use super::super::sse;
use crate::engine::ResponseReceiver;
use crate::types::{FinishReason, StreamEvent, TokenLogprob};
use axum::body::Bytes;
use tokio::sync::mpsc;

/// One generated token of choice `choice` (= prompt × n + sample index), as the engine streamed it.
pub(super) struct TokenDelta {
    /// The choice's index in the response.
    pub choice: usize,
    /// The sampled token.
    pub token_id: u32,
    /// Text completed by this token (possibly empty).
    pub text_delta: String,
    /// The token's logprob.
    pub logprob: f32,
    /// Top alternatives, when asked for.
    pub top_logprobs: Option<Vec<TokenLogprob>>,
    /// Set on the choice's last token.
    pub finish_reason: Option<FinishReason>,
}

/// How one route writes its stream chunks.
pub(super) trait StreamFormat: Send + 'static {
    /// Frames sent before any token (chat: the assistant role; completions: echoed prompts).
    fn opening(&mut self) -> Vec<Bytes>;
    /// The frame of one token (`None`: nothing worth sending).
    fn token(&mut self, d: TokenDelta) -> Option<Bytes>;
    /// The frame that closes `choices` (each with its finish reason), which ended without a
    /// finish delta.
    fn close(&mut self, choices: Vec<(usize, FinishReason)>) -> Bytes;
    /// The final usage chunk (`stream_options.include_usage`).
    fn usage(&mut self, usage: OpenAiUsage) -> Bytes;
}

/// Streams the responses of `rxs` (one per prompt, `n` choices each) to `tx` in `format`.
pub(super) async fn produce<F: StreamFormat>(
    mut format: F,
    rxs: Vec<ResponseReceiver>,
    n: usize,
    include_usage: bool,
    tx: mpsc::Sender<Bytes>,
) {
    let prompts = rxs.len();
    let mut events = merge_receivers(rxs);
    for frame in format.opening() {
        if tx.send(frame).await.is_err() {
            return;
        }
    }
    let mut finished = vec![false; prompts * n];
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
                let choice = p * n + index;
                if finish_reason.is_some() {
                    if let Some(f) = finished.get_mut(choice) {
                        *f = true;
                    }
                }
                let d = TokenDelta {
                    choice,
                    token_id,
                    text_delta,
                    logprob,
                    top_logprobs,
                    finish_reason,
                };
                match format.token(d) {
                    Some(frame) => frame,
                    None => continue,
                }
            }
            StreamEvent::Done(r) => {
                done += 1;
                usage.add(&r.usage);
                let rest: Vec<(usize, FinishReason)> = r
                    .completions
                    .iter()
                    .map(|c| (p * n + c.index, c.finish_reason))
                    .filter(|&(k, _)| !finished.get(k).copied().unwrap_or(true))
                    .collect();
                if rest.is_empty() {
                    continue;
                }
                format.close(rest)
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
    if include_usage {
        let _ = tx.send(format.usage(usage)).await;
    }
    let _ = tx.send(sse::done_frame()).await;
}
