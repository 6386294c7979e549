//! Attention of the inference step read straight from the paged KV pools (f32 on the CPU).
//!
//! The general path gathers every sequence's keys and values out of the pools into a padded
//! `[b, kv, L, d]` copy, transposes it, runs two batched matmuls, adds a padding mask and takes a
//! softmax: at 128 decoding sequences that is several GB of copies per step. This kernel visits
//! each `(sequence, query head)` once, reads the context rows of its KV head by slot, and keeps
//! only one row of scores: `softmax(scale · q·Kᵀ) · V` over the positions the row may see.
//! It computes the same function as the general path (f32 accumulation throughout); the decoder
//! tests hold both inference paths to the training forward at 1e-5.

use crate::xwt::{contiguous_f32, dot_generic as dot};
use candle_core::{DType, Tensor};
use rayon::prelude::*;

/// Most query heads per KV head the kernel handles (the decoder falls back above it).
pub const MAX_GROUP: usize = 16;

/// The shapes of one call.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    /// Sequences in the step.
    pub batch: usize,
    /// Query rows per sequence (padded).
    pub qmax: usize,
    /// Context slots per sequence (padded) in `read_slots`.
    pub lmax: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (query head `h` reads KV head `h / (heads / kv_heads)`).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

/// Whether the kernel applies: f32 tensors on the CPU with contiguous pools.
pub fn applies(q: &Tensor, kpool: &Tensor, vpool: &Tensor) -> bool {
    q.device().is_cpu()
        && q.dtype() == DType::F32
        && kpool.dtype() == DType::F32
        && vpool.dtype() == DType::F32
        && kpool.is_contiguous()
        && vpool.is_contiguous()
}

