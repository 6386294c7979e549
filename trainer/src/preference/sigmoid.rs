//! Numerically stable log σ(x) and σ(x) built from differentiable candle ops only (candle's fused
//! sigmoid has no backward on every backend), for any float dtype.

use candle_core::Tensor;

use crate::Result;

/// log σ(x) = −log(1 + e^{−|x|}) + [x < 0]·x: finite for every finite x, gradient σ(−x) — also
/// at x = 0 (where every pair sits on the first DPO step, policy = reference), which an
/// elementwise `minimum(x, 0)` would get wrong by giving the tie's gradient to both sides.
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let zeros = x.zeros_like()?;
    let negative = x.lt(0.0)?;
    let abs = negative.where_cond(&x.neg()?, x)?;
    let soft = (abs.neg()?.exp()? + 1.0)?.log()?;
    Ok((negative.where_cond(x, &zeros)? - soft)?)
}

/// σ(x) = exp(log σ(x)).
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok(log_sigmoid(x)?.exp()?)
}

/// max(x, 0) with gradient 0 at x = 0 (PyTorch's `relu` convention).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    let pos = x.gt(0.0)?;
    Ok(pos.where_cond(x, &x.zeros_like()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn log_sigmoid_values_and_gradient() {
        let xs = [-40.0f64, -2.0, 0.0, 0.5, 30.0];
        let v = Var::new(&xs, &Device::Cpu).unwrap();
        let y = log_sigmoid(v.as_tensor()).unwrap();
        let got = y.to_vec1::<f64>().unwrap();
        for (x, g) in xs.iter().zip(&got) {
            let want = -(-x).exp().ln_1p();
            assert!(
                (g - want).abs() <= 1e-12 * want.abs() + 1e-15,
                "{x}: {g} vs {want}"
            );
        }
        let grads = y.sum_all().unwrap().backward().unwrap();
        let d = grads.get(&v).unwrap().to_vec1::<f64>().unwrap();
        for (x, g) in xs.iter().zip(&d) {
            let want = 1.0 / (1.0 + x.exp());
            assert!((g - want).abs() <= 1e-12, "{x}: {g} vs {want}");
        }
    }
}
