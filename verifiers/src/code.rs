//! The `code` verifier: runs the program in a completion against the example's test cases in
//! the [`crate::sandbox`] and rewards the fraction of tests passed.
//!
//! The program is the last fenced code block of the completion (preferring blocks tagged with one
//! of `languages`), else the whole completion. Test cases come from the example's metadata field
//! `tests`: stdin/stdout cases (`{"input", "output"}`) and assert cases (`{"assert"}`: the code is
//! appended to the program, the case passes iff the run exits 0). A failing, crashing or
//! timing-out program is a reward, not an error; `Score::error` is for problems on the
//! verifier's side (no tests in the example, interpreter missing, the sandbox failing).
//!
//! The file runs past 600 lines because of its tests, which run each kind of case in the real
//! sandbox; the verifier itself is about 550 lines.

use crate::builtin::options::{count, typed_options};
use crate::extract::{fenced_blocks, FencedBlock};
use crate::sandbox::{Sandbox, SandboxConfig, SandboxFile, SandboxLimits, SandboxRequest};
use crate::{Group, Score, Verifier, VerifierError};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Options of the `code` verifier (the task's verifier table without `name` / `weight`).
#[derive(Debug, Clone, PartialEq)]
pub struct CodeOptions {
    /// Interpreter argv; the program file name is appended. Found on the sandbox `PATH`.
    pub interpreter: Vec<String>,
    /// Name of the program file in the work directory.
    pub file_name: String,
    /// Fence tags preferred when picking the code block.
    pub languages: Vec<String>,
    /// Wall-clock seconds per test run.
    pub timeout_s: f64,
    /// CPU seconds per process.
    pub cpu_s: u64,
    /// Address space per process, MiB.
    pub memory_mb: u64,
    /// Processes/threads of one run.
    pub max_processes: u64,
    /// Bytes kept of stdout and of stderr.
    pub max_output_bytes: usize,
    /// Largest file the program may write, MiB.
    pub max_file_mb: u64,
    /// Size of the work directory tmpfs, MiB.
    pub max_disk_mb: u64,
    /// Test runs at once across the whole batch.
    pub parallel: usize,
    /// Metadata field holding the test cases.
    pub tests_field: String,
    /// Fail every run when the host cannot isolate the network.
    pub require_net_isolation: bool,
    /// Hide `/proc` from the program (see [`SandboxConfig::hide_proc`]).
    pub hide_proc: bool,
}

impl Default for CodeOptions {
    fn default() -> Self {
        Self {
            interpreter: vec!["python3".into()],
            file_name: "main.py".into(),
            languages: vec!["python".into(), "py".into(), "python3".into()],
            timeout_s: 10.0,
            cpu_s: 10,
            memory_mb: 1024,
            max_processes: 16,
            max_output_bytes: 1 << 20,
            max_file_mb: 16,
            max_disk_mb: 64,
            parallel: std::thread::available_parallelism().map_or(2, |n| n.get()),
            tests_field: "tests".into(),
            require_net_isolation: false,
            hide_proc: true,
        }
    }
}

/// A configuration error of `code`.
fn config_error(message: impl Into<String>) -> VerifierError {
    crate::builtin::options::config_error("code", message)
}

/// The options table as written in the task file (see [`CodeOptions`] for the meanings).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptions {
    /// A string (one word) or a non-empty list of strings, checked by [`string_list`].
    interpreter: Option<Value>,
    file_name: Option<String>,
    languages: Option<Vec<String>>,
    timeout_s: Option<f64>,
    #[serde(default, deserialize_with = "count")]
    cpu_s: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    memory_mb: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    max_processes: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    max_output_bytes: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    max_file_mb: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    max_disk_mb: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    parallel: Option<u64>,
    tests_field: Option<String>,
    require_net_isolation: Option<bool>,
    hide_proc: Option<bool>,
}

/// A non-empty JSON list of strings (option `key`).
fn string_list(key: &str, v: &Value) -> Result<Vec<String>, VerifierError> {
    let items = v
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| config_error(format!("`{key}` must be a non-empty list of strings")))?;
    items
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_string)
                .ok_or_else(|| config_error(format!("`{key}` must be a list of strings")))
        })
        .collect()
}

