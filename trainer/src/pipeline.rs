//! Multi-stage runs: one config file whose `[[stages]]` run one after another, each stage's final
//! checkpoint becoming the next stage's model (the quickstart: SFT from scratch, then GRPO).
//!
//! The file is a base configuration plus the stages. Each stage is a table merged onto the base
//! (tables merge key by key, everything else replaces) with one key of its own, `name`, which is
//! also its output folder under the base `output_dir`. `--set KEY=VALUE` overrides apply to every
//! stage; `--set stages.NAME.KEY=VALUE` to one stage only. Every stage is parsed and validated
//! before the first one starts; from the second stage on the model is the previous stage's
//! checkpoint after its last step (`model.path`, replacing `model.init`), so a stage always ends
//! with a checkpoint.
//!
//! With `resume`, a stage whose last step is already checkpointed is skipped, the first
//! unfinished one continues from its newest checkpoint (or starts, when it has none), and the
//! rest run as usual.

use crate::checkpoint;
use crate::config::{LoadedConfig, Override, TrainConfig};
use crate::train_error::{TrainError, TrainResult};
use crate::train_loop::{train, TrainOptions, TrainSummary};
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// One stage, ready to run.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Its name (and output folder).
    pub name: String,
    /// Its configuration, validated.
    pub loaded: LoadedConfig,
}

/// A parsed config file: one run, or stages.
#[derive(Debug, Clone)]
pub enum Plan {
    /// A plain config (no `[[stages]]`).
    Single(Box<LoadedConfig>),
    /// A multi-stage config.
    Stages(Vec<Stage>),
}

/// What a finished stage reports.
#[derive(Debug, Clone)]
pub struct StageReport {
    /// The stage's name.
    pub name: String,
    /// `None` when the stage was already complete and skipped on resume.
    pub summary: Option<TrainSummary>,
    /// Its output folder.
    pub output_dir: PathBuf,
    /// Its checkpoint after the last step (the next stage's model).
    pub final_checkpoint: PathBuf,
    /// Its metrics file.
    pub metrics_path: PathBuf,
    /// Held-out greedy accuracy before its first step (when it evaluated then).
    pub accuracy_before: Option<f64>,
    /// Held-out greedy accuracy after its last step (when it evaluated then).
    pub accuracy_after: Option<f64>,
    /// Examples in those evaluations.
    pub eval_examples: Option<u64>,
}

