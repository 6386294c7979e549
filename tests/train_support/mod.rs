//! Shared helpers of the `oxrl train` end-to-end tests: run the binary on a config with
//! `--set` overrides, read its `metrics.jsonl`.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A metrics record.
pub type Rec = serde_json::Map<String, Value>;

/// A shipped example config.
pub fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// `oxrl train CONFIG --quiet --set …  EXTRA…`.
pub fn train(config: &Path, sets: &[String], extra: &[&str]) -> Output {
    train_env(config, sets, extra, &[])
}

/// [`train`] with extra environment variables.
pub fn train_env(config: &Path, sets: &[String], extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_oxrl"));
    c.arg("train").arg(config).arg("--quiet");
    for s in sets {
        c.arg("--set").arg(s);
    }
    c.env_remove("OXRL_ADMIN_KEY").env_remove("OXRL_API_KEY");
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(extra).output().expect("runs oxrl")
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "oxrl failed:\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The run's metrics records.
pub fn records(dir: &Path) -> Vec<Rec> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A numeric field.
pub fn f(r: &Rec, k: &str) -> f64 {
    r.get(k)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no `{k}` in {r:?}"))
}

/// `output_dir=…`.
pub fn out_dir(d: &Path) -> String {
    format!("output_dir={}", d.display())
}

/// A record without its timings (which differ between runs).
pub fn strip_times(r: &Rec) -> Rec {
    r.iter()
        .filter(|(k, _)| !k.ends_with("_s") && !k.contains("per_s") && k.as_str() != "peak_rss_gib")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The f32 values of one tensor of a safetensors file.
pub fn tensor_f32(file: &Path, name: &str) -> Vec<f32> {
    let map = candle_core::safetensors::load(file, &candle_core::Device::Cpu).unwrap();
    map[name]
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}
