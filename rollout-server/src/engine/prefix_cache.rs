//! Cross-request prefix cache: for each prefilled prompt, the KV of its longest block-aligned
//! prefix that leaves at least one token to compute (`⌊(len − 1) / block⌋ · block` tokens) is kept
//! as a forked sequence (sharing the prompt's blocks, no copy). A later prompt that starts with
//! a cached prefix forks it and prefills only the rest. Entries are evicted least recently used
//! first when the scheduler needs blocks, and all are dropped when the weights change.
//!
//! Limitation: an entry can only be reused whole (the KV cache has no "fork the first k tokens"
//! operation), so two prompts share KV when one's cached prefix is a prefix of the other — e.g.
//! the same prompt sent again, or a prompt extended by a few turns.

use oxrl_models::{KvCache, SeqCache};
use std::collections::HashMap;

/// Most entries kept.
const MAX_ENTRIES: usize = 1024;

struct Entry {
    tokens: Vec<u32>,
    seq: SeqCache,
    last_used: u64,
}

/// Block-aligned prompt prefixes retained in the KV cache.
pub(crate) struct PrefixCache {
    block_size: usize,
    /// Entries by the hash of their tokens.
    entries: HashMap<u64, Entry>,
    clock: u64,
}

fn hash_tokens(t: &[u32]) -> u64 {
    // FNV-1a over the token ids.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in t {
        for b in x.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl PrefixCache {
    /// An empty cache for blocks of `block_size` tokens.
    pub fn new(block_size: usize) -> Self {
        Self {
            block_size,
            entries: HashMap::new(),
            clock: 0,
        }
    }

    /// The length of the prefix of a `len`-token prompt that would be cached.
    pub fn aligned_len(&self, len: usize) -> usize {
        (len.saturating_sub(1) / self.block_size) * self.block_size
    }

    /// Blocks referenced by entries (an upper bound on what eviction can free).
    pub fn evictable_blocks(&self) -> usize {
        self.entries.values().map(|e| e.seq.blocks().len()).sum()
    }

    /// A sequence holding the KV of the longest cached prefix of `prompt` (shorter than the
    /// prompt), or `None`.
    pub fn lookup(&mut self, cache: &mut KvCache, prompt: &[u32]) -> Option<SeqCache> {
        let bs = self.block_size;
        let mut k = self.aligned_len(prompt.len());
        while k >= bs {
            let h = hash_tokens(&prompt[..k]);
            if let Some(e) = self.entries.get_mut(&h) {
                if e.tokens == prompt[..k] {
                    self.clock += 1;
                    e.last_used = self.clock;
                    // Block-aligned: the fork shares every block and copies nothing.
                    return cache.fork(&e.seq).ok();
                }
            }
            k -= bs;
        }
        None
    }

    /// Whether `tokens` (block-aligned) is cached.
    pub fn contains(&self, tokens: &[u32]) -> bool {
        self.entries
            .get(&hash_tokens(tokens))
            .is_some_and(|e| e.tokens == tokens)
    }

    /// Caches `seq` (whose content is `tokens`, block-aligned) by forking it.
    pub fn insert(&mut self, cache: &mut KvCache, tokens: &[u32], seq: &SeqCache) {
        if tokens.is_empty()
            || !tokens.len().is_multiple_of(self.block_size)
            || seq.len() != tokens.len()
            || self.contains(tokens)
        {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES {
            self.evict_one(cache);
        }
        let Ok(child) = cache.fork(seq) else { return };
        self.clock += 1;
        self.entries.insert(
            hash_tokens(tokens),
            Entry {
                tokens: tokens.to_vec(),
                seq: child,
                last_used: self.clock,
            },
        );
    }

    /// Drops the least recently used entry; false when empty.
    pub fn evict_one(&mut self, cache: &mut KvCache) -> bool {
        let Some((&h, _)) = self.entries.iter().min_by_key(|(_, e)| e.last_used) else {
            return false;
        };
        if let Some(e) = self.entries.remove(&h) {
            cache.release(e.seq);
        }
        true
    }

    /// Drops every entry (e.g. after a weight update).
    pub fn clear(&mut self, cache: &mut KvCache) {
        for (_, e) in self.entries.drain() {
            cache.release(e.seq);
        }
    }
}
