//! `oxrl bench loss`: time of the GRPO loss (clipped surrogate with clip-higher, dual clip, k3 KL
//! to a reference and an entropy bonus, token-mean) plus its backward to the per-token logprobs,
//! in f32 on a `[rows × cols]` batch — the trainer's own code path, to set against the model's
//! forward + backward on the same batch (`oxrl bench train`).

use anyhow::Context;
use candle_core::{DType, Device, Tensor, Var};
use clap::Args;
use oxrl_trainer::kl::KlEstimator;
use oxrl_trainer::policy_loss::{policy_loss, KlTerm, PolicyLossConfig, PolicyLossExtras};
use std::time::Instant;

/// Arguments of `oxrl bench loss`.
#[derive(Args, Debug)]
pub struct LossBenchArgs {
    /// Completions per batch.
    #[arg(long, default_value_t = 64)]
    pub rows: usize,
    /// Completion tokens per row.
    #[arg(long, default_value_t = 512)]
    pub cols: usize,
    /// Timed iterations after one warm-up (the median is reported).
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Print the result as JSON too.
    #[arg(long)]
    pub json: bool,
}

/// Deterministic values in (lo, hi) from an index (no RNG dependency for a benchmark input).
fn det(i: usize, salt: u64, lo: f32, hi: f32) -> f32 {
    let mut z = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    lo + (hi - lo) * ((z >> 40) as f32 / (1u64 << 24) as f32)
}

/// Runs `oxrl bench loss`.
pub fn run(a: LossBenchArgs) -> anyhow::Result<()> {
    let (b, t) = (a.rows.max(1), a.cols.max(1));
    let n = b * t;
    let dev = Device::Cpu;
    let mk = |salt, lo, hi| -> candle_core::Result<Tensor> {
        Tensor::from_vec((0..n).map(|i| det(i, salt, lo, hi)).collect(), (b, t), &dev)
    };
    let logp = Var::from_tensor(&mk(1, -4.0, -0.01)?)?;
    let old = (logp.as_tensor() + mk(2, -0.1, 0.1)?)?;
    let reference = (logp.as_tensor() + mk(3, -0.2, 0.2)?)?;
    let entropies = mk(4, 0.0, 3.0)?;
    let adv = Tensor::from_vec((0..b).map(|i| det(i, 5, -1.5, 1.5)).collect(), b, &dev)?;
    // Ragged completions: row i has between t/4 and t valid tokens.
    let mask: Vec<f32> = (0..n)
        .map(|k| {
            let (i, j) = (k / t, k % t);
            let len = t / 4 + (det(i, 6, 0.0, 1.0) * (t - t / 4) as f32) as usize;
            if j < len.max(1) {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, (b, t), &dev)?.to_dtype(DType::F32)?;
    let cfg = PolicyLossConfig {
        clip_low: 0.2,
        clip_high: 0.28,
        dual_clip: Some(3.0),
        kl: Some(KlTerm {
            coef: 0.04,
            estimator: KlEstimator::K3,
            straight_through: false,
            importance_weighted: false,
        }),
        entropy_coef: 0.001,
        ..PolicyLossConfig::default()
    };
    let extras = PolicyLossExtras {
        ref_logp: Some(&reference),
        entropies: Some(&entropies),
        ..PolicyLossExtras::default()
    };
    let mut times = Vec::new();
    let mut loss_value = 0.0f32;
    for i in 0..=a.iters {
        let start = Instant::now();
        let out = policy_loss(logp.as_tensor(), Some(&old), &adv, &mask, &cfg, &extras)
            .context("policy loss")?;
        let grads = out.loss.backward().context("backward")?;
        let g = grads.get(logp.as_tensor()).context("no gradient")?;
        let _ = g.dims();
        let dt = start.elapsed().as_secs_f64();
        loss_value = out.loss.to_scalar::<f32>()?;
        if i > 0 {
            times.push(dt);
        }
    }
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    println!(
        "grpo loss+backward: {b} x {t} f32, threads {}: {:.3} ms (median of {}), loss {loss_value:.6}",
        candle_core::utils::get_num_threads(),
        med * 1e3,
        times.len()
    );
    if a.json {
        println!(
            "{}",
            serde_json::json!({"bench": "loss", "rows": b, "cols": t, "seconds": med, "threads": candle_core::utils::get_num_threads()})
        );
    }
    Ok(())
}
