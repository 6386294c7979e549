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

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::kv_cache::{KvCache, SeqCache};
use crate::layers::{rms_norm, rms_norm_fused, ForwardMode, Linear, LoraAdapter, Param};
use crate::lora::LoraConfig;
use crate::rope::{apply_rope_infer, apply_rope_train, Rope};
use crate::weights::{self, TensorMap};
use candle_core::{DType, Device, IndexOp, Tensor, Var, D};
use std::collections::HashMap;
use std::path::Path;

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
    fn linears(&self) -> [(&'static str, &Linear); 7] {
        [
            ("self_attn.q_proj", &self.q),
            ("self_attn.k_proj", &self.k),
            ("self_attn.v_proj", &self.v),
            ("self_attn.o_proj", &self.o),
            ("mlp.gate_proj", &self.gate),
            ("mlp.up_proj", &self.up),
            ("mlp.down_proj", &self.down),
        ]
    }

    fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 7] {
        [
            ("self_attn.q_proj", &mut self.q),
            ("self_attn.k_proj", &mut self.k),
            ("self_attn.v_proj", &mut self.v),
            ("self_attn.o_proj", &mut self.o),
            ("mlp.gate_proj", &mut self.gate),
            ("mlp.up_proj", &mut self.up),
            ("mlp.down_proj", &mut self.down),
        ]
    }
}

/// New tokens of one sequence for [`Transformer::step`]; they take positions
/// `cache.len() .. cache.len() + tokens.len()`.
#[derive(Debug)]
pub struct StepSeq<'a> {
    /// The sequence's cache (appended to).
    pub cache: &'a mut SeqCache,
    /// Tokens to append (at least one).
    pub tokens: &'a [u32],
}

/// Which logits [`Transformer::step`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepLogits {
    /// `[n_seqs, vocab]`: the logits after each sequence's last new token.
    Last,
    /// `[total new tokens, vocab]`: after every new token, sequences in order.
    All,
}

/// Per-token log-probabilities (and optionally entropies) from the training forward.
#[derive(Debug, Clone)]
pub struct TokenLogprobs {
    /// `[b, t]`: `log p(ids[b,t] | ids[b,<t])` for `1 <= t < len_b`, 0 at `t = 0` and on padding
    /// (f32; f64 for f64 models).
    pub logprobs: Tensor,
    /// `[b, t]`: entropy of the distribution that predicted `ids[b,t]` (same masking), if asked.
    pub entropy: Option<Tensor>,
}

/// Options of the training forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainForward {
    /// Build the autograd graph (false: evaluation only, e.g. the old or reference policy).
    pub track: bool,
    /// Apply LoRA adapters (false: the base model, used as the reference policy).
    pub adapters: bool,
    /// Also return per-token entropies.
    pub entropy: bool,
}

