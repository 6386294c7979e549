//! Optimal token baselines (verl's `optimal_token_baseline` and `tir_optimal_token_baseline`): a
//! per-timestep baseline B_t = Σ_i G_{i,t}·W_{i,t} / (Σ_i W_{i,t} + ε) over the completions i of a
//! group, where G is the reward-to-go and W_t = Σ_{j ≤ t} w_j the cumulative path-variance proxy
//! with w_j = 1 − 2π_j + Σπ² (π_j = exp(old log-prob), Σπ² = `sum_pi_squared`), optionally scaled by
//! ρ̄_j² (`rollout_is_weights`). A group of one has baseline 0. Advantages = (G − B)·mask.
//!
//! - `optimal_token_baseline` aligns the completions by absolute position t;
//! - `tir_optimal_token_baseline` (multi-turn / tool-integrated) first packs each row's valid
//!   tokens to the front (observation tokens in between are skipped) and aligns by the k-th valid
//!   token; rows without valid tokens get 0.
//!
//! `handle_zero_tail`: when exactly one completion of a group is the longest, its baseline is 0
//! from the second-longest length on (nothing to compare against there). verl's defaults: off for
//! `optimal_token_baseline`, on for `tir_optimal_token_baseline`; ε = 1e-8.

use candle_core::Tensor;

use super::host;
use crate::{MathError, Result};

/// How completions of a group are aligned when forming the per-step baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAlignment {
    /// By absolute position (verl `optimal_token_baseline`).
    Position,
    /// By the index among the row's valid tokens (verl `tir_optimal_token_baseline`).
    ValidToken,
}

/// Options of [`optimal_token_baseline`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimalBaselineOptions {
    /// How completions are aligned.
    pub alignment: TokenAlignment,
    /// Zero the baseline of a group's unique longest completion past the second-longest length.
    pub handle_zero_tail: bool,
    /// Added to the denominator.
    pub epsilon: f64,
}

impl OptimalBaselineOptions {
    /// verl `optimal_token_baseline`'s defaults (position alignment, no zero tail, ε 1e-8).
    pub fn verl_otb() -> Self {
        Self {
            alignment: TokenAlignment::Position,
            handle_zero_tail: false,
            epsilon: 1e-8,
        }
    }

    /// verl `tir_optimal_token_baseline`'s defaults (valid-token alignment, zero tail, ε 1e-8).
    pub fn verl_tir() -> Self {
        Self {
            alignment: TokenAlignment::ValidToken,
            handle_zero_tail: true,
            epsilon: 1e-8,
        }
    }
}

/// Optimal-token-baseline `(advantages, returns)`, `[B × T]` each, in the rewards' dtype.
/// `old_log_probs`, `sum_pi_squared` and `rollout_is_weights` are `[B × T]`.
pub fn optimal_token_baseline(
    token_level_rewards: &Tensor,
    response_mask: &Tensor,
    groups: &[usize],
    old_log_probs: &Tensor,
    sum_pi_squared: &Tensor,
    rollout_is_weights: Option<&Tensor>,
    opts: &OptimalBaselineOptions,
) -> Result<(Tensor, Tensor)> {
    let like = token_level_rewards;
    let rewards = host::vec2(like, "token_level_rewards")?;
    let mask = host::vec2_like(response_mask, like, "response_mask")?;
    let old = host::vec2_like(old_log_probs, like, "old_log_probs")?;
    let spp = host::vec2_like(sum_pi_squared, like, "sum_pi_squared")?;
    let isw = match rollout_is_weights {
        Some(w) => Some(host::vec2_like(w, like, "rollout_is_weights")?),
        None => None,
    };
    host::check_groups(groups, rewards.len())?;
    let returns = host::reward_to_go(&rewards, &mask);
    // W_t: cumulative Σ_{j ≤ t} w_j·m_j.
    let w_cum: Vec<Vec<f64>> = (0..rewards.len())
        .map(|i| {
            let mut acc = 0.0;
            (0..rewards[i].len())
                .map(|t| {
                    let mut w = 1.0 - 2.0 * old[i][t].exp() + spp[i][t];
                    if let Some(isw) = &isw {
                        w *= isw[i][t] * isw[i][t];
                    }
                    acc += w * mask[i][t];
                    acc
                })
                .collect()
        })
        .collect();
    let adv = match opts.alignment {
        TokenAlignment::Position => by_position(&returns, &w_cum, &mask, groups, opts),
        TokenAlignment::ValidToken => by_valid_token(&returns, &w_cum, &mask, groups, opts)?,
    };
    Ok((host::tensor2(adv, like)?, host::tensor2(returns, like)?))
}

fn lengths(mask: &[Vec<f64>], idx: &[usize]) -> Vec<f64> {
    idx.iter().map(|&i| mask[i].iter().sum()).collect()
}

