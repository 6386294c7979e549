//! The inference step: new tokens of many sequences (prefill chunks or single decode tokens,
//! each at its own position) appended to a paged [`KvCache`] through the fused kernels.

use crate::error::{ModelError, Result};
use crate::kv_cache::{KvCache, SeqCache};
use crate::layers::{rms_norm_fused, ForwardMode};
use crate::rope::apply_rope_infer;
use candle_core::{DType, IndexOp, Tensor};

use super::Transformer;

/// New tokens of one sequence for [`Transformer::step`]; they take positions
/// `cache.len() .. cache.len() + tokens.len()`.
#[derive(Debug)]
pub struct StepSeq<'a> {
    /// The sequence's cache (appended to).
    pub cache: &'a mut SeqCache,
    /// Tokens to append (at least one).
    pub tokens: &'a [u32],
}

/// Which logits [`Transformer::step`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepLogits {
    /// `[n_seqs, vocab]`: the logits after each sequence's last new token.
    Last,
    /// `[total new tokens, vocab]`: after every new token, sequences in order.
    All,
}

/// How a step turns each layer's q/k/v output into rotated queries and cached keys/values, with
/// the per-step tables it needs.
enum QkvEpilogue {
    /// `cache_write::rope_and_write` with host RoPE tables (f32, `d/2` per row).
    Fused { cos: Vec<f32>, sin: Vec<f32> },
    /// Candle ops: RoPE tables as tensors `[b, qmax, d/2]` and the scatter index of the slots.
    Ops {
        cos: Tensor,
        sin: Tensor,
        write_idx: Tensor,
    },
}

impl Transformer {
    // ----------------------------------------------------------------------------------------
    // Inference
    // ----------------------------------------------------------------------------------------

