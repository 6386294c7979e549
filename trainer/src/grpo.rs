//! One GRPO step, in-process: draw prompts → sample `n` completions each with the engine (which
//! serves the trainer's own weights) → score them with the task's verifiers → group-normalised
//! advantages → the configured policy loss over `epochs` passes of shuffled mini-batches, each an
//! AdamW step → bump the engine's policy version so the next rollouts see the new weights.
//!
//! The old-policy logprobs are the engine's own (one decoder serves both), so nothing is
//! recomputed before the first update; the step records how far the trainer's recomputed
//! logprobs are from them on the first mini-batch (`onpolicy_max_abs_logprob_diff`, expected
//! ≈ 1e-6, and `onpolicy_max_abs_ratio_dev`). Every completion must carry the policy version
//! the engine served when the step began, and the version after the step must be one higher.

use crate::advantages::{group_normalized, groups_of_consecutive, GroupNormalization, GroupScale};
use crate::batch::{pad, Sequence};
use crate::checkpoint::TrainerState;
use crate::config::{validate::sampling_params, ScaleName, TrainConfig};
use crate::metrics::{num, Record};
use crate::policy::Policy;
use crate::policy_loss::{policy_loss, PolicyLossExtras};
use crate::prompts::prompt_ids;
use crate::reward::Reward;
use crate::seeds::{derive, Purpose};
use crate::task::Task;
use crate::train_error::{TrainError, TrainResult};
use candle_core::{DType, Tensor};
use oxrl_datasets::{shuffle::permutation, Example};
use oxrl_models::TrainForward;
use oxrl_rollout::{EngineHandle, FinishReason, RolloutRequest};
use std::sync::Arc;
use std::time::Instant;

/// Running sums of per-mini-batch metrics.
#[derive(Debug, Default)]
struct Sums {
    n: usize,
    loss: f64,
    grad_norm: f64,
    clip: (f64, usize),
    kl: (f64, usize),
    entropy: (f64, usize),
    approx_kl: (f64, usize),
    skipped: usize,
    lr: f64,
}

fn add(acc: &mut (f64, usize), v: Option<f64>) {
    if let Some(v) = v.filter(|v| v.is_finite()) {
        acc.0 += v;
        acc.1 += 1;
    }
}

fn mean(acc: (f64, usize)) -> serde_json::Value {
    if acc.1 == 0 {
        serde_json::Value::Null
    } else {
        num(acc.0 / acc.1 as f64)
    }
}

