//! Shared-prefix training forward (Prefix Grouper): one forward of a group (prompt encoded once,
//! completions attending to it) gives the same per-token logprobs, entropies, loss and gradient
//! of every trainable parameter as the n separate `prompt + completion` sequences through
//! `token_logprobs`.

mod common_model;

use candle_core::{DType, Device, IndexOp, Tensor};
use common_model::{max_diff, model};
use oxrl_models::{Arch, LogitChunks, LoraConfig, PromptGroup, TrainForward, Transformer};

fn toks(seed: u32, len: usize, vocab: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i * 31 + seed * 17 + 3) % vocab)
        .collect()
}

fn max_abs(a: &Tensor) -> f64 {
    max_diff(a, &a.zeros_like().unwrap())
}

/// Per completion: `[len]` logprobs and entropies.
type PerCompletion = (Vec<Tensor>, Vec<Tensor>);

fn shared(
    m: &Transformer,
    prompt: &[u32],
    comps: &[Vec<u32>],
    opts: TrainForward,
) -> PerCompletion {
    let out = m.group_token_logprobs(prompt, comps, opts).unwrap();
    (out.logprobs, out.entropy.unwrap())
}

fn unshared(
    m: &Transformer,
    prompt: &[u32],
    comps: &[Vec<u32>],
    opts: TrainForward,
) -> PerCompletion {
    let p = prompt.len();
    let t = p + comps.iter().map(Vec::len).max().unwrap();
    let mut ids = Vec::new();
    for c in comps {
        ids.extend_from_slice(prompt);
        ids.extend_from_slice(c);
        ids.extend(std::iter::repeat_n(0u32, t - p - c.len()));
    }
    let ids = Tensor::from_vec(ids, (comps.len(), t), &Device::Cpu).unwrap();
    let lengths: Vec<usize> = comps.iter().map(|c| p + c.len()).collect();
    let out = m.token_logprobs(&ids, &lengths, opts).unwrap();
    let ent = out.entropy.unwrap();
    let pick = |x: &Tensor, i: usize, len: usize| x.i(i).unwrap().narrow(0, p, len).unwrap();
    comps
        .iter()
        .enumerate()
        .map(|(i, c)| (pick(&out.logprobs, i, c.len()), pick(&ent, i, c.len())))
        .unzip()
}

/// `Σ a_ij·logprob_ij + Σ b_ij·entropy_ij` with fixed pseudo-random coefficients.
fn loss(lp: &[Tensor], ent: &[Tensor]) -> Tensor {
    let coef = |i: usize, n: usize, k: usize, like: &Tensor| {
        let v: Vec<f64> = (0..n)
            .map(|j| ((i * 7 + j * k + 3) as f64 * 0.61).sin() + 0.2)
            .collect();
        Tensor::from_vec(v, n, &Device::Cpu)
            .unwrap()
            .to_dtype(like.dtype())
            .unwrap()
    };
    let mut total: Option<Tensor> = None;
    for (i, (l, e)) in lp.iter().zip(ent).enumerate() {
        let n = l.dims1().unwrap();
        let term = ((l * coef(i, n, 5, l)).unwrap().sum_all().unwrap()
            + (e * coef(i, n, 3, e)).unwrap().sum_all().unwrap())
        .unwrap();
        total = Some(match total {
            None => term,
            Some(t) => (t + term).unwrap(),
        });
    }
    total.unwrap()
}

/// Returns (max value diff, max relative gradient diff, loss diff) and asserts them within `tol`.
fn check(m: &Transformer, label: &str, opts: TrainForward, tol: f64) -> (f64, f64, f64) {
    let vocab = m.config().vocab_size as u32;
    let prompt = toks(9, 13, vocab);
    let comps: Vec<Vec<u32>> = [5usize, 1, 8, 3]
        .iter()
        .enumerate()
        .map(|(i, &len)| toks(100 + i as u32, len, vocab))
        .collect();
    let (slp, sent) = shared(m, &prompt, &comps, opts);
    let (ulp, uent) = unshared(m, &prompt, &comps, opts);
    let mut value = 0f64;
    for i in 0..comps.len() {
        assert_eq!(slp[i].dims(), &[comps[i].len()]);
        value = value
            .max(max_diff(&slp[i], &ulp[i]))
            .max(max_diff(&sent[i], &uent[i]));
    }
    let (ls, lu) = (loss(&slp, &sent), loss(&ulp, &uent));
    let loss_diff = max_diff(&ls, &lu);
    let (gs, gu) = (ls.backward().unwrap(), lu.backward().unwrap());
    let vars = m.trainable_vars();
    assert!(!vars.is_empty());
    let mut grad = 0f64;
    for (name, var) in &vars {
        let a = gu
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{label}: {name} got no gradient (unshared)"));
        let b = gs
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{label}: {name} got no gradient (shared)"));
        assert!(max_abs(a) > 0.0, "{label}: {name} has a zero gradient");
        grad = grad.max(max_diff(a, b) / max_abs(a).max(1.0));
    }
    eprintln!(
        "{label}: shared vs unshared: values {value:e}, loss {loss_diff:e}, gradients {grad:e} over {} parameters",
        vars.len()
    );
    assert!(
        value <= tol && loss_diff <= tol * 10.0 && grad <= tol,
        "{label}: values {value}, loss {loss_diff}, gradients {grad}"
    );
    (value, grad, loss_diff)
}

