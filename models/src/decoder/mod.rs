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
//! - [`Transformer::group_token_logprobs`] (one group) and [`Transformer::groups_token_logprobs`]
//!   (several, batched) encode a group's shared prompt once and let its
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

pub use params::TrainableVar;
pub use prefix_group::{GroupLogprobs, PromptGroup};
pub use step::{StepLogits, StepSeq};
pub use train::{LogitChunks, TokenLogprobs, TrainForward};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::layers::{ForwardMode, Linear, LoraAdapter, Param};
use crate::names;
use crate::packed::PackedLinear;
use crate::rope::Rope;
use candle_core::{DType, Device, Tensor};

/// One decoder layer's weights. q/k/v and gate/up are packed ([`PackedLinear`]): one matmul
/// each in both paths; [`Layer::modules`] is the HF view of them.
#[derive(Debug, Clone)]
struct Layer {
    input_norm: Param,
    post_norm: Param,
    /// `q_proj`, `k_proj`, `v_proj` packed as `[q + 2·kv, hidden]`.
    qkv: PackedLinear,
    o: Linear,
    q_norm: Option<Param>,
    k_norm: Option<Param>,
    /// `gate_proj`, `up_proj` packed as `[2·intermediate, hidden]`.
    gate_up: PackedLinear,
    down: Linear,
}

/// One HF linear module of a layer: a plain linear, or part `i` of a packed one.
#[derive(Debug, Clone, Copy)]
enum Module<'a> {
    Plain(&'a Linear),
    Part(&'a PackedLinear, usize),
}

impl Module<'_> {
    /// The module's weight `[out, in]` (a view, no graph).
    fn weight(&self) -> Result<Tensor> {
        match self {
            Module::Plain(l) => Ok(l.weight.get(false).clone()),
            Module::Part(p, i) => p.part_weight(*i),
        }
    }

    /// The module's bias, if it has one.
    fn bias(&self) -> Result<Option<Tensor>> {
        match self {
            Module::Plain(l) => Ok(l.bias.as_ref().map(|b| b.get(false).clone())),
            Module::Part(p, i) => p.part_bias(*i),
        }
    }

    /// The module's LoRA adapter.
    fn lora(&self) -> Option<&LoraAdapter> {
        match self {
            Module::Plain(l) => l.lora.as_ref(),
            Module::Part(p, i) => p.parts[*i].lora.as_ref(),
        }
    }

    /// The weight with the adapter merged in.
    fn merged_weight(&self) -> Result<Tensor> {
        match self {
            Module::Plain(l) => l.merged_weight(),
            Module::Part(p, i) => p.merged_part_weight(*i),
        }
    }
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

    /// The seven HF linear modules in HF order (q, k, v, o, gate, up, down).
    fn modules(&self) -> Vec<(&'static str, Module<'_>)> {
        let mut out = Vec::with_capacity(7);
        for (i, p) in self.qkv.parts.iter().enumerate() {
            out.push((p.module, Module::Part(&self.qkv, i)));
        }
        out.push((names::O_PROJ, Module::Plain(&self.o)));
        for (i, p) in self.gate_up.parts.iter().enumerate() {
            out.push((p.module, Module::Part(&self.gate_up, i)));
        }
        out.push((names::DOWN_PROJ, Module::Plain(&self.down)));
        out
    }

    /// Each module's adapter slot, in the order of [`Layer::modules`].
    fn lora_slots(&mut self) -> Vec<(&'static str, &mut Option<LoraAdapter>)> {
        let mut out = Vec::with_capacity(7);
        for p in self.qkv.parts.iter_mut() {
            out.push((p.module, &mut p.lora));
        }
        out.push((names::O_PROJ, &mut self.o.lora));
        for p in self.gate_up.parts.iter_mut() {
            out.push((p.module, &mut p.lora));
        }
        out.push((names::DOWN_PROJ, &mut self.down.lora));
        out
    }

    /// `silu(gate(h)) · up(h)` from the packed gate/up projection: one matmul, then the packed
    /// SwiGLU kernel on its `[n, 2·intermediate]` output (f32/f64 on the CPU); with adapters on
    /// gate or up, the parts' outputs with their deltas; composed candle ops elsewhere.
    fn swiglu(&self, h: &Tensor, mode: ForwardMode) -> Result<Tensor> {
        let fused = crate::ops::supported(h);
        if fused && !(mode.adapters && self.gate_up.has_lora()) {
            let gu = self.gate_up.forward_packed(h, mode)?;
            return Ok(crate::ops::packed_swiglu(&gu)?);
        }
        let [gate, up] = self.gate_up.forward::<2>(h, mode)?;
        if fused {
            Ok(crate::ops::swiglu(&gate, &up)?)
        } else {
            Ok((candle_nn::ops::silu(&gate)? * up)?)
        }
    }

    /// Sets whether the base weights of the layer's linears are trained.
    fn set_base_trainable(&mut self, trainable: bool) {
        self.qkv.base_trainable = trainable;
        self.o.base_trainable = trainable;
        self.gate_up.base_trainable = trainable;
        self.down.base_trainable = trainable;
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
                if mode.step && !mode.track && crate::xwt::applies(hidden, w) {
                    crate::xwt::matmul_xwt(hidden, w)?
                } else {
                    hidden.matmul(&w.t()?)?
                }
            }
        };
        Ok(logits)
    }
}
