//! The tokenizer of a model: a `tokenizers` tokenizer plus the special tokens, EOS ids and chat
//! template HF keeps in `tokenizer_config.json` / `generation_config.json`, an incremental
//! detokenizer for streaming, and saving back to files that transformers and oxrl both load.

pub mod bpe;
pub mod chat_template;
pub mod tiny;

pub use chat_template::{spans_to_token_mask, ChatMessage, ChatTemplate};
pub use tiny::write_tiny_tokenizer;

use crate::error::{ModelError, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// A byte range `[start, end)` in a text.
pub type Span = (usize, usize);

/// Special tokens and generation settings that live next to `tokenizer.json`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecialTokens {
    /// Beginning-of-sequence token text.
    pub bos: Option<String>,
    /// End-of-sequence token text (the one in `tokenizer_config.json`).
    pub eos: Option<String>,
    /// Padding token text.
    pub pad: Option<String>,
    /// Unknown token text.
    pub unk: Option<String>,
    /// More ids that end generation (e.g. `generation_config.json`'s `eos_token_id` list).
    pub extra_eos_ids: Vec<u32>,
    /// Prepend BOS when encoding with special tokens (if the post-processor has not already).
    pub add_bos_token: bool,
}

/// A model tokenizer with its special tokens and chat template.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    specials: SpecialTokens,
    eos_ids: Vec<u32>,
    bos_id: Option<u32>,
    pad_id: Option<u32>,
    chat_template: Option<ChatTemplate>,
    /// `tokenizer_config.json` as loaded (kept so saving preserves fields we do not model).
    tokenizer_config: Map<String, Value>,
    /// `generation_config.json` as loaded.
    generation_config: Option<Map<String, Value>>,
}

fn tok_err(context: &str, e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(format!("{context}: {e}"))
}

fn read_json(path: &Path) -> Result<Option<Map<String, Value>>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(ModelError::Tokenizer(format!(
            "{}: expected a JSON object",
            path.display()
        ))),
        Err(e) => Err(ModelError::Tokenizer(format!(
            "{}: invalid JSON: {e}",
            path.display()
        ))),
    }
}

/// A special token in `tokenizer_config.json`: a string or an `AddedToken` object.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(String::from),
        _ => None,
    }
}

fn id_list(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    }
}

/// The chat template named "default" from `tokenizer_config.json`'s `chat_template`, which is
/// either a string or a list of `{name, template}`.
fn config_chat_template(cfg: &Map<String, Value>) -> Result<Option<String>> {
    match cfg.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(list)) => {
            let mut names = Vec::new();
            for item in list {
                let name = item.get("name").and_then(Value::as_str).unwrap_or("");
                if name == "default" {
                    return Ok(item
                        .get("template")
                        .and_then(Value::as_str)
                        .map(String::from));
                }
                names.push(name.to_string());
            }
            Err(ModelError::ChatTemplate(format!(
                "tokenizer_config.json has several chat templates ({}) and none named `default`",
                names.join(", ")
            )))
        }
        Some(_) => Err(ModelError::ChatTemplate(
            "`chat_template` must be a string or a list of {name, template}".into(),
        )),
    }
}

