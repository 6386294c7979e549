//! The inference step's q/k/v epilogue in three passes over the packed q/k/v output (f32 on the
//! CPU): RoPE on the query heads into the `[b, heads, qmax, d]` layout the paged attention reads,
//! and RoPE on the key heads and the value rows written straight into the KV pools at their slots.
//!
//! Unfused, the same work is ten candle ops per layer (two reshapes of strided views, two
//! transposes, two RoPE kernels, a transpose back, a contiguous copy of v, two `scatter_set`s
//! with an index tensor built per step). This module takes the host-side RoPE angles and write
//! slots as slices, so nothing is allocated per layer but the query output.
//!
//! Rounding is candle's RoPE kernel's (`x1·cos − x2·sin`, `x1·sin + x2·cos` in f32, HF
//! rotate-half layout), with the same f32 angles, so the step's values do not move.

use crate::xwt::contiguous_f32;
use candle_core::{CpuStorage, InplaceOp2, Layout, Tensor};

/// The shapes of one call: `rows = batch · qmax` rows of `(heads + 2·kv_heads) · head_dim`.
#[derive(Debug, Clone, Copy)]
pub struct QkvShape {
    /// Sequences in the step.
    pub batch: usize,
    /// Query rows per sequence (padded).
    pub qmax: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl QkvShape {
    fn rows(&self) -> usize {
        self.batch * self.qmax
    }
    fn width(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }
    fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

/// HF rotate-half RoPE of one head `src` into `dst` with this row's `cos`/`sin` (`d/2` each).
#[inline(always)]
fn rope_head(src: &[f32], dst: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    for i in 0..half {
        let (x1, x2) = (src[i], src[i + half]);
        dst[i] = x1 * cos[i] - x2 * sin[i];
        dst[i + half] = x1 * sin[i] + x2 * cos[i];
    }
}

/// What [`PoolWrite`] writes into a pool row: the rotated key heads or the value heads.
#[derive(Clone, Copy)]
enum Rows {
    Keys,
    Values,
}

struct PoolWrite<'a> {
    rows: Rows,
    shape: QkvShape,
    slots: &'a [u32],
    cos: &'a [f32],
    sin: &'a [f32],
}

impl InplaceOp2 for PoolWrite<'_> {
    fn name(&self) -> &'static str {
        "oxrl-rope-cache-write"
    }

    fn cpu_fwd(
        &self,
        pool: &mut CpuStorage,
        pool_layout: &Layout,
        qkv: &CpuStorage,
        qkv_layout: &Layout,
    ) -> candle_core::Result<()> {
        let s = self.shape;
        let (kv_dim, width, d) = (s.kv_dim(), s.width(), s.head_dim);
        let (CpuStorage::F32(pool), CpuStorage::F32(src)) = (pool, qkv) else {
            candle_core::bail!("rope cache write: f32 tensors only");
        };
        let Some((p0, p1)) = pool_layout.contiguous_offsets() else {
            candle_core::bail!("rope cache write: the pool is not contiguous");
        };
        let Some((q0, q1)) = qkv_layout.contiguous_offsets() else {
            candle_core::bail!("rope cache write: q/k/v is not contiguous");
        };
        let (pool, src) = (&mut pool[p0..p1], &src[q0..q1]);
        let col = match self.rows {
            Rows::Keys => s.heads * d,
            Rows::Values => (s.heads + s.kv_heads) * d,
        };
        let half = d / 2;
        for (r, &slot) in self.slots.iter().enumerate() {
            let base = slot as usize * kv_dim;
            let Some(dst) = pool.get_mut(base..base + kv_dim) else {
                candle_core::bail!("rope cache write: slot {slot} is outside the pool");
            };
            let row = &src[r * width + col..r * width + col + kv_dim];
            match self.rows {
                Rows::Values => dst.copy_from_slice(row),
                Rows::Keys => {
                    let (cos, sin) = (
                        &self.cos[r * half..(r + 1) * half],
                        &self.sin[r * half..(r + 1) * half],
                    );
                    for (h, dh) in dst.chunks_exact_mut(d).enumerate() {
                        rope_head(&row[h * d..(h + 1) * d], dh, cos, sin);
                    }
                }
            }
        }
        Ok(())
    }
}

