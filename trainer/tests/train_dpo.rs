//! The DPO family through the library on a tiny model: offline DPO raises the held-out
//! chosen-vs-rejected margin (frozen-copy reference), online DPO raises the mean verifier reward,
//! the LoRA `adapters_off` reference trains only the adapters and starts at a zero margin, and
//! the DPO configuration errors name their key before any work.

use oxrl_trainer::config::{Override, TrainConfig};
use oxrl_trainer::train_error::TrainError;
use oxrl_trainer::train_loop::{train, TrainOptions, TrainSummary};
use serde_json::{Map, Value};
use std::path::Path;

const DPO: &str = r#"
seed = 3
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
source = "synthetic:arith_pairs"
eval_count = 24
[task.dataset.synthetic]
n = 400
seed = 11
max_digits = 1
ops = ["+"]
[task.prompt]
format = "chat"
user = "{{ question }}"
[algorithm]
name = "dpo"
steps = 60
batch_size = 16
[algorithm.preference_loss]
beta = 0.5
[optim]
lr = 1e-3
[checkpoint]
every = 0
at_end = true
[eval]
at_start = true
at_end = true
accuracy = false
[log]
progress = false
plot = false
"#;

const ONLINE: &str = r#"
seed = 1
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
n = 200
seed = 2
max_digits = 1
ops = ["+"]
[task.prompt]
format = "chat"
user = "{{ question }}"
[[task.verifiers]]
name = "format"          # any digit in the reply
pattern = '(?s).*\d.*'
[algorithm]
name = "online_dpo"
steps = 16
batch_size = 8
[algorithm.preference_loss]
beta = 0.1
[rollout]
n = 4
max_tokens = 6
[optim]
lr = 1e-2
[checkpoint]
every = 0
at_end = false
[log]
progress = false
plot = false
"#;

fn load(
    dir: &Path,
    text: &str,
    sets: &[&str],
) -> Result<oxrl_trainer::config::LoadedConfig, TrainError> {
    let cfg = dir.join("train.toml");
    std::fs::write(&cfg, text).unwrap();
    let mut o: Vec<Override> = sets.iter().map(|s| Override::parse(s).unwrap()).collect();
    o.push(Override::parse(&format!("output_dir={}", dir.join("out").display())).unwrap());
    TrainConfig::load(&cfg, &o)
}

fn run(dir: &Path, text: &str, sets: &[&str]) -> Result<TrainSummary, TrainError> {
    let loaded = load(dir, text, sets)?;
    train(
        &loaded,
        &TrainOptions {
            resume: None,
            progress: Some(false),
            stop: None,
        },
    )
}

fn f(r: &Map<String, Value>, k: &str) -> f64 {
    r.get(k)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no `{k}` in {r:?}"))
}

#[test]
fn offline_dpo_raises_the_held_out_margin() {
    let d = tempfile::tempdir().unwrap();
    let s = run(d.path(), DPO, &[]).unwrap();
    let recs = &s.records;
    let (first, last) = (&recs[0], recs.last().unwrap());
    assert_eq!(f(first, "step"), 0.0);
    // Before any update the policy is its reference: every implicit reward is exactly 0.
    assert_eq!(f(first, "eval_rewards/margins"), 0.0, "{first:?}");
    let (m0, m1) = (
        f(first, "eval_rewards/margins"),
        f(last, "eval_rewards/margins"),
    );
    let (a1, l0, l1) = (
        f(last, "eval_rewards/accuracies"),
        f(first, "eval_loss"),
        f(last, "eval_loss"),
    );
    eprintln!("held-out margin {m0} → {m1}, accuracy → {a1}, loss {l0} → {l1}");
    assert!(m1 > m0 + 0.05, "held-out margin {m0} → {m1}");
    assert!(a1 > 0.55, "held-out pair accuracy {a1}");
    assert!(l1 < l0, "held-out loss {l0} → {l1}");
    // Every training step reports TRL's statistics.
    for r in &recs[1..recs.len() - 1] {
        for k in [
            "loss",
            "rewards/chosen",
            "rewards/rejected",
            "rewards/margins",
            "rewards/accuracies",
            "logps/chosen",
            "grad_norm",
        ] {
            assert!(f(r, k).is_finite(), "`{k}` in {r:?}");
        }
    }
    assert_eq!(
        f(&recs[1], "rewards/margins"),
        0.0,
        "step 1 starts at the reference"
    );
}

#[test]
fn online_dpo_raises_the_mean_reward() {
    let d = tempfile::tempdir().unwrap();
    let s = run(d.path(), ONLINE, &[]).unwrap();
    let rewards: Vec<f64> = s.records.iter().map(|r| f(r, "reward")).collect();
    let k = 4;
    let head = rewards[..k].iter().sum::<f64>() / k as f64;
    let tail = rewards[rewards.len() - k..].iter().sum::<f64>() / k as f64;
    eprintln!(
        "online DPO mean reward {head:.3} (first {k} steps) → {tail:.3} (last {k}): {rewards:?}"
    );
    assert!(tail > head + 0.1, "reward {head} → {tail}: {rewards:?}");
    for (i, r) in s.records.iter().enumerate() {
        // Every step with a pair updates and publishes; version = optimizer steps so far.
        assert!(f(r, "pairs") + f(r, "skipped_prompts") == 8.0, "{r:?}");
        if i == s.records.len() - 1 {
            assert!(f(r, "policy_version") >= 1.0);
        }
    }
}

