//! Saving a model in HF layout (`config.json`, `model.safetensors`, optional LoRA adapter files),
//! atomically: everything is written to a temporary sibling directory which is then renamed over
//! the destination, so a crash never leaves a half-written checkpoint behind.

use crate::decoder::Transformer;
use crate::error::{ModelError, Result};
use crate::weights::save_file;
use std::path::{Path, PathBuf};

/// Files a caller adds to the checkpoint directory before it is published (e.g. the tokenizer).
pub type ExtraFiles<'a> = &'a dyn Fn(&Path) -> Result<()>;

/// Writes `model` (LoRA merged into the base weights) to `dir` in HF layout. `extra` writes further
/// files (tokenizer, generation config) into the temporary directory before the rename.
pub fn save_model(model: &Transformer, dir: &Path, extra: Option<ExtraFiles<'_>>) -> Result<()> {
    let tmp = temp_sibling(dir)?;
    let result = (|| {
        let mut cfg = model.config().to_hf_json();
        cfg["torch_dtype"] = serde_json::json!(dtype_name(model.dtype()));
        let path = tmp.join("config.json");
        let text =
            serde_json::to_string_pretty(&cfg).map_err(|e| ModelError::Config(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))?;
        save_file(&model.named_tensors(true)?, &tmp.join("model.safetensors"))?;
        if let Some(extra) = extra {
            extra(&tmp)?;
        }
        publish(&tmp, dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn dtype_name(d: candle_core::DType) -> &'static str {
    match d {
        candle_core::DType::BF16 => "bfloat16",
        candle_core::DType::F16 => "float16",
        candle_core::DType::F64 => "float64",
        _ => "float32",
    }
}

fn temp_sibling(dir: &Path) -> Result<PathBuf> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("model");
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    Ok(tmp)
}

/// Moves `tmp` to `dir`, replacing an existing checkpoint (the old one is removed only after the
/// new one is in place under its final name).
fn publish(tmp: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        let old = dir.with_extension(format!("old-{}", std::process::id()));
        std::fs::rename(dir, &old).map_err(|e| ModelError::io(dir, e))?;
        std::fs::rename(tmp, dir).map_err(|e| ModelError::io(dir, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| ModelError::io(&old, e))?;
    } else {
        std::fs::rename(tmp, dir).map_err(|e| ModelError::io(dir, e))?;
    }
    Ok(())
}
