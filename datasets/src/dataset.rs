//! The `[task.dataset]` table and dataset loading: resolve the source (files, snapshot folder,
//! `hf://` id or `synthetic:` generator), read and map every row, skip or reject malformed rows,
//! and cut a seeded train/eval split.

use crate::error::{DatasetError, Result};
use crate::example::{Example, RecordKind};
use crate::formats::{read_file, Format, ReadOptions};
use crate::mapping::FieldMapping;
use crate::shuffle::{split_indices, EpochSampler, EvalSize};
use crate::source::resolve;
use crate::synthetic::{arith, arith_pairs, countdown, ArithParams, CountdownParams};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// The `[task.dataset]` table: where the rows are and how to read them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// A file, a snapshot folder, `hf://datasets/owner/name[/split]`, or `synthetic:arith`,
    /// `synthetic:arith_pairs` (preference pairs) or `synthetic:countdown`. Relative paths are relative to the task file's folder.
    pub source: String,
    /// File format; guessed from the extension when absent.
    #[serde(default)]
    pub format: Option<Format>,
    /// Split to read from a folder or `hf://` id (default `train`).
    #[serde(default)]
    pub split: Option<String>,
    /// Subset (configuration) folder of a multi-subset snapshot.
    #[serde(default)]
    pub subset: Option<String>,
    /// Key of the row array in a `.json` object file (default `data`).
    #[serde(default)]
    pub json_key: Option<String>,
    /// Record kind the rows must satisfy.
    #[serde(default)]
    pub kind: RecordKind,
    /// Source column names.
    #[serde(default)]
    pub fields: FieldMapping,
    /// Skip malformed rows (counted and reported) instead of failing.
    #[serde(default)]
    pub skip_malformed: bool,
    /// Keep only the first `limit` rows (after skipping malformed ones).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Shuffle the training order each epoch.
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// Seed of the shuffle (epoch `e` uses `seed + e`).
    #[serde(default)]
    pub seed: u64,
    /// Fraction of rows held out for evaluation.
    #[serde(default)]
    pub eval_fraction: Option<f64>,
    /// Number of rows held out for evaluation (instead of a fraction).
    #[serde(default)]
    pub eval_count: Option<usize>,
    /// Seed of the train/eval split (default: `seed`).
    #[serde(default)]
    pub split_seed: Option<u64>,
    /// Generator parameters for `synthetic:` sources (see `ArithParams` / `CountdownParams`).
    #[serde(default)]
    pub synthetic: Option<Value>,
}

fn yes() -> bool {
    true
}

impl DatasetConfig {
    /// A configuration reading `source` with every default.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            format: None,
            split: None,
            subset: None,
            json_key: None,
            kind: RecordKind::default(),
            fields: FieldMapping::default(),
            skip_malformed: false,
            limit: None,
            shuffle: true,
            seed: 0,
            eval_fraction: None,
            eval_count: None,
            split_seed: None,
            synthetic: None,
        }
    }

    /// The held-out size, if any (`eval_fraction` and `eval_count` are exclusive).
    pub fn eval_size(&self) -> Result<Option<EvalSize>> {
        match (self.eval_fraction, self.eval_count) {
            (Some(_), Some(_)) => Err(DatasetError::Config(
                "set `eval_fraction` or `eval_count`, not both".into(),
            )),
            (Some(f), None) => Ok(Some(EvalSize::Fraction(f))),
            (None, Some(c)) => Ok(Some(EvalSize::Count(c))),
            (None, None) => Ok(None),
        }
    }
}

/// Loaded rows plus what was skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    /// The examples, in source order.
    pub examples: Vec<Example>,
    /// Number of malformed rows skipped (with `skip_malformed`).
    pub skipped: usize,
    /// The messages of the first few skipped rows (at most 5), for the log.
    pub skipped_examples: Vec<String>,
}

impl Dataset {
    /// Splits into `(train, eval)` by `size`, seeded; rows keep their source order in both.
    pub fn split(self, size: EvalSize, seed: u64) -> Result<(Vec<Example>, Vec<Example>)> {
        let (train_idx, eval_idx) = split_indices(self.examples.len(), size, seed)?;
        let mut slots: Vec<Option<Example>> = self.examples.into_iter().map(Some).collect();
        let mut pick = |idx: &[usize]| -> Vec<Example> {
            idx.iter()
                .filter_map(|&i| slots.get_mut(i).and_then(Option::take))
                .collect()
        };
        let train = pick(&train_idx);
        let eval = pick(&eval_idx);
        Ok((train, eval))
    }
}

fn synthetic_params<T: serde::de::DeserializeOwned + Default>(
    v: &Option<Value>,
    what: &str,
) -> Result<T> {
    match v {
        None => Ok(T::default()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| DatasetError::Config(format!("[task.dataset.synthetic] for {what}: {e}"))),
    }
}

