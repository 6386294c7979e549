//! The `[algorithm.ppo]` and `[algorithm.reward_model]` tables: PPO's critic, GAE and value-loss
//! settings, and the Bradley–Terry reward model's loss options. Kept apart from `mod.rs` so the
//! algorithm list there stays a short, mergeable enumeration.

use serde::{Deserialize, Serialize};

/// Where PPO's critic lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CriticKind {
    /// A score head on the policy's own trunk (one forward gives logprobs and values; the value
    /// loss also trains the trunk, weighted by `vf_coef`).
    #[default]
    Shared,
    /// A model of its own (TRL's `value_model`, verl's and OpenRLHF's critic): a copy of the
    /// policy's initial weights with a value head, trained by its own AdamW on the value loss
    /// only ([`crate::ppo::critic`]).
    Separate,
}

/// `[algorithm.ppo]` (TRL `PPOConfig` / verl names where they exist).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PpoConfig {
    /// The critic (`shared`: a value head on the policy; `separate`: a model of its own).
    pub critic: CriticKind,
    /// Peak learning rate of a separate critic (verl `critic.optim.lr`); default `optim.lr`.
    pub critic_lr: Option<f64>,
    /// GAE discount γ (TRL `gamma`, verl `algorithm.gamma`).
    pub gamma: f64,
    /// GAE λ (TRL `lam`, verl `algorithm.lam`).
    pub lam: f64,
    /// Weight of the value loss in the total loss (TRL `vf_coef`).
    pub vf_coef: f64,
    /// ε_v of the clipped value loss (TRL `cliprange_value` 0.2; verl/OpenRLHF 0.5).
    pub cliprange_value: f64,
    /// Scale the token rewards (score + KL penalty) to unit variance over the completion tokens,
    /// without shifting their mean (TRL `whiten_rewards`).
    pub whiten_rewards: bool,
    /// Whiten the GAE advantages over the completion tokens (mean 0, std 1; TRL and verl always
    /// do).
    pub whiten_advantages: bool,
}

impl Default for PpoConfig {
    fn default() -> Self {
        Self {
            critic: CriticKind::Shared,
            critic_lr: None,
            gamma: 1.0,
            lam: 0.95,
            vf_coef: 0.1,
            cliprange_value: 0.2,
            whiten_rewards: false,
            whiten_advantages: true,
        }
    }
}

/// Checks `[algorithm.ppo]`; the error is `(key, message)`.
pub fn check_ppo(p: &PpoConfig, n: usize) -> Result<(), (&'static str, String)> {
    let unit = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
    if !unit(p.gamma) {
        return Err((
            "algorithm.ppo.gamma",
            format!("must be in [0, 1], got {}", p.gamma),
        ));
    }
    if !unit(p.lam) {
        return Err((
            "algorithm.ppo.lam",
            format!("must be in [0, 1], got {}", p.lam),
        ));
    }
    if !(p.vf_coef.is_finite() && p.vf_coef >= 0.0) {
        return Err((
            "algorithm.ppo.vf_coef",
            format!("must be a number >= 0, got {}", p.vf_coef),
        ));
    }
    if !(p.cliprange_value.is_finite() && p.cliprange_value >= 0.0) {
        return Err((
            "algorithm.ppo.cliprange_value",
            format!("must be a number >= 0, got {}", p.cliprange_value),
        ));
    }
    if let Some(lr) = p.critic_lr {
        if !(lr.is_finite() && lr > 0.0) {
            return Err((
                "algorithm.ppo.critic_lr",
                format!("must be a number > 0, got {lr}"),
            ));
        }
        if p.critic != CriticKind::Separate {
            return Err((
                "algorithm.ppo.critic_lr",
                "is the separate critic's learning rate; set algorithm.ppo.critic = \"separate\" or remove it".into(),
            ));
        }
    }
    if n == 0 {
        return Err(("rollout.n", "must be at least 1".into()));
    }
    Ok(())
}