    /// Appends the new tokens of every sequence to the cache and returns their logits (f32).
    /// Sequences may have different lengths, positions and numbers of new tokens. On error the
    /// cache and the sequences are unchanged: lengths advance only on success, and the blocks
    /// reserved for the new tokens go back to the pool (what the failed step wrote lies past
    /// every sequence's length, where nothing reads it).
    pub fn step(
        &self,
        cache: &mut KvCache,
        seqs: &mut [StepSeq<'_>],
        want: StepLogits,
    ) -> Result<Tensor> {
        if seqs.is_empty() {
            return Err(ModelError::Input("step with no sequences".into()));
        }
        if let Some(s) = seqs.iter().find(|s| s.tokens.is_empty()) {
            return Err(ModelError::Input(format!(
                "sequence at position {} has no new tokens",
                s.cache.len()
            )));
        }
        for s in seqs.iter() {
            self.check_ids(s.tokens)?;
        }
        let needed: usize = seqs
            .iter()
            .map(|s| cache.blocks_needed(s.cache, s.tokens.len()))
            .sum();
        if needed > cache.free_blocks() {
            return Err(ModelError::CacheFull {
                needed,
                free: cache.free_blocks(),
            });
        }
        let held: Vec<usize> = seqs.iter().map(|s| s.cache.blocks().len()).collect();
        let result = seqs
            .iter_mut()
            .try_for_each(|s| cache.reserve(s.cache, s.tokens.len()))
            .and_then(|()| self.step_reserved(cache, seqs, want));
        if result.is_err() {
            for (s, &keep) in seqs.iter_mut().zip(&held) {
                cache.unreserve(s.cache, keep);
            }
        }
        result
    }

    /// [`Self::step`] once every sequence has room for its new tokens.
    fn step_reserved(
        &self,
        cache: &mut KvCache,
        seqs: &mut [StepSeq<'_>],
        want: StepLogits,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let b = seqs.len();
        let (nh, nkv, d) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let qmax = seqs.iter().map(|s| s.tokens.len()).max().unwrap_or(1);
        let lmax = seqs
            .iter()
            .map(|s| s.cache.len() + s.tokens.len())
            .max()
            .unwrap_or(1);
        // Host-side layout: padded tokens, positions, write slots, read slots, mask.
        let mut tokens = vec![0u32; b * qmax];
        let mut positions = vec![0usize; b * qmax];
        let mut write_slots = vec![0u32; b * qmax];
        let mut read_slots = vec![0u32; b * lmax];
        // f32 on the CPU: attention reads the pools in place (`paged_attention`) and needs only
        // how many context positions each query row sees; otherwise a padded mask.
        let in_place = self.dtype == DType::F32
            && self.device.is_cpu()
            && cfg.gqa_group() <= crate::paged_attention::MAX_GROUP;
        let mut limits = vec![0usize; b * qmax];
        let mut mask = if in_place {
            Vec::new()
        } else {
            vec![f32::NEG_INFINITY; b * qmax * lmax]
        };
        for (bi, s) in seqs.iter().enumerate() {
            let old = s.cache.len();
            let ctx = old + s.tokens.len();
            for (i, &tok) in s.tokens.iter().enumerate() {
                tokens[bi * qmax + i] = tok;
                positions[bi * qmax + i] = old + i;
                write_slots[bi * qmax + i] = cache.slot(s.cache, old + i);
            }
            for i in s.tokens.len()..qmax {
                positions[bi * qmax + i] = old;
            }
            for j in 0..ctx {
                read_slots[bi * lmax + j] = cache.slot(s.cache, j);
            }
            for i in 0..qmax {
                let limit = if i < s.tokens.len() { old + i + 1 } else { ctx };
                limits[bi * qmax + i] = limit;
                if !in_place {
                    let row = &mut mask[(bi * qmax + i) * lmax..(bi * qmax + i + 1) * lmax];
                    row[..limit].iter_mut().for_each(|m| *m = 0.0);
                }
            }
        }
        let dev = &self.device;
        // The fused q/k/v epilogue (RoPE + cache write, `cache_write`) where every layer can take
        // it: the in-place f32 path, no per-head norms, no adapter on q/k/v. Otherwise the ops.
        let fused_qkv = in_place && !cfg.qk_norm && self.layers.iter().all(|l| !l.qkv.has_lora());
        // The RoPE tables once per step, in the form the chosen epilogue reads.
        let epilogue = if fused_qkv {
            let (cos, sin) = self.rope.angles(&positions);
            QkvEpilogue::Fused {
                cos: cos.iter().map(|&c| c as f32).collect(),
                sin: sin.iter().map(|&s| s as f32).collect(),
            }
        } else {
            let (cos, sin) = self.rope.cos_sin(&positions, self.dtype, dev)?;
            QkvEpilogue::Ops {
                cos: cos.reshape((b, qmax, d / 2))?,
                sin: sin.reshape((b, qmax, d / 2))?,
                write_idx: Tensor::from_slice(&write_slots, (b * qmax, 1), dev)?
                    .broadcast_as((b * qmax, cfg.kv_dim()))?
                    .contiguous()?,
            }
        };
        let qkv_shape = crate::cache_write::QkvShape {
            batch: b,
            qmax,
            heads: nh,
            kv_heads: nkv,
            head_dim: d,
        };
        // What the gathered attention needs: the read slots as an index tensor and the mask.
        let gathered = if in_place {
            None
        } else {
            Some((
                Tensor::from_slice(&read_slots, b * lmax, dev)?,
                Tensor::from_vec(mask, (b, 1, 1, qmax, lmax), dev)?.to_dtype(self.dtype)?,
            ))
        };
        let att_shape = crate::paged_attention::AttentionShape {
            batch: b,
            qmax,
            lmax,
            heads: nh,
            kv_heads: nkv,
            head_dim: d,
        };
        let scale = 1.0 / (d as f64).sqrt();
        let mode = ForwardMode::INFER;
        let mut x = self.embed_tokens(&tokens, false)?;
        for (li, layer) in self.layers.iter().enumerate() {
            let h = rms_norm_fused(&x, layer.input_norm.get(false), cfg.rms_norm_eps)?;
            let (kpool, vpool) = cache.layer(li);
            let q = match &epilogue {
                QkvEpilogue::Fused { cos, sin } => crate::cache_write::rope_and_write(
                    &layer.qkv.forward_packed(&h, mode)?,
                    kpool,
                    vpool,
                    &write_slots,
                    cos,
                    sin,
                    qkv_shape,
                )?,
                QkvEpilogue::Ops {
                    cos,
                    sin,
                    write_idx,
                } => {
                    self.qkv_unfused(layer, &h, (kpool, vpool), (cos, sin, write_idx), qkv_shape)?
                }
            };
            let y = match &gathered {
                None => crate::paged_attention::paged_attention(
                    &q,
                    kpool,
                    vpool,
                    &read_slots,
                    &limits,
                    att_shape,
                    scale as f32,
                )?,
                Some((read_idx, mask)) => {
                    self.gathered_attention(&q, kpool, vpool, read_idx, mask, att_shape, scale)?
                }
            };
            x = (x + layer.o.forward(&y, mode)?)?;
            let h = rms_norm_fused(&x, layer.post_norm.get(false), cfg.rms_norm_eps)?;
            let mlp = layer.swiglu(&h, mode)?;
            x = (x + layer.down.forward(&mlp, mode)?)?;
        }
        self.step_logits(seqs, x, want, qmax)
    }

    /// The q/k/v epilogue with candle ops (any dtype or device, Qwen3's per-head norms, LoRA on
    /// q/k/v): split, norm, RoPE, keys and values scattered into the pools. Returns the rotated
    /// queries `[b, heads, qmax, d]`.
    fn qkv_unfused(
        &self,
        layer: &super::Layer,
        h: &Tensor,
        (kpool, vpool): (&Tensor, &Tensor),
        (cos, sin, write_idx): (&Tensor, &Tensor, &Tensor),
        shape: crate::cache_write::QkvShape,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (b, qmax, nh, nkv, d) = (
            shape.batch,
            shape.qmax,
            shape.heads,
            shape.kv_heads,
            shape.head_dim,
        );
        let [q, k, v] = layer.qkv.forward::<3>(h, ForwardMode::INFER)?;
        let q = q.reshape((b, qmax, nh, d))?;
        let k = k.reshape((b, qmax, nkv, d))?;
        let (q, k) = match (&layer.q_norm, &layer.k_norm) {
            (Some(qn), Some(kn)) => (
                rms_norm_fused(&q, qn.get(false), cfg.rms_norm_eps)?,
                rms_norm_fused(&k, kn.get(false), cfg.rms_norm_eps)?,
            ),
            _ => (q, k),
        };
        let q = apply_rope_infer(&q.transpose(1, 2)?, cos, sin)?;
        let k = apply_rope_infer(&k.transpose(1, 2)?, cos, sin)?;
        let k_rows = k
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * qmax, cfg.kv_dim()))?;
        kpool.scatter_set(write_idx, &k_rows, 0)?;
        vpool.scatter_set(write_idx, &v.contiguous()?, 0)?;
        Ok(q)
    }

