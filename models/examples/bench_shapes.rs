//! Quick timing of the training forward+backward and batch-1 cached decode on a random model of
//! SmolLM2-135M's shape (no download needed): `cargo run --release -p oxrl-models --example bench_shapes`.

use candle_core::{DType, Device, Tensor};
use oxrl_models::init::{random_tensors, InitSpec};
use oxrl_models::{Arch, CacheConfig, KvCache, StepLogits, StepSeq, TrainForward, Transformer};
use std::time::Instant;

#[allow(unsafe_code)] // mallopt, as the `oxrl` binary does
fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var("MALLOPT").is_ok() {
        // SAFETY: mallopt only changes allocator tuning parameters.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    }
    let spec = InitSpec {
        arch: Arch::Llama,
        vocab_size: 49152,
        hidden_size: 576,
        num_layers: 30,
        num_heads: 9,
        num_kv_heads: 3,
        intermediate_size: 1536,
        tie_word_embeddings: true,
        ..InitSpec::default()
    };
    let cfg = spec.config()?;
    let m = Transformer::from_tensors(
        cfg.clone(),
        random_tensors(&cfg, 0.02, 0)?,
        DType::F32,
        &Device::Cpu,
    )?;
    let args: Vec<String> = std::env::args().collect();
    let (b, t) = (8usize, 256usize);
    if !args.iter().any(|a| a == "--decode-only") {
        let _ = args.iter().any(|a| a == "--train-only");
        let ids: Vec<u32> = (0..b * t).map(|i| (i * 7919 % 49152) as u32).collect();
        let ids = Tensor::from_vec(ids, (b, t), &Device::Cpu)?;
        let iters: usize = std::env::var("ITERS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3);
        for i in 0..iters {
            let start = Instant::now();
            let out = m.token_logprobs(&ids, &vec![t; b], TrainForward::default())?;
            let fwd = start.elapsed().as_secs_f64();
            let loss = out.logprobs.sum_all()?;
            let _g = loss.backward()?;
            let total = start.elapsed().as_secs_f64();
            println!(
                "train iter {i}: fwd {fwd:.2}s fwd+bwd {total:.2}s -> {:.0} tok/s",
                (b * t) as f64 / total
            );
        }
    }
    if args.iter().any(|a| a == "--train-only") {
        return Ok(());
    }
    let prompt: Vec<u32> = (0..128u32).map(|i| i * 13 % 49152).collect();
    let mut cache = KvCache::new(&cfg, CacheConfig::for_tokens(512), DType::F32, &Device::Cpu)?;
    let mut seq = cache.new_sequence();
    let start = Instant::now();
    let mut logits = m.step(
        &mut cache,
        &mut [StepSeq {
            cache: &mut seq,
            tokens: &prompt,
        }],
        StepLogits::Last,
    )?;
    println!("prefill 128: {:.3}s", start.elapsed().as_secs_f64());
    let start = Instant::now();
    for _ in 0..128 {
        let next = logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
        logits = m.step(
            &mut cache,
            &mut [StepSeq {
                cache: &mut seq,
                tokens: &[next],
            }],
            StepLogits::Last,
        )?;
    }
    let el = start.elapsed().as_secs_f64();
    println!(
        "decode 128 tokens batch 1: {el:.2}s -> {:.1} tok/s",
        128.0 / el
    );
    Ok(())
}
