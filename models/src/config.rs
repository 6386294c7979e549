//! Model configuration: the subset of HF `config.json` that defines a Llama / Mistral / Qwen2 /
//! Qwen3 decoder, parsed strictly enough to refuse what we cannot run, and written back out in HF
//! form when a model is saved.

use crate::error::{ModelError, Result};
use serde_json::{json, Value};
use std::path::Path;

/// The architecture families one [`crate::decoder::Transformer`] implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `model_type = "llama"` (also SmolLM, TinyLlama, Llama 2/3).
    Llama,
    /// `model_type = "mistral"` (no sliding window is applied: contexts we run are shorter).
    Mistral,
    /// `model_type = "qwen2"`: bias on the q/k/v projections.
    Qwen2,
    /// `model_type = "qwen3"`: RMSNorm on q and k per head, no projection bias.
    Qwen3,
}

impl Arch {
    /// Every supported `model_type`, for error messages.
    pub const SUPPORTED: &'static str = "llama, mistral, qwen2, qwen3";

    /// Parses an HF `model_type`.
    pub fn from_model_type(s: &str) -> Result<Self> {
        match s {
            "llama" => Ok(Self::Llama),
            "mistral" => Ok(Self::Mistral),
            "qwen2" => Ok(Self::Qwen2),
            "qwen3" => Ok(Self::Qwen3),
            other => Err(ModelError::UnsupportedArch(other.to_string())),
        }
    }

    /// The HF `model_type` string.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Mistral => "mistral",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }

    /// The HF `architectures` class name.
    pub fn hf_class(self) -> &'static str {
        match self {
            Self::Llama => "LlamaForCausalLM",
            Self::Mistral => "MistralForCausalLM",
            Self::Qwen2 => "Qwen2ForCausalLM",
            Self::Qwen3 => "Qwen3ForCausalLM",
        }
    }
}

/// RoPE frequency scaling, as in HF `rope_scaling` / `rope_parameters`.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Positions divided by `factor`.
    Linear {
        /// The context extension factor.
        factor: f64,
    },
    /// Llama 3.1 frequency-dependent scaling (HF's field names).
    Llama3 {
        /// The context extension factor.
        factor: f64,
        /// Wavelengths above `original / low_freq_factor` are scaled fully.
        low_freq_factor: f64,
        /// Wavelengths below `original / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length the model was trained for.
        original_max_position_embeddings: usize,
    },
}

/// Everything the decoder needs to know about a model's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Architecture family.
    pub arch: Arch,
    /// Vocabulary size (rows of the embedding and the LM head).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (GQA when fewer than query heads).
    pub num_key_value_heads: usize,
    /// Per-head width (explicit `head_dim`, else hidden / heads).
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// Optional RoPE scaling.
    pub rope_scaling: Option<RopeScaling>,
    /// Longest context the model was trained for.
    pub max_position_embeddings: usize,
    /// Whether the LM head reuses the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v projections (Qwen2, or `attention_bias = true`).
    pub attention_bias: bool,
    /// Per-head RMSNorm on q and k (Qwen3).
    pub qk_norm: bool,
    /// BOS token id, when the config names one.
    pub bos_token_id: Option<u32>,
    /// EOS token ids from the config (one or several).
    pub eos_token_ids: Vec<u32>,
    /// The dtype the checkpoint was saved in (`torch_dtype` / `dtype`), e.g. "bfloat16".
    pub torch_dtype: Option<String>,
}

fn get_usize(v: &Value, key: &str) -> Result<usize> {
    v.get(key)
        .and_then(Value::as_u64)
        .map(|x| x as usize)
        .ok_or_else(|| ModelError::Config(format!("missing or invalid integer field `{key}`")))
}

fn opt_usize(v: &Value, key: &str) -> Option<usize> {
    v.get(key).and_then(Value::as_u64).map(|x| x as usize)
}

fn token_ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    }
}

fn parse_rope_scaling(v: &Value) -> Result<Option<RopeScaling>> {
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let factor = || {
        v.get("factor")
            .and_then(Value::as_f64)
            .ok_or_else(|| ModelError::Config("rope scaling without a numeric `factor`".into()))
    };
    match kind {
        "default" => Ok(None),
        "linear" => Ok(Some(RopeScaling::Linear { factor: factor()? })),
        "llama3" => Ok(Some(RopeScaling::Llama3 {
            factor: factor()?,
            low_freq_factor: v
                .get("low_freq_factor")
                .and_then(Value::as_f64)
                .unwrap_or(1.0),
            high_freq_factor: v
                .get("high_freq_factor")
                .and_then(Value::as_f64)
                .unwrap_or(4.0),
            original_max_position_embeddings: opt_usize(v, "original_max_position_embeddings")
                .unwrap_or(8192),
        })),
        other => Err(ModelError::Config(format!(
            "unsupported rope scaling type `{other}` (supported: linear, llama3)"
        ))),
    }
}

