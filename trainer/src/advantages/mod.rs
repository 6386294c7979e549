//! Advantage estimators: from rewards (and, for some, values or log-probabilities) to the
//! per-token advantages the policy loss weighs.
//!
//! Every estimator takes and returns candle tensors of any float dtype (f32, f64, bf16 …) and
//! returns the input's dtype and device. Advantages are not differentiated, so each computes on
//! the host in f64 and converts back. One module per family:
//!
//! - [`grpo`]: group normalisation (GRPO; Dr. GRPO with no std; TRL's batch std; TRL multi-reward
//!   aggregation; verl `grpo` and `grpo_vectorized`);
//! - [`rloo`], [`opo`], [`gpg`], [`passk`] (`grpo_passk`), [`remax`]: other outcome baselines;
//! - [`reinforce`]: REINFORCE++ and REINFORCE++ with a group baseline;
//! - [`optimal_baseline`]: verl's optimal token baselines;
//! - [`gae`]: generalised advantage estimation with a critic;
//! - [`bnpo`]: Beta-normalised advantages (oxrl extension, the BNPO paper).
//!
//! [`AdvantageEstimator`] names them all for a config (the oxrl names are verl's, plus `bnpo`) and
//! [`compute_advantages`] is the one entry point the training loop calls.

mod host;

pub mod bnpo;
pub mod gae;
pub mod gpg;
pub mod grpo;
pub mod opo;
pub mod optimal_baseline;
pub mod passk;
pub mod reinforce;
pub mod remax;
pub mod rloo;

use candle_core::Tensor;

pub use bnpo::{bnpo, bnpo_decomposed, BnpoOptions};
pub use gae::gae;
pub use gpg::gpg;
pub use grpo::{
    group_normalized, groups_of_consecutive, grpo_outcome, grpo_vectorized,
    multi_reward_advantages, GroupNormalization, GroupScale, MultiRewardAggregation,
    SingletonGroup,
};
pub use opo::opo;
pub use optimal_baseline::{optimal_token_baseline, OptimalBaselineOptions, TokenAlignment};
pub use passk::grpo_passk;
pub use reinforce::{reinforce_plus_plus, reinforce_plus_plus_baseline};
pub use remax::remax;
pub use rloo::{rloo, SingletonRloo};

use crate::{MathError, Result};

/// An advantage estimator, by the name a config gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvantageEstimator {
    /// `gae`: GAE with a critic (needs `values`).
    Gae,
    /// `grpo`: group mean/std normalisation (verl's loop; ε, std choice in the options).
    Grpo,
    /// `grpo_vectorized`: verl's float32 group statistics with the std floor √ε.
    GrpoVectorized,
    /// `grpo_passk`: only the best of each group gets r_max − r_second.
    GrpoPassk,
    /// `rloo`: leave-one-out baseline; a singleton keeps its score.
    Rloo,
    /// `rloo_vectorized`: leave-one-out baseline; a singleton gets 0.
    RlooVectorized,
    /// `opo`: length-weighted group-mean baseline.
    Opo,
    /// `reinforce_plus_plus`: discounted return, whitened over the batch.
    ReinforcePlusPlus,
    /// `reinforce_plus_plus_baseline`: group-mean baseline, whitened over the batch.
    ReinforcePlusPlusBaseline,
    /// `remax`: greedy-completion baseline (needs `reward_baselines`).
    Remax,
    /// `gpg`: group-mean baseline rescaled by B / #non-zero scores.
    Gpg,
    /// `optimal_token_baseline`: per-position optimal baseline (needs log-probs and Σπ²).
    OptimalTokenBaseline,
    /// `tir_optimal_token_baseline`: the same aligned by valid-token index (multi-turn).
    TirOptimalTokenBaseline,
    /// `bnpo`: Beta-normalised advantages (oxrl extension; not TRL's `bnpo` loss aggregation).
    Bnpo,
}

impl AdvantageEstimator {
    /// Every accepted name, in the order of the enum.
    pub const NAMES: [&'static str; 14] = [
        "gae",
        "grpo",
        "grpo_vectorized",
        "grpo_passk",
        "rloo",
        "rloo_vectorized",
        "opo",
        "reinforce_plus_plus",
        "reinforce_plus_plus_baseline",
        "remax",
        "gpg",
        "optimal_token_baseline",
        "tir_optimal_token_baseline",
        "bnpo",
    ];

    const ALL: [AdvantageEstimator; 14] = [
        Self::Gae,
        Self::Grpo,
        Self::GrpoVectorized,
        Self::GrpoPassk,
        Self::Rloo,
        Self::RlooVectorized,
        Self::Opo,
        Self::ReinforcePlusPlus,
        Self::ReinforcePlusPlusBaseline,
        Self::Remax,
        Self::Gpg,
        Self::OptimalTokenBaseline,
        Self::TirOptimalTokenBaseline,
        Self::Bnpo,
    ];