/// Largest |log π_θ − log π_rollout| and |π_θ/π_rollout − 1| over the mask.
fn onpolicy_deviation(logp: &Tensor, old: &Tensor, mask: &Tensor) -> TrainResult<(f64, f64)> {
    let f = |t: &Tensor| -> TrainResult<Vec<f32>> {
        Ok(t.detach()
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    };
    let (lp, old, m) = (f(logp)?, f(old)?, f(mask)?);
    let mut max_diff = 0f64;
    let mut max_ratio = 0f64;
    for i in 0..lp.len() {
        if m[i] > 0.0 {
            let d = f64::from(lp[i]) - f64::from(old[i]);
            max_diff = max_diff.max(d.abs());
            max_ratio = max_ratio.max((d.exp() - 1.0).abs());
        }
    }
    Ok((max_diff, max_ratio))
}

/// Runs GRPO step `state.step + 1`, advancing `state`, and returns its metrics record.
pub fn step(
    policy: &mut Policy,
    engine: &EngineHandle,
    task: &Task,
    reward: &Reward,
    cfg: &TrainConfig,
    state: &mut TrainerState,
) -> TrainResult<Record> {
    let started = Instant::now();
    let step = state.step + 1;
    let a = &cfg.algorithm;
    let n = cfg.rollout.n;
    let examples: Vec<&Example> = task
        .data
        .sampler
        .iter_from(state.data_position)
        .take(a.batch_size)
        .map(|i| &task.data.train[i])
        .collect();
    let mut prompts = Vec::with_capacity(examples.len());
    for e in &examples {
        prompts.push(prompt_ids(&policy.tokenizer, &e.prompt)?);
    }
    let requests: Vec<RolloutRequest> = prompts
        .iter()
        .enumerate()
        .map(|(i, ids)| {
            let seed = derive(cfg.seed, Purpose::Rollout, step, i as u64);
            RolloutRequest::new(ids.clone(), sampling_params(cfg, n, Some(seed)))
        })
        .collect();

    // Rollout.
    let version = engine.policy_version();
    let responses = engine
        .generate(requests)
        .map_err(|e| TrainError::Rollout(e.to_string()))?;
    let rollout_s = started.elapsed().as_secs_f64();
    let mut generated = 0usize;
    for r in &responses {
        for c in &r.completions {
            if c.policy_version != version || c.policy_version_end != version {
                return Err(TrainError::Invariant(format!(
                    "a completion came from policy version {}..{}, expected {version}",
                    c.policy_version, c.policy_version_end
                )));
            }
            if c.finish_reason == FinishReason::Abort {
                return Err(TrainError::Rollout("a completion was aborted".into()));
            }
            generated += c.token_ids.len();
        }
    }

    // Rewards.
    let verify_start = Instant::now();
    let groups: Vec<(&Example, Vec<String>)> = examples
        .iter()
        .zip(&responses)
        .map(|(e, r)| (*e, r.completions.iter().map(|c| c.text.clone()).collect()))
        .collect();
    let scores = reward.score(&groups);
    let verify_s = verify_start.elapsed().as_secs_f64();
    let flat: Vec<&crate::reward::Scored> = scores.iter().flatten().collect();
    let rewards: Vec<f64> = flat.iter().map(|s| f64::from(s.reward)).collect();
    let total = rewards.len();
    if total != examples.len() * n {
        return Err(TrainError::Invariant(format!(
            "{total} scores for {} prompts × {n}",
            examples.len()
        )));
    }
    let accuracy = flat.iter().filter(|s| s.correct).count() as f64 / total as f64;
    let verifier_errors = flat.iter().filter(|s| s.error.is_some()).count();

    // Advantages.
    let device = policy.model.device().clone();
    let scale = match a.advantage.scale {
        ScaleName::Group => GroupScale::Group,
        ScaleName::Batch => GroupScale::Batch,
        ScaleName::None => GroupScale::None,
    };
    let norm = GroupNormalization::trl(scale).with_epsilon(a.advantage.epsilon);
    let adv = group_normalized(
        &Tensor::new(rewards.as_slice(), &device)?,
        &groups_of_consecutive(total, n)?,
        &norm,
    )?
    .to_vec1::<f64>()?;

    // Training sequences.
    let mut seqs = Vec::with_capacity(total);
    for (p, r) in prompts.iter().zip(&responses) {
        for c in &r.completions {
            let i = seqs.len();
            seqs.push(Sequence::prompt_completion(
                p,
                &c.token_ids,
                Some(&c.logprobs),
                adv[i] as f32,
            ));
        }
    }
    let response_len = seqs.iter().map(|s| s.target_tokens()).sum::<usize>() as f64 / total as f64;

    // Optimisation.
    let train_start = Instant::now();
    let mut loss_cfg = a.policy_loss.clone();
    loss_cfg.kl = cfg.kl.term();
    let mb = a.mini_batch_size.unwrap_or(total).clamp(1, total);
    let mut sums = Sums::default();
    let mut onpolicy: Option<(f64, f64)> = None;
    let mut train_tokens = 0usize;
    for epoch in 0..a.epochs {
        let order = permutation(
            total,
            derive(cfg.seed, Purpose::MiniBatches, step, epoch as u64),
        );
        for chunk in order.chunks(mb) {
            let picked: Vec<&Sequence> = chunk.iter().map(|&i| &seqs[i]).collect();
            let batch = pad(&picked, &device)?;
            train_tokens += batch.total_tokens;
            let out = policy.model.token_logprobs(
                &batch.ids,
                &batch.lengths,
                TrainForward {
                    track: true,
                    adapters: true,
                    entropy: true,
                },
            )?;
            let old = batch
                .old_logprobs
                .as_ref()
                .ok_or_else(|| TrainError::Invariant("rollout logprobs missing".into()))?;
            if onpolicy.is_none() {
                onpolicy = Some(onpolicy_deviation(&out.logprobs, old, &batch.mask)?);
            }
            let ref_lp = if loss_cfg.kl.is_some() {
                policy.reference_logprobs(&batch)?
            } else {
                None
            };
            let extras = PolicyLossExtras {
                ref_logp: ref_lp.as_ref(),
                entropies: out.entropy.as_ref(),
                ..PolicyLossExtras::default()
            };
            let lo = policy_loss(
                &out.logprobs,
                Some(old),
                &batch.seq_advantages,
                &batch.mask,
                &loss_cfg,
                &extras,
            )?;
            let info = policy.optimizer_step(&lo.loss)?;
            sums.n += 1;
            sums.loss += lo.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            sums.grad_norm += info.grad_norm;
            sums.lr = info.lr;
            sums.skipped += usize::from(info.skipped);
            add(&mut sums.clip, lo.metrics.clip_frac);
            add(&mut sums.kl, lo.metrics.kl);
            add(&mut sums.entropy, lo.metrics.entropy);
            add(&mut sums.approx_kl, lo.metrics.approx_kl);
        }
    }
    let train_s = train_start.elapsed().as_secs_f64();

    // Weight sync: the engine already reads the updated tensors (shared storage); the version
    // bump makes it drop KV computed under the old weights and stamps new completions.
    let sync_start = Instant::now();
    let new_version = engine
        .set_model(Arc::new(policy.model.clone()))
        .map_err(|e| TrainError::Rollout(e.to_string()))?;
    if new_version != version + 1 {
        return Err(TrainError::Invariant(format!(
            "policy version went {version} → {new_version}, expected {}",
            version + 1
        )));
    }
    let sync_s = sync_start.elapsed().as_secs_f64();

    state.step = step;
    state.data_position += examples.len() as u64;
    state.policy_version = new_version;

    let reward_mean = rewards.iter().sum::<f64>() / total as f64;
    let reward_std = (rewards
        .iter()
        .map(|r| (r - reward_mean).powi(2))
        .sum::<f64>()
        / total as f64)
        .sqrt();
    let (lp_diff, ratio_dev) = onpolicy.unwrap_or((f64::NAN, f64::NAN));
    let step_s = started.elapsed().as_secs_f64();
    let mut r = Record::new();
    r.insert("step".into(), step.into());
    r.insert("policy_version".into(), new_version.into());
    r.insert("loss".into(), num(sums.loss / sums.n.max(1) as f64));
    r.insert("reward".into(), num(reward_mean));
    r.insert("reward_std".into(), num(reward_std));
    r.insert("accuracy".into(), num(accuracy));
    r.insert("kl".into(), mean(sums.kl));
    r.insert("approx_kl".into(), mean(sums.approx_kl));
    r.insert("entropy".into(), mean(sums.entropy));
    r.insert("clip_fraction".into(), mean(sums.clip));
    r.insert(
        "grad_norm".into(),
        num(sums.grad_norm / sums.n.max(1) as f64),
    );
    r.insert("lr".into(), num(sums.lr));
    r.insert("optimizer_steps".into(), sums.n.into());
    r.insert("skipped_steps".into(), sums.skipped.into());
    r.insert("onpolicy_max_abs_logprob_diff".into(), num(lp_diff));
    r.insert("onpolicy_max_abs_ratio_dev".into(), num(ratio_dev));
    r.insert("response_length".into(), num(response_len));
    r.insert("verifier_errors".into(), verifier_errors.into());
    r.insert("completions".into(), total.into());
    r.insert("rollout_tokens".into(), generated.into());
    r.insert(
        "tokens_per_s".into(),
        num(generated as f64 / rollout_s.max(1e-9)),
    );
    r.insert(
        "train_tokens_per_s".into(),
        num(train_tokens as f64 / train_s.max(1e-9)),
    );
    r.insert("rollout_s".into(), num(rollout_s));
    r.insert("verify_s".into(), num(verify_s));
    r.insert("train_s".into(), num(train_s));
    r.insert("sync_s".into(), num(sync_s));
    r.insert("step_s".into(), num(step_s));
    Ok(r)
}
