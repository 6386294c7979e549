//! VESPO (TRL `loss_type="vespo"`): a REINFORCE loss weighted per sequence by a detached gamma
//! function of the sequence importance weight, L = −φ(w)·A·log π_θ with
//! φ(w) = e^λ·w^k·e^{−λw} (so φ(1) = 1), computed in log space:
//! log w = clamp(Σ_t M·clamp(ℓ_t, ±20) + Σ_t clamp(log ρ_t, log 1e-8, 20), log 1e-8, 20), where
//! ρ is the rollout importance ratio when one is given (summed over every position, as TRL does).
//! (k, λ) are (k_pos, λ_pos) for A ≥ 0 and (k_neg, λ_neg) otherwise; λ is floored at 1e-4 and a
//! non-finite φ becomes 0.

use candle_core::Tensor;

use crate::Result;

/// The gamma-weight parameters (TRL's `vespo_*` fields and defaults).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VespoParams {
    /// Power k for A ≥ 0 (2.0).
    pub k_pos: f64,
    /// Decay λ for A ≥ 0 (3.0).
    pub lambda_pos: f64,
    /// Power k for A < 0 (3.0).
    pub k_neg: f64,
    /// Decay λ for A < 0 (2.0).
    pub lambda_neg: f64,
}

impl Default for VespoParams {
    fn default() -> Self {
        Self {
            k_pos: 2.0,
            lambda_pos: 3.0,
            k_neg: 3.0,
            lambda_neg: 2.0,
        }
    }
}

/// φ per sequence, broadcast to `[B × T]` (detached). `adv` is `[B × T]`; `rollout_ratio`, when
/// given, is the rollout importance ratio `[B × T]` or `[B × 1]`.
pub fn gamma_weights(
    log_ratio: &Tensor,
    adv: &Tensor,
    mask: &Tensor,
    rollout_ratio: Option<&Tensor>,
    p: &VespoParams,
) -> Result<Tensor> {
    let floor = 1e-8f64.ln();
    let l = log_ratio.detach().clamp(-20.0, 20.0)?;
    let mut seq = crate::masked::select(&l, mask)?
        .broadcast_mul(mask)?
        .sum_keepdim(1)?;
    if let Some(rho) = rollout_ratio {
        let lr = rho.detach().log()?.clamp(floor, 20.0)?.sum_keepdim(1)?;
        seq = (seq + lr)?;
    }
    let log_w = seq.clamp(floor, 20.0)?.broadcast_as(adv.dims())?;
    let w = log_w.exp()?;
    let nonneg = adv.ge(0.0)?;
    let full = |x: f64| -> Result<Tensor> {
        Ok(Tensor::full(x, adv.dims(), adv.device())?.to_dtype(adv.dtype())?)
    };
    let k = nonneg.where_cond(&full(p.k_pos)?, &full(p.k_neg)?)?;
    let lam = nonneg.where_cond(
        &full(p.lambda_pos.max(1e-4))?,
        &full(p.lambda_neg.max(1e-4))?,
    )?;
    let log_phi = ((&lam + (k * &log_w)?)? - (&lam * w)?)?;
    let phi = log_phi.exp()?;
    // nan / ±inf → 0
    let finite = phi.eq(&phi)?.mul(&phi.abs()?.lt(f64::INFINITY)?)?;
    Ok(finite.where_cond(&phi, &phi.zeros_like()?)?.detach())
}

/// Per-token VESPO loss −φ·A·logp.
pub fn vespo_loss(phi: &Tensor, adv: &Tensor, logp: &Tensor) -> Result<Tensor> {
    Ok(((phi * adv)? * logp)?.neg()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn phi_is_one_on_policy_and_matches_the_formula_off_policy() {
        let lr = Tensor::new(&[[0.0f64, 0.0], [0.1, 0.2]], &Device::Cpu).unwrap();
        let a = Tensor::new(&[[1.0f64, 1.0], [-1.0, -1.0]], &Device::Cpu).unwrap();
        let m = Tensor::new(&[[1.0f64, 1.0], [1.0, 0.0]], &Device::Cpu).unwrap();
        let phi = gamma_weights(&lr, &a, &m, None, &VespoParams::default()).unwrap();
        let v = phi.to_vec2::<f64>().unwrap();
        assert!((v[0][0] - 1.0).abs() < 1e-12);
        let w = 0.1f64.exp();
        let want = (2.0 + 3.0 * 0.1 - 2.0 * w).exp();
        assert!((v[1][1] - want).abs() < 1e-12, "{} vs {want}", v[1][1]);
    }
}
