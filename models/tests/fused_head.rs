//! The fused, chunked LM head (`LogitChunks::Auto` / `Rows`) gives the same logprobs, entropies
//! and gradients of every parameter as the full-logits path (`LogitChunks::Off`), at T = 1 and
//! T = 0.7, with and without entropy, tied and untied embeddings, with and without LoRA.

mod common_model;

use candle_core::{DType, Device, Tensor};
use common_model::{max_diff, model};
use oxrl_models::{Arch, LogitChunks, LoraConfig, TrainForward, Transformer};

fn batch(vocab: u32) -> (Tensor, Vec<usize>) {
    let ids: Vec<u32> = (0..3 * 11u32).map(|i| (i * 13 + 5) % vocab).collect();
    (
        Tensor::from_vec(ids, (3, 11), &Device::Cpu).unwrap(),
        vec![11, 6, 9],
    )
}

fn max_abs(a: &Tensor) -> f64 {
    max_diff(a, &a.zeros_like().unwrap())
}

struct Run {
    logprobs: Tensor,
    entropy: Option<Tensor>,
    grads: Vec<(String, Tensor)>,
}

/// Forward + backward of a loss with distinct weights on every logprob (and entropy).
fn run(m: &Transformer, chunks: LogitChunks, entropy: bool, temperature: f32) -> Run {
    let (ids, lengths) = batch(m.config().vocab_size as u32);
    let out = m
        .token_logprobs(
            &ids,
            &lengths,
            TrainForward {
                entropy,
                temperature,
                logit_chunks: chunks,
                ..TrainForward::default()
            },
        )
        .unwrap();
    let (b, t) = out.logprobs.dims2().unwrap();
    let dtype = out.logprobs.dtype();
    let w = |k: usize| {
        let v: Vec<f64> = (0..b * t)
            .map(|i| 0.5 + ((i * k) % 5) as f64 * 0.25)
            .collect();
        Tensor::from_vec(v, (b, t), &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    };
    let mut loss = (&out.logprobs * w(7)).unwrap().sum_all().unwrap();
    if let Some(e) = &out.entropy {
        loss = (loss + (e * w(3)).unwrap().sum_all().unwrap()).unwrap();
    }
    let g = loss.backward().unwrap();
    let grads = m
        .trainable_vars()
        .into_iter()
        .map(|(name, var)| {
            let gr = g
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name} got no gradient"))
                .clone();
            (name, gr)
        })
        .collect();
    Run {
        logprobs: out.logprobs,
        entropy: out.entropy,
        grads,
    }
}

/// Largest value / gradient difference between the fused and the reference run (gradients
/// relative to each parameter's largest gradient entry when that exceeds 1).
fn compare(m: &Transformer, chunks: LogitChunks, entropy: bool, temperature: f32) -> (f64, f64) {
    let r = run(m, LogitChunks::Off, entropy, temperature);
    let f = run(m, chunks, entropy, temperature);
    let mut value = max_diff(&r.logprobs, &f.logprobs);
    if entropy {
        value = value.max(max_diff(
            r.entropy.as_ref().unwrap(),
            f.entropy.as_ref().unwrap(),
        ));
    }
    let mut grad = 0f64;
    assert_eq!(r.grads.len(), f.grads.len());
    for ((name, a), (_, b)) in r.grads.iter().zip(&f.grads) {
        let d = max_diff(a, b) / max_abs(a).max(1.0);
        assert!(max_abs(a) > 0.0, "{name}: zero gradient");
        grad = grad.max(d);
    }
    (value, grad)
}

fn check(m: &Transformer, label: &str, tol: f64) {
    let mut worst = (0f64, 0f64);
    for chunks in [
        LogitChunks::Auto,
        LogitChunks::Rows(1),
        LogitChunks::Rows(4),
    ] {
        for entropy in [false, true] {
            for temperature in [1.0, 0.7] {
                let (v, g) = compare(m, chunks, entropy, temperature);
                assert!(
                    v <= tol && g <= tol,
                    "{label} {chunks:?} entropy={entropy} T={temperature}: values {v}, grads {g}"
                );
                worst = (worst.0.max(v), worst.1.max(g));
            }
        }
    }
    eprintln!(
        "{label}: fused vs full logits, max value diff {:e}, max grad diff {:e}",
        worst.0, worst.1
    );
}

