//! The preference-loss configuration, with TRL's `DPOConfig` field names and defaults (TRL 1.16):
//! `loss_type` (one name or a list), `loss_weights`, `beta`, `label_smoothing`, `discopop_tau`,
//! `f_divergence_type`, `f_alpha_divergence_coef`, `ld_alpha`.

use serde::{Deserialize, Deserializer, Serialize};

use crate::{MathError, Result};

/// One preference objective, by its TRL `loss_type` name (plus oxrl's `cdpo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PreferenceLossType {
    /// DPO: −log σ(β·Δ).
    Sigmoid,
    /// SLiC: max(0, 1 − β·Δ).
    Hinge,
    /// IPO on per-token averages: (Δ̄ − 1/(2β))².
    Ipo,
    /// EXO-pref: KL(softmax(βΔ) ‖ (1 − ε, ε)).
    ExoPair,
    /// NCA: −log σ(β s_w) − ½ log σ(−β s_w) − ½ log σ(−β s_l).
    NcaPair,
    /// Robust DPO (label flips with probability ε).
    Robust,
    /// BCO on pairs: −log σ(β s_w) − log σ(−β s_l) (no running-mean shift).
    BcoPair,
    /// SPPO with hard labels: (s_w − 1/(2β))² + (s_l + 1/(2β))².
    SppoHard,
    /// AOT: sigmoid loss on sorted policy vs sorted reference log-ratio margins.
    Aot,
    /// AOT unpaired: sigmoid loss on sorted chosen vs sorted rejected log-ratios.
    AotUnpaired,
    /// APO-zero: (1 − σ(β s_w)) + σ(β s_l).
    ApoZero,
    /// APO-down: σ(β s_w) + (1 − σ(β·Δ)).
    ApoDown,
    /// DiscoPOP: logistic/exponential mix modulated by σ(βΔ/τ).
    Discopop,
    /// Negative log-likelihood of the chosen completions, averaged per token over the batch.
    Sft,
    /// DPO on per-token averages: −log σ(β·Δ̄).
    SigmoidNorm,
    /// Conservative DPO (oxrl extension; TRL ≥ 1.0's `sigmoid` ignores `label_smoothing`):
    /// −(1 − ε) log σ(βΔ) − ε log σ(−βΔ).
    Cdpo,
}

impl PreferenceLossType {
    /// Every accepted name (TRL's fifteen, then oxrl's `cdpo`).
    pub const NAMES: [&'static str; 16] = [
        "sigmoid",
        "hinge",
        "ipo",
        "exo_pair",
        "nca_pair",
        "robust",
        "bco_pair",
        "sppo_hard",
        "aot",
        "aot_unpaired",
        "apo_zero",
        "apo_down",
        "discopop",
        "sft",
        "sigmoid_norm",
        "cdpo",
    ];

    const ALL: [PreferenceLossType; 16] = [
        Self::Sigmoid,
        Self::Hinge,
        Self::Ipo,
        Self::ExoPair,
        Self::NcaPair,
        Self::Robust,
        Self::BcoPair,
        Self::SppoHard,
        Self::Aot,
        Self::AotUnpaired,
        Self::ApoZero,
        Self::ApoDown,
        Self::Discopop,
        Self::Sft,
        Self::SigmoidNorm,
        Self::Cdpo,
    ];

    /// The loss type named `name`, or an error listing the accepted names.
    pub fn from_name(name: &str) -> Result<Self> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| MathError::unknown("loss_type", name, &Self::NAMES))
    }

    /// The name (TRL's, or `cdpo`).
    pub fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|t| *t == self).unwrap_or(0)]
    }
}

impl<'de> Deserialize<'de> for PreferenceLossType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_name(&s).map_err(serde::de::Error::custom)
    }
}

/// The f-divergence regulariser (f-DPO): how a log-ratio u = log π/π_ref becomes a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FDivergence {
    /// s = u (standard DPO).
    #[default]
    ReverseKl,
    /// s = −e^{−u}.
    ForwardKl,
    /// s = log σ(u).
    JsDivergence,
    /// s = e^{(α−1)u}/(α−1), the exponent clamped at 80 (u itself when |α − 1| < 1e-6).
    AlphaDivergence,
}

impl FDivergence {
    /// The accepted names (TRL's `f_divergence_type` values).
    pub const NAMES: [&'static str; 4] = [
        "reverse_kl",
        "forward_kl",
        "js_divergence",
        "alpha_divergence",
    ];

    /// The divergence named `name`, or an error listing the accepted names.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "reverse_kl" => Self::ReverseKl,
            "forward_kl" => Self::ForwardKl,
            "js_divergence" => Self::JsDivergence,
            "alpha_divergence" => Self::AlphaDivergence,
            other => return Err(MathError::unknown("f_divergence_type", other, &Self::NAMES)),
        })
    }
}

