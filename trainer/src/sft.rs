//! Supervised fine-tuning: each example becomes prompt + target tokens with the loss on the target
//! only (the assistant tokens of the chat template's `{% generation %}` block for chat prompts;
//! the completion and an EOS token for plain-text prompts). The loss is the negative
//! log-likelihood of the target tokens, aggregated with the configured mode (token-mean by
//! default).

use crate::aggregation::{aggregate, AggregationNorm, LossAggregation};
use crate::batch::{PaddedBatch, Sequence};
use crate::config::SftTarget;
use crate::prompts::chat_messages;
use crate::train_error::{TrainError, TrainResult};
use candle_core::Tensor;
use oxrl_datasets::{Example, Prompt};
use oxrl_models::{Tokenizer, TrainForward, Transformer};

/// The text an example is trained to produce, if it has it (for `conversation`, the last
/// assistant turn, as a presence check: every assistant turn is trained).
pub fn target_text(e: &Example, target: SftTarget) -> Option<&str> {
    match target {
        SftTarget::Completion => e.completion.as_deref(),
        SftTarget::Answer => e.answer.as_deref(),
        SftTarget::Conversation => match &e.prompt {
            Prompt::Messages(m) => m
                .iter()
                .rev()
                .find(|m| m.role == "assistant")
                .map(|m| m.content.as_str()),
            Prompt::Text(_) => None,
        },
    }
}

/// Encodes one example as a training sequence, truncated to `max_len` tokens.
pub fn encode_example(
    tok: &Tokenizer,
    e: &Example,
    target: SftTarget,
    max_len: usize,
) -> TrainResult<Sequence> {
    let text = target_text(e, target)
        .ok_or_else(|| TrainError::Invariant(format!("example `{}` has no SFT target", e.id)))?;
    let text = (target != SftTarget::Conversation).then_some(text);
    encode_masked(tok, &e.prompt, text, max_len, &e.id)
}

/// Encodes `prompt` followed by the target `text` (the loss mask on the target only: the chat
/// template's assistant tokens, or the text and an EOS token after a plain prompt), truncated to
/// `max_len` tokens; `id` names the example in errors. SFT and DPO (each side of a pair) share it.
pub fn encode_prompt_target(
    tok: &Tokenizer,
    prompt: &Prompt,
    text: &str,
    max_len: usize,
    id: &str,
) -> TrainResult<Sequence> {
    encode_masked(tok, prompt, Some(text), max_len, id)
}

/// [`encode_prompt_target`]; without `text`, a chat prompt is a whole conversation whose
/// assistant turns are the target.
fn encode_masked(
    tok: &Tokenizer,
    prompt: &Prompt,
    text: Option<&str>,
    max_len: usize,
    id: &str,
) -> TrainResult<Sequence> {
    let (mut ids, mut mask) = match (prompt, text) {
        (Prompt::Messages(m), None) => tok.encode_chat_with_assistant_mask(&chat_messages(m))?,
        (Prompt::Text(_), None) => {
            return Err(TrainError::Invariant(format!(
                "example `{id}` is plain text: it has no assistant turns to train on"
            )))
        }
        (Prompt::Messages(m), Some(text)) => tok.encode_chat_completion(&chat_messages(m), text)?,
        (Prompt::Text(p), Some(text)) => {
            let prompt = tok.encode(p, true)?;
            let mut completion = tok.encode(text, false)?;
            if let Some(&eos) = tok.eos_token_ids().first() {
                completion.push(eos);
            }
            let mut mask = vec![false; prompt.len()];
            mask.extend(std::iter::repeat_n(true, completion.len()));
            let mut ids = prompt;
            ids.extend(completion);
            (ids, mask)
        }
    };
    ids.truncate(max_len);
    mask.truncate(max_len);
    if let Some(m) = mask.first_mut() {
        *m = false;
    }
    if !mask.iter().any(|&m| m) {
        return Err(TrainError::Invariant(format!(
            "example `{id}` has no target tokens within {max_len} tokens"
        )));
    }
    Ok(Sequence {
        ids,
        target: mask,
        old_logprobs: None,
        advantage: 0.0,
        token_advantages: None,
    })
}