impl Tokenizer {
    /// Wraps a built `tokenizers` tokenizer. `eos_ids` are resolved from `specials.eos` and
    /// `specials.extra_eos_ids`; unknown special-token strings are an error.
    pub fn new(
        inner: tokenizers::Tokenizer,
        specials: SpecialTokens,
        chat_template: Option<&str>,
    ) -> Result<Self> {
        let lookup = |name: &str, t: &Option<String>| -> Result<Option<u32>> {
            match t {
                None => Ok(None),
                Some(s) => inner.token_to_id(s).map(Some).ok_or_else(|| {
                    ModelError::Tokenizer(format!("{name} `{s}` is not in the vocabulary"))
                }),
            }
        };
        let bos_id = lookup("bos_token", &specials.bos)?;
        let pad_id = lookup("pad_token", &specials.pad)?;
        let eos_main = lookup("eos_token", &specials.eos)?;
        let vocab = inner.get_vocab_size(true) as u32;
        let mut eos_ids = Vec::new();
        for id in specials.extra_eos_ids.iter().copied().chain(eos_main) {
            if id >= vocab {
                return Err(ModelError::Tokenizer(format!(
                    "eos token id {id} is outside the vocabulary ({vocab} tokens)"
                )));
            }
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
        let mut me = Self {
            inner,
            specials,
            eos_ids,
            bos_id,
            pad_id,
            chat_template: None,
            tokenizer_config: Map::new(),
            generation_config: None,
        };
        if let Some(src) = chat_template {
            me.set_chat_template(Some(src))?;
        }
        Ok(me)
    }

    /// Loads `tokenizer.json`, `tokenizer_config.json`, `generation_config.json` and
    /// `chat_template.jinja` (which wins over the config's `chat_template`, as in transformers)
    /// from a model directory.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let tj = dir.join("tokenizer.json");
        if !tj.exists() {
            return Err(ModelError::Tokenizer(format!(
                "{} not found (only fast tokenizers in tokenizer.json are supported)",
                tj.display()
            )));
        }
        let mut inner = tokenizers::Tokenizer::from_file(&tj)
            .map_err(|e| tok_err(&tj.display().to_string(), e))?;
        let cfg = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or_default();
        let gen = read_json(&dir.join("generation_config.json"))?;

        // Tokens declared only in tokenizer_config.json's added_tokens_decoder.
        if let Some(Value::Object(added)) = cfg.get("added_tokens_decoder") {
            let mut entries: Vec<(u32, String, bool)> = added
                .iter()
                .filter_map(|(k, v)| {
                    let id = k.parse::<u32>().ok()?;
                    let content = v.get("content")?.as_str()?.to_string();
                    let special = v.get("special").and_then(Value::as_bool).unwrap_or(false);
                    Some((id, content, special))
                })
                .collect();
            entries.sort();
            for (id, content, special) in entries {
                if inner.token_to_id(&content).is_none() {
                    let t = tokenizers::AddedToken::from(content.clone(), special);
                    inner
                        .add_tokens(vec![t])
                        .map_err(|e| tok_err("adding token from added_tokens_decoder", e))?;
                    if inner.token_to_id(&content) != Some(id) {
                        tracing::warn!(
                            "token `{content}` from added_tokens_decoder got id {:?}, config says {id}",
                            inner.token_to_id(&content)
                        );
                    }
                }
            }
        }

        let mut extra_eos_ids = gen
            .as_ref()
            .map(|g| id_list(g.get("eos_token_id")))
            .unwrap_or_default();
        // Drop ids a config names but the vocabulary lacks rather than refusing the model.
        let vocab = inner.get_vocab_size(true) as u32;
        extra_eos_ids.retain(|&id| id < vocab);
        let mut specials = SpecialTokens {
            bos: token_text(cfg.get("bos_token")),
            eos: token_text(cfg.get("eos_token")),
            pad: token_text(cfg.get("pad_token")),
            unk: token_text(cfg.get("unk_token")),
            extra_eos_ids,
            add_bos_token: cfg
                .get("add_bos_token")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        // A special token string the vocabulary lacks is dropped with a warning (HF would add
        // it as a new token; a model cannot embed a token it has no row for).
        for (name, slot) in [
            ("bos_token", &mut specials.bos),
            ("eos_token", &mut specials.eos),
            ("pad_token", &mut specials.pad),
            ("unk_token", &mut specials.unk),
        ] {
            if let Some(s) = slot.as_ref() {
                if inner.token_to_id(s).is_none() {
                    tracing::warn!("{name} `{s}` is not in the vocabulary; ignoring it");
                    *slot = None;
                }
            }
        }
        if specials.bos.is_none() {
            if let Some(id) = gen
                .as_ref()
                .and_then(|g| g.get("bos_token_id"))
                .and_then(Value::as_u64)
            {
                specials.bos = inner.id_to_token(id as u32);
            }
        }
        let jinja = dir.join("chat_template.jinja");
        let template = if jinja.exists() {
            Some(std::fs::read_to_string(&jinja).map_err(|e| ModelError::io(&jinja, e))?)
        } else {
            config_chat_template(&cfg)?
        };
        let mut tok = Self::new(inner, specials, template.as_deref())?;
        tok.tokenizer_config = cfg;
        tok.generation_config = gen;
        Ok(tok)
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// The special tokens.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.specials
    }

    /// Replaces (or removes) the chat template.
    pub fn set_chat_template(&mut self, source: Option<&str>) -> Result<()> {
        self.chat_template = match source {
            None => None,
            Some(src) => Some(ChatTemplate::new(src, self.special_tokens_map())?),
        };
        Ok(())
    }

    /// The chat template, when the model has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    fn require_template(&self) -> Result<&ChatTemplate> {
        self.chat_template
            .as_ref()
            .ok_or_else(|| ModelError::ChatTemplate("this tokenizer has no chat template".into()))
    }

