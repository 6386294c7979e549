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

/// Runs `oxrl verify` on one of the shipped example tasks with a completions file; returns the
/// scored rows by line and stderr.
fn run_example_task(task: &str, completions: &[Value]) -> (Vec<Value>, String) {
    let d = tempfile::tempdir().unwrap();
    let text: String = completions.iter().map(|c| format!("{c}\n")).collect();
    write(d.path(), "completions.jsonl", &text);
    let out = Command::new(env!("CARGO_BIN_EXE_oxrl"))
        .arg("verify")
        .arg("--task")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/tasks")
                .join(task),
        )
        .arg("--completions")
        .arg(d.path().join("completions.jsonl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "oxrl verify failed: {stderr}");
    let mut rows = lines(&String::from_utf8(out.stdout).unwrap());
    rows.sort_by_key(|r| r["line"].as_u64());
    (rows, stderr)
}

/// Asserts a row's rewards to f32 precision.
fn assert_rewards(row: &Value, want: &[f64]) {
    let got: Vec<f64> = row["rewards"]
        .as_array()
        .unwrap_or_else(|| panic!("no rewards in {row}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), want.len(), "{row}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() < 1e-6,
            "completion {i}: reward {g}, want {w} in {row}"
        );
    }
}

#[test]
fn countdown_shaped_task_scores_correct_wrong_and_malformed_completions() {
    let long = format!(
        "{}</think>\n<answer>44 + 19 + 35</answer>",
        "x".repeat(2000)
    );
    let row = json!({
        "prompt": "Using the numbers [44, 19, 35], create an equation that equals 98.",
        "answer": "98",
        "kind": "countdown",
        "numbers": [44, 19, 35],
        "target": 98,
        "completions": [
            // Correct, formatted, short: 0.8 + 0.1 + 0.1.
            "I add them all.</think>\n<answer>44 + 19 + 35</answer>",
            // Correct with `= target`, formatted.
            "Try (44 + 35) first.</think> <answer>(44 + 35) + 19 = 98</answer>\n",
            // Wrong value, formatted: 0.1 + 0.1.
            "</think>\n<answer>44 + 19 - 35</answer>",
            // A number used twice.
            "</think>\n<answer>44 + 44 + 10</answer>",
            // Correct but no </think>: no format bonus.
            "<answer>(44 + 35) + 19</answer>",
            // Correct and formatted but over 2000 characters.
            long,
            // Malformed equation, formatted.
            "</think><answer>44 + + 19</answer>",
            // No equation at all, and empty.
            "I give up.",
            "",
        ],
    });
    let (rows, stderr) = run_example_task("countdown_shaped.toml", &[row]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_rewards(r, &[1.0, 1.0, 0.2, 0.2, 0.9, 0.9, 0.2, 0.1, 0.1]);
    assert_eq!(
        r["errors"],
        json!([null, null, null, null, null, null, null, null, null])
    );
    let c = |i: usize, k: &str| r["components"][i][k].as_f64().unwrap();
    assert_eq!(c(0, "arith"), 1.0);
    assert_eq!(c(0, "arith.correct"), 1.0);
    assert_eq!(c(0, "format.pattern"), 1.0);
    assert_eq!(c(0, "length.within"), 1.0);
    assert_eq!(c(2, "arith.valid_numbers"), 1.0);
    assert_eq!(c(2, "arith.correct"), 0.0);
    assert_eq!(c(3, "arith.valid_numbers"), 0.0);
    assert_eq!(c(4, "format"), 0.0);
    assert_eq!(c(5, "length"), 0.0);
    assert_eq!(c(5, "length.chars"), long.chars().count() as f64);
    assert_eq!(c(6, "arith.parsed"), 0.0);
    assert_eq!(c(7, "arith.parsed"), 0.0);
    assert_eq!(c(7, "format"), 0.0);
    // Accuracy follows `arith.correct`: 4 of 9.
    assert!(
        stderr.contains(
            "rows: 1  completions: 9  mean reward: 0.5111  accuracy: 0.4444 (`correct` component)  \
             errors: 0  bad rows: 0"
        ),
        "{stderr}"
    );
}

#[test]
fn arith_task_scores_inline_and_joined_rows() {
    // The first generated example of the task, joined by id.
    let task_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tasks/arith.toml");
    let task = oxrl_task::TaskConfig::from_path(&task_path)
        .unwrap()
        .load()
        .unwrap();
    let first = task.data.train.first().unwrap().clone();
    let gold = first.answer.clone().unwrap();
    let rows = [
        json!({
            "prompt": "What is 77 - 9?", "answer": "68", "kind": "arith",
            "expression": "77 - 9", "a": 77, "b": 9, "op": "-",
            "completions": [
                "68", "77 - 9 = 68.", "<answer>68</answer> (I double-checked 9 times)",
                "\\boxed{68}", "69", "68.5", "sixty-eight", ""
            ],
        }),
        json!({
            "prompt": "What is 617 * 2?", "answer": "1234", "kind": "arith",
            "completions": ["1,234", "1234.0", "−1234", "12,34"],
        }),
        json!({
            "prompt": "What is 3 - 8?", "answer": "-5", "kind": "arith",
            "completions": ["3 − 8 = −5", "5", "8-3=5"],
        }),
        json!({"id": first.id, "completions": [format!("It is {gold}."), "no idea"]}),
    ];
    let (rows, stderr) = run_example_task("arith.toml", &rows);
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_rewards(&rows[0], &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(rows[0]["components"][6]["arith.parsed"], 0.0);
    assert_eq!(rows[0]["components"][4]["arith.parsed"], 1.0);
    assert_rewards(&rows[1], &[1.0, 1.0, 0.0, 0.0]);
    assert_rewards(&rows[2], &[1.0, 0.0, 0.0]);
    assert_eq!(rows[3]["id"], first.id.as_str());
    assert_rewards(&rows[3], &[1.0, 0.0]);
    assert!(
        stderr.contains(
            "rows: 4  completions: 17  mean reward: 0.4706  accuracy: 0.4706 (`correct` component)  \
             errors: 0  bad rows: 0"
        ),
        "{stderr}"
    );
}

#[test]
fn tool_use_task_scores_toolrl_format_and_correctness() {
    let exact = "<think>Weather needs a tool.</think>\n<tool_call>\n\
                 {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}\n</tool_call>";
    let rows = [
        json!({"id": "t01", "completions": [
            // Exact call, right layout: format 1 + correctness 3.
            exact,
            // An extra parameter: names J 1 + keys J 1/2 + 1 value = 2.5 of 3 → 6·2.5/3 − 3 = 2.
            "<think>t</think>\n<tool_call>\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>",
            // Exact call without the <think> block: format 0.
            "<tool_call>\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}\n</tool_call>",
            // A text reply where a call was needed, and a malformed call: −3 each.
            "<think>I know it.</think>\n<response>It is sunny.</response>",
            "<tool_call>{oops</tool_call>",
        ]}),
        // Half the tools: names J 1/2 + (1 + 3 values) = 4.5 of 8 → 0.375, plus format 1.
        json!({"id": "t03", "completion": "<think>Two tools; start with money.</think>\n<tool_call>\n\
               {\"name\": \"convert_currency\", \"parameters\": {\"amount\": 100, \"from\": \"USD\", \"to\": \"EUR\"}}\n</tool_call>"}),
        // A text-only reference: the right layout scores the format point, correctness 0.
        json!({"id": "t04", "completion": "<think>A greeting.</think>\n<response>Hello!</response>"}),
    ];
    let (rows, stderr) = run_example_task("tool_use.toml", &rows);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_rewards(&rows[0], &[4.0, 3.0, 3.0, -3.0, -3.0]);
    assert_rewards(&rows[1], &[1.375]);
    assert_rewards(&rows[2], &[1.0]);
    let c = |r: usize, i: usize, k: &str| rows[r]["components"][i][k].as_f64().unwrap();
    assert_eq!(c(0, 1, "tool_call.correctness"), 2.0);
    assert_eq!(c(0, 2, "tool_call.format"), 0.0);
    assert_eq!(c(0, 2, "tool_call.correct"), 1.0);
    assert_eq!(c(0, 4, "tool_call.malformed"), 1.0);
    assert_eq!(c(1, 0, "tool_call.calls"), 1.0);
    assert_eq!(c(2, 0, "tool_call.correct"), 1.0);
    // Accuracy follows `correct` (the exact call list): 3 of 7.
    assert!(
        stderr.contains("rows: 3  completions: 7  mean reward: 0.9107  accuracy: 0.4286"),
        "{stderr}"
    );
}

#[test]
fn efficiency_shaped_math_task_penalises_length_only_in_solved_groups() {
    let rows = [
        // c = 2/3: penalised (top ⌈0.5·3⌉ = 2 groups). Lengths 10, 27, 10.
        json!({"id": "m01", "completions": [
            "\\boxed{42}", "17 + 25 = 42, so \\boxed{42}", "\\boxed{41}"]}),
        // c = 1: penalised. Lengths 22, 9.
        json!({"id": "m03", "completions": ["3x = 15, x = \\boxed{5}", "\\boxed{5}"]}),
        // c = 1/4: plain 0/1 correctness.
        json!({"id": "m02", "completions": [
            "\\boxed{200}", "so it is \\boxed{180}", "\\boxed{170}", "\\boxed{160}"]}),
    ];
    let (rows, stderr) = run_example_task("math_efficient.toml", &rows);
    assert_eq!(rows.len(), 3, "{rows:?}");
    // Shortest correct +0.5, longest −0.5; a short wrong answer gains nothing.
    assert_rewards(&rows[0], &[1.5, 0.5, 0.0]);
    assert_rewards(&rows[1], &[0.5, 1.5]);
    assert_rewards(&rows[2], &[0.0, 1.0, 0.0, 0.0]);
    let c = |r: usize, i: usize, k: &str| rows[r]["components"][i][k].as_f64().unwrap();
    assert_eq!(c(0, 0, "grpo_lambda.penalised"), 1.0);
    assert_eq!(c(0, 1, "grpo_lambda.length"), 27.0);
    assert_eq!(c(0, 1, "grpo_lambda.math.correct"), 1.0);
    assert_eq!(c(2, 1, "grpo_lambda.penalised"), 0.0);
    assert_eq!(c(2, 1, "grpo_lambda.length_reward"), 0.0);
    assert!((c(0, 0, "grpo_lambda.group_correct_ratio") - 2.0 / 3.0).abs() < 1e-6);
    // Accuracy follows `grpo_lambda.correct` (the inner verdict): 5 of 9.
    assert_eq!(c(0, 2, "grpo_lambda.correct"), 0.0);
    assert!(stderr.contains("completions: 9"), "{stderr}");
    assert!(stderr.contains("accuracy: 0.5556"), "{stderr}");
}
