//! Group-normalised advantages (GRPO and its variants): each completion's reward minus the mean
//! of its group (the completions of one prompt), optionally divided by a standard deviation.
//!
//! The two anchors differ in the details, and each difference is an option here:
//! - ε: TRL divides by (std + 1e-4), verl by (std + 1e-6) — [`GroupNormalization::trl`],
//!   [`GroupNormalization::verl`].
//! - Which std: TRL's `scale_rewards = "group"` uses the group's std, `"batch"` the std of the
//!   whole batch (the mean is still the group's), `"none"` (Dr. GRPO) divides by nothing; verl's
//!   `norm_adv_by_std_in_grpo = false` is the same as `"none"`. Both use Bessel's correction.
//! - Singleton groups: verl uses mean 0, std 1 (the advantage is score / (1 + ε)); TRL's mean of
//!   one value is the value itself (advantage 0) — [`SingletonGroup`].
//! - TRL's multi-reward aggregation ([`MultiRewardAggregation`]): weighted sum of the reward
//!   functions, then normalisation (`sum_then_normalize`), or per-function group normalisation,
//!   weighted sum, then a batch-wide normalisation (`normalize_then_sum`).
//!
//! verl's `grpo_vectorized` computes its group statistics in float32 with the variance floored at
//! ε (std ≥ 1e-3 for ε = 1e-6): [`grpo_vectorized_scores`] reproduces that.

use candle_core::Tensor;

use super::host;
use crate::{MathError, Result};

/// What the centred reward is divided by (TRL `scale_rewards`, verl `norm_adv_by_std_in_grpo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupScale {
    /// The std of the completion's own group (TRL `"group"`, verl `norm_adv_by_std_in_grpo = true`).
    Group,
    /// The std of all rewards of the batch (TRL `"batch"`); the mean is still the group's.
    Batch,
    /// No division (Dr. GRPO; TRL `"none"`, verl `norm_adv_by_std_in_grpo = false`).
    None,
}

impl GroupScale {
    /// The accepted TRL `scale_rewards` names.
    pub const TRL_NAMES: [&'static str; 3] = ["group", "batch", "none"];

    /// From TRL's `scale_rewards` (`"group"`, `"batch"`, `"none"`; TRL's legacy booleans map to
    /// `"group"` / `"none"` through [`GroupScale::from_bool`]).
    pub fn from_trl_name(name: &str) -> Result<Self> {
        match name {
            "group" => Ok(Self::Group),
            "batch" => Ok(Self::Batch),
            "none" => Ok(Self::None),
            other => Err(MathError::unknown("scale_rewards", other, &Self::TRL_NAMES)),
        }
    }

    /// `true` → [`GroupScale::Group`], `false` → [`GroupScale::None`] (verl's
    /// `norm_adv_by_std_in_grpo`, TRL's old boolean `scale_rewards`).
    pub fn from_bool(norm_by_std: bool) -> Self {
        if norm_by_std {
            Self::Group
        } else {
            Self::None
        }
    }
}

/// How a group of one completion is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SingletonGroup {
    /// Mean 0, std 1: the advantage is the reward itself (÷ (1 + ε) when scaled) — verl.
    ZeroMeanUnitStd,
    /// The group's own statistics: mean = the reward, std = 0, so the advantage is 0 — TRL.
    OwnStats,
}

/// Options of [`group_normalized`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupNormalization {
    /// Which std divides the centred reward.
    pub scale: GroupScale,
    /// Added to the std before dividing.
    pub epsilon: f64,
    /// Bessel's correction (n − 1) in the std.
    pub unbiased_std: bool,
    /// What a group of one means.
    pub singleton: SingletonGroup,
}

impl GroupNormalization {
    /// TRL's GRPO: ε = 1e-4, Bessel std, a singleton's advantage is 0.
    pub fn trl(scale: GroupScale) -> Self {
        Self {
            scale,
            epsilon: 1e-4,
            unbiased_std: true,
            singleton: SingletonGroup::OwnStats,
        }
    }

    /// verl's `grpo`: ε = 1e-6, Bessel std (`torch.std`), singletons use mean 0 and std 1.
    pub fn verl(norm_by_std: bool) -> Self {
        Self {
            scale: GroupScale::from_bool(norm_by_std),
            epsilon: 1e-6,
            unbiased_std: true,
            singleton: SingletonGroup::ZeroMeanUnitStd,
        }
    }