/// Attention of one `(sequence, KV head)`: its `g` query heads × `qmax` rows, each context row
/// of K and V read once for all `g` heads. `q` and `out` are `[g, qmax, d]`; `scores` is scratch.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn group_rows(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    slots: &[u32],
    limits: &[usize],
    kv_dim: usize,
    col: usize,
    g: usize,
    d: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let qmax = limits.len();
    out.iter_mut().for_each(|x| *x = 0.0);
    for (i, &limit) in limits.iter().enumerate() {
        // scores[j * g + h] for context position j and query head h of the group.
        scores.clear();
        scores.resize(limit * g, 0.0);
        let mut max = [f32::NEG_INFINITY; MAX_GROUP];
        for (j, &s) in slots[..limit].iter().enumerate() {
            let base = s as usize * kv_dim + col;
            let krow = &keys[base..base + d];
            for h in 0..g {
                let qrow = &q[(h * qmax + i) * d..(h * qmax + i + 1) * d];
                let v = scale * dot(qrow, krow);
                scores[j * g + h] = v;
                max[h] = max[h].max(v);
            }
        }
        let mut sum = [0f32; MAX_GROUP];
        for j in 0..limit {
            for h in 0..g {
                let e = (scores[j * g + h] - max[h]).exp();
                scores[j * g + h] = e;
                sum[h] += e;
            }
        }
        for (j, &s) in slots[..limit].iter().enumerate() {
            let base = s as usize * kv_dim + col;
            let vrow = &values[base..base + d];
            for h in 0..g {
                let p = scores[j * g + h];
                let o = &mut out[(h * qmax + i) * d..(h * qmax + i + 1) * d];
                for (x, &v) in o.iter_mut().zip(vrow) {
                    *x += p * v;
                }
            }
        }
        for h in 0..g {
            let inv = if sum[h] > 0.0 { 1.0 / sum[h] } else { 0.0 };
            out[(h * qmax + i) * d..(h * qmax + i + 1) * d]
                .iter_mut()
                .for_each(|x| *x *= inv);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn group_rows_avx2(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    slots: &[u32],
    limits: &[usize],
    kv_dim: usize,
    col: usize,
    g: usize,
    d: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    group_rows(
        q, keys, values, slots, limits, kv_dim, col, g, d, scale, scores, out,
    )
}

/// `softmax(scale · q Kᵀ + mask) V` for every sequence and query head.
///
/// * `q`: `[batch, heads, qmax, d]` (after RoPE and q-norm);
/// * `kpool`, `vpool`: `[slots, kv_heads · d]` pools of one layer;
/// * `read_slots`: `[batch · lmax]` pool slot of each context position;
/// * `limits`: `[batch · qmax]` how many leading context positions each query row sees (≥ 1).
///
/// Returns `[batch · qmax, heads · d]` (rows in the order of the step's tokens).
pub fn paged_attention(
    q: &Tensor,
    kpool: &Tensor,
    vpool: &Tensor,
    read_slots: &[u32],
    limits: &[usize],
    shape: AttentionShape,
    scale: f32,
) -> candle_core::Result<Tensor> {
    let AttentionShape {
        batch: b,
        qmax,
        lmax,
        heads: nh,
        kv_heads: nkv,
        head_dim: d,
    } = shape;
    if nkv == 0 || nh % nkv != 0 || nh / nkv > MAX_GROUP {
        candle_core::bail!(
            "paged attention: {nh} heads over {nkv} kv heads (at most {MAX_GROUP} per kv head)"
        );
    }
    if read_slots.len() != b * lmax || limits.len() != b * qmax {
        candle_core::bail!("paged attention: slot/limit tables do not match the shape");
    }
    if limits.iter().any(|&l| l == 0 || l > lmax) {
        candle_core::bail!("paged attention: a query row sees no context or beyond lmax");
    }
    let g = nh / nkv;
    let kv_dim = nkv * d;
    let q = q.contiguous()?;
    let (qs, ql) = q.storage_and_layout();
    let qv = contiguous_f32(&qs, ql, "paged attention: q")?;
    if qv.len() != b * nh * qmax * d {
        candle_core::bail!(
            "paged attention: q has {} values, expected {}",
            qv.len(),
            b * nh * qmax * d
        );
    }
    let (ks, kl) = kpool.storage_and_layout();
    let (vs, vl) = vpool.storage_and_layout();
    let keys = contiguous_f32(&ks, kl, "paged attention: key pool")?;
    let values = contiguous_f32(&vs, vl, "paged attention: value pool")?;
    let slots_max = read_slots.iter().copied().max().unwrap_or(0) as usize;
    if (slots_max + 1) * kv_dim > keys.len().min(values.len()) {
        candle_core::bail!("paged attention: slot {slots_max} is outside the pools");
    }
    #[cfg(target_arch = "x86_64")]
    let avx2 =
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
    // out is [b, nh, qmax, d]. A task is `hg` consecutive query heads of one sequence that share
    // a KV head: the whole group (K/V rows read once for all of them) when there are enough
    // tasks to keep every thread busy, one head per task otherwise (batch-1 decode).
    let hg = if b * nkv >= 4 * rayon::current_num_threads() {
        g
    } else {
        1
    };
    let tasks_per_seq = nh / hg;
    let mut out = vec![0f32; b * nh * qmax * d];
    out.par_chunks_mut(hg * qmax * d)
        .enumerate()
        .for_each_init(Vec::new, |scores, (task, o)| {
            let bi = task / tasks_per_seq;
            let h0 = (task % tasks_per_seq) * hg;
            let col = (h0 / g) * d;
            let qrows = &qv[task * hg * qmax * d..(task + 1) * hg * qmax * d];
            let slots = &read_slots[bi * lmax..(bi + 1) * lmax];
            let lims = &limits[bi * qmax..(bi + 1) * qmax];
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: the CPU supports the features the function was compiled for.
                unsafe {
                    group_rows_avx2(
                        qrows, keys, values, slots, lims, kv_dim, col, hg, d, scale, scores, o,
                    )
                };
                return;
            }
            group_rows(
                qrows, keys, values, slots, lims, kv_dim, col, hg, d, scale, scores, o,
            );
        });
    drop(qs);
    drop(ks);
    drop(vs);
    Tensor::from_vec(out, (b, nh, qmax, d), q.device())?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b * qmax, nh * d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Plain f64 loops: softmax over the visible positions of each row, then the weighted values.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        slots: &[u32],
        limits: &[usize],
        s: AttentionShape,
        scale: f64,
    ) -> Vec<f32> {
        let (kv_dim, g) = (s.kv_heads * s.head_dim, s.heads / s.kv_heads);
        let d = s.head_dim;
        let mut out = vec![0f32; s.batch * s.qmax * s.heads * d];
        for bi in 0..s.batch {
            for h in 0..s.heads {
                for i in 0..s.qmax {
                    let qrow = &q[((bi * s.heads + h) * s.qmax + i) * d..][..d];
                    let limit = limits[bi * s.qmax + i];
                    let col = (h / g) * d;
                    let sc: Vec<f64> = (0..limit)
                        .map(|j| {
                            let base = slots[bi * s.lmax + j] as usize * kv_dim + col;
                            scale
                                * (0..d)
                                    .map(|t| qrow[t] as f64 * k[base + t] as f64)
                                    .sum::<f64>()
                        })
                        .collect();
                    let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for t in 0..d {
                        let mut acc = 0f64;
                        for (j, p) in e.iter().enumerate() {
                            let base = slots[bi * s.lmax + j] as usize * kv_dim + col;
                            acc += p / z * v[base + t] as f64;
                        }
                        out[((bi * s.qmax + i) * s.heads + h) * d + t] = acc as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_dense_attention_over_scattered_slots() {
        // Few sequences take the one-head-per-task split, many the grouped one.
        for batch in [1, 3, 12] {
            let mut g = crate::init::SeededNormal::new(11 + batch as u64);
            let s = AttentionShape {
                batch,
                qmax: 4,
                lmax: 9,
                heads: 6,
                kv_heads: 2,
                head_dim: 20,
            };
            let n_slots = 40;
            let kv_dim = s.kv_heads * s.head_dim;
            let mut rand = |n: usize| -> Vec<f32> { (0..n).map(|_| g.normal() as f32).collect() };
            let q = rand(s.batch * s.heads * s.qmax * s.head_dim);
            let k = rand(n_slots * kv_dim);
            let v = rand(n_slots * kv_dim);
            // Scattered, partly shared slots (as after a fork); padding reads slot 0.
            let slots: Vec<u32> = (0..s.batch * s.lmax)
                .map(|i| ((i * 7 + 3) % n_slots) as u32)
                .collect();
            // Causal rows, decode rows and padding rows that see the whole context.
            let limits: Vec<usize> = (0..s.batch * s.qmax)
                .map(|i| [6, 7, 8, 9, 1, 1, 1, 1, 9, 9, 2, 3][i % 12])
                .collect();
            let dev = Device::Cpu;
            let qt = Tensor::from_slice(&q, (s.batch, s.heads, s.qmax, s.head_dim), &dev).unwrap();
            let kt = Tensor::from_slice(&k, (n_slots, kv_dim), &dev).unwrap();
            let vt = Tensor::from_slice(&v, (n_slots, kv_dim), &dev).unwrap();
            assert!(applies(&qt, &kt, &vt));
            let got = paged_attention(&qt, &kt, &vt, &slots, &limits, s, 0.25)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let want = reference(&q, &k, &v, &slots, &limits, s, 0.25);
            let d = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(d < 1e-5, "batch {batch}: max |Δ| = {d}");
        }
    }

    #[test]
    fn bad_tables_are_errors() {
        let s = AttentionShape {
            batch: 1,
            qmax: 1,
            lmax: 2,
            heads: 2,
            kv_heads: 1,
            head_dim: 4,
        };
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 2, 1, 4), DType::F32, &dev).unwrap();
        let kv = Tensor::zeros((3, 4), DType::F32, &dev).unwrap();
        assert!(paged_attention(&q, &kv, &kv, &[0, 1], &[0], s, 1.0).is_err());
        assert!(paged_attention(&q, &kv, &kv, &[0, 1], &[3], s, 1.0).is_err());
        assert!(paged_attention(&q, &kv, &kv, &[0, 9], &[2], s, 1.0).is_err());
        assert!(paged_attention(&q, &kv, &kv, &[0], &[1], s, 1.0).is_err());
        assert!(paged_attention(&q, &kv, &kv, &[0, 1], &[2], s, 1.0).is_ok());
    }
}