/// The SFT loss of a batch: aggregated negative log-likelihood of the target tokens.
/// `track = false` evaluates without building the autograd graph.
pub fn sft_loss(
    model: &Transformer,
    batch: &PaddedBatch,
    mode: LossAggregation,
    track: bool,
) -> TrainResult<Tensor> {
    let out = model.token_logprobs(&batch.ids, &batch.lengths, forward(track))?;
    nll(&out.logprobs, &batch.mask, mode)
}

/// The SFT loss of a packed batch ([`crate::batch::pack`]): the same aggregated negative
/// log-likelihood as [`sft_loss`] of the sequences padded one per row, for token-level
/// aggregations (the only ones packing allows).
pub fn sft_loss_packed(
    model: &Transformer,
    batch: &crate::batch::PackedBatch,
    mode: LossAggregation,
    track: bool,
) -> TrainResult<Tensor> {
    let out = model.packed_token_logprobs(&batch.ids, &batch.segments, forward(track))?;
    nll(&out.logprobs, &batch.mask, mode)
}

fn forward(track: bool) -> TrainForward {
    TrainForward {
        track,
        ..TrainForward::default()
    }
}

/// Aggregated negative log-likelihood of the masked tokens.
fn nll(logprobs: &Tensor, mask: &Tensor, mode: LossAggregation) -> TrainResult<Tensor> {
    Ok(aggregate(
        &logprobs.neg()?,
        mask,
        mode,
        &AggregationNorm::default(),
    )?)
}

/// Runs SFT step `state.step + 1` (one optimizer step on `algorithm.batch_size` examples),
/// advancing `state`, and returns its metrics record.
pub fn step(
    policy: &mut crate::policy::Policy,
    task: &crate::task::Task,
    cfg: &crate::config::TrainConfig,
    state: &mut crate::checkpoint::TrainerState,
) -> TrainResult<crate::metrics::Record> {
    use crate::metrics::num;
    let started = std::time::Instant::now();
    let a = &cfg.algorithm;
    let mut seqs = Vec::with_capacity(a.batch_size);
    for i in task
        .data
        .sampler
        .iter_from(state.data_position)
        .take(a.batch_size)
    {
        seqs.push(encode_example(
            &policy.tokenizer,
            &task.data.train[i],
            a.sft.target,
            a.max_seq_len,
        )?);
    }
    let refs: Vec<&Sequence> = seqs.iter().collect();
    let device = policy.model.device().clone();
    let (loss, target_tokens, total_tokens, rows) = if a.sft.packing {
        let batch = crate::batch::pack(&refs, a.max_seq_len, &device)?;
        let loss = sft_loss_packed(&policy.model, &batch, a.sft.aggregation, true)?;
        (
            loss,
            batch.target_tokens,
            batch.total_tokens,
            batch.segments.len(),
        )
    } else {
        let batch = crate::batch::pad(&refs, &device)?;
        let loss = sft_loss(&policy.model, &batch, a.sft.aggregation, true)?;
        (loss, batch.target_tokens, batch.total_tokens, refs.len())
    };
    let value = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    let info = policy.optimizer_step(&loss)?;
    state.step += 1;
    state.data_position += seqs.len() as u64;
    let train_s = started.elapsed().as_secs_f64();
    let mut r = crate::metrics::Record::new();
    r.insert("step".into(), state.step.into());
    r.insert("loss".into(), num(value));
    r.insert("grad_norm".into(), num(info.grad_norm));
    r.insert("lr".into(), num(info.lr));
    r.insert("skipped_steps".into(), usize::from(info.skipped).into());
    r.insert("target_tokens".into(), target_tokens.into());
    r.insert("rows".into(), rows.into());
    r.insert(
        "tokens_per_s".into(),
        num(total_tokens as f64 / train_s.max(1e-9)),
    );
    r.insert("train_s".into(), num(train_s));
    Ok(r)
}

