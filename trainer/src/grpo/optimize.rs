//! The optimisation phase of a GRPO step: `epochs` passes over the rollout batch in shuffled
//! mini-batches, one AdamW step per mini-batch, each mini-batch's gradient accumulated over
//! micro-batches. The aggregation normalisers (tokens, sequences, the `…-norm` length) are the
//! mini-batch's, so accumulating micro-batches gives the same loss and gradient as one pass.
//!
//! PPO runs through the same loop with its critic: the value loss joins the policy loss of
//! every micro-batch (see [`optimize`]).
//!
//! The first mini-batch is scored before any update: how far the trainer's recomputed logprobs
//! are from the rollout's (`onpolicy_*`), which one decoder for both keeps at ≈ 1e-6.

use crate::aggregation::AggregationNorm;
use crate::batch::{pad, Sequence};
use crate::config::TrainConfig;
use crate::policy::Policy;
use crate::policy_loss::bapo::BapoState;
use crate::policy_loss::{policy_loss, PolicyLossExtras};
use crate::ppo::value::ValueTargets;
use crate::seeds::{derive, Purpose};
use crate::train_error::{TrainError, TrainResult};
use candle_core::{DType, Tensor};
use oxrl_datasets::shuffle::permutation;
use oxrl_models::{PromptGroup, TrainForward};

/// Running sums of per-micro-batch metrics.
#[derive(Debug, Default)]
pub struct Sums {
    /// Optimizer steps taken.
    pub steps: usize,
    /// Σ mini-batch losses.
    pub loss: f64,
    /// Σ gradient norms.
    pub grad_norm: f64,
    /// Clip fraction (sum, count).
    pub clip: (f64, usize),
    /// KL in the loss (sum, count).
    pub kl: (f64, usize),
    /// Entropy (sum, count).
    pub entropy: (f64, usize),
    /// Approximate KL old → new (sum, count).
    pub approx_kl: (f64, usize),
    /// Steps skipped for a non-finite gradient norm.
    pub skipped: usize,
    /// The last learning rate.
    pub lr: f64,
    /// Real tokens through the training forward.
    pub train_tokens: usize,
    /// `(max |Δ logprob|, max |ratio − 1|)` on the first mini-batch, before any update.
    pub onpolicy: Option<(f64, f64)>,
    /// PPO's value loss (sum, count).
    pub value_loss: (f64, usize),
    /// PPO's value clip fraction (sum, count).
    pub vf_clip: (f64, usize),
    /// A separate critic's gradient norm (sum, count).
    pub critic_grad_norm: (f64, usize),
}

