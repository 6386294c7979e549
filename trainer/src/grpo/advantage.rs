//! From scored groups to per-token advantages: the rollout laid out as `[N × L]` completion
//! tensors (the reward on each completion's last token, the completion mask, the rollout
//! logprobs), the KL penalty folded into the reward when `kl.in_reward` is set (verl's
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

/// Computes the advantages of `groups`. `ref_logprobs` (completion-aligned, one row per
/// completion) is needed when the KL is in the reward; `controller` is then its β.
pub fn compute(
    groups: &[Group<'_>],
    cfg: &TrainConfig,
    ref_logprobs: Option<&[Vec<f32>]>,
    controller: Option<&mut KlController>,
) -> TrainResult<ComputedAdvantages> {
    let dev = Device::Cpu;
    let lens: Vec<usize> = groups
        .iter()
        .flat_map(|g| g.completions.iter().map(|c| c.token_ids.len().max(1)))
        .collect();
    let n = lens.len();
    if n == 0 {
        return Ok(ComputedAdvantages {
            rows: Vec::new(),
            reward_kl: None,
            reward_kl_coef: None,
        });
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
    let t = |v: Vec<f64>| Tensor::from_vec(v, (n, l), &dev);
    let (scores, mask_t, old_t) = (t(scores)?, t(mask)?, t(old)?);

    let (rewards, reward_kl, reward_kl_coef) = match (ref_logprobs, controller) {
        (Some(refs), Some(ctrl)) => {
            let mut r = vec![0f64; n * l];
            for (i, lp) in refs.iter().enumerate() {
                for (j, &v) in lp.iter().enumerate().take(lens[i]) {
                    r[i * l + j] = f64::from(v);
                }
            }
            let beta = ctrl.value();
            let shaped =
                apply_kl_penalty(&scores, &old_t, &t(r)?, &mask_t, cfg.kl.estimator, beta)?;
            ctrl.update(shaped.current_kl, n)?;
            (
                shaped.token_level_rewards,
                Some(shaped.current_kl),
                Some(beta),
            )
        }
        (None, None) => (scores, None, None),
        _ => {
            return Err(TrainError::Invariant(
                "KL in the reward needs both the reference logprobs and a controller".into(),
            ))
        }
    };

    let adv = &cfg.algorithm.advantage;
    let advantages = match adv.estimator {
        AdvantageEstimator::Grpo => {
            let row_scores = (rewards * &mask_t)?.sum(1)?;
            let scale = match adv.scale {
                ScaleName::Group => GroupScale::Group,
                ScaleName::Batch => GroupScale::Batch,
                ScaleName::None => GroupScale::None,
            };
            let norm = GroupNormalization::trl(scale).with_epsilon(adv.epsilon);
            let per_row = group_normalized(&row_scores, &ids, &norm)?;
            per_row.unsqueeze(1)?.broadcast_mul(&mask_t)?
        }
        other => {
            let reward_baselines = Tensor::from_vec(baselines, n, &dev)?;
            let inputs = AdvantageInputs {
                token_level_rewards: &rewards,
                response_mask: &mask_t,
                groups: Some(&ids),
                values: None,
                reward_baselines: Some(&reward_baselines),
                old_log_probs: Some(&old_t),
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
    let flat = advantages.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let rows = flat
        .into_iter()
        .zip(&lens)
        .map(|(mut r, &len)| {
            r.truncate(len);
            r
        })
        .collect();
    Ok(ComputedAdvantages {
        rows,
        reward_kl,
        reward_kl_coef,
    })
}
