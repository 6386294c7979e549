//! Tasks as configuration: a `[task]` TOML table names a dataset (with its field mapping, split
//! and seed), a prompt template and weighted verifiers. Adding a task needs no Rust:
//!
//! ```toml
//! [task]
//! name = "gsm8k"
//! [task.dataset]
//! source = "hf://datasets/openai/gsm8k"   # or a file / folder / synthetic:arith
//! subset = "main"
//! fields = { prompt = "question", answer = "answer" }
//! eval_count = 100
//! [task.prompt]
//! system = "Think step by step."
//! user = "{{ question }}\nPut the final answer in \\boxed{}."
//! [[task.verifiers]]
//! name = "math"
//! weight = 1.0
//! ```
//!
//! Verifier tables are kept as JSON objects (`name`, `weight`, every other key an option) and
//! handed to `oxrl-verifiers`, which checks their shape ([`oxrl_verifiers::check_specs`], the
//! one copy of the name and weight rules) and builds them.

use crate::error::{Result, TaskError};
use oxrl_datasets::{
    load_split, DatasetConfig, Example, PromptConfig, PromptTemplate, SplitDataset,
};
use oxrl_verifiers::{check_specs, BuildContext, Registry, WeightedVerifiers};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The `[task]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Short name, for logs and metrics.
    #[serde(default)]
    pub name: Option<String>,
    /// Free description.
    #[serde(default)]
    pub description: Option<String>,
    /// Where the examples come from.
    pub dataset: DatasetConfig,
    /// How prompts are rendered.
    #[serde(default)]
    pub prompt: PromptConfig,
    /// `[[task.verifiers]]` tables: `name`, `weight` (default 1) and options.
    #[serde(default)]
    pub verifiers: Vec<Map<String, Value>>,
    /// Folder that relative dataset paths are resolved against (the task file's folder).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Deserialize)]
struct TaskFile {
    task: Option<TaskConfig>,
}

impl TaskConfig {
    /// Parses a TOML document holding a `[task]` table (other top-level tables are ignored, so a
    /// training config can embed its task). `origin` names the document in errors; `base_dir`
    /// anchors relative paths.
    pub fn from_toml_str(text: &str, origin: &Path, base_dir: &Path) -> Result<Self> {
        let file: TaskFile = toml::from_str(text).map_err(|e| TaskError::File {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut task = file.task.ok_or_else(|| TaskError::File {
            path: origin.to_path_buf(),
            message: "no [task] table".into(),
        })?;
        task.base_dir = base_dir.to_path_buf();
        task.validate().map_err(|e| TaskError::File {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(task)
    }

    /// Reads a task file; relative dataset paths are relative to its folder.
    pub fn from_path(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| oxrl_datasets::DatasetError::io(path, e))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_toml_str(&text, path, &base)
    }

    /// Checks what can be checked without reading data: verifier tables and split sizes.
    pub fn validate(&self) -> Result<()> {
        self.dataset.eval_size()?;
        check_specs(&self.verifier_specs(), "task.verifiers")?;
        Ok(())
    }

    /// Builds the task's weighted verifiers through `registry` (relative paths in options
    /// resolve against the task file's folder).
    pub fn build_verifiers(&self, registry: &Registry) -> Result<WeightedVerifiers> {
        if self.verifiers.is_empty() {
            return Err(TaskError::NoVerifiers);
        }
        Ok(registry.build_weighted(&self.verifier_specs(), &BuildContext::new(&self.base_dir))?)
    }

    /// The verifier tables as JSON objects with `weight` filled in (default 1.0), ready for
    /// `oxrl-verifiers`.
    pub fn verifier_specs(&self) -> Vec<Value> {
        self.verifiers
            .iter()
            .map(|v| {
                let mut v = v.clone();
                v.entry("weight").or_insert(Value::from(1.0));
                Value::Object(v)
            })
            .collect()
    }

    /// Compiles the template and loads the data.
    pub fn load(&self) -> Result<Task> {
        let template = PromptTemplate::new(self.prompt.clone())?;
        let mut data = load_split(&self.dataset, &self.base_dir)?;
        for e in data.train.iter_mut().chain(data.eval.iter_mut()) {
            e.prompt = template.render(e)?;
        }
        Ok(Task {
            config: self.clone(),
            template,
            data,
        })
    }
}

/// A loaded task: its configuration, compiled template and examples with rendered prompts.
#[derive(Debug)]
pub struct Task {
    /// The configuration it was loaded from.
    pub config: TaskConfig,
    /// The compiled prompt template.
    pub template: PromptTemplate,
    /// The examples (prompts already rendered).
    pub data: SplitDataset,
}

impl Task {
    /// Renders the prompt of an example that did not come from the task's own data (e.g. a row
    /// of `oxrl verify` input mapped with the task's field mapping).
    pub fn prepare(&self, mut example: Example) -> Result<Example> {
        example.prompt = self.template.render(&example)?;
        Ok(example)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxrl_datasets::{ChatMessage, Prompt};
    use serde_json::json;

    const ARITH: &str = r#"
[task]
name = "t"
[task.dataset]
source = "synthetic:arith"
eval_count = 2
[task.dataset.synthetic]
n = 10
seed = 3
ops = ["*"]
[task.prompt]
system = "sys"
user = "Q: {{ question }} ({{ kind }})"
[[task.verifiers]]
name = "arith"
[[task.verifiers]]
name = "format"
weight = 0.5
pattern = "x"
[trainer]
ignored = true
"#;

    fn parse(text: &str) -> Result<TaskConfig> {
        TaskConfig::from_toml_str(text, Path::new("task.toml"), Path::new("."))
    }

    #[test]
    fn parses_and_loads_a_synthetic_task() {
        let cfg = parse(ARITH).unwrap();
        assert_eq!(cfg.name.as_deref(), Some("t"));
        assert_eq!(
            cfg.verifier_specs(),
            [
                json!({"name": "arith", "weight": 1.0}),
                json!({"name": "format", "weight": 0.5, "pattern": "x"})
            ]
        );
        let task = cfg.load().unwrap();
        assert_eq!((task.data.train.len(), task.data.eval.len()), (8, 2));
        let e = &task.data.train[0];
        let Prompt::Messages(m) = &e.prompt else {
            panic!("expected chat messages, got {:?}", e.prompt)
        };
        assert_eq!(m[0], ChatMessage::new("system", "sys"));
        let expr = e.metadata["expression"].as_str().unwrap();
        assert_eq!(m[1].content, format!("Q: What is {expr}? (arith)"));
        let (a, b) = (
            e.metadata["a"].as_i64().unwrap(),
            e.metadata["b"].as_i64().unwrap(),
        );
        assert_eq!(e.answer, Some((a * b).to_string()));
        // `prepare` renders a foreign example the same way.
        let mut raw = e.clone();
        raw.prompt = Prompt::Text(format!("What is {expr}?"));
        assert_eq!(task.prepare(raw).unwrap().prompt, e.prompt);
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let err = parse("[trainer]\nx = 1\n").unwrap_err().to_string();
        assert_eq!(err, "cannot parse task.toml: no [task] table");
        let err = parse("[task]\n[task.dataset]\nsource = \"a.jsonl\"\nshufle = false\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("task.toml") && err.contains("unknown field `shufle`"),
            "{err}"
        );
        let err =
            parse("[task]\n[task.dataset]\nsource = \"a.jsonl\"\n[[task.verifiers]]\nweight = 1\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("task.verifiers[0] needs a string `name`"),
            "{err}"
        );
        let err = parse(
            "[task]\n[task.dataset]\nsource = \"a.jsonl\"\n[[task.verifiers]]\nname = \"m\"\nweight = \"high\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`weight` must be a number"), "{err}");
        let err = parse("[task]\nname = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("missing field `dataset`"), "{err}");
        let err = parse(
            "[task]\n[task.dataset]\nsource = \"a.jsonl\"\n[task.prompt]\nformat = \"html\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown variant `html`"), "{err}");
    }

    #[test]
    fn relative_sources_resolve_against_the_task_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("tasks")).unwrap();
        std::fs::create_dir_all(d.path().join("data")).unwrap();
        std::fs::write(
            d.path().join("data/x.jsonl"),
            "{\"q\": \"hello\", \"a\": 1}\n",
        )
        .unwrap();
        let path = d.path().join("tasks/t.toml");
        std::fs::write(
            &path,
            "[task]\n[task.dataset]\nsource = \"../data/x.jsonl\"\nfields = { prompt = \"q\", answer = \"a\" }\n\
             [task.prompt]\nformat = \"text\"\nuser = \"Say: {{ prompt }}\"\n",
        )
        .unwrap();
        let task = TaskConfig::from_path(&path).unwrap().load().unwrap();
        assert_eq!(task.data.train[0].prompt, Prompt::Text("Say: hello".into()));
        assert_eq!(task.data.train[0].answer.as_deref(), Some("1"));
    }

    #[test]
    fn shipped_example_tasks_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tasks");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let cfg = TaskConfig::from_path(&path).unwrap();
                assert!(!cfg.verifiers.is_empty(), "{}", path.display());
                let task = cfg.load().unwrap();
                assert!(!task.data.train.is_empty(), "{}", path.display());
                names.push(cfg.name.unwrap_or_default());
            }
        }
        names.sort();
        assert_eq!(
            names,
            [
                "arith",
                "countdown-shaped",
                "math-efficient",
                "math-small",
                "python-plugin",
                "tool-use"
            ]
        );
    }
}
