//! A tiny, deterministic byte-level BPE tokenizer for tests and `oxrl init-model` (digits split
//! one per token, as SmolLM2 does, so arithmetic tasks see each digit alone): merges are
//! learned from a small embedded English corpus by a plain greedy BPE (ties broken by the pair's
//! strings), so the same files come out on every run and every machine.

use super::bpe::{build_byte_level_bpe, bytes_to_unicode, PreTokenizerKind, SpecialToken};
use super::{SpecialTokens, Tokenizer};
use crate::error::{ModelError, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

/// Special tokens of the tiny tokenizer, with ids 0, 1, 2.
pub const TINY_SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Smallest vocabulary [`write_tiny_tokenizer`] accepts.
pub const TINY_MIN_VOCAB: usize = 300;

/// ChatML, with the assistant's reply (and its `<|im_end|>`) inside a `{% generation %}` block
/// so trainers get assistant masks. Renders exactly like Qwen's ChatML without tools.
pub const CHATML_TEMPLATE: &str = "{%- for message in messages %}\n    {{- '<|im_start|>' + message['role'] + '\\n' }}\n    {%- if message['role'] == 'assistant' %}\n        {%- generation %}\n        {{- message['content'] + '<|im_end|>' }}\n        {%- endgeneration %}\n        {{- '\\n' }}\n    {%- else %}\n        {{- message['content'] + '<|im_end|>' + '\\n' }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n";

const CORPUS: &str = include_str!("tiny_corpus.txt");

/// The tiny tokenizer's pre-tokenizer: every digit on its own, then GPT-2's byte-level regex
/// (SmolLM2's scheme), so a number is one token per digit wherever it stands.
const TINY_PRE_TOKENIZER: PreTokenizerKind = PreTokenizerKind::DigitsThenGpt2;

/// Learns up to `max_merges` merges from `text`, pre-tokenized as the tokenizer will be.
fn learn_merges(text: &str, max_merges: usize) -> Result<Vec<(String, String)>> {
    let mut pre = PreTokenizedString::from(text);
    TINY_PRE_TOKENIZER
        .build()?
        .pre_tokenize(&mut pre)
        .map_err(|e| ModelError::Tokenizer(format!("pre-tokenizing corpus: {e}")))?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (word, _, _) in pre.get_splits(OffsetReferential::Original, OffsetType::Byte) {
        *counts.entry(word.to_string()).or_default() += 1;
    }
    let mut words: Vec<(Vec<String>, u64)> = counts
        .into_iter()
        .map(|(w, c)| (w.chars().map(String::from).collect(), c))
        .collect();
    let mut merges = Vec::new();
    while merges.len() < max_merges {
        let mut pairs: HashMap<(&str, &str), u64> = HashMap::new();
        for (syms, c) in &words {
            for w in syms.windows(2) {
                *pairs.entry((w[0].as_str(), w[1].as_str())).or_default() += c;
            }
        }
        // Highest count; ties go to the smallest pair of strings.
        let best = pairs
            .into_iter()
            .filter(|&(_, c)| c >= 2)
            .min_by(|(pa, ca), (pb, cb)| cb.cmp(ca).then_with(|| pa.cmp(pb)));
        let Some(((a, b), _)) = best else { break };
        let (a, b) = (a.to_string(), b.to_string());
        let joined = format!("{a}{b}");
        for (syms, _) in &mut words {
            let mut i = 0;
            while i + 1 < syms.len() {
                if syms[i] == a && syms[i + 1] == b {
                    syms[i] = joined.clone();
                    syms.remove(i + 1);
                }
                i += 1;
            }
        }
        merges.push((a, b));
    }
    Ok(merges)
}

/// Builds the tiny tokenizer in memory: ids 0–2 are the special tokens, 3–258 the 256 byte
/// symbols, then merged tokens, at most `vocab_size` tokens in all (fewer when the corpus runs
/// out of pairs seen twice).
pub fn tiny_tokenizer(vocab_size: usize) -> Result<Tokenizer> {
    if vocab_size < TINY_MIN_VOCAB {
        return Err(ModelError::Tokenizer(format!(
            "tiny tokenizer needs vocab_size >= {TINY_MIN_VOCAB}, got {vocab_size}"
        )));
    }
    let mut tokens: Vec<String> = TINY_SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
    tokens.extend(bytes_to_unicode().iter().map(|c| c.to_string()));
    let base = tokens.len();
    let mut merges = learn_merges(CORPUS, vocab_size - base)?;
    let mut seen: std::collections::HashSet<String> = tokens.iter().cloned().collect();
    let mut kept = Vec::with_capacity(merges.len());
    for (a, b) in merges.drain(..) {
        let joined = format!("{a}{b}");
        if seen.insert(joined.clone()) {
            if tokens.len() >= vocab_size {
                break;
            }
            tokens.push(joined);
        }
        kept.push((a, b));
    }
    let added: Vec<SpecialToken> = TINY_SPECIAL_TOKENS
        .iter()
        .enumerate()
        .map(|(i, s)| SpecialToken {
            content: s.to_string(),
            id: i as u32,
            special: true,
        })
        .collect();
    let inner = build_byte_level_bpe(&tokens, kept, &added, TINY_PRE_TOKENIZER)?;
    let specials = SpecialTokens {
        bos: None,
        eos: Some("<|im_end|>".into()),
        pad: Some("<|endoftext|>".into()),
        unk: None,
        extra_eos_ids: vec![2, 0],
        add_bos_token: false,
    };
    Tokenizer::new(inner, specials, Some(CHATML_TEMPLATE))
}

/// Writes the tiny tokenizer (`tokenizer.json`, `tokenizer_config.json` with a ChatML template
/// and EOS `<|im_end|>`, `generation_config.json`) into `dir`. Same bytes on every run.
pub fn write_tiny_tokenizer(dir: &Path, vocab_size: usize) -> Result<()> {
    tiny_tokenizer(vocab_size)?.save(dir)
}