impl Default for TrainForward {
    fn default() -> Self {
        Self {
            track: true,
            adapters: true,
            entropy: false,
        }
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

fn take(map: &mut TensorMap, name: &str, shape: &[usize]) -> Result<Param> {
    let t = map.remove(name).ok_or_else(|| ModelError::MissingTensor {
        name: name.to_string(),
        source_desc: "checkpoint".into(),
    })?;
    if t.dims() != shape {
        return Err(ModelError::ShapeMismatch {
            name: name.to_string(),
            expected: shape.to_vec(),
            actual: t.dims().to_vec(),
        });
    }
    Param::new(t)
}

impl Transformer {
    /// Builds a model from named tensors in HF naming, checking every name and shape. Extra
    /// tensors (e.g. `rotary_emb.inv_freq`) are ignored.
    pub fn from_tensors(
        cfg: ModelConfig,
        mut tensors: TensorMap,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let expected: HashMap<String, Vec<usize>> = cfg.expected_tensors().into_iter().collect();
        for (name, shape) in &expected {
            match tensors.get_mut(name) {
                None => {
                    return Err(ModelError::MissingTensor {
                        name: name.clone(),
                        source_desc: "checkpoint".into(),
                    })
                }
                Some(t) => {
                    if t.dims() != shape.as_slice() {
                        return Err(ModelError::ShapeMismatch {
                            name: name.clone(),
                            expected: shape.clone(),
                            actual: t.dims().to_vec(),
                        });
                    }
                    let moved = t.to_device(device)?.to_dtype(dtype)?;
                    *t = moved;
                }
            }
        }
        let h = cfg.hidden_size;
        let (q, kv, i) = (cfg.q_dim(), cfg.kv_dim(), cfg.intermediate_size);
        let m = &mut tensors;
        let lin = |m: &mut TensorMap,
                   name: String,
                   out: usize,
                   inp: usize,
                   bias: bool|
         -> Result<Linear> {
            let w = take(m, &format!("{name}.weight"), &[out, inp])?;
            let b = if bias {
                Some(take(m, &format!("{name}.bias"), &[out])?)
            } else {
                None
            };
            Ok(Linear::new(w, b))
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let bias = cfg.attention_bias;
            layers.push(Layer {
                input_norm: take(m, &format!("{p}.input_layernorm.weight"), &[h])?,
                post_norm: take(m, &format!("{p}.post_attention_layernorm.weight"), &[h])?,
                q: lin(m, format!("{p}.self_attn.q_proj"), q, h, bias)?,
                k: lin(m, format!("{p}.self_attn.k_proj"), kv, h, bias)?,
                v: lin(m, format!("{p}.self_attn.v_proj"), kv, h, bias)?,
                o: lin(m, format!("{p}.self_attn.o_proj"), h, q, false)?,
                q_norm: if cfg.qk_norm {
                    Some(take(
                        m,
                        &format!("{p}.self_attn.q_norm.weight"),
                        &[cfg.head_dim],
                    )?)
                } else {
                    None
                },
                k_norm: if cfg.qk_norm {
                    Some(take(
                        m,
                        &format!("{p}.self_attn.k_norm.weight"),
                        &[cfg.head_dim],
                    )?)
                } else {
                    None
                },
                gate: lin(m, format!("{p}.mlp.gate_proj"), i, h, false)?,
                up: lin(m, format!("{p}.mlp.up_proj"), i, h, false)?,
                down: lin(m, format!("{p}.mlp.down_proj"), h, i, false)?,
            });
        }
        let embed = take(m, "model.embed_tokens.weight", &[cfg.vocab_size, h])?;
        let norm = take(m, "model.norm.weight", &[h])?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(lin(m, "lm_head".into(), cfg.vocab_size, h, false)?)
        };
        let rope = Rope::new(&cfg);
        Ok(Self {
            cfg,
            dtype,
            device: device.clone(),
            embed,
            layers,
            norm,
            lm_head,
            rope,
            base_trainable: true,
        })
    }

    /// Loads `config.json` and the safetensors weights (single file or sharded) of an HF model
    /// directory.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let cfg = ModelConfig::from_file(&dir.join("config.json"))?;
        let tensors = weights::load_dir(dir, dtype, device)?;
        Self::from_tensors(cfg, tensors, dtype, device)
    }

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

    // ----------------------------------------------------------------------------------------
    // Parameters
    // ----------------------------------------------------------------------------------------

    /// Every base weight in HF naming, with LoRA adapters merged in when `merge_lora` is true.
    pub fn named_tensors(&self, merge_lora: bool) -> Result<TensorMap> {
        let mut out = HashMap::new();
        out.insert(
            "model.embed_tokens.weight".to_string(),
            self.embed.get(false).clone(),
        );
        out.insert(
            "model.norm.weight".to_string(),
            self.norm.get(false).clone(),
        );
        if let Some(head) = &self.lm_head {
            out.insert("lm_head.weight".to_string(), head.weight.get(false).clone());
        }
        for (l, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{l}");
            out.insert(
                format!("{p}.input_layernorm.weight"),
                layer.input_norm.get(false).clone(),
            );
            out.insert(
                format!("{p}.post_attention_layernorm.weight"),
                layer.post_norm.get(false).clone(),
            );
            if let Some(n) = &layer.q_norm {
                out.insert(format!("{p}.self_attn.q_norm.weight"), n.get(false).clone());
            }
            if let Some(n) = &layer.k_norm {
                out.insert(format!("{p}.self_attn.k_norm.weight"), n.get(false).clone());
            }
            for (name, lin) in layer.linears() {
                let w = if merge_lora {
                    lin.merged_weight()?
                } else {
                    lin.weight.get(false).clone()
                };
                out.insert(format!("{p}.{name}.weight"), w);
                if let Some(b) = &lin.bias {
                    out.insert(format!("{p}.{name}.bias"), b.get(false).clone());
                }
            }
        }
        Ok(out)
    }

