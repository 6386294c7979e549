//! The paged KV cache used by the inference path.
//!
//! Keys and values of every layer live in two pools of `num_blocks × block_size` slots
//! (`[slots, kv_heads·head_dim]`). A sequence owns a block table ([`SeqCache`]) mapping its
//! positions to slots. Blocks carry reference counts: [`KvCache::fork`] shares every *full* block
//! of a sequence with the child and copies only the partially filled last block, so the `n`
//! samples of a group read one prefill of their prompt. Full blocks are never written again, so
//! shared blocks need no copy-on-write beyond the fork. Block 0 is reserved as a scratch block:
//! padding tokens of a batch write there and padded key positions read from it (masked out).

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use candle_core::{DType, Device, Tensor};

/// Size of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Tokens per block.
    pub block_size: usize,
    /// Blocks in the pool (one is reserved as scratch).
    pub num_blocks: usize,
}

impl CacheConfig {
    /// A cache able to hold `tokens` tokens (plus the scratch block) in blocks of 16.
    pub fn for_tokens(tokens: usize) -> Self {
        Self {
            block_size: 16,
            num_blocks: tokens.div_ceil(16) + 1,
        }
    }

    /// Bytes used per token across all layers (keys and values).
    pub fn bytes_per_token(cfg: &ModelConfig, dtype: DType) -> usize {
        2 * cfg.num_hidden_layers * cfg.kv_dim() * dtype.size_in_bytes()
    }
}

/// One sequence's view of the cache: its block table and how many tokens are stored.
#[derive(Debug)]
pub struct SeqCache {
    blocks: Vec<u32>,
    len: usize,
}

impl SeqCache {
    /// Tokens stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is stored yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The block ids, in position order.
    pub fn blocks(&self) -> &[u32] {
        &self.blocks
    }
}

/// K/V pools of every layer plus the block allocator.
#[derive(Debug)]
pub struct KvCache {
    cfg: CacheConfig,
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    refcount: Vec<u32>,
    free: Vec<u32>,
}

impl KvCache {
    /// Allocates pools for `model` in `dtype` on `device`.
    pub fn new(
        model: &ModelConfig,
        cfg: CacheConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if cfg.block_size == 0 || cfg.num_blocks < 2 {
            return Err(ModelError::Input(format!(
                "cache needs block_size > 0 and at least 2 blocks, got {cfg:?}"
            )));
        }
        let slots = cfg.num_blocks * cfg.block_size;
        let mut keys = Vec::with_capacity(model.num_hidden_layers);
        let mut values = Vec::with_capacity(model.num_hidden_layers);
        for _ in 0..model.num_hidden_layers {
            keys.push(Tensor::zeros((slots, model.kv_dim()), dtype, device)?);
            values.push(Tensor::zeros((slots, model.kv_dim()), dtype, device)?);
        }
        let mut refcount = vec![0; cfg.num_blocks];
        refcount[0] = 1; // scratch block, never freed
        let free = (1..cfg.num_blocks as u32).rev().collect();
        Ok(Self {
            cfg,
            keys,
            values,
            refcount,
            free,
        })
    }

    /// While no sequence holds a block, hands the pools' memory back to the kernel
    /// ([`crate::pages::discard`]): they stay allocated, read as zeros where discarded, and are
    /// paged in again as the next sequences write them. An idle engine calls this so that an
    /// in-process trainer's backward can use the memory between rollouts. Returns the bytes
    /// discarded (0 while a block is in use, or off Linux).
    pub fn discard_pages(&mut self) -> Result<usize> {
        if self.free.len() + 1 != self.cfg.num_blocks {
            return Ok(0);
        }
        let mut bytes = 0;
        for pool in self.keys.iter().chain(self.values.iter()) {
            bytes += crate::pages::discard(pool)?;
        }
        Ok(bytes)
    }

    /// Tokens per block.
    pub fn block_size(&self) -> usize {
        self.cfg.block_size
    }

    /// Blocks in the pool, including the scratch block.
    pub fn num_blocks(&self) -> usize {
        self.cfg.num_blocks
    }

    /// Blocks not used by any sequence.
    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// A new, empty sequence.
    pub fn new_sequence(&mut self) -> SeqCache {
        SeqCache {
            blocks: Vec::new(),
            len: 0,
        }
    }

    /// Blocks an append of `extra` tokens to `seq` would allocate.
    pub fn blocks_needed(&self, seq: &SeqCache, extra: usize) -> usize {
        (seq.len + extra)
            .div_ceil(self.cfg.block_size)
            .saturating_sub(seq.blocks.len())
    }

    /// Makes room for `extra` more tokens in `seq`.
    pub(crate) fn reserve(&mut self, seq: &mut SeqCache, extra: usize) -> Result<()> {
        let needed = self.blocks_needed(seq, extra);
        if needed > self.free.len() {
            return Err(ModelError::CacheFull {
                needed,
                free: self.free.len(),
            });
        }
        for _ in 0..needed {
            let b = self.alloc()?;
            seq.blocks.push(b);
        }
        Ok(())
    }

    /// Gives back the blocks `seq` holds beyond its first `keep` (undoes a [`Self::reserve`] whose
    /// append failed). Blocks the sequence gained by reserving are its own (refcount 1).
    pub(crate) fn unreserve(&mut self, seq: &mut SeqCache, keep: usize) {
        if keep >= seq.blocks.len() {
            return;
        }
        for b in seq.blocks.split_off(keep) {
            self.drop_ref(b);
        }
    }

    fn alloc(&mut self) -> Result<u32> {
        let b = self
            .free
            .pop()
            .ok_or(ModelError::CacheFull { needed: 1, free: 0 })?;
        self.refcount[b as usize] = 1;
        Ok(b)
    }

