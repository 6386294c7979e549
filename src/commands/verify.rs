//! `oxrl verify`: scores a file of completions with a task's verifiers, offline. Each input row
//! is one group (`completion` or `completions`) for one example, given either by its fields
//! (mapped through the task's field mapping and rendered with its template) or by an `id` that
//! joins with the task's dataset. Writes one JSON line per row and a summary to stderr.
//!
//! The verifiers are built by name with `oxrl_trainer::model_verifier::registry()` (every
//! built-in and plugin kind, plus the `model` verifier: a trained reward model) into one
//! `WeightedVerifiers`. Joining rows with the task's examples and the accuracy rule
//! live in `oxrl_task::eval`; this command parses rows, batches them and writes lines. Reward of a completion = Σ weightᵢ · rewardᵢ over the task's
//! verifiers. Components are reported as `<verifier>` (its reward) and
//! `<verifier>.<component>`. Accuracy is the share of completions whose first `correct`
//! component (in the task's verifier order) is ≥ 0.5, or, when no verifier reports `correct`,
//! whose reward is ≥ `--threshold`.

use anyhow::{Context, Result};
use oxrl_datasets::Example;
use oxrl_task::{verify_example, Joiner, Judge, Summary, TaskConfig};
use oxrl_verifiers::{Group, Verifier, WeightedVerifiers};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

/// Arguments of `oxrl verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Task file holding a `[task]` table (dataset, field mapping, template, verifiers).
    #[arg(long)]
    pub task: PathBuf,
    /// JSONL of completions: per row `completion` (string) or `completions` (list), plus the
    /// example's fields or an `id` of the task's dataset.
    #[arg(long)]
    pub completions: PathBuf,
    /// Where to write per-row scores (JSONL); stdout when absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Reward at or above which a completion counts as correct when no verifier reports a
    /// `correct` component.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Rows scored per verifier call.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
}

/// One parsed input row.
struct Row {
    line: usize,
    id: String,
    example: Example,
    completions: Vec<String>,
}

/// A row that could not be scored.
struct BadRow {
    line: usize,
    id: Option<String>,
    error: String,
}

/// Parses one input line into a row to score.
fn parse_row(
    text: &str,
    line: usize,
    path: &std::path::Path,
    joiner: &mut Joiner<'_>,
) -> std::result::Result<Row, BadRow> {
    let bad = |id: Option<String>, error: String| BadRow { line, id, error };
    let mut fields: Map<String, Value> = match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(bad(None, "expected a JSON object".into())),
        Err(e) => return Err(bad(None, format!("invalid JSON: {e}"))),
    };
    let id = joiner.row_id(&fields);
    let completions = match (fields.remove("completion"), fields.remove("completions")) {
        (Some(Value::String(c)), None) => vec![c],
        (None, Some(Value::Array(items))) => {
            let strings: Option<Vec<String>> = items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect();
            match strings {
                Some(s) => s,
                None => {
                    return Err(bad(
                        id,
                        "field `completions`: expected a list of strings".into(),
                    ))
                }
            }
        }
        (Some(_), Some(_)) => {
            return Err(bad(
                id,
                "give `completion` or `completions`, not both".into(),
            ))
        }
        (Some(_), None) => return Err(bad(id, "field `completion`: expected a string".into())),
        (None, Some(_)) => return Err(bad(id, "field `completions`: expected a list".into())),
        (None, None) => {
            return Err(bad(
                id,
                "field `completion` (or `completions`): missing".into(),
            ))
        }
    };
    let (id, example) = joiner
        .example_for(fields, path, line)
        .map_err(|e| bad(e.id, e.message))?;
    Ok(Row {
        line,
        id,
        example,
        completions,
    })
}

/// Scores a batch of rows and writes their lines.
fn score_batch(
    rows: &[Row],
    verifiers: &WeightedVerifiers,
    judge: &Judge,
    out: &mut dyn Write,
    summary: &mut Summary,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let groups: Vec<Group> = rows
        .iter()
        .map(|r| Group {
            example: verify_example(&r.example),
            completions: r.completions.clone(),
        })
        .collect();
    let scores = verifiers.score(&groups);
    for (row, group_scores) in rows.iter().zip(scores) {
        let mut rewards = Vec::with_capacity(row.completions.len());
        let mut components = Vec::with_capacity(row.completions.len());
        let mut errors = Vec::with_capacity(row.completions.len());
        summary.add_group(judge, &group_scores);
        for score in group_scores {
            rewards.push(score.reward);
            components.push(score.components);
            errors.push(score.error.map_or(Value::Null, Value::String));
        }
        // Serialised straight from the f32 values (not through `serde_json::Value`, which
        // widens to f64 and would print 0.2 as 0.20000000298023224).
        let line = serde_json::to_string(&OutputLine {
            id: &row.id,
            line: row.line,
            rewards: &rewards,
            components: &components,
            errors: &errors,
        })
        .context("encoding an output line")?;
        writeln!(out, "{line}").context("writing the output")?;
    }
    Ok(())
}

/// One line of `oxrl verify` output: the scores of one input row.
#[derive(serde::Serialize)]
struct OutputLine<'a> {
    id: &'a str,
    line: usize,
    rewards: &'a [f32],
    components: &'a [BTreeMap<String, f32>],
    errors: &'a [Value],
}

/// Runs `oxrl verify`.
pub fn run(args: VerifyArgs) -> Result<()> {
    let config = TaskConfig::from_path(&args.task)
        .with_context(|| format!("loading task {}", args.task.display()))?;
    let verifiers = config
        .build_verifiers(&oxrl_trainer::model_verifier::registry())
        .with_context(|| format!("building the verifiers of {}", args.task.display()))?;
    let file = std::fs::File::open(&args.completions)
        .with_context(|| format!("opening {}", args.completions.display()))?;
    let total_lines = std::io::BufReader::new(
        std::fs::File::open(&args.completions)
            .with_context(|| format!("opening {}", args.completions.display()))?,
    )
    .lines()
    .count();
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let progress = indicatif::ProgressBar::new(total_lines as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows {elapsed} ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut joiner = Joiner::new(&config).context("the task's prompt")?;
    let judge = Judge::new(&verifiers, args.threshold);
    let mut summary = Summary::default();
    let mut batch: Vec<Row> = Vec::new();
    let batch_size = args.batch_size.max(1);
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", args.completions.display()))?;
        progress.inc(1);
        if line.trim().is_empty() {
            continue;
        }
        match parse_row(&line, i + 1, &args.completions, &mut joiner) {
            Ok(row) => batch.push(row),
            Err(bad) => {
                summary.bad_rows += 1;
                let v = json!({"id": bad.id, "line": bad.line, "error": bad.error});
                writeln!(out, "{v}").context("writing the output")?;
            }
        }
        if batch.len() >= batch_size {
            score_batch(&batch, &verifiers, &judge, &mut out, &mut summary)?;
            batch.clear();
        }
    }
    score_batch(&batch, &verifiers, &judge, &mut out, &mut summary)?;
    out.flush().context("writing the output")?;
    progress.finish_and_clear();

    let (mean, accuracy) = (summary.mean_reward(), summary.accuracy());
    eprintln!(
        "rows: {}  completions: {}  mean reward: {mean:.4}  accuracy: {accuracy:.4} ({})  \
         errors: {}  bad rows: {}",
        summary.rows,
        summary.completions,
        if summary.used_correct_component {
            "`correct` component".to_owned()
        } else {
            format!("reward >= {}", args.threshold)
        },
        summary.errors,
        summary.bad_rows,
    );
    Ok(())
}
