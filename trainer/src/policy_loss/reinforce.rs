//! The plain policy gradient, L = −A·log π_θ (verl `gpg` and `reinforce`; GPG, "Group Policy
//! Gradient"): no ratio, no clip. A rollout importance weight, when given, multiplies it.

use candle_core::Tensor;

use crate::Result;

/// Per-token loss −A·logp, `[B × T]`.
pub fn reinforce_loss(adv: &Tensor, logp: &Tensor) -> Result<Tensor> {
    Ok((adv * logp)?.neg()?)
}
