//! KL in the reward: per-token rewards shaped by the KL between the rollout policy and the
//! reference, r_t = score_t − β · KL_t, for PPO / REINFORCE++-style training where the penalty
//! enters the returns instead of the loss.
//!
//! [`compute_rewards`] is verl's `core_algos.compute_rewards` (k1, no mask). [`apply_kl_penalty`]
//! is what verl's trainer does with `use_kl_in_reward` (`ray_trainer.apply_kl_penalty`): any
//! estimator, the KL zeroed outside the mask, and the batch KL the controller is fed (per-sequence
//! masked means, averaged over sequences).

use candle_core::{DType, Tensor};

use super::{kl_estimate, KlEstimator};
use crate::masked::{mask_row_counts, masked_row_sum, select};
use crate::{MathError, Result};

/// verl `compute_rewards`: `token_level_scores − kl_ratio · (old_log_prob − ref_log_prob)`.
pub fn compute_rewards(
    token_level_scores: &Tensor,
    old_log_prob: &Tensor,
    ref_log_prob: &Tensor,
    kl_ratio: f64,
) -> Result<Tensor> {
    same_shape(token_level_scores, old_log_prob, "old_log_prob")?;
    same_shape(token_level_scores, ref_log_prob, "ref_log_prob")?;
    let kl = kl_estimate(old_log_prob, ref_log_prob, KlEstimator::K1)?;
    Ok((token_level_scores - (kl * kl_ratio)?)?)
}

/// The outcome of [`apply_kl_penalty`].
#[derive(Debug, Clone)]
pub struct KlShapedRewards {
    /// score − β · KL, `[B × T]` (outside the mask: the score itself).
    pub token_level_rewards: Tensor,
    /// The masked KL per token, `[B × T]` (0 outside the mask).
    pub kl: Tensor,
    /// Mean over sequences of each sequence's masked mean KL (verl's Σ/(n + 1e-8) per row): the
    /// value to feed [`super::controller::KlController::update`].
    pub current_kl: f64,
}

/// KL in the reward with estimator `estimator` and coefficient `beta` (verl `apply_kl_penalty`).
pub fn apply_kl_penalty(
    token_level_scores: &Tensor,
    old_log_prob: &Tensor,
    ref_log_prob: &Tensor,
    response_mask: &Tensor,
    estimator: KlEstimator,
    beta: f64,
) -> Result<KlShapedRewards> {
    same_shape(token_level_scores, old_log_prob, "old_log_prob")?;
    same_shape(token_level_scores, ref_log_prob, "ref_log_prob")?;
    same_shape(token_level_scores, response_mask, "response_mask")?;
    let mask = response_mask.to_dtype(token_level_scores.dtype())?;
    let kl = kl_estimate(old_log_prob, ref_log_prob, estimator)?;
    let kl = (select(&kl, &mask)? * &mask)?;
    let rewards = (token_level_scores - (&kl * beta)?)?;
    let sums = masked_row_sum(&kl, &mask)?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    let counts = mask_row_counts(&mask)?;
    let rows = sums.len().max(1) as f64;
    let current_kl = sums
        .iter()
        .zip(&counts)
        .map(|(s, n)| s / (n + 1e-8))
        .sum::<f64>()
        / rows;
    Ok(KlShapedRewards {
        token_level_rewards: rewards,
        kl,
        current_kl,
    })
}

fn same_shape(a: &Tensor, b: &Tensor, name: &str) -> Result<()> {
    if a.dims() == b.dims() {
        Ok(())
    } else {
        Err(MathError::Shape(format!(
            "{name} {:?} vs token_level_scores {:?}",
            b.dims(),
            a.dims()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn rewards_by_hand() {
        let d = Device::Cpu;
        let s = Tensor::new(&[[0.0f64, 1.0], [0.0, 2.0]], &d).unwrap();
        let old = Tensor::new(&[[-1.0f64, -2.0], [-0.5, -0.5]], &d).unwrap();
        let rf = Tensor::new(&[[-1.5f64, -1.0], [-0.5, -3.0]], &d).unwrap();
        let r = compute_rewards(&s, &old, &rf, 0.1).unwrap();
        let r = r.to_vec2::<f64>().unwrap();
        assert!((r[0][0] - (-0.05)).abs() < 1e-15);
        assert!((r[0][1] - 1.1).abs() < 1e-15);
        assert!((r[1][1] - 1.75).abs() < 1e-15);

        let m = Tensor::new(&[[1.0f64, 1.0], [1.0, 0.0]], &d).unwrap();
        let out = apply_kl_penalty(&s, &old, &rf, &m, KlEstimator::K1, 0.1).unwrap();
        let r = out.token_level_rewards.to_vec2::<f64>().unwrap();
        assert!(
            (r[1][1] - 2.0).abs() < 1e-15,
            "masked position keeps its score"
        );
        // row 0: (0.5 − 1.0)/2 = −0.25; row 1: 0/1 = 0 → mean −0.125
        assert!((out.current_kl - (-0.125)).abs() < 1e-8);
    }
}
