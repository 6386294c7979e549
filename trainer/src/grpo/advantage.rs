//! From scored groups to per-token advantages: the rollout laid out as `[N × L]` completion
//! tensors ([`Layout`]: the reward on each completion's last token, the completion mask, the
//! rollout logprobs), the KL penalty folded into the reward ([`shaped_rewards`], shared with PPO) when `kl.in_reward` is set (verl's
//! `apply_kl_penalty`, β from the controller, which is then fed the batch KL), and the configured
//! estimator of the math crate. `grpo` keeps TRL's flavour (group | batch | no std, ε added);
//! every other name runs [`compute_advantages`] as verl does.

use super::collect::Group;
use crate::advantages::{
    compute_advantages, group_normalized, AdvantageInputs, AdvantageOptions, GroupNormalization,
    GroupScale,
};
use crate::config::{AdvantageEstimator, ScaleName, TrainConfig};
use crate::kl::controller::KlController;
use crate::kl::reward::apply_kl_penalty;
use crate::train_error::{TrainError, TrainResult};
use candle_core::{DType, Device, Tensor};

/// Per-completion advantages and what the KL-in-reward did.
#[derive(Debug, Clone)]
pub struct ComputedAdvantages {
    /// One row per completion (groups in order), one value per completion token.
    pub rows: Vec<Vec<f32>>,
    /// The batch KL fed to the controller (KL in the reward only).
    pub reward_kl: Option<f64>,
    /// β used in the reward (KL in the reward only).
    pub reward_kl_coef: Option<f64>,
}

/// A rollout batch laid out as `[N × L]` completion tensors (N completions, L the longest).
#[derive(Debug, Clone)]
pub struct Layout {
    /// Completion lengths (at least 1 each).
    pub lens: Vec<usize>,
    /// Longest completion.
    pub width: usize,
    /// `[N × L]` f64: each completion's reward on its last token.
    pub scores: Tensor,
    /// `[N × L]` f64: 1 on completion tokens.
    pub mask: Tensor,
    /// `[N × L]` f64: the rollout logprobs.
    pub old: Tensor,
    /// The group of each completion.
    pub groups: Vec<usize>,
    /// ReMax baselines (0 when none).
    pub baselines: Vec<f64>,
}

