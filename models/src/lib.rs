//! oxrl-models: the transformer policies oxrl trains and serves.
//!
//! One decoder implementation (`decoder`) is parameterised by a [`config::ModelConfig`] that covers
//! the Llama, Mistral, Qwen2 and Qwen3 families. It has two entry points that must agree on every
//! number:
//! - the *training forward* over a padded batch of full sequences, returning per-token logprobs of
//!   given targets (and optionally entropies), differentiable with respect to every weight; only
//!   ops with a correct backward are used (no fused rms_norm / rope / softmax_last_dim); the LM
//!   head runs chunk by chunk over token rows so full `[tokens × vocab]` logits are never kept for
//!   backward, and a group's shared prompt can be encoded once for all its completions
//!   (`Transformer::group_token_logprobs`; all the groups of a micro-batch in one forward with
//!   `Transformer::groups_token_logprobs`);
//! - the *inference step* over a batch of sequences of different lengths and positions that read and
//!   append to a paged KV cache (`kv_cache`); sequences of one group share their prompt's blocks.
//!
//! `unsafe` is denied except in the three kernel modules that need it, each block with its
//! `SAFETY` reason: `xwt` and `paged_attention` (AVX-512 / AVX2 + FMA kernels, called after a CPU
//! feature check) and `weights` (memory-mapped safetensors files).
#![deny(unsafe_code)]

pub mod cache_write;
pub mod config;
pub mod decoder;
pub mod error;
pub mod gguf;
pub mod init;
pub mod kv_cache;
pub mod layers;
pub mod load;
pub mod lora;
pub mod names;
pub mod ops;
pub mod packed;
#[allow(unsafe_code)]
pub mod paged_attention;
pub mod pages;
pub mod resolve;
pub mod rope;
pub mod save;
pub mod tokenizer;
#[allow(unsafe_code)]
pub mod weights;
#[allow(unsafe_code)]
pub mod xwt;

pub use config::{Arch, ModelConfig, RopeScaling};
pub use decoder::{
    GroupLogprobs, LogitChunks, PromptGroup, StepLogits, StepSeq, TokenLogprobs, TrainForward,
    TrainableVar, Transformer,
};
pub use error::{ModelError, Result};
pub use gguf::{load_gguf, GgufModel};
pub use kv_cache::{CacheConfig, KvCache, SeqCache};
pub use load::{LoadOptions, LoadedModel};
pub use lora::LoraConfig;
pub use resolve::{resolve_model, ModelSource};
pub use tokenizer::{ChatMessage, Tokenizer};
