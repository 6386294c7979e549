//! The reward model end to end on `examples/reward-model.toml` and the built-in tiny model: it
//! ranks held-out preference pairs above chance; loaded as the `model` verifier it scores
//! completions in `oxrl verify` and drives a GRPO run whose reward rises; bad reward-model
//! configurations fail naming the key.

mod train_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use train_support::*;

/// Trains the example reward model into `dir`; returns its final checkpoint.
fn reward_model(dir: &Path) -> (Vec<Rec>, PathBuf) {
    ok(&train(&example("reward-model.toml"), &[out_dir(dir)], &[]));
    let recs = records(dir);
    let ckpt = dir.join("checkpoints/step-000400");
    (recs, ckpt)
}

#[test]
fn reward_model_ranks_held_out_pairs_and_drives_grpo_as_a_model_verifier() {
    let rm = tempfile::tempdir().unwrap();
    let (recs, ckpt) = reward_model(rm.path());
    let before = f(&recs[0], "eval_pair_accuracy");
    let after = f(recs.last().unwrap(), "eval_pair_accuracy");
    let margin = f(recs.last().unwrap(), "eval_margin");
    eprintln!("held-out pair accuracy {before:.3} -> {after:.3} (margin {margin:.3}) on 64 pairs");
    assert!(after > 0.65, "held-out pair accuracy {after}");
    assert!(margin > 0.0);
    let steps: Vec<&Rec> = recs.iter().filter(|r| r.contains_key("loss")).collect();
    assert!(f(steps.last().unwrap(), "loss") < f(steps[0], "loss"));
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "score_head.safetensors",
    ] {
        assert!(ckpt.join(file).is_file(), "{file} missing");
    }

    // `oxrl verify` with the model verifier: a run folder resolves to its latest checkpoint.
    let work = tempfile::tempdir().unwrap();
    let task = work.path().join("task.toml");
    std::fs::write(
        &task,
        format!(
            "[task]\nname = \"rm\"\n[task.dataset]\nsource = \"synthetic:arith\"\n\
             [task.dataset.synthetic]\nn = 4\n[[task.verifiers]]\nname = \"model\"\n\
             path = {:?}\nnormalize = \"sigmoid\"\n",
            rm.path().display().to_string()
        ),
    )
    .unwrap();
    let rows = work.path().join("c.jsonl");
    // 32 pairs like the training ones (a one-digit sum, and the sum off by a non-zero offset
    // in -9..=9): one pair alone is a coin with the held-out accuracy's odds, 32 are a
    // measurement, held to the same bar as the held-out pair accuracy above.
    let offsets = [-5, 3, -2, 4, -3, 2, -4, 5];
    let pairs: Vec<(i64, i64, i64)> = (0..32)
        .map(|i| {
            let (a, b) = (i % 10, (3 * i + 1) % 10);
            (a, b, a + b + offsets[i as usize % offsets.len()])
        })
        .collect();
    let text: String = pairs
        .iter()
        .map(|(a, b, wrong)| {
            format!(
                "{{\"prompt\": \"What is {a} + {b}?\", \"completions\": [\"{}\", \"{wrong}\"]}}\n",
                a + b
            )
        })
        .collect();
    std::fs::write(&rows, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oxrl"))
        .args(["verify", "--task"])
        .arg(&task)
        .arg("--completions")
        .arg(&rows)
        .output()
        .unwrap();
    ok(&out);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), pairs.len());
    eprintln!("oxrl verify with the reward model: {}", lines[0]);
    let mut wins = 0;
    for line in &lines {
        let scores = line.to_string();
        assert!(scores.contains("model.score"), "{scores}");
        let r = |i: usize| line["rewards"][i].as_f64().unwrap();
        assert!((0.0..1.0).contains(&r(0)), "sigmoid-normalised: {scores}");
        wins += usize::from(r(0) > r(1));
    }
    assert!(
        wins as f64 / pairs.len() as f64 > 0.65,
        "the correct sum scores above a wrong one in {wins} of {} pairs",
        pairs.len()
    );
    eprintln!("the correct sum wins {wins} of {} pairs", pairs.len());

    // GRPO with the reward model as the task's only reward.
    let g = tempfile::tempdir().unwrap();
    let verifiers = format!(
        "task.verifiers=[{{name = \"model\", path = {:?}}}]",
        ckpt.display().to_string()
    );
    let sets = vec![
        out_dir(g.path()),
        verifiers,
        "algorithm.steps=30".into(),
        "algorithm.batch_size=8".into(),
        "optim.lr=5e-3".into(),
        "eval.at_start=true".into(),
        "eval.at_end=true".into(),
        // 64 held-out prompts, not grpo.toml's 16: on 16 the greedy reward of a tiny model moved
        // with float rounding (a kernel change flipped it while the training reward still rose
        // from -8.8 to -4.5); 64 measure the same claim with a quarter of the variance.
        "task.dataset.eval_count=64".into(),
        "checkpoint.every=0".into(),
        "checkpoint.at_end=false".into(),
    ];
    ok(&train(&example("grpo.toml"), &sets, &[]));
    let recs = records(g.path());
    let rewards: Vec<f64> = recs
        .iter()
        .filter(|r| r.contains_key("reward"))
        .map(|r| f(r, "reward"))
        .collect();
    assert_eq!(rewards.len(), 30);
    let first = rewards[..10].iter().sum::<f64>() / 10.0;
    let last = rewards[20..].iter().sum::<f64>() / 10.0;
    let (e0, e1) = (
        f(&recs[0], "eval_reward"),
        f(recs.last().unwrap(), "eval_reward"),
    );
    eprintln!(
        "GRPO on the learned reward: mean of steps 1-10 {first:.3} -> 21-30 {last:.3}; \
         greedy held-out reward {e0:.3} -> {e1:.3}"
    );
    assert!(last > first + 0.5, "learned reward {first} -> {last}");
    assert!(e1 > e0, "held-out learned reward {e0} -> {e1}");
}

#[test]
fn reward_model_config_errors_name_the_key() {
    let d = tempfile::tempdir().unwrap();
    for (sets, key, needle) in [
        (
            vec!["task.dataset.source=\"synthetic:arith\""],
            "task.dataset",
            "preference pairs",
        ),
        (
            vec!["algorithm.reward_model.margin=1"],
            "algorithm.reward_model",
            "margin",
        ),
    ] {
        let mut all = vec![out_dir(d.path())];
        all.extend(sets.iter().map(|s| s.to_string()));
        let out = train(&example("reward-model.toml"), &all, &[]);
        assert!(!out.status.success(), "{sets:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("`{key}")) && err.contains(needle),
            "{sets:?}: {err}"
        );
    }
    // A `model` verifier pointing nowhere fails when the task's verifiers are built.
    let out = train(
        &example("grpo.toml"),
        &[
            out_dir(d.path()),
            "task.verifiers=[{name = \"model\", path = \"/nonexistent/rm\"}]".into(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`task.verifiers`") && err.contains("not a directory"),
        "{err}"
    );
}
