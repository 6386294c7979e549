//! `x · Wᵀ` for few rows (decode steps): a memory-bound kernel that streams each weight row once
//! and dots it with every input row, parallel over output rows.
//!
//! The general matmul packs the weight matrix into panels on every call, which for one or a few
//! rows costs more memory traffic than the product itself; decoding is bound by reading the
//! weights, so this path reads them exactly once. AVX2+FMA is selected at run time.

use candle_core::{DType, Tensor};
use rayon::prelude::*;

/// Most input rows the kernel handles; larger batches use the general matmul.
pub const MAX_ROWS: usize = 16;

/// Output rows per parallel task.
const ROWS_PER_TASK: usize = 64;

/// Whether [`matmul_xwt`] applies: f32 on the CPU, contiguous, at most [`MAX_ROWS`] rows.
pub fn applies(x: &Tensor, w: &Tensor) -> bool {
    x.device().is_cpu()
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && x.rank() == 2
        && w.rank() == 2
        && x.dim(0).is_ok_and(|m| m <= MAX_ROWS)
        && w.is_contiguous()
}

/// Dot product with 16 independent accumulators (vectorised inside `target_feature` callers).
#[inline(always)]
pub(crate) fn dot_generic(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let n = a.len().min(b.len());
    let chunks = n / 16;
    for c in 0..chunks {
        let (ac, bc) = (&a[c * 16..c * 16 + 16], &b[c * 16..c * 16 + 16]);
        for l in 0..16 {
            acc[l] += ac[l] * bc[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 16..n {
        s += a[i] * b[i];
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn rows_avx2(x: &[f32], m: usize, k: usize, w: &[f32], out: &mut [f32]) {
    rows_generic(x, m, k, w, out)
}

#[inline(always)]
fn rows_generic(x: &[f32], m: usize, k: usize, w: &[f32], out: &mut [f32]) {
    // out is [rows of this task, m] (transposed), w is [rows of this task, k].
    for (wr, o) in w.chunks_exact(k).zip(out.chunks_exact_mut(m)) {
        for (i, oi) in o.iter_mut().enumerate() {
            *oi = dot_generic(&x[i * k..(i + 1) * k], wr);
        }
    }
}

fn rows(x: &[f32], m: usize, k: usize, w: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function was compiled for.
            unsafe { rows_avx2(x, m, k, w, out) };
            return;
        }
    }
    rows_generic(x, m, k, w, out)
}

/// The values of a contiguous f32 CPU tensor's storage, or an error naming `what`.
pub(crate) fn contiguous_f32<'a>(
    storage: &'a candle_core::Storage,
    layout: &candle_core::Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    match storage {
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)) => {
            match layout.contiguous_offsets() {
                Some((a, b)) => Ok(&v[a..b]),
                None => candle_core::bail!("{what} is not contiguous"),
            }
        }
        _ => candle_core::bail!("{what} must be f32 on the CPU"),
    }
}

/// `x · wᵀ` for `x` `[m, k]` (m ≤ [`MAX_ROWS`]) and `w` `[n, k]`, f32 on the CPU. No gradient.
pub fn matmul_xwt(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let (m, k) = x.dims2()?;
    let (n, k2) = w.dims2()?;
    if k != k2 {
        candle_core::bail!("matmul_xwt: x is [{m}, {k}] but w is [{n}, {k2}]");
    }
    let xv = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let (storage, layout) = w.storage_and_layout();
    let wv = contiguous_f32(&storage, layout, "matmul_xwt: weight")?;
    let mut out_t = vec![0f32; n * m];
    out_t
        .par_chunks_mut(ROWS_PER_TASK * m)
        .zip(wv.par_chunks(ROWS_PER_TASK * k))
        .for_each(|(o, wc)| rows(&xv, m, k, wc, o));
    drop(storage);
    let out = Tensor::from_vec(out_t, (n, m), x.device())?;
    if m == 1 {
        out.reshape((1, n))
    } else {
        out.t()?.contiguous()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_matmul() {
        let mut g = crate::init::SeededNormal::new(3);
        for (m, k, n) in [(1, 576, 1536), (5, 37, 130), (16, 64, 64), (3, 15, 1)] {
            let x: Vec<f32> = (0..m * k).map(|_| g.normal() as f32).collect();
            let w: Vec<f32> = (0..n * k).map(|_| g.normal() as f32).collect();
            let x = Tensor::from_vec(x, (m, k), &Device::Cpu).unwrap();
            let w = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
            let a = matmul_xwt(&x, &w).unwrap();
            let b = x.matmul(&w.t().unwrap()).unwrap();
            let d = (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d < 1e-3, "{m}x{k}x{n}: {d}");
        }
    }
}
