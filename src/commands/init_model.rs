//! `oxrl init-model`: writes a randomly initialised model with a tokenizer in HF layout.

use anyhow::Context;
use clap::{Args, ValueEnum};
use oxrl_models::init::{write_random_model, InitSpec};
use oxrl_models::{Arch, RopeScaling};
use std::path::PathBuf;

/// Architecture names accepted on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ArchArg {
    Llama,
    Qwen2,
    Qwen3,
    Mistral,
}

/// Arguments of `oxrl init-model`.
#[derive(Debug, Args)]
pub struct InitModelArgs {
    /// Architecture family.
    #[arg(long, value_enum, default_value = "llama")]
    pub arch: ArchArg,
    /// Model width.
    #[arg(long, default_value_t = 64)]
    pub hidden: usize,
    /// Decoder layers.
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Query heads.
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// Key/value heads (GQA when fewer than heads).
    #[arg(long, default_value_t = 2)]
    pub kv_heads: usize,
    /// MLP width (default 4 × hidden... rounded as 8/3 × hidden like Llama).
    #[arg(long)]
    pub intermediate: Option<usize>,
    /// Per-head width (default hidden / heads).
    #[arg(long)]
    pub head_dim: Option<usize>,
    /// Vocabulary size (the tiny tokenizer uses at most this many tokens; >= 300).
    #[arg(long, default_value_t = 512)]
    pub vocab: usize,
    /// Untie the LM head from the embedding.
    #[arg(long)]
    pub untied: bool,
    /// Context length.
    #[arg(long, default_value_t = 2048)]
    pub max_position_embeddings: usize,
    /// RoPE base.
    #[arg(long, default_value_t = 10000.0)]
    pub rope_theta: f64,
    /// Linear RoPE scaling factor.
    #[arg(long)]
    pub rope_linear_factor: Option<f64>,
    /// Weight standard deviation.
    #[arg(long, default_value_t = 0.02)]
    pub init_std: f64,
    /// Seed of the weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `oxrl init-model`.
pub fn run(a: InitModelArgs) -> anyhow::Result<()> {
    let arch = match a.arch {
        ArchArg::Llama => Arch::Llama,
        ArchArg::Qwen2 => Arch::Qwen2,
        ArchArg::Qwen3 => Arch::Qwen3,
        ArchArg::Mistral => Arch::Mistral,
    };
    let spec = InitSpec {
        arch,
        vocab_size: a.vocab,
        hidden_size: a.hidden,
        num_layers: a.layers,
        num_heads: a.heads,
        num_kv_heads: a.kv_heads,
        intermediate_size: a
            .intermediate
            .unwrap_or((a.hidden * 8 / 3).div_ceil(16) * 16),
        head_dim: a.head_dim,
        tie_word_embeddings: !a.untied,
        max_position_embeddings: a.max_position_embeddings,
        rope_theta: a.rope_theta,
        rope_scaling: a
            .rope_linear_factor
            .map(|factor| RopeScaling::Linear { factor }),
        init_std: a.init_std,
        seed: a.seed,
    };
    let cfg = write_random_model(&a.out, &spec)
        .with_context(|| format!("writing a random model to {}", a.out.display()))?;
    let params: usize = cfg
        .expected_tensors()
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    println!(
        "wrote {} ({:?}, {} parameters) to {}",
        cfg.arch.hf_class(),
        cfg.arch,
        params,
        a.out.display()
    );
    Ok(())
}