/// Mean SFT loss over `examples` (no graph), in batches of `batch_size`.
pub fn eval_loss(
    model: &Transformer,
    tok: &Tokenizer,
    examples: &[Example],
    target: SftTarget,
    mode: LossAggregation,
    max_len: usize,
    batch_size: usize,
) -> TrainResult<Option<f64>> {
    let mut sum = 0.0;
    let mut count = 0usize;
    for chunk in examples.chunks(batch_size.max(1)) {
        let mut seqs = Vec::new();
        for e in chunk {
            if target_text(e, target).is_some() {
                seqs.push(encode_example(tok, e, target, max_len)?);
            }
        }
        if seqs.is_empty() {
            continue;
        }
        let refs: Vec<&Sequence> = seqs.iter().collect();
        let batch = crate::batch::pad(&refs, model.device())?;
        let l = sft_loss(model, &batch, mode, false)?;
        sum += l.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()? * seqs.len() as f64;
        count += seqs.len();
    }
    Ok((count > 0).then(|| sum / count as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxrl_datasets::ChatMessage;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage::new(role, content)
    }

    #[test]
    fn conversation_target_trains_every_assistant_turn_and_nothing_else() {
        let tok = oxrl_models::tokenizer::tiny::tiny_tokenizer(320).unwrap();
        let e = Example {
            id: "c".into(),
            prompt: Prompt::Messages(vec![
                msg("system", "be brief"),
                msg("user", "say 3"),
                msg("assistant", "3"),
                msg("user", "double it"),
                msg("assistant", "6"),
            ]),
            ..Example::default()
        };
        assert_eq!(target_text(&e, SftTarget::Conversation), Some("6"));
        let s = encode_example(&tok, &e, SftTarget::Conversation, 512).unwrap();
        let trained: Vec<u32> = s
            .ids
            .iter()
            .zip(&s.target)
            .filter(|(_, &m)| m)
            .map(|(&i, _)| i)
            .collect();
        assert_eq!(
            tok.decode(&trained, false).unwrap(),
            "3<|im_end|>6<|im_end|>"
        );
        // Truncation keeps the first turn's target.
        let cut = s.target.iter().rposition(|&m| m).unwrap();
        let short = encode_example(&tok, &e, SftTarget::Conversation, cut).unwrap();
        assert!(short.target.iter().any(|&m| m));
        // A text prompt has no conversation.
        let t = Example {
            prompt: Prompt::Text("hi".into()),
            ..e
        };
        assert_eq!(target_text(&t, SftTarget::Conversation), None);
    }

    /// A template without `{% generation %}` blocks (SmolLM2's): the answer's tokens are what
    /// the conversation adds after the prompt with its generation prompt.
    #[test]
    fn answer_target_under_a_template_without_generation_blocks() {
        let mut tok = oxrl_models::tokenizer::tiny::tiny_tokenizer(320).unwrap();
        tok.set_chat_template(Some(
            "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nbe brief<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
        ))
        .unwrap();
        let e = Example {
            id: "a".into(),
            prompt: Prompt::Messages(vec![msg("user", "3 + 4 =")]),
            answer: Some("7".into()),
            ..Example::default()
        };
        let s = encode_example(&tok, &e, SftTarget::Answer, 512).unwrap();
        let trained: Vec<u32> = s
            .ids
            .iter()
            .zip(&s.target)
            .filter(|(_, &m)| m)
            .map(|(&i, _)| i)
            .collect();
        assert_eq!(tok.decode(&trained, false).unwrap(), "7<|im_end|>\n");
        // The prompt, generation prompt included, is context only.
        let first = s.target.iter().position(|&m| m).unwrap();
        assert!(tok
            .decode(&s.ids[..first], false)
            .unwrap()
            .ends_with("<|im_start|>assistant\n"));
    }
}