impl Layout {
    /// Lays out `groups`; `None` when there is no completion.
    pub fn of(groups: &[Group<'_>]) -> TrainResult<Option<Self>> {
        let lens: Vec<usize> = groups
            .iter()
            .flat_map(|g| g.completions.iter().map(|c| c.token_ids.len().max(1)))
            .collect();
        let n = lens.len();
        if n == 0 {
            return Ok(None);
        }
        let l = lens.iter().copied().max().unwrap_or(1);
        let mut scores = vec![0f64; n * l];
        let mut mask = vec![0f64; n * l];
        let mut old = vec![0f64; n * l];
        let mut ids = Vec::with_capacity(n);
        let mut baselines = Vec::with_capacity(n);
        let mut row = 0;
        for (gi, g) in groups.iter().enumerate() {
            for (c, &r) in g.completions.iter().zip(&g.rewards) {
                let len = lens[row];
                scores[row * l + len - 1] = r;
                for j in 0..len {
                    mask[row * l + j] = 1.0;
                    old[row * l + j] = f64::from(c.logprobs.get(j).copied().unwrap_or(0.0));
                }
                ids.push(gi);
                baselines.push(g.baseline.unwrap_or(0.0));
                row += 1;
            }
        }
        let dev = Device::Cpu;
        let t = |v: Vec<f64>| Tensor::from_vec(v, (n, l), &dev);
        Ok(Some(Self {
            scores: t(scores)?,
            mask: t(mask)?,
            old: t(old)?,
            lens,
            width: l,
            groups: ids,
            baselines,
        }))
    }

    /// Completion-aligned rows (one per completion, at most its length each) as an `[N × L]`
    /// f64 tensor, 0 beyond each row.
    pub fn tensor(&self, rows: &[Vec<f32>]) -> TrainResult<Tensor> {
        let (n, l) = (self.lens.len(), self.width);
        let mut r = vec![0f64; n * l];
        for (i, row) in rows.iter().enumerate().take(n) {
            for (j, &v) in row.iter().enumerate().take(self.lens[i]) {
                r[i * l + j] = f64::from(v);
            }
        }
        Ok(Tensor::from_vec(r, (n, l), &Device::Cpu)?)
    }

    /// An `[N × L]` tensor back to completion-aligned f32 rows.
    pub fn rows(&self, t: &Tensor) -> TrainResult<Vec<Vec<f32>>> {
        let flat = t.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        Ok(flat
            .into_iter()
            .zip(&self.lens)
            .map(|(mut r, &len)| {
                r.truncate(len);
                r
            })
            .collect())
    }
}

/// The token-level rewards: the scores, minus β·KL per token when the KL is in the reward
/// (`ref_logprobs` and `controller` both given; the controller is then fed the batch KL).
/// Returns `(rewards, batch KL, β)`.
pub fn shaped_rewards(
    lay: &Layout,
    cfg: &TrainConfig,
    ref_logprobs: Option<&[Vec<f32>]>,
    controller: Option<&mut KlController>,
) -> TrainResult<(Tensor, Option<f64>, Option<f64>)> {
    match (ref_logprobs, controller) {
        (Some(refs), Some(ctrl)) => {
            let beta = ctrl.value();
            let shaped = apply_kl_penalty(
                &lay.scores,
                &lay.old,
                &lay.tensor(refs)?,
                &lay.mask,
                cfg.kl.estimator,
                beta,
            )?;
            ctrl.update(shaped.current_kl, lay.lens.len())?;
            Ok((
                shaped.token_level_rewards,
                Some(shaped.current_kl),
                Some(beta),
            ))
        }
        (None, None) => Ok((lay.scores.clone(), None, None)),
        _ => Err(TrainError::Invariant(
            "KL in the reward needs both the reference logprobs and a controller".into(),
        )),
    }
}

/// Computes the advantages of `groups`. `ref_logprobs` (completion-aligned, one row per
/// completion) is needed when the KL is in the reward; `controller` is then its β.
pub fn compute(
    groups: &[Group<'_>],
    cfg: &TrainConfig,
    ref_logprobs: Option<&[Vec<f32>]>,
    controller: Option<&mut KlController>,
) -> TrainResult<ComputedAdvantages> {
    let Some(lay) = Layout::of(groups)? else {
        return Ok(ComputedAdvantages {
            rows: Vec::new(),
            reward_kl: None,
            reward_kl_coef: None,
        });
    };
    let (rewards, reward_kl, reward_kl_coef) = shaped_rewards(&lay, cfg, ref_logprobs, controller)?;
    let dev = Device::Cpu;
    let n = lay.lens.len();
    let mask_t = &lay.mask;
    let adv = &cfg.algorithm.advantage;
    let advantages = match adv.estimator {
        AdvantageEstimator::Grpo => {
            let row_scores = (rewards * mask_t)?.sum(1)?;
            let scale = match adv.scale {
                ScaleName::Group => GroupScale::Group,
                ScaleName::Batch => GroupScale::Batch,
                ScaleName::None => GroupScale::None,
            };
            let norm = GroupNormalization::trl(scale).with_epsilon(adv.epsilon);
            let per_row = group_normalized(&row_scores, &lay.groups, &norm)?;
            per_row.unsqueeze(1)?.broadcast_mul(mask_t)?
        }
        other => {
            let reward_baselines = Tensor::from_vec(lay.baselines.clone(), n, &dev)?;
            let inputs = AdvantageInputs {
                token_level_rewards: &rewards,
                response_mask: mask_t,
                groups: Some(&lay.groups),
                values: None,
                reward_baselines: Some(&reward_baselines),
                old_log_probs: Some(&lay.old),
                sum_pi_squared: None,
                rollout_is_weights: None,
            };
            let opts = AdvantageOptions {
                gamma: adv.gamma,
                epsilon: adv.epsilon,
                norm_adv_by_std: adv.scale != ScaleName::None,
                f_norm: adv.f_norm,
                ..AdvantageOptions::default()
            };
            compute_advantages(other.math(), &inputs, &opts)?.advantages
        }
    };
    Ok(ComputedAdvantages {
        rows: lay.rows(&advantages)?,
        reward_kl,
        reward_kl_coef,
    })
}
