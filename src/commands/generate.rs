//! `oxrl generate`: streams a completion of one prompt to stdout, through the same engine that
//! serves rollouts.

use super::model_arg;
use anyhow::{bail, Context};
use clap::Args;
use oxrl_models::tokenizer::ChatMessage;
use oxrl_rollout::engine::{EngineConfig, EngineHandle};
use oxrl_rollout::types::{RolloutRequest, SamplingParams, StreamEvent};
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

/// Arguments of `oxrl generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Model: directory, .gguf file or HF id in the local cache (default: the built-in tiny model).
    #[arg(long)]
    pub model: Option<String>,
    /// The prompt.
    #[arg(long)]
    pub prompt: String,
    /// Render the prompt as a user message with the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// System message (with --chat).
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Seed (same seed, same output).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Runs `oxrl generate`.
pub fn run(a: GenerateArgs) -> anyhow::Result<()> {
    let m = model_arg::load(a.model.as_deref())?;
    let (text, add_special) = if a.chat {
        let mut messages = Vec::new();
        if let Some(s) = &a.system {
            messages.push(ChatMessage::new("system", s.as_str()));
        }
        messages.push(ChatMessage::new("user", a.prompt.as_str()));
        (
            m.tokenizer
                .apply_chat_template(&messages, true)
                .context("applying the chat template")?,
            false,
        )
    } else {
        (a.prompt.clone(), true)
    };
    let ids = m
        .tokenizer
        .encode(&text, add_special)
        .context("encoding the prompt")?;
    if ids.is_empty() {
        bail!("the prompt encodes to no tokens");
    }
    let cfg = EngineConfig {
        eos_token_ids: m.eos_token_ids(),
        prefix_cache: false,
        ..EngineConfig::default()
    }
    .with_cache_tokens(ids.len() + a.max_tokens + 64);
    let n_prompt = ids.len();
    let engine = EngineHandle::start(Arc::new(m.model), Some(Arc::new(m.tokenizer)), cfg)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let params = SamplingParams {
        n: 1,
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        top_p: a.top_p,
        seed: a.seed,
        ..SamplingParams::default()
    };
    let start = Instant::now();
    let mut rx = engine
        .submit(RolloutRequest::new(ids, params))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = std::io::stdout().lock();
    let mut first_token = None;
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            StreamEvent::Delta { text_delta, .. } => {
                first_token.get_or_insert_with(|| start.elapsed());
                out.write_all(text_delta.as_bytes())?;
                out.flush()?;
            }
            StreamEvent::Done(resp) => {
                writeln!(out)?;
                let c = resp.completions.first();
                let n = c.map_or(0, |c| c.token_ids.len());
                let total = start.elapsed().as_secs_f64();
                let ttft = first_token.map_or(total, |d| d.as_secs_f64());
                let decode_rate = if n > 1 {
                    (n - 1) as f64 / (total - ttft).max(1e-9)
                } else {
                    0.0
                };
                eprintln!(
                    "[{n_prompt} prompt tokens, {n} generated, finish: {:?}, first token {:.2}s, {decode_rate:.1} tok/s decode]",
                    c.map(|c| c.finish_reason),
                    ttft
                );
                break;
            }
            StreamEvent::Error(e) => bail!("generation failed: {e}"),
        }
    }
    engine.shutdown();
    Ok(())
}
