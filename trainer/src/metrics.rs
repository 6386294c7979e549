//! What a run reports: one JSON object per step in `metrics.jsonl` (reward, accuracy, KL,
//! entropy, clip fraction, grad norm, LR, tokens/s, rollout / train time split, …) and an
//! indicatif progress bar on the console showing the headline numbers.
//!
//! On resume the file keeps the records up to the checkpoint's step and drops later ones (written
//! by the interrupted run after its last checkpoint), so the file always reads as one run.

use crate::train_error::{TrainError, TrainResult};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One record: metric name → value.
pub type Record = Map<String, Value>;

/// A number as JSON (non-finite values become `null`).
pub fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// The process's peak resident memory so far, in GiB (Linux `VmHWM`; `None` elsewhere). Recorded
/// as `peak_rss_gib` after each step's update, before its evaluation and checkpoint.
pub fn peak_rss_gib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / (1024.0 * 1024.0))
}

/// The append-only `metrics.jsonl` of a run.
#[derive(Debug)]
pub struct MetricsFile {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsFile {
    /// Opens (creates) the file. With `keep_until = Some(k)` existing records of steps ≤ k are
    /// kept and later ones dropped; with `None` the file starts empty.
    pub fn open(path: &Path, keep_until: Option<u64>) -> TrainResult<Self> {
        let kept = match keep_until {
            None => String::new(),
            Some(k) => match std::fs::read_to_string(path) {
                Ok(text) => text
                    .lines()
                    .filter(|l| {
                        serde_json::from_str::<Value>(l)
                            .ok()
                            .and_then(|v| v.get("step").and_then(Value::as_u64))
                            .is_some_and(|s| s <= k)
                    })
                    .map(|l| format!("{l}\n"))
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(TrainError::io(path, e)),
            },
        };
        std::fs::write(path, kept).map_err(|e| TrainError::io(path, e))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one record as a line (flushed, so a killed run keeps every finished step).
    pub fn write(&mut self, record: &Record) -> TrainResult<()> {
        let line = serde_json::to_string(record).map_err(|e| {
            TrainError::Invariant(format!("metrics record is not serialisable: {e}"))
        })?;
        writeln!(self.file, "{line}").map_err(|e| TrainError::io(&self.path, e))?;
        self.file.flush().map_err(|e| TrainError::io(&self.path, e))
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads every record of a metrics file.
pub fn read_records(path: &Path) -> TrainResult<Vec<Record>> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| TrainError::Invariant(format!("{}: {e}", path.display())))
        })
        .collect()
}

/// The console progress bar of a run.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

/// Metrics shown on the bar, in order, with their short labels.
const SHOWN: [(&str, &str); 9] = [
    ("loss", "loss"),
    ("reward", "reward"),
    ("rewards/margins", "margin"),
    ("accuracy", "acc"),
    ("kl", "kl"),
    ("entropy", "ent"),
    ("clip_fraction", "clip"),
    ("tokens_per_s", "tok/s"),
    ("rollout_s", "rollout s"),
];

impl Progress {
    /// A bar over `total` steps starting at `done`; hidden when `visible` is false.
    pub fn new(total: u64, done: u64, visible: bool) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(total),
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        if let Ok(style) =
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix("train");
        bar.set_position(done);
        Self { bar }
    }

    /// Shows a finished step's headline metrics.
    pub fn step(&self, record: &Record) {
        let mut parts = Vec::new();
        for (key, label) in SHOWN {
            if let Some(v) = record.get(key).and_then(Value::as_f64) {
                parts.push(format!("{label} {v:.4}"));
            }
        }
        if let Some(t) = record.get("train_s").and_then(Value::as_f64) {
            parts.push(format!("train s {t:.2}"));
        }
        self.bar.set_message(parts.join(" | "));
        self.bar.inc(1);
    }

    /// Prints a line above the bar.
    pub fn println(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// Removes the bar, leaving the last message.
    pub fn finish(&self) {
        self.bar.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopening_for_resume_drops_records_after_the_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("metrics.jsonl");
        let mut f = MetricsFile::open(&p, None).unwrap();
        for step in 1..=4u64 {
            let mut r = Record::new();
            r.insert("step".into(), step.into());
            r.insert("loss".into(), num(1.0 / step as f64));
            f.write(&r).unwrap();
        }
        drop(f);
        let mut f = MetricsFile::open(&p, Some(2)).unwrap();
        let mut r = Record::new();
        r.insert("step".into(), 3u64.into());
        f.write(&r).unwrap();
        let steps: Vec<u64> = read_records(&p)
            .unwrap()
            .iter()
            .map(|r| r["step"].as_u64().unwrap())
            .collect();
        assert_eq!(steps, [1, 2, 3]);
        assert_eq!(num(f64::NAN), Value::Null);
    }
}
