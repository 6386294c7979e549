//! Fused "LM head + target logprob (+ entropy)": per-row `log softmax(h Wᵀ / T)[target]` and the
//! entropy of that distribution, computed chunk by chunk over rows so that no `[rows × vocab]`
//! logits tensor larger than one chunk ever exists, in the forward or in the backward.
//!
//! This is the same idea as Liger's fused linear cross-entropy. The unfused path keeps the full
//! `[N, V]` logits (and their scaled copy) alive in the autograd graph until backward; here the
//! graph node of [`linear_logprob`] holds only its two inputs (`hidden [N, H]`, the head weight
//! `[V, H]`, both alive anyway) and its `[N, k]` result. The backward recomputes each chunk's
//! logits (one extra `c × H × V` matmul per chunk), turns them into `dlogits` with the same
//! kernels as [`super::target_logprob`] / [`super::entropy`], and accumulates `dh = dlogits · W`
//! and `dW += dlogitsᵀ · h`; chunk logits are freed before the next chunk starts.
//!
//! Rounding follows the unfused path exactly in the forward: the chunk's logits are the same
//! matmul, cast to the work dtype, divided by `T` (`logits / T`, as the sampler does), and the
//! per-row kernels are the very ones the unfused path uses. The backward differs only in the
//! summation order of `dW` over chunks. CPU, f32/f64 only (like the other kernels of
//! [`super`]); callers fall back to the unfused path elsewhere.

use super::{EntropyGrad, TargetLogprobGrad};
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use std::sync::Arc;

type CResult<T> = candle_core::Result<T>;

/// Default byte budget of one chunk's logits (work dtype).
pub const DEFAULT_CHUNK_BYTES: usize = 64 << 20;
/// Fewest rows an automatic chunk holds, so the chunk matmul stays compute-bound (a chunk of
/// very few rows streams the whole `[V, H]` weight for little work).
pub const MIN_AUTO_CHUNK_ROWS: usize = 128;

/// Rows per chunk for a vocabulary of `vocab` entries in `dtype` under the default budget.
pub fn auto_chunk_rows(vocab: usize, dtype: DType) -> usize {
    let row_bytes = vocab.max(1) * dtype.size_in_bytes();
    (DEFAULT_CHUNK_BYTES / row_bytes).max(MIN_AUTO_CHUNK_ROWS)
}

/// Everything both passes need, shared by the forward call and the graph node.
#[derive(Debug, Clone)]
struct Spec {
    targets: Arc<Vec<u32>>,
    temperature: f64,
    entropy: bool,
    chunk_rows: usize,
    work: DType,
}

impl Spec {
    /// `(h_c · Wᵀ).to(work) / T` for rows `start..start + len` (no graph: detached inputs).
    fn chunk_logits(&self, h: &Tensor, w: &Tensor, start: usize, len: usize) -> CResult<Tensor> {
        let logits = h
            .narrow(0, start, len)?
            .matmul(&w.t()?)?
            .to_dtype(self.work)?;
        if self.temperature == 1.0 {
            return Ok(logits);
        }
        // Exactly the unfused path's division: T as an f32 first, then the work dtype.
        let t = Tensor::new(self.temperature as f32, h.device())?.to_dtype(self.work)?;
        logits.broadcast_div(&t)
    }

    /// The scaled `(1 / T)` factor applied to `dlogits`, as the division's backward does.
    fn unscale(&self, d: Tensor) -> CResult<Tensor> {
        if self.temperature == 1.0 {
            return Ok(d);
        }
        let t = Tensor::new(self.temperature as f32, d.device())?.to_dtype(self.work)?;
        d.broadcast_div(&t)
    }
}

/// The graph node: its forward hands back the result computed beforehand (so the forward never
/// reads the input storages under candle's locks); its backward recomputes chunk by chunk.
struct LinearLogprob {
    spec: Spec,
    result: Tensor,
}