    /// The oxrl name (the same as verl's `adv_estimator`, plus `bnpo`).
    pub fn name(self) -> &'static str {
        let k = Self::ALL.iter().position(|&e| e == self).unwrap_or(0);
        Self::NAMES[k]
    }

    /// From an oxrl name; an unknown name is an error listing the accepted ones.
    pub fn from_name(name: &str) -> Result<Self> {
        Self::NAMES
            .iter()
            .position(|&n| n == name)
            .map(|k| Self::ALL[k])
            .ok_or_else(|| MathError::unknown("advantage estimator", name, &Self::NAMES))
    }

    /// From verl's `algorithm.adv_estimator` (every verl name is an oxrl name; `bnpo` is not a
    /// verl estimator and is rejected here).
    pub fn from_verl_name(name: &str) -> Result<Self> {
        match Self::from_name(name) {
            Ok(Self::Bnpo) | Err(_) => Err(MathError::unknown(
                "verl adv_estimator",
                name,
                &Self::NAMES[..13],
            )),
            Ok(e) => Ok(e),
        }
    }

    /// Whether the estimator groups rows by prompt (needs group ids).
    pub fn needs_groups(self) -> bool {
        !matches!(self, Self::Gae | Self::ReinforcePlusPlus | Self::Remax)
    }
}

/// The tensors an estimator reads; all `[B × T]` except `reward_baselines` `[B]`.
#[derive(Debug, Clone, Copy)]
pub struct AdvantageInputs<'a> {
    /// Per-token rewards (outcome estimators sum each row into one score).
    pub token_level_rewards: &'a Tensor,
    /// 1 on the completion's valid tokens.
    pub response_mask: &'a Tensor,
    /// Group (prompt) id of each row.
    pub groups: Option<&'a [usize]>,
    /// Critic values (`gae`).
    pub values: Option<&'a Tensor>,
    /// Reward of the greedy completion per row (`remax`).
    pub reward_baselines: Option<&'a Tensor>,
    /// Log-probabilities of the sampled tokens under the rollout policy (optimal baselines).
    pub old_log_probs: Option<&'a Tensor>,
    /// Σ_v π(v)² per position (optimal baselines).
    pub sum_pi_squared: Option<&'a Tensor>,
    /// Truncated importance weights ρ̄ per position (optimal baselines, optional).
    pub rollout_is_weights: Option<&'a Tensor>,
}

impl<'a> AdvantageInputs<'a> {
    /// Inputs with only rewards and mask; set the other fields as the estimator needs.
    pub fn new(token_level_rewards: &'a Tensor, response_mask: &'a Tensor) -> Self {
        Self {
            token_level_rewards,
            response_mask,
            groups: None,
            values: None,
            reward_baselines: None,
            old_log_probs: None,
            sum_pi_squared: None,
            rollout_is_weights: None,
        }
    }
}

/// The scalar options of every estimator, with verl's defaults ([`AdvantageOptions::default`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdvantageOptions {
    /// Discount γ (`gae`, `reinforce_plus_plus`); default 1.
    pub gamma: f64,
    /// GAE λ; default 1.
    pub lam: f64,
    /// ε added to the std (`grpo`, `grpo_vectorized`, `grpo_passk`; default 1e-6).
    pub epsilon: f64,
    /// Divide by the group std (`grpo`, `grpo_vectorized`, `grpo_passk`); default true.
    pub norm_adv_by_std: bool,
    /// GPG's `f_norm`; default 1.
    pub f_norm: f64,
    /// Optimal baselines' zero tail; `None` takes each estimator's verl default.
    pub handle_zero_tail: Option<bool>,
    /// ε of the optimal baselines' denominator; default 1e-8.
    pub otb_epsilon: f64,
    /// BNPO's reward range and weight clamp.
    pub bnpo: BnpoOptions,
}

impl Default for AdvantageOptions {
    fn default() -> Self {
        Self {
            gamma: 1.0,
            lam: 1.0,
            epsilon: 1e-6,
            norm_adv_by_std: true,
            f_norm: 1.0,
            handle_zero_tail: None,
            otb_epsilon: 1e-8,
            bnpo: BnpoOptions::default(),
        }
    }
}

/// What an estimator returns: `[B × T]` advantages and returns (the value targets; the outcome
/// estimators return the advantages again, as verl does).
#[derive(Debug, Clone)]
pub struct Advantages {
    /// Per-token advantages.
    pub advantages: Tensor,
    /// Per-token returns.
    pub returns: Tensor,
}

fn need<'a, T: ?Sized>(x: Option<&'a T>, what: &str, est: AdvantageEstimator) -> Result<&'a T> {
    x.ok_or_else(|| MathError::InvalidInput(format!("estimator `{}` needs `{what}`", est.name())))
}

