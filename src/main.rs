//! The `oxrl` command line: argument parsing and wiring only; the work happens in the library crates.
//! `unsafe` is denied but for one call, the allocator tuning below.
#![deny(unsafe_code)]

use clap::Parser;

mod commands;

/// Keeps freed large buffers in the process instead of returning them to the kernel: the training
/// forward allocates and frees many tensors of the same large sizes, and fresh pages from `mmap`
/// must be zeroed by the kernel on first touch (a quarter of the CPU time before this setting).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: mallopt only changes glibc allocator thresholds; called once before any threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

/// Fixes candle's CPU thread count once, at start-up. Without `RAYON_NUM_THREADS` (or
/// `CANDLE_NUM_THREADS`) set, candle 0.11 recomputes its default on *every* matmul by reading and
/// parsing `/proc/cpuinfo` (`num_cpus::get_physical`): about a quarter of a batch-1 decode step
/// of SmolLM2-135M was spent in the kernel formatting that file (perf, see BENCHMARKS.md).
/// Setting the variable to the same default makes every later lookup an environment read.
fn pin_thread_count() {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| v.parse::<usize>().is_ok_and(|n| n > 0));
    if !set("CANDLE_NUM_THREADS") && !set("RAYON_NUM_THREADS") {
        let n = candle_core::utils::get_num_threads();
        // Called first thing in `main`, before any other thread exists.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}

fn main() -> anyhow::Result<()> {
    tune_allocator();
    pin_thread_count();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = commands::Cli::parse();
    commands::run(cli)
}
