//! Importance ratios between the policy being trained and the policy that produced the samples:
//! per token (PPO, GRPO), per sequence as the geometric mean of the token ratios (GSPO), and the
//! log-ratio clamps the anchors apply for numerical safety.

use candle_core::Tensor;

use crate::Result;

/// Where the importance ratio lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RatioLevel {
    /// r_t = π_θ(y_t) / π_old(y_t), one ratio per token.
    #[default]
    Token,
    /// GSPO: s_i = exp(mean_t ℓ_it) over the completion's valid tokens, shared by its tokens.
    Sequence,
}

impl RatioLevel {
    /// TRL's `importance_sampling_level` names (`token`, `sequence`).
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "token" => Ok(Self::Token),
            "sequence" => Ok(Self::Sequence),
            other => Err(crate::MathError::unknown(
                "importance_sampling_level",
                other,
                &["token", "sequence"],
            )),
        }
    }
}

/// ℓ = logp − old_logp, clamped to [−c, c] when `clamp` is given (verl clamps at 20).
pub fn token_log_ratio(logp: &Tensor, old_logp: &Tensor, clamp: Option<f64>) -> Result<Tensor> {
    let l = (logp - old_logp)?;
    Ok(match clamp {
        Some(c) => l.clamp(-c, c)?,
        None => l,
    })
}

/// Per-sequence mean log-ratio ℓ̄_i = Σ_t M ℓ / max(Σ_t M, 1), broadcast back to `[B × T]`;
/// with `max` the result is clamped from above (verl's GSPO clamps at 10: no gradient beyond).
pub fn sequence_log_ratio(log_ratio: &Tensor, mask: &Tensor, max: Option<f64>) -> Result<Tensor> {
    let counts = mask.sum_keepdim(1)?.clamp(1.0, f64::INFINITY)?;
    let sums = crate::masked::select(log_ratio, mask)?
        .broadcast_mul(mask)?
        .sum_keepdim(1)?;
    let mean = (sums / counts)?;
    let mean = match max {
        Some(m) => mean.clamp(f64::NEG_INFINITY, m)?,
        None => mean,
    };
    Ok(mean.broadcast_as(log_ratio.dims())?.contiguous()?)
}

/// The log-ratio at `level`: token ℓ (optionally clamped), or the sequence mean broadcast.
pub fn log_ratio(
    logp: &Tensor,
    old_logp: &Tensor,
    mask: &Tensor,
    level: RatioLevel,
    token_clamp: Option<f64>,
    sequence_max: Option<f64>,
) -> Result<Tensor> {
    let l = token_log_ratio(logp, old_logp, token_clamp)?;
    match level {
        RatioLevel::Token => Ok(l),
        RatioLevel::Sequence => sequence_log_ratio(&l, mask, sequence_max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn sequence_ratio_is_the_geometric_mean_over_valid_tokens() {
        let lp = Tensor::new(&[[-1.0f64, -2.0, -9.0], [-1.0, -1.0, -1.0]], &Device::Cpu).unwrap();
        let old = Tensor::new(&[[-1.5f64, -1.5, 0.0], [-1.0, -1.0, -1.0]], &Device::Cpu).unwrap();
        let m = Tensor::new(&[[1.0f64, 1.0, 0.0], [0.0, 0.0, 0.0]], &Device::Cpu).unwrap();
        let s = log_ratio(&lp, &old, &m, RatioLevel::Sequence, None, None).unwrap();
        let v = s.to_vec2::<f64>().unwrap();
        // (0.5 − 0.5) / 2 = 0; the padded −9 is ignored; an empty row gives 0
        assert_eq!(v, vec![vec![0.0; 3], vec![0.0; 3]]);
        let t = token_log_ratio(&lp, &old, Some(2.0))
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        assert_eq!(t[0], vec![0.5, -0.5, -2.0]);
    }
}
