//! `oxrl eval [CONFIG] [--task T] [--model M]`: accuracy of a model on a task's held-out split —
//! greedy by default, or `--samples N` completions per prompt at `--temperature` with pass@k —
//! with a progress bar and a JSON summary on stdout (and in `--output`). What users run before
//! and after training.
//!
//! The task comes from a training config (its `[task]`; for a file with `[[stages]]`, the last
//! stage's) or from a task file (`--task examples/tasks/....toml`). The model is `--model`, else
//! the config's: `model.path`, the newest checkpoint of the config's run when it has one, or the
//! built tiny base model of an `init = "tiny"` run. Scoring is the trainer's (`oxrl_trainer::eval`,
//! the task's verifiers through the registry).

use anyhow::{bail, Context, Result};
use oxrl_models::{LoadOptions, LoadedModel};
use oxrl_rollout::{EngineConfig, EngineHandle, TokenDecoder};
use oxrl_trainer::checkpoint;
use oxrl_trainer::config::{Override, TrainConfig};
use oxrl_trainer::eval::{evaluate, EvalSpec};
use oxrl_trainer::pipeline::Plan;
use oxrl_trainer::reward::Reward;
use oxrl_trainer::task::TaskConfig;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Arguments of `oxrl eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// A training config (its task, model and rollout settings).
    pub config: Option<PathBuf>,
    /// A task file holding a `[task]` table (instead of a config's task).
    #[arg(long)]
    pub task: Option<PathBuf>,
    /// The model: an HF directory (e.g. a checkpoint), a `.gguf` file or an HF id in the cache.
    #[arg(long)]
    pub model: Option<String>,
    /// Override a config key (as `oxrl train --set`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Which split: `eval` (held out) or `train`.
    #[arg(long, default_value = "eval")]
    pub split: String,
    /// Evaluate at most this many examples (0 = all).
    #[arg(long, default_value_t = 0)]
    pub max_examples: usize,
    /// Completions per prompt (pass@k for k up to this).
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    /// Sampling temperature (default 0 = greedy with one sample, 1 with several).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus mass.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// New tokens per completion (default: the config's `rollout.max_tokens`, else 256).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the JSON summary here.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// The model a training config names, as it stands now (see the module doc).
fn config_model(cfg: &TrainConfig) -> Result<String> {
    if let Some(c) = checkpoint::latest(&cfg.output_dir.join("checkpoints")) {
        return Ok(c.display().to_string());
    }
    if let Some(p) = &cfg.model.path {
        return Ok(p.clone());
    }
    let base = cfg.output_dir.join("base-model");
    if base.join("config.json").is_file() {
        return Ok(base.display().to_string());
    }
    bail!(
        "the config builds its model (`model.init`) and {} holds none yet: run `oxrl train` first or give --model",
        cfg.output_dir.display()
    )
}

/// Runs `oxrl eval`.
pub fn run(a: EvalArgs) -> Result<()> {
    let overrides = a
        .set
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let (task, cfg) = match (&a.config, &a.task) {
        (Some(_), Some(_)) => bail!("give a config or --task, not both"),
        (None, None) => bail!("give a training config or --task FILE (see `oxrl eval --help`)"),
        (None, Some(t)) => (
            TaskConfig::from_path(t).with_context(|| format!("reading task {}", t.display()))?,
            None,
        ),
        (Some(c), None) => {
            let loaded = match Plan::load(c, &overrides)? {
                Plan::Single(l) => *l,
                Plan::Stages(mut s) => s.pop().context("a config without stages")?.loaded,
            };
            (loaded.task, Some(loaded.config))
        }
    };
    let model = match (&a.model, &cfg) {
        (Some(m), _) => m.clone(),
        (None, Some(c)) => config_model(c)?,
        (None, None) => bail!("--task needs --model"),
    };
    let task_name = task.name.clone().unwrap_or_else(|| "(unnamed)".into());
    let data = task
        .load()
        .with_context(|| format!("loading the dataset of task `{task_name}`"))?;
    let examples = match a.split.as_str() {
        "eval" => &data.data.eval,
        "train" => &data.data.train,
        other => bail!("--split must be `eval` or `train`, not `{other}`"),
    };
    if examples.is_empty() {
        bail!(
            "task `{task_name}` has no {} examples (set task.dataset.eval_count)",
            a.split
        );
    }
    let n = if a.max_examples == 0 {
        examples.len()
    } else {
        a.max_examples.min(examples.len())
    };
    let examples = &examples[..n];
    let reward = Reward::build(&task).map_err(anyhow::Error::msg)?;
    let m = LoadedModel::load(&model, &LoadOptions::default())
        .with_context(|| format!("loading model `{model}`"))?;
    let eos = m.eos_token_ids();
    let decoder: Arc<dyn TokenDecoder> = Arc::new(m.tokenizer.clone());
    let engine = EngineHandle::start(
        Arc::new(m.model),
        Some(decoder),
        EngineConfig {
            eos_token_ids: eos,
            ..EngineConfig::default()
        },
    )
    .context("starting the engine")?;
    let rollout = cfg.as_ref().map(|c| &c.rollout);
    let samples = a.samples.max(1);
    let spec = EvalSpec {
        samples,
        temperature: a.temperature.unwrap_or(if samples > 1 { 1.0 } else { 0.0 }),
        top_p: a.top_p,
        max_tokens: a
            .max_tokens
            .or(rollout.map(|r| r.max_tokens))
            .unwrap_or(256),
        stop: rollout.map(|r| r.stop.clone()).unwrap_or_default(),
        seed: a.seed,
        chunk: 32,
    };
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(n as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("eval {bar:30} {pos}/{len} prompts {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let report = evaluate(&engine, &m.tokenizer, examples, &reward, &spec, |done| {
        bar.set_position(done as u64)
    });
    bar.finish_and_clear();
    engine.shutdown();
    let report = report?;
    let summary = json!({
        "task": task_name,
        "model": model,
        "split": a.split,
        "examples": report.examples,
        "samples": report.samples,
        "temperature": spec.temperature,
        "max_tokens": spec.max_tokens,
        "accuracy": report.accuracy,
        "mean_reward": report.mean_reward,
        "pass_at_k": report.pass_at_k.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "mean_completion_tokens": report.mean_completion_tokens,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let text = serde_json::to_string_pretty(&summary)?;
    println!("{text}");
    if let Some(p) = &a.output {
        write_summary(p, &text)?;
    }
    Ok(())
}

fn write_summary(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, format!("{text}\n")).with_context(|| format!("writing {}", path.display()))
}