/// The count `n` of option `key`, unless it is 0.
fn positive(key: &str, n: Option<u64>) -> Result<Option<u64>, VerifierError> {
    match n {
        Some(0) => Err(config_error(format!(
            "`{key}` must be a positive integer, got 0"
        ))),
        other => Ok(other),
    }
}

impl CodeOptions {
    /// Reads the options; unknown keys and bad values are a [`VerifierError::Config`] naming
    /// the key. A JSON `null` option counts as absent.
    pub fn from_options(options: &Map<String, Value>) -> Result<Self, VerifierError> {
        let raw: RawOptions = typed_options("code", options)?;
        let mut o = Self::default();
        if let Some(v) = &raw.interpreter {
            o.interpreter = match v {
                Value::String(s) if !s.is_empty() => vec![s.clone()],
                _ => string_list("interpreter", v)?,
            };
        }
        if let Some(name) = raw.file_name {
            if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
                return Err(config_error(format!(
                    "`file_name` must be a plain file name, got {}",
                    Value::String(name)
                )));
            }
            o.file_name = name;
        }
        if let Some(languages) = raw.languages {
            if languages.is_empty() {
                return Err(config_error(
                    "`languages` must be a non-empty list of strings",
                ));
            }
            o.languages = languages;
        }
        if let Some(t) = raw.timeout_s {
            if !(t.is_finite() && t > 0.0 && t <= 3600.0) {
                return Err(config_error(format!(
                    "`timeout_s` must be in (0, 3600], got {t}"
                )));
            }
            o.timeout_s = t;
        }
        // Without `cpu_s`, the wall-clock limit rounded up.
        o.cpu_s =
            positive("cpu_s", raw.cpu_s)?.unwrap_or_else(|| o.timeout_s.ceil().max(1.0) as u64);
        for (key, given, field) in [
            ("memory_mb", raw.memory_mb, &mut o.memory_mb),
            ("max_processes", raw.max_processes, &mut o.max_processes),
            ("max_file_mb", raw.max_file_mb, &mut o.max_file_mb),
            ("max_disk_mb", raw.max_disk_mb, &mut o.max_disk_mb),
        ] {
            if let Some(n) = positive(key, given)? {
                *field = n;
            }
        }
        if let Some(n) = positive("max_output_bytes", raw.max_output_bytes)? {
            o.max_output_bytes = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = positive("parallel", raw.parallel)? {
            o.parallel = usize::try_from(n.min(1024)).unwrap_or(1024);
        }
        if let Some(field) = raw.tests_field {
            if field.is_empty() {
                return Err(config_error("`tests_field` must not be empty"));
            }
            o.tests_field = field;
        }
        if let Some(b) = raw.require_net_isolation {
            o.require_net_isolation = b;
        }
        if let Some(b) = raw.hide_proc {
            o.hide_proc = b;
        }
        Ok(o)
    }

    /// The sandbox limits of one test run.
    pub fn limits(&self) -> SandboxLimits {
        SandboxLimits {
            wall: Duration::from_secs_f64(self.timeout_s),
            cpu_s: self.cpu_s,
            memory_bytes: self.memory_mb.saturating_mul(1 << 20),
            max_processes: self.max_processes,
            max_output_bytes: self.max_output_bytes,
            max_file_bytes: self.max_file_mb.saturating_mul(1 << 20),
            max_disk_bytes: self.max_disk_mb.saturating_mul(1 << 20),
            ..SandboxLimits::default()
        }
    }
}

/// One test case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestCase {
    /// Feed `input` on stdin; pass iff the run exits 0 and stdout equals `output` (both trimmed,
    /// trailing whitespace of each line ignored).
    Io {
        /// The program's stdin.
        input: String,
        /// The stdout it must print.
        output: String,
    },
    /// Run the program followed by `code` (with `input` on stdin); pass iff it exits 0.
    Assert {
        /// Code appended to the program (`assert f(1) == 2`).
        code: String,
        /// The program's stdin.
        input: String,
    },
}

