//! CISPO (MiniMax-M1, "Clipped IS-weight Policy Optimization"): the policy gradient weighted by
//! a clipped, detached importance ratio, L = −sg[clip(r)]·A·log π_θ. Every token keeps a
//! gradient; the clip only bounds its weight.
//!
//! The anchors clip differently: TRL caps r at `epsilon_high` itself (no lower bound, and with
//! `epsilon_high` unset at `epsilon`, i.e. 0.2 by default); verl clamps r to [1 − low, 1 + high].
//! Both are [`CispoBounds`].

use candle_core::Tensor;

use crate::Result;

/// Raw bounds on the importance weight of CISPO.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CispoBounds {
    /// Lower bound on r (`None`: none; verl: 1 − clip_ratio_low).
    pub ratio_min: Option<f64>,
    /// Upper bound on r (TRL: `epsilon_high`; verl: 1 + clip_ratio_high).
    pub ratio_max: Option<f64>,
}

/// The clipped weight sg[clip(r)] (detached).
pub fn cispo_weight(ratio: &Tensor, b: &CispoBounds) -> Result<Tensor> {
    let lo = b.ratio_min.unwrap_or(f64::NEG_INFINITY);
    let hi = b.ratio_max.unwrap_or(f64::INFINITY);
    Ok(ratio.detach().clamp(lo, hi)?)
}

/// Per-token CISPO loss −sg[clip(r)]·A·logp, `[B × T]`.
pub fn cispo_loss(ratio: &Tensor, adv: &Tensor, logp: &Tensor, b: &CispoBounds) -> Result<Tensor> {
    let w = cispo_weight(ratio, b)?;
    Ok(((w * adv)? * logp)?.neg()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn weight_is_clipped_and_detached() {
        let lp = Var::new(&[[-1.0f64, -2.0]], &Device::Cpu).unwrap();
        let r = lp.as_tensor().exp().unwrap(); // depends on lp, but the weight must not
        let a = Tensor::new(&[[1.0f64, -1.0]], &Device::Cpu).unwrap();
        let b = CispoBounds {
            ratio_min: Some(0.2),
            ratio_max: Some(0.3),
        };
        let l = cispo_loss(&r, &a, lp.as_tensor(), &b).unwrap();
        let v = l.to_vec2::<f64>().unwrap();
        // weights clip(e^-1 = 0.3679) = 0.3, clip(e^-2 = 0.1353) = 0.2
        assert!((v[0][0] - 0.3).abs() < 1e-12 && (v[0][1] - (-0.4)).abs() < 1e-12);
        let g = l.sum_all().unwrap().backward().unwrap();
        let g = g.get(lp.as_tensor()).unwrap().to_vec2::<f64>().unwrap();
        assert!((g[0][0] + 0.3).abs() < 1e-12 && (g[0][1] - 0.2).abs() < 1e-12);
    }
}