/// From the packed `qkv` `[batch·qmax, (heads + 2·kv_heads)·d]` of one layer: writes each row's
/// rotated keys and its values into `kpool` / `vpool` (`[slots, kv_heads·d]`) at
/// `write_slots[row]`, and returns the rotated queries `[batch, heads, qmax, d]`. `cos` / `sin`
/// are the rows' RoPE tables (`d/2` per row, f32).
pub fn rope_and_write(
    qkv: &Tensor,
    kpool: &Tensor,
    vpool: &Tensor,
    write_slots: &[u32],
    cos: &[f32],
    sin: &[f32],
    shape: QkvShape,
) -> candle_core::Result<Tensor> {
    let (rows, width, d) = (shape.rows(), shape.width(), shape.head_dim);
    let half = d / 2;
    if qkv.dims() != [rows, width] {
        candle_core::bail!(
            "rope cache write: q/k/v is {:?}, expected [{rows}, {width}]",
            qkv.dims()
        );
    }
    if write_slots.len() != rows || cos.len() != rows * half || sin.len() != rows * half {
        candle_core::bail!("rope cache write: slot or angle tables do not match {rows} rows");
    }
    let qkv = qkv.contiguous()?;
    let mut q = vec![0f32; rows * shape.heads * d];
    {
        let (storage, layout) = qkv.storage_and_layout();
        let src = contiguous_f32(&storage, layout, "rope cache write: q/k/v")?;
        for bi in 0..shape.batch {
            for i in 0..shape.qmax {
                let r = bi * shape.qmax + i;
                let (c, s) = (
                    &cos[r * half..(r + 1) * half],
                    &sin[r * half..(r + 1) * half],
                );
                for h in 0..shape.heads {
                    let at = ((bi * shape.heads + h) * shape.qmax + i) * d;
                    let from = r * width + h * d;
                    rope_head(&src[from..from + d], &mut q[at..at + d], c, s);
                }
            }
        }
    }
    for rows in [Rows::Keys, Rows::Values] {
        let op = PoolWrite {
            rows,
            shape,
            slots: write_slots,
            cos,
            sin,
        };
        let pool = match rows {
            Rows::Keys => kpool,
            Rows::Values => vpool,
        };
        pool.inplace_op2(&qkv, &op)?;
    }
    Tensor::from_vec(q, (shape.batch, shape.heads, shape.qmax, d), qkv.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// Against the unfused ops of the step: reshape, transpose, candle's RoPE, `scatter_set`.
    #[test]
    fn equals_the_unfused_ops_bit_for_bit() {
        let shape = QkvShape {
            batch: 2,
            qmax: 3,
            heads: 4,
            kv_heads: 2,
            head_dim: 8,
        };
        let (rows, width, kv, d) = (6, shape.width(), shape.kv_dim(), 8);
        let dev = &Device::Cpu;
        let vals: Vec<f32> = (0..rows * width)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        let qkv = Tensor::from_vec(vals, (rows, width), dev).unwrap();
        let angles: Vec<f32> = (0..rows * d / 2).map(|i| i as f32 * 0.37).collect();
        let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
        let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
        let slots = [7u32, 2, 9, 0, 4, 11];
        let pools = || {
            (
                Tensor::zeros((12, kv), DType::F32, dev).unwrap(),
                Tensor::zeros((12, kv), DType::F32, dev).unwrap(),
            )
        };
        let (kp, vp) = pools();
        let q = rope_and_write(&qkv, &kp, &vp, &slots, &cos, &sin, shape).unwrap();
        // The unfused reference.
        let (kr, vr) = pools();
        let ct = Tensor::from_slice(&cos, (2, 3, d / 2), dev).unwrap();
        let st = Tensor::from_slice(&sin, (2, 3, d / 2), dev).unwrap();
        let part = |o: usize, n: usize, heads: usize| {
            qkv.narrow(1, o, n)
                .unwrap()
                .reshape((2, 3, heads, d))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let qr = candle_nn::rotary_emb::rope(&part(0, 32, 4), &ct, &st).unwrap();
        let k = candle_nn::rotary_emb::rope(&part(32, kv, 2), &ct, &st).unwrap();
        let k_rows = k
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((rows, kv))
            .unwrap();
        let v_rows = qkv.narrow(1, 32 + kv, kv).unwrap().contiguous().unwrap();
        let idx = Tensor::from_slice(&slots, (rows, 1), dev)
            .unwrap()
            .broadcast_as((rows, kv))
            .unwrap()
            .contiguous()
            .unwrap();
        kr.scatter_set(&idx, &k_rows, 0).unwrap();
        vr.scatter_set(&idx, &v_rows, 0).unwrap();
        let bits = |t: &Tensor| -> Vec<u32> {
            t.flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        assert_eq!(bits(&q), bits(&qr));
        assert_eq!(bits(&kp), bits(&kr));
        assert_eq!(bits(&vp), bits(&vr));
        // A slot past the pool is an error, not a write out of bounds.
        let bad = [7u32, 2, 9, 0, 4, 12];
        assert!(rope_and_write(&qkv, &kp, &vp, &bad, &cos, &sin, shape).is_err());
    }
}