#[test]
fn fused_head_equals_full_logits_f32() {
    for (arch, tie) in [
        (Arch::Llama, true),
        (Arch::Llama, false),
        (Arch::Qwen3, false),
    ] {
        let (_, m) = model(arch, tie, DType::F32);
        check(&m, &format!("{arch:?} tie={tie} f32"), 1e-5);
    }
}

#[test]
fn fused_head_equals_full_logits_f64() {
    for tie in [true, false] {
        let (_, m) = model(Arch::Qwen2, tie, DType::F64);
        check(&m, &format!("Qwen2 tie={tie} f64"), 1e-12);
    }
}

#[test]
fn fused_head_with_lora_equals_full_logits() {
    for tie in [true, false] {
        let (_, mut m) = model(Arch::Llama, tie, DType::F32);
        m.attach_lora(
            &LoraConfig {
                rank: 2,
                alpha: 4.0,
                target_modules: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
            },
            5,
        )
        .unwrap();
        for (name, var) in m.trainable_vars() {
            if name.ends_with("lora_B.weight") {
                let v: Vec<f32> = (0..var.elem_count())
                    .map(|i| 0.05 * ((i as f32) * 0.7).cos())
                    .collect();
                var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
            }
        }
        check(&m, &format!("Llama tie={tie} LoRA f32"), 1e-5);
    }
}

#[test]
fn zero_rows_per_chunk_is_an_error() {
    let (cfg, m) = model(Arch::Llama, true, DType::F32);
    let (ids, lengths) = batch(cfg.vocab_size as u32);
    let err = m
        .token_logprobs(
            &ids,
            &lengths,
            TrainForward {
                logit_chunks: LogitChunks::Rows(0),
                ..TrainForward::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("at least one row"), "{err}");
}

/// Widest vocabulary-width tensor (last dim = vocab, other than the transposed head weight
/// `[hidden, vocab]`) the autograd graph of `t` keeps, in elements.
fn widest_vocab_node(t: &Tensor, vocab: usize, hidden: usize) -> usize {
    t.sorted_nodes()
        .iter()
        .filter(|n| n.dims().last() == Some(&vocab) && n.dims() != [hidden, vocab])
        .map(|n| n.elem_count())
        .max()
        .unwrap_or(0)
}

/// Structural check of the memory claim: with the fused head the graph kept for backward holds
/// no tensor of vocabulary width at all (the chunk logits live only inside the op's forward and
/// backward); the full-logits path keeps `[tokens, vocab]`. Same for the shared-prefix forward.
#[test]
fn fused_head_keeps_no_logits_for_backward() {
    for tie in [true, false] {
        let (cfg, m) = model(Arch::Llama, tie, DType::F32);
        let v = cfg.vocab_size;
        let (ids, lengths) = batch(v as u32);
        let graph = |chunks| {
            let o = TrainForward {
                entropy: true,
                logit_chunks: chunks,
                ..TrainForward::default()
            };
            let out = m.token_logprobs(&ids, &lengths, o).unwrap();
            let loss = (out.logprobs.sum_all().unwrap() + out.entropy.unwrap().sum_all().unwrap())
                .unwrap();
            widest_vocab_node(&loss, v, cfg.hidden_size)
        };
        assert_eq!(
            graph(LogitChunks::Off),
            3 * 10 * v,
            "full path keeps [b·(t−1), V]"
        );
        assert_eq!(
            graph(LogitChunks::Auto),
            0,
            "tie={tie}: fused path keeps no logits"
        );
        assert_eq!(graph(LogitChunks::Rows(2)), 0);
        let g = m
            .group_token_logprobs(
                &[1, 2, 3, 4],
                &[vec![5, 6, 7], vec![8]],
                TrainForward::default(),
            )
            .unwrap();
        let loss = (g.logprobs[0].sum_all().unwrap() + g.logprobs[1].sum_all().unwrap()).unwrap();
        assert_eq!(widest_vocab_node(&loss, v, cfg.hidden_size), 0);
    }
}
