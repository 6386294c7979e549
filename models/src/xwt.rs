//! `x · Wᵀ` for the inference step (up to [`MAX_ROWS`] rows of `x`, f32 on the CPU): a
//! register-tiled kernel that reads `x` `[m, k]` and the weight `W` `[n, k]` where they lie,
//! both with `k` contiguous, so no operand is packed.
//!
//! The general matmul (the `gemm` crate) packs the weight into panels on every call. A decode
//! step multiplies few rows (1 to a few hundred sequences) by every weight of the model once, so
//! that packing is a full extra pass over the weights: at 128 sequences on an AVX-512 EPYC it was
//! 17 % of the step beside 42 % in the micro-kernel. Here a tile of `RM` rows of `x` and `RN` rows
//! of `W` keeps `RM × RN` vector accumulators along `k` (AVX-512: 4 × 6 of 16 lanes; AVX2 + FMA:
//! 4 × 3 of 8 lanes), each weight row is streamed once per tile row, and each output is one
//! horizontal sum. Work is split over blocks of weight rows.
//! With at most [`STREAM_ROWS`] rows the product is bound by reading the weight and streams it
//! row by row instead. CPU features are detected at run time; a portable loop runs elsewhere.

use candle_core::{DType, Tensor};
use rayon::prelude::*;

/// Most rows of `x` the kernel takes; larger products (prefill) use the general matmul, whose
/// packing pays off there.
pub const MAX_ROWS: usize = 256;

/// Weight rows per parallel task.
const ROWS_PER_TASK: usize = 48;

/// Whether [`matmul_xwt`] applies: f32 on the CPU, 2-D, at most [`MAX_ROWS`] rows, a
/// contiguous weight.
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

/// Rows of `x` up to which the product streams the weight one row at a time ([`stream`]): bound
/// by reading the weight, and one row at a time walks it in address order, one long stream the
/// prefetchers follow. Register tiles of several weight rows are several short streams: batch-1
/// decode was 1.2–1.4× slower with them.
const STREAM_ROWS: usize = 4;

/// Where a task writes its outputs: element `(row, col)` of the row-major `[m, n]` result,
/// `col` counted from the task's first weight row. Tasks own disjoint column ranges, so each
/// element is written by exactly one task and the result needs no transpose afterwards.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    /// Row length of the result (`n`).
    ld: usize,
    /// The task's first column.
    col0: usize,
    /// Elements of the result (bounds check).
    len: usize,
}

// SAFETY: tasks write disjoint elements (their own columns) of a buffer that outlives them.
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

impl Out {
    /// The same result, columns counted from `col0`.
    fn starting_at(self, col0: usize) -> Self {
        Self { col0, ..self }
    }

    /// Writes element `(row, col)` of this task's columns.
    #[inline(always)]
    fn write(&self, row: usize, col: usize, v: f32) {
        let at = row * self.ld + self.col0 + col;
        assert!(
            at < self.len && col < self.ld - self.col0,
            "xwt: write outside the result"
        );
        // SAFETY: in bounds (checked above), and no other task writes this column.
        unsafe { *self.ptr.add(at) = v };
    }
}

/// Which kernel this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Avx512,
    Avx2,
    Portable,
}

fn kernel() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Kernel::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Kernel::Avx2;
        }
    }
    Kernel::Portable
}

