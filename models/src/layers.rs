//! Building blocks of the decoder: trainable parameters, linear layers with optional LoRA
//! adapters, and RMSNorm written with differentiable ops.
//!
//! Every weight is a [`Param`]: a candle `Var` (what the optimizer updates and gradients are read
//! for) plus a detached view of the same storage used when no gradient is wanted, so inference
//! builds no autograd graph.

use crate::error::Result;
use candle_core::{DType, Tensor, Var, D};

/// A named weight: the variable and a graph-free view sharing its storage.
#[derive(Debug, Clone)]
pub struct Param {
    var: Var,
    detached: Tensor,
}

impl Param {
    /// Wraps a tensor as a parameter (the storage is shared, not copied, when contiguous).
    pub fn new(t: Tensor) -> Result<Self> {
        let var = Var::from_tensor(&t)?;
        let detached = var.as_detached_tensor();
        Ok(Self { var, detached })
    }

    /// The tensor to use in a forward pass: tracked when `track` is true, detached otherwise.
    pub fn get(&self, track: bool) -> &Tensor {
        if track {
            self.var.as_tensor()
        } else {
            &self.detached
        }
    }

    /// The variable (for gradients and optimizer updates).
    pub fn var(&self) -> &Var {
        &self.var
    }
}

/// A LoRA adapter on one linear layer: `y += scale · (x Aᵀ) Bᵀ`.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    /// Down projection `[rank, in]`.
    pub a: Param,
    /// Up projection `[out, rank]`.
    pub b: Param,
    /// `alpha / rank`.
    pub scale: f64,
}

/// How a forward pass treats parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardMode {
    /// Build the autograd graph for trainable parameters.
    pub track: bool,
    /// Apply LoRA adapters (false evaluates the base model, i.e. the reference policy).
    pub adapters: bool,
    /// The inference step: products of at most [`crate::xwt::MAX_ROWS`] rows take the unpacked
    /// `xwt` kernel. The training forward (with or without a graph) keeps candle's matmul, so
    /// its numbers do not depend on how a batch is split into micro-batches.
    pub step: bool,
}

impl ForwardMode {
    /// Inference: no graph, adapters on, the step's kernels.
    pub const INFER: Self = Self {
        track: false,
        adapters: true,
        step: true,
    };
}

/// A linear layer `y = x Wᵀ + b` with an optional LoRA adapter.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Weight `[out, in]`.
    pub weight: Param,
    /// Optional bias `[out]`.
    pub bias: Option<Param>,
    /// Optional adapter.
    pub lora: Option<LoraAdapter>,
    /// Whether the base weight and bias are trained (false once LoRA is attached).
    pub base_trainable: bool,
}

impl Linear {
    /// A plain trainable linear layer.
    pub fn new(weight: Param, bias: Option<Param>) -> Self {
        Self {
            weight,
            bias,
            lora: None,
            base_trainable: true,
        }
    }

    /// Applies the layer to `x` of shape `[n, in]` (2-D).
    pub fn forward(&self, x: &Tensor, mode: ForwardMode) -> Result<Tensor> {
        let track_base = mode.track && self.base_trainable;
        let w = self.weight.get(track_base);
        let mut y = if mode.step && !mode.track && crate::xwt::applies(x, w) {
            crate::xwt::matmul_xwt(x, w)?
        } else {
            x.matmul(&w.t()?)?
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b.get(track_base))?;
        }
        if mode.adapters {
            if let Some(l) = &self.lora {
                let a = l.a.get(mode.track);
                let b = l.b.get(mode.track);
                let delta = x.matmul(&a.t()?)?.matmul(&b.t()?)?;
                y = (y + (delta * l.scale)?)?;
            }
        }
        Ok(y)
    }

    /// The weight with the adapter merged in: `W + scale · B A`.
    pub fn merged_weight(&self) -> Result<Tensor> {
        let w = self.weight.get(false);
        match &self.lora {
            None => Ok(w.clone()),
            Some(l) => {
                let delta = l.b.get(false).matmul(l.a.get(false))?;
                Ok((w + (delta * l.scale)?.to_dtype(w.dtype())?)?)
            }
        }
    }
}

/// Differentiable RMSNorm over the last dimension: the fused kernel of [`crate::ops`] where it
/// applies (f32/f64 on CPU), the composed version otherwise.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    if crate::ops::supported(x) && x.dtype() == weight.dtype() {
        return Ok(crate::ops::rms_norm(x, weight, eps)?);
    }
    rms_norm_composed(x, weight, eps)
}

/// RMSNorm over the last dimension with composed differentiable ops (candle's fused `rms_norm`
/// has no backward on contiguous inputs). Computes in f32 (or f64) like HF, then casts back.
pub fn rms_norm_composed(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let work = if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    let xf = x.to_dtype(work)?;
    let var = xf.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = xf.broadcast_mul(&(var + eps)?.sqrt()?.recip()?)?;
    Ok(normed.to_dtype(dtype)?.broadcast_mul(weight)?)
}

/// The same RMSNorm through candle's fused kernel: inference only (no gradient).
pub fn rms_norm_fused(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    Ok(candle_nn::ops::rms_norm(
        &x.contiguous()?,
        weight,
        eps as f32,
    )?)
}