/// A JSON value as text: strings as they are, anything else as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Reads test cases: a list of `{"input","output"}` / `{"assert"[,"input"]}` objects or of assert
/// strings, an `{"inputs": [...], "outputs": [...]}` object, or a JSON string holding either.
pub fn parse_tests(v: &Value) -> Result<Vec<TestCase>, String> {
    match v {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(inner @ (Value::Array(_) | Value::Object(_))) => parse_tests(&inner),
            _ => Err("is a string that is not a JSON list or object of tests".into()),
        },
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, t)| match t {
                Value::String(code) => Ok(TestCase::Assert {
                    code: code.clone(),
                    input: String::new(),
                }),
                Value::Object(m) => {
                    let input = m.get("input").map(text).unwrap_or_default();
                    if let Some(code) = m.get("assert") {
                        Ok(TestCase::Assert {
                            code: text(code),
                            input,
                        })
                    } else if let Some(out) = m.get("output") {
                        Ok(TestCase::Io {
                            input,
                            output: text(out),
                        })
                    } else {
                        Err(format!("[{i}] has neither `output` nor `assert`"))
                    }
                }
                other => Err(format!("[{i}] is not a test object: {other}")),
            })
            .collect(),
        Value::Object(m) => {
            let (Some(Value::Array(ins)), Some(Value::Array(outs))) =
                (m.get("inputs"), m.get("outputs"))
            else {
                return Err("is an object without `inputs` and `outputs` lists".into());
            };
            if ins.len() != outs.len() {
                return Err(format!(
                    "has {} inputs but {} outputs",
                    ins.len(),
                    outs.len()
                ));
            }
            Ok(ins
                .iter()
                .zip(outs)
                .map(|(i, o)| TestCase::Io {
                    input: text(i),
                    output: text(o),
                })
                .collect())
        }
        other => Err(format!("is not a list of tests: {other}")),
    }
}

/// The code of a completion: the last closed fenced block tagged with one of `languages`, else the
/// last closed untagged block, else the last closed block, else an unclosed last block (a
/// completion cut off in its code), else the whole text. Only the text after the last `</think>`
/// is searched.
pub fn extract_code(completion: &str, languages: &[String]) -> String {
    let text = completion
        .rfind("</think>")
        .map_or(completion, |i| &completion[i + "</think>".len()..]);
    let mut blocks = fenced_blocks(text);
    let open = match blocks.last() {
        Some(b) if !b.closed => blocks.pop(),
        _ => None,
    };
    let closed = |pred: &dyn Fn(&FencedBlock) -> bool| blocks.iter().rev().find(|b| pred(b));
    let wanted = |b: &FencedBlock| languages.iter().any(|l| l.eq_ignore_ascii_case(b.tag));
    if let Some(b) = closed(&wanted)
        .or_else(|| closed(&|b: &FencedBlock| b.tag.is_empty()))
        .or_else(|| blocks.last())
    {
        return b.body.clone();
    }
    match open {
        Some(b) => b.body,
        None => text.to_string(),
    }
}

/// Output as compared: trailing whitespace of every line dropped, then leading/trailing blank
/// space of the whole text.
pub fn normalize_output(s: &str) -> String {
    s.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

/// The result of one test run.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Pass,
    /// Ran to completion (exit 0) with the wrong output.
    Wrong,
    /// Killed at the wall-clock limit.
    Timeout,
    /// Non-zero exit or killed by a signal (syntax error, exception, limit).
    RuntimeError,
    /// The sandbox could not run it: a verifier-side problem.
    Failed(String),
}

/// The `code` verifier.
#[derive(Debug, Clone)]
pub struct CodeVerifier {
    options: CodeOptions,
    sandbox: Sandbox,
}

impl CodeVerifier {
    /// A verifier with these options and the default sandbox configuration.
    pub fn new(options: CodeOptions) -> Self {
        let config = SandboxConfig {
            require_net_isolation: options.require_net_isolation,
            hide_proc: options.hide_proc,
            ..SandboxConfig::default()
        };
        Self::with_sandbox(options, Sandbox::new(config))
    }

    /// A verifier running its tests in the given sandbox.
    pub fn with_sandbox(options: CodeOptions, sandbox: Sandbox) -> Self {
        Self { options, sandbox }
    }

    /// Builds it from a task's option table.
    pub fn from_options(options: &Map<String, Value>) -> Result<Self, VerifierError> {
        Ok(Self::new(CodeOptions::from_options(options)?))
    }

    /// Its options.
    pub fn options(&self) -> &CodeOptions {
        &self.options
    }

