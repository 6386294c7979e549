//! Cross-request prefix cache: block-aligned prompt prefixes kept in the KV cache, LRU-evicted.