/// The groups of `prompts[i]` with `comps[i]`.
fn prompt_groups<'a>(prompts: &'a [Vec<u32>], comps: &'a [Vec<Vec<u32>>]) -> Vec<PromptGroup<'a>> {
    prompts
        .iter()
        .zip(comps)
        .map(|(p, c)| PromptGroup {
            prompt: p,
            completions: c,
        })
        .collect()
}

/// Several groups with prompts of different lengths in one call equal each group's sequences
/// through the plain padded forward (the prompts are left-padded in the call, so only rounding
/// may differ); returns the worst (value, relative gradient) difference.
fn check_groups(m: &Transformer, label: &str, opts: TrainForward, tol: f64) -> (f64, f64) {
    let vocab = m.config().vocab_size as u32;
    let prompts = [toks(9, 13, vocab), toks(2, 4, vocab), toks(5, 9, vocab)];
    let comps: Vec<Vec<Vec<u32>>> = [vec![5usize, 1, 8], vec![3, 6], vec![2, 7, 4, 1]]
        .iter()
        .enumerate()
        .map(|(g, lens)| {
            lens.iter()
                .enumerate()
                .map(|(i, &len)| toks(100 + (10 * g + i) as u32, len, vocab))
                .collect()
        })
        .collect();
    let groups = prompt_groups(&prompts, &comps);
    let outs = m.groups_token_logprobs(&groups, opts).unwrap();
    assert_eq!(outs.len(), groups.len());
    let (mut slp, mut sent, mut ulp, mut uent) = (vec![], vec![], vec![], vec![]);
    for ((p, c), out) in prompts.iter().zip(&comps).zip(outs) {
        let (l, e) = unshared(m, p, c, opts);
        slp.extend(out.logprobs);
        sent.extend(out.entropy.unwrap());
        ulp.extend(l);
        uent.extend(e);
    }
    let mut value = 0f64;
    for i in 0..slp.len() {
        assert_eq!(slp[i].dims(), ulp[i].dims());
        value = value
            .max(max_diff(&slp[i], &ulp[i]))
            .max(max_diff(&sent[i], &uent[i]));
    }
    let (ls, lu) = (loss(&slp, &sent), loss(&ulp, &uent));
    let (gs, gu) = (ls.backward().unwrap(), lu.backward().unwrap());
    let mut grad = 0f64;
    for (name, var) in &m.trainable_vars() {
        let a = gu.get(var.as_tensor()).unwrap();
        let b = gs
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{label}: {name} got no gradient (grouped)"));
        assert!(max_abs(b) > 0.0, "{label}: {name} has a zero gradient");
        grad = grad.max(max_diff(a, b) / max_abs(a).max(1.0));
    }
    eprintln!(
        "{label}: 3 groups in one call vs separate forwards: values {value:e}, gradients {grad:e}"
    );
    assert!(
        value <= tol && grad <= tol,
        "{label}: values {value}, gradients {grad}"
    );
    (value, grad)
}

#[test]
fn several_groups_in_one_call_equal_separate_forwards() {
    for arch in [Arch::Llama, Arch::Qwen3] {
        let (_, mut m) = model(arch, arch == Arch::Llama, DType::F32);
        check_groups(&m, &format!("{arch:?}"), opts(0.7, LogitChunks::Auto), 1e-5);
        with_lora(&mut m);
        check_groups(
            &m,
            &format!("{arch:?} lora"),
            opts(1.0, LogitChunks::Auto),
            1e-5,
        );
    }
    let (_, m) = model(Arch::Qwen2, false, DType::F64);
    check_groups(&m, "Qwen2 f64", opts(1.0, LogitChunks::Auto), 1e-11);
}

/// The composed path (bf16, additive mask) with several groups of different prompt lengths.
#[test]
fn several_groups_composed_path_in_bf16() {
    let (cfg, m) = model(Arch::Llama, false, DType::BF16);
    let vocab = cfg.vocab_size as u32;
    let prompts = [toks(4, 10, vocab), toks(6, 3, vocab)];
    let comps = [
        vec![toks(1, 6, vocab), toks(2, 2, vocab)],
        vec![toks(3, 4, vocab)],
    ];
    let o = TrainForward {
        track: false,
        ..TrainForward::default()
    };
    let groups = prompt_groups(&prompts, &comps);
    let outs = m.groups_token_logprobs(&groups, o).unwrap();
    let mut worst = 0f64;
    for ((p, c), out) in prompts.iter().zip(&comps).zip(&outs) {
        let (ulp, _) = unshared(&m, p, c, TrainForward { entropy: true, ..o });
        for (a, b) in out.logprobs.iter().zip(&ulp) {
            worst = worst.max(max_diff(a, b));
        }
    }
    eprintln!("bf16 grouped vs separate logprobs: {worst}");
    assert!(worst <= 0.05, "{worst}");
}

