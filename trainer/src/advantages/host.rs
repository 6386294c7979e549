//! Moving advantage inputs to the host as f64 and results back as tensors of the caller's dtype
//! and device. Advantages are not differentiated, so every estimator computes in f64 on the host
//! and returns a tensor shaped and typed like its input.

use candle_core::{DType, Tensor};

use crate::{MathError, Result};

/// The elements of a rank-1 tensor as f64s; errors on NaN or infinity (`what` names the input).
pub(crate) fn vec1(t: &Tensor, what: &str) -> Result<Vec<f64>> {
    if t.rank() != 1 {
        return Err(MathError::Shape(format!(
            "{what}: expected one dimension, got shape {:?}",
            t.dims()
        )));
    }
    let v = t.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    check_finite(&v, what)?;
    Ok(v)
}

/// The rows of a rank-2 `[B × T]` tensor as f64s; errors on NaN or infinity.
pub(crate) fn vec2(t: &Tensor, what: &str) -> Result<Vec<Vec<f64>>> {
    if t.rank() != 2 {
        return Err(MathError::Shape(format!(
            "{what}: expected two dimensions [B × T], got shape {:?}",
            t.dims()
        )));
    }
    let v = t.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    for row in &v {
        check_finite(row, what)?;
    }
    Ok(v)
}

/// A `[B × T]` tensor's rows, checked to have the shape of `like`.
pub(crate) fn vec2_like(t: &Tensor, like: &Tensor, what: &str) -> Result<Vec<Vec<f64>>> {
    if t.dims() != like.dims() {
        return Err(MathError::Shape(format!(
            "{what}: expected shape {:?}, got {:?}",
            like.dims(),
            t.dims()
        )));
    }
    vec2(t, what)
}

fn check_finite(v: &[f64], what: &str) -> Result<()> {
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(MathError::InvalidInput(format!(
            "{what}: element {i} is not finite ({})",
            v[i]
        )));
    }
    Ok(())
}

/// A rank-1 tensor holding `v`, in the dtype and on the device of `like`.
pub(crate) fn tensor1(v: Vec<f64>, like: &Tensor) -> Result<Tensor> {
    let n = v.len();
    Ok(Tensor::from_vec(v, n, like.device())?.to_dtype(like.dtype())?)
}

/// A rank-2 tensor holding `rows` (all of one length), in the dtype and on the device of `like`.
pub(crate) fn tensor2(rows: Vec<Vec<f64>>, like: &Tensor) -> Result<Tensor> {
    let b = rows.len();
    let t = rows.first().map_or(0, Vec::len);
    let flat: Vec<f64> = rows.into_iter().flatten().collect();
    Ok(Tensor::from_vec(flat, (b, t), like.device())?.to_dtype(like.dtype())?)
}

/// Checks that `groups` has one id per row.
pub(crate) fn check_groups(groups: &[usize], n: usize) -> Result<()> {
    if groups.len() != n {
        return Err(MathError::Shape(format!(
            "{} group ids for {n} rows",
            groups.len()
        )));
    }
    Ok(())
}

/// The inputs of every outcome estimator: each row's score (Σ_t of its token-level rewards),
/// the response mask as rows, after checking the mask's shape and one group id per row.
pub(crate) fn outcome_scores(
    token_level_rewards: &Tensor,
    response_mask: &Tensor,
    groups: &[usize],
) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    let rewards = vec2(token_level_rewards, "token_level_rewards")?;
    let mask = vec2_like(response_mask, token_level_rewards, "response_mask")?;
    check_groups(groups, rewards.len())?;
    Ok((row_sums(&rewards), mask))
}

/// Row indices per group, groups in order of first appearance.
pub(crate) fn members(groups: &[usize]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = Vec::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (i, &g) in groups.iter().enumerate() {
        match order.iter().position(|&x| x == g) {
            Some(k) => out[k].push(i),
            None => {
                order.push(g);
                out.push(vec![i]);
            }
        }
    }
    out
}

/// Mean of the selected values.
pub(crate) fn mean_of(v: &[f64], idx: &[usize]) -> f64 {
    idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len() as f64
}

/// Standard deviation of the selected values around `mean`; `unbiased` divides by n − 1.
/// Returns 0 for a single value (the callers decide what a singleton means).
pub(crate) fn std_of(v: &[f64], idx: &[usize], mean: f64, unbiased: bool) -> f64 {
    let n = idx.len();
    if n < 2 {
        return 0.0;
    }
    let ss: f64 = idx.iter().map(|&i| (v[i] - mean).powi(2)).sum();
    let d = if unbiased { n - 1 } else { n } as f64;
    (ss / d).sqrt()
}

/// Σ_t of each row (verl's `token_level_rewards.sum(-1)`: every position, masked or not).
pub(crate) fn row_sums(rows: &[Vec<f64>]) -> Vec<f64> {
    rows.iter().map(|r| r.iter().sum()).collect()
}

/// Each row's scalar broadcast over the row's tokens and multiplied by the mask.
pub(crate) fn broadcast_masked(scalars: &[f64], mask: &[Vec<f64>]) -> Vec<Vec<f64>> {
    scalars
        .iter()
        .zip(mask)
        .map(|(s, m)| m.iter().map(|mt| s * mt).collect())
        .collect()
}

/// Reward-to-go Σ_{t' ≥ t} r_{t'}·m_{t'} per row (verl's flip-cumsum-flip of `rewards · mask`).
pub(crate) fn reward_to_go(rewards: &[Vec<f64>], mask: &[Vec<f64>]) -> Vec<Vec<f64>> {
    rewards
        .iter()
        .zip(mask)
        .map(|(r, m)| {
            let mut out = vec![0.0; r.len()];
            let mut acc = 0.0;
            for t in (0..r.len()).rev() {
                acc += r[t] * m[t];
                out[t] = acc;
            }
            out
        })
        .collect()
}

/// verl's `masked_whiten` (unbiased variance, +1e-8) on host rows, through [`crate::masked`].
pub(crate) fn whiten(values: &[Vec<f64>], mask: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
    let v = tensor2_f64(values)?;
    let m = tensor2_f64(mask)?;
    Ok(crate::masked::masked_whiten(&v, &m, true)?.to_vec2::<f64>()?)
}

fn tensor2_f64(rows: &[Vec<f64>]) -> Result<Tensor> {
    let b = rows.len();
    let t = rows.first().map_or(0, Vec::len);
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(flat, (b, t), &candle_core::Device::Cpu)?)
}
