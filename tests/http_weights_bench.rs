//! Weight-update latency over HTTP for a real model (ignored by default; needs the model file):
//! `OXRL_BENCH_MODEL=/path/SmolLM2-135M-Instruct.Q4_1.gguf cargo test --release
//! --test http_weights_bench -- --ignored --nocapture`.
//!
//! Loads the model, writes its full weight set (slightly perturbed, f32, HF names) as one
//! safetensors file, starts `oxrl serve` on it with an admin key, and times `POST /v1/weights`
//! end to end from the client: as a request body (upload + parse + validate + swap) and as a path
//! on the server's disk. Each update must bump the version and change the greedy logprobs.

mod http_support;

use http_support::Server;
use oxrl_models::{LoadOptions, LoadedModel};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn probe(c: &reqwest::blocking::Client, s: &Server) -> (f64, u64) {
    let v: Value = c
        .post(s.url("/v1/rollouts"))
        .json(&json!({"prompts": ["The capital of France is"],
            "params": {"max_tokens": 1, "temperature": 0}}))
        .send()
        .expect("probe")
        .json()
        .expect("probe JSON");
    let comp = &v["results"][0]["completions"][0];
    (
        comp["logprobs"][0].as_f64().expect("lp"),
        comp["policy_version"].as_u64().expect("version"),
    )
}

#[test]
#[ignore = "needs a real model file (OXRL_BENCH_MODEL); a benchmark, not a test"]
fn weight_update_latency() {
    let Ok(spec) = std::env::var("OXRL_BENCH_MODEL") else {
        panic!("set OXRL_BENCH_MODEL to a model (e.g. SmolLM2-135M-Instruct.Q4_1.gguf)");
    };
    let reps: usize = std::env::var("OXRL_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let m = LoadedModel::load(&spec, &LoadOptions::default()).expect("loading the model");
    let mut tensors = m.model.named_tensors(false).expect("named tensors");
    for t in tensors.values_mut() {
        *t = (&*t * 1.01).expect("scale");
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("update.safetensors");
    oxrl_models::weights::save_file(&tensors, &file).expect("save");
    drop(tensors);
    drop(m);
    // Leaked once so that each request sends it without a client-side copy.
    let body: &'static [u8] = Box::leak(std::fs::read(&file).expect("read").into_boxed_slice());
    let server = Server::start(std::path::Path::new(&spec), &["--admin-key", "adm"]);
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client");
    let (lp0, v0) = probe(&c, &server);
    let mut times = Vec::new();
    for r in 0..reps * 2 {
        let by_path = r % 2 == 1;
        let t0 = Instant::now();
        let req = c.post(server.url("/v1/weights")).bearer_auth("adm");
        let resp = if by_path {
            req.json(&json!({"path": file})).send()
        } else {
            req.header("content-type", "application/octet-stream")
                .body(body)
                .send()
        }
        .expect("update");
        let wall = t0.elapsed().as_secs_f64();
        assert_eq!(resp.status().as_u16(), 200);
        let v: Value = resp.json().expect("JSON");
        let ms = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let server_ms = ms("elapsed_ms");
        let (lp, version) = probe(&c, &server);
        assert_eq!(version, v0 + r as u64 + 1);
        if r == 0 {
            assert!((lp - lp0).abs() > 1e-4, "outputs did not change");
        }
        println!(
            "update {} ({}): {:.3} s client wall, {:.1} ms server ({:.1} load + {:.1} apply), \
             {} tensors, {:.1} MiB",
            r + 1,
            if by_path { "path" } else { "body" },
            wall,
            server_ms,
            ms("load_ms"),
            ms("apply_ms"),
            v["num_tensors"],
            body.len() as f64 / (1 << 20) as f64
        );
        times.push((by_path, wall));
    }
    let best = |p: bool| {
        times
            .iter()
            .filter(|t| t.0 == p)
            .map(|t| t.1)
            .fold(f64::INFINITY, f64::min)
    };
    println!(
        "weight update of {spec}: best {:.3} s as a request body, {:.3} s by path",
        best(false),
        best(true)
    );
}
