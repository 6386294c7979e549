//! PPO end to end on `examples/ppo.toml` and the built-in tiny model: mean reward rises, the value
//! head trains (value loss reported, head in every checkpoint), `--resume` continues bit for bit
//! (value head and its AdamW moments restored), the same with a separate critic model, and PPO's
//! config errors name their key.

mod train_support;

use std::path::Path;
use train_support::*;

fn run(dir: &Path, sets: &[&str], extra: &[&str]) -> Vec<Rec> {
    let mut all = vec![out_dir(dir), "eval.at_end=false".into()];
    all.extend(sets.iter().map(|s| s.to_string()));
    ok(&train(&example("ppo.toml"), &all, extra));
    records(dir)
}

/// Runs 3 steps straight (first directory) and 2 steps then `--resume latest` to 3 (second),
/// checkpointing every step with `extra` settings, and asserts every step's metrics are equal.
fn resumed_equals_uninterrupted(extra: &[&str]) -> (tempfile::TempDir, tempfile::TempDir) {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let mut common = vec![
        "algorithm.steps=3",
        "checkpoint.every=1",
        "checkpoint.keep=0",
    ];
    common.extend_from_slice(extra);
    let full = run(a.path(), &common, &[]);
    let mut sets = common.clone();
    sets.push("algorithm.steps=2");
    run(b.path(), &sets, &[]);
    let resumed = run(b.path(), &common, &["--resume", "latest"]);
    assert_eq!(resumed.len(), 3);
    for (x, y) in full.iter().zip(&resumed) {
        assert_eq!(strip_times(x), strip_times(y));
    }
    (a, b)
}

fn mean(recs: &[Rec], k: &str) -> f64 {
    recs.iter().map(|r| f(r, k)).sum::<f64>() / recs.len() as f64
}

#[test]
fn ppo_raises_mean_reward() {
    let d = tempfile::tempdir().unwrap();
    let recs = run(d.path(), &["algorithm.steps=18", "checkpoint.every=0"], &[]);
    let (first, last) = (mean(&recs[..6], "reward"), mean(&recs[12..], "reward"));
    eprintln!(
        "PPO mean reward {first:.3} -> {last:.3}; rewards {:?}",
        recs.iter().map(|r| f(r, "reward")).collect::<Vec<_>>()
    );
    assert!(last > first + 0.1, "PPO reward {first} -> {last}");
    for r in &recs {
        assert!(
            f(r, "value_loss").is_finite() && f(r, "value_loss") >= 0.0,
            "{r:?}"
        );
        assert!(f(r, "vf_clipfrac") >= 0.0);
        assert!(f(r, "kl_coef") > 0.0, "KL in the reward: {r:?}");
        assert!(f(r, "onpolicy_max_abs_logprob_diff") <= 1e-5);
    }
    let ckpt = d.path().join("checkpoints/step-000018");
    assert!(ckpt.join("score_head.safetensors").is_file());
}

