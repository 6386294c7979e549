//! Token sampling from one row of logits: temperature, top-k, top-p, min-p, a seeded RNG, and the
//! logprobs the engine reports.
//!
//! The reported logprob of a token is `log softmax(logits / T)` over the **full** vocabulary
//! (`T = 1` for greedy), before any truncation; the draw itself uses the truncated,
//! renormalised distribution. Truncation order (as in Hugging Face / vLLM): top-k, then top-p on
//! the remaining mass, then min-p relative to the most likely token; at least one token is always
//! kept. Candidates are walked in token-id order so a draw depends only on the logits and the RNG.

use crate::types::{SamplingParams, TokenLogprob};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The outcome of sampling one token.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// The chosen token.
    pub token: u32,
    /// Its logprob under the full-vocabulary tempered distribution.
    pub logprob: f32,
    /// The `k` most likely tokens under the same distribution, when asked.
    pub top: Option<Vec<TokenLogprob>>,
}

/// The RNG of sample `index` of a request seeded with `seed`: ChaCha8 seeded from `seed`, on
/// stream `index`, so every sample of a group draws independently and reproducibly.
pub fn rng_for(seed: u64, index: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64);
    rng
}

/// A uniform draw in [0, 1) with 53 bits of precision.
pub fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// The temperature used for logprobs: `T`, or 1 for greedy.
pub fn logprob_temperature(temperature: f32) -> f32 {
    if temperature == 0.0 {
        1.0
    } else {
        temperature
    }
}

/// Index of the largest value (the first one on ties); 0 for an empty row.
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut bv = f32::NEG_INFINITY;
    for (i, &v) in row.iter().enumerate() {
        if v > bv {
            bv = v;
            best = i;
        }
    }
    best as u32
}

/// `(max, log-sum-exp)` of `row / t`: exponentials in f32, their sum in f64 (relative error
/// ~1e-7, far below the 1e-5 the engine promises against the training forward).
pub fn log_normalizer(row: &[f32], t: f32) -> (f64, f64) {
    let m = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v / t));
    let s: f64 = row.iter().map(|&v| (v / t - m).exp() as f64).sum();
    (m as f64, m as f64 + s.ln())
}

/// `log softmax(row / t)[token]` over the full row.
pub fn token_logprob(row: &[f32], t: f32, token: u32) -> f32 {
    let (_, lse) = log_normalizer(row, t);
    ((row[token as usize] / t) as f64 - lse) as f32
}

/// The `k` most likely tokens of `row / t` with their logprobs (`lse` from [`log_normalizer`]),
/// most likely first, ties by smaller id.
pub fn top_logprobs(row: &[f32], t: f32, lse: f64, k: usize) -> Vec<TokenLogprob> {
    let k = k.min(row.len());
    if k == 0 {
        return Vec::new();
    }
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    let cmp = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, cmp);
        idx.truncate(k);
    }
    idx.sort_by(cmp);
    idx.into_iter()
        .map(|i| TokenLogprob {
            token_id: i,
            logprob: ((row[i as usize] / t) as f64 - lse) as f32,
        })
        .collect()
}

/// Reusable buffers of the sampler (one per engine thread).
#[derive(Debug, Default)]
pub struct Scratch {
    weights: Vec<f64>,
    idx: Vec<u32>,
}