impl CustomOp2 for LinearLogprob {
    fn name(&self) -> &'static str {
        "oxrl-linear-logprob"
    }

    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        _l1: &Layout,
        _s2: &CpuStorage,
        _l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let out = match self.spec.work {
            DType::F32 => CpuStorage::F32(self.result.flatten_all()?.to_vec1::<f32>()?),
            DType::F64 => CpuStorage::F64(self.result.flatten_all()?.to_vec1::<f64>()?),
            other => candle_core::bail!("linear_logprob: unsupported work dtype {other:?}"),
        };
        Ok((out, self.result.shape().clone()))
    }

    fn bwd(
        &self,
        hidden: &Tensor,
        weight: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        let (want_h, want_w) = (hidden.track_op(), weight.track_op());
        if !want_h && !want_w {
            return Ok((None, None));
        }
        let spec = &self.spec;
        let (h, w) = (hidden.detach(), weight.detach());
        let n = h.dims2()?.0;
        let grad = grad.to_dtype(spec.work)?.contiguous()?;
        // Is any entropy cotangent non-zero? (Entropy reported only as a metric costs nothing.)
        let ent_used = spec.entropy
            && grad
                .narrow(1, 1, 1)?
                .abs()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?
                != 0.0;
        let res = res.detach().to_dtype(spec.work)?;
        let mut dh_chunks = Vec::new();
        let mut dw: Option<Tensor> = None;
        let mut start = 0;
        while start < n {
            let len = spec.chunk_rows.min(n - start);
            let logits = spec.chunk_logits(&h, &w, start, len)?.contiguous()?;
            let g = grad.narrow(0, start, len)?;
            let targets = Arc::new(spec.targets[start..start + len].to_vec());
            let g_lp = g.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?;
            let mut d = logits.apply_op2_no_bwd(&g_lp, &TargetLogprobGrad(targets))?;
            if ent_used {
                let gh = Tensor::cat(
                    &[
                        &g.narrow(1, 1, 1)?,
                        &res.narrow(0, start, len)?.narrow(1, 1, 1)?,
                    ],
                    1,
                )?
                .contiguous()?;
                d = (d + logits.apply_op2_no_bwd(&gh, &EntropyGrad)?)?;
            }
            drop(logits);
            let d = spec.unscale(d)?.to_dtype(h.dtype())?;
            if want_h {
                dh_chunks.push(d.matmul(&w)?);
            }
            if want_w {
                let part = d.t()?.matmul(&h.narrow(0, start, len)?)?;
                dw = Some(match dw {
                    None => part,
                    Some(acc) => (acc + part)?,
                });
            }
            start += len;
        }
        let dh = if want_h {
            Some(Tensor::cat(&dh_chunks, 0)?)
        } else {
            None
        };
        let dw = match (want_w, dw) {
            (true, Some(dw)) => Some(dw),
            (true, None) => Some(weight.zeros_like()?),
            (false, _) => None,
        };
        Ok((dh, dw))
    }
}

