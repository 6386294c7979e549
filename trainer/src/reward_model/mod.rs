//! Reward-model training (`algorithm.name = "reward_model"`): the policy's trunk plus a
//! [`ScoreHead`] read at each sequence's last real token, trained with the Bradley–Terry loss
//! (`preference::reward_model`, TRL's `RewardTrainer`) on `prompt` / `chosen` / `rejected`
//! pairs. One step draws `batch_size` pairs, scores the `2·batch_size` sequences in one forward
//! and takes one optimizer step. Metrics: `loss`, `accuracy` (share of pairs with
//! r_chosen > r_rejected), `margin` (mean r_chosen − r_rejected), the mean chosen / rejected
//! rewards; evaluation adds the same on the held-out pairs (`eval_pair_accuracy`, …).
//!
//! The checkpoint (model + `score_head.safetensors` + tokenizer + config) is what the `model`
//! verifier loads ([`crate::model_verifier`]).

pub mod inputs;

use crate::checkpoint::TrainerState;
use crate::config::TrainConfig;
use crate::metrics::{num, Record};
use crate::policy::Policy;
use crate::preference::reward_model::{bradley_terry_loss, RewardLossConfig};
use crate::score_head::ScoreHead;
use crate::task::Task;
use crate::train_error::{TrainError, TrainResult};
use candle_core::{DType, Tensor};
use oxrl_datasets::Example;
use oxrl_models::{Tokenizer, TrainForward, Transformer};
use std::time::Instant;

/// Scores `rows` (token ids) at their last token, `[rows.len()]`; `track` builds the graph.
pub fn score_rows(
    model: &Transformer,
    head: &ScoreHead,
    rows: &[Vec<u32>],
    track: bool,
) -> TrainResult<Tensor> {
    let (ids, lengths) = inputs::padded(rows, model.device())?;
    let hidden = model.last_hidden(
        &ids,
        &lengths,
        TrainForward {
            track,
            ..TrainForward::default()
        },
    )?;
    head.at_last_token(&hidden, &lengths, track)
}

/// Loss and statistics of a batch of pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PairStats {
    /// Mean Bradley–Terry loss.
    pub loss: f64,
    /// Share of pairs scored chosen > rejected.
    pub accuracy: f64,
    /// Mean r_chosen − r_rejected.
    pub margin: f64,
    /// Mean reward of the chosen completions.
    pub chosen: f64,
    /// Mean reward of the rejected completions.
    pub rejected: f64,
    /// Pairs counted.
    pub pairs: usize,
}

impl PairStats {
    fn merge(&mut self, o: &PairStats) {
        let n = (self.pairs + o.pairs).max(1) as f64;
        let (a, b) = (self.pairs as f64 / n, o.pairs as f64 / n);
        self.loss = a * self.loss + b * o.loss;
        self.accuracy = a * self.accuracy + b * o.accuracy;
        self.margin = a * self.margin + b * o.margin;
        self.chosen = a * self.chosen + b * o.chosen;
        self.rejected = a * self.rejected + b * o.rejected;
        self.pairs += o.pairs;
    }
}

/// The Bradley–Terry loss of `pairs` (each must have `chosen` and `rejected`) and its
/// statistics.
pub fn pair_loss(
    model: &Transformer,
    head: &ScoreHead,
    tok: &Tokenizer,
    pairs: &[&Example],
    loss_cfg: &RewardLossConfig,
    max_len: usize,
    track: bool,
) -> TrainResult<(Tensor, PairStats)> {
    let b = pairs.len();
    let mut rows = Vec::with_capacity(2 * b);
    for side in [true, false] {
        for e in pairs {
            let text = if side { &e.chosen } else { &e.rejected };
            let text = text.as_deref().ok_or_else(|| {
                TrainError::Invariant(format!("example `{}` is not a preference pair", e.id))
            })?;
            rows.push(inputs::scoring_ids(tok, e.prompt.text(), text, max_len)?);
        }
    }
    let r = score_rows(model, head, &rows, track)?;
    let (chosen, rejected) = (r.narrow(0, 0, b)?, r.narrow(0, b, b)?);
    let loss = bradley_terry_loss(&chosen, &rejected, None, loss_cfg)?;
    let c = chosen.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let j = rejected.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let n = b.max(1) as f64;
    let stats = PairStats {
        loss: loss.to_dtype(DType::F64)?.to_scalar::<f64>()?,
        accuracy: c.iter().zip(&j).filter(|(c, j)| c > j).count() as f64 / n,
        margin: c.iter().zip(&j).map(|(c, j)| c - j).sum::<f64>() / n,
        chosen: c.iter().sum::<f64>() / n,
        rejected: j.iter().sum::<f64>() / n,
        pairs: b,
    };
    Ok((loss, stats))
}