    /// Renders messages with the chat template.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.require_template()?
            .render(messages, add_generation_prompt)
    }

    /// Renders and tokenizes a conversation, with `true` for every token inside a
    /// `{% generation %}` block (the assistant tokens). Special tokens are not added again: the
    /// template already wrote them, as HF does with `tokenize=True`.
    pub fn encode_chat_with_assistant_mask(
        &self,
        messages: &[ChatMessage],
    ) -> Result<(Vec<u32>, Vec<bool>)> {
        let (text, spans) = self
            .require_template()?
            .render_with_assistant_mask(messages)?;
        let (ids, offsets) = self.encode_with_offsets(&text, false)?;
        Ok((ids, spans_to_token_mask(&offsets, &spans)))
    }

    /// Renders and tokenizes `prompt` followed by an assistant turn `completion`, with `true` on
    /// the completion's tokens. Templates with `{% generation %}` blocks mark the assistant
    /// tokens themselves ([`Self::encode_chat_with_assistant_mask`]). Most real templates
    /// (SmolLM2, Qwen2, Llama 3) have none; then the completion is what the conversation adds
    /// after the prompt rendered with the generation prompt (TRL's rule for prompt-completion
    /// chat data): every token that starts at or after that prefix's end. A template whose
    /// conversation does not start with that prefix is an error.
    pub fn encode_chat_completion(
        &self,
        prompt: &[ChatMessage],
        completion: &str,
    ) -> Result<(Vec<u32>, Vec<bool>)> {
        let mut all = prompt.to_vec();
        all.push(ChatMessage::new("assistant", completion));
        let template = self.require_template()?;
        let (text, spans) = template.render_with_assistant_mask(&all)?;
        let (ids, offsets) = self.encode_with_offsets(&text, false)?;
        if !spans.is_empty() {
            return Ok((ids, spans_to_token_mask(&offsets, &spans)));
        }
        let head = template.render(prompt, true)?;
        if !text.starts_with(&head) {
            return Err(ModelError::ChatTemplate(
                "the chat template renders the prompt differently once the assistant turn follows, so the completion's tokens cannot be told apart (add {% generation %} blocks to the template)".into(),
            ));
        }
        let mask = offsets
            .iter()
            .map(|&(start, _)| start >= head.len())
            .collect();
        Ok((ids, mask))
    }

    /// The variables HF passes to chat templates from the special-tokens map.
    fn special_tokens_map(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for (k, v) in [
            ("bos_token", &self.specials.bos),
            ("eos_token", &self.specials.eos),
            ("pad_token", &self.specials.pad),
            ("unk_token", &self.specials.unk),
        ] {
            if let Some(v) = v {
                m.insert(k.to_string(), v.clone());
            }
        }
        m
    }

    /// Token ids of `text`. With `add_special_tokens` the post-processor runs and BOS is
    /// prepended when `add_bos_token` is set and it is not already there.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        Ok(self.encode_with_offsets(text, add_special_tokens)?.0)
    }

    /// Token ids and their byte offsets `[start, end)` in `text`.
    pub fn encode_with_offsets(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<(Vec<u32>, Vec<Span>)> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| tok_err("encode", e))?;
        let mut ids = enc.get_ids().to_vec();
        let mut offsets = enc.get_offsets().to_vec();
        if add_special_tokens && self.specials.add_bos_token {
            if let Some(bos) = self.bos_id {
                if ids.first() != Some(&bos) {
                    ids.insert(0, bos);
                    offsets.insert(0, (0, 0));
                }
            }
        }
        Ok((ids, offsets))
    }

    /// Text of `ids`. Ids outside the vocabulary are an error.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let vocab = self.vocab_size() as u32;
        if let Some(bad) = ids.iter().find(|&&i| i >= vocab) {
            return Err(ModelError::Tokenizer(format!(
                "token id {bad} is outside the vocabulary ({vocab} tokens)"
            )));
        }
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| tok_err("decode", e))
    }

    /// Ids that end generation: `generation_config.json`'s `eos_token_id`(s) and the EOS token.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Whether `id` ends generation.
    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_ids.contains(&id)
    }

    /// The BOS token id, if any.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// The padding token id, if any.
    pub fn pad_token_id(&self) -> Option<u32> {
        self.pad_id
    }

    /// Number of tokens, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The string of a token id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a token string.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// A fresh incremental detokenizer.
    pub fn decode_stream(&self, skip_special_tokens: bool) -> DecodeStream {
        DecodeStream::new(skip_special_tokens)
    }

    /// Writes `tokenizer.json`, `tokenizer_config.json` (with the chat template) and
    /// `generation_config.json` into `dir` (created if needed).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let tj = dir.join("tokenizer.json");
        self.inner
            .save(&tj, true)
            .map_err(|e| tok_err(&format!("writing {}", tj.display()), e))?;
        let write = |name: &str, v: &Value| -> Result<()> {
            let path = dir.join(name);
            let text = serde_json::to_string_pretty(v)
                .map_err(|e| ModelError::Tokenizer(format!("serialising {name}: {e}")))?;
            std::fs::write(&path, text + "\n").map_err(|e| ModelError::io(&path, e))
        };
        write(
            "tokenizer_config.json",
            &Value::Object(self.tokenizer_config_json()),
        )?;
        write(
            "generation_config.json",
            &Value::Object(self.generation_config_json()),
        )?;
        Ok(())
    }

    fn tokenizer_config_json(&self) -> Map<String, Value> {
        let mut cfg = self.tokenizer_config.clone();
        cfg.entry("tokenizer_class")
            .or_insert_with(|| json!("PreTrainedTokenizerFast"));
        cfg.entry("clean_up_tokenization_spaces")
            .or_insert(json!(false));
        for (k, v) in [
            ("bos_token", &self.specials.bos),
            ("eos_token", &self.specials.eos),
            ("pad_token", &self.specials.pad),
            ("unk_token", &self.specials.unk),
        ] {
            match v {
                Some(s) => {
                    cfg.insert(k.into(), json!(s));
                }
                None => {
                    cfg.insert(k.into(), Value::Null);
                }
            }
        }
        cfg.insert("add_bos_token".into(), json!(self.specials.add_bos_token));
        let mut decoder = Map::new();
        let mut added: Vec<(u32, tokenizers::AddedToken)> =
            self.inner.get_added_tokens_decoder().into_iter().collect();
        added.sort_by_key(|(id, _)| *id);
        for (id, t) in added {
            decoder.insert(
                id.to_string(),
                json!({
                    "content": t.content,
                    "lstrip": t.lstrip,
                    "normalized": t.normalized,
                    "rstrip": t.rstrip,
                    "single_word": t.single_word,
                    "special": t.special,
                }),
            );
        }
        cfg.insert("added_tokens_decoder".into(), Value::Object(decoder));
        match &self.chat_template {
            Some(t) => {
                cfg.insert("chat_template".into(), json!(t.source()));
            }
            None => {
                cfg.remove("chat_template");
            }
        }
        cfg
    }

    fn generation_config_json(&self) -> Map<String, Value> {
        let mut g = self.generation_config.clone().unwrap_or_default();
        if let Some(b) = self.bos_id {
            g.insert("bos_token_id".into(), json!(b));
        }
        match self.eos_ids.as_slice() {
            [] => {}
            [one] => {
                g.insert("eos_token_id".into(), json!(one));
            }
            many => {
                g.insert("eos_token_id".into(), json!(many));
            }
        }
        if let Some(p) = self.pad_id {
            g.entry("pad_token_id").or_insert(json!(p));
        }
        g.entry("_from_model_config").or_insert(json!(false));
        g
    }
}

