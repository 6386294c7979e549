//! ReMax (Li et al. 2023, arXiv:2310.10505): the baseline is the reward of the greedy completion of
//! the same prompt (`reward_baselines`, one per row). Advantages = reward-to-go − baseline on the
//! valid tokens; returns = reward-to-go. As verl's `remax`.

use candle_core::Tensor;

use super::host;
use crate::{MathError, Result};

/// ReMax `(advantages, returns)`, `[B × T]` each, in the rewards' dtype; `reward_baselines` `[B]`.
pub fn remax(
    token_level_rewards: &Tensor,
    response_mask: &Tensor,
    reward_baselines: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let rewards = host::vec2(token_level_rewards, "token_level_rewards")?;
    let mask = host::vec2_like(response_mask, token_level_rewards, "response_mask")?;
    let base = host::vec1(reward_baselines, "reward_baselines")?;
    if base.len() != rewards.len() {
        return Err(MathError::Shape(format!(
            "reward_baselines has {} entries for {} rows",
            base.len(),
            rewards.len()
        )));
    }
    let returns = host::reward_to_go(&rewards, &mask);
    let adv: Vec<Vec<f64>> = returns
        .iter()
        .zip(&mask)
        .zip(&base)
        .map(|((g, m), b)| g.iter().zip(m).map(|(g, mt)| g - b * mt).collect())
        .collect();
    Ok((
        host::tensor2(adv, token_level_rewards)?,
        host::tensor2(returns, token_level_rewards)?,
    ))
}
