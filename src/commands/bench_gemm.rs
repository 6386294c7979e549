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
    Ok(())
}
