//! Construction from HF-named tensors, naming and export of the weights, the trainable
//! parameters, LoRA attachment and the validated weight swap.

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::layers::{Linear, LoraAdapter, Param};
use crate::lora::LoraConfig;
use crate::names;
use crate::rope::Rope;
use crate::weights::{self, TensorMap};
use candle_core::{DType, Device, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

use super::{Layer, Transformer};

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
            layers.push(Layer {
                input_norm: take(m, &names::layer_weight(l, names::INPUT_NORM), &[h])?,
                post_norm: take(m, &names::layer_weight(l, names::POST_NORM), &[h])?,
                q: lin(m, name(names::Q_PROJ), q, h, bias)?,
                k: lin(m, name(names::K_PROJ), kv, h, bias)?,
                v: lin(m, name(names::V_PROJ), kv, h, bias)?,
                o: lin(m, name(names::O_PROJ), h, q, false)?,
                q_norm,
                k_norm,
                gate: lin(m, name(names::GATE_PROJ), i, h, false)?,
                up: lin(m, name(names::UP_PROJ), i, h, false)?,
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
            for (name, lin) in layer.linears() {
                let w = if merge_lora {
                    lin.merged_weight()?
                } else {
                    lin.weight.get(false).clone()
                };
                out.insert(names::layer_weight(l, name), w);
                if let Some(b) = &lin.bias {
                    out.insert(names::layer_bias(l, name), b.get(false).clone());
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
            for (name, lin) in layer.linears() {
                if lin.lora.is_some() {
                    out.insert(names::layer_weight(l, name), lin.merged_weight()?);
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
                    out.insert(names::lora(l, name, true), a.a.get(false).clone());
                    out.insert(names::lora(l, name, false), a.b.get(false).clone());
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
            out.push((names::EMBED.to_string(), self.embed.var().clone()));
            out.push((names::NORM.to_string(), self.norm.var().clone()));
            if let Some(head) = &self.lm_head {
                out.push((
                    format!("{}.weight", names::LM_HEAD),
                    head.weight.var().clone(),
                ));
            }
        }
        for (l, layer) in self.layers.iter().enumerate() {
            if self.base_trainable {
                out.extend(
                    layer
                        .norms(l)
                        .into_iter()
                        .map(|(name, p)| (name, p.var().clone())),
                );
            }
            for (name, lin) in layer.linears() {
                if lin.base_trainable {
                    out.push((names::layer_weight(l, name), lin.weight.var().clone()));
                    if let Some(b) = &lin.bias {
                        out.push((names::layer_bias(l, name), b.var().clone()));
                    }
                }
                if let Some(a) = &lin.lora {
                    out.push((names::lora(l, name, true), a.a.var().clone()));
                    out.push((names::lora(l, name, false), a.b.var().clone()));
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
            for ((_, d), (_, s)) in dst.linears_mut().into_iter().zip(src.linears()) {
                d.lora = s.lora.clone();
                d.base_trainable = s.base_trainable;
            }
        }
        fresh.base_trainable = self.base_trainable;
        Ok(fresh)
    }
}
