//! The quickstart through the binary, shortened (the same file and code path, fewer steps):
//! `oxrl train examples/quickstart.toml` builds a model, teaches it addition by SFT from an
//! imperfect teacher, then runs GRPO, and held-out greedy accuracy must rise at each stage —
//! after GRPO > after SFT > before SFT. Then `oxrl eval` on the final checkpoint must report the
//! same accuracy the run printed (one scoring path), and `oxrl train` with no config at all must
//! find the quickstart.

mod train_support;

use std::path::Path;
use std::process::Command;
use train_support::*;

/// Runs `oxrl ARGS…` and asserts it succeeded.
fn oxrl<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_oxrl"))
        .args(args)
        .output()
        .unwrap();
    ok(&out);
    out
}

/// The printed `held-out accuracy (…): before sft A · after sft B · after grpo C`.
fn accuracies(stdout: &str) -> (f64, f64, f64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("held-out accuracy"))
        .unwrap_or_else(|| panic!("no accuracy line in:\n{stdout}"));
    let num = |label: &str| -> f64 {
        let at = line
            .find(label)
            .unwrap_or_else(|| panic!("no `{label}` in {line}"));
        line[at + label.len()..]
            .split_whitespace()
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no number after `{label}` in {line}"))
    };
    (num("before sft "), num("after sft "), num("after grpo "))
}

fn short(dir: &Path) -> Vec<String> {
    vec![
        out_dir(dir),
        "stages.sft.algorithm.steps=600".into(),
        "stages.sft.eval.every=0".into(),
        "stages.grpo.algorithm.steps=30".into(),
        // Thirty steps at the peak rate instead of a cosine decay over them.
        "stages.grpo.optim.schedule.kind=constant".into(),
        "stages.grpo.eval.every=0".into(),
        "task.dataset.eval_count=100".into(),
        "eval.max_examples=100".into(),
    ]
}

#[test]
fn grpo_beats_sft_beats_the_random_model_on_held_out_problems() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = ok(&train(&example("quickstart.toml"), &short(dir.path()), &[]));
    let (before, sft, grpo) = accuracies(&stdout);
    eprintln!("quickstart (shortened): before {before} · after SFT {sft} · after GRPO {grpo}");
    assert!(
        grpo > sft && sft > before,
        "accuracy must rise at each stage: {before} → {sft} → {grpo}\n{stdout}"
    );
    // The output says where things are, and they are there.
    let ckpt = dir.path().join("grpo/checkpoints/step-000030");
    assert!(ckpt.join("model.safetensors").is_file());
    assert!(dir.path().join("sft/checkpoints/step-000600").is_dir());
    for stage in ["sft", "grpo"] {
        let plot = dir.path().join(stage).join("metrics.png");
        assert!(plot.is_file(), "{}", plot.display());
        assert!(stdout.contains(&plot.display().to_string()), "{stdout}");
        assert!(!records(&dir.path().join(stage)).is_empty());
    }
    assert!(stdout.contains(&format!("oxrl serve --model {}", ckpt.display())));

    // `oxrl eval` on the final checkpoint: the same greedy accuracy on the same 100 prompts.
    let quickstart = example("quickstart.toml").display().to_string();
    let model = ckpt.display().to_string();
    let out = oxrl([
        "eval",
        &quickstart,
        "--set",
        "task.dataset.eval_count=100",
        "--quiet",
        "--model",
        &model,
    ]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["examples"], 100, "{summary}");
    let acc = summary["accuracy"].as_f64().unwrap();
    assert!((acc - grpo).abs() < 1e-9, "eval {acc} vs train {grpo}");
    assert_eq!(summary["pass_at_k"]["1"].as_f64(), Some(acc));

    // Resuming a finished pipeline skips both stages and reports the same numbers.
    let again = ok(&train(
        &example("quickstart.toml"),
        &short(dir.path()),
        &["--resume", "latest"],
    ));
    assert!(
        again.contains("stage sft: already complete, skipped"),
        "{again}"
    );
    assert_eq!(accuracies(&again), (before, sft, grpo));
}

#[test]
fn sampled_eval_reports_pass_at_k() {
    let dir = tempfile::tempdir().unwrap();
    // A random model of the quickstart's shape: builds it, then evaluates 8 samples of 10 prompts.
    let m = dir.path().join("m").display().to_string();
    oxrl(["init-model", "--out", &m]);
    let task = example("tasks/arith.toml").display().to_string();
    let summary = dir.path().join("eval.json").display().to_string();
    oxrl([
        "eval",
        "--task",
        &task,
        "--model",
        &m,
        "--samples",
        "8",
        "--max-examples",
        "10",
        "--max-tokens",
        "4",
        "--quiet",
        "--output",
        &summary,
    ]);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("eval.json")).unwrap())
            .unwrap();
    assert_eq!(
        (s["examples"].as_u64(), s["samples"].as_u64()),
        (Some(10), Some(8))
    );
    assert_eq!(s["temperature"].as_f64(), Some(1.0));
    let keys: Vec<&String> = s["pass_at_k"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["1", "2", "4", "8"]);
    let p = |k: &str| s["pass_at_k"][k].as_f64().unwrap();
    assert!(
        p("1") <= p("2") && p("2") <= p("4") && p("4") <= p("8"),
        "{s}"
    );
    assert!(s["mean_completion_tokens"].as_f64().unwrap() <= 4.0);
}

#[test]
fn no_config_runs_the_quickstart() {
    // From a folder without examples/, `oxrl train` falls back to the built-in copy; a bad
    // override shows it parsed that file (the error names the stage) without training.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oxrl"))
        .current_dir(dir.path())
        .args(["train", "--quiet", "--set", "stages.grpo.algorithm.stepz=1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stdout.contains("built-in quickstart"), "{stdout}");
    assert!(
        stderr.contains("stage grpo") && stderr.contains("stepz"),
        "{stderr}"
    );
    assert!(!dir.path().join("runs").exists(), "nothing may be written");
}