/// Incremental detokenizer for streaming: push token ids, get back only complete text.
///
/// Deltas never split a multibyte character, and their concatenation equals
/// `tokenizer.decode(all_ids)` once [`DecodeStream::finish`] has been called. It keeps a small
/// window of ids (the last emitted token and the pending ones) and decodes that window, so
/// decoders that treat the first token specially (SentencePiece's leading space) stay correct.
#[derive(Debug, Clone, Default)]
pub struct DecodeStream {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    skip_special_tokens: bool,
}

impl DecodeStream {
    /// An empty stream.
    pub fn new(skip_special_tokens: bool) -> Self {
        Self {
            skip_special_tokens,
            ..Self::default()
        }
    }

    /// Adds one token; returns the text it completes, if any.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let prefix = tok.decode(
            &self.ids[self.prefix_offset..self.read_offset],
            self.skip_special_tokens,
        )?;
        let full = tok.decode(&self.ids[self.prefix_offset..], self.skip_special_tokens)?;
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') && full.starts_with(&prefix) {
            let delta = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            // Keep only the window still needed.
            if self.prefix_offset > 0 {
                self.ids.drain(..self.prefix_offset);
                self.read_offset -= self.prefix_offset;
                self.prefix_offset = 0;
            }
            Ok(Some(delta))
        } else {
            Ok(None)
        }
    }

    /// Adds several tokens; returns the text they complete (possibly empty).
    pub fn push_all(&mut self, tok: &Tokenizer, ids: &[u32]) -> Result<String> {
        let mut out = String::new();
        for &id in ids {
            if let Some(d) = self.push(tok, id)? {
                out.push_str(&d);
            }
        }
        Ok(out)
    }

    /// Flushes text held back (incomplete UTF-8 at the end of the stream decodes lossily, as
    /// `decode` does). The stream can keep going afterwards.
    pub fn finish(&mut self, tok: &Tokenizer) -> Result<Option<String>> {
        let prefix = tok.decode(
            &self.ids[self.prefix_offset..self.read_offset],
            self.skip_special_tokens,
        )?;
        let full = tok.decode(&self.ids[self.prefix_offset..], self.skip_special_tokens)?;
        if full.len() > prefix.len() && full.starts_with(&prefix) {
            let delta = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(Some(delta))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests;
