//! Exact resume through the library: 2 steps in one go vs 1 step + resume + 1 step give the same
//! weights bit for bit and the same per-step metrics (SFT, GRPO, DPO with either reference, and
//! online DPO on a tiny model).

use oxrl_trainer::config::{Override, TrainConfig};
use oxrl_trainer::train_loop::{train, TrainOptions};
use std::path::{Path, PathBuf};

const BASE: &str = r#"
seed = 5
[model]
init = "tiny"
[model.tiny]
vocab_size = 320
hidden_size = 32
num_layers = 1
num_heads = 2
num_kv_heads = 1
intermediate_size = 64
[task]
[task.dataset]
source = "synthetic:arith"
[task.dataset.synthetic]
n = 64
seed = 3
max_digits = 1
ops = ["+"]
[task.prompt]
format = "chat"
user = "{{ question }}"
[[task.verifiers]]
name = "arith"
[[task.verifiers]]
name = "format"
weight = 0.3
pattern = '\d'
[algorithm]
name = "grpo"
steps = 2
batch_size = 2
mini_batch_size = 3
epochs = 2
[algorithm.sft]
target = "answer"
[rollout]
n = 3
max_tokens = 6
[optim]
lr = 1e-2
[optim.schedule]
kind = "linear"
warmup_steps = 1
[kl]
coef = 0.05
[checkpoint]
every = 1
keep = 0
[log]
progress = false
"#;

fn run(dir: &Path, sets: &[&str], resume: Option<PathBuf>) {
    let cfg = dir.join("train.toml");
    std::fs::write(&cfg, BASE).unwrap();
    let mut o: Vec<Override> = sets.iter().map(|s| Override::parse(s).unwrap()).collect();
    o.push(Override::parse(&format!("output_dir={}", dir.join("out").display())).unwrap());
    let loaded = TrainConfig::load(&cfg, &o).unwrap();
    train(
        &loaded,
        &TrainOptions {
            resume,
            progress: Some(false),
            stop: None,
        },
    )
    .unwrap();
}

fn weights(dir: &Path, step: u64) -> Vec<u8> {
    std::fs::read(dir.join(format!("out/checkpoints/step-{step:06}/model.safetensors"))).unwrap()
}

fn metrics(dir: &Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    oxrl_trainer::metrics::read_records(&dir.join("out/metrics.jsonl"))
        .unwrap()
        .into_iter()
        .map(|r| {
            r.into_iter()
                .filter(|(k, _)| {
                    !k.ends_with("_s") && !k.contains("per_s") && k.as_str() != "peak_rss_gib"
                })
                .collect()
        })
        .collect()
}

fn check(sets: &[&str]) {
    let whole = tempfile::tempdir().unwrap();
    run(whole.path(), sets, None);
    let split = tempfile::tempdir().unwrap();
    // Stop after step 1 (steps = 1 changes the LR schedule's length, so the first half runs
    // the full config and is cut by removing its step-2 checkpoint instead).
    run(split.path(), sets, None);
    let ck = split.path().join("out/checkpoints");
    std::fs::remove_dir_all(ck.join("step-000002")).unwrap();
    std::fs::write(ck.join("latest"), "step-000001\n").unwrap();
    let scrambled = weights(split.path(), 1);
    run(split.path(), sets, Some("latest".into()));
    assert!(weights(whole.path(), 1) == scrambled);
    assert!(
        weights(whole.path(), 2) == weights(split.path(), 2),
        "{sets:?}: weights after resume differ"
    );
    let (a, b) = (metrics(whole.path()), metrics(split.path()));
    assert_eq!(a.len(), 2);
    assert_eq!(a, b, "{sets:?}: metrics after resume differ");
}

#[test]
fn grpo_two_steps_equal_one_plus_resume_plus_one() {
    check(&[]);
}

#[test]
fn sft_two_steps_equal_one_plus_resume_plus_one() {
    check(&["algorithm.name=sft", "task.verifiers=[]"]);
}

#[test]
fn dpo_two_steps_equal_one_plus_resume_plus_one() {
    // The frozen-copy reference is rebuilt from the base model on resume.
    check(&[
        "algorithm.name=dpo",
        "task.dataset.source=\"synthetic:arith_pairs\"",
        "task.verifiers=[]",
        "kl.coef=0",
    ]);
}

#[test]
fn dpo_with_lora_adapters_off_resumes_exactly() {
    check(&[
        "algorithm.name=dpo",
        "task.dataset.source=\"synthetic:arith_pairs\"",
        "task.verifiers=[]",
        "kl.coef=0",
        "model.lora={rank = 4, alpha = 8.0}",
        "algorithm.dpo.reference=adapters_off",
    ]);
}

#[test]
fn online_dpo_two_steps_equal_one_plus_resume_plus_one() {
    check(&["algorithm.name=online_dpo", "kl.coef=0"]);
}
