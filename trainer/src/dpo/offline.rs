//! Offline DPO: each step draws `algorithm.batch_size` preference examples from the sampler,
//! encodes both sides of each pair, takes one optimizer step on the preference loss against the
//! reference, and reports TRL's `rewards/*` statistics. The held-out evaluation reports the same
//! statistics (`eval_rewards/margins`, …) and `eval_loss` over the held-out pairs, without a
//! graph.

use super::loss::{insert_stats, pair_loss};
use super::pairs::{encode_example, PairSeqs};
use crate::checkpoint::TrainerState;
use crate::config::TrainConfig;
use crate::metrics::{num, Record};
use crate::policy::Policy;
use crate::preference::RewardStats;
use crate::task::Task;
use crate::train_error::TrainResult;
use oxrl_datasets::Example;
use std::time::Instant;

/// Runs DPO step `state.step + 1`, advancing `state`, and returns its metrics record.
pub fn step(
    policy: &mut Policy,
    task: &Task,
    cfg: &TrainConfig,
    state: &mut TrainerState,
) -> TrainResult<Record> {
    let started = Instant::now();
    let a = &cfg.algorithm;
    let mut pairs = Vec::with_capacity(a.batch_size);
    for i in task
        .data
        .sampler
        .iter_from(state.data_position)
        .take(a.batch_size)
    {
        pairs.push(encode_example(
            &policy.tokenizer,
            &task.data.train[i],
            a.max_seq_len,
        )?);
    }
    let out = pair_loss(policy, &pairs, &a.preference_loss, true)?;
    let info = policy.optimizer_step(&out.loss)?;
    state.step += 1;
    state.data_position += pairs.len() as u64;
    let train_s = started.elapsed().as_secs_f64();
    let mut r = Record::new();
    r.insert("step".into(), state.step.into());
    r.insert("loss".into(), num(out.value));
    insert_stats(&mut r, "", &out.stats);
    r.insert("grad_norm".into(), num(info.grad_norm));
    r.insert("lr".into(), num(info.lr));
    r.insert("skipped_steps".into(), usize::from(info.skipped).into());
    r.insert("pairs".into(), pairs.len().into());
    r.insert("target_tokens".into(), out.target_tokens.into());
    r.insert(
        "tokens_per_s".into(),
        num(out.total_tokens as f64 / train_s.max(1e-9)),
    );
    r.insert("train_s".into(), num(train_s));
    Ok(r)
}

/// The held-out statistics over `examples` (no graph), in batches of `batch_size` pairs, as
/// `eval_loss` and `eval_rewards/margins`, `eval_rewards/accuracies`, … (pair-weighted means;
/// exact for every loss type that averages over pairs). Nothing when `examples` is empty.
pub fn eval(
    policy: &Policy,
    examples: &[Example],
    cfg: &TrainConfig,
    rec: &mut Record,
) -> TrainResult<()> {
    let a = &cfg.algorithm;
    let mut count = 0usize;
    let mut loss = 0.0;
    let mut sum = RewardStats {
        chosen: 0.0,
        rejected: 0.0,
        accuracies: 0.0,
        margins: 0.0,
        logps_chosen: 0.0,
        logps_rejected: 0.0,
    };
    for chunk in examples.chunks(a.batch_size.max(1)) {
        let pairs = chunk
            .iter()
            .map(|e| encode_example(&policy.tokenizer, e, a.max_seq_len))
            .collect::<TrainResult<Vec<PairSeqs>>>()?;
        let out = pair_loss(policy, &pairs, &a.preference_loss, false)?;
        let w = pairs.len() as f64;
        let s = &out.stats;
        loss += out.value * w;
        sum.chosen += s.chosen * w;
        sum.rejected += s.rejected * w;
        sum.accuracies += s.accuracies * w;
        sum.margins += s.margins * w;
        sum.logps_chosen += s.logps_chosen * w;
        sum.logps_rejected += s.logps_rejected * w;
        count += pairs.len();
    }
    if count == 0 {
        return Ok(());
    }
    let n = count as f64;
    let mean = RewardStats {
        chosen: sum.chosen / n,
        rejected: sum.rejected / n,
        accuracies: sum.accuracies / n,
        margins: sum.margins / n,
        logps_chosen: sum.logps_chosen / n,
        logps_rejected: sum.logps_rejected / n,
    };
    rec.insert("eval_loss".into(), num(loss / n));
    insert_stats(rec, "eval_", &mean);
    rec.insert("eval_pairs".into(), count.into());
    Ok(())
}
