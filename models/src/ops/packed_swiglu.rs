//! SwiGLU on a packed gate/up projection: `silu(gu[:, ..i]) · gu[:, i..]` for `gu` `[n, 2i]`
//! (the output of the fused gate/up matmul), and its backward as one `[n, 2i]` gradient.
//!
//! Splitting the packed output with `narrow` would cost, in the backward, a zero-padded copy of
//! the full `[n, 2i]` gradient per half plus their sum; this op reads both halves in place and
//! writes both halves of the gradient in one pass, so the fused matmul's backward gets one
//! contiguous `dgu`. Rounding is that of [`super::swiglu`] element for element.

use super::{contiguous_slice, sigmoid, CResult};
use candle_core::{
    backend::BackendStorage, CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor,
};
use num_traits::Float;
use rayon::prelude::*;

/// Rows per parallel task (at least one).
fn rows_per_task(i: usize) -> usize {
    (4096 / i.max(1)).max(1)
}

struct PackedSwiGlu;
struct PackedSwiGluGrad;

fn forward<T: Float + Send + Sync + Default>(gu: &[T], i: usize) -> Vec<T> {
    let n = gu.len() / (2 * i);
    let mut out = vec![T::default(); n * i];
    let rows = rows_per_task(i);
    out.par_chunks_mut(rows * i)
        .zip(gu.par_chunks(rows * 2 * i))
        .for_each(|(o, g)| {
            for (orow, grow) in o.chunks_exact_mut(i).zip(g.chunks_exact(2 * i)) {
                let (a, u) = grow.split_at(i);
                for j in 0..i {
                    orow[j] = a[j] * sigmoid(a[j]) * u[j];
                }
            }
        });
    out
}

fn backward<T: Float + Send + Sync + Default>(gu: &[T], g: &[T], i: usize) -> Vec<T> {
    let mut out = vec![T::default(); gu.len()];
    let rows = rows_per_task(i);
    out.par_chunks_mut(rows * 2 * i)
        .zip(gu.par_chunks(rows * 2 * i).zip(g.par_chunks(rows * i)))
        .for_each(|(o, (x, g))| {
            for ((orow, xrow), grow) in o
                .chunks_exact_mut(2 * i)
                .zip(x.chunks_exact(2 * i))
                .zip(g.chunks_exact(i))
            {
                let (a, u) = xrow.split_at(i);
                let (da, du) = orow.split_at_mut(i);
                for j in 0..i {
                    // d silu(a)/da = σ(a)·(1 + a·(1 − σ(a))), as in `SwiGluDGate`.
                    let sg = sigmoid(a[j]);
                    da[j] = grow[j] * u[j] * sg * (T::one() + a[j] * (T::one() - sg));
                    du[j] = grow[j] * a[j] * sigmoid(a[j]);
                }
            }
        });
    out
}

fn half_width(l: &Layout) -> CResult<usize> {
    match l.dims() {
        [_, w] if w % 2 == 0 && *w > 0 => Ok(w / 2),
        dims => candle_core::bail!("packed swiglu: input {dims:?} is not [n, 2i]"),
    }
}

impl CustomOp1 for PackedSwiGlu {
    fn name(&self) -> &'static str {
        "oxrl-packed-swiglu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let i = half_width(l)?;
        let out = dispatch1!(s, l, |x| forward(x, i));
        Ok((out, Shape::from((l.dims()[0], i))))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(
            &grad.contiguous()?,
            &PackedSwiGluGrad,
        )?))
    }
}

impl CustomOp2 for PackedSwiGluGrad {
    fn name(&self) -> &'static str {
        "oxrl-packed-swiglu-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let i = half_width(l1)?;
        if l2.dims() != [l1.dims()[0], i] {
            candle_core::bail!(
                "packed swiglu backward: gradient {:?} for input {:?}",
                l2.dims(),
                l1.dims()
            );
        }
        let out = dispatch2!(s1, l1, s2, l2, |x, g| backward(x, g, i));
        Ok((out, l1.shape().clone()))
    }
}

/// `silu(gate) · up` of a packed `gu = [gate | up]` `[n, 2i]` → `[n, i]` (f32/f64, CPU).
/// Differentiable: the gradient is one `[n, 2i]` tensor.
pub fn packed_swiglu(gu: &Tensor) -> CResult<Tensor> {
    gu.contiguous()?.apply_op1(PackedSwiGlu)
}
