//! End-to-end test of `oxrl verify`: a temporary task (JSONL dataset + math verifier) and a
//! completions file are scored by the built binary; the per-row output and the summary are
//! checked value by value.

use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn setup(dir: &Path, weight: f64) {
    write(
        dir,
        "data.jsonl",
        "{\"uid\": \"a\", \"problem\": \"What is 2+2?\", \"solution\": \"4\"}\n\
         {\"uid\": \"b\", \"problem\": \"What is 10/4?\", \"solution\": \"5/2\"}\n",
    );
    write(
        dir,
        "task.toml",
        &format!(
            "[task]\nname = \"t\"\n[task.dataset]\nsource = \"data.jsonl\"\n\
             fields = {{ id = \"uid\", prompt = \"problem\", answer = \"solution\" }}\n\
             [task.prompt]\nuser = \"{{{{ question }}}}\"\n\
             [[task.verifiers]]\nname = \"math\"\nweight = {weight}\n"
        ),
    );
    write(
        dir,
        "completions.jsonl",
        concat!(
            // Joined by id with the task's dataset.
            "{\"uid\": \"a\", \"completion\": \"2+2 is \\\\boxed{4}\"}\n",
            "{\"uid\": \"b\", \"completions\": [\"\\\\boxed{2.5}\", \"\\\\boxed{3}\"]}\n",
            // Carries its own fields (mapped through the task's mapping).
            "{\"problem\": \"What is 3*3?\", \"solution\": 9, \"completion\": \"The answer is 9.\"}\n",
            "\n",
            // Unknown id, then a line that is not JSON.
            "{\"uid\": \"zzz\", \"completion\": \"1\"}\n",
            "not json\n",
        ),
    );
}

fn run(dir: &Path, extra: &[&str]) -> (std::process::Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_oxrl"))
        .arg("verify")
        .arg("--task")
        .arg(dir.join("task.toml"))
        .arg("--completions")
        .arg(dir.join("completions.jsonl"))
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "oxrl verify failed: {stderr}");
    (out, stderr)
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn scores_joined_and_inline_rows_and_reports_bad_ones() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), 1.0);
    let out_path = d.path().join("scores.jsonl");
    let (out, stderr) = run(d.path(), &["--out", out_path.to_str().unwrap()]);
    assert!(out.stdout.is_empty());
    let rows = lines(&std::fs::read_to_string(&out_path).unwrap());
    assert_eq!(rows.len(), 5, "{rows:?}");
    // Bad rows are written as soon as they are read; scored rows in batches after them.
    let by_line = |n: u64| rows.iter().find(|r| r["line"] == n).unwrap().clone();
    let a = by_line(1);
    assert_eq!(a["id"], "a");
    assert_eq!(a["rewards"], json!([1.0]));
    assert_eq!(a["components"][0]["math"], 1.0);
    assert_eq!(a["components"][0]["math.correct"], 1.0);
    assert_eq!(a["errors"], json!([null]));
    let b = by_line(2);
    assert_eq!(b["id"], "b");
    assert_eq!(b["rewards"], json!([1.0, 0.0]));
    assert_eq!(b["components"][1]["math.correct"], 0.0);
    let c = by_line(3);
    assert_eq!(c["rewards"], json!([1.0]));
    assert_eq!(c["id"], "3", "a row without an id is named by its line");
    let unknown = by_line(5);
    assert_eq!(unknown["id"], "zzz");
    assert!(unknown["error"]
        .as_str()
        .unwrap()
        .contains("id `zzz` is not in the task's dataset"));
    let not_json = by_line(6);
    assert!(not_json["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON"));
    assert!(
        stderr.contains(
            "rows: 3  completions: 4  mean reward: 0.7500  accuracy: 0.7500 (`correct` component)  \
             errors: 0  bad rows: 2"
        ),
        "{stderr}"
    );
}

#[test]
fn weights_scale_rewards_and_stdout_is_the_default() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), 0.5);
    let (out, stderr) = run(d.path(), &["--batch-size", "1"]);
    let rows = lines(&String::from_utf8(out.stdout).unwrap());
    let rewards: Vec<Value> = rows
        .iter()
        .filter_map(|r| r.get("rewards").cloned())
        .collect();
    assert_eq!(rewards, [json!([0.5]), json!([0.5, 0.0]), json!([0.5])]);
    assert!(stderr.contains("mean reward: 0.3750"), "{stderr}");
}

#[test]
fn a_broken_task_fails_with_context() {
    let d = tempfile::tempdir().unwrap();
    setup(d.path(), 1.0);
    write(
        d.path(),
        "task.toml",
        "[task]\n[task.dataset]\nsource = \"data.jsonl\"\n[[task.verifiers]]\nname = \"nope\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_oxrl"))
        .args(["verify", "--task"])
        .arg(d.path().join("task.toml"))
        .arg("--completions")
        .arg(d.path().join("completions.jsonl"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("building the verifiers") && stderr.contains("nope"),
        "{stderr}"
    );
}