    /// A child sequence with the same content: full blocks are shared, the partial last block is
    /// copied so both can append independently.
    pub fn fork(&mut self, seq: &SeqCache) -> Result<SeqCache> {
        let bs = self.cfg.block_size;
        let full = seq.len / bs;
        let partial = !seq.len.is_multiple_of(bs);
        if partial && self.free.is_empty() {
            return Err(ModelError::CacheFull { needed: 1, free: 0 });
        }
        let mut blocks = Vec::with_capacity(seq.blocks.len());
        for &b in &seq.blocks[..full] {
            self.refcount[b as usize] += 1;
            blocks.push(b);
        }
        if partial {
            let src = seq.blocks[full];
            let dst = self.alloc()?;
            self.copy_block(src, dst, seq.len % bs)?;
            blocks.push(dst);
        }
        Ok(SeqCache {
            blocks,
            len: seq.len,
        })
    }

    fn copy_block(&mut self, src: u32, dst: u32, rows: usize) -> Result<()> {
        let bs = self.cfg.block_size;
        let (s, d) = (src as usize * bs, dst as usize * bs);
        for pool in self.keys.iter().chain(self.values.iter()) {
            let rows_src = pool.narrow(0, s, rows)?.copy()?;
            pool.slice_set(&rows_src, 0, d)?;
        }
        Ok(())
    }

    /// Returns a sequence's blocks to the pool (shared blocks stay until their last user leaves).
    pub fn release(&mut self, seq: SeqCache) {
        for b in seq.blocks {
            self.drop_ref(b);
        }
    }

    /// One user fewer for block `b`; the last one returns it to the pool.
    fn drop_ref(&mut self, b: u32) {
        let rc = &mut self.refcount[b as usize];
        *rc = rc.saturating_sub(1);
        if *rc == 0 {
            self.free.push(b);
        }
    }

    /// The slot of position `pos` of `seq` (which must be reserved).
    pub(crate) fn slot(&self, seq: &SeqCache, pos: usize) -> u32 {
        let bs = self.cfg.block_size;
        seq.blocks[pos / bs] * bs as u32 + (pos % bs) as u32
    }

    /// Sets the stored length after an append.
    pub(crate) fn set_len(seq: &mut SeqCache, len: usize) {
        seq.len = len;
    }

    /// Layer `l`'s key and value pools.
    pub(crate) fn layer(&self, l: usize) -> (&Tensor, &Tensor) {
        (&self.keys[l], &self.values[l])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ModelConfig {
        ModelConfig::from_hf_json(
            r#"{"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":16,
            "num_hidden_layers":1,"num_attention_heads":2}"#,
        )
        .unwrap()
    }

    /// A cache of `num_blocks` blocks of 4 tokens for [`tiny`].
    fn pool(num_blocks: usize) -> KvCache {
        KvCache::new(
            &tiny(),
            CacheConfig {
                block_size: 4,
                num_blocks,
            },
            DType::F32,
            &Device::Cpu,
        )
        .unwrap()
    }

    #[test]
    fn fork_shares_full_blocks_and_copies_the_partial_one() {
        let mut c = pool(8);
        assert_eq!(c.free_blocks(), 7);
        let mut s = c.new_sequence();
        c.reserve(&mut s, 6).unwrap();
        KvCache::set_len(&mut s, 6);
        assert_eq!(c.free_blocks(), 5);
        let child = c.fork(&s).unwrap();
        assert_eq!(child.blocks()[0], s.blocks()[0]);
        assert_ne!(child.blocks()[1], s.blocks()[1]);
        assert_eq!(c.free_blocks(), 4);
        c.release(s);
        assert_eq!(c.free_blocks(), 5, "the shared block stays with the child");
        c.release(child);
        assert_eq!(c.free_blocks(), 7);
    }

    #[test]
    fn reserve_fails_cleanly_when_full() {
        let mut c = pool(3);
        let mut s = c.new_sequence();
        let err = c.reserve(&mut s, 9).unwrap_err();
        assert!(matches!(err, ModelError::CacheFull { needed: 3, free: 2 }));
        assert_eq!(c.free_blocks(), 2);
        assert!(s.blocks().is_empty());
    }

    #[test]
    fn unreserve_returns_only_the_new_blocks() {
        let mut c = pool(8);
        let mut s = c.new_sequence();
        c.reserve(&mut s, 3).unwrap();
        KvCache::set_len(&mut s, 3);
        let kept = s.blocks().to_vec();
        c.reserve(&mut s, 10).unwrap();
        assert_eq!((s.blocks().len(), c.free_blocks()), (4, 3));
        c.unreserve(&mut s, kept.len());
        assert_eq!(s.blocks(), kept.as_slice());
        assert_eq!((s.len(), c.free_blocks()), (3, 6));
        c.unreserve(&mut s, 5); // nothing beyond: a no-op
        assert_eq!(c.free_blocks(), 6);
    }

    #[test]
    fn pages_are_discarded_only_when_every_block_is_free() {
        let cfg = tiny();
        let mut c = KvCache::new(
            &cfg,
            CacheConfig {
                block_size: 1024,
                num_blocks: 4,
            },
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        let mut s = c.new_sequence();
        c.reserve(&mut s, 3).unwrap();
        assert_eq!(c.discard_pages().unwrap(), 0, "a sequence holds blocks");
        c.release(s);
        let bytes = c.discard_pages().unwrap();
        if cfg!(target_os = "linux") {
            assert!(bytes > 0);
        }
        assert_eq!(c.free_blocks(), 3);
        let k = c
            .layer(0)
            .0
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(k.iter().all(|&x| x == 0.0));
    }
}
