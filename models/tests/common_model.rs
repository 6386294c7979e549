//! Shared helpers for the models integration tests: tiny random models of every architecture.
#![allow(dead_code)]

use candle_core::{DType, Device};
use oxrl_models::init::{random_tensors, InitSpec};
use oxrl_models::{Arch, ModelConfig, Transformer};

/// The tiny model spec of `arch` (2 layers, hidden 32, GQA 4/2, vocab 97).
pub fn spec(arch: Arch, tie: bool) -> InitSpec {
    InitSpec {
        arch,
        vocab_size: 97,
        hidden_size: 32,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        intermediate_size: 48,
        head_dim: if arch == Arch::Qwen3 { Some(12) } else { None },
        tie_word_embeddings: tie,
        init_std: 0.2,
        seed: 7,
        ..InitSpec::default()
    }
}

/// A tiny random model of `arch` with non-trivial norm weights and biases.
pub fn model(arch: Arch, tie: bool, dtype: DType) -> (ModelConfig, Transformer) {
    let s = spec(arch, tie);
    let cfg = s.config().unwrap();
    let mut tensors = random_tensors(&cfg, s.init_std, s.seed).unwrap();
    // Non-trivial norm weights and biases so their gradients and effects are visible.
    for (name, t) in tensors.iter_mut() {
        if name.contains("norm") || name.ends_with(".bias") {
            let n = t.elem_count();
            let v: Vec<f32> = (0..n)
                .map(|i| 1.0 + 0.1 * ((i as f32) * 0.37 + name.len() as f32).sin())
                .collect();
            let v = if name.ends_with(".bias") {
                v.iter().map(|x| x - 1.0).collect()
            } else {
                v
            };
            *t = candle_core::Tensor::from_vec(v, t.dims(), &Device::Cpu).unwrap();
        }
    }
    let m = Transformer::from_tensors(cfg.clone(), tensors, dtype, &Device::Cpu).unwrap();
    (cfg, m)
}

/// Largest absolute element difference of two tensors of one shape, in f64.
pub fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// The largest absolute element difference of two tensors.
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
