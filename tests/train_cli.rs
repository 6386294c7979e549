//! `oxrl train` end to end through the binary, on the shipped examples and the built-in tiny
//! model: SFT lowers the loss (and packing gives the padded update); GRPO runs, syncs every step's weights to the engine (policy
//! version 1, 2, …) with the engine's logprobs equal to the trainer's, writes metrics.jsonl and
//! checkpoints; `--resume latest` continues at the next step exactly as the uninterrupted run;
//! bad configurations fail before any work with an error naming the key.

mod train_support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use train_support::*;

#[test]
fn sft_lowers_the_loss_and_writes_a_loadable_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let sets = vec![
        out_dir(d.path()),
        "algorithm.steps=30".into(),
        "eval.every=0".into(),
        "eval.at_start=true".into(),
        "eval.max_examples=8".into(),
    ];
    let stdout = ok(&train(&example("sft.toml"), &sets, &[]));
    assert!(stdout.contains("trained steps 1..30"), "{stdout}");
    let recs = records(d.path());
    assert_eq!(recs.first().unwrap()["step"], 0, "eval before training");
    let steps: Vec<_> = recs
        .iter()
        .filter(|r| r["step"].as_u64() > Some(0))
        .collect();
    assert_eq!(steps.len(), 30);
    let first: f64 = steps[..5].iter().map(|r| f(r, "loss")).sum::<f64>() / 5.0;
    let last: f64 = steps[25..].iter().map(|r| f(r, "loss")).sum::<f64>() / 5.0;
    eprintln!("SFT loss {first:.3} -> {last:.3}");
    assert!(last < 0.6 * first, "SFT loss {first} -> {last}");
    let (before, after) = (
        f(&recs[0], "eval_loss"),
        f(recs.last().unwrap(), "eval_loss"),
    );
    assert!(after < before, "held-out loss {before} -> {after}");
    let ckpt = d.path().join("checkpoints/step-000030");
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "trainer_state.json",
        "optimizer.safetensors",
    ] {
        assert!(ckpt.join(file).is_file(), "{file} missing");
    }
    // The checkpoint is a model the other commands load as is.
    let out = Command::new(env!("CARGO_BIN_EXE_oxrl"))
        .args(["generate", "--model"])
        .arg(&ckpt)
        .args(["--max-tokens", "2", "--prompt", "2 + 2 ="])
        .output()
        .unwrap();
    ok(&out);
}

