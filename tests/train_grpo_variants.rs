//! The GRPO family's options end to end on `examples/grpo.toml` and the built-in tiny model:
//! on-policy at temperature 0.7 (the training forward takes the temperature), micro-batch
//! gradient accumulation equal to one pass, every outcome estimator, DAPO dynamic sampling and
//! overlong shaping, KL in the reward with the adaptive controller (restored on resume), BAPO's
//! bounds carried in the trainer state, the shared-prefix forward equal to the plain one.

mod train_support;

use std::path::Path;
use train_support::*;

fn run(dir: &Path, sets: &[&str]) -> Vec<Rec> {
    let mut all = vec![out_dir(dir), "eval.at_end=false".into()];
    all.extend(sets.iter().map(|s| s.to_string()));
    ok(&train(&example("grpo.toml"), &all, &[]));
    records(dir)
}

/// The step-2 checkpoints of runs `a` and `b` hold the same `names` tensors, to 1e-5.
fn same_weights(a: &Path, b: &Path, names: &[&str]) {
    let file = |d: &Path| d.join("checkpoints/step-000002/model.safetensors");
    for name in names {
        let (wa, wb) = (tensor_f32(&file(a), name), tensor_f32(&file(b), name));
        let worst = wa
            .iter()
            .zip(&wb)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-5, "{name}: weights differ by {worst}");
    }
}

#[test]
fn on_policy_at_temperature_07_ratio_is_one_and_nothing_clips() {
    let d = tempfile::tempdir().unwrap();
    // One mini-batch per step: every sequence is scored before the update.
    let recs = run(
        d.path(),
        &[
            "algorithm.steps=2",
            "rollout.temperature=0.7",
            "algorithm.mini_batch_size=16",
        ],
    );
    for r in &recs {
        let diff = f(r, "onpolicy_max_abs_logprob_diff");
        assert!(diff <= 1e-5, "logprobs differ by {diff} at T = 0.7");
        assert!(f(r, "onpolicy_max_abs_ratio_dev") <= 1e-5);
        assert_eq!(f(r, "clip_fraction"), 0.0, "{r:?}");
    }
    // The untempered forward would not match: the check has teeth.
    let d1 = tempfile::tempdir().unwrap();
    let recs1 = run(
        d1.path(),
        &[
            "algorithm.steps=1",
            "rollout.temperature=1.0",
            "algorithm.mini_batch_size=16",
        ],
    );
    assert!(f(&recs1[0], "onpolicy_max_abs_logprob_diff") <= 1e-5);
}

#[test]
fn micro_batches_accumulate_to_the_same_update() {
    let whole = tempfile::tempdir().unwrap();
    let micro = tempfile::tempdir().unwrap();
    let common = [
        "algorithm.steps=2",
        "algorithm.mini_batch_size=16",
        "checkpoint.every=2",
        "algorithm.policy_loss.aggregation=\"seq-mean-token-mean\"",
    ];
    let a = run(whole.path(), &common);
    let mut sets = common.to_vec();
    sets.push("algorithm.micro_batch_size=3");
    let b = run(micro.path(), &sets);
    for (x, y) in a.iter().zip(&b) {
        let (lx, ly) = (f(x, "loss"), f(y, "loss"));
        assert!(
            (lx - ly).abs() <= 1e-6 + 1e-5 * lx.abs(),
            "loss {lx} vs {ly}"
        );
        let (gx, gy) = (f(x, "grad_norm"), f(y, "grad_norm"));
        assert!(
            (gx - gy).abs() <= 1e-5 * gx.max(1e-6),
            "grad norm {gx} vs {gy}"
        );
    }
    same_weights(
        whole.path(),
        micro.path(),
        &[
            "model.layers.0.self_attn.q_proj.weight",
            "model.norm.weight",
        ],
    );
}

#[test]
fn shared_prefix_forward_gives_the_plain_forwards_update() {
    // Rewards that vary within groups on the untrained model, so every step moves the weights;
    // two mini-batches per step (the second after an update) and micro-batches of 5, which
    // split some groups across micro-batches.
    let common = [
        "algorithm.steps=2",
        "algorithm.mini_batch_size=8",
        "algorithm.micro_batch_size=5",
        "rollout.temperature=0.7",
        "checkpoint.every=2",
        r#"task.verifiers=[{name = "length", max_chars = 3, mode = "linear", buffer = 30}]"#,
    ];
    let plain = tempfile::tempdir().unwrap();
    let shared = tempfile::tempdir().unwrap();
    let mut plain_sets = common.to_vec();
    plain_sets.push("algorithm.shared_prefix=false");
    let a = run(plain.path(), &plain_sets);
    // The default (GRPO, n >= 2) is the shared-prefix forward.
    let b = run(shared.path(), &common);
    assert_eq!(a.len(), 2);
    for (x, y) in a.iter().zip(&b) {
        let (gx, gy) = (f(x, "grad_norm"), f(y, "grad_norm"));
        assert!(gx > 0.0, "the step must move the weights: {x:?}");
        assert!((gx - gy).abs() <= 1e-5 * gx, "grad norm {gx} vs {gy}");
        for k in ["loss", "entropy", "onpolicy_max_abs_logprob_diff"] {
            let (vx, vy) = (f(x, k), f(y, k));
            assert!(
                (vx - vy).abs() <= 1e-5 + 1e-5 * vx.abs(),
                "{k}: {vx} vs {vy}"
            );
        }
        assert!(f(y, "onpolicy_max_abs_logprob_diff") <= 1e-5);
    }
    same_weights(
        plain.path(),
        shared.path(),
        &[
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.1.mlp.down_proj.weight",
            "model.embed_tokens.weight",
        ],
    );
}

