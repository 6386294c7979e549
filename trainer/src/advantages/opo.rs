//! OPO (On-Policy RL with Optimal reward baseline, arXiv:2505.23585): the baseline of a group is
//! the length-weighted mean score Σ |o_j|·R_j / Σ |o_j| (|o| = valid tokens of the completion);
//! a group of one has baseline 0. As verl's `opo`.

use candle_core::Tensor;

use super::host;
use crate::Result;

/// OPO advantages `[B × T]` (score − length-weighted group mean, broadcast × mask), in the
/// rewards' dtype; verl returns the same tensor as advantages and returns.
pub fn opo(
    token_level_rewards: &Tensor,
    response_mask: &Tensor,
    groups: &[usize],
) -> Result<Tensor> {
    let (scores, mask) = host::outcome_scores(token_level_rewards, response_mask, groups)?;
    let lens: Vec<f64> = mask.iter().map(|m| m.iter().sum()).collect();
    let mut adv = vec![0.0; scores.len()];
    for idx in host::members(groups) {
        let baseline = if idx.len() == 1 {
            0.0
        } else {
            let num: f64 = idx.iter().map(|&i| lens[i] * scores[i]).sum();
            let den: f64 = idx.iter().map(|&i| lens[i]).sum();
            num / den
        };
        for &i in &idx {
            adv[i] = scores[i] - baseline;
        }
    }
    host::tensor2(host::broadcast_masked(&adv, &mask), token_level_rewards)
}
