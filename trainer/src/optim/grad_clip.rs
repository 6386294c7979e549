//! Global gradient-norm clipping, as `torch.nn.utils.clip_grad_norm_` (L2, `error_if_nonfinite`
//! turned into a typed error).
//!
//! The total norm is `sqrt(Σ_params Σ g²)` over every variable that has a gradient (variables
//! without one are skipped, as torch skips `grad is None`). Each per-tensor sum of squares is
//! taken on the device in the gradient's dtype widened to at least f32, and the total in f64 on
//! the host (one transfer per dtype). If `norm` is finite, every gradient is multiplied by
//! `min(1, max_norm / (norm + 1e-6))` (only when that is below 1: multiplying by 1 is a no-op).
//! bf16/f16 gradients are scaled in f32 and rounded back.
//!
//! A NaN or infinite norm returns [`OptimError::NonFiniteGradNorm`] and leaves the gradients as
//! they were: the training loop should skip the optimizer step (torch's default would instead
//! scale every gradient by NaN and poison the weights).

use candle_core::{backprop::GradStore, DType, Tensor, Var};

use super::error::{OptimError, Result};

/// torch's `clip_grad_norm_` adds this to the norm before dividing.
pub const CLIP_EPS: f64 = 1e-6;

fn widened(dtype: DType) -> DType {
    if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// The total L2 norm of the gradients of `vars` (those without a gradient are skipped).
pub fn grad_norm<'a, I>(vars: I, grads: &GradStore) -> Result<f64>
where
    I: IntoIterator<Item = &'a Var>,
{
    let mut f32_sums = Vec::new();
    let mut f64_sums = Vec::new();
    for var in vars {
        let Some(g) = grads.get(var.as_tensor()) else {
            continue;
        };
        let wide = widened(g.dtype());
        let s = g.detach().to_dtype(wide)?.sqr()?.sum_all()?;
        if wide == DType::F64 {
            f64_sums.push(s);
        } else {
            f32_sums.push(s);
        }
    }
    let mut total = 0.0f64;
    if !f32_sums.is_empty() {
        let v: Vec<f32> = Tensor::stack(&f32_sums, 0)?.to_vec1()?;
        total += v.iter().map(|&x| x as f64).sum::<f64>();
    }
    if !f64_sums.is_empty() {
        let v: Vec<f64> = Tensor::stack(&f64_sums, 0)?.to_vec1()?;
        total += v.iter().sum::<f64>();
    }
    Ok(total.sqrt())
}

/// Clips the gradients of `vars` in `grads` to a total L2 norm of `max_norm` and returns the
/// pre-clip norm (for metrics). A non-finite norm is [`OptimError::NonFiniteGradNorm`].
pub fn clip_grad_norm<'a, I>(vars: I, grads: &mut GradStore, max_norm: f64) -> Result<f64>
where
    I: IntoIterator<Item = &'a Var>,
{
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(OptimError::Config(format!(
            "max_norm must be finite and > 0, got {max_norm}"
        )));
    }
    let vars: Vec<&Var> = vars.into_iter().collect();
    let norm = grad_norm(vars.iter().copied(), grads)?;
    if !norm.is_finite() {
        return Err(OptimError::NonFiniteGradNorm { norm });
    }
    let coef = max_norm / (norm + CLIP_EPS);
    if coef < 1.0 {
        for var in vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let dtype = g.dtype();
            let scaled = match dtype {
                DType::F32 | DType::F64 => g.detach().affine(coef, 0.0)?,
                _ => g
                    .detach()
                    .to_dtype(DType::F32)?
                    .affine(coef, 0.0)?
                    .to_dtype(dtype)?,
            };
            grads.insert(var.as_tensor(), scaled);
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn store(vars: &[&Var], grads: &[&[f32]]) -> GradStore {
        let mut s = GradStore::default();
        for (v, g) in vars.iter().zip(grads) {
            s.insert(v.as_tensor(), Tensor::new(*g, &Device::Cpu).unwrap());
        }
        s
    }

    #[test]
    fn clips_to_max_norm() {
        let a = Var::zeros(2, DType::F32, &Device::Cpu).unwrap();
        let b = Var::zeros(1, DType::F32, &Device::Cpu).unwrap();
        let mut g = store(&[&a, &b], &[&[3.0, 0.0], &[4.0]]);
        let n = clip_grad_norm([&a, &b], &mut g, 1.0).unwrap();
        assert_eq!(n, 5.0);
        let c = 1.0 / (5.0 + 1e-6);
        let ga: Vec<f32> = g.get(a.as_tensor()).unwrap().to_vec1().unwrap();
        let gb: Vec<f32> = g.get(b.as_tensor()).unwrap().to_vec1().unwrap();
        assert_eq!(ga, vec![(3.0 * c) as f32, 0.0]);
        assert_eq!(gb, vec![(4.0 * c) as f32]);
    }

    #[test]
    fn below_max_norm_untouched_and_missing_skipped() {
        let a = Var::zeros(2, DType::F32, &Device::Cpu).unwrap();
        let b = Var::zeros(1, DType::F32, &Device::Cpu).unwrap();
        let mut g = store(&[&a], &[&[0.3, 0.4]]);
        let n = clip_grad_norm([&a, &b], &mut g, 1.0).unwrap();
        assert!((n - 0.5).abs() < 1e-7);
        let ga: Vec<f32> = g.get(a.as_tensor()).unwrap().to_vec1().unwrap();
        assert_eq!(ga, vec![0.3, 0.4]);
        assert!(g.get(b.as_tensor()).is_none());
    }

    #[test]
    fn non_finite_is_an_error() {
        let a = Var::zeros(2, DType::F32, &Device::Cpu).unwrap();
        let mut g = store(&[&a], &[&[f32::NAN, 1.0]]);
        let err = clip_grad_norm([&a], &mut g, 1.0).unwrap_err();
        assert!(matches!(err, OptimError::NonFiniteGradNorm { norm } if norm.is_nan()));
        let ga: Vec<f32> = g.get(a.as_tensor()).unwrap().to_vec1().unwrap();
        assert!(ga[0].is_nan() && ga[1] == 1.0);
        let mut g = store(&[&a], &[&[f32::INFINITY, 1.0]]);
        assert!(matches!(
            clip_grad_norm([&a], &mut g, 1.0),
            Err(OptimError::NonFiniteGradNorm { .. })
        ));
        assert!(clip_grad_norm([&a], &mut g, 0.0).is_err());
    }
}