/// Loads every row of the configured source. `base_dir` anchors relative paths.
pub fn load(config: &DatasetConfig, base_dir: &Path) -> Result<Dataset> {
    if let Some(kind) = config.source.strip_prefix("synthetic:") {
        let mut examples = match kind {
            "arith" => arith(&synthetic_params::<ArithParams>(&config.synthetic, kind)?)?,
            "arith_pairs" => {
                arith_pairs(&synthetic_params::<ArithParams>(&config.synthetic, kind)?)?
            }
            "countdown" => countdown(&synthetic_params::<CountdownParams>(
                &config.synthetic,
                kind,
            )?)?,
            other => {
                return Err(DatasetError::Config(format!(
                    "unknown synthetic generator `{other}`; known: arith, arith_pairs, countdown"
                )))
            }
        };
        if let Some(limit) = config.limit {
            examples.truncate(limit);
        }
        return Ok(Dataset {
            examples,
            ..Dataset::default()
        });
    }
    if config.synthetic.is_some() {
        return Err(DatasetError::Config(
            "`synthetic` parameters given but `source` is not `synthetic:...`".into(),
        ));
    }
    let files = resolve(
        &config.source,
        base_dir,
        config.split.as_deref(),
        config.subset.as_deref(),
        config.format,
    )?;
    let opts = ReadOptions {
        json_key: config.json_key.clone(),
    };
    let mut out = Dataset::default();
    let mut index = 0usize;
    'files: for file in &files {
        for row in read_file(&file.path, file.format, &opts)? {
            if config.limit.is_some_and(|l| out.examples.len() >= l) {
                break 'files;
            }
            let mapped = row.and_then(|r| config.fields.map_row(r, config.kind, index));
            match mapped {
                Ok(e) => {
                    out.examples.push(e);
                    index += 1;
                }
                Err(e) if config.skip_malformed => {
                    out.skipped += 1;
                    if out.skipped_examples.len() < 5 {
                        out.skipped_examples.push(e.to_string());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

/// A loaded dataset cut into train and eval parts, with its epoch sampler.
#[derive(Debug, Clone)]
pub struct SplitDataset {
    /// Training examples (source order; visit them through `sampler`).
    pub train: Vec<Example>,
    /// Held-out examples (empty without `eval_fraction` / `eval_count`).
    pub eval: Vec<Example>,
    /// Visiting order of `train` across epochs.
    pub sampler: EpochSampler,
    /// Malformed rows skipped.
    pub skipped: usize,
    /// The first few skip messages.
    pub skipped_examples: Vec<String>,
}

/// Loads and splits per `config`.
pub fn load_split(config: &DatasetConfig, base_dir: &Path) -> Result<SplitDataset> {
    let eval_size = config.eval_size()?;
    let ds = load(config, base_dir)?;
    let (skipped, skipped_examples) = (ds.skipped, ds.skipped_examples.clone());
    let (train, eval) = match eval_size {
        Some(size) => ds.split(size, config.split_seed.unwrap_or(config.seed))?,
        None => (ds.examples, Vec::new()),
    };
    Ok(SplitDataset {
        sampler: EpochSampler::new(train.len(), config.seed, config.shuffle),
        train,
        eval,
        skipped,
        skipped_examples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::Prompt;
    use serde_json::json;
    use std::path::PathBuf;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    fn prompts(ds: &Dataset) -> Vec<&str> {
        ds.examples.iter().map(|e| e.prompt.text()).collect()
    }

    /// Writes a snappy-compressed Parquet file with a string column `question`, an int64 column
    /// `answer` and a string column `source`.
    fn write_parquet(path: &Path, rows: &[(&str, i64, &str)]) {
        use parquet::basic::Compression;
        use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use parquet::schema::parser::parse_message_type;
        use std::sync::Arc;
        let schema = Arc::new(
            parse_message_type(
                "message schema { REQUIRED BYTE_ARRAY question (UTF8); REQUIRED INT64 answer; \
                 REQUIRED BYTE_ARRAY source (UTF8); }",
            )
            .unwrap(),
        );
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build(),
        );
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        let file = std::fs::File::create(path).unwrap();
        let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
        let mut rg = writer.next_row_group().unwrap();
        let strings = |first: bool| -> Vec<ByteArray> {
            rows.iter()
                .map(|r| ByteArray::from(if first { r.0 } else { r.2 }))
                .collect()
        };
        let mut col_index = 0;
        while let Some(mut col) = rg.next_column().unwrap() {
            match col_index {
                0 => {
                    col.typed::<ByteArrayType>()
                        .write_batch(&strings(true), None, None)
                        .unwrap();
                }
                1 => {
                    let v: Vec<i64> = rows.iter().map(|r| r.1).collect();
                    col.typed::<Int64Type>()
                        .write_batch(&v, None, None)
                        .unwrap();
                }
                _ => {
                    col.typed::<ByteArrayType>()
                        .write_batch(&strings(false), None, None)
                        .unwrap();
                }
            }
            col.close().unwrap();
            col_index += 1;
        }
        rg.close().unwrap();
        writer.close().unwrap();
    }

    #[test]
    fn jsonl() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "a.jsonl",
            "{\"question\": \"q1\", \"answer\": \"1\"}\n\n{\"question\": \"q2\", \"answer\": 2, \"x\": true}\n",
        );
        let ds = load(&DatasetConfig::new("a.jsonl"), d.path()).unwrap();
        assert_eq!(prompts(&ds), ["q1", "q2"]);
        assert_eq!(ds.examples[1].answer.as_deref(), Some("2"));
        assert_eq!(ds.examples[1].metadata.get("x"), Some(&json!(true)));
        assert_eq!(ds.examples[1].id, "1");
    }

    #[test]
    fn json_array_data_key_and_custom_key() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "arr.json",
            r#"[{"prompt": "a"}, {"prompt": "b"}]"#,
        );
        write(
            d.path(),
            "obj.json",
            r#"{"version": 1, "data": [{"prompt": "c"}]}"#,
        );
        write(
            d.path(),
            "rows.json",
            r#"{"rows": [{"prompt": "d"}], "other": [1]}"#,
        );
        assert_eq!(
            prompts(&load(&DatasetConfig::new("arr.json"), d.path()).unwrap()),
            ["a", "b"]
        );
        assert_eq!(
            prompts(&load(&DatasetConfig::new("obj.json"), d.path()).unwrap()),
            ["c"]
        );
        let err = load(&DatasetConfig::new("rows.json"), d.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("json_key"), "{err}");
        let mut c = DatasetConfig::new("rows.json");
        c.json_key = Some("rows".into());
        assert_eq!(prompts(&load(&c, d.path()).unwrap()), ["d"]);
    }

    #[test]
    fn csv_with_quotes_and_mapping() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "t.csv",
            "problem,solution,level\n\"What is 1,000 + 1?\",1001,easy\nq2,7,hard\n",
        );
        let mut c = DatasetConfig::new("t.csv");
        c.fields.prompt = Some("problem".into());
        c.fields.answer = Some("solution".into());
        let ds = load(&c, d.path()).unwrap();
        assert_eq!(prompts(&ds), ["What is 1,000 + 1?", "q2"]);
        assert_eq!(ds.examples[0].answer.as_deref(), Some("1001"));
        assert_eq!(ds.examples[1].metadata.get("level"), Some(&json!("hard")));
    }

    #[test]
    fn csv_ragged_row_names_line() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "t.csv", "prompt,answer\na,1\nb\n");
        let err = load(&DatasetConfig::new("t.csv"), d.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.csv line 3"), "{err}");
    }

    #[test]
    fn parquet_file_and_snapshot_folder() {
        let d = tempfile::tempdir().unwrap();
        write_parquet(
            &d.path().join("data/train-00000-of-00002.parquet"),
            &[("q0", 10, "s"), ("q1", 11, "s")],
        );
        write_parquet(
            &d.path().join("data/train-00001-of-00002.parquet"),
            &[("q2", 12, "t")],
        );
        write_parquet(
            &d.path().join("data/test-00000-of-00001.parquet"),
            &[("t0", 5, "u")],
        );
        let ds = load(
            &DatasetConfig::new("data/train-00001-of-00002.parquet"),
            d.path(),
        )
        .unwrap();
        assert_eq!(prompts(&ds), ["q2"]);
        assert_eq!(ds.examples[0].answer.as_deref(), Some("12"));
        assert_eq!(ds.examples[0].metadata.get("source"), Some(&json!("t")));
        // The folder, split `train` by default: both shards in order, ids continue across shards.
        let ds = load(&DatasetConfig::new("."), d.path()).unwrap();
        assert_eq!(prompts(&ds), ["q0", "q1", "q2"]);
        assert_eq!(ds.examples[2].id, "2");
        let mut c = DatasetConfig::new(".");
        c.split = Some("test".into());
        assert_eq!(prompts(&load(&c, d.path()).unwrap()), ["t0"]);
    }

    #[test]
    fn not_a_parquet_file_names_it() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "bad.parquet", "not parquet at all");
        let err = load(&DatasetConfig::new("bad.parquet"), d.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.parquet"), "{err}");
    }

    #[test]
    fn hf_cache_source() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("datasets--me--tiny");
        write(&repo, "refs/main", "c0ffee");
        write(
            &repo,
            "snapshots/c0ffee/train.jsonl",
            "{\"prompt\": \"hf-row\"}\n",
        );
        write(
            &repo,
            "snapshots/c0ffee/test.jsonl",
            "{\"prompt\": \"hf-test\"}\n",
        );
        // Tests in this crate do not otherwise touch HF_HUB_CACHE.
        std::env::set_var("HF_HUB_CACHE", cache.path());
        let ds = load(&DatasetConfig::new("hf://datasets/me/tiny"), Path::new("/")).unwrap();
        let test = load(
            &DatasetConfig::new("hf://datasets/me/tiny/test"),
            Path::new("/"),
        )
        .unwrap();
        let err = load(
            &DatasetConfig::new("hf://datasets/me/absent"),
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        std::env::remove_var("HF_HUB_CACHE");
        assert_eq!(prompts(&ds), ["hf-row"]);
        assert_eq!(prompts(&test), ["hf-test"]);
        assert!(
            err.contains("me/absent")
                && err.contains("datasets--me--absent")
                && err.contains("looked in"),
            "{err}"
        );
    }

    #[test]
    fn malformed_rows_error_or_skip() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "m.jsonl",
            "{\"prompt\": \"ok1\"}\n{\"prompt\": \nnot json\n[1, 2]\n{\"prompt\": 5}\n{\"answer\": \"no prompt\"}\n{\"prompt\": \"ok2\"}\n",
        );
        let err = load(&DatasetConfig::new("m.jsonl"), d.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m.jsonl line 2") && err.contains("invalid JSON"),
            "{err}"
        );
        let mut c = DatasetConfig::new("m.jsonl");
        c.skip_malformed = true;
        let ds = load(&c, d.path()).unwrap();
        assert_eq!(prompts(&ds), ["ok1", "ok2"]);
        assert_eq!(ds.skipped, 5);
        assert_eq!(ds.skipped_examples.len(), 5);
        assert!(
            ds.skipped_examples[3].contains("m.jsonl line 5: field `prompt`: expected a string")
        );
        assert!(ds.skipped_examples[4].contains("m.jsonl line 6: field `prompt`: missing"));
        // Ids stay dense over the kept rows.
        assert_eq!(ds.examples[1].id, "1");
    }

    #[test]
    fn limit_and_kind() {
        let d = tempfile::tempdir().unwrap();
        let rows: String = (0..10)
            .map(|i| format!("{{\"prompt\": \"p{i}\", \"completion\": \"c{i}\"}}\n"))
            .collect();
        write(d.path(), "s.jsonl", &rows);
        let mut c = DatasetConfig::new("s.jsonl");
        c.limit = Some(3);
        c.kind = RecordKind::Sft;
        let ds = load(&c, d.path()).unwrap();
        assert_eq!(prompts(&ds), ["p0", "p1", "p2"]);
        assert_eq!(ds.examples[2].completion.as_deref(), Some("c2"));
    }

    #[test]
    fn split_is_disjoint_complete_and_seeded() {
        let d = tempfile::tempdir().unwrap();
        let rows: String = (0..20)
            .map(|i| format!("{{\"prompt\": \"p{i}\"}}\n"))
            .collect();
        write(d.path(), "s.jsonl", &rows);
        let mut c = DatasetConfig::new("s.jsonl");
        c.eval_fraction = Some(0.25);
        c.seed = 3;
        let s = load_split(&c, d.path()).unwrap();
        assert_eq!((s.train.len(), s.eval.len()), (15, 5));
        let mut ids: Vec<usize> = s
            .train
            .iter()
            .chain(&s.eval)
            .map(|e| e.id.parse().unwrap())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..20).collect::<Vec<_>>());
        let again = load_split(&c, d.path()).unwrap();
        assert_eq!(again.eval, s.eval);
        assert_eq!(s.sampler, EpochSampler::new(15, 3, true));
        c.eval_count = Some(2);
        assert!(load_split(&c, d.path())
            .unwrap_err()
            .to_string()
            .contains("not both"));
    }

    #[test]
    fn synthetic_sources() {
        let mut c = DatasetConfig::new("synthetic:arith");
        c.synthetic = Some(json!({"n": 4, "seed": 1, "ops": ["+"]}));
        let ds = load(&c, Path::new(".")).unwrap();
        assert_eq!(ds.examples.len(), 4);
        assert!(ds.examples.iter().all(|e| e.metadata["op"] == "+"));
        let mut c = DatasetConfig::new("synthetic:countdown");
        c.synthetic = Some(json!({"n": 2, "count": 3}));
        let ds = load(&c, Path::new(".")).unwrap();
        assert_eq!(
            ds.examples[0].metadata["numbers"].as_array().unwrap().len(),
            3
        );
        c.synthetic = Some(json!({"n": 2, "digits": 3}));
        let err = load(&c, Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("unknown field `digits`"), "{err}");
        let err = load(&DatasetConfig::new("synthetic:sudoku"), Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("unknown synthetic generator"));
        assert!(matches!(ds.examples[0].prompt, Prompt::Text(_)));
    }
}