#[test]
fn adapters_off_reference_trains_only_the_adapters() {
    let d = tempfile::tempdir().unwrap();
    let s = run(
        d.path(),
        DPO,
        &[
            "model.lora={rank = 4, alpha = 8.0}",
            "algorithm.dpo.reference=adapters_off",
            "optim.lr=1e-2",
            "seed=7",
        ],
    )
    .unwrap();
    let (first, last) = (&s.records[0], s.records.last().unwrap());
    // B = 0 at start: the adapted policy equals the base it is compared against.
    assert_eq!(f(first, "eval_rewards/margins"), 0.0);
    assert!(
        f(last, "eval_rewards/margins") > 0.05,
        "{}",
        f(last, "eval_rewards/margins")
    );
    let ck = s.checkpoint.unwrap();
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(ck.join("trainer_state.json")).unwrap())
            .unwrap();
    assert_eq!(state["lora"], true);
    assert_eq!(state["algorithm"], "dpo");
    let trained =
        candle_core::safetensors::load(ck.join("trainable.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    assert!(!trained.is_empty());
    assert!(
        trained.keys().all(|k| k.contains("lora")),
        "only adapters are trained: {:?}",
        trained.keys().collect::<Vec<_>>()
    );
    // The optimizer's state covers exactly those tensors.
    let opt =
        candle_core::safetensors::load(ck.join("optimizer.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let moments: Vec<&String> = opt.keys().filter(|k| k.starts_with("exp_avg/")).collect();
    assert_eq!(moments.len(), trained.len(), "{moments:?}");
    assert!(moments.iter().all(|k| k.contains("lora_")), "{moments:?}");
}

fn key_of(r: Result<TrainSummary, TrainError>) -> String {
    match r {
        Err(TrainError::Config { key, message, .. }) => {
            assert!(!message.is_empty());
            key
        }
        Err(other) => panic!("expected a config error, got {other}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn dpo_config_errors_name_the_key_before_any_work() {
    let cases: [(&str, &[&str], &str); 8] = [
        (
            DPO,
            &["algorithm.dpo.refrence=copy"],
            "algorithm.dpo.refrence",
        ),
        (
            DPO,
            &["algorithm.dpo.reference=adapters_off"],
            "algorithm.dpo.reference",
        ),
        (
            DPO,
            &["algorithm.dpo.reference=frozen"],
            "algorithm.dpo.reference",
        ),
        (
            DPO,
            &["algorithm.preference_loss.loss_type=dpo"],
            "algorithm.preference_loss.loss_type",
        ),
        (
            DPO,
            &["task.dataset.source=\"synthetic:arith\""],
            "task.dataset",
        ),
        (ONLINE, &["rollout.n=1"], "rollout.n"),
        (ONLINE, &["kl.coef=0.1"], "kl.coef"),
        (ONLINE, &["task.verifiers=[]"], "task.verifiers"),
    ];
    for (text, sets, key) in cases {
        let d = tempfile::tempdir().unwrap();
        let got = key_of(run(d.path(), text, sets));
        assert_eq!(got, key, "{sets:?}");
        assert!(!d.path().join("out").exists(), "{sets:?}: work started");
    }
}

/// A shipped example config, loaded as `oxrl train` loads it, with overrides.
fn example(dir: &Path, name: &str, sets: &[&str]) -> TrainSummary {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let mut o: Vec<Override> = sets.iter().map(|s| Override::parse(s).unwrap()).collect();
    o.push(Override::parse(&format!("output_dir={}", dir.display())).unwrap());
    o.push(Override::parse("log.progress=false").unwrap());
    let loaded = TrainConfig::load(&path, &o).unwrap();
    train(
        &loaded,
        &TrainOptions {
            resume: None,
            progress: Some(false),
            stop: None,
        },
    )
    .unwrap()
}

#[test]
fn shipped_examples_run() {
    let d = tempfile::tempdir().unwrap();
    let s = example(&d.path().join("dpo"), "dpo.toml", &[]);
    let (first, last) = (&s.records[0], s.records.last().unwrap());
    eprintln!(
        "examples/dpo.toml: held-out margin {} → {}, accuracy {} → {}",
        f(first, "eval_rewards/margins"),
        f(last, "eval_rewards/margins"),
        f(first, "eval_rewards/accuracies"),
        f(last, "eval_rewards/accuracies"),
    );
    assert!(f(last, "eval_rewards/margins") > f(first, "eval_rewards/margins"));
    assert!(f(last, "eval_accuracy").is_finite(), "greedy accuracy too");
    let s = example(&d.path().join("online"), "dpo-online.toml", &[]);
    let r: Vec<f64> = s.records.iter().map(|r| f(r, "reward")).collect();
    eprintln!("examples/dpo-online.toml: reward per step {r:?}");
    let last = s.records.last().unwrap();
    assert!(f(last, "policy_version") >= 1.0);
    assert!(f(last, "eval_reward").is_finite());
}