#[test]
fn sft_packing_gives_the_padded_update_in_fewer_rows() {
    // Answers of one and two digits under a chat template: sequences of different lengths.
    let run = |dir: &Path, packing: bool| {
        let sets = vec![
            out_dir(dir),
            "algorithm.steps=3".into(),
            "checkpoint.every=3".into(),
            "eval.at_end=false".into(),
            format!("algorithm.sft.packing={packing}"),
        ];
        ok(&train(&example("sft.toml"), &sets, &[]));
        records(dir)
            .into_iter()
            .filter(|r| r.get("loss").is_some())
            .collect::<Vec<_>>()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (plain, packed) = (run(a.path(), false), run(b.path(), true));
    assert_eq!((plain.len(), packed.len()), (3, 3));
    for (x, y) in plain.iter().zip(&packed) {
        for k in ["loss", "grad_norm"] {
            let (vx, vy) = (f(x, k), f(y, k));
            assert!(
                (vx - vy).abs() <= 1e-5 * vx.abs().max(1.0),
                "{k}: {vx} vs {vy}"
            );
        }
        assert_eq!(x["target_tokens"], y["target_tokens"]);
        // 16 examples of about 50 tokens: at least two to a row of 128.
        assert_eq!(f(x, "rows"), 16.0);
        assert!(f(y, "rows") <= 8.0, "{y:?}");
    }
    let file = |d: &Path| d.join("checkpoints/step-000003/model.safetensors");
    for name in [
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
        "model.embed_tokens.weight",
    ] {
        let (wa, wb) = (
            tensor_f32(&file(a.path()), name),
            tensor_f32(&file(b.path()), name),
        );
        let worst = wa
            .iter()
            .zip(&wb)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-5, "{name}: weights differ by {worst}");
    }
    // A per-sequence aggregation cannot be taken over packed rows: an error naming the key.
    let d = tempfile::tempdir().unwrap();
    let out = train(
        &example("sft.toml"),
        &[
            out_dir(d.path()),
            "algorithm.sft.packing=true".into(),
            "algorithm.sft.aggregation=\"seq-mean-token-mean\"".into(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`algorithm.sft.packing"), "{err}");
}

#[test]
fn grpo_syncs_every_step_checkpoints_and_resumes_exactly() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let common = [
        "algorithm.steps=3".to_string(),
        "checkpoint.every=1".into(),
        "checkpoint.keep=0".into(),
        "eval.at_end=false".into(),
    ];
    let mut sets = vec![out_dir(a.path())];
    sets.extend(common.iter().cloned());
    ok(&train(&example("grpo.toml"), &sets, &[]));
    let full = records(a.path());
    assert_eq!(full.len(), 3);
    for (i, r) in full.iter().enumerate() {
        assert_eq!(r["step"], i as u64 + 1);
        assert_eq!(
            r["policy_version"],
            i as u64 + 1,
            "every step's weights reach the engine"
        );
        let diff = f(r, "onpolicy_max_abs_logprob_diff");
        assert!(
            diff <= 1e-5,
            "engine vs trainer logprobs differ by {diff} at step {}",
            i + 1
        );
        assert!(f(r, "onpolicy_max_abs_ratio_dev") <= 1e-5);
        for k in [
            "reward",
            "accuracy",
            "kl",
            "entropy",
            "clip_fraction",
            "grad_norm",
            "tokens_per_s",
            "rollout_s",
            "train_s",
            "peak_rss_gib",
        ] {
            assert!(r.get(k).and_then(Value::as_f64).is_some(), "`{k}` in {r:?}");
        }
    }
    for s in 1..=3 {
        let c = a.path().join(format!("checkpoints/step-{s:06}"));
        assert!(
            c.join("trainer_state.json").is_file() && c.join("optimizer.safetensors").is_file()
        );
    }

    // The same run stopped after step 2, then resumed from its latest checkpoint.
    let mut sets = vec![out_dir(b.path())];
    sets.extend(common.iter().cloned());
    sets.push("algorithm.steps=2".into());
    ok(&train(&example("grpo.toml"), &sets, &[]));
    sets.pop();
    let stdout = ok(&train(
        &example("grpo.toml"),
        &sets,
        &["--resume", "latest"],
    ));
    assert!(stdout.contains("trained steps 3..3"), "{stdout}");
    let resumed = records(b.path());
    assert_eq!(resumed.len(), 3);
    for (x, y) in full.iter().zip(&resumed) {
        assert_eq!(strip_times(x), strip_times(y));
    }
    let w = |d: &Path| std::fs::read(d.join("checkpoints/step-000003/model.safetensors")).unwrap();
    assert!(
        w(a.path()) == w(b.path()),
        "final weights differ after resume"
    );
}

#[test]
fn bad_configs_fail_before_any_work_naming_the_key() {
    let d = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["algorithm.stepz=3"], "algorithm.stepz"),
        (&["rollout.n=\"four\""], "rollout.n"),
        (&["rollout.n=1"], "rollout.n"),
        (
            &[
                "task.dataset.source=nope.jsonl",
                "task.dataset.synthetic={}",
            ],
            "task.dataset.source",
        ),
        (&["task.verifiers=[{name = \"no-such\"}]"], "task.verifiers"),
        (&["optim.schedule.kind=wobbly"], "optim.schedule.kind"),
    ];
    for (sets, key) in cases {
        let mut all: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        all.push(out_dir(&d.path().join("run")));
        let out = train(&example("grpo.toml"), &all, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{sets:?} was accepted");
        assert!(stderr.contains(&format!("`{key}`")), "{sets:?}: {stderr}");
        assert!(!d.path().join("run").exists(), "{sets:?}: work started");
    }
}