/// Merges `over` into `base`: tables key by key, recursively; any other value replaces.
fn merge(base: &mut Table, over: &Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The final checkpoint a stage with `cfg` writes.
fn final_checkpoint(cfg: &TrainConfig) -> PathBuf {
    cfg.output_dir
        .join("checkpoints")
        .join(checkpoint::step_dir_name(cfg.algorithm.steps as u64))
}

impl Plan {
    /// Reads a config file: a plain one, or one with `[[stages]]` (see the module doc).
    pub fn load(path: &Path, overrides: &[Override]) -> TrainResult<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_toml_str(&text, path, overrides)
    }

    /// Like [`Plan::load`] with the text given; `path` names it in errors and anchors relative
    /// task paths.
    pub fn from_toml_str(text: &str, path: &Path, overrides: &[Override]) -> TrainResult<Self> {
        let origin = path.display().to_string();
        let mut root: Table = toml::from_str(text).map_err(|e| {
            TrainError::config(
                &origin,
                "(syntax)",
                e.to_string().trim_end().replace('\n', " "),
            )
        })?;
        let Some(stages) = root.remove("stages") else {
            let config = TrainConfig::from_table(root, &origin, overrides)?;
            return Ok(Plan::Single(Box::new(LoadedConfig::check(config, path)?)));
        };
        let Value::Array(stages) = stages else {
            return Err(TrainError::config(
                &origin,
                "stages",
                "expected an array of tables: [[stages]] with name = \"...\"",
            ));
        };
        if stages.is_empty() {
            return Err(TrainError::config(&origin, "stages", "no stage given"));
        }
        // Overrides for every stage reach the base too, so `--set output_dir=…` moves them all.
        let mut with_overrides = root.clone();
        for o in overrides.iter().filter(|o| !o.key.starts_with("stages.")) {
            o.apply(&mut with_overrides)?;
        }
        let base_out = with_overrides
            .get("output_dir")
            .and_then(Value::as_str)
            .unwrap_or("runs/oxrl")
            .to_string();
        let mut names: Vec<String> = Vec::new();
        let mut out: Vec<Stage> = Vec::new();
        for (i, stage) in stages.iter().enumerate() {
            let key = format!("stages[{i}]");
            let Value::Table(stage) = stage else {
                return Err(TrainError::config(&origin, key, "expected a table"));
            };
            let mut stage = stage.clone();
            let name = match stage.remove("name") {
                Some(Value::String(n)) if is_name(&n) => n,
                Some(_) => {
                    return Err(TrainError::config(
                        &origin,
                        format!("{key}.name"),
                        "expected a name of letters, digits, '-' or '_'",
                    ))
                }
                None => {
                    return Err(TrainError::config(
                        &origin,
                        format!("{key}.name"),
                        "missing: every stage needs a name (its output folder)",
                    ))
                }
            };
            if names.contains(&name) {
                return Err(TrainError::config(
                    &origin,
                    format!("{key}.name"),
                    format!("`{name}` names two stages"),
                ));
            }
            if stage.contains_key("output_dir") {
                return Err(TrainError::config(
                    &origin,
                    format!("stages.{name}.output_dir"),
                    "a stage writes under the base output_dir, in a folder named after it",
                ));
            }
            let mut table = root.clone();
            merge(&mut table, &stage);
            table.insert(
                "output_dir".into(),
                Value::String(Path::new(&base_out).join(&name).display().to_string()),
            );
            let prefix = format!("stages.{name}.");
            let mut own = Vec::new();
            for o in overrides.iter().filter(|o| o.key != "output_dir") {
                if let Some(k) = o.key.strip_prefix(&prefix) {
                    own.push(Override {
                        key: k.to_string(),
                        value: o.value.clone(),
                    });
                } else if !o.key.starts_with("stages.") {
                    own.push(o.clone());
                }
            }
            let stage_origin = format!("{origin} (stage {name})");
            let mut config = TrainConfig::from_table(table, &stage_origin, &own)?;
            // A stage hands its model on: it always ends with a checkpoint.
            config.checkpoint.at_end = true;
            out.push(Stage {
                name: name.clone(),
                loaded: LoadedConfig::check(config, path)?,
            });
            names.push(name);
        }
        for o in overrides {
            if let Some(rest) = o.key.strip_prefix("stages.") {
                let stage = rest.split('.').next().unwrap_or_default();
                if !names.iter().any(|n| n == stage) {
                    return Err(TrainError::config(
                        "--set",
                        &o.key,
                        format!("no stage named `{stage}` (stages: {})", names.join(", ")),
                    ));
                }
            }
        }
        Ok(Plan::Stages(out))
    }
}

fn is_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The accuracy in the record of `step` (0 = before training), if it evaluated then.
fn accuracy_at(records: &[crate::metrics::Record], step: u64) -> Option<(f64, Option<u64>)> {
    records
        .iter()
        .find(|r| r.get("step").and_then(|v| v.as_u64()) == Some(step))
        .and_then(|r| {
            let a = r.get("eval_accuracy")?.as_f64()?;
            Some((a, r.get("eval_examples").and_then(|v| v.as_u64())))
        })
}

/// Runs the stages in order; `on_stage` is told each stage's name before it starts.
pub fn run_stages(
    stages: &[Stage],
    opts: &TrainOptions,
    mut on_stage: impl FnMut(usize, &Stage),
) -> TrainResult<Vec<StageReport>> {
    let mut reports = Vec::new();
    let mut previous: Option<PathBuf> = None;
    let mut resuming = opts.resume.is_some();
    for (i, stage) in stages.iter().enumerate() {
        let mut loaded = stage.loaded.clone();
        if let Some(p) = &previous {
            loaded.config.model.path = Some(p.display().to_string());
            loaded.config.model.init = None;
        }
        let cfg = &loaded.config;
        let done = final_checkpoint(cfg);
        let ckpt_root = cfg.output_dir.join("checkpoints");
        let metrics_path = cfg.output_dir.join(&cfg.log.metrics_file);
        if resuming && checkpoint::load_state(&done).is_ok() {
            // A stage skipped on resume reports from its metrics file.
            let records = crate::metrics::read_records(&metrics_path).unwrap_or_default();
            reports.push(report(&stage.name, cfg, None, &records));
            previous = Some(done);
            continue;
        }
        let mut stage_opts = opts.clone();
        stage_opts.resume = None;
        if resuming {
            if checkpoint::latest(&ckpt_root).is_some() {
                stage_opts.resume = Some(PathBuf::from("latest"));
            }
            resuming = false;
        }
        on_stage(i, stage);
        let s = train(&loaded, &stage_opts)?;
        let interrupted = s.interrupted;
        let records = if s.resumed_from > 0 {
            crate::metrics::read_records(&s.metrics_path).unwrap_or_default()
        } else {
            s.records.clone()
        };
        reports.push(report(&stage.name, cfg, Some(s), &records));
        if interrupted {
            break;
        }
        previous = Some(done);
    }
    if let Some(out) = pipeline_plot(stages) {
        let parts: Vec<(String, PathBuf)> = reports
            .iter()
            .map(|r| (r.name.clone(), r.metrics_path.clone()))
            .filter(|(_, p)| p.is_file())
            .collect();
        // The picture is a convenience: a failure to draw it is reported, not fatal.
        if let Err(e) = crate::plot::draw_stages(&parts, &out) {
            eprintln!("pipeline plot not drawn: {e}");
        }
    }
    Ok(reports)
}

