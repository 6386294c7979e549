//! The `command` verifier's settings: [`CommandConfig`] and how it is read from a task's
//! verifier table (defaults, paths relative to the task folder).

use super::super::{config_error, seconds, typed_options};
use super::KIND;
use crate::{BuildContext, VerifierError};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of a [`CommandVerifier`], as read from the task's verifier table.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandConfig {
    /// Program and arguments (`argv[0]` is looked up on `PATH` unless it contains a `/`).
    pub argv: Vec<String>,
    /// Working folder of the workers (default: the task file's folder).
    pub cwd: Option<PathBuf>,
    /// Worker processes in the pool.
    pub workers: usize,
    /// Deadline of one request (one line out, one line back).
    pub timeout: Duration,
    /// Deadline of the handshake after a worker starts.
    pub startup_timeout: Duration,
    /// Groups per request.
    pub batch_size: usize,
    /// Extra environment variables of the workers (on top of oxrl's own).
    pub env: BTreeMap<String, String>,
    /// Failures in a row after which a worker is not restarted any more.
    pub restart_limit: u32,
    /// Passed to the plugin untouched, in the hello.
    pub options: Map<String, Value>,
    /// Longest answer line accepted, in bytes.
    pub max_line_bytes: usize,
}

impl CommandConfig {
    /// Defaults around a program and its arguments.
    pub fn new(argv: Vec<String>) -> Self {
        Self {
            argv,
            cwd: None,
            workers: default_workers(),
            timeout: Duration::from_secs(30),
            startup_timeout: Duration::from_secs(30),
            batch_size: 16,
            env: BTreeMap::new(),
            restart_limit: 5,
            options: Map::new(),
            max_line_bytes: 16 << 20,
        }
    }

    /// Reads the options of a `command` verifier table (see `VERIFIERS.md` for the keys).
    /// `argv[0]` containing a `/` and later arguments naming an existing file are resolved
    /// against the task's folder; `cwd` defaults to that folder.
    pub fn from_options(
        options: &Map<String, Value>,
        ctx: &BuildContext,
    ) -> Result<Self, VerifierError> {
        let raw: RawOptions = typed_options(KIND, options)?;
        let argv: Vec<String> = match raw.command {
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(config_error(
                        KIND,
                        format!("`command` entries must be strings, got {other}"),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
            other => {
                return Err(config_error(
                    KIND,
                    format!("`command` must be a list of strings (program, args..), got {other}"),
                ))
            }
        };
        if argv.first().is_none_or(|p| p.is_empty()) {
            return Err(config_error(KIND, "`command` is empty"));
        }
        let argv = resolve_argv(argv, ctx);
        let mut c = Self::new(argv);
        c.cwd = match raw.cwd {
            Some(d) => Some(ctx.resolve(&d)),
            None if ctx.base_dir.as_os_str().is_empty() => None,
            None => Some(ctx.base_dir.clone()),
        };
        if let Some(w) = raw.workers {
            if w == 0 || w > 256 {
                return Err(config_error(
                    KIND,
                    format!("`workers` must be in 1..=256, got {w}"),
                ));
            }
            c.workers = w;
        }
        c.timeout = seconds(KIND, "timeout_s", raw.timeout_s, c.timeout)?;
        c.startup_timeout = seconds(
            KIND,
            "startup_timeout_s",
            raw.startup_timeout_s,
            c.startup_timeout,
        )?;
        if let Some(b) = raw.batch_size {
            if b == 0 {
                return Err(config_error(KIND, "`batch_size` must be at least 1"));
            }
            c.batch_size = b;
        }
        c.env = raw.env;
        if let Some(r) = raw.restart_limit {
            c.restart_limit = r;
        }
        c.options = raw.options;
        if let Some(m) = raw.max_line_bytes {
            if m < 1024 {
                return Err(config_error(
                    KIND,
                    format!("`max_line_bytes` must be at least 1024, got {m}"),
                ));
            }
            c.max_line_bytes = m;
        }
        Ok(c)
    }
}

/// One worker per core, at most two (a plugin is usually light, and the trainer needs the rest).
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

/// `argv[0]` with a path separator, and later arguments that name an existing file relative to
/// the task folder, become paths under that folder; everything else is kept.
fn resolve_argv(argv: Vec<String>, ctx: &BuildContext) -> Vec<String> {
    argv.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let is_path = if i == 0 {
                a.contains('/') || a.contains(std::path::MAIN_SEPARATOR)
            } else {
                !a.starts_with('-') && ctx.resolve(&a).is_file()
            };
            if is_path && !ctx.base_dir.as_os_str().is_empty() {
                ctx.resolve(&a).to_string_lossy().into_owned()
            } else {
                a
            }
        })
        .collect()
}

/// The table as written in the task file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptions {
    command: Value,
    cwd: Option<String>,
    workers: Option<usize>,
    timeout_s: Option<f64>,
    startup_timeout_s: Option<f64>,
    batch_size: Option<usize>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    restart_limit: Option<u32>,
    #[serde(default)]
    options: Map<String, Value>,
    max_line_bytes: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn options_parse_with_defaults_and_paths() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("plugin.py"), "").unwrap();
        let ctx = BuildContext::new(d.path());
        let c = CommandConfig::from_options(
            &opts(
                json!({"command": ["python3", "plugin.py", "--flag", "missing.py"],
                "timeout_s": 2.5, "workers": 3, "env": {"A": "1"}, "options": {"k": [1]}}),
            ),
            &ctx,
        )
        .unwrap();
        assert_eq!(
            c.argv,
            [
                "python3".to_string(),
                d.path().join("plugin.py").to_string_lossy().into_owned(),
                "--flag".into(),
                "missing.py".into()
            ]
        );
        assert_eq!(c.cwd.as_deref(), Some(d.path()));
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.workers, 3);
        assert_eq!(c.batch_size, 16);
        assert_eq!(c.env["A"], "1");
        assert_eq!(c.options["k"], json!([1]));
        let c = CommandConfig::from_options(
            &opts(json!({"command": "./run.sh --x", "cwd": "sub"})),
            &ctx,
        )
        .unwrap();
        assert_eq!(
            c.argv[0],
            d.path().join("./run.sh").to_string_lossy().into_owned()
        );
        assert_eq!(c.argv[1], "--x");
        assert_eq!(c.cwd, Some(d.path().join("sub")));
    }

    #[test]
    fn bad_options_are_config_errors() {
        let ctx = BuildContext::default();
        for (v, want) in [
            (json!({}), "missing field `command`"),
            (json!({"command": []}), "`command` is empty"),
            (json!({"command": [1]}), "entries must be strings"),
            (
                json!({"command": ["x"], "timeout_s": 0}),
                "`timeout_s` must be",
            ),
            (json!({"command": ["x"], "workers": 0}), "`workers` must be"),
            (json!({"command": ["x"], "batch_size": 0}), "`batch_size`"),
            (
                json!({"command": ["x"], "bogus": 1}),
                "unknown field `bogus`",
            ),
            (json!({"command": ["x"], "env": {"A": 1}}), "invalid type"),
        ] {
            let err = CommandConfig::from_options(&opts(v.clone()), &ctx)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{v}: {err}");
        }
    }
}
