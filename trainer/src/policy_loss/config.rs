//! The policy-loss configuration: one serde-deserialisable struct with oxrl's names (TRL and verl
//! field names accepted as aliases), and the presets that turn a TRL `GRPOConfig` or a verl actor
//! config into exactly what that anchor computes ([`TrlGrpoArgs`], [`VerlActorArgs`]).

use crate::aggregation::{AggregationNorm, LossAggregation};
use crate::kl::KlEstimator;
use crate::{MathError, Result};

use super::bapo::BapoConfig;
use super::cispo::CispoBounds;
use super::clipped::ClipBounds;
use super::cov::CovParams;
use super::importance::RolloutCorrection;
use super::ratio::RatioLevel;
use super::sapo::SapoTemperatures;
use super::vespo::VespoParams;

/// Which per-token objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyLossMode {
    /// −min(r·A, clip(r)·A), with optional ratio cap / dual clip (PPO, GRPO, DAPO, GSPO with
    /// `ratio_level = sequence`; TRL grpo/bnpo/dr_grpo/dapo/luspo, verl vanilla/gspo).
    #[default]
    #[serde(alias = "vanilla", alias = "ppo")]
    Clipped,
    /// −sg[clip(r)]·A·log π (TRL and verl `cispo`).
    Cispo,
    /// −σ(τ(r − 1))·4/τ·A (TRL and verl `sapo`).
    Sapo,
    /// −φ(w)·A·log π with a gamma weight of the sequence ratio (TRL `vespo`).
    Vespo,
    /// −A·log π (verl `gpg`, `reinforce`).
    #[serde(alias = "gpg", alias = "pg")]
    Reinforce,
    /// GMPO, the clipped geometric-mean ratio per sequence (verl `geo_mean`).
    #[serde(alias = "gmpo")]
    GeoMean,
    /// Clipped surrogate with the highest-covariance tokens' loss dropped (verl `clip_cov`).
    ClipCov,
    /// −A·r with |ℓ| added on the highest-covariance tokens (verl `kl_cov`).
    KlCov,
    /// Clipped surrogate with BAPO's adaptive bounds (oxrl extension).
    Bapo,
}

impl PolicyLossMode {
    /// The oxrl names.
    pub const NAMES: [&'static str; 9] = [
        "clipped",
        "cispo",
        "sapo",
        "vespo",
        "reinforce",
        "geo_mean",
        "clip_cov",
        "kl_cov",
        "bapo",
    ];
}

/// A KL-to-reference term added to the per-token loss before aggregation (TRL's `beta`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KlTerm {
    /// Coefficient β.
    #[serde(alias = "beta")]
    pub coef: f64,
    /// Estimator (TRL: unclamped `k3`).
    #[serde(default = "default_k3")]
    pub estimator: KlEstimator,
    /// Straight-through: the estimator's value with k2's gradient.
    #[serde(default)]
    pub straight_through: bool,
    /// Multiply the KL by the importance ratio (TRL `use_bias_correction_kl`).
    #[serde(default, alias = "use_bias_correction_kl")]
    pub importance_weighted: bool,
}

fn default_k3() -> KlEstimator {
    KlEstimator::K3
}

