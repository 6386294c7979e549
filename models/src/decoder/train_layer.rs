//! One decoder layer of the training forward, shared by the padded-batch forward
//! ([`Transformer::token_logprobs`]) and the shared-prefix forward
//! ([`Transformer::group_token_logprobs`]): every op has a correct backward.
//!
//! A layer sees `b` rows of `t` own tokens at positions `pos0..pos0 + t`, optionally after a
//! shared prefix of `pos0` tokens whose post-RoPE keys and values `[1, kv, pos0, d]` (computed by
//! the same layer on the prefix) are put in front of every row's own keys and values. Query `i`
//! of row `r` then sees the whole prefix and its own keys `0..=i` within `lengths[r]`; padded
//! queries see every real key so no softmax row is empty. With `pos0 = 0` and no prefix this is
//! plain causal self-attention over a right-padded batch.

use crate::error::Result;
use crate::layers::{rms_norm, ForwardMode};
use crate::rope::{apply_rope_train, apply_rope_train_rows};
use candle_core::{Tensor, D};
use std::sync::Arc;

use super::{Layer, Transformer};

/// Shapes, positions, RoPE angles and mask of one training forward (the same for every layer).
pub(super) struct TrainCtx {
    b: usize,
    t: usize,
    /// Length of the shared prefix in front of the keys (0: none); also the first own position.
    pos0: usize,
    /// Per row: one past the last real key (`pos0 + own length`).
    key_lengths: Vec<usize>,
    /// Per row: the first real key (0 unless the prefix block is left-padded for this row).
    key_starts: Vec<usize>,
    /// Fused CPU kernels (f32/f64 on the CPU) or composed candle ops.
    fused: bool,
    /// Each row has its own positions (tables `[b, t, d/2]`) instead of `pos0..pos0 + t`.
    per_row: bool,
    cos: Tensor,
    sin: Tensor,
    cos_h: Arc<Vec<f64>>,
    sin_h: Arc<Vec<f64>>,
    /// Additive mask `[b, 1, 1, t, pos0 + t]` for the composed path.
    mask: Option<Tensor>,
    /// Packed rows (`[b × t]`): the first token of each position's own sequence.
    segment_starts: Option<Vec<usize>>,
}

impl Transformer {
    /// The context of a forward over `b` rows of `t` tokens at positions `pos0..pos0 + t`
    /// behind a shared prefix of `pos0` tokens (0: none).
    pub(super) fn train_ctx(
        &self,
        b: usize,
        t: usize,
        lengths: &[usize],
        pos0: usize,
    ) -> Result<TrainCtx> {
        self.train_ctx_window(b, t, lengths, pos0, &vec![0; b], None)
    }

    /// [`Self::train_ctx`] where row `r`'s keys before `starts[r]` are padding (a left-padded
    /// prefix block): its real keys are `starts[r]..pos0 + lengths[r]`, and a query before
    /// `starts[r]` is padding too. `row_positions` (`b × t`, row-major) gives every row its own
    /// RoPE positions instead of `pos0..pos0 + t`.
    pub(super) fn train_ctx_window(
        &self,
        b: usize,
        t: usize,
        lengths: &[usize],
        pos0: usize,
        starts: &[usize],
        row_positions: Option<&[usize]>,
    ) -> Result<TrainCtx> {
        let shared: Vec<usize>;
        let positions = match row_positions {
            Some(p) if p.len() == b * t => p,
            Some(p) => {
                return Err(crate::error::ModelError::Input(format!(
                    "{} positions for {b} rows of {t}",
                    p.len()
                )))
            }
            None => {
                shared = (pos0..pos0 + t).collect();
                &shared
            }
        };
        let per_row = row_positions.is_some();
        let (cos, sin) = self.rope.cos_sin(positions, self.dtype, &self.device)?;
        let (cos, sin) = if per_row {
            let half = self.cfg.head_dim / 2;
            (cos.reshape((b, t, half))?, sin.reshape((b, t, half))?)
        } else {
            (cos, sin)
        };
        let (cos_h, sin_h) = self.rope.angles(positions);
        let fused = crate::ops::supported(self.embed.get(false));
        let key_lengths: Vec<usize> = lengths.iter().map(|&l| pos0 + l).collect();
        let tk = pos0 + t;
        // Query i (key position pos0 + i) of row r sees key j iff j is real and j <= pos0 + i;
        // a padded query (i >= own length, or before the row's first real key) sees every real
        // key.
        let mask = if fused {
            None
        } else {
            let mut mask = vec![0f32; b * t * tk];
            for (r, (&len, &klen)) in lengths.iter().zip(&key_lengths).enumerate() {
                let start = starts[r];
                for i in 0..t {
                    let pad = i >= len || pos0 + i < start;
                    for j in 0..tk {
                        if !(j >= start && j < klen && (j <= pos0 + i || pad)) {
                            mask[(r * t + i) * tk + j] = f32::NEG_INFINITY;
                        }
                    }
                }
            }
            Some(Tensor::from_vec(mask, (b, 1, 1, t, tk), &self.device)?.to_dtype(self.dtype)?)
        };
        Ok(TrainCtx {
            b,
            t,
            pos0,
            key_lengths,
            key_starts: starts.to_vec(),
            fused,
            per_row,
            cos,
            sin,
            cos_h: Arc::new(cos_h),
            sin_h: Arc::new(sin_h),
            mask,
            segment_starts: None,
        })
    }

