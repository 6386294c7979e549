//! Entropy of the policy's next-token distribution from its logits, and the entropy term of the
//! loss: H = −Σ_v p_v log p_v with log p = log_softmax(logits), per position, then aggregated over
//! the completion tokens like any per-token loss (verl `compute_entropy_loss`).
//!
//! Computed with differentiable candle ops only (the row max is subtracted as a detached constant,
//! which changes neither the value nor the gradient of log_softmax). Logits must be finite: a
//! `−inf` logit makes 0 · log 0 undefined here as in verl's formula.

use candle_core::{Tensor, D};

use crate::aggregation::{aggregate, AggregationNorm, LossAggregation};
use crate::{MathError, Result};

/// log_softmax over the last dimension, differentiable (same shape as `logits`).
pub fn log_softmax_last(logits: &Tensor) -> Result<Tensor> {
    if logits.rank() == 0 {
        return Err(MathError::Shape(
            "log_softmax needs at least one dimension (the vocabulary)".into(),
        ));
    }
    let shift = logits.max_keepdim(D::Minus1)?.detach();
    let z = logits.broadcast_sub(&shift)?;
    let lse = z.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(z.broadcast_sub(&lse)?)
}

/// Entropy per position of `logits` `[…, V]`: `[…]` (e.g. `[B × T × V]` → `[B × T]`).
pub fn entropy_from_logits(logits: &Tensor) -> Result<Tensor> {
    let logp = log_softmax_last(logits)?;
    Ok((logp.exp()? * &logp)?.sum(D::Minus1)?.neg()?)
}

/// The entropy term and the per-token entropies it aggregates.
#[derive(Debug, Clone)]
pub struct EntropyLoss {
    /// agg(H) under the mask (rank 0). A bonus enters the loss as `− coef · loss`.
    pub loss: Tensor,
    /// H per token, `[B × T]` (every position, masked or not).
    pub entropy: Tensor,
}

/// verl `compute_entropy_loss`: the entropy of `logits` `[B × T × V]` aggregated under
/// `response_mask` `[B × T]` with `mode` / `norm`.
pub fn entropy_loss(
    logits: &Tensor,
    response_mask: &Tensor,
    mode: LossAggregation,
    norm: &AggregationNorm,
) -> Result<EntropyLoss> {
    let (b, t, _) = logits.dims3().map_err(|_| {
        MathError::Shape(format!(
            "entropy_loss needs [B × T × V] logits, got {:?}",
            logits.dims()
        ))
    })?;
    if response_mask.dims() != [b, t] {
        return Err(MathError::Shape(format!(
            "response_mask {:?} vs logits {:?}",
            response_mask.dims(),
            logits.dims()
        )));
    }
    let entropy = entropy_from_logits(logits)?;
    let loss = aggregate(&entropy, response_mask, mode, norm)?;
    Ok(EntropyLoss { loss, entropy })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn entropy_by_hand_and_its_gradient() {
        let d = Device::Cpu;
        // uniform over 4 → ln 4; one-hot-ish [0, −1000] → ≈ 0; shift-invariant at large logits.
        let l = Var::new(
            &[[[1.0f64, 1.0, 1.0, 1.0], [0.0, -1000.0, -1000.0, -1000.0]]],
            &d,
        )
        .unwrap();
        let h = entropy_from_logits(l.as_tensor()).unwrap();
        let h = h.to_vec2::<f64>().unwrap();
        assert!((h[0][0] - 4f64.ln()).abs() < 1e-12);
        assert!(h[0][1].abs() < 1e-12);
        let big = Tensor::new(&[1000.0f64, 1001.0], &d).unwrap();
        let hb = entropy_from_logits(&big)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let p = 1.0 / (1.0 + 1f64.exp());
        assert!((hb - (-(p * p.ln()) - (1.0 - p) * (1.0 - p).ln())).abs() < 1e-12);

        // dH/dl_i = −p_i (log p_i + H): for two logits [0, ln 3], p = [1/4, 3/4].
        let x = Var::new(&[0.0f64, 3f64.ln()], &d).unwrap();
        let hx = entropy_from_logits(x.as_tensor()).unwrap();
        let g = hx
            .backward()
            .unwrap()
            .get(&x)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let (p0, p1) = (0.25f64, 0.75f64);
        let hv = -(p0 * p0.ln() + p1 * p1.ln());
        assert!((g[0] - (-p0 * (p0.ln() + hv))).abs() < 1e-12, "{g:?}");
        assert!((g[1] - (-p1 * (p1.ln() + hv))).abs() < 1e-12);

        let m = Tensor::new(&[[1.0f64, 0.0]], &d).unwrap();
        let out = entropy_loss(
            l.as_tensor(),
            &m,
            LossAggregation::TokenMean,
            &AggregationNorm::default(),
        )
        .unwrap();
        assert!((out.loss.to_scalar::<f64>().unwrap() - 4f64.ln()).abs() < 1e-12);
    }
}