fn add(acc: &mut (f64, usize), v: Option<f64>) {
    if let Some(v) = v.filter(|v| v.is_finite()) {
        acc.0 += v;
        acc.1 += 1;
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

/// The prompt of a GRPO sequence: the tokens before its first target (`None` without targets).
fn prompt_of(s: &Sequence) -> Option<&[u32]> {
    let p = s.target.iter().position(|&t| t)?;
    Some(&s.ids[..p])
}

/// Neighbouring sequences of a micro-batch with the same prompt: the prompt, their indices in
/// the micro-batch and their completions.
type Run<'a> = (&'a [u32], Vec<usize>, Vec<Vec<u32>>);

/// Per-token logprobs (and entropies) of `part` as `[B × T]` (the layout of [`pad`]), from the
/// shared-prefix forward: the sequences with the same prompt form one group and all the groups
/// of the micro-batch are one [`oxrl_models::Transformer::groups_token_logprobs`] call, so each
/// prompt is encoded once and the matmuls stay as large as the padded forward's. A sequence
/// without targets (filtered out) gets a constant zero row.
fn grouped_logprobs(
    policy: &Policy,
    part: &[&Sequence],
    t: usize,
    opts: TrainForward,
) -> TrainResult<(Tensor, Option<Tensor>)> {
    let device = policy.model.device();
    // The forward's logprob dtype: f64 for f64 models, f32 otherwise.
    let dtype = if policy.model.dtype() == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    // Runs of neighbouring sequences with the same prompt.
    let mut runs: Vec<Run<'_>> = Vec::new();
    let mut i = 0;
    while i < part.len() {
        let Some(prompt) = prompt_of(part[i]) else {
            i += 1;
            continue;
        };
        let mut members = vec![i];
        let mut j = i + 1;
        while j < part.len() && prompt_of(part[j]) == Some(prompt) {
            members.push(j);
            j += 1;
        }
        let completions = members
            .iter()
            .map(|&k| part[k].ids[prompt.len()..].to_vec())
            .collect();
        runs.push((prompt, members, completions));
        i = j;
    }
    let mut rows: Vec<Option<(Tensor, Option<Tensor>)>> = vec![None; part.len()];
    if !runs.is_empty() {
        let groups: Vec<PromptGroup<'_>> = runs
            .iter()
            .map(|(prompt, _, completions)| PromptGroup {
                prompt,
                completions,
            })
            .collect();
        let outs = policy.model.groups_token_logprobs(&groups, opts)?;
        for ((prompt, members, completions), out) in runs.iter().zip(outs) {
            for (slot, &k) in members.iter().enumerate() {
                let len = completions[slot].len();
                let place = |x: &Tensor| -> TrainResult<Tensor> {
                    let left = Tensor::zeros(prompt.len(), dtype, device)?;
                    let right = Tensor::zeros(t - prompt.len() - len, dtype, device)?;
                    Ok(Tensor::cat(&[&left, x, &right], 0)?)
                };
                let lp = place(&out.logprobs[slot])?;
                let ent = match &out.entropy {
                    Some(e) => Some(place(&e[slot])?),
                    None => None,
                };
                rows[k] = Some((lp, ent));
            }
        }
    }
    let zero = Tensor::zeros(t, dtype, device)?;
    let lp: Vec<Tensor> = rows
        .iter()
        .map(|r| r.as_ref().map_or(zero.clone(), |r| r.0.clone()))
        .collect();
    let ent: Option<Vec<Tensor>> = opts.entropy.then(|| {
        rows.iter()
            .map(|r| {
                r.as_ref()
                    .and_then(|r| r.1.clone())
                    .unwrap_or_else(|| zero.clone())
            })
            .collect()
    });
    let lp = Tensor::stack(&lp, 0)?;
    let ent = match ent {
        Some(e) => Some(Tensor::stack(&e, 0)?),
        None => None,
    };
    Ok((lp, ent))
}

/// The normalisers of a mini-batch (floored at 1).
fn mini_batch_norm(seqs: &[&Sequence], max_tokens: usize) -> AggregationNorm {
    let tokens: usize = seqs.iter().map(|s| s.target_tokens()).sum();
    let rows = seqs.iter().filter(|s| s.target_tokens() > 0).count();
    AggregationNorm {
        num_tokens: Some(tokens.max(1) as f64),
        num_sequences: Some(rows.max(1) as f64),
        length: Some(max_tokens.max(1) as f64),
        dp_size: 1.0,
    }
}

/// Runs the optimisation of step `step` over `seqs`; `bapo` carries BAPO's bounds across calls.
/// With `critic` (PPO), each micro-batch's forward also returns the trunk's hidden states and
/// the loss adds `vf_coef` × the clipped value loss of the policy's value head.
pub fn optimize(
    policy: &mut Policy,
    seqs: &[Sequence],
    cfg: &TrainConfig,
    step: u64,
    bapo: &mut Option<BapoState>,
    critic: Option<&ValueTargets>,
) -> TrainResult<Sums> {
    let a = &cfg.algorithm;
    let total = seqs.len();
    let mut sums = Sums::default();
    if total == 0 {
        return Ok(sums);
    }
    let device = policy.model.device().clone();
    let temperature = cfg.rollout.temperature;
    let mut loss_cfg = a.policy_loss.clone();
    loss_cfg.kl = cfg.kl.term();
    let mb = a.mini_batch_size.unwrap_or(total).clamp(1, total);
    let shared_prefix = cfg.shared_prefix() && critic.is_none();
    for epoch in 0..a.epochs {
        let order = permutation(
            total,
            derive(cfg.seed, Purpose::MiniBatches, step, epoch as u64),
        );
        for mini_idx in order.chunks(mb) {
            let mut mini_idx = mini_idx.to_vec();
            if shared_prefix {
                // Whole groups in a micro-batch where they fit: same prompts next to each other
                // (the mini-batch's gradient is a sum, so its split does not change it).
                mini_idx.sort_by(|&x, &y| prompt_of(&seqs[x]).cmp(&prompt_of(&seqs[y])));
            }
            let mini_idx = &mini_idx[..];
            let mini: Vec<&Sequence> = mini_idx.iter().map(|&i| &seqs[i]).collect();
            let norm = mini_batch_norm(&mini, cfg.rollout.max_tokens);
            let micro = a
                .micro_batch_size
                .unwrap_or(mini.len())
                .clamp(1, mini.len());
            let mut grads = None;
            let mut mini_loss = 0f64;
            let mut deviation: Option<(f64, f64)> = None;
            for (part, part_idx) in mini.chunks(micro).zip(mini_idx.chunks(micro)) {
                let batch = pad(part, &device)?;
                sums.train_tokens += batch.total_tokens;
                let opts = TrainForward {
                    track: true,
                    adapters: true,
                    entropy: true,
                    temperature,
                    ..TrainForward::default()
                };
                let (out, hidden) = if let (Some(_), Some(sc)) = (critic, &policy.critic) {
                    // A separate critic: the policy's logprobs and the critic's own trunk.
                    let o = policy
                        .model
                        .token_logprobs(&batch.ids, &batch.lengths, opts)?;
                    let h = sc.model.last_hidden(&batch.ids, &batch.lengths, opts)?;
                    (o, Some(h))
                } else if critic.is_some() {
                    let (o, h) =
                        policy
                            .model
                            .token_logprobs_and_hidden(&batch.ids, &batch.lengths, opts)?;
                    (o, Some(h))
                } else if shared_prefix {
                    let t = batch.ids.dim(1)?;
                    let (logprobs, entropy) = grouped_logprobs(policy, part, t, opts)?;
                    (oxrl_models::TokenLogprobs { logprobs, entropy }, None)
                } else {
                    (
                        policy
                            .model
                            .token_logprobs(&batch.ids, &batch.lengths, opts)?,
                        None,
                    )
                };
                let old = batch
                    .old_logprobs
                    .as_ref()
                    .ok_or_else(|| TrainError::Invariant("rollout logprobs missing".into()))?;
                if sums.onpolicy.is_none() {
                    let (d, r) = onpolicy_deviation(&out.logprobs, old, &batch.mask)?;
                    let (d0, r0) = deviation.unwrap_or((0.0, 0.0));
                    deviation = Some((d0.max(d), r0.max(r)));
                }
                let ref_lp = if loss_cfg.kl.is_some() {
                    policy.reference_logprobs(&batch, temperature)?
                } else {
                    None
                };
                let extras = PolicyLossExtras {
                    ref_logp: ref_lp.as_ref(),
                    entropies: out.entropy.as_ref(),
                    norm,
                    bapo_state: *bapo,
                    rollout_logp: Some(old),
                    ..PolicyLossExtras::default()
                };
                let lo = policy_loss(
                    &out.logprobs,
                    Some(old),
                    &batch.advantages,
                    &batch.mask,
                    &loss_cfg,
                    &extras,
                )?;
                if let Some(s) = lo.bapo_state {
                    *bapo = Some(s);
                }
                let loss = match (critic, &hidden) {
                    (Some(c), Some(h)) => {
                        let head = crate::ppo::value::head(policy)?;
                        let vl = c.loss(head, h, part_idx, &batch, loss_cfg.aggregation, &norm)?;
                        add(
                            &mut sums.value_loss,
                            Some(vl.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?),
                        );
                        add(
                            &mut sums.vf_clip,
                            Some(vl.clipfrac.to_dtype(DType::F64)?.to_scalar::<f64>()?),
                        );
                        (lo.loss + (vl.loss * c.vf_coef)?)?
                    }
                    _ => lo.loss,
                };
                mini_loss += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                policy.accumulate(&mut grads, &loss)?;
                add(&mut sums.clip, lo.metrics.clip_frac);
                add(&mut sums.kl, lo.metrics.kl);
                add(&mut sums.entropy, lo.metrics.entropy);
                add(&mut sums.approx_kl, lo.metrics.approx_kl);
            }
            if sums.onpolicy.is_none() {
                sums.onpolicy = deviation;
            }
            let grads = grads
                .ok_or_else(|| TrainError::Invariant("a mini-batch had no micro-batch".into()))?;
            let info = policy.apply(grads)?;
            sums.steps += 1;
            sums.loss += mini_loss;
            sums.grad_norm += info.grad_norm;
            add(&mut sums.critic_grad_norm, info.critic_grad_norm);
            sums.lr = info.lr;
            sums.skipped += usize::from(info.skipped);
        }
    }
    Ok(sums)
}