/// Token ids kept after top-k, top-p and min-p (in token-id order), given unnormalised weights
/// `w_i = exp(z_i − max z)`. `None` means "the full vocabulary".
fn truncate(w: &[f64], top_k: usize, top_p: f32, min_p: f32, idx: &mut Vec<u32>) -> bool {
    let v = w.len();
    let use_k = top_k > 0 && top_k < v;
    let use_p = top_p < 1.0;
    let use_min = min_p > 0.0;
    if !use_k && !use_p && !use_min {
        return false;
    }
    idx.clear();
    idx.extend(0..v as u32);
    let cmp = |a: &u32, b: &u32| w[*b as usize].total_cmp(&w[*a as usize]).then(a.cmp(b));
    if use_k {
        idx.select_nth_unstable_by(top_k - 1, cmp);
        idx.truncate(top_k);
    }
    if use_p {
        let total: f64 = idx.iter().map(|&i| w[i as usize]).sum();
        // A relative slack absorbs the f32 → f64 rounding of `top_p` (0.4f32 > 0.4).
        let target = top_p as f64 * total * (1.0 - 1e-7);
        // Most candidates carry negligible mass: sort a prefix first, widen if it falls short.
        let mut head = idx.len().min(256);
        loop {
            if head < idx.len() {
                idx.select_nth_unstable_by(head - 1, cmp);
            }
            idx[..head].sort_by(cmp);
            let mut cum = 0.0;
            let mut keep = None;
            for (j, &i) in idx[..head].iter().enumerate() {
                cum += w[i as usize];
                if cum >= target {
                    keep = Some(j + 1);
                    break;
                }
            }
            match keep {
                Some(n) => {
                    idx.truncate(n);
                    break;
                }
                None if head == idx.len() => break, // rounding: keep everything
                None => head = (head * 4).min(idx.len()),
            }
        }
    }
    if use_min {
        // w_max = 1 by construction (weights are relative to the max).
        let thr = min_p as f64;
        let before = idx.clone();
        idx.retain(|&i| w[i as usize] >= thr);
        if idx.is_empty() {
            if let Some(&best) = before.iter().min_by(|a, b| cmp(a, b)) {
                idx.push(best);
            }
        }
    }
    idx.sort_unstable();
    true
}

/// Samples one token from `row` under `p`, reporting its logprob (and top alternatives when
/// `p.logprobs` is set). Greedy (`temperature == 0`) takes the argmax and does not use the RNG.
pub fn sample(
    row: &[f32],
    p: &SamplingParams,
    rng: &mut ChaCha8Rng,
    scratch: &mut Scratch,
) -> Sampled {
    let t = logprob_temperature(p.temperature);
    let (token, lse) = if p.is_greedy() {
        (argmax(row), log_normalizer(row, t).1)
    } else {
        // One pass of exponentials serves both the normaliser and the draw.
        let mf = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v / t));
        scratch.weights.clear();
        scratch
            .weights
            .extend(row.iter().map(|&v| (v / t - mf).exp() as f64));
        let w = &scratch.weights;
        let sum: f64 = w.iter().sum();
        let m = mf as f64;
        let lse = m + sum.ln();
        let truncated = truncate(w, p.top_k, p.top_p, p.min_p, &mut scratch.idx);
        let u = uniform(rng);
        let token = if truncated {
            let ids = &scratch.idx;
            let total: f64 = ids.iter().map(|&i| w[i as usize]).sum();
            let target = u * total;
            let mut cum = 0.0;
            let mut chosen = ids.last().copied().unwrap_or(0);
            for &i in ids {
                cum += w[i as usize];
                if cum > target {
                    chosen = i;
                    break;
                }
            }
            chosen
        } else {
            let target = u * sum;
            let mut cum = 0.0;
            let mut chosen = None;
            let mut last_nonzero = 0u32;
            for (i, &wi) in w.iter().enumerate() {
                if wi > 0.0 {
                    last_nonzero = i as u32;
                }
                cum += wi;
                if cum > target {
                    chosen = Some(i as u32);
                    break;
                }
            }
            chosen.unwrap_or(last_nonzero)
        };
        (token, lse)
    };
    let logprob = ((row[token as usize] / t) as f64 - lse) as f32;
    let top = p.logprobs.map(|k| top_logprobs(row, t, lse, k));
    Sampled {
        token,
        logprob,
        top,
    }
}

