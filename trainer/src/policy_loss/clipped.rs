//! The clipped surrogate of PPO / GRPO / DAPO / GSPO, per token:
//! L = −min(r·A, clip(r, r_min, r_max)·A), with two optional refinements for large ratios:
//!
//! - `ratio_cap` (TRL `delta`, "two-sided" GRPO): the unclipped branch uses min(r, δ), so
//!   L = −min(min(r, δ)·A, clip(r)·A) for every sign of A.
//! - `dual_clip` (verl `clip_ratio_c`, Ye et al. 2019): for A < 0 the loss is further capped,
//!   L ← min(L, −c·A).
//!
//! For δ = c ≥ r_max the two coincide (both bound the loss of a negative-advantage token by −c·A);
//! they differ when δ < r_max, where only the TRL form also caps positive-advantage tokens.
//! Clip bounds are raw ratio bounds: PPO's ε_low / ε_high give r_min = 1 − ε_low,
//! r_max = 1 + ε_high; BAPO moves them directly.

use candle_core::Tensor;

use crate::Result;

/// Bounds and caps of one clipped surrogate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipBounds {
    /// Lower ratio bound r_min (1 − ε_low).
    pub ratio_min: f64,
    /// Upper ratio bound r_max (1 + ε_high).
    pub ratio_max: f64,
    /// TRL `delta`: cap of the ratio in the unclipped branch.
    pub ratio_cap: Option<f64>,
    /// verl `clip_ratio_c`: for A < 0 the loss is at most −c·A.
    pub dual_clip: Option<f64>,
}

impl ClipBounds {
    /// PPO bounds from ε_low and ε_high, no caps.
    pub fn from_epsilons(eps_low: f64, eps_high: f64) -> Self {
        Self {
            ratio_min: 1.0 - eps_low,
            ratio_max: 1.0 + eps_high,
            ratio_cap: None,
            dual_clip: None,
        }
    }
}

/// The pieces of a clipped surrogate that metrics need besides the loss.
pub struct ClippedTerms {
    /// Per-token loss `[B × T]`.
    pub loss: Tensor,
    /// −A·r (verl `pg_losses1`).
    pub unclipped: Tensor,
    /// −A·clip(r) (verl `pg_losses2`).
    pub clipped: Tensor,
    /// max(−A·r, −A·clip(r)) before the dual clip (verl `clip_pg_losses1`).
    pub pessimistic: Tensor,
}

/// Per-token clipped surrogate loss (see the module doc); `ratio` and `adv` are `[B × T]`.
pub fn clipped_surrogate(ratio: &Tensor, adv: &Tensor, b: &ClipBounds) -> Result<ClippedTerms> {
    let neg_adv = adv.neg()?;
    let clipped_ratio = ratio.clamp(b.ratio_min, b.ratio_max)?;
    let unclipped = (&neg_adv * ratio)?;
    let clipped = (&neg_adv * &clipped_ratio)?;
    let capped_unclipped = match b.ratio_cap {
        Some(d) => (&neg_adv * ratio.clamp(f64::NEG_INFINITY, d)?)?,
        None => unclipped.clone(),
    };
    // −min(x·A, y·A) = max(−x·A, −y·A)
    let pessimistic_capped = capped_unclipped.maximum(&clipped)?;
    let pessimistic = match b.ratio_cap {
        Some(_) => unclipped.maximum(&clipped)?,
        None => pessimistic_capped.clone(),
    };
    let loss = match b.dual_clip {
        Some(c) => {
            let cap = (&neg_adv * c)?;
            let dual = pessimistic_capped.minimum(&cap)?;
            adv.lt(0.0)?.where_cond(&dual, &pessimistic_capped)?
        }
        None => pessimistic_capped,
    };
    Ok(ClippedTerms {
        loss,
        unclipped,
        clipped,
        pessimistic,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f64]) -> Tensor {
        Tensor::new(v, &Device::Cpu)
            .unwrap()
            .reshape((1, v.len()))
            .unwrap()
    }

    #[test]
    fn clip_dual_clip_and_delta_by_hand() {
        let r = t(&[1.5, 0.5, 5.0, 1.0]);
        let a = t(&[1.0, -1.0, -1.0, 2.0]);
        let b = ClipBounds::from_epsilons(0.2, 0.2);
        let l = clipped_surrogate(&r, &a, &b)
            .unwrap()
            .loss
            .to_vec2::<f64>()
            .unwrap();
        // −min(1.5, 1.2) = −1.2; −min(−0.5, −0.8) = 0.8; −min(−5, −1.2) = 5; −2
        assert_eq!(l[0], vec![-1.2, 0.8, 5.0, -2.0]);
        let dual = ClipBounds {
            dual_clip: Some(3.0),
            ..b
        };
        let l = clipped_surrogate(&r, &a, &dual)
            .unwrap()
            .loss
            .to_vec2::<f64>()
            .unwrap();
        assert_eq!(l[0], vec![-1.2, 0.8, 3.0, -2.0]);
        let delta = ClipBounds {
            ratio_cap: Some(3.0),
            ..b
        };
        let l = clipped_surrogate(&r, &a, &delta)
            .unwrap()
            .loss
            .to_vec2::<f64>()
            .unwrap();
        assert_eq!(l[0], vec![-1.2, 0.8, 3.0, -2.0]);
    }
}
