//! Byte-level BPE tokenizers built from a vocabulary and a merge list (GPT-2 style), shared by
//! the tiny test tokenizer and the GGUF tokenizer rebuild.

use crate::error::{ModelError, Result};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

/// Llama 3's split regex (`tokenizer.ggml.pre = "llama-bpe"`).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split regex (`tokenizer.ggml.pre = "qwen2"`): like Llama 3 but single digits.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How text is split into words before BPE, named as llama.cpp's `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizerKind {
    /// GPT-2's regex inside the ByteLevel pre-tokenizer.
    Gpt2,
    /// Every digit split on its own, then GPT-2's regex (SmolLM, StarCoder, Refact, ...).
    DigitsThenGpt2,
    /// Llama 3's regex, then byte-level mapping without a regex.
    Llama3,
    /// Qwen2's regex, then byte-level mapping without a regex.
    Qwen2,
}

impl PreTokenizerKind {
    /// Maps a `tokenizer.ggml.pre` value; `None` when we do not know it.
    pub fn from_ggml_pre(name: &str) -> Option<Self> {
        match name {
            "default" | "gpt2" | "gpt-2" | "olmo" | "jais" | "phi-2" | "stablelm2" => {
                Some(Self::Gpt2)
            }
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" => Some(Self::DigitsThenGpt2),
            "llama-bpe" | "llama3" | "llama-v3" | "falcon3" | "pixtral" | "smaug-bpe" => {
                Some(Self::Llama3)
            }
            "qwen2" | "deepseek-r1-qwen" => Some(Self::Qwen2),
            _ => None,
        }
    }

    /// The `tokenizers` pre-tokenizer of this kind.
    pub(crate) fn build(self) -> Result<PreTokenizerWrapper> {
        let split = |re: &str| -> Result<PreTokenizerWrapper> {
            let s = Split::new(
                SplitPattern::Regex(re.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| ModelError::Tokenizer(format!("pre-tokenizer regex: {e}")))?;
            Ok(PreTokenizerWrapper::Split(s))
        };
        Ok(match self {
            Self::Gpt2 => PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
            Self::DigitsThenGpt2 => PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
            ])),
            Self::Llama3 => PreTokenizerWrapper::Sequence(Sequence::new(vec![
                split(LLAMA3_REGEX)?,
                PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
            ])),
            Self::Qwen2 => PreTokenizerWrapper::Sequence(Sequence::new(vec![
                split(QWEN2_REGEX)?,
                PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
            ])),
        })
    }
}

/// GPT-2's reversible map from bytes to printable characters, indexed by byte.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            b
        } else {
            n += 1;
            255 + n
        };
        out[b as usize] = char::from_u32(c).unwrap_or('\u{FFFD}');
    }
    out
}

/// A token of a byte-level BPE vocabulary that is matched before BPE runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialToken {
    /// Its text.
    pub content: String,
    /// Its id (must be the id the vocabulary gives it, when the vocabulary has it).
    pub id: u32,
    /// Whether it is a special (control) token, skipped when decoding with `skip_special_tokens`.
    pub special: bool,
}

/// Builds a byte-level BPE tokenizer: `tokens[i]` has id `i`, `merges` are in rank order,
/// `added` are matched as whole tokens before BPE.
pub fn build_byte_level_bpe(
    tokens: &[String],
    merges: Vec<(String, String)>,
    added: &[SpecialToken],
    pre: PreTokenizerKind,
) -> Result<tokenizers::Tokenizer> {
    let mut vocab: tokenizers::models::bpe::Vocab = Default::default();
    for (i, t) in tokens.iter().enumerate() {
        // Duplicates keep the first id, as llama.cpp does.
        vocab.entry(t.clone()).or_insert(i as u32);
    }
    for (a, b) in &merges {
        if !vocab.contains_key(a) || !vocab.contains_key(b) {
            return Err(ModelError::Tokenizer(format!(
                "merge `{a} {b}` uses a token that is not in the vocabulary"
            )));
        }
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| ModelError::Tokenizer(format!("building BPE model: {e}")))?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(pre.build()?));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    tok.with_post_processor(Some(ByteLevel::new(false, false, true)));
    let (special, normal): (Vec<_>, Vec<_>) = added.iter().partition(|t| t.special);
    tok.add_special_tokens(
        special
            .iter()
            .map(|t| AddedToken::from(t.content.clone(), true))
            .collect::<Vec<_>>(),
    )
    .map_err(|e| ModelError::Tokenizer(format!("adding special tokens: {e}")))?;
    tok.add_tokens(
        normal
            .iter()
            .map(|t| AddedToken::from(t.content.clone(), false))
            .collect::<Vec<_>>(),
    )
    .map_err(|e| ModelError::Tokenizer(format!("adding tokens: {e}")))?;
    for t in added {
        if tok.token_to_id(&t.content) != Some(t.id) {
            return Err(ModelError::Tokenizer(format!(
                "added token `{}` should have id {} but got {:?}",
                t.content,
                t.id,
                tok.token_to_id(&t.content)
            )));
        }
    }
    Ok(tok)
}