/// Samples one token per row of `rows` (`[jobs, vocab]`, row-major) for each `(params, rng)`
/// job, on up to `threads` threads; returns the draws and the advanced RNGs in job order.
/// Every job's draw depends only on its row and RNG, so the result is the same for any thread
/// count.
pub fn sample_rows(
    rows: &[f32],
    vocab: usize,
    jobs: Vec<(&SamplingParams, ChaCha8Rng)>,
    threads: usize,
) -> Vec<(Sampled, ChaCha8Rng)> {
    let run = |chunk: Vec<(usize, &SamplingParams, ChaCha8Rng)>| {
        let mut scratch = Scratch::default();
        chunk
            .into_iter()
            .map(|(k, p, mut rng)| {
                let s = sample(&rows[k * vocab..(k + 1) * vocab], p, &mut rng, &mut scratch);
                (s, rng)
            })
            .collect::<Vec<_>>()
    };
    let indexed: Vec<(usize, &SamplingParams, ChaCha8Rng)> = jobs
        .into_iter()
        .enumerate()
        .map(|(k, (p, r))| (k, p, r))
        .collect();
    let threads = threads.max(1).min(indexed.len().div_ceil(8).max(1));
    if threads == 1 {
        return run(indexed);
    }
    let per = indexed.len().div_ceil(threads);
    let mut chunks: Vec<Vec<(usize, &SamplingParams, ChaCha8Rng)>> = Vec::new();
    let mut it = indexed.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(per).collect());
    }
    std::thread::scope(|sc| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| sc.spawn(move || run(c)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            ..SamplingParams::default()
        }
    }

    /// Empirical frequencies of `draws` samples.
    fn freqs(row: &[f32], p: &SamplingParams, draws: usize) -> Vec<f64> {
        let mut rng = rng_for(42, 0);
        let mut s = Scratch::default();
        let mut c = vec![0usize; row.len()];
        for _ in 0..draws {
            c[sample(row, p, &mut rng, &mut s).token as usize] += 1;
        }
        c.into_iter().map(|x| x as f64 / draws as f64).collect()
    }

    #[test]
    fn logprob_is_full_vocab_tempered_log_softmax() {
        // logits ln(1), ln(2), ln(3), ln(4): softmax = [0.1, 0.2, 0.3, 0.4].
        let row: Vec<f32> = [1f32, 2., 3., 4.].iter().map(|v| v.ln()).collect();
        assert!((token_logprob(&row, 1.0, 3) - 0.4f32.ln()).abs() < 1e-6);
        // T = 0.5 squares the odds: [1, 4, 9, 16] / 30.
        assert!((token_logprob(&row, 0.5, 2) - (9f32 / 30.).ln()).abs() < 1e-6);
        // Greedy reports the T = 1 logprob of the argmax.
        let mut rng = rng_for(0, 0);
        let s = sample(&row, &params(0.0), &mut rng, &mut Scratch::default());
        assert_eq!(s.token, 3);
        assert!((s.logprob - 0.4f32.ln()).abs() < 1e-6);
        // With top_k = 1 the draw is forced, but the logprob stays the untruncated one.
        let p = SamplingParams {
            top_k: 1,
            logprobs: Some(2),
            ..params(1.0)
        };
        let s = sample(&row, &p, &mut rng, &mut Scratch::default());
        assert_eq!(s.token, 3);
        assert!((s.logprob - 0.4f32.ln()).abs() < 1e-6);
        let top = s.top.unwrap();
        assert_eq!(top.len(), 2);
        assert_eq!((top[0].token_id, top[1].token_id), (3, 2));
        assert!((top[1].logprob - 0.3f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.5, 2.0, 2.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY, -3.0]), 1);
    }

    #[test]
    fn truncation_keeps_the_hand_computed_sets() {
        // probabilities [0.1, 0.2, 0.3, 0.4] → weights relative to the max: [.25, .5, .75, 1].
        let w = [0.25, 0.5, 0.75, 1.0];
        let mut idx = Vec::new();
        assert!(!truncate(&w, 0, 1.0, 0.0, &mut idx));
        truncate(&w, 2, 1.0, 0.0, &mut idx);
        assert_eq!(idx, vec![2, 3]);
        // top_p 0.5: 0.4 < 0.5, 0.4 + 0.3 >= 0.5 → {2, 3}; top_p 0.4 → {3}.
        truncate(&w, 0, 0.5, 0.0, &mut idx);
        assert_eq!(idx, vec![2, 3]);
        truncate(&w, 0, 0.4, 0.0, &mut idx);
        assert_eq!(idx, vec![3]);
        // top_p 0.75 → 0.4 + 0.3 + 0.2 = 0.9 >= 0.75 (0.7 < 0.75) → {1, 2, 3}.
        truncate(&w, 0, 0.75, 0.0, &mut idx);
        assert_eq!(idx, vec![1, 2, 3]);
        // top_k 3 then top_p relative to the kept mass 0.9: 0.4/0.9 = .444 < .5 → {2, 3}.
        truncate(&w, 3, 0.5, 0.0, &mut idx);
        assert_eq!(idx, vec![2, 3]);
        // min_p 0.6: keep p >= 0.24 → {2, 3}; min_p 0.5 keeps 0.2 too.
        truncate(&w, 0, 1.0, 0.6, &mut idx);
        assert_eq!(idx, vec![2, 3]);
        truncate(&w, 0, 1.0, 0.5, &mut idx);
        assert_eq!(idx, vec![1, 2, 3]);
    }

    #[test]
    fn top_p_on_a_large_vocabulary_widens_past_the_first_prefix() {
        // 2000 equal tokens: top_p 0.5 needs 1000 of them (more than the 256-token first try).
        let w = vec![1.0; 2000];
        let mut idx = Vec::new();
        truncate(&w, 0, 0.5, 0.0, &mut idx);
        assert_eq!(idx.len(), 1000);
    }

    #[test]
    fn draws_follow_the_tempered_truncated_distribution() {
        let row: Vec<f32> = [1f32, 2., 3., 4.].iter().map(|v| v.ln()).collect();
        let f = freqs(&row, &params(1.0), 20_000);
        for (got, want) in f.iter().zip([0.1, 0.2, 0.3, 0.4]) {
            assert!((got - want).abs() < 0.015, "{f:?}");
        }
        let f = freqs(&row, &params(0.5), 20_000);
        for (got, want) in f.iter().zip([1. / 30., 4. / 30., 9. / 30., 16. / 30.]) {
            assert!((got - want).abs() < 0.015, "{f:?}");
        }
        let p = SamplingParams {
            top_p: 0.5,
            ..params(1.0)
        };
        let f = freqs(&row, &p, 20_000);
        assert_eq!((f[0], f[1]), (0.0, 0.0));
        assert!((f[3] - 4. / 7.).abs() < 0.015, "{f:?}");
    }

    #[test]
    fn parallel_rows_match_sequential_draws() {
        let vocab = 40;
        let rows: Vec<f32> = (0..vocab * 50)
            .map(|i| (i as f32 * 0.61).cos() * 3.0)
            .collect();
        let p = params(0.8);
        let jobs = || {
            (0..50)
                .map(|k| (&p, rng_for(k as u64, 0)))
                .collect::<Vec<_>>()
        };
        let one = sample_rows(&rows, vocab, jobs(), 1);
        let four = sample_rows(&rows, vocab, jobs(), 4);
        assert_eq!(one.len(), 50);
        for (a, b) in one.iter().zip(&four) {
            assert_eq!(a.0, b.0);
        }
    }

    #[test]
    fn same_seed_same_draws_and_streams_differ() {
        let row: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let draw = |seed, index| {
            let mut rng = rng_for(seed, index);
            let mut s = Scratch::default();
            (0..20)
                .map(|_| sample(&row, &params(1.0), &mut rng, &mut s).token)
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7, 0), draw(7, 0));
        assert_ne!(draw(7, 0), draw(7, 1));
        assert_ne!(draw(7, 0), draw(8, 0));
    }
}
