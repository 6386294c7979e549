//! End-to-end tests of verifier plugins through the `oxrl` binary: the shipped
//! `examples/tasks/python_plugin.toml` (a Python worker over the JSON-lines protocol) scores a
//! completions file to known rewards, and a plugin that crashes mid-run costs only the affected
//! rows (recorded errors), not the run. The plugins are Python scripts: without `python3` each
//! test says so on stderr and skips, or fails when `OXRL_CI_REQUIRE_EXTERNAL=1`
//! (see `tests/external/mod.rs`).

mod external;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Whether `python3` runs (else the skip notice, or a panic under CI's require variable).
fn have_python(test: &str) -> bool {
    external::available(test, external::python_check("pass"))
}

fn verify(task: &Path, completions: &Path, extra: &[&str]) -> (Vec<Value>, String, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_oxrl"))
        .arg("verify")
        .arg("--task")
        .arg(task)
        .arg("--completions")
        .arg(completions)
        .args(extra)
        .output()
        .unwrap();
    let rows = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        rows,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[test]
fn the_python_plugin_task_scores_completions() {
    if !have_python("the_python_plugin_task_scores_completions") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let completions = d.path().join("completions.jsonl");
    std::fs::write(
        &completions,
        concat!(
            // Joined by id with examples/data/keywords_small.jsonl.
            "{\"id\": \"k01\", \"completions\": [\"A blue wave rolls in.\", \"No match here.\"]}\n",
            "{\"id\": \"k07\", \"completion\": \"Rain today.\"}\n",
            // Carries its own fields: 5 words against a limit of 3.
            "{\"instruction\": \"Name two fruits.\", \"keywords\": [\"apple\", \"pear\"], \
             \"max_words\": 3, \"completion\": \"An apple and a pear.\"}\n",
            "{\"id\": \"k08\", \"completion\": \"Thank you, my friend!\"}\n",
        ),
    )
    .unwrap();
    let task = repo().join("examples/tasks/python_plugin.toml");
    let (rows, stderr, ok) = verify(&task, &completions, &["--batch-size", "2"]);
    assert!(ok, "{stderr}");
    // Rewards are f32: compare at f32 precision.
    let rewards: Vec<Vec<f32>> = rows
        .iter()
        .map(|r| {
            r["rewards"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    assert_eq!(
        rewards,
        [vec![1.0, 0.2], vec![0.6], vec![0.8], vec![1.0]],
        "{rows:?}"
    );
    assert_eq!(rows[0]["id"], "k01");
    assert_eq!(rows[0]["components"][0]["command"], 1.0);
    assert_eq!(rows[0]["components"][1]["command.keywords"], 0.0);
    assert_eq!(rows[0]["components"][1]["command.length"], 1.0);
    assert_eq!(rows[1]["components"][0]["command.keywords"], 0.5);
    assert_eq!(rows[2]["components"][0]["command.length"], 0.0);
    assert_eq!(rows[2]["components"][0]["command.words"], 5.0);
    assert!(rows
        .iter()
        .all(|r| r["errors"].as_array().unwrap().iter().all(Value::is_null)));
    assert!(
        stderr.contains("rows: 4  completions: 5  mean reward: 0.7200  accuracy: 0.8000"),
        "{stderr}"
    );
}

#[test]
fn a_crashing_plugin_costs_only_its_rows() {
    if !have_python("a_crashing_plugin_costs_only_its_rows") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let w = |name: &str, text: &str| std::fs::write(d.path().join(name), text).unwrap();
    // Reward = 1 for "good"; exits (a crash) on "boom".
    w(
        "plugin.py",
        r#"import json, sys
sys.stdin.readline()
print(json.dumps({"protocol": "oxrl-verifier", "version": 1, "name": "fragile"}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    texts = [c for g in req["groups"] for c in g["completions"]]
    if "boom" in texts:
        print("fragile: giving up", file=sys.stderr, flush=True)
        sys.exit(7)
    print(json.dumps({"id": req["id"], "scores": [[float(c == "good") for c in g["completions"]]
                      for g in req["groups"]]}), flush=True)
"#,
    );
    w(
        "task.toml",
        "[task]\nname = \"t\"\n[task.dataset]\nsource = \"data.jsonl\"\n\
         [[task.verifiers]]\nname = \"command\"\ncommand = [\"python3\", \"plugin.py\"]\n\
         workers = 1\nbatch_size = 1\n\
         [[task.verifiers]]\nname = \"length\"\nweight = 0.5\nmax_chars = 100\n",
    );
    w("data.jsonl", "{\"id\": \"a\", \"prompt\": \"p\"}\n");
    w(
        "completions.jsonl",
        "{\"id\": \"a\", \"completion\": \"good\"}\n\
         {\"id\": \"a\", \"completion\": \"boom\"}\n\
         {\"id\": \"a\", \"completions\": [\"good\", \"bad\"]}\n",
    );
    let (rows, stderr, ok) = verify(
        &d.path().join("task.toml"),
        &d.path().join("completions.jsonl"),
        &["--batch-size", "1"],
    );
    assert!(ok, "{stderr}");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0]["rewards"], json!([1.5]));
    assert_eq!(rows[0]["components"][0]["length"], 1.0);
    assert_eq!(rows[0]["errors"], json!([null]));
    // The crashed request keeps the other verifier's reward and records the plugin's error.
    assert_eq!(rows[1]["rewards"], json!([0.5]));
    let err = rows[1]["errors"][0].as_str().unwrap();
    assert!(
        err.contains("plugin `fragile` (worker 0): exited (exit status: 7)")
            && err.contains("fragile: giving up"),
        "{err}"
    );
    // The worker was restarted for the next row.
    assert_eq!(rows[2]["rewards"], json!([1.5, 0.5]));
    assert!(stderr.contains("errors: 1"), "{stderr}");

    // A plugin that cannot start fails the command before any scoring, with the reason.
    w(
        "task.toml",
        "[task]\nname = \"t\"\n[task.dataset]\nsource = \"data.jsonl\"\n\
         [[task.verifiers]]\nname = \"command\"\ncommand = [\"python3\", \"missing.py\"]\n",
    );
    let (_, stderr, ok) = verify(
        &d.path().join("task.toml"),
        &d.path().join("completions.jsonl"),
        &[],
    );
    assert!(!ok);
    assert!(
        stderr.contains("building the verifiers") && stderr.contains("did not start"),
        "{stderr}"
    );
}

/// What a user types at the repository root: a relative task path, whose plugin script is
/// relative to the task file while the worker runs in the task's folder.
#[test]
fn a_relative_task_path_finds_its_plugin() {
    if !have_python("a_relative_task_path_finds_its_plugin") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let completions = d.path().join("c.jsonl");
    std::fs::write(
        &completions,
        "{\"id\": \"k01\", \"completions\": [\"A blue wave rolls in.\", \"No match here.\"]}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oxrl"))
        .current_dir(repo())
        .args([
            "verify",
            "--task",
            "examples/tasks/python_plugin.toml",
            "--completions",
        ])
        .arg(&completions)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let row: Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(row["rewards"], json!([1.0, 0.2]), "{row}");
}