/// Runs `estimator` on `inputs` with `opts`: the single entry point for the training loop.
pub fn compute_advantages(
    estimator: AdvantageEstimator,
    inputs: &AdvantageInputs<'_>,
    opts: &AdvantageOptions,
) -> Result<Advantages> {
    use AdvantageEstimator as E;
    let r = inputs.token_level_rewards;
    let m = inputs.response_mask;
    let same = |t: Tensor| Advantages {
        advantages: t.clone(),
        returns: t,
    };
    let pair = |(a, g): (Tensor, Tensor)| Advantages {
        advantages: a,
        returns: g,
    };
    let groups = || need(inputs.groups, "groups (index)", estimator);
    Ok(match estimator {
        E::Gae => pair(gae(
            r,
            need(inputs.values, "values", estimator)?,
            m,
            opts.gamma,
            opts.lam,
        )?),
        E::Grpo => {
            let n = GroupNormalization::verl(opts.norm_adv_by_std).with_epsilon(opts.epsilon);
            same(grpo_outcome(r, m, groups()?, &n)?)
        }
        E::GrpoVectorized => same(grpo_vectorized(
            r,
            m,
            groups()?,
            opts.epsilon,
            opts.norm_adv_by_std,
        )?),
        E::GrpoPassk => same(grpo_passk(
            r,
            m,
            groups()?,
            opts.epsilon,
            opts.norm_adv_by_std,
        )?),
        E::Rloo => same(rloo(r, m, groups()?, SingletonRloo::RawScore)?),
        E::RlooVectorized => same(rloo(r, m, groups()?, SingletonRloo::Zero)?),
        E::Opo => same(opo(r, m, groups()?)?),
        E::ReinforcePlusPlus => pair(reinforce_plus_plus(r, m, opts.gamma)?),
        E::ReinforcePlusPlusBaseline => same(reinforce_plus_plus_baseline(r, m, groups()?)?),
        E::Remax => pair(remax(
            r,
            m,
            need(inputs.reward_baselines, "reward_baselines", estimator)?,
        )?),
        E::Gpg => same(gpg(r, m, groups()?, opts.f_norm)?),
        E::OptimalTokenBaseline | E::TirOptimalTokenBaseline => {
            let mut o = if estimator == E::OptimalTokenBaseline {
                OptimalBaselineOptions::verl_otb()
            } else {
                OptimalBaselineOptions::verl_tir()
            };
            if let Some(z) = opts.handle_zero_tail {
                o.handle_zero_tail = z;
            }
            o.epsilon = opts.otb_epsilon;
            pair(optimal_token_baseline(
                r,
                m,
                groups()?,
                need(inputs.old_log_probs, "old_log_probs", estimator)?,
                need(inputs.sum_pi_squared, "sum_pi_squared", estimator)?,
                inputs.rollout_is_weights,
                &o,
            )?)
        }
        E::Bnpo => same(bnpo(r, m, groups()?, &opts.bnpo)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_lists_accepted() {
        for n in AdvantageEstimator::NAMES {
            assert_eq!(AdvantageEstimator::from_name(n).unwrap().name(), n);
        }
        let e = AdvantageEstimator::from_name("ppo")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ppo") && e.contains("grpo_passk") && e.contains("bnpo"));
        assert!(AdvantageEstimator::from_verl_name("bnpo").is_err());
        assert_eq!(
            AdvantageEstimator::from_verl_name("rloo_vectorized").unwrap(),
            AdvantageEstimator::RlooVectorized
        );
    }
}

#[cfg(test)]
mod hand_tests {
    use super::*;
    use candle_core::{DType, Device};

    fn t2(rows: &[&[f64]]) -> Tensor {
        let b = rows.len();
        let t = rows[0].len();
        let flat: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_vec(flat, (b, t), &Device::Cpu).unwrap()
    }

    fn run(est: &str, r: &Tensor, m: &Tensor, groups: &[usize]) -> Vec<Vec<f64>> {
        let inputs = AdvantageInputs {
            groups: Some(groups),
            ..AdvantageInputs::new(r, m)
        };
        compute_advantages(
            AdvantageEstimator::from_name(est).unwrap(),
            &inputs,
            &AdvantageOptions::default(),
        )
        .unwrap()
        .advantages
        .to_vec2::<f64>()
        .unwrap()
    }

    #[test]
    fn rloo_variants_on_singletons() {
        // Group 0: scores [1, 0, 2] → n/(n−1)·(s − mean 1) = [0, −1.5, 1.5]; group 1: singleton 3.
        let r = t2(&[&[1.0], &[0.0], &[2.0], &[3.0]]);
        let m = Tensor::ones((4, 1), DType::F64, &Device::Cpu).unwrap();
        let g = [0, 0, 0, 1];
        let a = run("rloo", &r, &m, &g);
        let v = run("rloo_vectorized", &r, &m, &g);
        for (x, e) in a.iter().zip([0.0, -1.5, 1.5, 3.0]) {
            assert!((x[0] - e).abs() < 1e-12);
        }
        for (x, e) in v.iter().zip([0.0, -1.5, 1.5, 0.0]) {
            assert!((x[0] - e).abs() < 1e-12);
        }
    }

    #[test]
    fn opo_weights_by_length() {
        // Lengths 1 and 3, scores 1 and 0: baseline 1·1/(1+3) = 0.25.
        let r = t2(&[&[1.0, 0.0, 0.0], &[0.0, 0.0, 0.0]]);
        let m = t2(&[&[1.0, 0.0, 0.0], &[1.0, 1.0, 1.0]]);
        let a = run("opo", &r, &m, &[0, 0]);
        assert_eq!(a, vec![vec![0.75, 0.0, 0.0], vec![-0.25, -0.25, -0.25]]);
    }

    #[test]
    fn gpg_rescales_by_nonzero_share() {
        let r = t2(&[&[1.0], &[0.0], &[0.0], &[0.0]]);
        let m = Tensor::ones((4, 1), DType::F64, &Device::Cpu).unwrap();
        let a = run("gpg", &r, &m, &[0, 0, 1, 1]);
        // B = 4 and one non-zero score: α = 4; group means 0.5 and 0.
        assert_eq!(a, vec![vec![2.0], vec![-2.0], vec![0.0], vec![0.0]]);
    }

    #[test]
    fn passk_rewards_only_the_best() {
        let r = t2(&[&[0.5], &[1.0], &[0.0]]);
        let m = Tensor::ones((3, 1), DType::F64, &Device::Cpu).unwrap();
        let inputs = AdvantageInputs {
            groups: Some(&[0, 0, 0]),
            ..AdvantageInputs::new(&r, &m)
        };
        let opts = AdvantageOptions {
            norm_adv_by_std: false,
            ..Default::default()
        };
        let a = compute_advantages(AdvantageEstimator::GrpoPassk, &inputs, &opts)
            .unwrap()
            .advantages
            .to_vec2::<f64>()
            .unwrap();
        assert_eq!(a, vec![vec![0.0], vec![0.5], vec![0.0]]);
        let single = AdvantageInputs {
            groups: Some(&[0, 1, 1]),
            ..inputs
        };
        assert!(compute_advantages(AdvantageEstimator::GrpoPassk, &single, &opts).is_err());
    }

    #[test]
    fn remax_and_missing_inputs() {
        let r = t2(&[&[0.0, 1.0], &[0.5, 0.0]]);
        let m = t2(&[&[1.0, 1.0], &[1.0, 0.0]]);
        let b = Tensor::from_vec(vec![0.25, 1.0], 2, &Device::Cpu).unwrap();
        let inputs = AdvantageInputs {
            reward_baselines: Some(&b),
            ..AdvantageInputs::new(&r, &m)
        };
        let out = compute_advantages(
            AdvantageEstimator::Remax,
            &inputs,
            &AdvantageOptions::default(),
        )
        .unwrap();
        assert_eq!(
            out.returns.to_vec2::<f64>().unwrap(),
            vec![vec![1.0, 1.0], vec![0.5, 0.0]]
        );
        assert_eq!(
            out.advantages.to_vec2::<f64>().unwrap(),
            vec![vec![0.75, 0.75], vec![-0.5, 0.0]]
        );
        let bare = AdvantageInputs::new(&r, &m);
        let e = compute_advantages(
            AdvantageEstimator::Remax,
            &bare,
            &AdvantageOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("reward_baselines"));
        let e = compute_advantages(
            AdvantageEstimator::Grpo,
            &bare,
            &AdvantageOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("groups"));
    }

    #[test]
    fn gae_single_step_by_hand() {
        // One token: δ = r − V = 1 − 0.25; returns = δ + V = 1. Two rows so whitening is defined.
        let r = t2(&[&[1.0], &[0.0]]);
        let v = t2(&[&[0.25], &[0.5]]);
        let m = t2(&[&[1.0], &[1.0]]);
        let out = gae(&r, &v, &m, 0.9, 0.8).unwrap();
        assert_eq!(out.1.to_vec2::<f64>().unwrap(), vec![vec![1.0], vec![0.0]]);
        // Whitened [0.75, −0.5]: mean 0.125, unbiased var 0.78125.
        let a = out.0.to_vec2::<f64>().unwrap();
        let s = (0.78125f64 + 1e-8).sqrt();
        // (verl's masked mean divides by Σm + 1e-8, hence the tolerance.)
        assert!((a[0][0] - 0.625 / s).abs() < 1e-7 && (a[1][0] + 0.625 / s).abs() < 1e-7);
    }
}