impl ModelConfig {
    /// Parses the text of an HF `config.json`.
    pub fn from_hf_json(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| ModelError::Config(format!("config.json is not valid JSON: {e}")))?;
        Self::from_hf_value(&v)
    }

    /// Reads and parses `config.json` from a file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_hf_json(&text)
            .map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))
    }

    /// Parses an HF config already decoded as JSON.
    pub fn from_hf_value(v: &Value) -> Result<Self> {
        let model_type = v
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| ModelError::Config("missing `model_type`".into()))?;
        let arch = Arch::from_model_type(model_type)?;
        let hidden_size = get_usize(v, "hidden_size")?;
        let num_attention_heads = get_usize(v, "num_attention_heads")?;
        if num_attention_heads == 0 {
            return Err(ModelError::Config(
                "`num_attention_heads` must be > 0".into(),
            ));
        }
        let num_key_value_heads =
            opt_usize(v, "num_key_value_heads").unwrap_or(num_attention_heads);
        if num_key_value_heads == 0 || !num_attention_heads.is_multiple_of(num_key_value_heads) {
            return Err(ModelError::Config(format!(
                "num_attention_heads ({num_attention_heads}) must be a multiple of num_key_value_heads ({num_key_value_heads})"
            )));
        }
        let head_dim = match v.get("head_dim") {
            Some(Value::Number(n)) => n.as_u64().map(|x| x as usize).unwrap_or(0),
            _ => hidden_size / num_attention_heads,
        };
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(ModelError::Config(format!(
                "head_dim must be even and > 0, got {head_dim}"
            )));
        }
        // transformers 5 moves rope settings into `rope_parameters`.
        let rope_params = v.get("rope_parameters").filter(|p| p.is_object());
        let rope_theta = v
            .get("rope_theta")
            .and_then(Value::as_f64)
            .or_else(|| {
                rope_params
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(Value::as_f64)
            })
            .unwrap_or(10_000.0);
        let rope_scaling = match v
            .get("rope_scaling")
            .filter(|s| s.is_object())
            .or(rope_params)
        {
            Some(s) => parse_rope_scaling(s)?,
            None => None,
        };
        let tie_default = false;
        Ok(Self {
            arch,
            vocab_size: get_usize(v, "vocab_size")?,
            hidden_size,
            intermediate_size: get_usize(v, "intermediate_size")?,
            num_hidden_layers: get_usize(v, "num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: v
                .get("rms_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: opt_usize(v, "max_position_embeddings").unwrap_or(4096),
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(tie_default),
            attention_bias: v
                .get("attention_bias")
                .and_then(Value::as_bool)
                .unwrap_or(arch == Arch::Qwen2),
            qk_norm: arch == Arch::Qwen3,
            bos_token_id: v
                .get("bos_token_id")
                .and_then(Value::as_u64)
                .map(|x| x as u32),
            eos_token_ids: token_ids(v.get("eos_token_id")),
            torch_dtype: v
                .get("torch_dtype")
                .or_else(|| v.get("dtype"))
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    /// The HF `config.json` for this model, loadable by transformers.
    pub fn to_hf_json(&self) -> Value {
        let mut v = json!({
            "architectures": [self.arch.hf_class()],
            "model_type": self.arch.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu",
            "torch_dtype": self.torch_dtype.clone().unwrap_or_else(|| "float32".into()),
        });
        if matches!(self.arch, Arch::Llama | Arch::Qwen3) || self.attention_bias {
            v["attention_bias"] = json!(self.attention_bias);
        }
        if self.arch == Arch::Llama {
            v["mlp_bias"] = json!(false);
        }
        if let Some(b) = self.bos_token_id {
            v["bos_token_id"] = json!(b);
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => v["eos_token_id"] = json!(one),
            many => v["eos_token_id"] = json!(many),
        }
        match &self.rope_scaling {
            None => {}
            Some(RopeScaling::Linear { factor }) => {
                v["rope_scaling"] =
                    json!({"rope_type": "linear", "type": "linear", "factor": factor})
            }
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                v["rope_scaling"] = json!({
                    "rope_type": "llama3",
                    "factor": factor,
                    "low_freq_factor": low_freq_factor,
                    "high_freq_factor": high_freq_factor,
                    "original_max_position_embeddings": original_max_position_embeddings,
                })
            }
        }
        v
    }

    /// Query heads per key/value head.
    pub fn gqa_group(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Width of the key (and value) projection output.
    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    /// Width of the query projection output.
    pub fn q_dim(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }

    /// Every tensor the checkpoint must contain, with its shape, in HF naming
    /// ([`crate::names`]).
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        use crate::names::{self as n, layer_bias, layer_weight};
        let h = self.hidden_size;
        let (q, kv, i) = (self.q_dim(), self.kv_dim(), self.intermediate_size);
        let mut out = vec![(n::EMBED.to_string(), vec![self.vocab_size, h])];
        for l in 0..self.num_hidden_layers {
            out.push((layer_weight(l, n::INPUT_NORM), vec![h]));
            out.push((layer_weight(l, n::POST_NORM), vec![h]));
            out.push((layer_weight(l, n::Q_PROJ), vec![q, h]));
            out.push((layer_weight(l, n::K_PROJ), vec![kv, h]));
            out.push((layer_weight(l, n::V_PROJ), vec![kv, h]));
            out.push((layer_weight(l, n::O_PROJ), vec![h, q]));
            if self.attention_bias {
                out.push((layer_bias(l, n::Q_PROJ), vec![q]));
                out.push((layer_bias(l, n::K_PROJ), vec![kv]));
                out.push((layer_bias(l, n::V_PROJ), vec![kv]));
            }
            if self.qk_norm {
                out.push((layer_weight(l, n::Q_NORM), vec![self.head_dim]));
                out.push((layer_weight(l, n::K_NORM), vec![self.head_dim]));
            }
            out.push((layer_weight(l, n::GATE_PROJ), vec![i, h]));
            out.push((layer_weight(l, n::UP_PROJ), vec![i, h]));
            out.push((layer_weight(l, n::DOWN_PROJ), vec![h, i]));
        }
        out.push((n::NORM.to_string(), vec![h]));
        if !self.tie_word_embeddings {
            out.push((format!("{}.weight", n::LM_HEAD), vec![self.vocab_size, h]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qwen3_with_rope_parameters() {
        let cfg = ModelConfig::from_hf_json(
            r#"{"model_type":"qwen3","vocab_size":100,"hidden_size":32,"intermediate_size":64,
            "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,
            "rope_parameters":{"rope_type":"default","rope_theta":1000000.0},"tie_word_embeddings":true,
            "eos_token_id":[1,2],"dtype":"bfloat16"}"#,
        )
        .unwrap();
        assert_eq!(cfg.arch, Arch::Qwen3);
        assert_eq!(cfg.head_dim, 16);
        assert!(cfg.qk_norm && !cfg.attention_bias && cfg.tie_word_embeddings);
        assert_eq!(cfg.rope_theta, 1e6);
        assert_eq!(cfg.eos_token_ids, vec![1, 2]);
        assert_eq!(cfg.torch_dtype.as_deref(), Some("bfloat16"));
        assert_eq!(cfg.gqa_group(), 2);
    }

    #[test]
    fn unknown_arch_names_supported_ones() {
        let err = ModelConfig::from_hf_json(r#"{"model_type":"gpt2"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gpt2") && err.contains("llama, mistral, qwen2, qwen3"),
            "{err}"
        );
    }

    #[test]
    fn llama3_scaling_round_trips() {
        let text = r#"{"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":16,
            "num_hidden_layers":1,"num_attention_heads":2,"rope_theta":500000.0,
            "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
            "high_freq_factor":4.0,"original_max_position_embeddings":32}}"#;
        let cfg = ModelConfig::from_hf_json(text).unwrap();
        let back = ModelConfig::from_hf_value(&cfg.to_hf_json()).unwrap();
        assert_eq!(
            ModelConfig {
                torch_dtype: Some("float32".into()),
                ..cfg
            },
            back.clone()
        );
        assert!(
            matches!(back.rope_scaling, Some(RopeScaling::Llama3 { factor, .. }) if factor == 8.0)
        );
    }

    #[test]
    fn qwen2_has_bias_by_default() {
        let cfg = ModelConfig::from_hf_json(
            r#"{"model_type":"qwen2","vocab_size":10,"hidden_size":8,"intermediate_size":16,
            "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":3}"#,
        );
        assert!(cfg.unwrap_err().to_string().contains("multiple"));
    }
}
