//! GGUF loading: a llama.cpp model file (llama architecture; F32, F16, BF16, Q8_0, Q4_0, Q4_1
//! and K-quant tensors) becomes an HF-layout model — config from the metadata, tensors
//! dequantised to the compute dtype under HF names with llama.cpp's q/k row permutation undone,
//! and the tokenizer rebuilt from `tokenizer.ggml.*` metadata.
//!
//! The file runs past 600 lines because of its tests, which write real GGUF files of every
//! tensor type and tokenizer variant and load them back; the loader itself is under 560 lines.

use crate::config::{Arch, ModelConfig, RopeScaling};
use crate::error::{ModelError, Result};
use crate::tokenizer::bpe::{build_byte_level_bpe, PreTokenizerKind, SpecialToken};
use crate::tokenizer::{SpecialTokens, Tokenizer};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

/// A model read from a GGUF file, in HF naming and layout.
#[derive(Debug)]
pub struct GgufModel {
    /// The HF-style config derived from the metadata.
    pub config: ModelConfig,
    /// Dequantised tensors under HF names (`model.layers.0.self_attn.q_proj.weight`, ...).
    pub tensors: HashMap<String, Tensor>,
    /// The tokenizer rebuilt from the metadata.
    pub tokenizer: Tokenizer,
}

/// llama.cpp `token_type` values.
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// The metadata of a GGUF file, with typed getters that produce [`ModelError::Gguf`] errors.
pub struct GgufMeta<'a> {
    path: &'a Path,
    md: &'a HashMap<String, Value>,
}

impl<'a> GgufMeta<'a> {
    /// Wraps the metadata of `path`.
    pub fn new(path: &'a Path, md: &'a HashMap<String, Value>) -> Self {
        Self { path, md }
    }

    fn err(&self, message: String) -> ModelError {
        gguf_err(self.path, message)
    }

    /// The raw value of a key.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.md.get(key)
    }

    /// An unsigned integer (any integer type), if present.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| {
                value_u64(v).ok_or_else(|| {
                    self.err(format!(
                        "`{key}` is not a non-negative integer ({})",
                        short(v)
                    ))
                })
            })
            .transpose()
    }

    /// A required unsigned integer.
    pub fn u64(&self, key: &str) -> Result<u64> {
        self.opt_u64(key)?
            .ok_or_else(|| self.err(format!("missing metadata `{key}`")))
    }

    /// A float (f32 values are rounded to their shortest decimal form: 1e-5, not 9.9999997e-6).
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        self.get(key)
            .map(|v| match v {
                Value::F32(x) => format!("{x}")
                    .parse::<f64>()
                    .map_err(|e| self.err(e.to_string())),
                Value::F64(x) => Ok(*x),
                other => value_u64(other)
                    .map(|x| x as f64)
                    .ok_or_else(|| self.err(format!("`{key}` is not a number ({})", short(other)))),
            })
            .transpose()
    }

    /// A string, if present.
    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => Err(self.err(format!("`{key}` is not a string ({})", short(v)))),
        }
    }

    /// A boolean, if present.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.err(format!("`{key}` is not a bool ({})", short(v)))),
        }
    }

    /// An array, if present.
    pub fn opt_array(&self, key: &str) -> Result<Option<&'a Vec<Value>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.err(format!("`{key}` is not an array ({})", short(v)))),
        }
    }

    /// An array of strings.
    pub fn strings(&self, key: &str) -> Result<Vec<String>> {
        let arr = self
            .opt_array(key)?
            .ok_or_else(|| self.err(format!("missing metadata `{key}`")))?;
        arr.iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(self.err(format!("`{key}`[{i}] is not a string ({})", short(other)))),
            })
            .collect()
    }
}

