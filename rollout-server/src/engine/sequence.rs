//! Per-request and per-sample state: generated tokens, logprobs, incremental detokenisation and
//! stop conditions.
