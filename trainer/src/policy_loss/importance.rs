//! Rollout importance-sampling correction: the samples came from the inference engine's policy
//! (π_rollout: vLLM, oxrl's own rollout server, possibly in lower precision), the loss is written
//! for the trainer's π_old, so each token's loss is multiplied by a detached weight
//! ρ = π_old / π_rollout, per token or per sequence (the product over its valid tokens), either
//! truncated to [C_min, C_max] (TIS) or set to 0 outside that range (MIS, masking).
//!
//! TRL's `vllm_importance_sampling_mode` (`token_truncate`, `token_mask`, `sequence_truncate`,
//! `sequence_mask`, with `vllm_importance_sampling_clip_min` / `_clip_max`) and verl's
//! `rollout_is` (`token` / `sequence`, truncated above at `rollout_is_threshold`, the log-ratio
//! clamped to ±20, optional batch normalisation to mean 1) are both [`RolloutCorrection`]s.
//! Padded positions get weight 1 (the loss is masked there anyway); TRL leaves them so.

use candle_core::Tensor;

use crate::{MathError, Result};

/// Per token or per sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IsLevel {
    /// ρ_t = exp(ℓ_t).
    Token,
    /// ρ_i = exp(Σ_t M ℓ_t), shared by the sequence's tokens.
    Sequence,
}

/// What happens to weights outside [C_min, C_max].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IsAction {
    /// Clamp them into the range (truncated IS).
    Truncate,
    /// Set them to 0 (masked IS: the token or sequence is dropped).
    Mask,
}

/// A rollout correction.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutCorrection {
    /// Token or sequence weights.
    pub level: IsLevel,
    /// Truncate or mask.
    pub action: IsAction,
    /// C_min (`None`: no lower bound).
    #[serde(default)]
    pub min: Option<f64>,
    /// C_max (`None`: no upper bound).
    #[serde(default)]
    pub max: Option<f64>,
    /// Clamp of the log-weight before exponentiating (verl: 20; TRL: none).
    #[serde(default)]
    pub log_clamp: Option<f64>,
    /// Divide the weights by their mean over valid tokens (token level) or sequences (verl
    /// `rollout_is_batch_normalize`).
    #[serde(default)]
    pub batch_normalize: bool,
}

impl RolloutCorrection {
    /// TRL's `vllm_importance_sampling_mode` with its clip bounds (TRL default max 3.0).
    pub fn from_trl(mode: &str, min: Option<f64>, max: Option<f64>) -> Result<Self> {
        let (level, action) = match mode {
            "token_truncate" => (IsLevel::Token, IsAction::Truncate),
            "token_mask" => (IsLevel::Token, IsAction::Mask),
            "sequence_truncate" => (IsLevel::Sequence, IsAction::Truncate),
            "sequence_mask" => (IsLevel::Sequence, IsAction::Mask),
            other => {
                return Err(MathError::unknown(
                    "vllm_importance_sampling_mode",
                    other,
                    &[
                        "token_truncate",
                        "token_mask",
                        "sequence_truncate",
                        "sequence_mask",
                    ],
                ))
            }
        };
        Ok(Self {
            level,
            action,
            min,
            max,
            log_clamp: None,
            batch_normalize: false,
        })
    }

    /// verl's `rollout_is` (`token` | `sequence`) truncated at `threshold` (default 2.0).
    pub fn from_verl(level: &str, threshold: f64, batch_normalize: bool) -> Result<Self> {
        let level = match level {
            "token" => IsLevel::Token,
            "sequence" => IsLevel::Sequence,
            other => {
                return Err(MathError::unknown(
                    "rollout_is",
                    other,
                    &["token", "sequence"],
                ))
            }
        };
        Ok(Self {
            level,
            action: IsAction::Truncate,
            min: None,
            max: Some(threshold),
            log_clamp: Some(20.0),
            batch_normalize,
        })
    }
}

