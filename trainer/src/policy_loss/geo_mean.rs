//! GMPO ("Geometric-Mean Policy Optimization", verl `geo_mean`): the clipped surrogate of the
//! geometric mean of token ratios, one term per sequence:
//! ℓ̃_t = sgn(A)·min(sgn(A)·ℓ_t, sgn(A)·clamp(ℓ_t, −ε_low, ε_high)),
//! r_i = exp(Σ_t M ℓ̃_t / (n_i + 1e-8)), Ā_i = Σ_t M A_t / (n_i + 1e-8), L_i = −Ā_i·r_i·w_i,
//! and the loss is the plain mean of L_i over all rows (verl ignores `loss_agg_mode` here).
//! w_i is the geometric mean of a rollout importance weight over the sequence, when given.

use candle_core::Tensor;

use crate::Result;

/// What GMPO computes besides the loss (for the clip metrics).
pub struct GeoMeanTerms {
    /// The scalar loss.
    pub loss: Tensor,
    /// 1 where ℓ_t was outside [−ε_low, ε_high], else 0 (`[B × T]`, detached).
    pub clipped: Tensor,
}

/// GMPO loss; `log_ratio`, `adv`, `mask` are `[B × T]`; `is_weights` an optional `[B × T]`
/// rollout importance weight.
pub fn geo_mean_loss(
    log_ratio: &Tensor,
    adv: &Tensor,
    mask: &Tensor,
    eps_low: f64,
    eps_high: f64,
    is_weights: Option<&Tensor>,
) -> Result<GeoMeanTerms> {
    let sgn = (adv.gt(0.0)?.to_dtype(adv.dtype())? - adv.lt(0.0)?.to_dtype(adv.dtype())?)?;
    let clamped = log_ratio.clamp(-eps_low, eps_high)?;
    let lmin = (&sgn * log_ratio)?.minimum(&(&sgn * &clamped)?)?;
    let lmin = (&sgn * lmin)?;
    let n = (mask.sum(1)? + 1e-8)?;
    let seq_log = (crate::masked::select(&lmin, mask)? * mask)?
        .sum(1)?
        .div(&n)?;
    let ratio = seq_log.exp()?;
    let seq_adv = (crate::masked::select(adv, mask)? * mask)?
        .sum(1)?
        .div(&n)?;
    let mut per_seq = (seq_adv * ratio)?.neg()?;
    if let Some(w) = is_weights {
        let lw = ((w.detach() + 1e-10)?.log()? * mask)?.sum(1)?.div(&n)?;
        per_seq = (per_seq * lw.exp()?)?;
    }
    let loss = per_seq.mean_all()?;
    let clipped = log_ratio.ne(&clamped)?.to_dtype(adv.dtype())?.detach();
    Ok(GeoMeanTerms { loss, clipped })
}