    /// The context of a forward over packed rows: row `r` holds several sequences back to back
    /// (`segments[r]`: their lengths, summing to the row's real length); every sequence restarts
    /// at position 0 and attends to itself only.
    pub(super) fn train_ctx_packed(
        &self,
        b: usize,
        t: usize,
        segments: &[Vec<usize>],
    ) -> Result<TrainCtx> {
        let mut positions = Vec::with_capacity(b * t);
        let mut seg_starts = Vec::with_capacity(b * t);
        let mut lengths = Vec::with_capacity(b);
        for segs in segments {
            let mut at = 0usize;
            for &len in segs {
                positions.extend(0..len);
                seg_starts.extend(std::iter::repeat_n(at, len));
                at += len;
            }
            if at > t || at == 0 {
                return Err(crate::error::ModelError::Input(format!(
                    "packed row of {at} tokens in a batch of width {t}"
                )));
            }
            positions.extend(std::iter::repeat_n(0, t - at));
            seg_starts.extend(std::iter::repeat_n(at, t - at));
            lengths.push(at);
        }
        let mut ctx = self.train_ctx_window(b, t, &lengths, 0, &vec![0; b], Some(&positions))?;
        if !ctx.fused {
            // Query i of row r sees keys seg_start(i)..=i; a padded query every real key.
            let mut mask = vec![0f32; b * t * t];
            for (r, &len) in lengths.iter().enumerate() {
                for i in 0..t {
                    let lo = if i < len { seg_starts[r * t + i] } else { 0 };
                    let hi = if i < len { i + 1 } else { len };
                    for j in 0..t {
                        if !(lo..hi).contains(&j) {
                            mask[(r * t + i) * t + j] = f32::NEG_INFINITY;
                        }
                    }
                }
            }
            ctx.mask =
                Some(Tensor::from_vec(mask, (b, 1, 1, t, t), &self.device)?.to_dtype(self.dtype)?);
        }
        ctx.segment_starts = Some(seg_starts);
        Ok(ctx)
    }