/// For `handle_zero_tail`: the group member that is the unique longest, and the second-longest
/// length, if the longest is strictly longer.
fn unique_longest(lens: &[f64]) -> Option<(usize, usize)> {
    let mut sorted = lens.to_vec();
    sorted.sort_by(f64::total_cmp);
    let max = *sorted.last()?;
    let second = sorted[sorted.len().checked_sub(2)?];
    let at_max: Vec<usize> = (0..lens.len()).filter(|&k| lens[k] == max).collect();
    (at_max.len() == 1 && max > second).then(|| (at_max[0], second as usize))
}

fn by_position(
    returns: &[Vec<f64>],
    w_cum: &[Vec<f64>],
    mask: &[Vec<f64>],
    groups: &[usize],
    opts: &OptimalBaselineOptions,
) -> Vec<Vec<f64>> {
    let t_len = returns.first().map_or(0, Vec::len);
    let mut baselines = vec![vec![0.0; t_len]; returns.len()];
    for idx in host::members(groups) {
        if idx.len() == 1 {
            continue;
        }
        let per_step: Vec<f64> = (0..t_len)
            .map(|t| {
                let num: f64 = idx
                    .iter()
                    .map(|&i| returns[i][t] * w_cum[i][t] * mask[i][t])
                    .sum();
                let den: f64 = idx.iter().map(|&i| w_cum[i][t] * mask[i][t]).sum();
                num / (den + opts.epsilon)
            })
            .collect();
        for &i in &idx {
            baselines[i].clone_from(&per_step);
        }
        if opts.handle_zero_tail {
            if let Some((k, second)) = unique_longest(&lengths(mask, &idx)) {
                for b in baselines[idx[k]].iter_mut().skip(second) {
                    *b = 0.0;
                }
            }
        }
    }
    (0..returns.len())
        .map(|i| {
            (0..t_len)
                .map(|t| (returns[i][t] - baselines[i][t]) * mask[i][t])
                .collect()
        })
        .collect()
}

fn by_valid_token(
    returns: &[Vec<f64>],
    w_cum: &[Vec<f64>],
    mask: &[Vec<f64>],
    groups: &[usize],
    opts: &OptimalBaselineOptions,
) -> Result<Vec<Vec<f64>>> {
    let t_len = returns.first().map_or(0, Vec::len);
    // Pack each row's valid positions to the front.
    let mut positions: Vec<Vec<usize>> = Vec::with_capacity(returns.len());
    for (i, m) in mask.iter().enumerate() {
        if m.iter().any(|&x| x != 0.0 && x != 1.0) {
            return Err(MathError::InvalidInput(format!(
                "response_mask row {i}: tir_optimal_token_baseline needs a 0/1 mask"
            )));
        }
        positions.push((0..t_len).filter(|&t| m[t] != 0.0).collect());
    }
    let l_max = positions.iter().map(Vec::len).max().unwrap_or(0);
    let packed = |src: &[Vec<f64>], i: usize| -> Vec<f64> {
        let mut out = vec![0.0; l_max];
        for (k, &t) in positions[i].iter().enumerate() {
            out[k] = src[i][t];
        }
        out
    };
    let w_p: Vec<Vec<f64>> = (0..returns.len()).map(|i| packed(w_cum, i)).collect();
    let r_p: Vec<Vec<f64>> = (0..returns.len()).map(|i| packed(returns, i)).collect();
    let non_empty: Vec<usize> = (0..returns.len())
        .filter(|&i| !positions[i].is_empty())
        .collect();
    let kept_groups: Vec<usize> = non_empty.iter().map(|&i| groups[i]).collect();
    let mut baselines = vec![vec![0.0; l_max]; returns.len()];
    for local in host::members(&kept_groups) {
        let idx: Vec<usize> = local.iter().map(|&k| non_empty[k]).collect();
        if idx.len() == 1 {
            continue;
        }
        let b_star: Vec<f64> = (0..l_max)
            .map(|k| {
                let num: f64 = idx.iter().map(|&i| r_p[i][k] * w_p[i][k]).sum();
                let den: f64 = idx.iter().map(|&i| w_p[i][k]).sum();
                num / (den + opts.epsilon)
            })
            .collect();
        for &i in &idx {
            baselines[i].clone_from(&b_star);
        }
        if opts.handle_zero_tail {
            let lens: Vec<f64> = idx.iter().map(|&i| positions[i].len() as f64).collect();
            if let Some((k, second)) = unique_longest(&lens) {
                for b in baselines[idx[k]].iter_mut().skip(second) {
                    *b = 0.0;
                }
            }
        }
    }
    let mut adv = vec![vec![0.0; t_len]; returns.len()];
    for i in 0..returns.len() {
        for (k, &t) in positions[i].iter().enumerate() {
            adv[i][t] = (r_p[i][k] - baselines[i][k]) * mask[i][t];
        }
    }
    Ok(adv)
}