fn short(v: &Value) -> String {
    let s = format!("{v:?}");
    if s.len() > 60 {
        let mut end = 60;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

fn value_u64(v: &Value) -> Option<u64> {
    match *v {
        Value::U8(x) => Some(x as u64),
        Value::U16(x) => Some(x as u64),
        Value::U32(x) => Some(x as u64),
        Value::U64(x) => Some(x),
        Value::I8(x) => u64::try_from(x).ok(),
        Value::I16(x) => u64::try_from(x).ok(),
        Value::I32(x) => u64::try_from(x).ok(),
        Value::I64(x) => u64::try_from(x).ok(),
        _ => None,
    }
}

fn value_i64(v: &Value) -> Option<i64> {
    match *v {
        Value::U8(x) => Some(x as i64),
        Value::U16(x) => Some(x as i64),
        Value::U32(x) => Some(x as i64),
        Value::U64(x) => i64::try_from(x).ok(),
        Value::I8(x) => Some(x as i64),
        Value::I16(x) => Some(x as i64),
        Value::I32(x) => Some(x as i64),
        Value::I64(x) => Some(x),
        _ => None,
    }
}

fn gguf_err(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Gguf {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads the header of a GGUF stream, turning every failure (including a panic inside the
/// parser on hostile input) into a [`ModelError::Gguf`].
fn read_content<R: Read + Seek>(path: &Path, reader: &mut R) -> Result<Content> {
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Content::read(reader)));
    match res {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(gguf_err(path, format!("not a valid GGUF file: {e}"))),
        Err(_) => Err(gguf_err(path, "not a valid GGUF file (parser failed)")),
    }
}

/// Checks every tensor's declared shape and byte range against the file before reading it.
fn validate_tensor_infos(path: &Path, content: &Content, file_size: u64) -> Result<()> {
    for (name, info) in &content.tensor_infos {
        let dims = info.shape.dims();
        let elems = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| {
                gguf_err(
                    path,
                    format!("tensor `{name}` has an absurd shape {dims:?}"),
                )
            })?;
        let block = info.ggml_dtype.block_size();
        if block == 0 || !elems.is_multiple_of(block) {
            return Err(gguf_err(
                path,
                format!("tensor `{name}`: {elems} elements is not a multiple of the {:?} block size {block}", info.ggml_dtype),
            ));
        }
        let bytes = (elems / block)
            .checked_mul(info.ggml_dtype.type_size())
            .ok_or_else(|| gguf_err(path, format!("tensor `{name}` is too large")))?;
        let end = content
            .tensor_data_offset
            .checked_add(info.offset)
            .and_then(|s| s.checked_add(bytes as u64));
        match end {
            Some(end) if end <= file_size => {}
            _ => {
                return Err(gguf_err(
                    path,
                    format!(
                        "tensor `{name}` ({bytes} bytes at offset {}) runs past the end of the file ({file_size} bytes): truncated?",
                        content.tensor_data_offset.saturating_add(info.offset)
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// Maps a llama.cpp tensor name to its HF name; `None` for tensors HF has no place for.
pub fn gguf_to_hf_name(name: &str) -> Option<String> {
    match name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, tail) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (stem, kind) = tail.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let hf = match stem {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// Undoes convert_hf_to_gguf's `permute` of q/k rows (interleaved RoPE pairs back to HF's
/// rotate-half halves): rows viewed as `(n_head, head_dim/2, 2)` become `(n_head, 2, head_dim/2)`.
pub fn unpermute_qk(t: &Tensor, n_head: usize) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims[0];
    if n_head == 0 || !rows.is_multiple_of(2 * n_head) {
        return Err(ModelError::Config(format!(
            "cannot un-permute {rows} rows into {n_head} heads of even width"
        )));
    }
    let half = rows / n_head / 2;
    let out = match dims.as_slice() {
        [_] => t
            .reshape((n_head, half, 2))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape(rows)?,
        [_, cols] => t
            .reshape((n_head, half, 2, *cols))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((rows, *cols))?,
        _ => {
            return Err(ModelError::Config(format!(
                "q/k tensor with unexpected rank: {dims:?}"
            )))
        }
    };
    Ok(out)
}

/// The model config described by GGUF metadata (`llama.*` keys).
pub fn config_from_metadata(path: &Path, md: &HashMap<String, Value>) -> Result<ModelConfig> {
    let m = GgufMeta::new(path, md);
    let arch_name = m
        .opt_str("general.architecture")?
        .ok_or_else(|| gguf_err(path, "missing `general.architecture`"))?;
    let arch = match arch_name {
        "llama" => Arch::Llama,
        other => {
            return Err(gguf_err(
                path,
                format!("GGUF architecture `{other}` is not supported (supported: llama)"),
            ))
        }
    };
    let a = arch_name;
    let usize_key = |k: &str| -> Result<usize> { Ok(m.u64(&format!("{a}.{k}"))? as usize) };
    let hidden_size = usize_key("embedding_length")?;
    let num_attention_heads = usize_key("attention.head_count")?;
    if num_attention_heads == 0 {
        return Err(gguf_err(path, "attention.head_count is 0"));
    }
    let num_key_value_heads = m
        .opt_u64(&format!("{a}.attention.head_count_kv"))?
        .map(|x| x as usize)
        .unwrap_or(num_attention_heads);
    if num_key_value_heads == 0 || !num_attention_heads.is_multiple_of(num_key_value_heads) {
        return Err(gguf_err(
            path,
            format!("head_count {num_attention_heads} is not a multiple of head_count_kv {num_key_value_heads}"),
        ));
    }
    let head_dim = match m.opt_u64(&format!("{a}.attention.key_length"))? {
        Some(k) => k as usize,
        None => match m.opt_u64(&format!("{a}.rope.dimension_count"))? {
            Some(r) => r as usize,
            None => hidden_size / num_attention_heads,
        },
    };
    if head_dim == 0 || !head_dim.is_multiple_of(2) {
        return Err(gguf_err(
            path,
            format!("head dimension {head_dim} must be even and > 0"),
        ));
    }
    let vocab_size = match m.opt_array("tokenizer.ggml.tokens")? {
        Some(t) => t.len(),
        None => usize_key("vocab_size")?,
    };
    let rope_scaling = match m.opt_str(&format!("{a}.rope.scaling.type"))? {
        None | Some("none") => None,
        Some("linear") => Some(RopeScaling::Linear {
            factor: m
                .opt_f64(&format!("{a}.rope.scaling.factor"))?
                .ok_or_else(|| gguf_err(path, "linear rope scaling without a factor"))?,
        }),
        Some(other) => {
            return Err(gguf_err(
                path,
                format!("rope scaling `{other}` is not supported (supported: linear)"),
            ))
        }
    };
    let tok_id = |k: &str| -> Result<Option<u32>> {
        Ok(m.opt_u64(&format!("tokenizer.ggml.{k}"))?.map(|x| x as u32))
    };
    let mut eos_token_ids: Vec<u32> = Vec::new();
    for k in ["eos_token_id", "eot_token_id"] {
        if let Some(id) = tok_id(k)? {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
        }
    }
    Ok(ModelConfig {
        arch,
        vocab_size,
        hidden_size,
        intermediate_size: usize_key("feed_forward_length")?,
        num_hidden_layers: usize_key("block_count")?,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        rms_norm_eps: m
            .opt_f64(&format!("{a}.attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5),
        rope_theta: m
            .opt_f64(&format!("{a}.rope.freq_base"))?
            .unwrap_or(10_000.0),
        rope_scaling,
        max_position_embeddings: m
            .opt_u64(&format!("{a}.context_length"))?
            .map(|x| x as usize)
            .unwrap_or(4096),
        // Metadata does not say; `load_gguf` sets it from whether `output.weight` exists.
        tie_word_embeddings: true,
        attention_bias: false,
        qk_norm: false,
        bos_token_id: tok_id("bos_token_id")?,
        eos_token_ids,
        torch_dtype: None,
    })
}

/// Rebuilds the tokenizer described by `tokenizer.ggml.*` metadata. Byte-level BPE
/// (`tokenizer.ggml.model = "gpt2"`) is supported; SentencePiece (`"llama"`) is refused with a
/// clear error.
pub fn tokenizer_from_metadata(path: &Path, md: &HashMap<String, Value>) -> Result<Tokenizer> {
    let m = GgufMeta::new(path, md);
    let model = m.opt_str("tokenizer.ggml.model")?.ok_or_else(|| {
        gguf_err(
            path,
            "no tokenizer in the file (`tokenizer.ggml.model` missing)",
        )
    })?;
    if model != "gpt2" {
        return Err(gguf_err(
            path,
            format!(
                "GGUF tokenizer model `{model}` is not supported (only byte-level BPE, `gpt2`); \
                 load the HF model directory instead"
            ),
        ));
    }
    let tokens = m.strings("tokenizer.ggml.tokens")?;
    if tokens.is_empty() {
        return Err(gguf_err(path, "empty `tokenizer.ggml.tokens`"));
    }
    let merges: Vec<(String, String)> = m
        .strings("tokenizer.ggml.merges")?
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| gguf_err(path, format!("merge {i} `{s}` is not `left right`")))
        })
        .collect::<Result<_>>()?;
    let types: Vec<i64> = match m.opt_array("tokenizer.ggml.token_type")? {
        Some(a) => a.iter().map(|v| value_i64(v).unwrap_or(1)).collect(),
        None => vec![1; tokens.len()],
    };
    if types.len() != tokens.len() {
        return Err(gguf_err(
            path,
            format!("{} token types for {} tokens", types.len(), tokens.len()),
        ));
    }
    let added: Vec<SpecialToken> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, &t))| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
        .map(|(i, (s, &t))| SpecialToken {
            content: s.clone(),
            id: i as u32,
            special: t == TOKEN_TYPE_CONTROL,
        })
        .collect();
    let pre_name = m.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
    let pre = PreTokenizerKind::from_ggml_pre(pre_name).unwrap_or_else(|| {
        tracing::warn!("unknown tokenizer.ggml.pre `{pre_name}`; using GPT-2 pre-tokenization");
        PreTokenizerKind::Gpt2
    });
    let inner = build_byte_level_bpe(&tokens, merges, &added, pre)
        .map_err(|e| gguf_err(path, e.to_string()))?;
    let token = |k: &str| -> Result<Option<String>> {
        match m.opt_u64(&format!("tokenizer.ggml.{k}"))? {
            None => Ok(None),
            Some(id) => tokens.get(id as usize).cloned().map(Some).ok_or_else(|| {
                gguf_err(
                    path,
                    format!("tokenizer.ggml.{k} = {id} is outside the vocabulary"),
                )
            }),
        }
    };
    let mut extra_eos_ids = Vec::new();
    for k in ["eot_token_id", "eom_token_id"] {
        if let Some(id) = m.opt_u64(&format!("tokenizer.ggml.{k}"))? {
            if (id as usize) < tokens.len() {
                extra_eos_ids.push(id as u32);
            }
        }
    }
    let specials = SpecialTokens {
        bos: token("bos_token_id")?,
        eos: token("eos_token_id")?,
        pad: token("padding_token_id")?,
        unk: token("unknown_token_id")?,
        extra_eos_ids,
        add_bos_token: m.opt_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(false),
    };
    let template = m.opt_str("tokenizer.chat_template")?;
    Tokenizer::new(inner, specials, template).map_err(|e| gguf_err(path, e.to_string()))
}

/// Loads a llama-architecture GGUF file: config, tensors dequantised to `dtype` on `device`
/// in HF names and layout, and the tokenizer.
pub fn load_gguf(path: &Path, dtype: DType, device: &Device) -> Result<GgufModel> {
    let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let file_size = file.metadata().map_err(|e| ModelError::io(path, e))?.len();
    let mut reader = BufReader::new(file);
    let content = read_content(path, &mut reader)?;
    let mut config = config_from_metadata(path, &content.metadata)?;
    config.tie_word_embeddings = !content.tensor_infos.contains_key("output.weight");
    config.torch_dtype = Some(
        match dtype {
            DType::BF16 => "bfloat16",
            DType::F16 => "float16",
            DType::F64 => "float64",
            _ => "float32",
        }
        .into(),
    );
    let tokenizer = tokenizer_from_metadata(path, &content.metadata)?;
    validate_tensor_infos(path, &content, file_size)?;

    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = HashMap::new();
    let cpu = Device::Cpu;
    for name in names {
        let Some(hf) = gguf_to_hf_name(name) else {
            tracing::warn!("{}: ignoring GGUF tensor `{name}`", path.display());
            continue;
        };
        let q = content
            .tensor(&mut reader, name, &cpu)
            .map_err(|e| gguf_err(path, format!("reading tensor `{name}`: {e}")))?;
        let mut t = q
            .dequantize(&cpu)
            .map_err(|e| gguf_err(path, format!("dequantising tensor `{name}`: {e}")))?;
        if hf.ends_with("q_proj.weight") || hf.ends_with("q_proj.bias") {
            t = unpermute_qk(&t, config.num_attention_heads)?;
        } else if hf.ends_with("k_proj.weight") || hf.ends_with("k_proj.bias") {
            t = unpermute_qk(&t, config.num_key_value_heads)?;
        }
        let t = t.to_dtype(dtype)?.to_device(device)?;
        tensors.insert(hf, t);
    }
    for (name, shape) in config.expected_tensors() {
        match tensors.get(&name) {
            None => {
                return Err(ModelError::MissingTensor {
                    name,
                    source_desc: path.display().to_string(),
                })
            }
            Some(t) if t.dims() != shape.as_slice() => {
                return Err(ModelError::ShapeMismatch {
                    name,
                    expected: shape,
                    actual: t.dims().to_vec(),
                })
            }
            Some(_) => {}
        }
    }
    Ok(GgufModel {
        config,
        tensors,
        tokenizer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};

    const H: usize = 32;
    const HEADS: usize = 4;
    const KV: usize = 2;
    const HD: usize = 8;
    const FF: usize = 64;

    fn tokens() -> Vec<String> {
        let mut t: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        t.extend(
            crate::tokenizer::bpe::bytes_to_unicode()
                .iter()
                .map(|c| c.to_string()),
        );
        t.push("Ġt".into());
        t
    }

    /// Deterministic values in [-1, 1].
    fn values(shape: &[usize], seed: usize) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) as f32 * 0.001).sin())
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// convert_hf_to_gguf's `permute`: rows (n, 2, hd/2) -> (n, hd/2, 2).
    fn permute(t: &Tensor, n: usize) -> Tensor {
        let (rows, cols) = t.dims2().unwrap();
        t.reshape((n, 2, rows / n / 2, cols))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((rows, cols))
            .unwrap()
    }

    struct Spec {
        arch: &'static str,
        tok_model: &'static str,
        dtype: GgmlDType,
        with_output: bool,
    }

    const LLAMA_F32: Spec = Spec {
        arch: "llama",
        tok_model: "gpt2",
        dtype: GgmlDType::F32,
        with_output: false,
    };

    /// Writes a one-layer llama GGUF; returns the HF tensors it encodes.
    fn write_gguf(path: &Path, spec: &Spec) -> HashMap<String, Tensor> {
        let toks = tokens();
        let vocab = toks.len();
        let mut hf: Vec<(String, &str, Tensor)> = vec![
            (
                "model.embed_tokens.weight".into(),
                "token_embd.weight",
                values(&[vocab, H], 1),
            ),
            (
                "model.norm.weight".into(),
                "output_norm.weight",
                values(&[H], 2),
            ),
        ];
        let l = "model.layers.0";
        for (hfn, gn, shape, seed) in [
            ("input_layernorm.weight", "attn_norm.weight", vec![H], 3),
            (
                "post_attention_layernorm.weight",
                "ffn_norm.weight",
                vec![H],
                4,
            ),
            (
                "self_attn.q_proj.weight",
                "attn_q.weight",
                vec![HEADS * HD, H],
                5,
            ),
            (
                "self_attn.k_proj.weight",
                "attn_k.weight",
                vec![KV * HD, H],
                6,
            ),
            (
                "self_attn.v_proj.weight",
                "attn_v.weight",
                vec![KV * HD, H],
                7,
            ),
            (
                "self_attn.o_proj.weight",
                "attn_output.weight",
                vec![H, HEADS * HD],
                8,
            ),
            ("mlp.gate_proj.weight", "ffn_gate.weight", vec![FF, H], 9),
            ("mlp.up_proj.weight", "ffn_up.weight", vec![FF, H], 10),
            ("mlp.down_proj.weight", "ffn_down.weight", vec![H, FF], 11),
        ] {
            let gname: &'static str = Box::leak(format!("blk.0.{gn}").into_boxed_str());
            hf.push((format!("{l}.{hfn}"), gname, values(&shape, seed)));
        }
        if spec.with_output {
            hf.push((
                "lm_head.weight".into(),
                "output.weight",
                values(&[vocab, H], 12),
            ));
        }
        let mut q = Vec::new();
        for (name, gname, t) in &hf {
            let stored = if name.ends_with("q_proj.weight") {
                permute(t, HEADS)
            } else if name.ends_with("k_proj.weight") {
                permute(t, KV)
            } else {
                t.clone()
            };
            let dt = if t.rank() == 1 {
                GgmlDType::F32
            } else {
                spec.dtype
            };
            q.push((*gname, QTensor::quantize(&stored, dt).unwrap()));
        }
        let s = |x: &str| gguf_file::Value::String(x.to_string());
        let mut types = vec![gguf_file::Value::I32(1); vocab];
        for t in types.iter_mut().take(3) {
            *t = gguf_file::Value::I32(3);
        }
        let a = spec.arch;
        let md: Vec<(String, gguf_file::Value)> = vec![
            ("general.architecture".into(), s(a)),
            (
                format!("{a}.embedding_length"),
                gguf_file::Value::U32(H as u32),
            ),
            (format!("{a}.block_count"), gguf_file::Value::U32(1)),
            (
                format!("{a}.feed_forward_length"),
                gguf_file::Value::U32(FF as u32),
            ),
            (
                format!("{a}.attention.head_count"),
                gguf_file::Value::U32(HEADS as u32),
            ),
            (
                format!("{a}.attention.head_count_kv"),
                gguf_file::Value::U32(KV as u32),
            ),
            (
                format!("{a}.rope.dimension_count"),
                gguf_file::Value::U32(HD as u32),
            ),
            (
                format!("{a}.rope.freq_base"),
                gguf_file::Value::F32(500_000.0),
            ),
            (
                format!("{a}.attention.layer_norm_rms_epsilon"),
                gguf_file::Value::F32(1e-6),
            ),
            (format!("{a}.context_length"), gguf_file::Value::U32(2048)),
            ("tokenizer.ggml.model".into(), s(spec.tok_model)),
            ("tokenizer.ggml.pre".into(), s("smollm")),
            (
                "tokenizer.ggml.tokens".into(),
                gguf_file::Value::Array(toks.iter().map(|t| s(t)).collect()),
            ),
            (
                "tokenizer.ggml.token_type".into(),
                gguf_file::Value::Array(types),
            ),
            (
                "tokenizer.ggml.merges".into(),
                gguf_file::Value::Array(vec![s("Ġ t")]),
            ),
            (
                "tokenizer.ggml.bos_token_id".into(),
                gguf_file::Value::U32(1),
            ),
            (
                "tokenizer.ggml.eos_token_id".into(),
                gguf_file::Value::U32(2),
            ),
            (
                "tokenizer.ggml.padding_token_id".into(),
                gguf_file::Value::U32(0),
            ),
            (
                "tokenizer.chat_template".into(),
                s("{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% endfor %}"),
            ),
        ];
        let md_refs: Vec<(&str, &gguf_file::Value)> =
            md.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let q_refs: Vec<(&str, &QTensor)> = q.iter().map(|(n, t)| (*n, t)).collect();
        let mut f = std::fs::File::create(path).unwrap();
        gguf_file::write(&mut f, &md_refs, &q_refs).unwrap();
        hf.into_iter().map(|(n, _, t)| (n, t)).collect()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn f32_gguf_round_trips_exactly() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.gguf");
        let want = write_gguf(&p, &LLAMA_F32);
        let m = load_gguf(&p, DType::F32, &Device::Cpu).unwrap();
        let c = &m.config;
        assert_eq!(
            (
                c.hidden_size,
                c.num_attention_heads,
                c.num_key_value_heads,
                c.head_dim
            ),
            (H, HEADS, KV, HD)
        );
        assert_eq!((c.intermediate_size, c.num_hidden_layers), (FF, 1));
        assert_eq!(c.vocab_size, 260);
        assert_eq!(c.rope_theta, 500_000.0);
        assert_eq!(c.rms_norm_eps, 1e-6);
        assert_eq!(c.max_position_embeddings, 2048);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.eos_token_ids, vec![2]);
        assert_eq!(m.tensors.len(), want.len());
        for (name, t) in &want {
            assert_eq!(max_diff(&m.tensors[name], t), 0.0, "{name}");
        }
        let tok = &m.tokenizer;
        assert_eq!(
            tok.encode("a t<|im_end|>", false).unwrap(),
            vec![3 + 97, 259, 2]
        );
        assert_eq!(tok.eos_token_ids(), &[2]);
        assert_eq!(tok.pad_token_id(), Some(0));
        let msgs = [crate::tokenizer::ChatMessage::new("user", "hi")];
        assert_eq!(
            tok.apply_chat_template(&msgs, false).unwrap(),
            "<|im_start|>hi<|im_end|>"
        );
    }

    #[test]
    fn quantised_gguf_dequantises_close_and_untied() {
        let d = tempfile::tempdir().unwrap();
        for (dtype, tol) in [
            (GgmlDType::F16, 1e-3),
            (GgmlDType::Q8_0, 2e-2),
            (GgmlDType::Q4_1, 0.1),
            (GgmlDType::Q4_0, 0.15),
        ] {
            let p = d.path().join(format!("m-{dtype:?}.gguf"));
            let spec = Spec {
                dtype,
                with_output: true,
                ..LLAMA_F32
            };
            let want = write_gguf(&p, &spec);
            let m = load_gguf(&p, DType::BF16, &Device::Cpu).unwrap();
            assert!(!m.config.tie_word_embeddings);
            for (name, t) in &want {
                let got = m.tensors[name].to_dtype(DType::F32).unwrap();
                assert_eq!(m.tensors[name].dtype(), DType::BF16);
                let err = max_diff(&got, t);
                assert!(err < tol + 8e-3, "{dtype:?} {name}: max error {err}");
            }
        }
    }

    #[test]
    fn corrupt_files_give_gguf_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.gguf");
        write_gguf(&p, &LLAMA_F32);
        let bytes = std::fs::read(&p).unwrap();
        let cut = d.path().join("cut.gguf");
        let n = bytes.len();
        for len in [0, 3, 4, 8, 16, 24, 40, 100, 1000, n / 2, n - 100, n - 1] {
            std::fs::write(&cut, &bytes[..len]).unwrap();
            let err = load_gguf(&cut, DType::F32, &Device::Cpu).unwrap_err();
            assert!(matches!(err, ModelError::Gguf { .. }), "len {len}: {err}");
        }
        // Garbage, and garbage behind a valid magic.
        let mut junk: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&cut, &junk).unwrap();
        let err = load_gguf(&cut, DType::F32, &Device::Cpu).unwrap_err();
        assert!(matches!(err, ModelError::Gguf { .. }), "{err}");
        junk[..4].copy_from_slice(b"GGUF");
        junk[4..8].copy_from_slice(&3u32.to_le_bytes());
        std::fs::write(&cut, &junk).unwrap();
        let err = load_gguf(&cut, DType::F32, &Device::Cpu).unwrap_err();
        assert!(matches!(err, ModelError::Gguf { .. }), "{err}");
        // Flipped bytes inside the header.
        for pos in [9, 17, 30, 60, 200] {
            let mut b = bytes.clone();
            b[pos] ^= 0xff;
            std::fs::write(&cut, &b).unwrap();
            let _ = load_gguf(&cut, DType::F32, &Device::Cpu);
        }
        assert!(matches!(
            load_gguf(&d.path().join("absent.gguf"), DType::F32, &Device::Cpu),
            Err(ModelError::Io { .. })
        ));
    }

    #[test]
    fn unsupported_arch_and_tokenizer_are_clear_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.gguf");
        write_gguf(
            &p,
            &Spec {
                arch: "gemma2",
                ..LLAMA_F32
            },
        );
        let err = load_gguf(&p, DType::F32, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("architecture `gemma2` is not supported"),
            "{err}"
        );
        write_gguf(
            &p,
            &Spec {
                tok_model: "llama",
                ..LLAMA_F32
            },
        );
        let err = load_gguf(&p, DType::F32, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tokenizer model `llama` is not supported"),
            "{err}"
        );
    }

    #[test]
    fn names_map_to_hf() {
        assert_eq!(
            gguf_to_hf_name("blk.12.attn_q.weight").as_deref(),
            Some("model.layers.12.self_attn.q_proj.weight")
        );
        assert_eq!(
            gguf_to_hf_name("blk.0.ffn_down.weight").as_deref(),
            Some("model.layers.0.mlp.down_proj.weight")
        );
        assert_eq!(
            gguf_to_hf_name("output.weight").as_deref(),
            Some("lm_head.weight")
        );
        assert_eq!(gguf_to_hf_name("rope_freqs.weight"), None);
        assert_eq!(gguf_to_hf_name("blk.x.attn_q.weight"), None);
        // un-permute inverts permute, for 1-D (bias) rows too.
        let t = values(&[16, 3], 5);
        assert_eq!(
            max_diff(&unpermute_qk(&permute(&t, 2), 2).unwrap(), &t),
            0.0
        );
        let b = Tensor::arange(0f32, 8., &Device::Cpu).unwrap();
        let v: Vec<f32> = unpermute_qk(&b, 1).unwrap().to_vec1().unwrap();
        assert_eq!(v, [0., 2., 4., 6., 1., 3., 5., 7.]);
        assert!(unpermute_qk(&t, 5).is_err());
    }
}
