//! Protocol overhead of the `command` plugin: a trivial Python worker that returns a constant
//! reward for every completion, called many times with 64 completions per call (8 groups of 8).
//! What is measured is everything but the plugin's own scoring: JSON encoding, the pipes, the
//! worker's `json.loads`/`json.dumps`, answer checking. Prints ms/item and items/s for short and
//! long completions with one worker, and for a two-worker pool on 512-item calls.
//!
//! Run: `cargo bench -p oxrl-verifiers --bench plugin_overhead` (needs `python3` on PATH).

use std::hint::black_box;
use std::time::{Duration, Instant};

use oxrl_verifiers::{BuildContext, Group, Registry, Verifier, VerifyExample};
use serde_json::json;

const PLUGIN: &str = r#"
import json, sys
sys.stdin.readline()
print(json.dumps({"type": "hello", "protocol": "oxrl-verifier", "version": 1, "name": "const"}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    scores = [[{"reward": 1.0, "components": {"ok": 1.0}} for _ in g["completions"]] for g in req["groups"]]
    sys.stdout.write(json.dumps({"id": req["id"], "scores": scores}) + "\n")
    sys.stdout.flush()
"#;

fn groups(n_groups: usize, per_group: usize, chars: usize) -> Vec<Group> {
    let text: String = "The answer is 42 because 6 * 7 = 42. "
        .chars()
        .cycle()
        .take(chars)
        .collect();
    (0..n_groups)
        .map(|i| Group {
            example: VerifyExample {
                id: format!("ex{i}"),
                prompt: "What is six times seven? Think step by step.".into(),
                answer: Some("42".into()),
                metadata: serde_json::Map::new(),
            },
            completions: vec![text.clone(); per_group],
        })
        .collect()
}

/// Calls `v.score(batch)` for about `secs` seconds; returns (calls, items, elapsed).
fn measure(v: &dyn Verifier, batch: &[Group], secs: f64) -> (usize, usize, Duration) {
    let per_call: usize = batch.iter().map(|g| g.completions.len()).sum();
    for _ in 0..20 {
        black_box(v.score(batch));
    }
    let start = Instant::now();
    let mut calls = 0;
    while start.elapsed().as_secs_f64() < secs {
        let s = v.score(black_box(batch));
        assert!(s
            .iter()
            .flatten()
            .all(|x| x.error.is_none() && x.reward == 1.0));
        calls += 1;
    }
    (calls, calls * per_call, start.elapsed())
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary folder");
    std::fs::write(dir.path().join("const.py"), PLUGIN).expect("writing the plugin");
    let ctx = BuildContext::new(dir.path());
    let build = |workers: usize, batch_size: usize| {
        let o = json!({"command": ["python3", "const.py"], "workers": workers,
            "batch_size": batch_size});
        Registry::builtin()
            .build("command", o.as_object().expect("object"), &ctx)
            .expect("starting python3 const.py")
    };
    println!(
        "plugin_overhead: {} cores; trivial python3 worker (constant reward)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for (label, workers, n_groups, chars) in [
        ("1 worker, 64 items/call, 40-char completions", 1, 8, 40),
        ("1 worker, 64 items/call, 2000-char completions", 1, 8, 2000),
        (
            "2 workers, 512 items/call (8 requests of 64), 2000-char completions",
            2,
            64,
            2000,
        ),
    ] {
        let v = build(workers, 8);
        let batch = groups(n_groups, 8, chars);
        let (calls, items, t) = measure(v.as_ref(), &batch, 3.0);
        let secs = t.as_secs_f64();
        println!(
            "  {label}: {:.4} ms/item, {:.0} items/s, {:.3} ms/call ({calls} calls)",
            secs * 1e3 / items as f64,
            items as f64 / secs,
            secs * 1e3 / calls as f64,
        );
    }
}
