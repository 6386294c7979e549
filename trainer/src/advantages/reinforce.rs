//! REINFORCE++ (Hu 2025, arXiv:2501.03262), as verl computes it:
//! - [`reinforce_plus_plus`]: discounted reward-to-go per token (γ; the running return restarts
//!   wherever the mask is 0), whitened over the batch's valid tokens, × mask;
//! - [`reinforce_plus_plus_baseline`]: each completion's score minus its group mean (a group of
//!   one keeps its score), broadcast over the tokens, whitened over the batch, × mask.
//!
//! Whitening is verl's `masked_whiten` ([`crate::masked::masked_whiten`]: unbiased variance,
//! `rsqrt(var + 1e-8)`), so it needs at least two valid tokens in the batch.

use candle_core::Tensor;

use super::host;
use crate::Result;

/// REINFORCE++ advantages and returns `[B × T]` in the rewards' dtype: `(advantages, returns)`.
pub fn reinforce_plus_plus(
    token_level_rewards: &Tensor,
    response_mask: &Tensor,
    gamma: f64,
) -> Result<(Tensor, Tensor)> {
    let rewards = host::vec2(token_level_rewards, "token_level_rewards")?;
    let mask = host::vec2_like(response_mask, token_level_rewards, "response_mask")?;
    let returns: Vec<Vec<f64>> = rewards
        .iter()
        .zip(&mask)
        .map(|(r, m)| {
            let mut out = vec![0.0; r.len()];
            let mut running = 0.0;
            for t in (0..r.len()).rev() {
                running = r[t] + gamma * running;
                out[t] = running;
                running *= m[t];
            }
            out
        })
        .collect();
    let adv = mask_rows(host::whiten(&returns, &mask)?, &mask);
    Ok((
        host::tensor2(adv, token_level_rewards)?,
        host::tensor2(returns, token_level_rewards)?,
    ))
}

/// REINFORCE++ with a group-mean baseline: `[B × T]` in the rewards' dtype (verl returns it as
/// both advantages and returns).
pub fn reinforce_plus_plus_baseline(
    token_level_rewards: &Tensor,
    response_mask: &Tensor,
    groups: &[usize],
) -> Result<Tensor> {
    let (scores, mask) = host::outcome_scores(token_level_rewards, response_mask, groups)?;
    let mut centred = vec![0.0; scores.len()];
    for idx in host::members(groups) {
        let mean = if idx.len() == 1 {
            0.0
        } else {
            host::mean_of(&scores, &idx)
        };
        for &i in &idx {
            centred[i] = scores[i] - mean;
        }
    }
    let tiled = host::broadcast_masked(&centred, &mask);
    let adv = mask_rows(host::whiten(&tiled, &mask)?, &mask);
    host::tensor2(adv, token_level_rewards)
}

fn mask_rows(mut rows: Vec<Vec<f64>>, mask: &[Vec<f64>]) -> Vec<Vec<f64>> {
    for (r, m) in rows.iter_mut().zip(mask) {
        for (x, mt) in r.iter_mut().zip(m) {
            *x *= mt;
        }
    }
    rows
}
