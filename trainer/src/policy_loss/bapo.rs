//! BAPO — adaptive asymmetric clipping (an oxrl extension), after "BAPO: Stabilizing Off-Policy
//! Reinforcement Learning for LLMs via Balanced Policy Optimization with Adaptive Clipping"
//! (Eq. 8 and Algorithm 1; authors' code github WooooDyy/BAPO, recipe/bapo/policy_loss.py).
//!
//! Before each update the raw ratio bounds [c_low, c_high] of the clipped surrogate move until
//! positive-advantage tokens carry a target share ρ₀ of the clipped objective. Per token,
//! e_t = min(r_t, c_high)·A_t for A_t ≥ 0 and max(r_t, c_low)·A_t for A_t < 0 (which is
//! min(r·A, clip(r, c_low, c_high)·A)); P = Σ_{A>0} w_t M_t e_t, N = Σ_{A<0} w_t M_t |e_t|,
//! ρ = P / (P + N). w_t is 1 (the authors' code) or π_rollout(y_t) (the paper's Eq. 8 weight).
//!
//! Two search orders ([`BapoOrder`]):
//! - `paper` (Alg. 1): while ρ < ρ₀ and c_low + δ_low ≤ b_low: raise c_high by δ_high if
//!   c_high + δ_high ≤ b_high, else raise c_low by δ_low.
//! - `code` (authors' implementation): raise c_low step by step up to b_low, then c_high up to
//!   b_high, stopping as soon as ρ ≥ ρ₀ (the code's P/N ≥ t is ρ ≥ t/(1 + t)).
//!
//! The loss is then −min(r·A, clip(r, c_low, c_high)·A) with the dual clip min(L, −3·A) for
//! A < 0 (the authors' code), aggregated token-mean. Defaults are the paper's (ρ₀ = 0.4,
//! c_low ∈ [0.6, 0.9] step 0.02, c_high ∈ [1.2, 3.0] step 0.05). The bounds found are the
//! state ([`BapoState`], serialisable, saved with the trainer's checkpoint): with `restart`
//! (the paper, default) each search starts again from (a_low, a_high); without it the search
//! starts from the previous bounds.

use crate::{MathError, Result};

/// The order in which the bounds move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BapoOrder {
    /// Algorithm 1 of the paper: c_high first, then c_low.
    #[default]
    Paper,
    /// The authors' code: c_low first, then c_high.
    Code,
}

/// BAPO's parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BapoConfig {
    /// Target positive share ρ₀ of the clipped objective.
    pub target_share: f64,
    /// Start a_low and limit b_low of c_low.
    pub low_range: [f64; 2],
    /// Start a_high and limit b_high of c_high.
    pub high_range: [f64; 2],
    /// Step δ_low of c_low.
    pub low_step: f64,
    /// Step δ_high of c_high.
    pub high_step: f64,
    /// Search order.
    pub order: BapoOrder,
    /// Restart from (a_low, a_high) at every update (the paper) instead of the previous bounds.
    pub restart: bool,
    /// Dual clip c for A < 0 (the authors' code: 3.0; `None` for none).
    pub dual_clip: Option<f64>,
    /// Weight tokens by π_rollout(y_t) in P and N (the paper's Eq. 8; needs rollout logprobs).
    pub weight_by_rollout_prob: bool,
}

impl Default for BapoConfig {
    fn default() -> Self {
        Self {
            target_share: 0.4,
            low_range: [0.6, 0.9],
            high_range: [1.2, 3.0],
            low_step: 0.02,
            high_step: 0.05,
            order: BapoOrder::Paper,
            restart: true,
            dual_clip: Some(3.0),
            weight_by_rollout_prob: false,
        }
    }
}

/// The bounds BAPO settled on, and the positive share they give (saved with checkpoints).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BapoState {
    /// Current lower ratio bound.
    pub c_low: f64,
    /// Current upper ratio bound.
    pub c_high: f64,
    /// ρ = P / (P + N) at these bounds on the last batch.
    pub positive_share: f64,
}

impl BapoState {
    /// The starting bounds of `cfg`.
    pub fn initial(cfg: &BapoConfig) -> Self {
        Self {
            c_low: cfg.low_range[0],
            c_high: cfg.high_range[0],
            positive_share: f64::NAN,
        }
    }
}

/// Slack for comparing accumulated steps with the limits (0.6 + 15·0.02 must reach 0.9).
const SLACK: f64 = 1e-9;

/// (P, N) at the given bounds over host vectors `ratio`, `adv`, `mask`, optional `weights`.
pub fn positive_negative(
    ratio: &[f64],
    adv: &[f64],
    mask: &[f64],
    weights: Option<&[f64]>,
    c_low: f64,
    c_high: f64,
) -> (f64, f64) {
    let (mut p, mut n) = (0.0, 0.0);
    for i in 0..ratio.len() {
        if mask[i] == 0.0 {
            continue;
        }
        let w = mask[i] * weights.map_or(1.0, |w| w[i]);
        let a = adv[i];
        if a > 0.0 {
            p += w * ratio[i].min(c_high) * a;
        } else if a < 0.0 {
            n += w * (ratio[i].max(c_low) * a).abs();
        }
    }
    (p, n)
}