#[test]
fn every_outcome_estimator_trains() {
    for est in [
        "grpo_vectorized",
        "grpo_passk",
        "rloo",
        "rloo_vectorized",
        "opo",
        "reinforce_plus_plus",
        "reinforce_plus_plus_baseline",
        "gpg",
        "bnpo",
        "remax",
    ] {
        let d = tempfile::tempdir().unwrap();
        let set = format!("algorithm.advantage.estimator=\"{est}\"");
        let recs = run(d.path(), &["algorithm.steps=1", &set]);
        let r = &recs[0];
        assert!(f(r, "loss").is_finite(), "{est}: {r:?}");
        assert!(f(r, "grad_norm").is_finite(), "{est}: {r:?}");
        assert_eq!(f(r, "policy_version"), 1.0, "{est}");
    }
}

#[test]
fn dynamic_sampling_drops_uniform_groups_and_refills_within_the_bound() {
    let d = tempfile::tempdir().unwrap();
    let recs = run(
        d.path(),
        &[
            "algorithm.steps=2",
            "algorithm.dynamic_sampling.enabled=true",
            "algorithm.dynamic_sampling.max_refills=2",
        ],
    );
    for r in &recs {
        let n = 4.0;
        let refills = f(r, "dapo_refills");
        let dropped = f(r, "dapo_dropped_groups");
        let sampled = f(r, "completions");
        let trained = f(r, "trained_completions");
        assert!(refills <= 2.0);
        assert_eq!(trained, sampled - dropped * n, "{r:?}");
        assert!(trained <= 4.0 * n, "never more than batch_size groups");
        if refills > 0.0 {
            assert!(dropped > 0.0, "a refill only follows a dropped group");
        }
    }
    // The tiny random model fails most sums: with the format shaping removed every group is
    // all-zero, so every group is dropped, the bound is reached, and the step trains nothing.
    let d = tempfile::tempdir().unwrap();
    let recs = run(
        d.path(),
        &[
            "algorithm.steps=1",
            "algorithm.dynamic_sampling.enabled=true",
            "algorithm.dynamic_sampling.max_refills=1",
            "task.verifiers=[{name = \"arith\", weight = 1.0}]",
            "task.dataset.synthetic.max_digits=3",
        ],
    );
    let r = &recs[0];
    if f(r, "reward") == 0.0 {
        assert_eq!(f(r, "dapo_refills"), 1.0, "{r:?}");
        assert_eq!(f(r, "dapo_dropped_groups"), 8.0, "{r:?}");
        assert_eq!(f(r, "optimizer_steps"), 0.0);
        assert_eq!(f(r, "policy_version"), 0.0, "no update, no new version");
    }
}

#[test]
fn overlong_completions_are_filtered_and_softly_penalised() {
    let d = tempfile::tempdir().unwrap();
    // max_tokens 8 with a buffer of 4: a completion cut at 8 tokens gets −1 on top of its score.
    let recs = run(
        d.path(),
        &[
            "algorithm.steps=1",
            "algorithm.overlong.filter=true",
            "algorithm.overlong.buffer_tokens=4",
        ],
    );
    let r = &recs[0];
    assert_eq!(f(r, "overlong_filtered"), f(r, "truncated"));
    if f(r, "truncated") > 0.0 {
        assert!(
            f(r, "train_reward") < f(r, "reward"),
            "the soft penalty lowers the trained reward: {r:?}"
        );
    }
}

#[test]
fn kl_in_the_reward_adapts_its_coefficient_and_resumes_it() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let common = [
        "algorithm.steps=3",
        "checkpoint.every=1",
        "kl.coef=0.05",
        "kl.in_reward=true",
        "kl.controller=\"adaptive\"",
        "kl.target=0.001",
        "kl.horizon=10",
        "optim.lr=0.01",
    ];
    let full = run(a.path(), &common);
    let betas: Vec<f64> = full.iter().map(|r| f(r, "kl_coef")).collect();
    assert_eq!(betas[0], 0.05);
    assert!(
        betas.windows(2).any(|w| w[0] != w[1]),
        "the adaptive β moved: {betas:?}"
    );
    for r in &full {
        assert!(f(r, "reward_kl") >= 0.0);
        assert!(r["kl"].is_null(), "the KL is not in the loss");
    }
    let state =
        std::fs::read_to_string(a.path().join("checkpoints/step-000002/trainer_state.json"))
            .unwrap();
    assert!(state.contains("adaptive"), "{state}");
    // Stop after 2, resume: step 3 uses the restored β.
    let mut sets = common.to_vec();
    sets.push("algorithm.steps=2");
    run(b.path(), &sets);
    let mut all = vec![out_dir(b.path()), "eval.at_end=false".into()];
    all.extend(common.iter().map(|s| s.to_string()));
    ok(&train(&example("grpo.toml"), &all, &["--resume", "latest"]));
    let resumed = records(b.path());
    assert_eq!(strip_times(&resumed[2]), strip_times(&full[2]));
}

#[test]
fn bapo_bounds_carry_over_steps_and_checkpoints() {
    let d = tempfile::tempdir().unwrap();
    let recs = run(
        d.path(),
        &[
            "algorithm.steps=2",
            "checkpoint.every=1",
            "algorithm.policy_loss.mode=\"bapo\"",
            "algorithm.policy_loss.bapo.restart=false",
            "algorithm.epochs=2",
        ],
    );
    for r in &recs {
        assert!(
            f(r, "bapo_c_low") > 0.0 && f(r, "bapo_c_high") > 1.0,
            "{r:?}"
        );
    }
    let state =
        std::fs::read_to_string(d.path().join("checkpoints/step-000002/trainer_state.json"))
            .unwrap();
    let v: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(
        v["bapo"]["c_high"].as_f64().unwrap(),
        f(&recs[1], "bapo_c_high")
    );
}
