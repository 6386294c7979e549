//! The decoder: one implementation of the Llama / Mistral / Qwen2 / Qwen3 transformer with a
//! differentiable training forward and a batched, paged-cache inference step.
//!
//! Both paths run the same weights through the same math and agree to float rounding:
//! - [`Transformer::token_logprobs`] / [`Transformer::logits`] take a right-padded batch of full
//!   sequences and use only ops with a correct backward (manual RMSNorm, `rope_slow`,
//!   `ops::softmax`), so every weight (or every LoRA adapter) receives its gradient;
//! - [`Transformer::step`] appends new tokens of many sequences (prefill chunks or single decode
//!   tokens, each at its own position) to a [`KvCache`] and uses the fused kernels.
//!
//! Attention groups query heads by their key/value head (`[b, kv_heads, group·t, d]`), so GQA needs
//! no copy of keys and values.
//!
//! Two memory savers sit on the training path:
//! - the LM head runs fused with the logprob (and entropy) kernel, chunk by chunk over token rows
//!   ([`crate::ops::linear_logprob`], [`LogitChunks`]), so no `[tokens × vocab]` logits tensor
//!   larger than one chunk is kept for backward;
//! - [`Transformer::group_token_logprobs`] encodes a group's shared prompt once and lets its
//!   completions attend to it (Prefix Grouper), with the same values and gradients as separate
//!   `prompt + completion` forwards.
//!
//! The code is split by job: [`params`] builds the model from HF tensors and names, exports and
//! swaps its weights and attaches LoRA; [`train`] is the training forward over a padded batch,
//! [`train_layer`] its differentiable layer (optionally behind a shared prefix), [`head`] the LM
//! head turned into logprobs, [`prefix_group`] the shared-prefix forward; [`step`] the inference
//! step. This file holds the weights' layout and the helpers both paths share.

mod head;
mod params;
mod prefix_group;
mod step;
mod train;
mod train_layer;

pub use prefix_group::GroupLogprobs;
pub use step::{StepLogits, StepSeq};
pub use train::{LogitChunks, TokenLogprobs, TrainForward};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::layers::{ForwardMode, Linear, Param};
use crate::names;
use crate::rope::Rope;
use candle_core::{DType, Device, Tensor};

/// One decoder layer's weights.
#[derive(Debug, Clone)]
struct Layer {
    input_norm: Param,
    post_norm: Param,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Param>,
    k_norm: Option<Param>,
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Layer {
    /// The norm weights of layer `l` with their HF names: input, post-attention, then Qwen3's
    /// q/k norms when present.
    fn norms(&self, l: usize) -> Vec<(String, &Param)> {
        let mut out = vec![
            (names::layer_weight(l, names::INPUT_NORM), &self.input_norm),
            (names::layer_weight(l, names::POST_NORM), &self.post_norm),
        ];
        let qk = [(names::Q_NORM, &self.q_norm), (names::K_NORM, &self.k_norm)];
        for (module, n) in qk {
            if let Some(n) = n {
                out.push((names::layer_weight(l, module), n));
            }
        }
        out
    }

    fn linears(&self) -> [(&'static str, &Linear); 7] {
        [
            (names::Q_PROJ, &self.q),
            (names::K_PROJ, &self.k),
            (names::V_PROJ, &self.v),
            (names::O_PROJ, &self.o),
            (names::GATE_PROJ, &self.gate),
            (names::UP_PROJ, &self.up),
            (names::DOWN_PROJ, &self.down),
        ]
    }

    fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 7] {
        [
            (names::Q_PROJ, &mut self.q),
            (names::K_PROJ, &mut self.k),
            (names::V_PROJ, &mut self.v),
            (names::O_PROJ, &mut self.o),
            (names::GATE_PROJ, &mut self.gate),
            (names::UP_PROJ, &mut self.up),
            (names::DOWN_PROJ, &mut self.down),
        ]
    }
}

/// A decoder-only transformer policy.
#[derive(Debug, Clone)]
pub struct Transformer {
    cfg: ModelConfig,
    dtype: DType,
    device: Device,
    embed: Param,
    layers: Vec<Layer>,
    norm: Param,
    /// `None` when the LM head is tied to the embedding.
    lm_head: Option<Linear>,
    rope: Rope,
    base_trainable: bool,
}

impl Transformer {
    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype logprobs are computed in: f64 for f64 models, f32 otherwise.
    fn work_dtype(&self) -> DType {
        if self.dtype == DType::F64 {
            DType::F64
        } else {
            DType::F32
        }
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            return Err(ModelError::Input(format!(
                "token id {bad} is out of range for vocabulary size {}",
                self.cfg.vocab_size
            )));
        }
        Ok(())
    }

    fn embed_tokens(&self, ids: &[u32], track: bool) -> Result<Tensor> {
        let idx = Tensor::from_slice(ids, ids.len(), &self.device)?;
        Ok(self
            .embed
            .get(track && self.base_trainable)
            .index_select(&idx, 0)?)
    }

    fn lm_logits(&self, hidden: &Tensor, mode: ForwardMode) -> Result<Tensor> {
        let logits = match &self.lm_head {
            Some(head) => head.forward(hidden, mode)?,
            None => {
                let w = self.embed.get(mode.track && self.base_trainable);
                if !mode.track && crate::gemv::applies(hidden, w) {
                    crate::gemv::matmul_xwt(hidden, w)?
                } else {
                    hidden.matmul(&w.t()?)?
                }
            }
        };
        Ok(logits)
    }
}
