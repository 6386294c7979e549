//! Rotary position embeddings (HF "rotate half" layout) with linear and Llama-3 frequency scaling.
//!
//! Angles are computed on the host for exactly the positions needed, so sequences in one batch may
//! sit at different positions (inference) and no table of `max_position_embeddings` rows is kept.

use crate::config::{ModelConfig, RopeScaling};
use crate::error::Result;
use candle_core::{DType, Device, Tensor, D};

/// Inverse frequencies of one model, after scaling.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f64>,
}

impl Rope {
    /// Computes the (scaled) inverse frequencies for a config.
    pub fn new(cfg: &ModelConfig) -> Self {
        let d = cfg.head_dim;
        let base: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / cfg.rope_theta.powf((2 * i) as f64 / d as f64))
            .collect();
        let inv_freq = match &cfg.rope_scaling {
            None => base,
            Some(RopeScaling::Linear { factor }) => base.iter().map(|f| f / factor).collect(),
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                let old = *original_max_position_embeddings as f64;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        };
        Self { inv_freq }
    }

    /// Host-side `(cos, sin)`, row-major `[positions.len(), head_dim / 2]`.
    pub fn angles(&self, positions: &[usize]) -> (Vec<f64>, Vec<f64>) {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in &self.inv_freq {
                // HF computes the angle in f32; doing the same keeps long positions bit-close.
                let angle = (p as f32 * f as f32) as f64;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        (cos, sin)
    }

    /// `(cos, sin)` of shape `[positions.len(), head_dim / 2]` for the given positions.
    pub fn cos_sin(
        &self,
        positions: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let (cos, sin) = self.angles(positions);
        let shape = (positions.len(), half);
        let cos = Tensor::from_vec(cos, shape, device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, shape, device)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }
}

/// Differentiable rotary embedding of `x` `[b, h, t, d]` with `cos`/`sin` `[t, d/2]` shared by the
/// batch (training path).
pub fn apply_rope_train(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::rotary_emb::rope_slow(x, cos, sin)?)
}

/// Differentiable rotary embedding of `x` `[b, h, t, d]` with per-row `cos`/`sin` `[b, t, d/2]`
/// (training path, each row at its own positions), composed of candle ops.
pub fn apply_rope_train_rows(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let cos = Tensor::cat(&[cos, cos], D::Minus1)?.unsqueeze(1)?;
    let sin = Tensor::cat(&[sin, sin], D::Minus1)?.unsqueeze(1)?;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    Ok((x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?)
}

/// Fused rotary embedding of `x` `[b, h, t, d]` with per-sequence `cos`/`sin` `[b, t, d/2]`
/// (inference path; no gradient).
pub fn apply_rope_infer(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)?)
}
