//! Saving and loading the AdamW state bit-exactly: one safetensors file holding the moments
//! (`exp_avg/<name>`, `exp_avg_sq/<name>`) and bf16/f16 masters (`master/<name>`) as raw bytes,
//! with the scalars (format version, call count, per-parameter step counts and dtypes, the
//! config for reference) as JSON under the metadata key [`METADATA_KEY`].
//!
//! Loading checks that the file names exactly this optimizer's parameters, with the same shapes
//! and state dtypes, and restores every tensor onto its parameter's device. The file is written
//! to `<path>.tmp` and renamed, so an interrupted save never leaves a torn file.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use candle_core::safetensors::Load;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::adamw::{AdamW, AdamWConfig};
use super::error::{OptimError, Result};

/// The safetensors metadata key that holds the JSON scalars.
pub const METADATA_KEY: &str = "oxrl.adamw";
/// The state-file format version written by this code.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamMeta {
    name: String,
    /// The parameter's dtype when saved (informational; the state dtype must match on load).
    dtype: String,
    step: u64,
    has_moments: bool,
    has_master: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    format: u32,
    steps: u64,
    params: Vec<ParamMeta>,
    config: AdamWConfig,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OptimError + '_ {
    move |source| OptimError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn save(opt: &AdamW, path: &Path) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut params = Vec::with_capacity(opt.params.len());
    for p in &opt.params {
        if let Some((m, v)) = &p.state.moments {
            tensors.push((
                format!("exp_avg/{}", p.name),
                m.to_device(&candle_core::Device::Cpu)?,
            ));
            tensors.push((
                format!("exp_avg_sq/{}", p.name),
                v.to_device(&candle_core::Device::Cpu)?,
            ));
        }
        if let Some(master) = &p.state.master {
            tensors.push((
                format!("master/{}", p.name),
                master.to_device(&candle_core::Device::Cpu)?,
            ));
        }
        params.push(ParamMeta {
            name: p.name.clone(),
            dtype: format!("{:?}", p.var.dtype()).to_lowercase(),
            step: p.state.step,
            has_moments: p.state.moments.is_some(),
            has_master: p.state.master.is_some(),
        });
    }
    let meta = Meta {
        format: FORMAT_VERSION,
        steps: opt.steps,
        params,
        config: opt.cfg.clone(),
    };
    let json = serde_json::to_string(&meta)
        .map_err(|e| OptimError::state(path, format!("encoding metadata: {e}")))?;
    let info = HashMap::from([(METADATA_KEY.to_string(), json)]);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    // Streamed tensor by tensor: the moments are twice the model, too much to hold as one buffer.
    safetensors::serialize_to_file(
        tensors.iter().map(|(k, t)| (k.as_str(), t)),
        Some(info),
        &tmp,
    )
    .map_err(|e| OptimError::state(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
}

pub(crate) fn load(opt: &mut AdamW, path: &Path) -> Result<()> {
    let data = std::fs::read(path).map_err(io(path))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&data)
        .map_err(|e| OptimError::state(path, e.to_string()))?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(METADATA_KEY))
        .ok_or_else(|| OptimError::state(path, format!("no `{METADATA_KEY}` metadata")))?;
    let meta: Meta = serde_json::from_str(json)
        .map_err(|e| OptimError::state(path, format!("bad metadata: {e}")))?;
    if meta.format != FORMAT_VERSION {
        return Err(OptimError::state(
            path,
            format!("format {} (this build reads {FORMAT_VERSION})", meta.format),
        ));
    }
    let ours: BTreeSet<&str> = opt.params.iter().map(|p| p.name.as_str()).collect();
    let theirs: BTreeSet<&str> = meta.params.iter().map(|p| p.name.as_str()).collect();
    if ours != theirs || theirs.len() != meta.params.len() {
        let missing: Vec<_> = ours.difference(&theirs).collect();
        let extra: Vec<_> = theirs.difference(&ours).collect();
        return Err(OptimError::state(
            path,
            format!(
                "parameter names differ: missing from file {missing:?}, not in optimizer {extra:?}"
            ),
        ));
    }
    let st = safetensors::SafeTensors::deserialize(&data)
        .map_err(|e| OptimError::state(path, e.to_string()))?;
    let by_name: HashMap<&str, &ParamMeta> =
        meta.params.iter().map(|p| (p.name.as_str(), p)).collect();
    // Read and check everything first, then commit, so a bad file leaves the optimizer as it was.
    let mut restored = Vec::with_capacity(opt.params.len());
    for p in &opt.params {
        let pm = by_name[p.name.as_str()];
        let device = p.var.device();
        let want_dtype = p.state_dtype();
        let get = |key: String| -> Result<Tensor> {
            let view = st
                .tensor(&key)
                .map_err(|e| OptimError::state(path, format!("`{key}`: {e}")))?;
            let t = view.load(device)?;
            if t.dtype() != want_dtype || t.dims() != p.var.dims() {
                return Err(OptimError::state(
                    path,
                    format!(
                        "`{key}` is {:?} {:?}; parameter needs {want_dtype:?} {:?}",
                        t.dtype(),
                        t.dims(),
                        p.var.dims()
                    ),
                ));
            }
            Ok(t)
        };
        let moments = if pm.has_moments {
            Some((
                get(format!("exp_avg/{}", p.name))?,
                get(format!("exp_avg_sq/{}", p.name))?,
            ))
        } else {
            None
        };
        let master = match (pm.has_master, p.needs_master()) {
            (true, true) => Some(get(format!("master/{}", p.name))?),
            (false, _) => None,
            (true, false) => {
                return Err(OptimError::state(
                    path,
                    format!(
                        "`{}` has a master copy but the parameter is {:?}",
                        p.name,
                        p.var.dtype()
                    ),
                ))
            }
        };
        if pm.has_moments != (pm.step > 0) {
            return Err(OptimError::state(
                path,
                format!(
                    "`{}`: step {} with has_moments {}",
                    p.name, pm.step, pm.has_moments
                ),
            ));
        }
        restored.push((pm.step, moments, master));
    }
    for (p, (step, moments, master)) in opt.params.iter_mut().zip(restored) {
        p.state.step = step;
        p.state.moments = moments;
        p.state.master = master;
    }
    opt.steps = meta.steps;
    Ok(())
}
