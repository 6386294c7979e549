//! Masked reductions over `[B × T]` completion tensors: sums, means, variance and whitening that
//! only see the positions where the mask is non-zero.
//!
//! Positions outside the mask may hold anything (padding, even NaN): values are selected with
//! `where_cond` before they are multiplied, so they contribute neither to the value nor to the
//! gradient. Every function keeps the input's dtype and is differentiable in `values`.

use candle_core::{DType, Tensor};

use crate::{MathError, Result};

/// `values` where `mask != 0`, else 0 (differentiable in `values`; NaN outside the mask is dropped).
pub fn select(values: &Tensor, mask: &Tensor) -> Result<Tensor> {
    if values.dims() != mask.dims() {
        return Err(MathError::Shape(format!(
            "values {:?} vs mask {:?}",
            values.dims(),
            mask.dims()
        )));
    }
    let keep = mask.ne(0.0)?;
    Ok(keep.where_cond(values, &values.zeros_like()?)?)
}

/// Σ values·mask over every element, as a rank-0 tensor.
pub fn masked_sum(values: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.to_dtype(values.dtype())?;
    Ok((select(values, &mask)? * &mask)?.sum_all()?)
}

/// Σ_t values·mask per row of a `[B × T]` tensor: `[B]`.
pub fn masked_row_sum(values: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.to_dtype(values.dtype())?;
    Ok((select(values, &mask)? * &mask)?.sum(1)?)
}

/// Σ values·mask / (Σ mask + 1e-8) over every element (verl's `masked_mean`), rank 0.
pub fn masked_mean(values: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let n = mask_total(mask)?;
    Ok((masked_sum(values, mask)? / (n + 1e-8))?)
}

/// Masked variance around the masked mean; `unbiased` applies Bessel's n/(n−1) with n = Σ mask.
pub fn masked_var(values: &Tensor, mask: &Tensor, unbiased: bool) -> Result<Tensor> {
    let mean = masked_mean(values, mask)?;
    let centered = values.broadcast_sub(&mean)?;
    let var = masked_mean(&centered.sqr()?, mask)?;
    if !unbiased {
        return Ok(var);
    }
    let n = mask_total(mask)?;
    if n <= 1.0 {
        return Err(MathError::InvalidInput(format!(
            "an unbiased masked variance needs at least two valid elements, the mask has {n}"
        )));
    }
    Ok((var * (n / (n - 1.0)))?)
}

/// verl's `masked_whiten`: (values − mean)·rsqrt(var + 1e-8) with the unbiased masked variance;
/// with `shift_mean = false` the mean is added back.
pub fn masked_whiten(values: &Tensor, mask: &Tensor, shift_mean: bool) -> Result<Tensor> {
    let mean = masked_mean(values, mask)?;
    let var = masked_var(values, mask, true)?;
    let scale = (var + 1e-8)?.sqrt()?.recip()?;
    let white = values.broadcast_sub(&mean)?.broadcast_mul(&scale)?;
    Ok(if shift_mean {
        white
    } else {
        white.broadcast_add(&mean)?
    })
}

/// Σ mask as an f64 on the host.
pub fn mask_total(mask: &Tensor) -> Result<f64> {
    Ok(mask.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?)
}

/// Σ_t mask per row of a `[B × T]` mask, as f64s on the host.
pub fn mask_row_counts(mask: &Tensor) -> Result<Vec<f64>> {
    Ok(mask.to_dtype(DType::F64)?.sum(1)?.to_vec1::<f64>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn nan_outside_the_mask_is_ignored() {
        let v = Tensor::new(&[[1.0f64, f64::NAN], [3.0, 5.0]], &Device::Cpu).unwrap();
        let m = Tensor::new(&[[1.0f64, 0.0], [1.0, 1.0]], &Device::Cpu).unwrap();
        let s = masked_sum(&v, &m).unwrap().to_scalar::<f64>().unwrap();
        assert_eq!(s, 9.0);
        let mean = masked_mean(&v, &m).unwrap().to_scalar::<f64>().unwrap();
        assert!((mean - 3.0).abs() < 1e-8);
        // unbiased variance of {1, 3, 5} is 4
        let var = masked_var(&v, &m, true)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((var - 4.0).abs() < 1e-6, "{var}");
        let rows = masked_row_sum(&v, &m).unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(rows, vec![1.0, 8.0]);
    }
}