/// Everything that decides a policy loss. Defaults: clipped token-level surrogate, ε = 0.2 both
/// sides, no caps, token-mean, no KL, no entropy bonus, no rollout correction.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyLossConfig {
    /// The objective.
    #[serde(alias = "loss_mode")]
    pub mode: PolicyLossMode,
    /// Token or sequence (GSPO) ratio.
    #[serde(alias = "importance_sampling_level")]
    pub ratio_level: RatioLevel,
    /// ε_low: the ratio's lower clip bound is 1 − ε_low (TRL `epsilon`, verl `clip_ratio_low`).
    #[serde(alias = "epsilon", alias = "clip_ratio_low")]
    pub clip_low: f64,
    /// ε_high: upper bound 1 + ε_high (TRL `epsilon_high`, verl `clip_ratio_high`).
    #[serde(alias = "epsilon_high", alias = "clip_ratio_high")]
    pub clip_high: f64,
    /// TRL `delta`: cap of r in the unclipped branch (both signs of A).
    #[serde(alias = "delta")]
    pub ratio_cap: Option<f64>,
    /// verl `clip_ratio_c`: for A < 0 the loss is at most −c·A.
    #[serde(alias = "clip_ratio_c")]
    pub dual_clip: Option<f64>,
    /// Clamp of the token log-ratio to [−c, c] before exponentiating (verl: 20 for vanilla,
    /// sapo, cispo; TRL: none).
    pub log_ratio_clamp: Option<f64>,
    /// Upper clamp of the sequence log-ratio (verl's GSPO: 10).
    pub sequence_log_ratio_max: Option<f64>,
    /// How the per-token loss becomes a scalar (verl `loss_agg_mode`).
    #[serde(alias = "loss_agg_mode")]
    pub aggregation: LossAggregation,
    /// CISPO's weight bounds; `None`: [1 − clip_low, 1 + clip_high] (verl's).
    pub cispo: Option<CispoBounds>,
    /// SAPO's temperatures.
    pub sapo: SapoTemperatures,
    /// VESPO's gamma parameters.
    pub vespo: VespoParams,
    /// Clip-Cov / KL-Cov parameters (verl `policy_loss` block).
    #[serde(alias = "policy_loss")]
    pub cov: CovParams,
    /// BAPO's search.
    pub bapo: BapoConfig,
    /// KL-to-reference term in the loss.
    pub kl: Option<KlTerm>,
    /// Entropy bonus: the loss minus `entropy_coef` × aggregated entropy (verl `entropy_coeff`).
    #[serde(alias = "entropy_coeff")]
    pub entropy_coef: f64,
    /// Aggregation of the entropy bonus; `None`: the policy loss's own.
    pub entropy_aggregation: Option<LossAggregation>,
    /// Correction against the rollout engine's logprobs.
    pub rollout_correction: Option<RolloutCorrection>,
}

impl Default for PolicyLossConfig {
    fn default() -> Self {
        Self {
            mode: PolicyLossMode::Clipped,
            ratio_level: RatioLevel::Token,
            clip_low: 0.2,
            clip_high: 0.2,
            ratio_cap: None,
            dual_clip: None,
            log_ratio_clamp: None,
            sequence_log_ratio_max: None,
            aggregation: LossAggregation::TokenMean,
            cispo: None,
            sapo: SapoTemperatures::default(),
            vespo: VespoParams::default(),
            cov: CovParams::default(),
            bapo: BapoConfig::default(),
            kl: None,
            entropy_coef: 0.0,
            entropy_aggregation: None,
            rollout_correction: None,
        }
    }
}

impl PolicyLossConfig {
    /// The clip bounds of the clipped modes.
    pub fn clip_bounds(&self) -> ClipBounds {
        ClipBounds {
            ratio_cap: self.ratio_cap,
            dual_clip: self.dual_clip,
            ..ClipBounds::from_epsilons(self.clip_low, self.clip_high)
        }
    }

    /// CISPO's bounds (explicit, or verl's [1 − clip_low, 1 + clip_high]).
    pub fn cispo_bounds(&self) -> CispoBounds {
        self.cispo.unwrap_or(CispoBounds {
            ratio_min: Some(1.0 - self.clip_low),
            ratio_max: Some(1.0 + self.clip_high),
        })
    }

    /// BAPO with its defaults: the paper's search, token log-ratio clamped at 20, token-mean.
    pub fn bapo(bapo: BapoConfig) -> Self {
        Self {
            mode: PolicyLossMode::Bapo,
            log_ratio_clamp: Some(20.0),
            bapo,
            ..Self::default()
        }
    }
}

/// TRL 1.16 `GRPOConfig` fields that decide the loss, with TRL's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct TrlGrpoArgs {
    /// `loss_type` (default `dapo`).
    pub loss_type: String,
    /// `epsilon` (0.2).
    pub epsilon: f64,
    /// `epsilon_high` (`None`: `epsilon`).
    pub epsilon_high: Option<f64>,
    /// `delta` (`None`).
    pub delta: Option<f64>,
    /// `beta` (0.0).
    pub beta: f64,
    /// `importance_sampling_level` (`token`).
    pub importance_sampling_level: String,
    /// `use_bias_correction_kl` (false).
    pub use_bias_correction_kl: bool,
    /// `max_completion_length` (512; the `dr_grpo` normaliser).
    pub max_completion_length: f64,
    /// `sapo_temperature_pos` / `_neg` (1.0 / 1.05).
    pub sapo: SapoTemperatures,
    /// `vespo_*` (2, 3, 3, 2).
    pub vespo: VespoParams,
    /// `entropy_coef` (0.0).
    pub entropy_coef: f64,
    /// `vllm_importance_sampling_mode` with its bounds, when the correction is on.
    pub rollout_correction: Option<RolloutCorrection>,
}

