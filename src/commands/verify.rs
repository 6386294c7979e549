//! `oxrl verify`: scores a file of completions with a task's verifiers, offline. Each input row
//! is one group (`completion` or `completions`) for one example, given either by its fields
//! (mapped through the task's field mapping and rendered with its template) or by an `id` that
//! joins with the task's dataset. Writes one JSON line per row and a summary to stderr.
//!
//! The verifiers are built by name with `Registry::builtin()` (every built-in and plugin kind)
//! into one `WeightedVerifiers`. Reward of a completion = Σ weightᵢ · rewardᵢ over the task's
//! verifiers. Components are reported as `<verifier>` (its reward) and
//! `<verifier>.<component>`. Accuracy is the share of completions whose first `correct`
//! component (in the task's verifier order) is ≥ 0.5, or, when no verifier reports `correct`,
//! whose reward is ≥ `--threshold`.

use anyhow::{bail, Context, Result};
use oxrl_datasets::{Example, PromptTemplate, RawRow, RecordKind, RowLocation, TaskConfig};
use oxrl_verifiers::{BuildContext, Group, Registry, Verifier, WeightedVerifiers};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
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

/// Builds the task's weighted verifiers through the registry (relative paths in options resolve
/// against the task file's folder).
fn build_verifiers(task: &TaskConfig) -> Result<WeightedVerifiers> {
    if task.verifiers.is_empty() {
        bail!("the task has no [[task.verifiers]]");
    }
    Ok(Registry::builtin()
        .build_weighted(&task.verifier_specs(), &BuildContext::new(&task.base_dir))?)
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

/// The task's examples and an id → position index.
type JoinIndex = (Vec<Example>, HashMap<String, usize>);

/// The dataset of the task, loaded on first need (rows that carry their fields never need it),
/// and the compiled prompt template.
struct Joiner<'a> {
    config: &'a TaskConfig,
    template: PromptTemplate,
    data: Option<std::result::Result<JoinIndex, String>>,
}

impl<'a> Joiner<'a> {
    fn new(config: &'a TaskConfig) -> Result<Self> {
        let template = PromptTemplate::new(config.prompt.clone()).context("the task's prompt")?;
        Ok(Self {
            config,
            template,
            data: None,
        })
    }

    fn lookup(&mut self, id: &str) -> std::result::Result<Option<Example>, String> {
        let config = self.config;
        let loaded = self.data.get_or_insert_with(|| {
            let task = config.load().map_err(|e| e.to_string())?;
            let examples: Vec<Example> =
                task.data.train.into_iter().chain(task.data.eval).collect();
            let mut index = HashMap::with_capacity(examples.len());
            for (i, e) in examples.iter().enumerate() {
                // The first occurrence of a duplicate id wins.
                index.entry(e.id.clone()).or_insert(i);
            }
            Ok((examples, index))
        });
        let (examples, index) = loaded.as_ref().map_err(Clone::clone)?;
        Ok(index.get(id).and_then(|&i| examples.get(i)).cloned())
    }

    fn prepare(&self, mut example: Example) -> std::result::Result<Example, String> {
        example.prompt = self.template.render(&example).map_err(|e| e.to_string())?;
        Ok(example)
    }
}

fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses one input line into a row to score.
fn parse_row(
    text: &str,
    line: usize,
    path: &std::path::Path,
    config: &TaskConfig,
    joiner: &mut Joiner<'_>,
) -> std::result::Result<Row, BadRow> {
    let bad = |id: Option<String>, error: String| BadRow { line, id, error };
    let mut fields: Map<String, Value> = match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(bad(None, "expected a JSON object".into())),
        Err(e) => return Err(bad(None, format!("invalid JSON: {e}"))),
    };
    let id_field = config.dataset.fields.id.as_deref().unwrap_or("id");
    let id = fields.get(id_field).and_then(id_string);
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
    // Join by id when the id is in the task's dataset and the row carries nothing else.
    let only_id = fields.keys().all(|k| k == id_field);
    let example = if let (Some(id), true) = (&id, only_id) {
        match joiner.lookup(id) {
            Ok(Some(e)) => e,
            Ok(None) => {
                return Err(bad(
                    Some(id.clone()),
                    format!(
                        "id `{id}` is not in the task's dataset and the row has no example fields"
                    ),
                ))
            }
            Err(e) => {
                return Err(bad(
                    Some(id.clone()),
                    format!("cannot join id `{id}`: loading the task's dataset failed: {e}"),
                ))
            }
        }
    } else {
        let raw = RawRow {
            location: RowLocation {
                file: path.to_path_buf(),
                unit: "line",
                index: line,
            },
            fields,
        };
        // Rows carrying their own fields need no id: the line number stands in.
        let mut mapping = config.dataset.fields.clone();
        if id.is_none() {
            mapping.id = None;
        }
        let mapped = mapping.map_row(raw, RecordKind::Prompt, line);
        match mapped {
            Ok(e) => joiner.prepare(e).map_err(|e| bad(id.clone(), e))?,
            Err(e) => {
                // A row with an id but unmappable fields may still join.
                match id.as_deref().map(|i| joiner.lookup(i)) {
                    Some(Ok(Some(e))) => e,
                    _ => return Err(bad(id, e.to_string())),
                }
            }
        }
    };
    Ok(Row {
        line,
        id: id.unwrap_or_else(|| example.id.clone()),
        example,
        completions,
    })
}

/// Running totals for the summary.
#[derive(Default)]
struct Summary {
    rows: usize,
    completions: usize,
    reward_sum: f64,
    correct: usize,
    used_correct_component: bool,
    errors: usize,
    bad_rows: usize,
}

/// Scores a batch of rows and writes their lines.
fn score_batch(
    rows: &[Row],
    verifiers: &WeightedVerifiers,
    threshold: f32,
    out: &mut dyn Write,
    summary: &mut Summary,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let groups: Vec<Group> = rows
        .iter()
        .map(|r| Group {
            example: r.example.to_verify_example(),
            completions: r.completions.clone(),
        })
        .collect();
    // `<label>.correct` of each member, in the task's order: the first one present decides
    // accuracy.
    let correct_keys: Vec<String> = verifiers
        .members()
        .iter()
        .map(|m| format!("{}.correct", m.label))
        .collect();
    let scores = verifiers.score(&groups);
    for (row, group_scores) in rows.iter().zip(scores) {
        let mut rewards = Vec::with_capacity(row.completions.len());
        let mut components = Vec::with_capacity(row.completions.len());
        let mut errors = Vec::with_capacity(row.completions.len());
        for score in group_scores {
            let correct = correct_keys
                .iter()
                .find_map(|k| score.components.get(k))
                .map(|v| *v >= 0.5);
            summary.completions += 1;
            summary.reward_sum += f64::from(score.reward);
            if correct.is_some() {
                summary.used_correct_component = true;
            }
            if correct.unwrap_or(score.reward >= threshold) {
                summary.correct += 1;
            }
            if score.error.is_some() {
                summary.errors += 1;
            }
            rewards.push(score.reward);
            components.push(score.components);
            errors.push(score.error.map_or(Value::Null, Value::String));
        }
        summary.rows += 1;
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
    let verifiers = build_verifiers(&config)
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
    let mut joiner = Joiner::new(&config)?;
    let mut summary = Summary::default();
    let mut batch: Vec<Row> = Vec::new();
    let batch_size = args.batch_size.max(1);
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", args.completions.display()))?;
        progress.inc(1);
        if line.trim().is_empty() {
            continue;
        }
        match parse_row(&line, i + 1, &args.completions, &config, &mut joiner) {
            Ok(row) => batch.push(row),
            Err(bad) => {
                summary.bad_rows += 1;
                let v = json!({"id": bad.id, "line": bad.line, "error": bad.error});
                writeln!(out, "{v}").context("writing the output")?;
            }
        }
        if batch.len() >= batch_size {
            score_batch(&batch, &verifiers, args.threshold, &mut out, &mut summary)?;
            batch.clear();
        }
    }
    score_batch(&batch, &verifiers, args.threshold, &mut out, &mut summary)?;
    out.flush().context("writing the output")?;
    progress.finish_and_clear();

    let mean = if summary.completions > 0 {
        summary.reward_sum / summary.completions as f64
    } else {
        0.0
    };
    let accuracy = if summary.completions > 0 {
        summary.correct as f64 / summary.completions as f64
    } else {
        0.0
    };
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
