//! `oxrl loss` end to end, through the binary: the golden TRL and verl files with `--check`
//! (every case within 1e-6 relative + 1e-9 absolute), and bad input (malformed JSON, NaN, wrong
//! shapes, all-zero masks, unknown names) as per-case errors with exit code 0, non-zero only when
//! the file itself is unreadable.

use std::path::PathBuf;
use std::process::Command;

fn golden(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("trainer/tests/golden")
        .join(file)
}

fn run_loss(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_oxrl"))
        .arg("loss")
        .args(args)
        .output()
        .expect("runs oxrl")
}

fn check_golden(file: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.json");
    let g = golden(file);
    let out = run_loss(&[
        g.to_str().unwrap(),
        "--check",
        "-o",
        out_path.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "oxrl loss --check {file} failed:\n{stderr}"
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&g).unwrap()).unwrap();
    assert_eq!(
        written["results"].as_array().unwrap().len(),
        golden["cases"].as_array().unwrap().len()
    );
}

#[test]
fn trl_golden_cases_through_the_binary() {
    check_golden("trl_public.json");
}

#[test]
fn verl_golden_cases_through_the_binary() {
    check_golden("verl_public.json");
}

#[test]
fn bad_cases_are_per_case_errors_and_bad_files_fail() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("bad.json");
    std::fs::write(
        &cases,
        r#"{"cases": [
          {"id": "nan", "kind": "agg_loss", "loss_mat": [[NaN, 1.0]], "loss_mask": [[1, 1]], "loss_agg_mode": "token-mean"},
          {"id": "shape", "kind": "agg_loss", "loss_mat": [[1.0, 1.0]], "loss_mask": [[1, 1, 1]], "loss_agg_mode": "token-mean"},
          {"id": "zeros", "kind": "agg_loss", "loss_mat": [[1.0, 1.0]], "loss_mask": [[0, 0]], "loss_agg_mode": "token-mean"},
          {"id": "mode", "kind": "agg_loss", "loss_mat": [[1.0, 1.0]], "loss_mask": [[1, 1]], "loss_agg_mode": "token_mean"},
          {"id": "field", "kind": "agg_loss", "loss_mat": [[1.0, 1.0]], "loss_mask": [[1, 1]], "loss_agg_mode": "token-mean", "lose_scale": 2},
          {"id": "kind", "kind": "ppo_magic"},
          {"id": "ok", "kind": "agg_loss", "loss_mat": [[1.0, 3.0]], "loss_mask": [[1, 1]], "loss_agg_mode": "token-mean"}
        ]}"#,
    )
    .unwrap();
    let out = run_loss(&[cases.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = v["results"].as_array().unwrap();
    let err = |i: usize| r[i]["error"].as_str().unwrap_or("").to_string();
    assert!(err(0).contains("loss_mat"), "{}", err(0));
    assert!(err(1).contains("loss_mask"), "{}", err(1));
    assert!(err(2).contains("selects no element"), "{}", err(2));
    assert!(
        err(3).contains("token_mean") && err(3).contains("seq-mean-token-sum"),
        "{}",
        err(3)
    );
    assert!(err(4).contains("lose_scale"), "{}", err(4));
    assert!(
        err(5).contains("ppo_magic") && err(5).contains("policy_loss"),
        "{}",
        err(5)
    );
    assert!(r[6].get("error").is_none(), "{}", r[6]);
    assert_eq!(r[6]["loss"].as_f64(), Some(2.0));

    std::fs::write(&cases, "{ not json").unwrap();
    let out = run_loss(&[cases.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("parsing"));
    let out = run_loss(&[dir.path().join("absent.json").to_str().unwrap()]);
    assert!(!out.status.success());
}
