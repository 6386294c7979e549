//! The inference path (paged cache, batched steps, shared prefixes, chunked prefill) must give the
//! same logits as the training forward on the same tokens.

mod common_model;

use candle_core::{DType, Device, IndexOp, Tensor};
use common_model::{max_abs_diff, model};
use oxrl_models::{Arch, CacheConfig, KvCache, StepLogits, StepSeq, Transformer};

fn seq_tokens(seed: u32, len: usize, vocab: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i * 31 + seed * 17 + 3) % vocab)
        .collect()
}

/// Training-path logits of each sequence alone (row r of the result = logits after token r).
fn reference(m: &Transformer, seqs: &[Vec<u32>]) -> Vec<Tensor> {
    let t = seqs.iter().map(|s| s.len()).max().unwrap();
    let mut ids = Vec::new();
    for s in seqs {
        ids.extend_from_slice(s);
        ids.extend(std::iter::repeat_n(0u32, t - s.len()));
    }
    let ids = Tensor::from_vec(ids, (seqs.len(), t), &Device::Cpu).unwrap();
    let lengths: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
    let logits = m.logits(&ids, &lengths).unwrap();
    seqs.iter()
        .enumerate()
        .map(|(i, s)| logits.i(i).unwrap().narrow(0, 0, s.len()).unwrap())
        .collect()
}

