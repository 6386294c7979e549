//! The training forward is differentiable with respect to every weight: backward() agrees with
//! central finite differences, every trainable parameter receives a non-zero gradient, and with
//! LoRA only the adapters do.

mod common_model;

use candle_core::{DType, Device, Tensor, Var};
use common_model::model;
use oxrl_models::{Arch, LoraConfig, TrainForward, Transformer};

fn batch(vocab: u32) -> (Tensor, Vec<usize>) {
    let ids: Vec<u32> = (0..2 * 9u32).map(|i| (i * 13 + 5) % vocab).collect();
    (
        Tensor::from_vec(ids, (2, 9), &Device::Cpu).unwrap(),
        vec![9, 6],
    )
}

/// A scalar loss touching logprobs and entropies at every valid position with distinct weights.
fn loss(m: &Transformer, ids: &Tensor, lengths: &[usize], adapters: bool) -> Tensor {
    let out = m
        .token_logprobs(
            ids,
            lengths,
            TrainForward {
                track: true,
                adapters,
                entropy: true,
                ..TrainForward::default()
            },
        )
        .unwrap();
    let (b, t) = out.logprobs.dims2().unwrap();
    let w: Vec<f32> = (0..b * t)
        .map(|i| 0.5 + ((i * 7) % 5) as f32 * 0.25)
        .collect();
    let w = Tensor::from_vec(w, (b, t), &Device::Cpu)
        .unwrap()
        .to_dtype(out.logprobs.dtype())
        .unwrap();
    let lp = (out.logprobs * &w).unwrap().sum_all().unwrap();
    let ent = (out.entropy.unwrap() * 0.3).unwrap().sum_all().unwrap();
    (lp + ent).unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn finite_difference(
    m: &Transformer,
    var: &Var,
    idx: usize,
    ids: &Tensor,
    lengths: &[usize],
    adapters: bool,
) -> f64 {
    let orig = var
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let eps = 1e-5;
    let eval = |delta: f64| {
        let mut v = orig.clone();
        v[idx] += delta;
        var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
            .unwrap();
        scalar(&loss(m, ids, lengths, adapters))
    };
    let (plus, minus) = (eval(eps), eval(-eps));
    var.set(&Tensor::from_vec(orig, var.shape(), &Device::Cpu).unwrap())
        .unwrap();
    (plus - minus) / (2.0 * eps)
}

/// Checks every HF tensor a trainable variable holds (each part of a packed projection on its
/// own rows): a non-zero gradient, and two entries against finite differences. Returns the
/// number of HF tensors checked.
fn check_grads(m: &Transformer, adapters: bool) -> usize {
    let (ids, lengths) = batch(m.config().vocab_size as u32);
    let grads = loss(m, &ids, &lengths, adapters).backward().unwrap();
    let vars = m.trainable();
    assert!(!vars.is_empty());
    let mut checked = 0;
    for t in &vars {
        let g = grads
            .get(t.var.as_tensor())
            .unwrap_or_else(|| panic!("{} received no gradient", t.name));
        let gv = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let row = t.var.elem_count() / t.var.dims()[0];
        let mut start = 0;
        for (name, rows) in &t.parts {
            let range = start * row..(start + rows) * row;
            start += rows;
            checked += 1;
            let part = &gv[range.clone()];
            let max = part.iter().fold(0f64, |a, b| a.max(b.abs()));
            assert!(max > 0.0, "{name} (in {}) has an all-zero gradient", t.name);
            // Two entries per tensor (the largest and one other) against finite differences.
            let argmax = part
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .unwrap()
                .0;
            for idx in [range.start + argmax, range.start + part.len() / 2] {
                let fd = finite_difference(m, &t.var, idx, &ids, &lengths, adapters);
                let err = (fd - gv[idx]).abs();
                assert!(
                    err <= 1e-6 + 1e-4 * fd.abs().max(gv[idx].abs()),
                    "{name}[{}]: backward {} vs finite difference {fd}",
                    idx - range.start,
                    gv[idx]
                );
            }
        }
    }
    checked
}

#[test]
fn every_weight_gets_the_finite_difference_gradient() {
    for (arch, tie) in [
        (Arch::Llama, false),
        (Arch::Qwen2, true),
        (Arch::Qwen3, false),
    ] {
        let (cfg, m) = model(arch, tie, DType::F64);
        let n = check_grads(&m, true);
        assert_eq!(
            n,
            cfg.expected_tensors().len(),
            "{arch:?}: every tensor is trainable"
        );
    }
}

#[test]
fn lora_trains_only_adapters() {
    let (_, mut m) = model(Arch::Llama, true, DType::F64);
    let lora = LoraConfig {
        rank: 2,
        alpha: 4.0,
        target_modules: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
    };
    m.attach_lora(&lora, 3).unwrap();
    // PEFT starts B at zero (so A's gradient is zero); move B off zero to test both.
    for (name, var) in m.trainable_vars() {
        if name.ends_with("lora_B.weight") {
            let n = var.elem_count();
            let v: Vec<f64> = (0..n).map(|i| 0.05 * ((i as f64) * 0.7).cos()).collect();
            var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    let vars = m.trainable_vars();
    assert!(
        vars.iter().all(|(n, _)| n.contains("lora_")),
        "only adapters are trainable"
    );
    assert_eq!(vars.len(), 2 * 3 * 2, "A and B for 3 modules in 2 layers");
    assert_eq!(check_grads(&m, true), 2 * 3 * 2);
    // The base weights get no gradient at all.
    let (ids, lengths) = batch(m.config().vocab_size as u32);
    let grads = loss(&m, &ids, &lengths, true).backward().unwrap();
    let base = m.named_tensors(false).unwrap();
    assert!(base.values().all(|t| grads.get(t).is_none()));
}

#[test]
fn adapters_off_is_the_base_model_and_merge_matches() {
    let (cfg, base) = model(Arch::Qwen2, false, DType::F64);
    let mut m = base.clone();
    m.attach_lora(&LoraConfig::default(), 11).unwrap();
    for (name, var) in m.trainable_vars() {
        if name.ends_with("lora_B.weight") {
            let v: Vec<f64> = (0..var.elem_count())
                .map(|i| 0.03 * ((i as f64) * 0.3).sin())
                .collect();
            var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    let (ids, lengths) = batch(cfg.vocab_size as u32);
    let off = TrainForward {
        track: false,
        adapters: false,
        entropy: false,
        ..TrainForward::default()
    };
    let on = TrainForward {
        track: false,
        adapters: true,
        entropy: false,
        ..TrainForward::default()
    };
    let a = base.token_logprobs(&ids, &lengths, on).unwrap().logprobs;
    let b = m.token_logprobs(&ids, &lengths, off).unwrap().logprobs;
    let c = m.token_logprobs(&ids, &lengths, on).unwrap().logprobs;
    let diff = |x: &Tensor, y: &Tensor| {
        scalar(
            &(x - y)
                .unwrap()
                .abs()
                .unwrap()
                .max_keepdim(1)
                .unwrap()
                .max(0)
                .unwrap()
                .squeeze(0)
                .unwrap(),
        )
    };
    assert_eq!(diff(&a, &b), 0.0, "adapters off = base model");
    assert!(diff(&a, &c) > 1e-6, "adapters change the output");
    let merged = Transformer::from_tensors(
        cfg,
        m.named_tensors(true).unwrap(),
        DType::F64,
        &Device::Cpu,
    )
    .unwrap();
    let d = merged.token_logprobs(&ids, &lengths, on).unwrap().logprobs;
    assert!(
        diff(&c, &d) < 1e-10,
        "merged weights reproduce the adapted model"
    );
}

#[test]
fn logprobs_are_log_softmax_of_logits() {
    let (cfg, m) = model(Arch::Mistral, false, DType::F32);
    let (ids, lengths) = batch(cfg.vocab_size as u32);
    let lp = m
        .token_logprobs(
            &ids,
            &lengths,
            TrainForward {
                track: false,
                adapters: true,
                entropy: true,
                ..TrainForward::default()
            },
        )
        .unwrap();
    let logits = m.logits(&ids, &lengths).unwrap();
    let ls = candle_nn::ops::log_softmax(&logits, 2).unwrap();
    let idv = ids.to_vec2::<u32>().unwrap();
    let lpv = lp.logprobs.to_vec2::<f32>().unwrap();
    let entv = lp.entropy.unwrap().to_vec2::<f32>().unwrap();
    let probs = candle_nn::ops::softmax(&logits, 2).unwrap();
    for b in 0..2 {
        assert_eq!(lpv[b][0], 0.0);
        for t in 1..9 {
            if t >= lengths[b] {
                assert_eq!(lpv[b][t], 0.0, "padding is zero");
                continue;
            }
            let row = ls
                .get(b)
                .unwrap()
                .get(t - 1)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert!((lpv[b][t] - row[idv[b][t] as usize]).abs() < 1e-5);
            let p = probs
                .get(b)
                .unwrap()
                .get(t - 1)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let h: f32 = -p.iter().zip(&row).map(|(p, l)| p * l).sum::<f32>();
            assert!(
                (entv[b][t] - h).abs() < 1e-4,
                "entropy {} vs {h}",
                entv[b][t]
            );
        }
    }
}