    /// One layer on `x` `[b·t, hidden]`. `prefix` holds the layer's post-RoPE keys and values of
    /// the shared prefix when `ctx.pos0 > 0`: `[1, kv, pos0, d]` each, shared by every row, or
    /// `[b, kv, pos0, d]`, one prefix per row (several groups in one call). Returns the layer's
    /// output and its own post-RoPE keys and values `[b, kv, t, d]`.
    pub(super) fn layer_train(
        &self,
        layer: &Layer,
        x: &Tensor,
        ctx: &TrainCtx,
        prefix: Option<(&Tensor, &Tensor)>,
        mode: ForwardMode,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let cfg = &self.cfg;
        let (b, t) = (ctx.b, ctx.t);
        let (nh, nkv, d) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let g = cfg.gqa_group();
        let scale = 1.0 / (d as f64).sqrt();
        let track_base = mode.track && self.base_trainable;
        let h = rms_norm(x, layer.input_norm.get(track_base), cfg.rms_norm_eps)?;
        let [q, k, v] = layer.qkv.forward::<3>(&h, mode)?;
        let q = q.reshape((b, t, nh, d))?;
        let k = k.reshape((b, t, nkv, d))?;
        let v = v.reshape((b, t, nkv, d))?;
        let (q, k) = match (&layer.q_norm, &layer.k_norm) {
            (Some(qn), Some(kn)) => (
                rms_norm(&q, qn.get(track_base), cfg.rms_norm_eps)?,
                rms_norm(&k, kn.get(track_base), cfg.rms_norm_eps)?,
            ),
            _ => (q, k),
        };
        let (q, k) = if ctx.fused {
            let rope = if ctx.per_row {
                crate::ops::rope_per_row
            } else {
                crate::ops::rope
            };
            (
                rope(&q.transpose(1, 2)?, ctx.cos_h.clone(), ctx.sin_h.clone(), t)?,
                rope(&k.transpose(1, 2)?, ctx.cos_h.clone(), ctx.sin_h.clone(), t)?,
            )
        } else if ctx.per_row {
            (
                apply_rope_train_rows(&q.transpose(1, 2)?.contiguous()?, &ctx.cos, &ctx.sin)?,
                apply_rope_train_rows(&k.transpose(1, 2)?.contiguous()?, &ctx.cos, &ctx.sin)?,
            )
        } else {
            (
                apply_rope_train(&q.transpose(1, 2)?.contiguous()?, &ctx.cos, &ctx.sin)?,
                apply_rope_train(&k.transpose(1, 2)?.contiguous()?, &ctx.cos, &ctx.sin)?,
            )
        };
        let v = v.transpose(1, 2)?.contiguous()?;
        // Keys and values the queries see: [prefix ; own], the prefix's tensors shared by every
        // row (broadcast, so their gradient is the sum over rows).
        let (k_all, v_all) = match prefix {
            Some((kp, vp)) if ctx.pos0 > 0 && kp.dim(0)? == b && b > 1 => (
                Tensor::cat(&[kp, &k], 2)?.contiguous()?,
                Tensor::cat(&[vp, &v], 2)?.contiguous()?,
            ),
            Some((kp, vp)) if ctx.pos0 > 0 => {
                let shape = (b, nkv, ctx.pos0, d);
                (
                    Tensor::cat(&[&kp.broadcast_as(shape)?, &k], 2)?.contiguous()?,
                    Tensor::cat(&[&vp.broadcast_as(shape)?, &v], 2)?.contiguous()?,
                )
            }
            _ => (k.clone(), v.clone()),
        };
        let tk = ctx.pos0 + t;
        // Group query heads by their kv head: [b, nkv, g·t, d].
        let q = q.reshape((b, nkv, g * t, d))?;
        let att = q.matmul(&k_all.t()?)?;
        let att = match (&ctx.mask, &ctx.segment_starts) {
            (None, Some(seg)) => crate::ops::masked_softmax_packed(
                &att.reshape((b, nkv, g, t, tk))?,
                seg,
                &ctx.key_lengths,
                scale,
            )?,
            (None, None) => crate::ops::masked_softmax_window(
                &att.reshape((b, nkv, g, t, tk))?,
                &ctx.key_starts,
                &ctx.key_lengths,
                scale,
                ctx.pos0,
            )?,
            (Some(mask), _) => candle_nn::ops::softmax(
                &(att * scale)?
                    .reshape((b, nkv, g, t, tk))?
                    .broadcast_add(mask)?,
                D::Minus1,
            )?,
        };
        let att = att.reshape((b, nkv, g * t, tk))?;
        let y = att
            .matmul(&v_all)?
            .reshape((b, nh, t, d))?
            .transpose(1, 2)?
            .reshape((b * t, nh * d))?;
        let x = (x + layer.o.forward(&y, mode)?)?;
        let h = rms_norm(&x, layer.post_norm.get(track_base), cfg.rms_norm_eps)?;
        let mlp = layer.swiglu(&h, mode)?;
        let x = (&x + layer.down.forward(&mlp, mode)?)?;
        Ok((x, k, v))
    }
}
