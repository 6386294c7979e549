//! GPG (Group Policy Gradient, Chu et al. 2025, arXiv:2504.02546), as verl's `gpg` estimator:
//! α·(score − group mean)/f_norm with α = B / max(#rows with a non-zero score, 1) (the
//! "valid-sample" rescaling; it replaces any α given). A group of one has mean 0. No std division.

use candle_core::Tensor;

use super::host;
use crate::Result;

/// GPG advantages `[B × T]` (broadcast × mask), in the rewards' dtype; verl returns the same
/// tensor as advantages and returns. `f_norm` is verl's (default 1).
pub fn gpg(
    token_level_rewards: &Tensor,
    response_mask: &Tensor,
    groups: &[usize],
    f_norm: f64,
) -> Result<Tensor> {
    let (scores, mask) = host::outcome_scores(token_level_rewards, response_mask, groups)?;
    let b = scores.len() as f64;
    let nonzero = scores.iter().filter(|&&s| s != 0.0).count().max(1) as f64;
    let alpha = b / nonzero;
    let mut adv = vec![0.0; scores.len()];
    for idx in host::members(groups) {
        let mean = if idx.len() == 1 {
            0.0
        } else {
            host::mean_of(&scores, &idx)
        };
        for &i in &idx {
            adv[i] = alpha * (scores[i] - mean) / f_norm;
        }
    }
    host::tensor2(host::broadcast_masked(&adv, &mask), token_level_rewards)
}