    /// The general attention of the inference step: gathers every sequence's context from the
    /// pools into a padded copy, then `softmax(scale · q Kᵀ + mask) V`.
    #[allow(clippy::too_many_arguments)]
    fn gathered_attention(
        &self,
        q: &Tensor,
        kpool: &Tensor,
        vpool: &Tensor,
        read_idx: &Tensor,
        mask: &Tensor,
        shape: crate::paged_attention::AttentionShape,
        scale: f64,
    ) -> Result<Tensor> {
        let crate::paged_attention::AttentionShape {
            batch: b,
            qmax,
            lmax,
            heads: nh,
            kv_heads: nkv,
            head_dim: d,
        } = shape;
        let g = nh / nkv;
        {
            let keys = kpool
                .index_select(read_idx, 0)?
                .reshape((b, lmax, nkv, d))?
                .transpose(1, 2)?
                .contiguous()?;
            let vals = vpool
                .index_select(read_idx, 0)?
                .reshape((b, lmax, nkv, d))?
                .transpose(1, 2)?
                .contiguous()?;
            let q = q.reshape((b, nkv, g * qmax, d))?;
            let att = (q.matmul(&keys.t()?)? * scale)?;
            let att = att.reshape((b, nkv, g, qmax, lmax))?.broadcast_add(mask)?;
            let att = candle_nn::ops::softmax_last_dim(&att)?.reshape((b, nkv, g * qmax, lmax))?;
            Ok(att
                .matmul(&vals)?
                .reshape((b, nh, qmax, d))?
                .transpose(1, 2)?
                .reshape((b * qmax, nh * d))?)
        }
    }

    /// The step's logits (last or every new token) from the final hidden states, and the
    /// sequences' lengths advanced.
    fn step_logits(
        &self,
        seqs: &mut [StepSeq<'_>],
        x: Tensor,
        want: StepLogits,
        qmax: usize,
    ) -> Result<Tensor> {
        let b = seqs.len();
        let mode = ForwardMode::INFER;
        let rows: Vec<u32> = match want {
            StepLogits::Last => seqs
                .iter()
                .enumerate()
                .map(|(bi, s)| (bi * qmax + s.tokens.len() - 1) as u32)
                .collect(),
            StepLogits::All => seqs
                .iter()
                .enumerate()
                .flat_map(|(bi, s)| (0..s.tokens.len()).map(move |i| (bi * qmax + i) as u32))
                .collect(),
        };
        let x = if rows.len() == b * qmax {
            x
        } else {
            let n = rows.len();
            x.index_select(&Tensor::from_vec(rows, n, &self.device)?, 0)?
        };
        let x = rms_norm_fused(&x, self.norm.get(false), self.cfg.rms_norm_eps)?;
        let logits = self.lm_logits(&x, mode)?.to_dtype(DType::F32)?;
        for s in seqs.iter_mut() {
            let len = s.cache.len() + s.tokens.len();
            KvCache::set_len(s.cache, len);
        }
        Ok(logits)
    }

    /// Logits `[len, vocab]` of one token sequence through the inference path with a scratch
    /// cache (used by `oxrl logprobs` and tests).
    pub fn score_tokens(&self, ids: &[u32]) -> Result<Tensor> {
        if ids.is_empty() {
            return Err(ModelError::Input("no tokens to score".into()));
        }
        let mut cache = KvCache::new(
            &self.cfg,
            crate::kv_cache::CacheConfig::for_tokens(ids.len()),
            self.dtype,
            &self.device,
        )?;
        let mut seq = cache.new_sequence();
        let out = self.step(
            &mut cache,
            &mut [StepSeq {
                cache: &mut seq,
                tokens: ids,
            }],
            StepLogits::All,
        )?;
        let _ = out.i(0)?; // shape check: at least one row
        Ok(out)
    }
}
