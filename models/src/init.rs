//! Randomly initialised models in HF layout, for tests, demos and `oxrl init-model`.
//!
//! The generator is our own (SplitMix64 + Box–Muller) so a seed produces the same weights on every
//! machine and with every dependency version.

use crate::config::{Arch, ModelConfig, RopeScaling};
use crate::error::{ModelError, Result};
use crate::weights::{save_file, TensorMap};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// A deterministic source of uniform and normal samples.
#[derive(Debug, Clone)]
pub struct SeededNormal {
    state: u64,
    spare: Option<f64>,
}

impl SeededNormal {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed ^ 0x9E37_79B9_7F4A_7C15,
            spare: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal.
    pub fn normal(&mut self) -> f64 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (2.0 * std::f64::consts::PI * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }
}

/// The shape of a random model.
#[derive(Debug, Clone, PartialEq)]
pub struct InitSpec {
    /// Architecture family.
    pub arch: Arch,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Per-head width (default hidden / heads).
    pub head_dim: Option<usize>,
    /// Tie the LM head to the embedding.
    pub tie_word_embeddings: bool,
    /// Context length.
    pub max_position_embeddings: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// Optional RoPE scaling.
    pub rope_scaling: Option<RopeScaling>,
    /// Standard deviation of the weights (HF `initializer_range`).
    pub init_std: f64,
    /// Seed of the weights.
    pub seed: u64,
}

impl Default for InitSpec {
    fn default() -> Self {
        Self {
            arch: Arch::Llama,
            vocab_size: 512,
            hidden_size: 64,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            intermediate_size: 128,
            head_dim: None,
            tie_word_embeddings: true,
            max_position_embeddings: 2048,
            rope_theta: 10_000.0,
            rope_scaling: None,
            init_std: 0.02,
            seed: 0,
        }
    }
}

impl InitSpec {
    /// The model config this spec describes (EOS/BOS ids are filled in by the caller).
    pub fn config(&self) -> Result<ModelConfig> {
        if self.num_heads == 0
            || self.num_kv_heads == 0
            || !self.num_heads.is_multiple_of(self.num_kv_heads)
        {
            return Err(ModelError::Config(format!(
                "heads ({}) must be a positive multiple of kv heads ({})",
                self.num_heads, self.num_kv_heads
            )));
        }
        let head_dim = self.head_dim.unwrap_or(self.hidden_size / self.num_heads);
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(ModelError::Config(format!(
                "head_dim must be even and > 0, got {head_dim}"
            )));
        }
        Ok(ModelConfig {
            arch: self.arch,
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_layers,
            num_attention_heads: self.num_heads,
            num_key_value_heads: self.num_kv_heads,
            head_dim,
            rms_norm_eps: 1e-6,
            rope_theta: self.rope_theta,
            rope_scaling: self.rope_scaling.clone(),
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
            attention_bias: self.arch == Arch::Qwen2,
            qk_norm: self.arch == Arch::Qwen3,
            bos_token_id: None,
            eos_token_ids: Vec::new(),
            torch_dtype: Some("float32".into()),
        })
    }
}

/// Random f32 weights for `cfg`: normal(0, std) matrices, zero biases, unit norm weights.
pub fn random_tensors(cfg: &ModelConfig, std: f64, seed: u64) -> Result<TensorMap> {
    let mut rng = SeededNormal::new(seed);
    let mut out = HashMap::new();
    let mut names = cfg.expected_tensors();
    names.sort();
    for (name, shape) in names {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else if name.ends_with(".bias") {
            (0..n).map(|_| (rng.normal() * std) as f32).collect()
        } else {
            (0..n).map(|_| (rng.normal() * std) as f32).collect()
        };
        out.insert(name, Tensor::from_vec(data, shape, &Device::Cpu)?);
    }
    Ok(out)
}

/// Writes `config.json` and `model.safetensors` of a random model into `dir`.
pub fn write_random_weights(dir: &Path, cfg: &ModelConfig, std: f64, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let tensors = random_tensors(cfg, std, seed)?;
    let config_path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&cfg.to_hf_json())
        .map_err(|e| ModelError::Config(e.to_string()))?;
    std::fs::write(&config_path, text).map_err(|e| ModelError::io(&config_path, e))?;
    save_file(&tensors, &dir.join("model.safetensors"))
}

/// Writes a complete random model with the tiny tokenizer (`config.json`, `model.safetensors`,
/// tokenizer files) into `dir`: what `oxrl init-model` and the tests use. The model's vocabulary
/// must be at least the tokenizer's (`vocab_size >= 300`).
pub fn write_random_model(dir: &Path, spec: &InitSpec) -> Result<ModelConfig> {
    let tokenizer = crate::tokenizer::tiny::tiny_tokenizer(spec.vocab_size)?;
    let mut cfg = spec.config()?;
    cfg.eos_token_ids = tokenizer.eos_token_ids().to_vec();
    cfg.bos_token_id = tokenizer.bos_token_id();
    write_random_weights(dir, &cfg, spec.init_std, spec.seed)?;
    tokenizer.save(dir)?;
    Ok(cfg)
}
