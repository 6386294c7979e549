//! SAPO ("Soft Adaptive Policy Optimization"): the hard clip replaced by a smooth gate,
//! L = −f(r)·A with f(r) = σ(τ(r − 1))·4/τ, τ = τ_pos for A > 0 and τ_neg otherwise
//! (f(1) = 2/τ and f′(1) = 1: on policy the gradient is that of r·A). TRL and verl agree, except
//! that TRL holds τ in float32 (see [`super::TrlGrpoArgs::config`]).

use candle_core::Tensor;

use crate::Result;

/// The gate temperatures.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SapoTemperatures {
    /// τ for tokens with A > 0 (TRL `sapo_temperature_pos`, verl `tau_pos`; 1.0).
    pub pos: f64,
    /// τ for tokens with A ≤ 0 (TRL `sapo_temperature_neg`, verl `tau_neg`; 1.05).
    pub neg: f64,
}

impl Default for SapoTemperatures {
    fn default() -> Self {
        Self {
            pos: 1.0,
            neg: 1.05,
        }
    }
}

/// σ(x) = 1 / (1 + e^{−x}) from differentiable basic ops.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok((x.neg()?.exp()? + 1.0)?.recip()?)
}

/// Per-token SAPO loss −σ(τ(r − 1))·(4/τ)·A, `[B × T]`.
pub fn sapo_loss(ratio: &Tensor, adv: &Tensor, tau: &SapoTemperatures) -> Result<Tensor> {
    let pos = adv.gt(0.0)?;
    let tau_pos = Tensor::full(tau.pos, adv.dims(), adv.device())?.to_dtype(adv.dtype())?;
    let tau_neg = Tensor::full(tau.neg, adv.dims(), adv.device())?.to_dtype(adv.dtype())?;
    let taus = pos.where_cond(&tau_pos, &tau_neg)?;
    let gate = (sigmoid(&((ratio - 1.0)? * &taus)?)? * 4.0)?.div(&taus)?;
    Ok((gate * adv)?.neg()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn on_policy_gate_value_and_slope() {
        let r = Tensor::new(&[[1.0f64, 1.0]], &Device::Cpu).unwrap();
        let a = Tensor::new(&[[1.0f64, -1.0]], &Device::Cpu).unwrap();
        let v = sapo_loss(&r, &a, &SapoTemperatures::default())
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        // f(1) = 0.5·4/τ
        assert!((v[0][0] + 2.0).abs() < 1e-12);
        assert!((v[0][1] - 2.0 / 1.05).abs() < 1e-12);
    }
}