impl Default for TrlGrpoArgs {
    fn default() -> Self {
        Self {
            loss_type: "dapo".into(),
            epsilon: 0.2,
            epsilon_high: None,
            delta: None,
            beta: 0.0,
            importance_sampling_level: "token".into(),
            use_bias_correction_kl: false,
            max_completion_length: 512.0,
            sapo: SapoTemperatures::default(),
            vespo: VespoParams::default(),
            entropy_coef: 0.0,
            rollout_correction: None,
        }
    }
}

impl TrlGrpoArgs {
    /// TRL's `loss_type` names.
    pub const LOSS_TYPES: [&'static str; 8] = [
        "grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo",
    ];

    /// The oxrl configuration TRL's `_compute_loss` amounts to.
    pub fn config(&self) -> Result<PolicyLossConfig> {
        let lt = self.loss_type.as_str();
        let eps_high = self.epsilon_high.unwrap_or(self.epsilon);
        let mode = match lt {
            "grpo" | "bnpo" | "dr_grpo" | "dapo" | "luspo" => PolicyLossMode::Clipped,
            "cispo" => PolicyLossMode::Cispo,
            "sapo" => PolicyLossMode::Sapo,
            "vespo" => PolicyLossMode::Vespo,
            other => {
                return Err(MathError::unknown(
                    "TRL loss_type",
                    other,
                    &Self::LOSS_TYPES,
                ))
            }
        };
        // LUSPO weights each sequence's loss by its length and averages over rows: Σ_i Σ_t M·L / B.
        let aggregation = if lt == "luspo" {
            LossAggregation::SeqMeanTokenSum
        } else {
            LossAggregation::from_trl_loss_type(lt)?
        };
        let token_normalised = matches!(lt, "dapo" | "cispo" | "vespo");
        Ok(PolicyLossConfig {
            mode,
            ratio_level: RatioLevel::from_name(&self.importance_sampling_level)?,
            clip_low: self.epsilon,
            clip_high: eps_high,
            ratio_cap: self.delta,
            dual_clip: None,
            log_ratio_clamp: None,
            sequence_log_ratio_max: None,
            aggregation,
            // TRL caps CISPO's weight at epsilon_high itself, with no lower bound.
            cispo: Some(CispoBounds {
                ratio_min: None,
                ratio_max: Some(eps_high),
            }),
            // TRL builds the temperature tensor with `torch.where` on Python floats, i.e. in
            // float32 whatever the logprobs' dtype: τ_neg = 1.05 is 1.0499999523 there.
            sapo: SapoTemperatures {
                pos: self.sapo.pos as f32 as f64,
                neg: self.sapo.neg as f32 as f64,
            },
            vespo: self.vespo,
            cov: CovParams::default(),
            bapo: BapoConfig::default(),
            kl: (self.beta != 0.0).then_some(KlTerm {
                coef: self.beta,
                estimator: KlEstimator::K3,
                straight_through: false,
                importance_weighted: self.use_bias_correction_kl,
            }),
            entropy_coef: self.entropy_coef,
            entropy_aggregation: Some(if token_normalised {
                LossAggregation::TokenMean
            } else {
                LossAggregation::TokenMeanLocal
            }),
            rollout_correction: self.rollout_correction,
        })
    }

    /// TRL's normalisers for a micro-batch of `rows` completions: every row counts for the
    /// per-sequence types, `max_completion_length` for `dr_grpo`, `num_items_in_batch` (tokens of
    /// the global batch; `None`: this batch's) over `num_processes` for dapo / cispo / vespo.
    pub fn norm(
        &self,
        rows: usize,
        num_items_in_batch: Option<f64>,
        num_processes: f64,
    ) -> AggregationNorm {
        AggregationNorm {
            num_tokens: num_items_in_batch.map(|n| n.max(1.0)),
            num_sequences: Some(rows as f64),
            length: Some(self.max_completion_length),
            dp_size: num_processes,
        }
    }
}

