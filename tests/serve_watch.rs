//! `oxrl serve --watch DIR` end to end through the binary: checkpoints written by the trainer's
//! own checkpoint writer (and by a real `oxrl train` run) are picked up one by one, each bumping
//! the policy version seen in `/v1/models` and in responses, while broken checkpoints (truncated
//! safetensors, a missing tensor, a NaN) are refused and the old weights keep serving.

mod http_support;
mod train_support;

use candle_core::{DType, Device, Tensor};
use http_support::write_model;
use oxrl_models::{LoadOptions, LoadedModel};
use oxrl_trainer::checkpoint::{self, TrainerState, STATE_FORMAT};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An `oxrl serve` child whose stdout and stderr lines are collected as they come.
struct Serve {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    fn spawn(args: &[&str]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_oxrl"))
            .arg("serve")
            .args(["--port", "0", "--served-model-name", "tiny"])
            .args(["--watch-interval-secs", "0.2"])
            .args(args)
            .env_remove("OXRL_API_KEY")
            .env_remove("OXRL_ADMIN_KEY")
            .env("RAYON_NUM_THREADS", "2")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning oxrl serve");
        let collect = |r: Box<dyn std::io::Read + Send>| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let l = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    l.lock().unwrap().push(line);
                }
            });
            lines
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Serve {
            child,
            stdout,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits for the address line (the server listens once its model is loaded).
    fn base(&mut self, timeout: Duration) -> String {
        let t0 = Instant::now();
        loop {
            if let Some(l) = self.stdout.lock().unwrap().first() {
                return l
                    .split_whitespace()
                    .find(|w| w.starts_with("http://"))
                    .unwrap_or_else(|| panic!("no address in {l:?}"))
                    .to_string();
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                panic!("oxrl serve exited ({s}):\n{}", self.stderr());
            }
            assert!(
                t0.elapsed() < timeout,
                "oxrl serve printed no address:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_stderr(&self, needle: &str, timeout: Duration) {
        let t0 = Instant::now();
        while !self.stderr().contains(needle) {
            assert!(
                t0.elapsed() < timeout,
                "no {needle:?} on stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t0 = Instant::now();
        let ok = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s.success(),
                Ok(None) if t0.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => break false,
            }
        };
        assert!(ok, "oxrl serve did not stop cleanly:\n{}", self.stderr());
        self.stderr()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// `(policy_version, root)` from `/v1/models`.
fn served(base: &str) -> (u64, String) {
    let v: Value = client()
        .get(format!("{base}/v1/models"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let card = &v["data"][0];
    (
        card["policy_version"].as_u64().unwrap(),
        card["root"].as_str().unwrap().to_string(),
    )
}

fn wait_version(base: &str, version: u64, timeout: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let (v, root) = served(base);
        if v >= version {
            assert_eq!(v, version, "the version jumped past {version} ({root})");
            return root;
        }
        assert!(
            t0.elapsed() < timeout,
            "policy version stuck at {v} ({root})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A greedy completion: `(text, policy_version)`.
fn greedy(base: &str) -> (String, u64) {
    let r = client()
        .post(format!("{base}/v1/completions"))
        .json(
            &json!({"prompt": "12 + 7 = ", "max_tokens": 12, "temperature": 0, "ignore_eos": true}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    (
        v["choices"][0]["text"].as_str().unwrap().to_string(),
        v["policy_version"].as_u64().unwrap(),
    )
}

fn state(step: u64) -> TrainerState {
    TrainerState {
        format: STATE_FORMAT,
        algorithm: "grpo".into(),
        step,
        data_position: step,
        policy_version: step,
        seed: 0,
        lora: false,
        kl_controller: None,
        bapo: None,
    }
}

/// Writes the model in `model_dir` as checkpoint `step` under `root` with the trainer's writer.
fn save_checkpoint(root: &Path, model_dir: &Path, step: u64) -> PathBuf {
    let m = LoadedModel::load(model_dir.to_str().unwrap(), &LoadOptions::default()).unwrap();
    checkpoint::save(
        root,
        &m.model,
        &m.tokenizer,
        &state(step),
        "",
        &|_: &Path| Ok(()),
    )
    .unwrap()
}

/// Makes a checkpoint's `model.safetensors` unusable in one way.
type Breaker = dyn Fn(&Path);

/// Publishes a broken checkpoint as the trainer would (complete directory renamed into place,
/// then the pointer replaced): a valid one from `model_dir`, with `break_it` applied to its
/// `model.safetensors` before it becomes visible.
fn publish_broken(root: &Path, model_dir: &Path, step: u64, break_it: impl Fn(&Path)) {
    let staging = root.parent().unwrap().join(format!("staging-{step}"));
    let dir = save_checkpoint(&staging, model_dir, step);
    break_it(&dir.join("model.safetensors"));
    let name = checkpoint::step_dir_name(step);
    std::fs::rename(&dir, root.join(&name)).unwrap();
    let tmp = root.join(".latest.tmp-test");
    std::fs::write(&tmp, format!("{name}\n")).unwrap();
    std::fs::rename(&tmp, root.join(checkpoint::LATEST)).unwrap();
}

fn edit_tensors(file: &Path, edit: impl Fn(&mut oxrl_models::weights::TensorMap)) {
    let mut map = oxrl_models::weights::load_file(file, DType::F32, &Device::Cpu).unwrap();
    edit(&mut map);
    oxrl_models::weights::save_file(&map, file).unwrap();
}

#[test]
fn watch_follows_checkpoints_and_refuses_broken_ones() {
    let d = tempfile::tempdir().unwrap();
    let models: Vec<PathBuf> = (1..=3)
        .map(|i| {
            let p = d.path().join(format!("model-{i}"));
            write_model(&p, i);
            p
        })
        .collect();
    let run = d.path().join("run");
    let ckpts = run.join("checkpoints");
    save_checkpoint(&ckpts, &models[0], 1);

    // No --model: the newest checkpoint is served from the start.
    let mut serve = Serve::spawn(&["--watch", run.to_str().unwrap()]);
    let base = serve.base(Duration::from_secs(60));
    let (v0, root0) = served(&base);
    assert_eq!(v0, 0);
    assert!(root0.ends_with("step-000001"), "{root0}");
    let (text1, pv) = greedy(&base);
    assert_eq!(pv, 0);

    // A new checkpoint: version 1, other weights.
    save_checkpoint(&ckpts, &models[1], 2);
    let root = wait_version(&base, 1, Duration::from_secs(30));
    assert!(root.ends_with("step-000002"), "{root}");
    let (text2, pv) = greedy(&base);
    assert_eq!(pv, 1);
    assert_ne!(text1, text2, "the new checkpoint's weights do not serve");

    // Broken checkpoints are refused one by one; version 1 keeps serving the same text.
    let truncate = |f: &Path| {
        let bytes = std::fs::read(f).unwrap();
        std::fs::write(f, &bytes[..bytes.len() / 2]).unwrap();
    };
    let drop_tensor = |f: &Path| {
        edit_tensors(f, |m| {
            m.remove("model.norm.weight").unwrap();
        })
    };
    let nan = |f: &Path| {
        edit_tensors(f, |m| {
            let shape = m["model.norm.weight"].dims().to_vec();
            let t = Tensor::full(f32::NAN, shape, &Device::Cpu).unwrap();
            m.insert("model.norm.weight".into(), t);
        })
    };
    let cases: [(u64, &Breaker, &str); 3] = [
        (3, &truncate, "invalid weights"),
        (4, &drop_tensor, "no tensor `model.norm.weight`"),
        (5, &nan, "non-finite"),
    ];
    for (step, break_it, why) in cases {
        publish_broken(&ckpts, &models[2], step, break_it);
        let name = checkpoint::step_dir_name(step);
        serve.wait_stderr(
            &format!("skipping checkpoint {}", ckpts.join(&name).display()),
            Duration::from_secs(30),
        );
        let line = serve
            .stderr()
            .lines()
            .find(|l| l.contains("skipping checkpoint") && l.contains(&name))
            .unwrap()
            .to_string();
        assert!(line.contains(why), "step {step}: {line}");
        assert!(line.contains("still serving policy version 1"), "{line}");
        let (v, root) = served(&base);
        assert_eq!(v, 1, "a broken checkpoint changed the version");
        assert!(root.ends_with("step-000002"), "{root}");
        assert_eq!(greedy(&base), (text2.clone(), 1));
    }
    // A refused checkpoint is not retried on every poll.
    std::thread::sleep(Duration::from_millis(600));
    let refusals = serve.stderr().matches("step-000005: ").count();
    assert_eq!(refusals, 1, "{}", serve.stderr());

    // The next good checkpoint is served again.
    save_checkpoint(&ckpts, &models[2], 6);
    let root = wait_version(&base, 2, Duration::from_secs(30));
    assert!(root.ends_with("step-000006"), "{root}");
    let (text3, pv) = greedy(&base);
    assert_eq!(pv, 2);
    assert_ne!(text3, text2);
    let err = serve.stop();
    assert!(err.contains("loaded checkpoint"), "{err}");
}

#[test]
fn watch_with_a_model_loads_the_runs_newest_checkpoint_at_once() {
    let d = tempfile::tempdir().unwrap();
    let (m1, m2) = (d.path().join("m1"), d.path().join("m2"));
    write_model(&m1, 21);
    write_model(&m2, 22);
    let ckpts = d.path().join("run/checkpoints");
    save_checkpoint(&ckpts, &m2, 7);
    // DIR = the checkpoints folder itself.
    let mut serve = Serve::spawn(&[
        "--model",
        m1.to_str().unwrap(),
        "--watch",
        ckpts.to_str().unwrap(),
    ]);
    let base = serve.base(Duration::from_secs(60));
    let root = wait_version(&base, 1, Duration::from_secs(30));
    assert!(root.ends_with("step-000007"), "{root}");
    serve.stop();
}

#[test]
fn watch_serves_the_policy_of_a_running_oxrl_train() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    // Started before the run: waits for its first checkpoint.
    let mut serve = Serve::spawn(&["--watch", out.to_str().unwrap()]);
    serve.wait_stderr("waiting for one", Duration::from_secs(30));
    let sets = vec![
        train_support::out_dir(&out),
        "algorithm.steps=6".into(),
        "checkpoint.every=2".into(),
        "checkpoint.keep=0".into(),
        "eval.every=0".into(),
        "eval.at_start=false".into(),
        "eval.at_end=false".into(),
    ];
    let config = train_support::example("sft.toml");
    train_support::ok(&train_support::train(&config, &sets, &[]));
    let base = serve.base(Duration::from_secs(60));
    let t0 = Instant::now();
    let (v, root) = loop {
        let (v, root) = served(&base);
        if root.ends_with("step-000006") || t0.elapsed() > Duration::from_secs(30) {
            break (v, root);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        root.ends_with("step-000006"),
        "last checkpoint not served: {root}"
    );
    // Served from the first checkpoint it saw (version 0), then one version per newer one it
    // loaded (a poll may miss one the run replaced quickly).
    let err = serve.stderr();
    let first: u64 = err
        .lines()
        .find_map(|l| l.split("serving checkpoint ").nth(1))
        .and_then(|p| p.rsplit("step-").next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no first checkpoint on stderr:\n{err}"));
    let newer = (6 - first) / 2;
    eprintln!("served from step {first}, policy version {v} at step 6");
    assert!(
        (newer.min(1)..=newer).contains(&v),
        "policy version {v} after starting from step {first}:\n{err}"
    );
    let (_, pv) = greedy(&base);
    assert_eq!(pv, v);
    serve.stop();
}