fn check_arch(arch: Arch, tie: bool) {
    let (cfg, m) = model(arch, tie, DType::F32);
    let vocab = cfg.vocab_size as u32;
    // Three independent sequences of different lengths plus a group of 3 sharing a 21-token prompt.
    let prompt = seq_tokens(9, 21, vocab);
    let group: Vec<Vec<u32>> = (0..3u32)
        .map(|g| {
            let mut s = prompt.clone();
            s.extend(seq_tokens(100 + g, 6, vocab));
            s
        })
        .collect();
    let singles = vec![
        seq_tokens(1, 5, vocab),
        seq_tokens(2, 19, vocab),
        seq_tokens(3, 33, vocab),
    ];
    let mut all = singles.clone();
    all.extend(group.clone());
    let refs = reference(&m, &all);

    let mut cache = KvCache::new(
        &cfg,
        CacheConfig {
            block_size: 4,
            num_blocks: 64,
        },
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let mut got: Vec<Vec<Tensor>> = vec![Vec::new(); all.len()];
    // Prefill: singles in chunks of at most 7 tokens per step, the shared prompt once.
    let mut caches: Vec<_> = (0..3).map(|_| cache.new_sequence()).collect();
    let mut prompt_cache = cache.new_sequence();
    let prompt_logits = {
        let mut steps = vec![StepSeq {
            cache: &mut prompt_cache,
            tokens: &prompt,
        }];
        m.step(&mut cache, &mut steps, StepLogits::All).unwrap()
    };
    let mut done = [0usize; 3];
    while done.iter().zip(&singles).any(|(d, s)| *d < s.len()) {
        let mut steps = Vec::new();
        let mut which = Vec::new();
        for (i, c) in caches.iter_mut().enumerate() {
            if done[i] < singles[i].len() {
                let end = (done[i] + 7).min(singles[i].len());
                steps.push(StepSeq {
                    cache: c,
                    tokens: &singles[i][done[i]..end],
                });
                which.push((i, end - done[i]));
                done[i] = end;
            }
        }
        let out = m.step(&mut cache, &mut steps, StepLogits::All).unwrap();
        let mut row = 0;
        for (i, n) in which {
            for r in 0..n {
                got[i].push(out.i(row + r).unwrap());
            }
            row += n;
        }
    }
    // The group forks the prompt, then decodes its own tokens one at a time, batched together.
    let mut forks: Vec<_> = (0..3).map(|_| cache.fork(&prompt_cache).unwrap()).collect();
    for g in 0..3 {
        for r in 0..prompt.len() {
            got[3 + g].push(prompt_logits.i(r).unwrap());
        }
    }
    for pos in prompt.len()..group[0].len() {
        let toks: Vec<[u32; 1]> = group.iter().map(|s| [s[pos]]).collect();
        let mut steps: Vec<StepSeq> = forks
            .iter_mut()
            .zip(&toks)
            .map(|(c, t)| StepSeq {
                cache: c,
                tokens: t.as_slice(),
            })
            .collect();
        let out = m.step(&mut cache, &mut steps, StepLogits::Last).unwrap();
        for g in 0..3 {
            got[3 + g].push(out.i(g).unwrap());
        }
    }
    let mut worst = 0f32;
    for (i, rows) in got.iter().enumerate() {
        let stacked = Tensor::stack(rows, 0).unwrap();
        assert_eq!(stacked.dims(), refs[i].dims(), "sequence {i}");
        worst = worst.max(max_abs_diff(&stacked, &refs[i]));
    }
    println!("{arch:?} tie={tie}: max |inference - training| = {worst:e}");
    assert!(
        worst <= 1e-5,
        "{arch:?}: inference and training differ by {worst}"
    );
    for c in caches.into_iter().chain(forks) {
        cache.release(c);
    }
    cache.release(prompt_cache);
    assert_eq!(cache.free_blocks(), 63, "every block returns to the pool");
}

#[test]
fn llama_inference_matches_training() {
    check_arch(Arch::Llama, true);
    check_arch(Arch::Llama, false);
}

#[test]
fn qwen2_inference_matches_training() {
    check_arch(Arch::Qwen2, false);
}

#[test]
fn qwen3_inference_matches_training() {
    check_arch(Arch::Qwen3, true);
}

#[test]
fn mistral_inference_matches_training() {
    check_arch(Arch::Mistral, false);
}

#[test]
fn score_tokens_equals_training_logits() {
    let (cfg, m) = model(Arch::Llama, true, DType::F32);
    let toks = seq_tokens(5, 40, cfg.vocab_size as u32);
    let a = m.score_tokens(&toks).unwrap();
    let b = reference(&m, &[toks]).remove(0);
    assert!(max_abs_diff(&a, &b) <= 1e-5);
}

/// Non-f32 models take the gathered attention (padded K/V copies + mask) instead of the in-place
/// paged kernel: a bf16 model's inference path must follow the f32 model's (bf16 rounding only)
/// and agree with its own training forward.
#[test]
fn gathered_attention_path_in_bf16_follows_f32() {
    let (cfg, m16) = model(Arch::Qwen2, false, DType::BF16);
    let (_, m32) = model(Arch::Qwen2, false, DType::F32);
    let toks = seq_tokens(8, 37, cfg.vocab_size as u32);
    let f32_of = |t: Tensor| t.to_dtype(DType::F32).unwrap();
    let a = f32_of(m16.score_tokens(&toks).unwrap());
    let b = f32_of(reference(&m16, std::slice::from_ref(&toks)).remove(0));
    let c = m32.score_tokens(&toks).unwrap();
    let (ab, ac) = (max_abs_diff(&a, &b), max_abs_diff(&a, &c));
    let scale = max_abs_diff(&c, &c.zeros_like().unwrap());
    eprintln!("bf16 inference vs bf16 training {ab}, vs f32 inference {ac}, |logits| ≤ {scale}");
    assert!(
        ab <= 0.05 * scale && ac <= 0.05 * scale,
        "{ab} {ac} {scale}"
    );
}

/// A step that fails after its blocks were reserved (here: a cache laid out for another model,
/// so writing the keys fails) leaves the cache and the sequences as they were, and the next step
/// continues from the same content.
#[test]
fn a_failed_step_leaves_the_cache_unchanged() {
    let (cfg, m) = model(Arch::Llama, false, DType::F32);
    let (_, other) = model(Arch::Qwen3, false, DType::F32);
    assert_eq!(cfg.num_hidden_layers, other.config().num_hidden_layers);
    assert_ne!(cfg.kv_dim(), other.config().kv_dim());
    let tokens = seq_tokens(5, 11, cfg.vocab_size as u32);
    let refs = reference(&m, std::slice::from_ref(&tokens));
    let mut cache = KvCache::new(
        &cfg,
        CacheConfig {
            block_size: 4,
            num_blocks: 16,
        },
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let mut a = cache.new_sequence();
    m.step(
        &mut cache,
        &mut [StepSeq {
            cache: &mut a,
            tokens: &tokens[..6],
        }],
        StepLogits::All,
    )
    .unwrap();
    let mut fresh = cache.new_sequence();
    let (blocks, free) = (a.blocks().to_vec(), cache.free_blocks());
    assert_eq!((a.len(), blocks.len(), free), (6, 2, 13));
    let err = other.step(
        &mut cache,
        &mut [
            StepSeq {
                cache: &mut a,
                tokens: &tokens[6..],
            },
            StepSeq {
                cache: &mut fresh,
                tokens: &tokens[..9],
            },
        ],
        StepLogits::Last,
    );
    assert!(err.is_err(), "a cache of another layout must fail the step");
    assert_eq!(a.len(), 6);
    assert_eq!(a.blocks(), blocks.as_slice());
    assert!(fresh.is_empty() && fresh.blocks().is_empty());
    assert_eq!(cache.free_blocks(), free, "the reserved blocks went back");
    // The sequence goes on from its intact content.
    let out = m
        .step(
            &mut cache,
            &mut [StepSeq {
                cache: &mut a,
                tokens: &tokens[6..],
            }],
            StepLogits::All,
        )
        .unwrap();
    let want = refs[0].narrow(0, 6, 5).unwrap();
    assert!(max_abs_diff(&out, &want) <= 1e-5);
    cache.release(a);
    cache.release(fresh);
    assert_eq!(cache.free_blocks(), 15);
}