/// A task with few rows of `x`: each weight row in address order, dotted with every row of `x`
/// (16 accumulators, vectorised by the compiler with AVX2 + FMA where the CPU has them, also on
/// AVX-512 CPUs: an explicit AVX-512 loop with four 16-lane accumulators per row, with or
/// without software prefetch, was 3–10 % slower at batch-1 decode on an AVX-512 EPYC).
fn stream(x: &[f32], m: usize, k: usize, w: &[f32], out: Out, kern: Kernel) {
    #[inline(always)]
    fn rows(x: &[f32], m: usize, k: usize, w: &[f32], out: Out) {
        for (c, wr) in w.chunks_exact(k).enumerate() {
            for i in 0..m {
                out.write(i, c, dot_generic(&x[i * k..(i + 1) * k], wr));
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn rows_avx2(x: &[f32], m: usize, k: usize, w: &[f32], out: Out) {
        rows(x, m, k, w, out)
    }
    match kern {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 and AVX2 kernels are only chosen on CPUs with AVX2 + FMA.
        Kernel::Avx512 | Kernel::Avx2 => unsafe { rows_avx2(x, m, k, w, out) },
        _ => rows(x, m, k, w, out),
    }
}

/// One task: the columns of `out` that `w` `[rows, k]` (a block of weight rows) gives.
fn task(x: &[f32], m: usize, k: usize, w: &[f32], out: Out, kern: Kernel) {
    let n = w.len() / k;
    if m <= STREAM_ROWS {
        return stream(x, m, k, w, out, kern);
    }
    match kern {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `kernel()` saw the CPU features the functions were compiled for.
        Kernel::Avx512 => unsafe { avx512::task(x, m, k, w, n, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Kernel::Avx2 => unsafe { avx2::task(x, m, k, w, n, out) },
        _ => {
            for c in 0..n {
                for r in 0..m {
                    out.write(
                        r,
                        c,
                        dot_generic(&x[r * k..(r + 1) * k], &w[c * k..(c + 1) * k]),
                    );
                }
            }
        }
    }
}

/// One ISA's tile kernel, as a module: `tile::<RM, RN>` (register tile), `dispatch` (a tile of
/// any size up to the maximum, for the edges) and `task` (one block of weight rows). The two
/// x86 modules differ only in the vector type, its width and its intrinsics.
#[cfg(target_arch = "x86_64")]
macro_rules! tile_kernel {
    (
        $module:ident, $feature:literal, $vec:ty, $lanes:literal,
        zero: $zero:ident, load: $load:ident, fma: $fma:ident, hsum: $hsum:path,
        tile: $max_rm:literal x $max_rn:literal, arms: [$($a:literal $b:literal),*]
    ) => {
        mod $module {
            use super::Out;
            #[allow(unused_imports)]
            use std::arch::x86_64::*;

            /// `RM × RN` outputs: element `(r + i, c + j)` = `x_i · w_j`.
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn tile<const RM: usize, const RN: usize>(
                x: &[f32],
                w: &[f32],
                k: usize,
                out: Out,
                c: usize,
                r: usize,
            ) {
                debug_assert!(x.len() >= RM * k && w.len() >= RN * k);
                let kv = k / $lanes * $lanes;
                let mut acc = [[$zero(); RN]; RM];
                let (xp, wp) = (x.as_ptr(), w.as_ptr());
                let mut p = 0;
                while p < kv {
                    let mut wv = [$zero(); RN];
                    for (j, v) in wv.iter_mut().enumerate() {
                        // SAFETY: p + lanes <= kv <= k: inside row j of `w`.
                        *v = unsafe { $load(wp.add(j * k + p)) };
                    }
                    for (i, a) in acc.iter_mut().enumerate() {
                        // SAFETY: as above, inside row i of `x`.
                        let xv = unsafe { $load(xp.add(i * k + p)) };
                        for j in 0..RN {
                            a[j] = $fma(xv, wv[j], a[j]);
                        }
                    }
                    p += $lanes;
                }
                for (i, a) in acc.iter().enumerate() {
                    for j in 0..RN {
                        let mut s = $hsum(a[j]);
                        for q in kv..k {
                            s += x[i * k + q] * w[j * k + q];
                        }
                        out.write(r + i, c + j, s);
                    }
                }
            }

            /// A tile of `rm × rn` (at most the maximum) outputs from rows `r..` of `x` and
            /// `c..` of the task's weight rows.
            #[allow(clippy::too_many_arguments)]
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn dispatch(
                rm: usize,
                rn: usize,
                x: &[f32],
                w: &[f32],
                k: usize,
                out: Out,
                c: usize,
                r: usize,
            ) {
                match (rm, rn) {
                    // SAFETY: the caller checked the CPU features.
                    $(($a, $b) => unsafe { tile::<$a, $b>(x, w, k, out, c, r) },)*
                    _ => unreachable!("tiles are at most {} x {}", $max_rm, $max_rn),
                }
            }

            /// One task: tiles of `max_rm × max_rn` (smaller at the edges). Before each column
            /// of tiles, the next tile's weight rows are prefetched: they are short streams the
            /// hardware prefetchers pick up only after the first misses.
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn task(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, out: Out) {
                let mut c = 0;
                while c < n {
                    let rn = ($max_rn as usize).min(n - c);
                    let next = &w[((c + rn) * k).min(w.len())..((c + 2 * rn) * k).min(w.len())];
                    for line in next.chunks(16) {
                        _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast());
                    }
                    let mut r = 0;
                    while r < m {
                        let rm = ($max_rm as usize).min(m - r);
                        let (xs, ws) = (&x[r * k..(r + rm) * k], &w[c * k..(c + rn) * k]);
                        // SAFETY: the caller checked the CPU features.
                        unsafe { dispatch(rm, rn, xs, ws, k, out, c, r) };
                        r += rm;
                    }
                    c += rn;
                }
            }
        }
    };
}

/// Horizontal sum of an AVX2 vector.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum256(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

#[cfg(target_arch = "x86_64")]
tile_kernel!(avx512, "avx512f", __m512, 16,
    zero: _mm512_setzero_ps, load: _mm512_loadu_ps, fma: _mm512_fmadd_ps, hsum: _mm512_reduce_add_ps,
    tile: 4 x 6,
    arms: [4 6, 4 5, 4 4, 4 3, 4 2, 4 1, 3 6, 3 5, 3 4, 3 3, 3 2, 3 1,
           2 6, 2 5, 2 4, 2 3, 2 2, 2 1, 1 6, 1 5, 1 4, 1 3, 1 2, 1 1]);

#[cfg(target_arch = "x86_64")]
tile_kernel!(avx2, "avx2,fma", __m256, 8,
    zero: _mm256_setzero_ps, load: _mm256_loadu_ps, fma: _mm256_fmadd_ps, hsum: super::hsum256,
    tile: 4 x 3,
    arms: [4 3, 4 2, 4 1, 3 3, 3 2, 3 1, 2 3, 2 2, 2 1, 1 3, 1 2, 1 1]);

/// `x · wᵀ` for `x` `[m, k]` (m ≤ [`MAX_ROWS`]) and `w` `[n, k]`, f32 on the CPU. No gradient.
pub fn matmul_xwt(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    matmul_xwt_with(x, w, kernel())
}

fn matmul_xwt_with(x: &Tensor, w: &Tensor, kern: Kernel) -> candle_core::Result<Tensor> {
    let (m, k) = x.dims2()?;
    let (n, k2) = w.dims2()?;
    if k != k2 {
        candle_core::bail!("matmul_xwt: x is [{m}, {k}] but w is [{n}, {k2}]");
    }
    if m == 0 || n == 0 || k == 0 {
        return Tensor::zeros((m, n), DType::F32, x.device());
    }
    let x = x.contiguous()?;
    let (xs, xl) = x.storage_and_layout();
    let xv = contiguous_f32(&xs, xl, "matmul_xwt: x")?;
    let (storage, layout) = w.storage_and_layout();
    let wv = contiguous_f32(&storage, layout, "matmul_xwt: weight")?;
    // Every element is written exactly once by the tasks below (their tiles cover the whole
    // `[m, n]`), so the buffer is not zeroed first (a 25 MB memset per step for the LM head at
    // 128 sequences).
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    let sink = Out {
        ptr: out.as_mut_ptr(),
        ld: n,
        col0: 0,
        len: m * n,
    };
    (0..n.div_ceil(ROWS_PER_TASK))
        .into_par_iter()
        .for_each(|t| {
            let (c0, c1) = (t * ROWS_PER_TASK, ((t + 1) * ROWS_PER_TASK).min(n));
            let out = sink.starting_at(c0);
            task(xv, m, k, &wv[c0 * k..c1 * k], out, kern);
        });
    drop(storage);
    drop(xs);
    // SAFETY: the tasks have written all m · n elements (see above); f32 has no invalid values.
    unsafe { out.set_len(m * n) };
    Tensor::from_vec(out, (m, n), x.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn kernels() -> Vec<Kernel> {
        let mut out = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                out.push(Kernel::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                out.push(Kernel::Avx512);
            }
        }
        out
    }

    /// Every kernel this CPU has, at shapes with ragged tiles, tasks and `k` tails, against
    /// candle's matmul.
    #[test]
    fn matches_matmul_on_every_kernel() {
        let mut g = crate::init::SeededNormal::new(3);
        for (m, k, n) in [
            (1, 576, 1536),
            (5, 37, 130),
            (16, 64, 64),
            (3, 15, 1),
            (130, 72, 97),
            (7, 3, 5),
            (4, 40, 9),
        ] {
            let x: Vec<f32> = (0..m * k).map(|_| g.normal() as f32).collect();
            let w: Vec<f32> = (0..n * k).map(|_| g.normal() as f32).collect();
            let x = Tensor::from_vec(x, (m, k), &Device::Cpu).unwrap();
            let w = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
            let b = x.matmul(&w.t().unwrap()).unwrap();
            for kern in kernels() {
                let a = matmul_xwt_with(&x, &w, kern).unwrap();
                assert_eq!(a.dims(), &[m, n]);
                let d = (a - &b)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(d < 1e-3, "{kern:?} {m}x{k}x{n}: {d}");
            }
        }
    }
}
