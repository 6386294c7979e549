//! `oxrl train CONFIG.toml [--set key=value …] [--resume DIR|latest]`: parses the arguments and
//! hands the configuration to the trainer library (`oxrl_trainer::train_loop`). Ctrl-C asks the
//! run to stop after the current step with a checkpoint (exit code 130); a second Ctrl-C exits
//! at once.

use anyhow::Context;
use oxrl_trainer::config::{Override, TrainConfig};
use oxrl_trainer::train_loop::{train, TrainOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Arguments of `oxrl train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Training configuration (TOML; see examples/sft.toml, grpo.toml, ppo.toml, dpo.toml,
    /// dpo-online.toml, reward-model.toml).
    pub config: PathBuf,
    /// Override a config key: `--set algorithm.steps=10 --set optim.lr=1e-4`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Continue from a checkpoint directory, or `latest` (the run's newest checkpoint).
    #[arg(long, value_name = "DIR|latest")]
    pub resume: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `oxrl train`.
pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let overrides = a
        .set
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let loaded = TrainConfig::load(&a.config, &overrides)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("second interrupt: exiting now (the last checkpoint is intact)");
            std::process::exit(130);
        }
        eprintln!("interrupt: stopping after the current step with a checkpoint (Ctrl-C again to exit now)");
    })
    .context("installing the Ctrl-C handler")?;
    let opts = TrainOptions {
        resume: a.resume,
        progress: a.quiet.then_some(false),
        stop: Some(stop),
    };
    let s = train(&loaded, &opts).with_context(|| format!("training {}", a.config.display()))?;
    let first = s
        .records
        .iter()
        .find(|r| r.get("step").and_then(|v| v.as_u64()) > Some(0));
    let last = s.records.last();
    let show = |key: &str| -> Option<String> {
        let f = first?.get(key)?.as_f64()?;
        let l = last?.get(key)?.as_f64()?;
        Some(format!("{key} {f:.4} -> {l:.4}"))
    };
    let moved: Vec<String> = ["loss", "reward", "accuracy", "eval_loss", "eval_accuracy"]
        .iter()
        .filter_map(|k| show(k))
        .collect();
    println!(
        "trained steps {}..{} ({})",
        s.resumed_from + 1,
        s.last_step,
        if moved.is_empty() {
            "no metrics".to_string()
        } else {
            moved.join(", ")
        }
    );
    println!("metrics: {}", s.metrics_path.display());
    if let Some(c) = &s.checkpoint {
        println!("checkpoint: {}", c.display());
    }
    if s.interrupted {
        println!(
            "stopped early after step {} (interrupt); continue with --resume latest",
            s.last_step
        );
        std::process::exit(130);
    }
    Ok(())
}
