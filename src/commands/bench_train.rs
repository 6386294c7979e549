//! `oxrl bench train`: tokens/s of the training forward + backward (per-token logprobs of a
//! batch, summed and backpropagated to every trainable weight), the number PyTorch is compared on.

use super::model_arg;
use anyhow::Context;
use candle_core::{Device, Tensor};
use clap::Args;
use oxrl_models::TrainForward;
use std::time::Instant;

/// Arguments of `oxrl bench train`.
#[derive(Args, Debug)]
pub struct TrainBenchArgs {
    /// Model: HF directory, .gguf file or HF id in the local cache (default: the built-in tiny model).
    #[arg(long)]
    pub model: Option<String>,
    /// Sequences per batch.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,
    /// Timed iterations after one warm-up (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// Print the result as JSON too.
    #[arg(long)]
    pub json: bool,
}

/// Runs `oxrl bench train`.
pub fn run(a: TrainBenchArgs) -> anyhow::Result<()> {
    let m = model_arg::load(a.model.as_deref())?;
    let vocab = m.config.vocab_size as u32;
    let (b, t) = (a.batch.max(1), a.seq_len.max(2));
    let ids: Vec<u32> = (0..(b * t) as u64)
        .map(|i| ((i * 7919 + 13) % vocab as u64) as u32)
        .collect();
    let ids = Tensor::from_vec(ids, (b, t), &Device::Cpu)?;
    let lengths = vec![t; b];
    let n_params: usize = m
        .model
        .trainable_vars()
        .iter()
        .map(|(_, v)| v.elem_count())
        .sum();
    let mut times = Vec::new();
    for i in 0..=a.iters {
        let start = Instant::now();
        let out = m
            .model
            .token_logprobs(&ids, &lengths, TrainForward::default())
            .context("forward")?;
        let fwd = start.elapsed().as_secs_f64();
        let grads = out.logprobs.sum_all()?.backward().context("backward")?;
        let total = start.elapsed().as_secs_f64();
        drop(grads);
        if i > 0 {
            times.push((fwd, total));
        }
        eprintln!(
            "iter {i}{}: forward {fwd:.2}s, forward+backward {total:.2}s",
            if i == 0 { " (warm-up)" } else { "" }
        );
    }
    times.sort_by(|x, y| x.1.total_cmp(&y.1));
    let (fwd, total) = times[times.len() / 2];
    let tok_s = (b * t) as f64 / total;
    println!(
        "train fwd+bwd: batch {b} x {t} tokens, {n_params} trainable parameters, threads {}: forward {fwd:.2}s, forward+backward {total:.2}s -> {tok_s:.1} tokens/s",
        candle_core::utils::get_num_threads()
    );
    if a.json {
        println!(
            "{}",
            serde_json::json!({"bench": "train", "batch": b, "seq_len": t, "forward_s": fwd, "forward_backward_s": total, "tokens_per_s": tok_s, "threads": candle_core::utils::get_num_threads(), "peak_rss_gib": oxrl_trainer::metrics::peak_rss_gib()})
        );
    }
    Ok(())
}