#[test]
fn ppo_resumes_exactly_with_its_value_head() {
    let (a, b) = resumed_equals_uninterrupted(&[]);
    for file in [
        "model.safetensors",
        "score_head.safetensors",
        "optimizer.safetensors",
    ] {
        let w = |d: &Path| std::fs::read(d.join("checkpoints/step-000003").join(file)).unwrap();
        assert!(w(a.path()) == w(b.path()), "{file} differs after resume");
    }
    // The AdamW moments (value head's included), tensor by tensor (the file's header order is
    // not fixed).
    let opt = |d: &Path| {
        candle_core::safetensors::load(
            d.join("checkpoints/step-000003/optimizer.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap()
    };
    let (oa, ob) = (opt(a.path()), opt(b.path()));
    assert!(
        oa.keys().any(|k| k.contains("score.weight")),
        "{:?}",
        oa.keys()
    );
    assert_eq!(oa.len(), ob.len());
    for (k, t) in &oa {
        let v = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(t), v(&ob[k]), "optimizer `{k}` differs after resume");
    }
    // The value head moved during training.
    let h = |s: u32| {
        tensor_f32(
            &a.path()
                .join(format!("checkpoints/step-00000{s}/score_head.safetensors")),
            "score.weight",
        )
    };
    assert_ne!(h(1), h(3));
}

#[test]
fn ppo_config_errors_name_the_key() {
    let d = tempfile::tempdir().unwrap();
    for (set, key) in [
        ("algorithm.ppo.gamma=1.5", "algorithm.ppo.gamma"),
        ("algorithm.ppo.lam=-0.1", "algorithm.ppo.lam"),
        ("algorithm.ppo.vf_coef=-1", "algorithm.ppo.vf_coef"),
        (
            "algorithm.ppo.cliprange_value=-0.2",
            "algorithm.ppo.cliprange_value",
        ),
        ("algorithm.ppo.critic=\"elsewhere\"", "algorithm.ppo.critic"),
        ("algorithm.ppo.critic_lr=1e-5", "algorithm.ppo.critic_lr"),
        ("algorithm.ppo.gae_lambda=0.9", "algorithm.ppo"),
        ("task.verifiers=[]", "task.verifiers"),
    ] {
        let out = train(&example("ppo.toml"), &[out_dir(d.path()), set.into()], &[]);
        assert!(!out.status.success(), "{set} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("`{key}")), "{set}: {err}");
    }
}

const SEPARATE: &str = "algorithm.ppo.critic=\"separate\"";

#[test]
fn ppo_with_a_separate_critic_raises_mean_reward() {
    let d = tempfile::tempdir().unwrap();
    let recs = run(
        d.path(),
        &[
            "algorithm.steps=18",
            "checkpoint.every=18",
            SEPARATE,
            "algorithm.ppo.critic_lr=1e-3",
        ],
        &[],
    );
    let (first, last) = (mean(&recs[..6], "reward"), mean(&recs[12..], "reward"));
    eprintln!(
        "PPO (separate critic) mean reward {first:.3} -> {last:.3}; value loss {:?}",
        recs.iter().map(|r| f(r, "value_loss")).collect::<Vec<_>>()
    );
    assert!(last > first + 0.1, "PPO reward {first} -> {last}");
    for r in &recs {
        assert!(f(r, "value_loss").is_finite() && f(r, "value_loss") >= 0.0);
        assert!(f(r, "critic_grad_norm") > 0.0, "{r:?}");
        assert!(f(r, "onpolicy_max_abs_logprob_diff") <= 1e-5);
    }
    // The critic is its own HF model directory next to the policy's; no value head on the
    // policy.
    let ckpt = d.path().join("checkpoints/step-000018");
    for file in [
        "config.json",
        "model.safetensors",
        "score_head.safetensors",
        "optimizer.safetensors",
    ] {
        assert!(ckpt.join("critic").join(file).is_file(), "critic/{file}");
    }
    assert!(!ckpt.join("score_head.safetensors").exists());
}

#[test]
fn ppo_with_a_separate_critic_resumes_exactly_and_trains_every_critic_tensor() {
    let (a, b) = resumed_equals_uninterrupted(&[SEPARATE]);
    let step = |d: &Path, s: u32| d.join(format!("checkpoints/step-00000{s}"));
    for file in [
        "model.safetensors",
        "critic/model.safetensors",
        "critic/score_head.safetensors",
    ] {
        let w = |d: &Path| std::fs::read(step(d, 3).join(file)).unwrap();
        assert!(w(a.path()) == w(b.path()), "{file} differs after resume");
    }
    let load = |p: std::path::PathBuf| {
        candle_core::safetensors::load(p, &candle_core::Device::Cpu).unwrap()
    };
    let v = |t: &candle_core::Tensor| {
        t.to_dtype(candle_core::DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let (oa, ob) = (
        load(step(a.path(), 3).join("critic/optimizer.safetensors")),
        load(step(b.path(), 3).join("critic/optimizer.safetensors")),
    );
    assert_eq!(oa.len(), ob.len());
    for (k, t) in &oa {
        assert_eq!(
            v(t),
            v(&ob[k]),
            "critic optimizer `{k}` differs after resume"
        );
    }
    // Every tensor of the critic (trunk and head) moved between steps 1 and 3: each got a
    // non-zero gradient. The policy's weights are not the critic's.
    let (c1, c3) = (
        load(step(a.path(), 1).join("critic/model.safetensors")),
        load(step(a.path(), 3).join("critic/model.safetensors")),
    );
    assert!(!c1.is_empty());
    for (k, t) in &c1 {
        assert_ne!(v(t), v(&c3[k]), "critic tensor `{k}` never moved");
    }
    let head = |s: u32| {
        tensor_f32(
            &step(a.path(), s).join("critic/score_head.safetensors"),
            "score.weight",
        )
    };
    assert_ne!(head(1), head(3));
    let policy = load(step(a.path(), 3).join("model.safetensors"));
    let name = "model.layers.0.mlp.down_proj.weight";
    assert_ne!(v(&policy[name]), v(&c3[name]));
}
