//! Diagnostics of a policy-loss evaluation (detached, on the host, in f64): the clip fractions
//! TRL and verl log, the approximate KL to the old policy, the reference KL, entropy, and the
//! per-mode quantities (CISPO clip share, VESPO φ, BAPO bounds).
//!
//! TRL and verl define their clip statistics differently, so both are kept under distinct
//! fields: verl's `pg_clipfrac` is the share of tokens where the clipped branch is the active
//! (larger) loss; TRL's `clip_ratio/*` count ratios outside the bounds on the side that the
//! advantage's sign makes binding. verl's means divide by (Σ M + 1e-8), TRL's by max(Σ M, 1).

use candle_core::{DType, Tensor};

use crate::Result;

/// Every metric a policy loss may report; `None` where the mode does not compute it.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct PolicyLossMetrics {
    /// verl `actor/ppo_kl`: masked mean of −ℓ (KL-Cov: of |ℓ|) against the old policy.
    pub approx_kl: Option<f64>,
    /// verl `actor/pg_clipfrac`.
    pub clip_frac: Option<f64>,
    /// verl `actor/pg_clipfrac_lower`: share of negative-advantage tokens hit by the dual clip.
    pub clip_frac_lower: Option<f64>,
    /// TRL `clip_ratio/low_mean`: share of tokens with r < r_min and A < 0.
    pub clip_low_mean: Option<f64>,
    /// TRL `clip_ratio/high_mean`: share of tokens with r > r_max and A > 0.
    pub clip_high_mean: Option<f64>,
    /// TRL `clip_ratio/region_mean`: low or high.
    pub clip_region_mean: Option<f64>,
    /// TRL `clip_ratio/low_min`: smallest per-sequence low-clip share.
    pub clip_low_min: Option<f64>,
    /// TRL `clip_ratio/high_max`: largest per-sequence high-clip share.
    pub clip_high_max: Option<f64>,
    /// TRL `cispo_clip_ratio`: share of tokens with r above CISPO's cap and A > 0.
    pub cispo_clip_frac: Option<f64>,
    /// TRL `vespo/phi_seq_mean`: mean gamma weight φ.
    pub vespo_phi_mean: Option<f64>,
    /// TRL `kl`: masked mean of the (possibly ratio-weighted) KL term to the reference.
    pub kl: Option<f64>,
    /// TRL `entropy`: masked mean of the given token entropies.
    pub entropy: Option<f64>,
    /// BAPO's lower bound after the search.
    pub bapo_c_low: Option<f64>,
    /// BAPO's upper bound after the search.
    pub bapo_c_high: Option<f64>,
    /// BAPO's positive share ρ at those bounds.
    pub bapo_positive_share: Option<f64>,
}

/// A tensor on the host as f64 (flattened, detached).
pub(crate) fn host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.detach()
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?)
}

/// Σ x·m / (Σ m + 1e-8) — verl's `masked_mean`.
pub(crate) fn verl_mean(x: &[f64], m: &[f64]) -> f64 {
    let (s, n) = sums(x, m);
    s / (n + 1e-8)
}

/// Σ x·m / max(Σ m, 1) — TRL's global masked mean.
pub(crate) fn trl_mean(x: &[f64], m: &[f64]) -> f64 {
    let (s, n) = sums(x, m);
    s / n.max(1.0)
}

fn sums(x: &[f64], m: &[f64]) -> (f64, f64) {
    x.iter()
        .zip(m)
        .filter(|(_, &m)| m != 0.0)
        .fold((0.0, 0.0), |(s, n), (x, m)| (s + x * m, n + m))
}

/// Per-row masked means of a `[B × T]` host matrix (NaN for empty rows).
pub(crate) fn row_means(x: &[f64], m: &[f64], cols: usize) -> Vec<f64> {
    x.chunks(cols)
        .zip(m.chunks(cols))
        .map(|(x, m)| {
            let (s, n) = sums(x, m);
            s / n
        })
        .collect()
}

/// Smallest non-NaN value (NaN when none).
pub(crate) fn nanmin(v: &[f64]) -> f64 {
    v.iter()
        .copied()
        .filter(|x| !x.is_nan())
        .fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a })
}

/// Largest non-NaN value (NaN when none).
pub(crate) fn nanmax(v: &[f64]) -> f64 {
    v.iter()
        .copied()
        .filter(|x| !x.is_nan())
        .fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a })
}

/// 1.0 where `f` holds, else 0.0, elementwise over host vectors.
pub(crate) fn indicator(n: usize, f: impl Fn(usize) -> bool) -> Vec<f64> {
    (0..n).map(|i| if f(i) { 1.0 } else { 0.0 }).collect()
}
