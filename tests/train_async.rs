//! Asynchronous GRPO through the binary (`rollout.max_staleness = 1`): the rollouts of step
//! k+1 are generated while step k trains, from the weights before step k's update, so from the
//! second step on every step trains on rollouts one version old (`version_lag` 1) while the
//! first is on policy; the off-policy steps show a non-zero logprob gap that the importance
//! ratio corrects; and a run resumed from a checkpoint (which carries the pending rollouts)
//! equals the uninterrupted run, metrics and weights, bit for bit.

mod train_support;

use std::path::Path;
use train_support::*;

fn sets(dir: &Path) -> Vec<String> {
    vec![
        out_dir(dir),
        "algorithm.steps=3".into(),
        "algorithm.batch_size=2".into(),
        "rollout.n=3".into(),
        "rollout.max_tokens=6".into(),
        "rollout.max_staleness=1".into(),
        "optim.lr=2e-2".into(),
        // A reward that varies within groups on the untrained model, so step 1 moves weights.
        r#"task.verifiers=[{name = "length", max_chars = 3, mode = "linear", buffer = 30}]"#.into(),
        "checkpoint.every=1".into(),
        "checkpoint.keep=0".into(),
        "eval.at_end=false".into(),
        "task.dataset.synthetic.n=64".into(),
    ]
}

fn weights(dir: &Path, step: u64) -> Vec<u8> {
    std::fs::read(dir.join(format!("checkpoints/step-{step:06}/model.safetensors"))).unwrap()
}

#[test]
fn rollouts_overlap_training_one_version_behind_and_resume_exactly() {
    let whole = tempfile::tempdir().unwrap();
    ok(&train(&example("grpo.toml"), &sets(whole.path()), &[]));
    let recs = records(whole.path());
    assert_eq!(recs.len(), 3);
    let lags: Vec<u64> = recs
        .iter()
        .map(|r| r["version_lag"].as_u64().unwrap())
        .collect();
    let from: Vec<u64> = recs
        .iter()
        .map(|r| r["rollout_version"].as_u64().unwrap())
        .collect();
    let served: Vec<u64> = recs
        .iter()
        .map(|r| r["policy_version"].as_u64().unwrap())
        .collect();
    assert_eq!(lags, [0, 1, 1], "{recs:?}");
    assert_eq!(from, [0, 0, 1]);
    assert_eq!(served, [1, 2, 3]);
    let gap = |r: &Rec| f(r, "onpolicy_max_abs_logprob_diff");
    assert!(
        gap(&recs[0]) <= 1e-5,
        "first step is on policy: {}",
        gap(&recs[0])
    );
    assert!(
        gap(&recs[1]) > 1e-4,
        "second step trains on rollouts of the previous weights: {}",
        gap(&recs[1])
    );
    // The checkpoints after steps 1 and 2 carry the rollouts of the next step.
    for s in [1, 2] {
        assert!(whole
            .path()
            .join(format!("checkpoints/step-{s:06}/pending_rollouts.json"))
            .is_file());
    }

    // Cut after step 2 (drop step 3's checkpoint and records) and resume.
    let split = tempfile::tempdir().unwrap();
    ok(&train(&example("grpo.toml"), &sets(split.path()), &[]));
    let ck = split.path().join("checkpoints");
    std::fs::remove_dir_all(ck.join("step-000003")).unwrap();
    std::fs::write(ck.join("latest"), "step-000002\n").unwrap();
    ok(&train(
        &example("grpo.toml"),
        &sets(split.path()),
        &["--resume", "latest"],
    ));
    let a: Vec<Rec> = recs.iter().map(strip_times).collect();
    let b: Vec<Rec> = records(split.path()).iter().map(strip_times).collect();
    assert_eq!(a, b, "metrics after resume differ");
    assert!(weights(whole.path(), 3) == weights(split.path(), 3));
}

#[test]
fn max_staleness_outside_grpo_names_the_key() {
    let d = tempfile::tempdir().unwrap();
    let out = train(
        &example("sft.toml"),
        &[out_dir(d.path()), "rollout.max_staleness=1".into()],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rollout.max_staleness"), "{err}");
}
