//! RLOO (REINFORCE leave-one-out, Ahmadian et al. 2024, arXiv:2402.14740): each completion's score
//! minus the mean of the *other* completions of its group, n/(n−1)·(score − group mean).
//!
//! verl has two implementations that differ on groups of one completion, both offered:
//! - [`SingletonRloo::RawScore`] (verl `rloo`): the advantage is the raw score;
//! - [`SingletonRloo::Zero`] (verl `rloo_vectorized`): the advantage is 0.

use candle_core::Tensor;

use super::host;
use crate::Result;

/// What a group of one completion gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SingletonRloo {
    /// The raw score (verl `rloo`).
    RawScore,
    /// Zero (verl `rloo_vectorized`).
    Zero,
}

/// RLOO advantages: `token_level_rewards` `[B × T]` (summed per row into the score),
/// `response_mask` `[B × T]`, `groups` one id per row → `[B × T]` (score broadcast × mask), in the
/// rewards' dtype. verl returns the same tensor as advantages and returns.
pub fn rloo(
    token_level_rewards: &Tensor,
    response_mask: &Tensor,
    groups: &[usize],
    singleton: SingletonRloo,
) -> Result<Tensor> {
    let (scores, mask) = host::outcome_scores(token_level_rewards, response_mask, groups)?;
    let mut adv = vec![0.0; scores.len()];
    for idx in host::members(groups) {
        let n = idx.len();
        if n == 1 {
            adv[idx[0]] = match singleton {
                SingletonRloo::RawScore => scores[idx[0]],
                SingletonRloo::Zero => 0.0,
            };
            continue;
        }
        let nf = n as f64;
        match singleton {
            SingletonRloo::RawScore => {
                let mean = host::mean_of(&scores, &idx);
                for &i in &idx {
                    adv[i] = scores[i] * nf / (nf - 1.0) - mean * nf / (nf - 1.0);
                }
            }
            SingletonRloo::Zero => {
                let sum: f64 = idx.iter().map(|&i| scores[i]).sum();
                for &i in &idx {
                    adv[i] = (nf * scores[i] - sum) / (nf - 1.0);
                }
            }
        }
    }
    host::tensor2(host::broadcast_masked(&adv, &mask), token_level_rewards)
}