fn with_lora(m: &mut Transformer) {
    m.attach_lora(
        &LoraConfig {
            rank: 2,
            alpha: 4.0,
            target_modules: vec![
                "q_proj".into(),
                "k_proj".into(),
                "v_proj".into(),
                "o_proj".into(),
                "down_proj".into(),
            ],
        },
        13,
    )
    .unwrap();
    // PEFT starts B at zero; move it off zero so the adapters change the output.
    for (name, var) in m.trainable_vars() {
        if name.ends_with("lora_B.weight") {
            let v: Vec<f64> = (0..var.elem_count())
                .map(|i| 0.05 * ((i as f64) * 0.7).cos())
                .collect();
            let t = Tensor::from_vec(v, var.shape(), &Device::Cpu)
                .unwrap()
                .to_dtype(var.dtype())
                .unwrap();
            var.set(&t).unwrap();
        }
    }
}

fn opts(temperature: f32, chunks: LogitChunks) -> TrainForward {
    TrainForward {
        entropy: true,
        temperature,
        logit_chunks: chunks,
        ..TrainForward::default()
    }
}

#[test]
fn shared_prefix_equals_separate_forwards_llama() {
    for tie in [true, false] {
        for lora in [false, true] {
            let (_, mut m) = model(Arch::Llama, tie, DType::F32);
            if lora {
                with_lora(&mut m);
            }
            for t in [1.0, 0.7] {
                check(
                    &m,
                    &format!("Llama tie={tie} lora={lora} T={t}"),
                    opts(t, LogitChunks::Auto),
                    1e-5,
                );
            }
        }
    }
}

#[test]
fn shared_prefix_equals_separate_forwards_qwen3() {
    for lora in [false, true] {
        let (_, mut m) = model(Arch::Qwen3, false, DType::F32);
        if lora {
            with_lora(&mut m);
        }
        check(
            &m,
            &format!("Qwen3 lora={lora} T=0.7"),
            opts(0.7, LogitChunks::Auto),
            1e-5,
        );
        check(
            &m,
            &format!("Qwen3 lora={lora} T=1 full logits"),
            opts(1.0, LogitChunks::Off),
            1e-5,
        );
    }
}

#[test]
fn shared_prefix_equals_separate_forwards_f64() {
    let (_, mut m) = model(Arch::Qwen2, false, DType::F64);
    check(&m, "Qwen2 f64", opts(0.7, LogitChunks::Auto), 1e-11);
    with_lora(&mut m);
    check(&m, "Qwen2 f64 lora", opts(1.0, LogitChunks::Auto), 1e-11);
}

/// Non-f32/f64 models take the composed ops with an additive mask: in bf16 the shared-prefix
/// logprobs must follow the separate forwards' to bf16 rounding (a mask letting a completion see
/// another completion, or miss a prompt key, moves them far more).
#[test]
fn shared_prefix_composed_path_in_bf16() {
    let (cfg, m) = model(Arch::Qwen3, false, DType::BF16);
    let vocab = cfg.vocab_size as u32;
    let prompt = toks(4, 10, vocab);
    let comps = vec![toks(1, 6, vocab), toks(2, 2, vocab), toks(3, 4, vocab)];
    let o = TrainForward {
        track: false,
        entropy: true,
        ..TrainForward::default()
    };
    let (slp, _) = shared(&m, &prompt, &comps, o);
    let (ulp, _) = unshared(&m, &prompt, &comps, o);
    let mut worst = 0f64;
    for (a, b) in slp.iter().zip(&ulp) {
        worst = worst.max(max_diff(a, b));
    }
    eprintln!("bf16 shared vs unshared logprobs: {worst}");
    assert!(worst <= 0.05, "{worst}");
}

#[test]
fn bad_groups_are_errors() {
    let (cfg, m) = model(Arch::Llama, true, DType::F32);
    let o = TrainForward::default();
    let v = cfg.vocab_size as u32;
    assert!(m.group_token_logprobs(&[], &[vec![1]], o).is_err());
    assert!(m.group_token_logprobs(&[1, 2], &[], o).is_err());
    assert!(m
        .group_token_logprobs(&[1, 2], &[vec![1], vec![]], o)
        .is_err());
    assert!(m.group_token_logprobs(&[1, v], &[vec![1]], o).is_err());
    assert!(m.group_token_logprobs(&[1, 2], &[vec![v]], o).is_err());
    let bad_t = TrainForward {
        temperature: -1.0,
        ..o
    };
    assert!(m.group_token_logprobs(&[1, 2], &[vec![3]], bad_t).is_err());
    assert!(m.groups_token_logprobs(&[], o).is_err());
    let (good, empty) = ([vec![1u32]], [vec![]]);
    let groups = [
        PromptGroup {
            prompt: &[1, 2],
            completions: &good,
        },
        PromptGroup {
            prompt: &[3],
            completions: &empty,
        },
    ];
    assert!(m.groups_token_logprobs(&groups, o).is_err());
}
