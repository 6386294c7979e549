//! `oxrl train CONFIG.toml [--set key=value …] [--resume DIR|latest]`: parses the arguments and
//! hands the configuration to the trainer library (`oxrl_trainer::train_loop`). Ctrl-C asks the
//! run to stop after the current step with a checkpoint (exit code 130); a second Ctrl-C exits
//! at once.

use anyhow::Context;
use oxrl_trainer::config::{LoadedConfig, Override};
use oxrl_trainer::pipeline::{pipeline_plot, run_stages, Plan, Stage, StageReport};
use oxrl_trainer::train_loop::{train, TrainOptions, TrainSummary};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Arguments of `oxrl train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Training configuration (TOML; see examples/sft.toml, grpo.toml, ppo.toml, dpo.toml,
    /// dpo-online.toml, reward-model.toml). Default: the quickstart (examples/quickstart.toml:
    /// SFT then GRPO on the built-in tiny model).
    pub config: Option<PathBuf>,
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

/// The quickstart, as shipped: used by `oxrl train` without a config when
/// `examples/quickstart.toml` is not in the current directory.
const QUICKSTART: &str = include_str!("../../examples/quickstart.toml");
const QUICKSTART_PATH: &str = "examples/quickstart.toml";

/// Runs `oxrl train`.
pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let overrides = a
        .set
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let (path, plan) = match &a.config {
        Some(p) => (p.clone(), Plan::load(p, &overrides)?),
        None if Path::new(QUICKSTART_PATH).is_file() => {
            let p = PathBuf::from(QUICKSTART_PATH);
            println!("no config given: running the quickstart, {}", p.display());
            (p.clone(), Plan::load(&p, &overrides)?)
        }
        None => {
            let p = PathBuf::from("quickstart.toml");
            println!("no config given: running the built-in quickstart (examples/quickstart.toml)");
            (p.clone(), Plan::from_toml_str(QUICKSTART, &p, &overrides)?)
        }
    };
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
    let interrupted = match plan {
        Plan::Single(loaded) => run_single(&loaded, &opts, &path)?,
        Plan::Stages(stages) => run_pipeline(&stages, &opts, &path)?,
    };
    if interrupted {
        std::process::exit(130);
    }
    Ok(())
}

/// One plain run; returns whether it was interrupted.
fn run_single(loaded: &LoadedConfig, opts: &TrainOptions, path: &Path) -> anyhow::Result<bool> {
    let s = train(loaded, opts).with_context(|| format!("training {}", path.display()))?;
    print_summary(&s);
    Ok(s.interrupted)
}

/// What one run (or stage) prints when it ends.
fn print_summary(s: &TrainSummary) {
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
    }
}

/// The stages of a multi-stage file, then the held-out accuracy before and after each stage;
/// returns whether a stage was interrupted.
fn run_pipeline(stages: &[Stage], opts: &TrainOptions, path: &Path) -> anyhow::Result<bool> {
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    let reports = run_stages(stages, opts, |i, s| {
        println!(
            "== stage {}/{}: {} ({} steps) -> {}",
            i + 1,
            stages.len(),
            s.name,
            s.loaded.config.algorithm.steps,
            s.loaded.config.output_dir.display()
        );
    })
    .with_context(|| format!("training {} (stages {})", path.display(), names.join(", ")))?;
    let mut interrupted = false;
    for r in &reports {
        match &r.summary {
            Some(s) => {
                print_summary(s);
                interrupted |= s.interrupted;
            }
            None => println!("stage {}: already complete, skipped", r.name),
        }
    }
    if !interrupted {
        print_accuracies(&reports);
        if let Some(p) = pipeline_plot(stages).filter(|p| p.is_file()) {
            println!("plot (all stages): {}", p.display());
        }
        if let Some(last) = reports.last() {
            println!(
                "serve the trained model: oxrl serve --model {}",
                last.final_checkpoint.display()
            );
        }
    }
    Ok(interrupted)
}

/// `held-out accuracy (greedy, N prompts): before sft 0.000 · after sft 0.450 · after grpo …`,
/// then where each stage's plot is.
fn print_accuracies(reports: &[StageReport]) {
    let mut parts = Vec::new();
    if let Some((first, a)) = reports
        .first()
        .and_then(|r| r.accuracy_before.map(|a| (r, a)))
    {
        parts.push(format!("before {} {a:.3}", first.name));
    }
    for r in reports {
        if let Some(a) = r.accuracy_after {
            parts.push(format!("after {} {a:.3}", r.name));
        }
    }
    if !parts.is_empty() {
        let n = reports
            .iter()
            .find_map(|r| r.eval_examples)
            .map(|n| format!(", {n} prompts"))
            .unwrap_or_default();
        println!("held-out accuracy (greedy{n}): {}", parts.join(" · "));
    }
    for r in reports {
        let plot = r.output_dir.join(oxrl_trainer::plot::PLOT_FILE);
        if plot.is_file() {
            println!("plot ({}): {}", r.name, plot.display());
        }
    }
}