    /// The sandbox request running `program` for `test`.
    fn request(&self, program: &str, test: &TestCase) -> SandboxRequest {
        let (source, input) = match test {
            TestCase::Io { input, .. } => (program.to_string(), input),
            TestCase::Assert { code, input } => (format!("{program}\n{code}\n"), input),
        };
        let mut argv = self.options.interpreter.clone();
        argv.push(self.options.file_name.clone());
        SandboxRequest {
            argv,
            stdin: input.clone().into_bytes(),
            files: vec![SandboxFile::new(self.options.file_name.clone(), source)],
            env: Vec::new(),
            limits: self.options.limits(),
        }
    }

    fn run_test(&self, program: &str, test: &TestCase) -> Verdict {
        match self.sandbox.run(&self.request(program, test)) {
            Err(e) => Verdict::Failed(e.to_string()),
            Ok(o) if o.timed_out => Verdict::Timeout,
            Ok(o) if !o.success() => Verdict::RuntimeError,
            Ok(o) => match test {
                TestCase::Assert { .. } => Verdict::Pass,
                TestCase::Io { output, .. } => {
                    if normalize_output(&o.stdout_text()) == normalize_output(output) {
                        Verdict::Pass
                    } else {
                        Verdict::Wrong
                    }
                }
            },
        }
    }
}

/// The score of one completion from its test verdicts.
fn score(verdicts: &[Verdict]) -> Score {
    let total = verdicts.len();
    let count = |f: fn(&Verdict) -> bool| verdicts.iter().filter(|v| f(v)).count();
    let passed = count(|v| *v == Verdict::Pass);
    let mut s = Score::reward(if total == 0 {
        0.0
    } else {
        passed as f32 / total as f32
    });
    s.components.insert("passed".into(), passed as f32);
    s.components.insert("total".into(), total as f32);
    s.components
        .insert("timeouts".into(), count(|v| *v == Verdict::Timeout) as f32);
    s.components.insert(
        "errors".into(),
        count(|v| *v == Verdict::RuntimeError) as f32,
    );
    if let Some(Verdict::Failed(e)) = verdicts.iter().find(|v| matches!(v, Verdict::Failed(_))) {
        s.reward = 0.0;
        s.error = Some(format!("code verifier: {e}"));
    }
    s
}

impl Verifier for CodeVerifier {
    fn name(&self) -> &str {
        "code"
    }

    fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
        let mut out: Vec<Vec<Option<Score>>> = groups
            .iter()
            .map(|g| vec![None; g.completions.len()])
            .collect();
        // Every (group, completion, test) run of the batch, scheduled on one bounded pool.
        struct Job<'a> {
            gi: usize,
            ci: usize,
            program: &'a str,
            test: &'a TestCase,
        }
        let mut tests: Vec<Vec<TestCase>> = Vec::with_capacity(groups.len());
        for (gi, g) in groups.iter().enumerate() {
            let field = &self.options.tests_field;
            let parsed = match g.example.metadata.get(field) {
                None | Some(Value::Null) => Err(format!("the example has no `{field}` metadata")),
                Some(v) => parse_tests(v)
                    .map_err(|e| format!("`{field}` {e}"))
                    .and_then(|t| {
                        if t.is_empty() {
                            Err(format!("`{field}` holds no test cases"))
                        } else {
                            Ok(t)
                        }
                    }),
            };
            match parsed {
                Ok(t) => tests.push(t),
                Err(e) => {
                    for s in &mut out[gi] {
                        *s = Some(Score::failed(format!("code verifier: {e}")));
                    }
                    tests.push(Vec::new());
                }
            }
        }
        let programs: Vec<Vec<String>> = groups
            .iter()
            .map(|g| {
                g.completions
                    .iter()
                    .map(|c| extract_code(c, &self.options.languages))
                    .collect()
            })
            .collect();
        let mut jobs: Vec<Job> = Vec::new();
        for (gi, (group_programs, group_tests)) in programs.iter().zip(&tests).enumerate() {
            for (ci, program) in group_programs.iter().enumerate() {
                for test in group_tests {
                    jobs.push(Job {
                        gi,
                        ci,
                        program,
                        test,
                    });
                }
            }
        }
        let verdicts: Mutex<Vec<Option<Verdict>>> = Mutex::new(vec![None; jobs.len()]);
        let next = AtomicUsize::new(0);
        let workers = self.options.parallel.clamp(1, jobs.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let v = self.run_test(job.program, job.test);
                    verdicts.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(v);
                });
            }
        });
        let verdicts = verdicts.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut per: Vec<Vec<Vec<Verdict>>> = groups
            .iter()
            .map(|g| vec![Vec::new(); g.completions.len()])
            .collect();
        for (job, v) in jobs.iter().zip(verdicts) {
            per[job.gi][job.ci]
                .push(v.unwrap_or_else(|| Verdict::Failed("a test run was lost".into())));
        }
        out.into_iter()
            .zip(per)
            .map(|(scores, vs)| {
                scores
                    .into_iter()
                    .zip(vs)
                    .map(|(s, v)| s.unwrap_or_else(|| score(&v)))
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn langs() -> Vec<String> {
        CodeOptions::default().languages
    }

    #[test]
    fn the_last_python_block_is_the_program() {
        let c = "Try:\n```python\nprint(1)\n```\nBetter:\n```py\nprint(2)\n```\nOutput:\n```text\n2\n```\n";
        assert_eq!(extract_code(c, &langs()), "print(2)\n");
        let c = "```\nx = 1\n```\nand\n```bash\nls\n```";
        assert_eq!(extract_code(c, &langs()), "x = 1\n");
        assert_eq!(extract_code("print(3)", &langs()), "print(3)");
        // Cut off inside the code.
        assert_eq!(
            extract_code("ok\n```python\nprint(4", &langs()),
            "print(4\n"
        );
        // Indented fences, and reasoning before </think> ignored.
        let c = "<think>```python\nbad()\n```</think>\n  ```python\n  print(5)\n  ```";
        assert_eq!(extract_code(c, &langs()), "  print(5)\n");
    }

    #[test]
    fn outputs_compare_trimmed_per_line() {
        assert_eq!(
            normalize_output("1 2  \n3\t\r\n\n"),
            normalize_output("1 2\n3")
        );
        assert_ne!(normalize_output("1  2"), normalize_output("1 2"));
    }

    #[test]
    fn test_formats() {
        let t = parse_tests(
            &json!([{"input": "1\n", "output": "2"}, {"assert": "assert f(1) == 2"}, "assert g()"]),
        )
        .unwrap();
        assert_eq!(t.len(), 3);
        assert!(matches!(&t[0], TestCase::Io { input, output } if input == "1\n" && output == "2"));
        assert!(matches!(&t[2], TestCase::Assert { code, .. } if code == "assert g()"));
        let t = parse_tests(&json!({"inputs": ["1", "2"], "outputs": ["a", 3]})).unwrap();
        assert_eq!(
            t[1],
            TestCase::Io {
                input: "2".into(),
                output: "3".into()
            }
        );
        let t = parse_tests(&json!("[{\"input\": \"\", \"output\": \"x\"}]")).unwrap();
        assert_eq!(t.len(), 1);
        assert!(parse_tests(&json!([{"input": "1"}])).is_err());
        assert!(parse_tests(&json!({"inputs": ["1"], "outputs": []})).is_err());
        assert!(parse_tests(&json!(3)).is_err());
        assert!(parse_tests(&json!("not json")).is_err());
    }

    #[test]
    fn options_are_validated() {
        let o = |v: Value| CodeOptions::from_options(v.as_object().unwrap());
        let d = o(json!({"timeout_s": 2.5})).unwrap();
        assert_eq!(d.cpu_s, 3);
        assert_eq!(d.interpreter, ["python3"]);
        assert_eq!(
            o(json!({"interpreter": "python3.11"})).unwrap().interpreter,
            ["python3.11"]
        );
        let d = o(json!({
            "interpreter": ["python3", "-u"], "file_name": "sol.py", "languages": ["py"],
            "timeout_s": 3, "cpu_s": 7, "memory_mb": 512, "max_processes": 4,
            "max_output_bytes": 4096, "max_file_mb": 2, "max_disk_mb": 8, "parallel": 5000,
            "tests_field": "cases", "require_net_isolation": true, "hide_proc": false
        }))
        .unwrap();
        assert_eq!(d.interpreter, ["python3", "-u"]);
        assert_eq!(
            (d.file_name.as_str(), d.languages.as_slice()),
            ("sol.py", &["py".to_string()][..])
        );
        assert_eq!(d.timeout_s, 3.0);
        assert_eq!(
            (d.cpu_s, d.memory_mb, d.max_processes, d.max_output_bytes),
            (7, 512, 4, 4096)
        );
        assert_eq!((d.max_file_mb, d.max_disk_mb, d.parallel), (2, 8, 1024));
        assert_eq!(d.tests_field, "cases");
        assert!(d.require_net_isolation && !d.hide_proc);
        // A null option is absent: the defaults (`cpu_s` from `timeout_s`).
        let nulls = json!({
            "interpreter": null, "file_name": null, "languages": null, "timeout_s": null,
            "cpu_s": null, "memory_mb": null, "max_processes": null, "max_output_bytes": null,
            "max_file_mb": null, "max_disk_mb": null, "parallel": null, "tests_field": null,
            "require_net_isolation": null, "hide_proc": null
        });
        assert_eq!(o(nulls).unwrap(), CodeOptions::default());
        let count = "expected a non-negative integer";
        for (bad, want) in [
            (
                json!({"bogus": 1}),
                "unknown field `bogus`, expected one of `interpreter`, `file_name`, \
                 `languages`, `timeout_s`, `cpu_s`, `memory_mb`, `max_processes`, \
                 `max_output_bytes`, `max_file_mb`, `max_disk_mb`, `parallel`, `tests_field`, \
                 `require_net_isolation`, `hide_proc`",
            ),
            (json!({"bogus": null}), "unknown field `bogus`"),
            (
                json!({"timeout_s": 0}),
                "`timeout_s` must be in (0, 3600], got 0",
            ),
            (
                json!({"timeout_s": 3601}),
                "`timeout_s` must be in (0, 3600], got 3601",
            ),
            (
                json!({"timeout_s": "10"}),
                "`timeout_s`: invalid type: string \"10\", expected f64",
            ),
            (
                json!({"file_name": "../x.py"}),
                "`file_name` must be a plain file name, got \"../x.py\"",
            ),
            (
                json!({"file_name": ".."}),
                "`file_name` must be a plain file name, got \"..\"",
            ),
            (
                json!({"file_name": ""}),
                "`file_name` must be a plain file name, got \"\"",
            ),
            (
                json!({"file_name": 3}),
                "`file_name`: invalid type: integer `3`, expected a string",
            ),
            (
                json!({"interpreter": []}),
                "`interpreter` must be a non-empty list of strings",
            ),
            (
                json!({"interpreter": ""}),
                "`interpreter` must be a non-empty list of strings",
            ),
            (
                json!({"interpreter": ["python3", 1]}),
                "`interpreter` must be a list of strings",
            ),
            (
                json!({"languages": []}),
                "`languages` must be a non-empty list of strings",
            ),
            (
                json!({"languages": "python"}),
                "`languages`: invalid type: string \"python\", expected a sequence",
            ),
            (
                json!({"languages": ["py", 1]}),
                "`languages[1]`: invalid type: integer `1`, expected a string",
            ),
            (
                json!({"parallel": 0}),
                "`parallel` must be a positive integer, got 0",
            ),
            (
                json!({"cpu_s": 0}),
                "`cpu_s` must be a positive integer, got 0",
            ),
            (
                json!({"max_output_bytes": 0}),
                "`max_output_bytes` must be a positive integer, got 0",
            ),
            (
                json!({"memory_mb": "a lot"}),
                "`memory_mb`: invalid type: string \"a lot\", expected a non-negative integer",
            ),
            (
                json!({"max_disk_mb": -1}),
                "`max_disk_mb`: invalid value: integer `-1`, expected a non-negative integer",
            ),
            (json!({"max_file_mb": 1.5}), count),
            (
                json!({"tests_field": ""}),
                "`tests_field` must not be empty",
            ),
            (
                json!({"tests_field": 1}),
                "`tests_field`: invalid type: integer `1`, expected a string",
            ),
            (
                json!({"hide_proc": "no"}),
                "`hide_proc`: invalid type: string \"no\", expected a boolean",
            ),
            (
                json!({"require_net_isolation": 1}),
                "`require_net_isolation`: invalid type: integer `1`, expected a boolean",
            ),
        ] {
            let e = o(bad.clone());
            assert!(matches!(e, Err(VerifierError::Config { .. })), "{bad}");
            let e = e.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                e.contains("verifier `code`") && e.contains(want),
                "{bad}: {e}"
            );
        }
    }
}