fn head_of(policy: &Policy) -> TrainResult<&ScoreHead> {
    policy
        .head
        .as_ref()
        .ok_or_else(|| TrainError::Invariant("reward model without a score head".into()))
}

/// Runs reward-model step `state.step + 1` (one optimizer step on `algorithm.batch_size`
/// pairs), advancing `state`, and returns its metrics record.
pub fn step(
    policy: &mut Policy,
    task: &Task,
    cfg: &TrainConfig,
    state: &mut TrainerState,
) -> TrainResult<Record> {
    let started = Instant::now();
    let a = &cfg.algorithm;
    let pairs: Vec<&Example> = task
        .data
        .sampler
        .iter_from(state.data_position)
        .take(a.batch_size)
        .map(|i| &task.data.train[i])
        .collect();
    let (loss, stats) = pair_loss(
        &policy.model,
        head_of(policy)?,
        &policy.tokenizer,
        &pairs,
        &a.reward_model,
        a.max_seq_len,
        true,
    )?;
    let info = policy.optimizer_step(&loss)?;
    state.step += 1;
    state.data_position += pairs.len() as u64;
    let mut r = Record::new();
    r.insert("step".into(), state.step.into());
    r.insert("loss".into(), num(stats.loss));
    r.insert("accuracy".into(), num(stats.accuracy));
    r.insert("margin".into(), num(stats.margin));
    r.insert("reward_chosen".into(), num(stats.chosen));
    r.insert("reward_rejected".into(), num(stats.rejected));
    r.insert("grad_norm".into(), num(info.grad_norm));
    r.insert("lr".into(), num(info.lr));
    r.insert("skipped_steps".into(), usize::from(info.skipped).into());
    r.insert("train_s".into(), num(started.elapsed().as_secs_f64()));
    Ok(r)
}

/// Pair statistics over held-out `examples` (no graph), in batches of `batch_size`.
pub fn evaluate(
    policy: &Policy,
    examples: &[Example],
    cfg: &TrainConfig,
) -> TrainResult<Option<PairStats>> {
    let a = &cfg.algorithm;
    let mut all = PairStats::default();
    let pairs: Vec<&Example> = examples.iter().collect();
    for chunk in pairs.chunks(a.batch_size.max(1)) {
        let (_, s) = pair_loss(
            &policy.model,
            head_of(policy)?,
            &policy.tokenizer,
            chunk,
            &a.reward_model,
            a.max_seq_len,
            false,
        )?;
        all.merge(&s);
    }
    Ok((all.pairs > 0).then_some(all))
}

/// Held-out pair metrics into `rec` (`eval_pair_accuracy`, `eval_margin`, `eval_loss`).
pub fn evaluate_into(
    policy: &Policy,
    examples: &[Example],
    cfg: &TrainConfig,
    rec: &mut Record,
) -> TrainResult<()> {
    if let Some(s) = evaluate(policy, examples, cfg)? {
        rec.insert("eval_pair_accuracy".into(), num(s.accuracy));
        rec.insert("eval_margin".into(), num(s.margin));
        rec.insert("eval_loss".into(), num(s.loss));
        rec.insert("eval_pairs".into(), s.pairs.into());
    }
    Ok(())
}