    /// The LoRA adapter tensors in PEFT naming (`base_model.model.<module>.lora_A.weight`).
    pub fn lora_tensors(&self) -> TensorMap {
        let mut out = HashMap::new();
        for (l, layer) in self.layers.iter().enumerate() {
            for (name, lin) in layer.linears() {
                if let Some(a) = &lin.lora {
                    let p = format!("base_model.model.model.layers.{l}.{name}");
                    out.insert(format!("{p}.lora_A.weight"), a.a.get(false).clone());
                    out.insert(format!("{p}.lora_B.weight"), a.b.get(false).clone());
                }
            }
        }
        out
    }

    /// The parameters a trainer updates, by name: every base weight, or only the LoRA adapters
    /// once they are attached.
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        if self.base_trainable {
            out.push((
                "model.embed_tokens.weight".to_string(),
                self.embed.var().clone(),
            ));
            out.push(("model.norm.weight".to_string(), self.norm.var().clone()));
            if let Some(head) = &self.lm_head {
                out.push(("lm_head.weight".to_string(), head.weight.var().clone()));
            }
        }
        for (l, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{l}");
            if self.base_trainable {
                out.push((
                    format!("{p}.input_layernorm.weight"),
                    layer.input_norm.var().clone(),
                ));
                out.push((
                    format!("{p}.post_attention_layernorm.weight"),
                    layer.post_norm.var().clone(),
                ));
                if let Some(n) = &layer.q_norm {
                    out.push((format!("{p}.self_attn.q_norm.weight"), n.var().clone()));
                }
                if let Some(n) = &layer.k_norm {
                    out.push((format!("{p}.self_attn.k_norm.weight"), n.var().clone()));
                }
            }
            for (name, lin) in layer.linears() {
                if lin.base_trainable {
                    out.push((format!("{p}.{name}.weight"), lin.weight.var().clone()));
                    if let Some(b) = &lin.bias {
                        out.push((format!("{p}.{name}.bias"), b.var().clone()));
                    }
                }
                if let Some(a) = &lin.lora {
                    out.push((format!("{p}.{name}.lora_A.weight"), a.a.var().clone()));
                    out.push((format!("{p}.{name}.lora_B.weight"), a.b.var().clone()));
                }
            }
        }
        out
    }

    /// Attaches LoRA adapters to the target modules and freezes every base weight. `A` is drawn
    /// uniformly in ±1/√in from `seed`, `B` starts at zero (so the model is unchanged), as in PEFT.
    pub fn attach_lora(&mut self, lora: &LoraConfig, seed: u64) -> Result<()> {
        lora.validate()?;
        let mut rng = crate::init::SeededNormal::new(seed);
        let scale = lora.alpha / lora.rank as f64;
        let mut attached = 0;
        for layer in &mut self.layers {
            for (name, lin) in layer.linears_mut() {
                lin.base_trainable = false;
                let module = name.rsplit('.').next().unwrap_or(name);
                if !lora.target_modules.iter().any(|t| t == module) {
                    continue;
                }
                let (out, inp) = lin.weight.get(false).dims2()?;
                let bound = 1.0 / (inp as f64).sqrt();
                let a: Vec<f32> = (0..lora.rank * inp)
                    .map(|_| (rng.uniform() * 2.0 - 1.0) as f32 * bound as f32)
                    .collect();
                let a =
                    Tensor::from_vec(a, (lora.rank, inp), &self.device)?.to_dtype(self.dtype)?;
                let b = Tensor::zeros((out, lora.rank), self.dtype, &self.device)?;
                lin.lora = Some(LoraAdapter {
                    a: Param::new(a)?,
                    b: Param::new(b)?,
                    scale,
                });
                attached += 1;
            }
        }
        if attached == 0 {
            return Err(ModelError::Input(format!(
                "LoRA target modules {:?} match no linear layer (valid: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)",
                lora.target_modules
            )));
        }
        self.base_trainable = false;
        Ok(())
    }

    /// Whether LoRA adapters are attached.
    pub fn has_lora(&self) -> bool {
        self.layers
            .iter()
            .any(|l| l.linears().iter().any(|(_, lin)| lin.lora.is_some()))
    }

    /// A new model with some or all base weights replaced, validated first: every name must be a
    /// weight of this model, shapes must match, values must be finite. `self` is untouched, so a
    /// failed update leaves the old weights serving.
    pub fn with_weights(&self, tensors: TensorMap) -> Result<Self> {
        if tensors.is_empty() {
            return Err(ModelError::Input("weight update has no tensors".into()));
        }
        let expected: HashMap<String, Vec<usize>> =
            self.cfg.expected_tensors().into_iter().collect();
        for (name, t) in &tensors {
            let shape = expected.get(name).ok_or_else(|| {
                ModelError::Input(format!("weight update names unknown tensor `{name}`"))
            })?;
            if t.dims() != shape.as_slice() {
                return Err(ModelError::ShapeMismatch {
                    name: name.clone(),
                    expected: shape.clone(),
                    actual: t.dims().to_vec(),
                });
            }
            if !t.dtype().is_float() {
                return Err(ModelError::Input(format!(
                    "tensor `{name}` has non-float dtype {:?}",
                    t.dtype()
                )));
            }
            let vals = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            if let Some(pos) = vals.iter().position(|v| !v.is_finite()) {
                return Err(ModelError::Input(format!(
                    "tensor `{name}` has a non-finite value ({}) at flat index {pos}",
                    vals[pos]
                )));
            }
        }
        let mut all = self.named_tensors(false)?;
        for (name, t) in tensors {
            all.insert(name, t.to_device(&self.device)?.to_dtype(self.dtype)?);
        }
        let mut fresh = Self::from_tensors(self.cfg.clone(), all, self.dtype, &self.device)?;
        // Adapters are not part of an HF weight update; keep them.
        for (dst, src) in fresh.layers.iter_mut().zip(&self.layers) {
            for ((_, d), (_, s)) in dst.linears_mut().into_iter().zip(src.linears()) {
                d.lora = s.lora.clone();
                d.base_trainable = s.base_trainable;
            }
        }
        fresh.base_trainable = self.base_trainable;
        Ok(fresh)
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

    // ----------------------------------------------------------------------------------------
    // Training forward
    // ----------------------------------------------------------------------------------------

    fn check_batch(
        &self,
        input_ids: &Tensor,
        lengths: &[usize],
    ) -> Result<(usize, usize, Vec<u32>)> {
        let (b, t) = input_ids.dims2().map_err(|_| {
            ModelError::Input(format!(
                "input_ids must be [batch, time], got {:?}",
                input_ids.dims()
            ))
        })?;
        if b == 0 || t == 0 {
            return Err(ModelError::Input("empty batch".into()));
        }
        if lengths.len() != b {
            return Err(ModelError::Input(format!(
                "{} lengths for a batch of {b}",
                lengths.len()
            )));
        }
        if let Some(&l) = lengths.iter().find(|&&l| l == 0 || l > t) {
            return Err(ModelError::Input(format!(
                "sequence length {l} outside 1..={t}"
            )));
        }
        let ids = input_ids
            .to_dtype(DType::U32)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        self.check_ids(&ids)?;
        Ok((b, t, ids))
    }

    /// Final hidden states `[b·t, hidden]` of a right-padded batch (training path).
    fn hidden_train(
        &self,
        ids: &[u32],
        b: usize,
        t: usize,
        lengths: &[usize],
        mode: ForwardMode,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (nh, nkv, d) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let g = cfg.gqa_group();
        let positions: Vec<usize> = (0..t).collect();
        let (cos, sin) = self.rope.cos_sin(&positions, self.dtype, &self.device)?;
        let (cos_h, sin_h) = self.rope.angles(&positions);
        let (cos_h, sin_h) = (std::sync::Arc::new(cos_h), std::sync::Arc::new(sin_h));
        let fused = crate::ops::supported(self.embed.get(false));
        // Additive mask [b, 1, 1, t, t] for the composed path: causal within each sequence's real
        // tokens (padded queries see every real key so no row is empty).
        let mask = if fused {
            None
        } else {
            let mut mask = vec![0f32; b * t * t];
            for (bi, &len) in lengths.iter().enumerate() {
                for i in 0..t {
                    for j in 0..t {
                        if !(j < len && (j <= i || i >= len)) {
                            mask[(bi * t + i) * t + j] = f32::NEG_INFINITY;
                        }
                    }
                }
            }
            Some(Tensor::from_vec(mask, (b, 1, 1, t, t), &self.device)?.to_dtype(self.dtype)?)
        };
        let scale = 1.0 / (d as f64).sqrt();
        let track_base = mode.track && self.base_trainable;
        let mut x = self.embed_tokens(ids, mode.track)?;
        for layer in &self.layers {
            let h = rms_norm(&x, layer.input_norm.get(track_base), cfg.rms_norm_eps)?;
            let q = layer.q.forward(&h, mode)?.reshape((b, t, nh, d))?;
            let k = layer.k.forward(&h, mode)?.reshape((b, t, nkv, d))?;
            let v = layer.v.forward(&h, mode)?.reshape((b, t, nkv, d))?;
            let (q, k) = match (&layer.q_norm, &layer.k_norm) {
                (Some(qn), Some(kn)) => (
                    rms_norm(&q, qn.get(track_base), cfg.rms_norm_eps)?,
                    rms_norm(&k, kn.get(track_base), cfg.rms_norm_eps)?,
                ),
                _ => (q, k),
            };
            let (q, k) = if fused {
                (
                    crate::ops::rope(&q.transpose(1, 2)?, cos_h.clone(), sin_h.clone(), t)?,
                    crate::ops::rope(&k.transpose(1, 2)?, cos_h.clone(), sin_h.clone(), t)?,
                )
            } else {
                (
                    apply_rope_train(&q.transpose(1, 2)?.contiguous()?, &cos, &sin)?,
                    apply_rope_train(&k.transpose(1, 2)?.contiguous()?, &cos, &sin)?,
                )
            };
            let v = v.transpose(1, 2)?.contiguous()?;
            // Group query heads by their kv head: [b, nkv, g·t, d].
            let q = q.reshape((b, nkv, g * t, d))?;
            let att = q.matmul(&k.t()?)?;
            let att = match &mask {
                None => {
                    crate::ops::masked_softmax(&att.reshape((b, nkv, g, t, t))?, lengths, scale)?
                }
                Some(mask) => candle_nn::ops::softmax(
                    &(att * scale)?
                        .reshape((b, nkv, g, t, t))?
                        .broadcast_add(mask)?,
                    D::Minus1,
                )?,
            };
            let att = att.reshape((b, nkv, g * t, t))?;
            let y = att
                .matmul(&v)?
                .reshape((b, nh, t, d))?
                .transpose(1, 2)?
                .reshape((b * t, nh * d))?;
            x = (x + layer.o.forward(&y, mode)?)?;
            let h = rms_norm(&x, layer.post_norm.get(track_base), cfg.rms_norm_eps)?;
            let (gate, up) = (layer.gate.forward(&h, mode)?, layer.up.forward(&h, mode)?);
            let mlp = if fused {
                crate::ops::swiglu(&gate, &up)?
            } else {
                (candle_nn::ops::silu(&gate)? * up)?
            };
            x = (x + layer.down.forward(&mlp, mode)?)?;
        }
        rms_norm(&x, self.norm.get(track_base), cfg.rms_norm_eps)
    }

    /// Full logits `[b, t, vocab]` (f32) of a right-padded batch through the training path, with
    /// no gradient. Positions at or after a sequence's length hold meaningless values.
    pub fn logits(&self, input_ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let (b, t, ids) = self.check_batch(input_ids, lengths)?;
        let mode = ForwardMode {
            track: false,
            adapters: true,
        };
        let hidden = self.hidden_train(&ids, b, t, lengths, mode)?;
        Ok(self
            .lm_logits(&hidden, mode)?
            .to_dtype(DType::F32)?
            .reshape((b, t, self.cfg.vocab_size))?)
    }

    /// Per-token log-probabilities of the batch's own tokens (and optionally entropies), through
    /// the differentiable path. `input_ids` is `[b, t]` right-padded; `lengths[i]` is row i's real
    /// length. Only the logits and their log-sum-exp are materialised at vocabulary width.
    pub fn token_logprobs(
        &self,
        input_ids: &Tensor,
        lengths: &[usize],
        opts: TrainForward,
    ) -> Result<TokenLogprobs> {
        let (b, t, ids) = self.check_batch(input_ids, lengths)?;
        let mode = ForwardMode {
            track: opts.track,
            adapters: opts.adapters,
        };
        let hidden = self.hidden_train(&ids, b, t, lengths, mode)?;
        if t < 2 {
            let z = Tensor::zeros((b, t), DType::F32, &self.device)?;
            return Ok(TokenLogprobs {
                logprobs: z.clone(),
                entropy: opts.entropy.then_some(z),
            });
        }
        // Rows 0..t-1 of each sequence predict tokens 1..t.
        let hidden = hidden
            .reshape((b, t, self.cfg.hidden_size))?
            .narrow(1, 0, t - 1)?;
        let hidden = hidden.reshape((b * (t - 1), self.cfg.hidden_size))?;
        let work = self.work_dtype();
        let logits = self.lm_logits(&hidden, mode)?.to_dtype(work)?;
        let mut targets = Vec::with_capacity(b * (t - 1));
        let mut valid = Vec::with_capacity(b * t);
        for (bi, &len) in lengths.iter().enumerate() {
            targets.extend_from_slice(&ids[bi * t + 1..(bi + 1) * t]);
            valid.extend((0..t).map(|j| if j >= 1 && j < len { 1f32 } else { 0f32 }));
        }
        let valid = Tensor::from_vec(valid, (b, t), &self.device)?.to_dtype(work)?;
        let shift = |x: Tensor| -> Result<Tensor> {
            let x = x.reshape((b, t - 1))?;
            let zero = Tensor::zeros((b, 1), work, &self.device)?;
            Ok((Tensor::cat(&[&zero, &x], 1)? * &valid)?)
        };
        let (logprobs, entropy) = if crate::ops::supported(&logits) {
            let lp = crate::ops::target_logprob(&logits, &targets)?;
            let ent = if opts.entropy {
                Some(crate::ops::entropy(&logits)?)
            } else {
                None
            };
            (lp, ent)
        } else {
            let targets = Tensor::from_vec(targets, (b * (t - 1), 1), &self.device)?;
            let lse = logits.log_sum_exp(D::Minus1)?;
            let picked = logits.gather(&targets, 1)?.squeeze(1)?;
            let ent = if opts.entropy {
                let p = candle_nn::ops::softmax(&logits, D::Minus1)?;
                Some((&lse - (p * &logits)?.sum(D::Minus1)?)?)
            } else {
                None
            };
            ((picked - &lse)?, ent)
        };
        let logprobs = shift(logprobs)?;
        let entropy = entropy.map(shift).transpose()?;
        Ok(TokenLogprobs { logprobs, entropy })
    }

    // ----------------------------------------------------------------------------------------
    // Inference
    // ----------------------------------------------------------------------------------------

    /// Appends the new tokens of every sequence to the cache and returns their logits (f32).
    /// Sequences may have different lengths, positions and numbers of new tokens. On error the
    /// cache and the sequences are unchanged.
    pub fn step(
        &self,
        cache: &mut KvCache,
        seqs: &mut [StepSeq<'_>],
        want: StepLogits,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let b = seqs.len();
        if b == 0 {
            return Err(ModelError::Input("step with no sequences".into()));
        }
        if let Some(s) = seqs.iter().find(|s| s.tokens.is_empty()) {
            return Err(ModelError::Input(format!(
                "sequence at position {} has no new tokens",
                s.cache.len()
            )));
        }
        for s in seqs.iter() {
            self.check_ids(s.tokens)?;
        }
        let needed: usize = seqs
            .iter()
            .map(|s| cache.blocks_needed(s.cache, s.tokens.len()))
            .sum();
        if needed > cache.free_blocks() {
            return Err(ModelError::CacheFull {
                needed,
                free: cache.free_blocks(),
            });
        }
        for s in seqs.iter_mut() {
            cache.reserve(s.cache, s.tokens.len())?;
        }
        let (nh, nkv, d) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let qmax = seqs.iter().map(|s| s.tokens.len()).max().unwrap_or(1);
        let lmax = seqs
            .iter()
            .map(|s| s.cache.len() + s.tokens.len())
            .max()
            .unwrap_or(1);
        // Host-side layout: padded tokens, positions, write slots, read slots, mask.
        let mut tokens = vec![0u32; b * qmax];
        let mut positions = vec![0usize; b * qmax];
        let mut write_slots = vec![0u32; b * qmax];
        let mut read_slots = vec![0u32; b * lmax];
        // f32 on the CPU: attention reads the pools in place (`paged_attention`) and needs only
        // how many context positions each query row sees; otherwise a padded mask.
        let in_place = self.dtype == DType::F32
            && self.device.is_cpu()
            && cfg.gqa_group() <= crate::paged_attention::MAX_GROUP;
        let mut limits = vec![0usize; b * qmax];
        let mut mask = if in_place {
            Vec::new()
        } else {
            vec![f32::NEG_INFINITY; b * qmax * lmax]
        };
        for (bi, s) in seqs.iter().enumerate() {
            let old = s.cache.len();
            let ctx = old + s.tokens.len();
            for (i, &tok) in s.tokens.iter().enumerate() {
                tokens[bi * qmax + i] = tok;
                positions[bi * qmax + i] = old + i;
                write_slots[bi * qmax + i] = cache.slot(s.cache, old + i);
            }
            for i in s.tokens.len()..qmax {
                positions[bi * qmax + i] = old;
            }
            for j in 0..ctx {
                read_slots[bi * lmax + j] = cache.slot(s.cache, j);
            }
            for i in 0..qmax {
                let limit = if i < s.tokens.len() { old + i + 1 } else { ctx };
                limits[bi * qmax + i] = limit;
                if !in_place {
                    let row = &mut mask[(bi * qmax + i) * lmax..(bi * qmax + i + 1) * lmax];
                    row[..limit].iter_mut().for_each(|m| *m = 0.0);
                }
            }
        }
        let dev = &self.device;
        let (cos, sin) = self.rope.cos_sin(&positions, self.dtype, dev)?;
        let cos = cos.reshape((b, qmax, d / 2))?;
        let sin = sin.reshape((b, qmax, d / 2))?;
        let kv_dim = cfg.kv_dim();
        let write_idx = Tensor::from_vec(write_slots, (b * qmax, 1), dev)?
            .broadcast_as((b * qmax, kv_dim))?
            .contiguous()?;
        // What the gathered attention needs: the read slots as an index tensor and the mask.
        let gathered = if in_place {
            None
        } else {
            Some((
                Tensor::from_slice(&read_slots, b * lmax, dev)?,
                Tensor::from_vec(mask, (b, 1, 1, qmax, lmax), dev)?.to_dtype(self.dtype)?,
            ))
        };
        let att_shape = crate::paged_attention::AttentionShape {
            batch: b,
            qmax,
            lmax,
            heads: nh,
            kv_heads: nkv,
            head_dim: d,
        };
        let scale = 1.0 / (d as f64).sqrt();
        let mode = ForwardMode::INFER;
        let mut x = self.embed_tokens(&tokens, false)?;
        for (li, layer) in self.layers.iter().enumerate() {
            let h = rms_norm_fused(&x, layer.input_norm.get(false), cfg.rms_norm_eps)?;
            let q = layer.q.forward(&h, mode)?.reshape((b, qmax, nh, d))?;
            let k = layer.k.forward(&h, mode)?.reshape((b, qmax, nkv, d))?;
            let v = layer.v.forward(&h, mode)?;
            let (q, k) = match (&layer.q_norm, &layer.k_norm) {
                (Some(qn), Some(kn)) => (
                    rms_norm_fused(&q, qn.get(false), cfg.rms_norm_eps)?,
                    rms_norm_fused(&k, kn.get(false), cfg.rms_norm_eps)?,
                ),
                _ => (q, k),
            };
            let q = apply_rope_infer(&q.transpose(1, 2)?, &cos, &sin)?;
            let k = apply_rope_infer(&k.transpose(1, 2)?, &cos, &sin)?;
            let k_rows = k
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b * qmax, kv_dim))?;
            let (kpool, vpool) = cache.layer(li);
            kpool.scatter_set(&write_idx, &k_rows, 0)?;
            vpool.scatter_set(&write_idx, &v.contiguous()?, 0)?;
            let y = match &gathered {
                None => crate::paged_attention::paged_attention(
                    &q,
                    kpool,
                    vpool,
                    &read_slots,
                    &limits,
                    att_shape,
                    scale as f32,
                )?,
                Some((read_idx, mask)) => {
                    self.gathered_attention(&q, kpool, vpool, read_idx, mask, att_shape, scale)?
                }
            };
            x = (x + layer.o.forward(&y, mode)?)?;
            let h = rms_norm_fused(&x, layer.post_norm.get(false), cfg.rms_norm_eps)?;
            let mlp = (candle_nn::ops::silu(&layer.gate.forward(&h, mode)?)?
                * layer.up.forward(&h, mode)?)?;
            x = (x + layer.down.forward(&mlp, mode)?)?;
        }
        self.step_logits(seqs, x, want, qmax)
    }

    /// The general attention of the inference step: gathers every sequence's context from the
    /// pools into a padded copy, then `softmax(scale · q Kᵀ + mask) V`.
    #[allow(clippy::too_many_arguments)]
    fn gathered_attention(
        &self,
        q: &Tensor,
        kpool: &Tensor,
        vpool: &Tensor,
        read_idx: &Tensor,
        mask: &Tensor,
        shape: crate::paged_attention::AttentionShape,
        scale: f64,
    ) -> Result<Tensor> {
        let crate::paged_attention::AttentionShape {
            batch: b,
            qmax,
            lmax,
            heads: nh,
            kv_heads: nkv,
            head_dim: d,
        } = shape;
        let g = nh / nkv;
        {
            let keys = kpool
                .index_select(read_idx, 0)?
                .reshape((b, lmax, nkv, d))?
                .transpose(1, 2)?
                .contiguous()?;
            let vals = vpool
                .index_select(read_idx, 0)?
                .reshape((b, lmax, nkv, d))?
                .transpose(1, 2)?
                .contiguous()?;
            let q = q.reshape((b, nkv, g * qmax, d))?;
            let att = (q.matmul(&keys.t()?)? * scale)?;
            let att = att.reshape((b, nkv, g, qmax, lmax))?.broadcast_add(mask)?;
            let att = candle_nn::ops::softmax_last_dim(&att)?.reshape((b, nkv, g * qmax, lmax))?;
            Ok(att
                .matmul(&vals)?
                .reshape((b, nh, qmax, d))?
                .transpose(1, 2)?
                .reshape((b * qmax, nh * d))?)
        }
    }

    /// The step's logits (last or every new token) from the final hidden states, and the
    /// sequences' lengths advanced.
    fn step_logits(
        &self,
        seqs: &mut [StepSeq<'_>],
        x: Tensor,
        want: StepLogits,
        qmax: usize,
    ) -> Result<Tensor> {
        let b = seqs.len();
        let mode = ForwardMode::INFER;
        let rows: Vec<u32> = match want {
            StepLogits::Last => seqs
                .iter()
                .enumerate()
                .map(|(bi, s)| (bi * qmax + s.tokens.len() - 1) as u32)
                .collect(),
            StepLogits::All => seqs
                .iter()
                .enumerate()
                .flat_map(|(bi, s)| (0..s.tokens.len()).map(move |i| (bi * qmax + i) as u32))
                .collect(),
        };
        let x = if rows.len() == b * qmax {
            x
        } else {
            let n = rows.len();
            x.index_select(&Tensor::from_vec(rows, n, &self.device)?, 0)?
        };
        let x = rms_norm_fused(&x, self.norm.get(false), self.cfg.rms_norm_eps)?;
        let logits = self.lm_logits(&x, mode)?.to_dtype(DType::F32)?;
        for s in seqs.iter_mut() {
            let len = s.cache.len() + s.tokens.len();
            KvCache::set_len(s.cache, len);
        }
        Ok(logits)
    }

    /// Logits `[len, vocab]` of one token sequence through the inference path with a scratch
    /// cache (used by `oxrl logprobs` and tests).
    pub fn score_tokens(&self, ids: &[u32]) -> Result<Tensor> {
        if ids.is_empty() {
            return Err(ModelError::Input("no tokens to score".into()));
        }
        let mut cache = KvCache::new(
            &self.cfg,
            crate::kv_cache::CacheConfig::for_tokens(ids.len()),
            self.dtype,
            &self.device,
        )?;
        let mut seq = cache.new_sequence();
        let out = self.step(
            &mut cache,
            &mut [StepSeq {
                cache: &mut seq,
                tokens: ids,
            }],
            StepLogits::All,
        )?;
        let _ = out.i(0)?; // shape check: at least one row
        Ok(out)
    }
}
