//! Reading and writing weights in safetensors: a single `model.safetensors`, a sharded checkpoint
//! (`model.safetensors.index.json`), or an in-memory buffer (HTTP weight updates). Files are
//! memory-mapped; truncated or corrupt files are reported with their path.

use crate::error::{ModelError, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Named tensors, in HF naming.
pub type TensorMap = HashMap<String, Tensor>;

fn weights_err(path: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::Weights {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The safetensors files of a model directory: the shards named by the index, or the single file.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| weights_err(&index, e))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| weights_err(&index, "no `weight_map` object"))?;
        let files: BTreeSet<&str> = map.values().filter_map(|f| f.as_str()).collect();
        if files.is_empty() {
            return Err(weights_err(&index, "empty `weight_map`"));
        }
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(weights_err(
        dir,
        "no model.safetensors or model.safetensors.index.json",
    ))
}

/// Loads every tensor of a model directory, converted to `dtype` on `device`.
pub fn load_dir(dir: &Path, dtype: DType, device: &Device) -> Result<TensorMap> {
    let files = weight_files(dir)?;
    let mut out = HashMap::new();
    for f in &files {
        out.extend(load_file(f, dtype, device)?);
    }
    Ok(out)
}

/// Loads every tensor of one safetensors file (memory-mapped).
pub fn load_file(path: &Path, dtype: DType, device: &Device) -> Result<TensorMap> {
    // SAFETY: the file is mapped read-only; oxrl never writes a checkpoint in place (saves go to
    // a temporary directory and are renamed), so the mapping is not mutated while in use.
    let st = unsafe { MmapedSafetensors::new(path) }.map_err(|e| weights_err(path, e))?;
    let mut out = HashMap::new();
    for (name, _) in st.tensors() {
        let t = st
            .load(&name, device)
            .map_err(|e| weights_err(path, format!("tensor `{name}`: {e}")))?;
        out.insert(name, convert(t, dtype).map_err(|e| weights_err(path, e))?);
    }
    Ok(out)
}

/// Parses a safetensors buffer (e.g. an HTTP request body).
pub fn tensors_from_safetensors_bytes(
    bytes: &[u8],
    dtype: DType,
    device: &Device,
) -> Result<TensorMap> {
    let here = Path::new("<request body>");
    let map =
        candle_core::safetensors::load_buffer(bytes, device).map_err(|e| weights_err(here, e))?;
    map.into_iter()
        .map(|(k, t)| Ok((k, convert(t, dtype).map_err(|e| weights_err(here, e))?)))
        .collect()
}

fn convert(t: Tensor, dtype: DType) -> candle_core::Result<Tensor> {
    if !t.dtype().is_float() {
        candle_core::bail!("dtype {:?} is not a floating-point type", t.dtype());
    }
    if t.dtype() == dtype {
        Ok(t)
    } else {
        t.to_dtype(dtype)
    }
}

/// Serialises tensors into one safetensors buffer (e.g. the body of a `POST /v1/weights`), in
/// name order so the same tensors give the same bytes.
pub fn tensors_to_safetensors_bytes(tensors: &TensorMap) -> Result<Vec<u8>> {
    let mut named: Vec<(&String, &Tensor)> = tensors.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    let contiguous = named
        .into_iter()
        .map(|(k, t)| Ok((k.as_str(), t.contiguous()?)))
        .collect::<candle_core::Result<Vec<_>>>()?;
    safetensors::serialize(contiguous, None)
        .map_err(|e| weights_err(Path::new("<weight update>"), e))
}

/// Writes tensors as one safetensors file, atomically (temporary file, then rename).
pub fn save_file(tensors: &TensorMap, path: &Path) -> Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    candle_core::safetensors::save(tensors, &tmp).map_err(|e| weights_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))
}
