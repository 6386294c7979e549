//! Construction from HF-named tensors, naming and export of the weights, the trainable
//! parameters, LoRA attachment and the validated weight swap.

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::layers::{Linear, LoraAdapter, Param};
use crate::lora::LoraConfig;
use crate::names;
use crate::packed::PackedLinear;
use crate::rope::Rope;
use crate::weights::{self, TensorMap};
use candle_core::{DType, Device, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

use super::{Layer, Transformer};

fn take_tensor(map: &mut TensorMap, name: &str, shape: &[usize]) -> Result<Tensor> {
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
    Ok(t)
}

fn take(map: &mut TensorMap, name: &str, shape: &[usize]) -> Result<Param> {
    Param::new(take_tensor(map, name, shape)?)
}

/// A trainable variable and the HF (or PEFT) tensors it holds, in row order: one name for a
/// plain weight, the parts' names and row counts for a packed projection.
#[derive(Debug, Clone)]
pub struct TrainableVar {
    /// The variable's name (an HF name, a PEFT name, or a packed name such as
    /// `model.layers.0.self_attn.qkv_proj.weight`).
    pub name: String,
    /// The variable.
    pub var: Var,
    /// `(HF name, rows)` of each tensor it packs, in row order (one entry, all rows, when not
    /// packed).
    pub parts: Vec<(String, usize)>,
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
        let packed = |m: &mut TensorMap,
                      l: usize,
                      modules: &[(&'static str, usize)],
                      bias: bool|
         -> Result<PackedLinear> {
            let mut parts = Vec::with_capacity(modules.len());
            for &(module, out) in modules {
                let w = take_tensor(m, &names::layer_weight(l, module), &[out, h])?;
                let b = if bias {
                    Some(take_tensor(m, &names::layer_bias(l, module), &[out])?)
                } else {
                    None
                };
                parts.push((module, w, b));
            }
            PackedLinear::pack(parts)
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let bias = cfg.attention_bias;
            let name = |module| names::layer(l, module);
            let mut head_norm = |module| -> Result<Option<Param>> {
                match cfg.qk_norm {
                    true => Ok(Some(take(
                        m,
                        &names::layer_weight(l, module),
                        &[cfg.head_dim],
                    )?)),
                    false => Ok(None),
                }
            };
            let (q_norm, k_norm) = (head_norm(names::Q_NORM)?, head_norm(names::K_NORM)?);
            let qkv_parts = [(names::Q_PROJ, q), (names::K_PROJ, kv), (names::V_PROJ, kv)];
            let gate_up_parts = [(names::GATE_PROJ, i), (names::UP_PROJ, i)];
            layers.push(Layer {
                input_norm: take(m, &names::layer_weight(l, names::INPUT_NORM), &[h])?,
                post_norm: take(m, &names::layer_weight(l, names::POST_NORM), &[h])?,
                qkv: packed(m, l, &qkv_parts, bias)?,
                o: lin(m, name(names::O_PROJ), h, q, false)?,
                q_norm,
                k_norm,
                gate_up: packed(m, l, &gate_up_parts, false)?,
                down: lin(m, name(names::DOWN_PROJ), h, i, false)?,
            });
        }
        let embed = take(m, names::EMBED, &[cfg.vocab_size, h])?;
        let norm = take(m, names::NORM, &[h])?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(lin(m, names::LM_HEAD.into(), cfg.vocab_size, h, false)?)
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

    // ----------------------------------------------------------------------------------------
    // Parameters
    // ----------------------------------------------------------------------------------------

    /// Every base weight in HF naming, with LoRA adapters merged in when `merge_lora` is true.
    pub fn named_tensors(&self, merge_lora: bool) -> Result<TensorMap> {
        let mut out = HashMap::new();
        out.insert(names::EMBED.to_string(), self.embed.get(false).clone());
        out.insert(names::NORM.to_string(), self.norm.get(false).clone());
        if let Some(head) = &self.lm_head {
            out.insert(
                format!("{}.weight", names::LM_HEAD),
                head.weight.get(false).clone(),
            );
        }
        for (l, layer) in self.layers.iter().enumerate() {
            for (name, p) in layer.norms(l) {
                out.insert(name, p.get(false).clone());
            }
            for (name, module) in layer.modules() {
                let w = if merge_lora {
                    module.merged_weight()?
                } else {
                    module.weight()?
                };
                out.insert(names::layer_weight(l, name), w);
                if let Some(b) = module.bias()? {
                    out.insert(names::layer_bias(l, name), b);
                }
            }
        }
        Ok(out)
    }

    /// The HF-named weights training can have changed, as a weight update would carry them:
    /// every base weight while the base is trainable; once LoRA adapters are attached, only the
    /// adapted linears' weights with their adapters merged in (`W + s·B·A`), since everything
    /// else is frozen.
    pub fn weights_changed_by_training(&self) -> Result<TensorMap> {
        if self.base_trainable {
            return self.named_tensors(true);
        }
        let mut out = HashMap::new();
        for (l, layer) in self.layers.iter().enumerate() {
            for (name, module) in layer.modules() {
                if module.lora().is_some() {
                    out.insert(names::layer_weight(l, name), module.merged_weight()?);
                }
            }
        }
        Ok(out)
    }

    /// The LoRA adapter tensors in PEFT naming (`base_model.model.<module>.lora_A.weight`).
    pub fn lora_tensors(&self) -> TensorMap {
        let mut out = HashMap::new();
        for (l, layer) in self.layers.iter().enumerate() {
            for (name, module) in layer.modules() {
                if let Some(a) = module.lora() {
                    out.insert(names::lora(l, name, true), a.a.get(false).clone());
                    out.insert(names::lora(l, name, false), a.b.get(false).clone());
                }
            }
        }
        out
    }

    /// The parameters a trainer updates, by name: every base weight, or only the LoRA adapters
    /// once they are attached. A packed projection is one variable under its packed name
    /// ([`names::QKV_PROJ`], [`names::GATE_UP_PROJ`]); [`Self::trainable`] says which HF tensors
    /// it holds.
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        self.trainable()
            .into_iter()
            .map(|t| (t.name, t.var))
            .collect()
    }

    /// The trainable variables with the HF (or PEFT) tensors each one holds.
    pub fn trainable(&self) -> Vec<TrainableVar> {
        let whole = |name: String, p: &Param| TrainableVar {
            parts: vec![(name.clone(), p.var().dims().first().copied().unwrap_or(1))],
            name,
            var: p.var().clone(),
        };
        let mut out = Vec::new();
        if self.base_trainable {
            out.push(whole(names::EMBED.to_string(), &self.embed));
            out.push(whole(names::NORM.to_string(), &self.norm));
            if let Some(head) = &self.lm_head {
                out.push(whole(format!("{}.weight", names::LM_HEAD), &head.weight));
            }
        }
        for (l, layer) in self.layers.iter().enumerate() {
            if self.base_trainable {
                out.extend(layer.norms(l).into_iter().map(|(n, p)| whole(n, p)));
            }
            let packed = |packed_name: &str, p: &PackedLinear, bias: bool| {
                let suffix = |name: &str| match bias {
                    true => names::layer_bias(l, name),
                    false => names::layer_weight(l, name),
                };
                let param = match bias {
                    true => p.bias.as_ref(),
                    false => Some(&p.weight),
                };
                param.map(|param| TrainableVar {
                    name: suffix(packed_name),
                    var: param.var().clone(),
                    parts: p.parts.iter().map(|q| (suffix(q.module), q.len)).collect(),
                })
            };
            let base = |name: &str, lin: &Linear, out: &mut Vec<TrainableVar>| {
                out.push(whole(names::layer_weight(l, name), &lin.weight));
                if let Some(b) = &lin.bias {
                    out.push(whole(names::layer_bias(l, name), b));
                }
            };
            if layer.qkv.base_trainable {
                out.extend(packed(names::QKV_PROJ, &layer.qkv, false));
                out.extend(packed(names::QKV_PROJ, &layer.qkv, true));
            }
            if layer.o.base_trainable {
                base(names::O_PROJ, &layer.o, &mut out);
            }
            if layer.gate_up.base_trainable {
                out.extend(packed(names::GATE_UP_PROJ, &layer.gate_up, false));
            }
            if layer.down.base_trainable {
                base(names::DOWN_PROJ, &layer.down, &mut out);
            }
            for (name, module) in layer.modules() {
                if let Some(a) = module.lora() {
                    out.push(whole(names::lora(l, name, true), &a.a));
                    out.push(whole(names::lora(l, name, false), &a.b));
                }
            }
        }
        out
    }

    /// Sets every trainable variable from HF-named (or PEFT-named) tensors, packing where a
    /// variable holds several; every tensor it needs must be in `map` with its shape. Used to
    /// restore a checkpoint into a live model (the optimizer keeps its variables).
    pub fn load_trainable(&self, map: &TensorMap) -> Result<()> {
        for t in self.trainable() {
            let mut pieces = Vec::with_capacity(t.parts.len());
            for (name, rows) in &t.parts {
                let piece = map.get(name).ok_or_else(|| ModelError::MissingTensor {
                    name: name.clone(),
                    source_desc: "checkpoint".into(),
                })?;
                let mut shape = t.var.dims().to_vec();
                if let Some(first) = shape.first_mut() {
                    *first = *rows;
                }
                if piece.dims() != shape.as_slice() {
                    return Err(ModelError::ShapeMismatch {
                        name: name.clone(),
                        expected: shape,
                        actual: piece.dims().to_vec(),
                    });
                }
                pieces.push(piece.to_device(&self.device)?.to_dtype(self.dtype)?);
            }
            let value = match pieces.len() {
                1 => pieces.remove(0),
                _ => Tensor::cat(&pieces, 0)?,
            };
            t.var.set(&value)?;
        }
        Ok(())
    }

    /// Attaches LoRA adapters to the target modules and freezes every base weight. `A` is drawn
    /// uniformly in ±1/√in from `seed`, `B` starts at zero (so the model is unchanged), as in PEFT.
    pub fn attach_lora(&mut self, lora: &LoraConfig, seed: u64) -> Result<()> {
        lora.validate()?;
        let mut rng = crate::init::SeededNormal::new(seed);
        let scale = lora.alpha / lora.rank as f64;
        let mut attached = 0;
        for layer in &mut self.layers {
            layer.set_base_trainable(false);
            let dims: Vec<(usize, usize)> = layer
                .modules()
                .iter()
                .map(|(_, m)| m.weight().and_then(|w| Ok(w.dims2()?)))
                .collect::<Result<_>>()?;
            for ((name, slot), (out, inp)) in layer.lora_slots().into_iter().zip(dims) {
                let module = name.rsplit('.').next().unwrap_or(name);
                if !lora.target_modules.iter().any(|t| t == module) {
                    continue;
                }
                let bound = 1.0 / (inp as f64).sqrt();
                let a: Vec<f32> = (0..lora.rank * inp)
                    .map(|_| (rng.uniform() * 2.0 - 1.0) as f32 * bound as f32)
                    .collect();
                let a =
                    Tensor::from_vec(a, (lora.rank, inp), &self.device)?.to_dtype(self.dtype)?;
                let b = Tensor::zeros((out, lora.rank), self.dtype, &self.device)?;
                *slot = Some(LoraAdapter {
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
            .any(|l| l.modules().iter().any(|(_, m)| m.lora().is_some()))
    }

    /// An inference copy of the current weights with their own storage (LoRA merged in), so a
    /// rollout engine can keep generating from it while training updates this model's tensors
    /// in place (asynchronous rollouts).
    pub fn inference_snapshot(&self) -> Result<Self> {
        let mut copied = HashMap::new();
        for (name, t) in self.named_tensors(true)? {
            copied.insert(name, t.copy()?);
        }
        Self::from_tensors(self.cfg.clone(), copied, self.dtype, &self.device)
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
            dst.set_base_trainable(src.o.base_trainable);
            for ((_, d), (_, s)) in dst.lora_slots().into_iter().zip(src.modules()) {
                *d = s.lora().cloned();
            }
        }
        fresh.base_trainable = self.base_trainable;
        Ok(fresh)
    }
}