    /// The same options with another ε.
    pub fn with_epsilon(mut self, epsilon: f64) -> Self {
        self.epsilon = epsilon;
        self
    }
}

/// Group-normalised advantages: `rewards` `[N]`, `groups[i]` = group id of row `i` (any ids;
/// equal ids form a group) → `[N]` in the dtype of `rewards`.
pub fn group_normalized(
    rewards: &Tensor,
    groups: &[usize],
    opts: &GroupNormalization,
) -> Result<Tensor> {
    let r = host::vec1(rewards, "rewards")?;
    host::check_groups(groups, r.len())?;
    let adv = group_normalized_host(&r, groups, opts);
    host::tensor1(adv, rewards)
}

/// [`group_normalized`] on host f64s.
pub(crate) fn group_normalized_host(
    r: &[f64],
    groups: &[usize],
    opts: &GroupNormalization,
) -> Vec<f64> {
    let all: Vec<usize> = (0..r.len()).collect();
    let batch_std = {
        let m = host::mean_of(r, &all);
        host::std_of(r, &all, m, opts.unbiased_std)
    };
    let mut adv = vec![0.0; r.len()];
    for idx in host::members(groups) {
        let (mean, std) = if idx.len() == 1 {
            match opts.singleton {
                SingletonGroup::ZeroMeanUnitStd => (0.0, 1.0),
                SingletonGroup::OwnStats => (r[idx[0]], 0.0),
            }
        } else {
            let m = host::mean_of(r, &idx);
            (m, host::std_of(r, &idx, m, opts.unbiased_std))
        };
        for &i in &idx {
            let centred = r[i] - mean;
            adv[i] = match opts.scale {
                GroupScale::None => centred,
                GroupScale::Group => centred / (std + opts.epsilon),
                GroupScale::Batch => centred / (batch_std + opts.epsilon),
            };
        }
    }
    adv
}

/// Group ids for TRL's layout: rows are groups of `group_size` consecutive completions
/// (`num_generations`); `n` must be a multiple of it.
pub fn groups_of_consecutive(n: usize, group_size: usize) -> Result<Vec<usize>> {
    if group_size == 0 {
        return Err(MathError::InvalidInput(
            "num_generations must be at least 1".into(),
        ));
    }
    if !n.is_multiple_of(group_size) {
        return Err(MathError::Shape(format!(
            "{n} rewards are not a whole number of groups of {group_size} (num_generations)"
        )));
    }
    Ok((0..n).map(|i| i / group_size).collect())
}

/// TRL's `multi_objective_aggregation`: how several reward functions become one advantage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultiRewardAggregation {
    /// Weighted sum of the reward functions, then group normalisation with `scale_rewards`.
    SumThenNormalize,
    /// Each reward function group-normalised on its own (group std, ε 1e-4), weighted sum, then
    /// normalised over the whole batch (mean and std of all rows; `scale_rewards` is not used).
    NormalizeThenSum,
}

impl MultiRewardAggregation {
    /// The accepted TRL names.
    pub const NAMES: [&'static str; 2] = ["sum_then_normalize", "normalize_then_sum"];

    /// From TRL's `multi_objective_aggregation`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "sum_then_normalize" => Ok(Self::SumThenNormalize),
            "normalize_then_sum" => Ok(Self::NormalizeThenSum),
            other => Err(MathError::unknown(
                "multi_objective_aggregation",
                other,
                &Self::NAMES,
            )),
        }
    }
}