/// Where the picture of all stages goes: the base output folder, next to the stage folders.
pub fn pipeline_plot(stages: &[Stage]) -> Option<PathBuf> {
    let first = stages.first()?;
    let dir = first.loaded.config.output_dir.parent()?;
    first
        .loaded
        .config
        .log
        .plot
        .then(|| dir.join(crate::plot::PLOT_FILE))
}

fn report(
    name: &str,
    cfg: &TrainConfig,
    summary: Option<TrainSummary>,
    records: &[crate::metrics::Record],
) -> StageReport {
    let before = accuracy_at(records, 0);
    let after = accuracy_at(records, cfg.algorithm.steps as u64);
    StageReport {
        name: name.to_string(),
        summary,
        output_dir: cfg.output_dir.clone(),
        final_checkpoint: final_checkpoint(cfg),
        metrics_path: cfg.output_dir.join(&cfg.log.metrics_file),
        accuracy_before: before.map(|b| b.0),
        accuracy_after: after.map(|a| a.0),
        eval_examples: after.or(before).and_then(|a| a.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
seed = 0
output_dir = "runs/q"
[model]
init = "tiny"
[task]
name = "t"
[task.dataset]
source = "synthetic:arith"
[task.prompt]
format = "chat"
user = "{{ question }}"
[[task.verifiers]]
name = "arith"
[algorithm]
name = "sft"
steps = 3
batch_size = 2
[rollout]
max_tokens = 4
"#;

    fn plan(extra: &str, overrides: &[&str]) -> TrainResult<Plan> {
        let o: Vec<Override> = overrides
            .iter()
            .map(|s| Override::parse(s).unwrap())
            .collect();
        Plan::from_toml_str(&format!("{BASE}{extra}"), Path::new("q.toml"), &o)
    }

    #[test]
    fn stages_merge_onto_the_base_and_take_their_overrides() {
        let p = plan(
            r#"
[[stages]]
name = "sft"
[[stages]]
name = "grpo"
[stages.algorithm]
name = "grpo"
steps = 5
[stages.rollout]
n = 4
"#,
            &[
                "optim.lr=0.5",
                "stages.grpo.algorithm.steps=7",
                "output_dir=elsewhere",
            ],
        )
        .unwrap();
        let Plan::Stages(s) = p else {
            panic!("not staged")
        };
        assert_eq!(s.len(), 2);
        let (a, b) = (&s[0].loaded.config, &s[1].loaded.config);
        assert_eq!(a.output_dir, Path::new("elsewhere/sft"));
        assert_eq!(b.output_dir, Path::new("elsewhere/grpo"));
        assert_eq!(a.algorithm.steps, 3);
        assert_eq!(b.algorithm.steps, 7);
        assert_eq!(b.algorithm.batch_size, 2, "kept from the base");
        assert_eq!(
            (b.rollout.n, b.rollout.max_tokens),
            (4, 4),
            "tables merge key by key"
        );
        assert_eq!((a.optim.lr, b.optim.lr), (0.5, 0.5));
        assert!(a.checkpoint.at_end && b.checkpoint.at_end);
        assert_eq!(
            final_checkpoint(a),
            Path::new("elsewhere/sft/checkpoints/step-000003")
        );
    }

    #[test]
    fn a_plain_file_is_one_run() {
        assert!(matches!(plan("", &[]).unwrap(), Plan::Single(_)));
    }

    #[test]
    fn bad_stages_are_named() {
        let e = plan("[[stages]]\nsteps = 3\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("stages[0].name"), "{e}");
        let two = "[[stages]]\nname = \"a\"\n[[stages]]\nname = \"a\"\n";
        let e = plan(two, &[]).unwrap_err().to_string();
        assert!(e.contains("names two stages"), "{e}");
        let e = plan("[[stages]]\nname = \"a\"\n", &["stages.b.seed=1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no stage named `b`"), "{e}");
        let e = plan(
            "[[stages]]\nname = \"a\"\n[stages.algorithm]\nstepz = 1\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("stage a") && e.contains("stepz"), "{e}");
    }
}