fn share(p: f64, n: f64) -> f64 {
    if p + n > 0.0 {
        p / (p + n)
    } else {
        1.0
    }
}

/// Runs BAPO's search from `prev` (or from the start when `cfg.restart` or `prev` is `None`).
pub fn search(
    ratio: &[f64],
    adv: &[f64],
    mask: &[f64],
    weights: Option<&[f64]>,
    cfg: &BapoConfig,
    prev: Option<&BapoState>,
) -> Result<BapoState> {
    if ratio.len() != adv.len()
        || ratio.len() != mask.len()
        || weights.is_some_and(|w| w.len() != ratio.len())
    {
        return Err(MathError::Shape(
            "BAPO: ratio, advantages, mask and weights differ in length".into(),
        ));
    }
    if !(cfg.low_step > 0.0 && cfg.high_step > 0.0) {
        return Err(MathError::InvalidInput("BAPO: steps must be > 0".into()));
    }
    let start = match prev {
        Some(s) if !cfg.restart => *s,
        _ => BapoState::initial(cfg),
    };
    let (mut lo, mut hi) = (start.c_low, start.c_high);
    let rho = |lo: f64, hi: f64| {
        let (p, n) = positive_negative(ratio, adv, mask, weights, lo, hi);
        share(p, n)
    };
    let mut r = rho(lo, hi);
    let target = cfg.target_share;
    let [_, b_low] = cfg.low_range;
    let [_, b_high] = cfg.high_range;
    match cfg.order {
        BapoOrder::Paper => {
            while r < target && lo + cfg.low_step <= b_low + SLACK {
                if hi + cfg.high_step <= b_high + SLACK {
                    hi += cfg.high_step;
                } else {
                    lo += cfg.low_step;
                }
                r = rho(lo, hi);
            }
        }
        BapoOrder::Code => {
            while r < target && lo + cfg.low_step <= b_low + SLACK {
                lo += cfg.low_step;
                r = rho(lo, hi);
            }
            while r < target && hi + cfg.high_step <= b_high + SLACK {
                hi += cfg.high_step;
                r = rho(lo, hi);
            }
        }
    }
    Ok(BapoState {
        c_low: lo,
        c_high: hi,
        positive_share: r,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SEED-MECHANISMS §1: (r, A) = (1.5, +1), (1.3, +0.5), (0.5, −1.5), (1.0, −1).
    const R: [f64; 4] = [1.5, 1.3, 0.5, 1.0];
    const A: [f64; 4] = [1.0, 0.5, -1.5, -1.0];
    const M: [f64; 4] = [1.0; 4];

    fn paper() -> BapoConfig {
        BapoConfig {
            target_share: 0.5,
            ..BapoConfig::default()
        }
    }

    #[test]
    fn start_of_the_worked_example() {
        let (p, n) = positive_negative(&R, &A, &M, None, 0.6, 1.2);
        assert!((p - 1.8).abs() < 1e-12 && (n - 1.9).abs() < 1e-12);
        assert!((share(p, n) - 0.486486).abs() < 1e-6);
        let (p, n) = positive_negative(&R, &A, &M, None, 0.6, 1.25);
        assert!((p - 1.875).abs() < 1e-12);
        assert!((share(p, n) - 0.496689).abs() < 1e-6);
    }

    #[test]
    fn paper_rule_stops_at_0_6_and_1_30() {
        let s = search(&R, &A, &M, None, &paper(), None).unwrap();
        assert!(
            (s.c_low - 0.6).abs() < 1e-9 && (s.c_high - 1.30).abs() < 1e-9,
            "{s:?}"
        );
        assert!((s.positive_share - 0.506494).abs() < 1e-6);
    }

    #[test]
    fn code_rule_ends_at_its_limits_without_meeting_the_target() {
        let cfg = BapoConfig {
            target_share: 0.5, // P/N ≥ 1
            low_range: [0.6, 0.8],
            high_range: [1.2, 2.0],
            low_step: 0.05,
            high_step: 0.05,
            order: BapoOrder::Code,
            ..BapoConfig::default()
        };
        let s = search(&R, &A, &M, None, &cfg, None).unwrap();
        assert!(
            (s.c_low - 0.8).abs() < 1e-9 && (s.c_high - 2.0).abs() < 1e-9,
            "{s:?}"
        );
        let (p, n) = positive_negative(&R, &A, &M, None, s.c_low, s.c_high);
        assert!((p / n - 0.977273).abs() < 1e-6);
    }

    #[test]
    fn state_round_trips_and_warm_start_continues() {
        let s = search(&R, &A, &M, None, &paper(), None).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        let back: BapoState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let warm = BapoConfig {
            restart: false,
            ..paper()
        };
        let again = search(&R, &A, &M, None, &warm, Some(&back)).unwrap();
        assert_eq!((again.c_low, again.c_high), (s.c_low, s.c_high));
    }
}
