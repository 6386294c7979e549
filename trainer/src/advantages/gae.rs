//! Generalised Advantage Estimation (Schulman et al. 2015, arXiv:1506.02438) as verl's `gae`:
//! δ_t = r_t + γ·V_{t+1} − V_t and A_t = δ_t + γλ·A_{t+1}, walking backwards; at positions where
//! the mask is 0 (observation tokens in multi-turn rollouts, padding) neither the value nor the
//! running advantage is updated, so the recursion skips them. Returns = A + V (before
//! whitening); the advantages are then whitened over the valid tokens (verl's `masked_whiten`).

use candle_core::Tensor;

use super::host;
use crate::Result;

/// GAE `(advantages, returns)`, `[B × T]` each, in the rewards' dtype. `values` `[B × T]`.
pub fn gae(
    token_level_rewards: &Tensor,
    values: &Tensor,
    response_mask: &Tensor,
    gamma: f64,
    lam: f64,
) -> Result<(Tensor, Tensor)> {
    let rewards = host::vec2(token_level_rewards, "token_level_rewards")?;
    let vals = host::vec2_like(values, token_level_rewards, "values")?;
    let mask = host::vec2_like(response_mask, token_level_rewards, "response_mask")?;
    let mut adv = Vec::with_capacity(rewards.len());
    let mut returns = Vec::with_capacity(rewards.len());
    for ((r, v), m) in rewards.iter().zip(&vals).zip(&mask) {
        let n = r.len();
        let mut a = vec![0.0; n];
        let (mut next_value, mut last) = (0.0, 0.0);
        for t in (0..n).rev() {
            let delta = r[t] + gamma * next_value - v[t];
            let candidate = delta + gamma * lam * last;
            next_value = v[t] * m[t] + (1.0 - m[t]) * next_value;
            last = candidate * m[t] + (1.0 - m[t]) * last;
            a[t] = last;
        }
        returns.push(a.iter().zip(v).map(|(a, v)| a + v).collect::<Vec<f64>>());
        adv.push(a);
    }
    let white = host::whiten(&adv, &mask)?;
    Ok((
        host::tensor2(white, token_level_rewards)?,
        host::tensor2(returns, token_level_rewards)?,
    ))
}
