//! `oxrl train` against separate `oxrl serve` processes on loopback: the trainer publishes its
//! weights before the first rollout and after every step (`POST /v1/weights`), every server's
//! version advances by one per step, rollouts are spread over the servers, the logprobs the
//! servers return equal the trainer's recomputed ones at temperature 0.7 (nothing clips), and a
//! corrupted update is refused — the server keeps serving the old version and the trainer stops
//! with an error that says so.

mod http_support;
mod train_support;

use http_support::Server;
use oxrl_models::init::{write_random_model, InitSpec};
use std::path::Path;
use std::time::Duration;
use train_support::*;

const ADMIN: &str = "test-admin-key";

/// The trainer's built-in tiny model (`[model.tiny]` defaults: weights of std 0.02), written in
/// HF layout for the servers and the trainer to load. (With std 0.2 the engine's and the
/// training forward's f32 logprobs differ by ~1e-5 in-process as well: rounding of larger
/// logits, not the transport, which moves f32 bits exactly.)
fn write_model(dir: &Path, seed: u64) {
    let spec = InitSpec {
        vocab_size: 512,
        hidden_size: 64,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        intermediate_size: 128,
        init_std: 0.02,
        seed,
        ..InitSpec::default()
    };
    write_random_model(dir, &spec).expect("writing the model");
}

/// `examples/grpo.toml` with the model loaded from `model` instead of built.
fn remote_config(dir: &Path, model: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(example("grpo.toml")).unwrap();
    let text = text.replace(
        "init = \"tiny\"",
        &format!("path = \"{}\"", model.display()),
    );
    assert!(
        text.contains("path = "),
        "the example builds the tiny model"
    );
    let p = dir.join("grpo-remote.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn health_version(s: &Server) -> u64 {
    let v: serde_json::Value = reqwest::blocking::get(s.url("/health"))
        .unwrap()
        .json()
        .unwrap();
    v["policy_version"].as_u64().unwrap()
}

fn finished_requests(s: &Server) -> f64 {
    let text = reqwest::blocking::get(s.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("oxrl_engine_requests_finished_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn engines(servers: &[&Server]) -> String {
    let urls: Vec<String> = servers.iter().map(|s| format!("\"{}\"", s.base)).collect();
    format!("rollout.engine=[{}]", urls.join(", "))
}

#[test]
fn remote_training_syncs_every_step_to_every_server() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("model");
    write_model(&model, 11);
    let a = Server::start(&model, &["--admin-key", ADMIN]);
    let b = Server::start(&model, &["--admin-key", ADMIN]);
    let run = d.path().join("run");
    let sets = vec![
        out_dir(&run),
        engines(&[&a, &b]),
        format!("rollout.admin_key=\"{ADMIN}\""),
        "algorithm.steps=3".into(),
        "rollout.temperature=0.7".into(),
        "algorithm.mini_batch_size=16".into(),
        "eval.at_end=false".into(),
    ];
    ok(&train(&remote_config(d.path(), &model), &sets, &[]));
    let recs = records(&run);
    assert_eq!(recs.len(), 3);
    for (i, r) in recs.iter().enumerate() {
        // Version 1 is the trainer's initial push; each step adds one.
        assert_eq!(f(r, "policy_version"), (i + 2) as f64, "{r:?}");
        let diff = f(r, "onpolicy_max_abs_logprob_diff");
        assert!(diff <= 1e-5, "server vs trainer logprobs differ by {diff}");
        assert_eq!(f(r, "clip_fraction"), 0.0);
        assert!(f(r, "sync_s") > 0.0);
    }
    assert_eq!(health_version(&a), 4);
    assert_eq!(health_version(&b), 4);
    let (ra, rb) = (finished_requests(&a), finished_requests(&b));
    assert!(
        ra > 0.0 && rb > 0.0,
        "prompts are spread over both servers ({ra} and {rb} requests)"
    );
    a.stop(Duration::from_secs(10));
    b.stop(Duration::from_secs(10));
}

#[test]
fn a_corrupted_update_is_refused_and_the_old_weights_keep_serving() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("model");
    write_model(&model, 12);
    let s = Server::start(&model, &["--admin-key", ADMIN]);
    let run = d.path().join("run");
    let sets = vec![
        out_dir(&run),
        engines(&[&s]),
        format!("rollout.admin_key=\"{ADMIN}\""),
        "algorithm.steps=3".into(),
        "eval.at_end=false".into(),
    ];
    // Sync 1 is the initial push, 2 follows step 1, 3 (corrupted: one NaN) follows step 2.
    let out = train_env(
        &remote_config(d.path(), &model),
        &sets,
        &[],
        &[("OXRL_FAULT_CORRUPT_WEIGHT_SYNC", "3")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the trainer must report the refusal");
    assert!(stderr.contains("weight update refused"), "{stderr}");
    assert!(
        stderr.contains("keeps serving policy version 2"),
        "{stderr}"
    );
    assert!(stderr.contains("non-finite"), "{stderr}");
    assert_eq!(health_version(&s), 2, "the old weights keep serving");
    let resp = reqwest::blocking::Client::new()
        .post(s.url("/v1/rollouts"))
        .json(&serde_json::json!({"prompts": ["1 + 1 ="], "params": {"n": 2, "max_tokens": 4}}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "the server still serves");
    let v: serde_json::Value = resp.json().unwrap();
    assert_eq!(v["results"][0]["completions"][0]["policy_version"], 2);

    // Without the admin key the first push is refused before any rollout, naming the fix.
    let run2 = d.path().join("run2");
    let sets = vec![out_dir(&run2), engines(&[&s]), "algorithm.steps=1".into()];
    let out = train(&remote_config(d.path(), &model), &sets, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("admin key"), "{stderr}");
    s.stop(Duration::from_secs(10));
}