/// The detached weights `[B × T]` from the trainer's `old_logp` and the engine's `rollout_logp`.
pub fn rollout_weights(
    old_logp: &Tensor,
    rollout_logp: &Tensor,
    mask: &Tensor,
    c: &RolloutCorrection,
) -> Result<Tensor> {
    if old_logp.dims() != rollout_logp.dims() {
        return Err(MathError::Shape(format!(
            "old logprobs {:?} vs rollout logprobs {:?}",
            old_logp.dims(),
            rollout_logp.dims()
        )));
    }
    let diff = crate::masked::select(&(old_logp.detach() - rollout_logp.detach())?, mask)?
        .broadcast_mul(mask)?;
    let log_w = match c.level {
        IsLevel::Token => diff,
        IsLevel::Sequence => diff
            .sum_keepdim(1)?
            .broadcast_as(mask.dims())?
            .contiguous()?,
    };
    let log_w = match c.log_clamp {
        Some(b) => log_w.clamp(-b, b)?,
        None => log_w,
    };
    let w = log_w.exp()?;
    let lo = c.min.unwrap_or(f64::NEG_INFINITY);
    let hi = c.max.unwrap_or(f64::INFINITY);
    let mut w = match c.action {
        IsAction::Truncate => w.clamp(lo, hi)?,
        IsAction::Mask => {
            let inside = (w.ge(lo)?.to_dtype(w.dtype())? * w.le(hi)?.to_dtype(w.dtype())?)?;
            (w * inside)?
        }
    };
    if c.batch_normalize {
        let mean = match c.level {
            IsLevel::Token => {
                let n = crate::masked::mask_total(mask)?;
                crate::masked::masked_sum(&w, mask)?
                    .to_dtype(candle_core::DType::F64)?
                    .to_scalar::<f64>()?
                    / (n + 1e-8)
            }
            IsLevel::Sequence => {
                let counts = crate::masked::mask_row_counts(mask)?;
                let rows = crate::masked::masked_row_sum(&w, mask)?
                    .to_dtype(candle_core::DType::F64)?
                    .to_vec1::<f64>()?;
                let valid: Vec<f64> = rows
                    .iter()
                    .zip(&counts)
                    .filter(|(_, &n)| n > 0.0)
                    .map(|(s, n)| s / (n + 1e-8))
                    .collect();
                valid.iter().sum::<f64>() / (valid.len() as f64).max(1e-8)
            }
        };
        if mean > 1e-8 {
            w = (w / mean)?;
        }
    }
    Ok(w.detach())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn token_and_sequence_weights_truncate_and_mask() {
        let d = &Device::Cpu;
        let old = Tensor::new(&[[-1.0f64, -1.0, -5.0]], d).unwrap();
        let roll = Tensor::new(&[[-2.0f64, -0.5, 0.0]], d).unwrap();
        let m = Tensor::new(&[[1.0f64, 1.0, 0.0]], d).unwrap();
        let c = RolloutCorrection::from_trl("token_truncate", None, Some(2.0)).unwrap();
        let w = rollout_weights(&old, &roll, &m, &c)
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        assert_eq!(w[0][0], 2.0);
        assert!((w[0][1] - (-0.5f64).exp()).abs() < 1e-12);
        assert_eq!(w[0][2], 1.0);
        let c = RolloutCorrection::from_trl("sequence_mask", Some(0.5), Some(3.0)).unwrap();
        let w = rollout_weights(&old, &roll, &m, &c)
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        // Σ ℓ = 1 − 0.5 = 0.5: e^0.5 = 1.6487 inside the range
        assert!((w[0][0] - 0.5f64.exp()).abs() < 1e-12 && w[0][0] == w[0][2]);
        let c = RolloutCorrection::from_trl("token_mask", Some(0.7), Some(2.0)).unwrap();
        let w = rollout_weights(&old, &roll, &m, &c)
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        assert_eq!(w[0][0], 0.0);
        assert_eq!(w[0][1], 0.0);
    }
}