/// TRL's GRPO advantages from several reward functions: `rewards_per_func` `[N × K]`, `weights`
/// `[K]` (all 1 when `None`), `groups` as in [`group_normalized`] → `[N]` in the input's dtype.
/// ε is TRL's 1e-4 with Bessel's std throughout.
pub fn multi_reward_advantages(
    rewards_per_func: &Tensor,
    weights: Option<&[f64]>,
    groups: &[usize],
    scale: GroupScale,
    aggregation: MultiRewardAggregation,
) -> Result<Tensor> {
    let rows = host::vec2(rewards_per_func, "rewards_per_func")?;
    let n = rows.len();
    let k = rows.first().map_or(0, Vec::len);
    host::check_groups(groups, n)?;
    let ones = vec![1.0; k];
    let w = weights.unwrap_or(&ones);
    if w.len() != k {
        return Err(MathError::Shape(format!(
            "{} reward weights for {k} reward functions",
            w.len()
        )));
    }
    let adv = match aggregation {
        MultiRewardAggregation::SumThenNormalize => {
            let summed: Vec<f64> = rows
                .iter()
                .map(|row| row.iter().zip(w).map(|(r, w)| r * w).sum())
                .collect();
            group_normalized_host(&summed, groups, &GroupNormalization::trl(scale))
        }
        MultiRewardAggregation::NormalizeThenSum => {
            let per_group = GroupNormalization::trl(GroupScale::Group);
            let mut summed = vec![0.0; n];
            for (j, wj) in w.iter().enumerate() {
                let col: Vec<f64> = rows.iter().map(|row| row[j]).collect();
                let normed = group_normalized_host(&col, groups, &per_group);
                for (s, a) in summed.iter_mut().zip(normed) {
                    *s += a * wj;
                }
            }
            let one_group = vec![0; n];
            group_normalized_host(&summed, &one_group, &per_group)
        }
    };
    host::tensor1(adv, rewards_per_func)
}

/// verl's `grpo_vectorized` group statistics, reproduced exactly: the scores are cast to float32,
/// per-group sums of x and x² accumulated in float32, mean = s₁/n, variance (s₂ − s₁²/n)/(n − 1)
/// floored at `epsilon`, std = √variance (so std ≥ √ε); singletons get mean 0, std 1. The
/// advantage (score − mean)/(std + ε) (or score − mean without `norm_by_std`) is then formed in
/// f64 from the float32 statistics, as torch promotes it.
pub fn grpo_vectorized_scores(
    scores: &[f64],
    groups: &[usize],
    epsilon: f64,
    norm_by_std: bool,
) -> Result<Vec<f64>> {
    host::check_groups(groups, scores.len())?;
    let eps32 = epsilon as f32;
    let mut adv = vec![0.0; scores.len()];
    for idx in host::members(groups) {
        let count = idx.len() as f32;
        let (mut s1, mut s2) = (0f32, 0f32);
        for &i in &idx {
            let x = scores[i] as f32;
            s1 += x;
            s2 += x * x;
        }
        let (mean, std) = if idx.len() <= 1 {
            (0f32, 1f32)
        } else {
            let mean = s1 / count;
            let var = (s2 - (s1 * s1) / count) / (count - 1.0);
            (mean, var.max(eps32).sqrt())
        };
        for &i in &idx {
            let centred = scores[i] - mean as f64;
            adv[i] = if norm_by_std {
                centred / (std as f64 + epsilon)
            } else {
                centred
            };
        }
    }
    Ok(adv)
}

/// verl's `grpo` on `[B × T]` token rewards: each row's score (Σ_t of its rewards, every
/// position) group-normalised with `opts`, broadcast over the row × mask, in the rewards' dtype.
/// verl returns the same tensor as advantages and returns.
pub fn grpo_outcome(
    token_level_rewards: &Tensor,
    response_mask: &Tensor,
    groups: &[usize],
    opts: &GroupNormalization,
) -> Result<Tensor> {
    let (scores, mask) = host::outcome_scores(token_level_rewards, response_mask, groups)?;
    let adv = group_normalized_host(&scores, groups, opts);
    host::tensor2(host::broadcast_masked(&adv, &mask), token_level_rewards)
}