/// verl actor fields that decide the policy loss, with verl's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct VerlActorArgs {
    /// `policy_loss.loss_mode` (vanilla).
    pub loss_mode: String,
    /// `clip_ratio` (0.2).
    pub clip_ratio: f64,
    /// `clip_ratio_low` (`None`: `clip_ratio`).
    pub clip_ratio_low: Option<f64>,
    /// `clip_ratio_high` (`None`: `clip_ratio`).
    pub clip_ratio_high: Option<f64>,
    /// `clip_ratio_c` (3.0).
    pub clip_ratio_c: f64,
    /// `loss_agg_mode` (token-mean).
    pub loss_agg_mode: String,
    /// `tau_pos` / `tau_neg` (1.0 / 1.05).
    pub sapo: SapoTemperatures,
    /// `policy_loss` block (clip_cov_*, kl_cov_ratio, ppo_kl_coef).
    pub cov: CovParams,
    /// `entropy_coeff` (0).
    pub entropy_coeff: f64,
}

impl Default for VerlActorArgs {
    fn default() -> Self {
        Self {
            loss_mode: "vanilla".into(),
            clip_ratio: 0.2,
            clip_ratio_low: None,
            clip_ratio_high: None,
            clip_ratio_c: 3.0,
            loss_agg_mode: "token-mean".into(),
            sapo: SapoTemperatures::default(),
            cov: CovParams::default(),
            entropy_coeff: 0.0,
        }
    }
}

impl VerlActorArgs {
    /// verl's `loss_mode` names.
    pub const LOSS_MODES: [&'static str; 9] = [
        "vanilla",
        "gspo",
        "sapo",
        "gpg",
        "clip_cov",
        "kl_cov",
        "geo_mean",
        "cispo",
        "reinforce",
    ];

    /// The oxrl configuration verl's `compute_policy_loss_<mode>` amounts to.
    pub fn config(&self) -> Result<PolicyLossConfig> {
        let low = self.clip_ratio_low.unwrap_or(self.clip_ratio);
        let high = self.clip_ratio_high.unwrap_or(self.clip_ratio);
        let mut agg = LossAggregation::from_name(&self.loss_agg_mode)?;
        if agg == LossAggregation::TokenMeanLocal || agg == LossAggregation::SeqMeanTokenSumNormTrl
        {
            return Err(MathError::unknown(
                "verl loss_agg_mode",
                &self.loss_agg_mode,
                &[
                    "token-mean",
                    "seq-mean-token-sum",
                    "seq-mean-token-mean",
                    "seq-mean-token-sum-norm",
                ],
            ));
        }
        let mut cfg = PolicyLossConfig {
            clip_low: low,
            clip_high: high,
            sapo: self.sapo,
            cov: self.cov,
            entropy_coef: self.entropy_coeff,
            ..PolicyLossConfig::default()
        };
        match self.loss_mode.as_str() {
            "vanilla" => {
                if self.clip_ratio_c.is_nan() || self.clip_ratio_c <= 1.0 {
                    return Err(MathError::InvalidInput(format!(
                        "clip_ratio_c must be > 1 (dual clip), got {}",
                        self.clip_ratio_c
                    )));
                }
                cfg.mode = PolicyLossMode::Clipped;
                cfg.dual_clip = Some(self.clip_ratio_c);
                cfg.log_ratio_clamp = Some(20.0);
            }
            "gspo" => {
                cfg.mode = PolicyLossMode::Clipped;
                cfg.ratio_level = RatioLevel::Sequence;
                cfg.sequence_log_ratio_max = Some(10.0);
                agg = LossAggregation::SeqMeanTokenMean;
            }
            "sapo" => {
                cfg.mode = PolicyLossMode::Sapo;
                cfg.log_ratio_clamp = Some(20.0);
                agg = LossAggregation::SeqMeanTokenMean;
            }
            "gpg" | "reinforce" => cfg.mode = PolicyLossMode::Reinforce,
            "clip_cov" => cfg.mode = PolicyLossMode::ClipCov,
            "kl_cov" => cfg.mode = PolicyLossMode::KlCov,
            "geo_mean" => cfg.mode = PolicyLossMode::GeoMean,
            "cispo" => {
                cfg.mode = PolicyLossMode::Cispo;
                cfg.log_ratio_clamp = Some(20.0);
            }
            other => {
                return Err(MathError::unknown(
                    "verl loss_mode",
                    other,
                    &Self::LOSS_MODES,
                ))
            }
        }
        cfg.aggregation = agg;
        Ok(cfg)
    }
}