/// Per-row `log softmax(hidden · weightᵀ / T)[targets]` and, when `entropy`, the entropy of that
/// distribution, for `hidden [N, H]` and the LM-head `weight [V, H]` (f32/f64, CPU; the logits are
/// taken in `work`, f32 or f64). Returns `[N]` logprobs and the optional `[N]` entropies, both
/// differentiable with respect to `hidden` and `weight`. At most `chunk_rows` rows of logits
/// exist at any time (forward and backward).
pub fn linear_logprob(
    hidden: &Tensor,
    weight: &Tensor,
    targets: &[u32],
    temperature: f64,
    entropy: bool,
    chunk_rows: usize,
    work: DType,
) -> CResult<(Tensor, Option<Tensor>)> {
    let (n, hd) = hidden.dims2()?;
    let (v, wd) = weight.dims2()?;
    if hd != wd {
        candle_core::bail!("linear_logprob: hidden width {hd} but weight is [{v}, {wd}]");
    }
    if targets.len() != n {
        candle_core::bail!("linear_logprob: {} targets for {n} rows", targets.len());
    }
    if let Some(&t) = targets.iter().find(|&&t| t as usize >= v) {
        candle_core::bail!("linear_logprob: target {t} outside the vocabulary of {v}");
    }
    if !matches!(work, DType::F32 | DType::F64) {
        candle_core::bail!("linear_logprob: work dtype must be f32 or f64, got {work:?}");
    }
    if !(temperature.is_finite() && temperature > 0.0) {
        candle_core::bail!("linear_logprob: temperature must be positive, got {temperature}");
    }
    let spec = Spec {
        targets: Arc::new(targets.to_vec()),
        temperature,
        entropy,
        chunk_rows: chunk_rows.max(1),
        work,
    };
    // Forward with detached inputs: no graph, each chunk's logits freed at the end of its turn.
    let (h, w) = (hidden.detach(), weight.detach());
    let mut lps = Vec::new();
    let mut ents = Vec::new();
    let mut start = 0;
    while start < n {
        let len = spec.chunk_rows.min(n - start);
        let logits = spec.chunk_logits(&h, &w, start, len)?;
        lps.push(super::target_logprob(
            &logits,
            &spec.targets[start..start + len],
        )?);
        if entropy {
            ents.push(super::entropy(&logits)?);
        }
        start += len;
    }
    let lp = Tensor::cat(&lps, 0)?;
    let result = if entropy {
        Tensor::stack(&[lp, Tensor::cat(&ents, 0)?], 1)?
    } else {
        lp.unsqueeze(1)?
    };
    let out = hidden.apply_op2(
        weight,
        LinearLogprob {
            spec,
            result: result.contiguous()?,
        },
    )?;
    let lp = out.narrow(1, 0, 1)?.squeeze(1)?;
    let ent = if entropy {
        Some(out.narrow(1, 1, 1)?.squeeze(1)?)
    } else {
        None
    };
    Ok((lp, ent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    fn rand(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
        let mut g = crate::init::SeededNormal::new(seed);
        let n: usize = shape.iter().product();
        Tensor::from_vec(
            (0..n).map(|_| g.normal()).collect::<Vec<f64>>(),
            shape,
            &Device::Cpu,
        )
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
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

    /// Composed reference: full logits, `/ T`, log_softmax.
    fn reference(h: &Tensor, w: &Tensor, targets: &[u32], t: f64) -> (Tensor, Tensor) {
        let logits = h.matmul(&w.t().unwrap()).unwrap();
        let tt = Tensor::new(t as f32, h.device())
            .unwrap()
            .to_dtype(h.dtype())
            .unwrap();
        let logits = logits.broadcast_div(&tt).unwrap();
        let ls = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
        let idx = Tensor::new(targets, h.device())
            .unwrap()
            .unsqueeze(1)
            .unwrap();
        let lp = ls.gather(&idx, 1).unwrap().squeeze(1).unwrap();
        let ent = (ls.exp().unwrap() * &ls)
            .unwrap()
            .sum(1)
            .unwrap()
            .neg()
            .unwrap();
        (lp, ent)
    }

    #[test]
    fn matches_composed_in_value_and_gradient() {
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            for t in [1.0, 0.7] {
                for chunk in [1, 3, 7, 100] {
                    let (n, hd, v) = (7, 5, 11);
                    let h = Var::from_tensor(&rand(&[n, hd], 1, dtype)).unwrap();
                    let w = Var::from_tensor(&rand(&[v, hd], 2, dtype)).unwrap();
                    let targets: Vec<u32> = (0..n as u32).map(|i| (i * 5 + 1) % v as u32).collect();
                    let (lp, ent) = linear_logprob(
                        h.as_tensor(),
                        w.as_tensor(),
                        &targets,
                        t,
                        true,
                        chunk,
                        dtype,
                    )
                    .unwrap();
                    let ent = ent.unwrap();
                    let (rlp, rent) = reference(h.as_tensor(), w.as_tensor(), &targets, t);
                    assert!(max_diff(&lp, &rlp) <= tol);
                    assert!(max_diff(&ent, &rent) <= tol);
                    let c1 = rand(&[n], 3, dtype);
                    let c2 = rand(&[n], 4, dtype);
                    let loss = |lp: &Tensor, ent: &Tensor| {
                        ((lp * &c1).unwrap().sum_all().unwrap()
                            + (ent * &c2).unwrap().sum_all().unwrap())
                        .unwrap()
                    };
                    let gf = loss(&lp, &ent).backward().unwrap();
                    let gr = loss(&rlp, &rent).backward().unwrap();
                    for var in [&h, &w] {
                        let d = max_diff(
                            gf.get(var.as_tensor()).unwrap(),
                            gr.get(var.as_tensor()).unwrap(),
                        );
                        assert!(d <= tol, "{dtype:?} T={t} chunk={chunk}: grad diff {d}");
                    }
                }
            }
        }
    }

    #[test]
    fn frozen_weight_gets_no_gradient_and_bad_input_is_an_error() {
        let h = Var::from_tensor(&rand(&[4, 3], 5, DType::F32)).unwrap();
        let w = rand(&[6, 3], 6, DType::F32);
        let (lp, _) =
            linear_logprob(h.as_tensor(), &w, &[0, 1, 2, 5], 1.0, false, 2, DType::F32).unwrap();
        let g = lp.sum_all().unwrap().backward().unwrap();
        assert!(g.get(h.as_tensor()).is_some());
        assert!(g.get(&w).is_none());
        assert!(
            linear_logprob(h.as_tensor(), &w, &[0, 1, 2, 6], 1.0, false, 2, DType::F32).is_err()
        );
        assert!(linear_logprob(h.as_tensor(), &w, &[0, 1], 1.0, false, 2, DType::F32).is_err());
        assert!(linear_logprob(h.as_tensor(), &w, &[0; 4], 0.0, false, 2, DType::F32).is_err());
    }
}
