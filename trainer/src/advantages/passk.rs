//! Pass@k advantages (`grpo_passk`; Chen et al., arXiv:2503.19595), as verl computes them: in each
//! group only the best completion gets a non-zero advantage, r_max − r_second_max, optionally
//! divided by (group std + ε) (Bessel std). Every group needs at least two completions.

use candle_core::Tensor;

use super::host;
use crate::{MathError, Result};

/// Pass@k advantages `[B × T]` (broadcast × mask), in the rewards' dtype; verl returns the same
/// tensor as advantages and returns. On ties for the maximum the first row gets the (zero) value.
pub fn grpo_passk(
    token_level_rewards: &Tensor,
    response_mask: &Tensor,
    groups: &[usize],
    epsilon: f64,
    norm_by_std: bool,
) -> Result<Tensor> {
    let (scores, mask) = host::outcome_scores(token_level_rewards, response_mask, groups)?;
    let mut adv = vec![0.0; scores.len()];
    for idx in host::members(groups) {
        if idx.len() < 2 {
            return Err(MathError::InvalidInput(format!(
                "grpo_passk needs at least 2 completions per group; row {} is alone in its group",
                idx[0]
            )));
        }
        let mut i_max = idx[0];
        for &i in &idx[1..] {
            if scores[i] > scores[i_max] {
                i_max = i;
            }
        }
        let second = idx
            .iter()
            .filter(|&&i| i != i_max)
            .map(|&i| scores[i])
            .fold(f64::NEG_INFINITY, f64::max);
        let mut a = scores[i_max] - second;
        if norm_by_std {
            let mean = host::mean_of(&scores, &idx);
            a /= host::std_of(&scores, &idx, mean, true) + epsilon;
        }
        adv[i_max] = a;
    }
    host::tensor2(host::broadcast_masked(&adv, &mask), token_level_rewards)
}
