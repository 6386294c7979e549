//! The `--model` argument shared by the commands that run a policy, and the built-in default: a
//! tiny random Llama with its tokenizer, built once into the user's cache directory.

use anyhow::Context;
use oxrl_models::init::{write_random_model, InitSpec};
use oxrl_models::{LoadOptions, LoadedModel};
use std::path::PathBuf;

/// Where the built-in default model lives.
fn default_model_dir() -> PathBuf {
    let base = std::env::var_os("OXRL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|p| PathBuf::from(p).join("oxrl")))
        .or_else(|| std::env::var_os("HOME").map(|p| PathBuf::from(p).join(".cache").join("oxrl")))
        .unwrap_or_else(|| std::env::temp_dir().join("oxrl"));
    base.join("tiny-llama-v1")
}

/// Resolves `--model` (a directory, a `.gguf` file or an HF id in the local cache); with none,
/// builds (once) and uses the built-in tiny model.
pub fn load(model: Option<&str>) -> anyhow::Result<LoadedModel> {
    let spec = match model {
        Some(m) => m.to_string(),
        None => {
            let dir = default_model_dir();
            if !dir.join("config.json").is_file() {
                eprintln!(
                    "oxrl: no --model given; building the built-in tiny model in {}",
                    dir.display()
                );
                let spec = InitSpec {
                    vocab_size: 512,
                    hidden_size: 64,
                    num_layers: 2,
                    num_heads: 4,
                    num_kv_heads: 2,
                    intermediate_size: 128,
                    ..InitSpec::default()
                };
                write_random_model(&dir, &spec)
                    .with_context(|| format!("building the default model in {}", dir.display()))?;
            }
            dir.to_string_lossy().into_owned()
        }
    };
    LoadedModel::load(&spec, &LoadOptions::default())
        .with_context(|| format!("loading model `{spec}`"))
}
