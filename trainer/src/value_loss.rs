//! The PPO critic loss: a squared error on the returns, with the new value prediction clipped to
//! a band around the rollout-time value (the pessimistic max of the clipped and unclipped errors).
//!
//! V_clip = clip(V, V_old − ε_v, V_old + ε_v); L = ½ · agg(max((V − G)², (V_clip − G)²)) — verl's
//! `compute_value_loss` and TRL PPO's value loss (TRL: token-mean, ε_v = 0.2; verl: ε_v = 0.5, any
//! aggregation). `clipfrac` is the masked share of tokens where the clipped error is the larger.

use candle_core::Tensor;

use crate::aggregation::{aggregate, AggregationNorm, LossAggregation};
use crate::masked::{masked_mean, select};
use crate::{MathError, Result};

/// The value loss and its clip fraction.
#[derive(Debug, Clone)]
pub struct ValueLoss {
    /// ½ · the aggregated clipped squared error (rank 0, differentiable in `vpreds`).
    pub loss: Tensor,
    /// Σ M·[(V_clip − G)² > (V − G)²] / (Σ M + 1e-8) (rank 0, no gradient).
    pub clipfrac: Tensor,
}

/// The clipped value loss for predictions `vpreds` against `returns`, clipped around `values`
/// (all `[B × T]`) by `cliprange_value`, aggregated under `response_mask` with `mode` / `norm`.
/// Positions outside the mask may hold anything: they get neither value nor gradient.
pub fn value_loss(
    vpreds: &Tensor,
    returns: &Tensor,
    values: &Tensor,
    response_mask: &Tensor,
    cliprange_value: f64,
    mode: LossAggregation,
    norm: &AggregationNorm,
) -> Result<ValueLoss> {
    for (name, t) in [
        ("returns", returns),
        ("values", values),
        ("response_mask", response_mask),
    ] {
        if t.dims() != vpreds.dims() {
            return Err(MathError::Shape(format!(
                "{name} {:?} vs vpreds {:?}",
                t.dims(),
                vpreds.dims()
            )));
        }
    }
    if cliprange_value.is_nan() || cliprange_value < 0.0 {
        return Err(MathError::InvalidInput(format!(
            "cliprange_value must be ≥ 0, got {cliprange_value}"
        )));
    }
    // Padded positions may hold anything (NaN included): zero them before any arithmetic so that
    // neither the value nor the gradient (0 · NaN) sees them.
    let mask = response_mask.to_dtype(vpreds.dtype())?;
    let vpreds = &select(vpreds, &mask)?;
    let returns = &select(returns, &mask)?;
    let values = &select(values, &mask)?;
    let lo = (values - cliprange_value)?;
    let hi = (values + cliprange_value)?;
    let clipped = vpreds.minimum(&hi)?.maximum(&lo)?;
    let err_plain = (vpreds - returns)?.sqr()?;
    let err_clipped = (clipped - returns)?.sqr()?;
    let worst = err_plain.maximum(&err_clipped)?;
    let loss = (aggregate(&worst, &mask, mode, norm)? * 0.5)?;
    let clipped_more = err_clipped
        .gt(&err_plain)?
        .to_dtype(vpreds.dtype())?
        .detach();
    let clipfrac = masked_mean(&clipped_more, &mask)?.detach();
    Ok(ValueLoss { loss, clipfrac })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn clipped_value_loss_by_hand() {
        let d = Device::Cpu;
        // token 0: V = 1.0 inside [0.8 ± 0.5]: V_clip = V, both errors (1 − 2)² = 1.
        // token 1: V = 2.0, V_old = 0, ε = 0.5 → V_clip = 0.5; G = 1: (1)² vs (0.5)² → plain 1.
        // token 2: V = 2.0, V_old = 0, ε = 0.5 → V_clip = 0.5; G = 3: 1 vs 6.25 → clipped, no grad.
        // token 3: masked out (NaN ignored).
        let v = Var::new(&[[1.0f64, 2.0], [2.0, f64::NAN]], &d).unwrap();
        let g = Tensor::new(&[[2.0f64, 1.0], [3.0, 0.0]], &d).unwrap();
        let old = Tensor::new(&[[0.8f64, 0.0], [0.0, 0.0]], &d).unwrap();
        let m = Tensor::new(&[[1.0f64, 1.0], [1.0, 0.0]], &d).unwrap();
        let out = value_loss(
            v.as_tensor(),
            &g,
            &old,
            &m,
            0.5,
            LossAggregation::TokenMean,
            &AggregationNorm::default(),
        )
        .unwrap();
        let loss = out.loss.to_scalar::<f64>().unwrap();
        assert!(
            (loss - 0.5 * (1.0 + 1.0 + 6.25) / 3.0).abs() < 1e-12,
            "{loss}"
        );
        let cf = out.clipfrac.to_scalar::<f64>().unwrap();
        assert!((cf - 1.0 / 3.0).abs() < 1e-8, "{cf}");
        let grads = out.loss.backward().unwrap();
        let gv = grads.get(&v).unwrap().to_vec2::<f64>().unwrap();
        // d/dV of ½·(V − G)²/3 = (V − G)/3 where the plain error is the max.
        assert!((gv[0][0] - (1.0 - 2.0) / 3.0).abs() < 1e-12, "{gv:?}");
        assert!((gv[0][1] - (2.0 - 1.0) / 3.0).abs() < 1e-12);
        assert_eq!(gv[1][0], 0.0);
        assert_eq!(gv[1][1], 0.0);
    }
}