/// verl's `grpo_vectorized` on `[B × T]` token rewards: as [`grpo_outcome`] but with the float32
/// group statistics and variance floor of [`grpo_vectorized_scores`].
pub fn grpo_vectorized(
    token_level_rewards: &Tensor,
    response_mask: &Tensor,
    groups: &[usize],
    epsilon: f64,
    norm_by_std: bool,
) -> Result<Tensor> {
    let (scores, mask) = host::outcome_scores(token_level_rewards, response_mask, groups)?;
    let adv = grpo_vectorized_scores(&scores, groups, epsilon, norm_by_std)?;
    host::tensor2(host::broadcast_masked(&adv, &mask), token_level_rewards)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn t(v: &[f64]) -> Tensor {
        Tensor::from_vec(v.to_vec(), v.len(), &Device::Cpu).unwrap()
    }

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn trl_group_scale_by_hand() {
        // Group [1, 0]: mean 0.5, Bessel std √0.5 = 0.707107 → ±0.5 / (0.707107 + 1e-4).
        let a = group_normalized(
            &t(&[1.0, 0.0, 2.0, 2.0]),
            &[0, 0, 1, 1],
            &GroupNormalization::trl(GroupScale::Group),
        )
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
        let x = 0.5 / (0.5f64.sqrt() + 1e-4);
        close(&a, &[x, -x, 0.0, 0.0], 1e-12);
    }

    #[test]
    fn batch_scale_uses_group_mean_and_batch_std() {
        let r = [1.0, 0.0, 3.0, 3.0];
        let a = group_normalized(
            &t(&r),
            &[0, 0, 1, 1],
            &GroupNormalization::trl(GroupScale::Batch),
        )
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
        // Batch: mean 1.75, Σ(x−m)² = 0.5625 + 3.0625 + 2·1.5625 = 6.75, std = √(6.75/3) = 1.5.
        let x = 0.5 / (1.5 + 1e-4);
        close(&a, &[x, -x, 0.0, 0.0], 1e-12);
    }

    #[test]
    fn dr_grpo_only_centres() {
        let a = group_normalized(
            &t(&[0.25, 1.0, 0.0, 0.25]),
            &[0; 4],
            &GroupNormalization::trl(GroupScale::None),
        )
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
        close(&a, &[-0.125, 0.625, -0.375, -0.125], 1e-15);
    }

    #[test]
    fn singletons_differ_between_anchors() {
        let r = t(&[2.0, 1.0, 0.0]);
        let g = [0, 1, 1];
        let verl = group_normalized(&r, &g, &GroupNormalization::verl(true)).unwrap();
        let trl = group_normalized(&r, &g, &GroupNormalization::trl(GroupScale::Group)).unwrap();
        assert!((verl.to_vec1::<f64>().unwrap()[0] - 2.0 / (1.0 + 1e-6)).abs() < 1e-15);
        assert_eq!(trl.to_vec1::<f64>().unwrap()[0], 0.0);
    }

    #[test]
    fn keeps_f32() {
        let r = t(&[1.0, 0.0]).to_dtype(DType::F32).unwrap();
        let a = group_normalized(&r, &[0, 0], &GroupNormalization::verl(true)).unwrap();
        assert_eq!(a.dtype(), DType::F32);
    }

    #[test]
    fn consecutive_groups_and_errors() {
        assert_eq!(groups_of_consecutive(6, 3).unwrap(), vec![0, 0, 0, 1, 1, 1]);
        assert!(groups_of_consecutive(5, 2).is_err());
        assert!(groups_of_consecutive(4, 0).is_err());
        assert!(GroupScale::from_trl_name("std")
            .unwrap_err()
            .to_string()
            .contains("group, batch, none"));
        assert!(group_normalized(&t(&[1.0]), &[0, 0], &GroupNormalization::verl(true)).is_err());
        assert!(group_normalized(
            &t(&[f64::NAN, 1.0]),
            &[0, 0],
            &GroupNormalization::verl(true)
        )
        .is_err());
    }

    #[test]
    fn normalize_then_sum_by_hand() {
        // K = 2, one group of 2: each column normalises to ±0.5/(√0.5 + 1e-4) (or 0 when constant),
        // the weighted sum is then normalised over the batch.
        let rows = Tensor::from_vec(vec![1.0, 5.0, 0.0, 5.0], (2, 2), &Device::Cpu).unwrap();
        let a = multi_reward_advantages(
            &rows,
            None,
            &[0, 0],
            GroupScale::None,
            MultiRewardAggregation::NormalizeThenSum,
        )
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
        let x = 0.5 / (0.5f64.sqrt() + 1e-4);
        let s = (2.0 * x * x).sqrt(); // Bessel std of [x, −x]
        close(&a, &[x / (s + 1e-4), -x / (s + 1e-4)], 1e-12);
    }

    #[test]
    fn vectorized_floors_the_std() {
        // Two near-equal scores: variance below ε = 1e-6 → std = 1e-3.
        let a = grpo_vectorized_scores(&[0.5, 0.5005], &[0, 0], 1e-6, true).unwrap();
        assert!((a[1] - a[0] - 0.0005 / (1e-3 + 1e-6)).abs() < 1e-4);
        // Singleton: mean 0, std 1.
        let s = grpo_vectorized_scores(&[2.0], &[0], 1e-6, true).unwrap();
        assert!((s[0] - 2.0 / (1.0 + 1e-6)).abs() < 1e-12);
    }
}
