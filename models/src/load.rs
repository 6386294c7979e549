//! Loading a complete policy (config, weights, tokenizer) from whatever a user names: an HF model
//! directory, a `.gguf` file, or an HF model id found in the local hub cache.

use crate::config::ModelConfig;
use crate::decoder::Transformer;
use crate::error::Result;
use crate::resolve::{resolve_model, ModelSource};
use crate::save::save_model;
use crate::tokenizer::Tokenizer;
use crate::weights;
use candle_core::{DType, Device};
use std::path::Path;

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Compute dtype of the weights (f32 on CPU; bf16 on GPU).
    pub dtype: DType,
    /// Where the weights live.
    pub device: Device,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            device: Device::Cpu,
        }
    }
}

/// A policy ready to run: its config, weights and tokenizer.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The architecture's configuration.
    pub config: ModelConfig,
    /// The weights.
    pub model: Transformer,
    /// The tokenizer (with chat template and EOS ids).
    pub tokenizer: Tokenizer,
    /// Where it came from.
    pub source: ModelSource,
}

impl LoadedModel {
    /// Resolves `spec` and loads the model it names.
    pub fn load(spec: &str, opts: &LoadOptions) -> Result<Self> {
        let source = resolve_model(spec)?;
        match &source {
            ModelSource::Dir(dir) => {
                let config = ModelConfig::from_file(&dir.join("config.json"))?;
                let tensors = weights::load_dir(dir, opts.dtype, &opts.device)?;
                let model =
                    Transformer::from_tensors(config.clone(), tensors, opts.dtype, &opts.device)?;
                let tokenizer = Tokenizer::from_dir(dir)?;
                Ok(Self {
                    config,
                    model,
                    tokenizer,
                    source,
                })
            }
            ModelSource::Gguf(path) => {
                let g = crate::gguf::load_gguf(path, opts.dtype, &opts.device)?;
                let model = Transformer::from_tensors(
                    g.config.clone(),
                    g.tensors,
                    opts.dtype,
                    &opts.device,
                )?;
                Ok(Self {
                    config: g.config,
                    model,
                    tokenizer: g.tokenizer,
                    source,
                })
            }
        }
    }

    /// Every token id that ends a generation: the tokenizer's EOS ids and the config's.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        let mut ids = self.tokenizer.eos_token_ids().to_vec();
        for &id in &self.config.eos_token_ids {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// Saves the model (LoRA merged) and its tokenizer in HF layout, atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tok = &self.tokenizer;
        save_model(&self.model, dir, Some(&|tmp: &Path| tok.save(tmp)))
    }
}
