//! Crash and interrupt safety of `oxrl train`, through the binary: a GRPO run SIGKILLed after a
//! step, or in the middle of a checkpoint write, continues with `--resume latest` and every
//! metric of the later steps equals the uninterrupted run's, bit for bit, as do the final
//! weights; Ctrl-C (SIGINT) stops after the current step with a checkpoint and exit code 130,
//! and the resumed run again equals the uninterrupted one.
//!
//! The run is paused at the exact point by `OXRL_FAULT_PAUSE=<point>:<step>` (see
//! `oxrl_trainer::fault`), which writes a marker file the test waits for before it signals.

mod train_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use train_support::*;

const STEPS: u64 = 4;

fn sets(dir: &Path, every: u64) -> Vec<String> {
    vec![
        out_dir(dir),
        format!("algorithm.steps={STEPS}"),
        "algorithm.batch_size=2".into(),
        "rollout.n=3".into(),
        "rollout.max_tokens=6".into(),
        format!("checkpoint.every={every}"),
        "checkpoint.keep=0".into(),
        "eval.at_end=false".into(),
        "task.dataset.synthetic.n=64".into(),
        "optim.lr=2e-2".into(),
        // A reward that varies within groups on the untrained model, so every step moves the
        // weights (the arithmetic reward is all zeros there).
        r#"task.verifiers=[{name = "length", max_chars = 3, mode = "linear", buffer = 30}]"#.into(),
    ]
}

fn spawn(sets: &[String], pause: &str, marker: &Path) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_oxrl"));
    c.arg("train").arg(example("grpo.toml")).arg("--quiet");
    for s in sets {
        c.arg("--set").arg(s);
    }
    c.env("OXRL_FAULT_PAUSE", pause)
        .env("OXRL_FAULT_PAUSE_MARKER", marker)
        .env_remove("OXRL_ADMIN_KEY")
        .env_remove("OXRL_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns oxrl train")
}

/// Waits for the paused run's marker (or fails if the run ends first).
fn wait_paused(child: &mut Child, marker: &Path) {
    let start = Instant::now();
    while !marker.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("run ended ({status}) before pausing:\n{err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no pause marker after 300 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The uninterrupted run's records (timings stripped) and final weights.
fn reference(every: u64) -> (Vec<Rec>, Vec<u8>) {
    let d = tempfile::tempdir().unwrap();
    ok(&train(&example("grpo.toml"), &sets(d.path(), every), &[]));
    (stripped(d.path()), final_weights(d.path()))
}

fn stripped(dir: &Path) -> Vec<Rec> {
    records(dir).iter().map(strip_times).collect()
}

fn final_weights(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join(format!("checkpoints/step-{STEPS:06}/model.safetensors"))).unwrap()
}

fn latest(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("checkpoints/latest"))
        .unwrap()
        .trim()
        .to_string()
}

fn resume_and_compare(dir: &Path, every: u64, want: &(Vec<Rec>, Vec<u8>)) {
    let out = ok(&train(
        &example("grpo.toml"),
        &sets(dir, every),
        &["--resume", "latest"],
    ));
    assert!(out.contains(&format!("..{STEPS}")), "{out}");
    let got = stripped(dir);
    assert_eq!(got.len(), want.0.len(), "one record per step after resume");
    for (g, w) in got.iter().zip(&want.0) {
        assert_eq!(
            g, w,
            "a resumed step's metrics differ from the uninterrupted run"
        );
    }
    assert!(
        final_weights(dir) == want.1,
        "final weights differ from the uninterrupted run"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary checkpoint left behind");
}

#[test]
fn sigkill_between_steps_and_during_a_checkpoint_write_then_resume_exactly() {
    let want = reference(1);
    assert_eq!(want.0.len() as u64, STEPS);
    assert!(
        want.0.iter().all(|r| f(r, "grad_norm") > 0.0),
        "every step must move the weights for the comparison to mean something"
    );

    // Killed after step 2's metrics and checkpoint.
    let d = tempfile::tempdir().unwrap();
    let marker = d.path().join("paused");
    let mut child = spawn(&sets(d.path(), 1), "after-step:2", &marker);
    wait_paused(&mut child, &marker);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(latest(d.path()), "step-000002");
    assert_eq!(records(d.path()).len(), 2);
    resume_and_compare(d.path(), 1, &want);

    // Killed while step 3's checkpoint is half written: step 3's metrics are on disk but its
    // checkpoint is not published; the resume redoes step 3 from step 2's checkpoint.
    let d = tempfile::tempdir().unwrap();
    let marker = d.path().join("paused");
    let mut child = spawn(&sets(d.path(), 1), "checkpoint-write:3", &marker);
    wait_paused(&mut child, &marker);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(latest(d.path()), "step-000002");
    assert!(!d.path().join("checkpoints/step-000003").exists());
    assert_eq!(records(d.path()).len(), 3, "step 3's metrics were written");
    resume_and_compare(d.path(), 1, &want);
}

#[test]
fn ctrl_c_stops_after_the_step_with_a_checkpoint_and_resume_continues() {
    // No periodic checkpoints: the one after step 1 exists only because of the interrupt.
    let want = reference(0);
    let d = tempfile::tempdir().unwrap();
    let marker = d.path().join("paused");
    let mut child = spawn(&sets(d.path(), 0), "after-step:1", &marker);
    wait_paused(&mut child, &marker);
    let pid = child.id().to_string();
    let st = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "exit code after Ctrl-C\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("--resume latest"), "{stdout}");
    assert_eq!(latest(d.path()), "step-000001");
    assert_eq!(records(d.path()).len(), 1);
    resume_and_compare(d.path(), 0, &want);
}
