//! KL estimators between the policy and the reference, per token (δ = log π_θ − log π_ref).
//!
//! `k1` = δ, `abs` = |δ|, `k2` = ½δ², `k3` = e^{−δ} − 1 + δ (unclamped, TRL's GRPO KL), and
//! `low_var_kl` = verl's k3 with δ clamped to [−20, 20] and the estimate to [−10, 10]. Note that
//! verl's own `k3` name is the clamped one too: [`KlEstimator::from_verl_name`] maps it there, so a
//! verl config means what it meant in verl. A `+` suffix is the straight-through variant: the
//! forward value of the estimator with the gradient of k2 (unbiased KL gradient; verl's `k3+`).
//! Controllers that move the coefficient live in [`controller`]; the KL in the reward in [`reward`].

use candle_core::Tensor;

use crate::{MathError, Result};

pub mod controller;
pub mod reward;

/// Which per-token KL estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlEstimator {
    /// δ.
    K1,
    /// |δ|.
    Abs,
    /// ½ δ².
    K2,
    /// e^{−δ} − 1 + δ, unclamped (TRL).
    K3,
    /// k3 with δ clamped to [−20, 20] and the result to [−10, 10] (verl `low_var_kl` / `k3`).
    LowVarKl,
}

/// An estimator plus whether its gradient is replaced by k2's (the `+` variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KlPenalty {
    /// The forward estimate.
    pub estimator: KlEstimator,
    /// Straight-through: value of `estimator`, gradient of k2.
    pub straight_through: bool,
}

impl KlEstimator {
    /// Accepted verl names (with or without a trailing `+`).
    pub const VERL_NAMES: [&'static str; 7] = ["kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3"];

    /// A verl `kl_penalty` / `kl_loss_type` name without its `+`. verl's `k3` is clamped.
    pub fn from_verl_name(name: &str) -> Result<Self> {
        Ok(match name {
            "kl" | "k1" => Self::K1,
            "abs" => Self::Abs,
            "mse" | "k2" => Self::K2,
            "low_var_kl" | "k3" => Self::LowVarKl,
            other => return Err(MathError::unknown("kl_penalty", other, &Self::VERL_NAMES)),
        })
    }

    /// The oxrl name (`k3` is the unclamped estimator here; `low_var_kl` the clamped one).
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "kl" | "k1" => Self::K1,
            "abs" => Self::Abs,
            "mse" | "k2" => Self::K2,
            "k3" => Self::K3,
            "low_var_kl" => Self::LowVarKl,
            other => return Err(MathError::unknown("kl estimator", other, &Self::VERL_NAMES)),
        })
    }
}

impl KlPenalty {
    /// A verl name, `+` suffix allowed (`k3+`, `low_var_kl+`, …).
    pub fn from_verl_name(name: &str) -> Result<Self> {
        let (base, st) = match name.strip_suffix('+') {
            Some(b) => (b, true),
            None => (name, false),
        };
        Ok(Self {
            estimator: KlEstimator::from_verl_name(base)?,
            straight_through: st,
        })
    }
}

/// The estimator's value per token (same shape as the inputs, differentiable in `logprob`).
pub fn kl_estimate(logprob: &Tensor, ref_logprob: &Tensor, est: KlEstimator) -> Result<Tensor> {
    let delta = (logprob - ref_logprob)?;
    Ok(match est {
        KlEstimator::K1 => delta,
        KlEstimator::Abs => delta.abs()?,
        KlEstimator::K2 => (delta.sqr()? * 0.5)?,
        KlEstimator::K3 => {
            // e^{-δ} − 1 + δ
            ((delta.neg()?.exp()? - 1.0)? + &delta)?
        }
        KlEstimator::LowVarKl => {
            let kl = delta.neg()?.clamp(-20.0, 20.0)?;
            ((kl.exp()? - &kl)? - 1.0)?.clamp(-10.0, 10.0)?
        }
    })
}

/// A KL penalty per token: the estimate, or with `straight_through` its value carrying k2's
/// gradient (`k2 − detach(k2) + detach(estimate)`). `k2+` is plain k2.
pub fn kl_penalty(logprob: &Tensor, ref_logprob: &Tensor, penalty: KlPenalty) -> Result<Tensor> {
    let forward = kl_estimate(logprob, ref_logprob, penalty.estimator)?;
    if !penalty.straight_through || penalty.estimator == KlEstimator::K2 {
        return Ok(forward);
    }
    let k2 = kl_estimate(logprob, ref_logprob, KlEstimator::K2)?;
    Ok(((&k2 - k2.detach())? + forward.detach())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn estimators_by_hand() {
        let lp = Tensor::new(&[-1.0f64, -30.0], &Device::Cpu).unwrap();
        let rf = Tensor::new(&[-1.5f64, -1.0], &Device::Cpu).unwrap();
        let v = |e| kl_estimate(&lp, &rf, e).unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(v(KlEstimator::K1), vec![0.5, -29.0]);
        assert_eq!(v(KlEstimator::Abs), vec![0.5, 29.0]);
        let k3 = v(KlEstimator::K3);
        assert!((k3[0] - ((-0.5f64).exp() - 1.0 + 0.5)).abs() < 1e-15);
        assert!((k3[1] - (29.0f64.exp() - 1.0 - 29.0)).abs() < 1e-3);
        // clamped: δ_ref = 29 → 20, value clamped to 10
        assert_eq!(v(KlEstimator::LowVarKl)[1], 10.0);
    }
}
