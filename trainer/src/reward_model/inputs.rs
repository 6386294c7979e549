//! What a reward model reads: one rule shared by its training (pairs) and by the `model`
//! verifier (completions), so a learned reward scores exactly the inputs it was trained on.
//!
//! The prompt's text (the verifier's view of an example: the plain prompt, or the last user
//! message) becomes one user message through the tokenizer's chat template with the generation
//! prompt (plain text with BOS when the tokenizer has no template), followed by the completion's
//! tokens. A sequence longer than `max_len` keeps its last `max_len` tokens: the reward is read at
//! the last token, so the end of the completion must stay.

use crate::batch::{pad, Sequence};
use crate::train_error::{TrainError, TrainResult};
use candle_core::{Device, Tensor};
use oxrl_models::{ChatMessage, Tokenizer};

/// Token ids of `prompt` followed by `completion`, at most `max_len` (≥ 1) of them.
pub fn scoring_ids(
    tok: &Tokenizer,
    prompt: &str,
    completion: &str,
    max_len: usize,
) -> TrainResult<Vec<u32>> {
    let mut ids = if tok.chat_template().is_some() {
        let text = tok.apply_chat_template(&[ChatMessage::new("user", prompt)], true)?;
        tok.encode(&text, false)?
    } else {
        tok.encode(prompt, true)?
    };
    ids.extend(tok.encode(completion, false)?);
    if ids.is_empty() {
        return Err(TrainError::Invariant(
            "a prompt and completion encode to no tokens".into(),
        ));
    }
    let max_len = max_len.max(1);
    if ids.len() > max_len {
        ids.drain(..ids.len() - max_len);
    }
    Ok(ids)
}

/// `[b, t]` right-padded ids and the row lengths of `rows`.
pub fn padded(rows: &[Vec<u32>], device: &Device) -> TrainResult<(Tensor, Vec<usize>)> {
    let seqs: Vec<Sequence> = rows
        .iter()
        .map(|ids| Sequence {
            ids: ids.clone(),
            target: vec![false; ids.len()],
            old_logprobs: None,
            advantage: 0.0,
            token_advantages: None,
        })
        .collect();
    let refs: Vec<&Sequence> = seqs.iter().collect();
    let b = pad(&refs, device)?;
    Ok((b.ids, b.lengths))
}
