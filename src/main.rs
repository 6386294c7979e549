//! The `oxrl` command line: argument parsing and wiring only; the work happens in the library crates.

use clap::Parser;

mod commands;

/// Keeps freed large buffers in the process instead of returning them to the kernel: the training
/// forward allocates and frees many tensors of the same large sizes, and fresh pages from `mmap`
/// must be zeroed by the kernel on first touch (a quarter of the CPU time before this setting).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only changes glibc allocator thresholds; called once before any threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> anyhow::Result<()> {
    tune_allocator();
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
