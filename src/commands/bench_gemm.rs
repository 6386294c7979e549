//! `oxrl bench gemm`: GFLOP/s of candle's f32 matmul on a large square product, the machine's
//! practical f32 peak that the side-by-side script states every other figure against.

use candle_core::{DType, Device, Tensor};
use clap::Args;
use std::time::Instant;

/// Arguments of `oxrl bench gemm`.
#[derive(Args, Debug)]
pub struct GemmBenchArgs {
    /// Rows = columns = inner dimension of the product.
    #[arg(long, default_value_t = 2048)]
    pub size: usize,
    /// Timed products after one warm-up (the best is reported).
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Print the result as JSON too.
    #[arg(long)]
    pub json: bool,
    /// Also time `x · Wᵀ` at the decode shapes of a model: `M,K,N` triples (rows of `x`, inner
    /// dimension, weight rows), e.g. `128,576,960` for SmolLM2's packed q/k/v at 128 sequences;
    /// candle's matmul against the inference step's `xwt` kernel.
    #[arg(long, value_delimiter = ' ', num_args = 1..)]
    pub shapes: Vec<String>,
}

/// Runs `oxrl bench gemm`.
pub fn run(a: GemmBenchArgs) -> anyhow::Result<()> {
    let n = a.size.max(1);
    let x = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?.to_dtype(DType::F32)?;
    let y = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?.to_dtype(DType::F32)?;
    let mut best = f64::INFINITY;
    for i in 0..=a.repeat.max(1) {
        let start = Instant::now();
        let z = x.matmul(&y)?;
        let s = start.elapsed().as_secs_f64();
        drop(z);
        if i > 0 {
            best = best.min(s);
        }
    }
    let gflops = 2.0 * (n as f64).powi(3) / best / 1e9;
    let threads = candle_core::utils::get_num_threads();
    println!("gemm f32 {n} x {n} x {n}, threads {threads}: {best:.4} s -> {gflops:.1} GFLOP/s");
    if a.json {
        println!(
            "{}",
            serde_json::json!({"bench": "gemm", "size": n, "seconds": best, "gflops": gflops, "threads": threads})
        );
    }
    for spec in &a.shapes {
        shape_bench(spec, a.repeat.max(1))?;
    }
    Ok(())
}

/// Best time of `f` over `repeat` runs after one warm-up.
fn best_of(repeat: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let mut best = f64::INFINITY;
    for i in 0..=repeat {
        let start = Instant::now();
        f()?;
        if i > 0 {
            best = best.min(start.elapsed().as_secs_f64());
        }
    }
    Ok(best)
}

/// One `M,K,N` shape: candle's `x.matmul(wᵀ)` against `oxrl_models::xwt::matmul_xwt`.
fn shape_bench(spec: &str, repeat: usize) -> anyhow::Result<()> {
    let dims: Vec<usize> = spec
        .split(',')
        .map(|v| v.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("--shapes {spec:?}: {e} (expected M,K,N)"))?;
    let [m, k, n] = dims[..] else {
        anyhow::bail!("--shapes {spec:?}: expected three numbers M,K,N");
    };
    let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?;
    let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)?;
    // Enough products per timing that one takes at least ~20 ms.
    let flop = 2.0 * (m * k * n) as f64;
    let reps = ((4e9 / flop).ceil() as usize).clamp(1, 10_000);
    let time = |f: &dyn Fn() -> anyhow::Result<Tensor>| -> anyhow::Result<f64> {
        Ok(best_of(repeat, || {
            for _ in 0..reps {
                drop(f()?);
            }
            Ok(())
        })? / reps as f64)
    };
    let candle = time(&|| Ok(x.matmul(&w.t()?)?))?;
    let line =
        |name: &str, s: f64| format!("{name} {:.1} GFLOP/s ({:.1} us)", flop / s / 1e9, s * 1e6);
    let mut out = format!("x·Wᵀ {m} x {k} x {n}: {}", line("candle", candle));
    if oxrl_models::xwt::applies(&x, &w) {
        let xwt = time(&|| Ok(oxrl_models::xwt::matmul_xwt(&x, &w)?))?;
        out += &format!(", {}", line("xwt", xwt));
    }
    println!("{out}");
    Ok(())
}
