//! Time and peak memory of one LM-head forward + backward (logprob + entropy at T = 0.7) at
//! SmolLM2-135M's head size, fused and chunked (`ops::linear_logprob`) or through full logits.
//!
//! `cargo run -p oxrl-models --example fused_head_bench -- fused|full [rows] [chunk_rows]`; run
//! each mode in its own process (the peak RSS is the process's).

use candle_core::{DType, Device, Tensor, Var};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("fused");
    let n: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(1024);
    let (h, v) = (576usize, 49152usize);
    let chunk: usize = match args.get(3) {
        Some(s) => s.parse()?,
        None => oxrl_models::ops::auto_chunk_rows(v, DType::F32),
    };
    let dev = Device::Cpu;
    let hid = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, h), &dev)?)?;
    let w = Var::from_tensor(&Tensor::randn(0f32, 0.05, (v, h), &dev)?)?;
    let targets: Vec<u32> = (0..n as u32).map(|i| (i * 7919) % v as u32).collect();
    let t0 = std::time::Instant::now();
    let (lp, ent) = if mode == "fused" {
        let (lp, ent) = oxrl_models::ops::linear_logprob(
            hid.as_tensor(),
            w.as_tensor(),
            &targets,
            0.7,
            true,
            chunk,
            DType::F32,
        )?;
        (lp, ent.ok_or("no entropy")?)
    } else {
        let logits = (hid.as_tensor().matmul(&w.as_tensor().t()?)? / 0.7)?;
        (
            oxrl_models::ops::target_logprob(&logits, &targets)?,
            oxrl_models::ops::entropy(&logits)?,
        )
    };
    let fwd = t0.elapsed().as_secs_f64();
    let grads = (lp.sum_all()? + (ent * 0.1)?.sum_all()?)?.backward()?;
    grads.get(w.as_tensor()).ok_or("no weight gradient")?;
    let total = t0.elapsed().as_secs_f64();
    let peak_mib = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024;
    let chunk_note = if mode == "fused" {
        format!(" chunk {chunk} rows")
    } else {
        String::new()
    };
    println!(
        "{mode}{chunk_note}: {n} rows x vocab {v} x hidden {h}: forward {fwd:.2}s, forward+backward {total:.2}s, peak RSS {peak_mib} MiB"
    );
    Ok(())
}