impl<'de> Deserialize<'de> for FDivergence {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_name(&s).map_err(serde::de::Error::custom)
    }
}

/// `loss_type`: one name or a list of names (TRL accepts both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct LossTypes(pub Vec<PreferenceLossType>);

impl Default for LossTypes {
    fn default() -> Self {
        Self(vec![PreferenceLossType::Sigmoid])
    }
}

impl<'de> Deserialize<'de> for LossTypes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let names = match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        names
            .iter()
            .map(|n| PreferenceLossType::from_name(n))
            .collect::<Result<Vec<_>>>()
            .map(LossTypes)
            .map_err(serde::de::Error::custom)
    }
}

/// Everything that decides a preference loss; field names and defaults are TRL 1.16's `DPOConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreferenceLossConfig {
    /// β, the strength of the pull towards the reference (IPO's τ). Default 0.1.
    pub beta: f64,
    /// The objectives, summed with `loss_weights`. Default `["sigmoid"]`.
    pub loss_type: LossTypes,
    /// One weight per loss type; absent: all 1.
    pub loss_weights: Option<Vec<f64>>,
    /// ε: label-flip probability for `robust`, target smoothing for `exo_pair`, `aot`,
    /// `aot_unpaired` and `cdpo`. Default 0.
    pub label_smoothing: f64,
    /// DiscoPOP's temperature τ. Default 0.05.
    pub discopop_tau: f64,
    /// The f-divergence turning log-ratios into scores. Default `reverse_kl`.
    pub f_divergence_type: FDivergence,
    /// α of `alpha_divergence`. Default 0.5.
    pub f_alpha_divergence_coef: f64,
    /// LD-DPO's weight of the tokens beyond the shorter completion of a pair; absent: plain sums.
    pub ld_alpha: Option<f64>,
}

impl Default for PreferenceLossConfig {
    fn default() -> Self {
        Self {
            beta: 0.1,
            loss_type: LossTypes::default(),
            loss_weights: None,
            label_smoothing: 0.0,
            discopop_tau: 0.05,
            f_divergence_type: FDivergence::ReverseKl,
            f_alpha_divergence_coef: 0.5,
            ld_alpha: None,
        }
    }
}

impl PreferenceLossConfig {
    /// A config with one loss type and TRL's defaults for the rest.
    pub fn new(loss_type: PreferenceLossType, beta: f64) -> Self {
        Self {
            beta,
            loss_type: LossTypes(vec![loss_type]),
            ..Self::default()
        }
    }

    /// The (loss type, weight) pairs, after checking what TRL checks (and a few values that would
    /// make the loss non-finite).
    pub fn weighted_types(&self) -> Result<Vec<(PreferenceLossType, f64)>> {
        let types = &self.loss_type.0;
        if types.is_empty() {
            return Err(MathError::InvalidInput("loss_type is an empty list".into()));
        }
        let weights = match &self.loss_weights {
            None => vec![1.0; types.len()],
            Some(w) if w.len() == types.len() => w.clone(),
            Some(w) => {
                return Err(MathError::InvalidInput(format!(
                "loss_weights must have the same length as loss_type: {} weights for {} loss types",
                w.len(),
                types.len()
            )))
            }
        };
        let finite = |name: &str, x: f64| {
            if x.is_finite() {
                Ok(())
            } else {
                Err(MathError::InvalidInput(format!(
                    "{name} must be finite, got {x}"
                )))
            }
        };
        finite("beta", self.beta)?;
        finite("label_smoothing", self.label_smoothing)?;
        finite("discopop_tau", self.discopop_tau)?;
        finite("f_alpha_divergence_coef", self.f_alpha_divergence_coef)?;
        for w in &weights {
            finite("loss_weights", *w)?;
        }
        let eps = self.label_smoothing;
        for t in types {
            use PreferenceLossType as L;
            match t {
                L::Ipo | L::SppoHard if self.beta == 0.0 => {
                    return Err(MathError::InvalidInput(format!(
                        "{} divides by beta, which is 0",
                        t.name()
                    )))
                }
                L::ExoPair if eps <= 0.0 || eps >= 1.0 => {
                    return Err(MathError::InvalidInput(format!(
                        "exo_pair needs 0 < label_smoothing < 1 (the EXO paper recommends 1e-3), got {eps}"
                    )))
                }
                L::Robust if eps == 0.5 => {
                    return Err(MathError::InvalidInput(
                        "robust divides by 1 − 2·label_smoothing, which is 0 at 0.5".into(),
                    ))
                }
                L::Discopop if self.discopop_tau == 0.0 => {
                    return Err(MathError::InvalidInput("discopop_tau must not be 0".into()))
                }
                _ => {}
            }
        }
        Ok(types.iter().copied().zip(weights).collect())
    }
}
