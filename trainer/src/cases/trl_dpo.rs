//! Evaluates `dpo` cases: TRL's `DPOTrainer._compute_loss` with the model replaced by given
//! per-token (or summed) log-probs → `loss`, `grad_chosen_logps`, `grad_rejected_logps`,
//! `chosen_rewards`, `rejected_rewards`, and TRL's logged `metrics` (one-element lists).

use candle_core::{Device, Tensor, Var};
use serde_json::{Map, Value};

use super::reader::{num, tensor_json};
use super::{CaseError, CaseReader, CaseResult};
use crate::preference::{preference_loss, PreferenceLossConfig, SideLogps, TokenStats};

/// Evaluates one case.
pub(super) fn evaluate(r: &CaseReader) -> CaseResult<Map<String, Value>> {
    let chosen = seq_or_tokens(r, "chosen_logps")?;
    let rejected = seq_or_tokens(r, "rejected_logps")?;
    let per_token = chosen.rank() == 2;
    // TRL sees summed inputs as one-token completions: their gradients come back [B × 1].
    let chosen = as_tokens(chosen)?;
    let rejected = as_tokens(rejected)?;
    let (chosen_mask, rejected_mask) = if per_token {
        (
            opt_mask(r, "chosen_mask", chosen.dims())?,
            opt_mask(r, "rejected_mask", rejected.dims())?,
        )
    } else {
        (None, None)
    };
    let b = chosen.dims()[0];
    let ref_chosen = seq_or_tokens(r, "ref_chosen_logps")?;
    let ref_rejected = seq_or_tokens(r, "ref_rejected_logps")?;
    // The config goes through the same serde path as the trainer's (TRL's names and defaults;
    // unknown fields and names are errors listing the accepted ones).
    let cfg: PreferenceLossConfig = match r.raw("config") {
        None => PreferenceLossConfig::default(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| CaseError::Invalid {
            field: "config".into(),
            msg: e.to_string(),
        })?,
    };

    let xc = Var::from_tensor(&chosen)?;
    let xr = Var::from_tensor(&rejected)?;
    let c_side = SideLogps {
        logps: xc.as_tensor(),
        mask: chosen_mask.as_ref(),
    };
    let r_side = SideLogps {
        logps: xr.as_tensor(),
        mask: rejected_mask.as_ref(),
    };
    let out = preference_loss(&c_side, &r_side, &ref_chosen, &ref_rejected, &cfg)?;
    let grads = out.loss.backward()?;
    let grad_c = grads.get(&xc).cloned().unwrap_or(chosen.zeros_like()?);
    let grad_r = grads.get(&xr).cloned().unwrap_or(rejected.zeros_like()?);

    // No logits in the cases: the logit statistics read 0, as TRL logs them for the golden
    // harness's one-column logits. Its attention masks put a one-token prompt before each
    // completion of T tokens (T = 1 for summed inputs), so TRL's token counter reads 2·B·(T + 1).
    let t = if per_token { chosen.dims()[1] } else { 1 };
    let tokens = TokenStats {
        num_tokens: (2 * b * (t + 1)) as f64,
        ..TokenStats::default()
    };
    let mut metrics = Map::new();
    for (k, v) in out.metrics.trl_metrics(&tokens) {
        metrics.insert(k.to_string(), Value::Array(vec![num(v)]));
    }
    let mut res = Map::new();
    res.insert("loss".into(), num(out.loss.to_scalar::<f64>()?));
    res.insert("grad_chosen_logps".into(), tensor_json(&grad_c)?);
    res.insert("grad_rejected_logps".into(), tensor_json(&grad_r)?);
    res.insert("chosen_rewards".into(), tensor_json(&out.chosen_rewards)?);
    res.insert(
        "rejected_rewards".into(),
        tensor_json(&out.rejected_rewards)?,
    );
    res.insert("metrics".into(), Value::Object(metrics));
    Ok(res)
}

/// A `[B × T]` mask when present (all zeros rejected).
fn opt_mask(r: &CaseReader, key: &str, dims: &[usize]) -> CaseResult<Option<Tensor>> {
    if r.has(key) {
        Ok(Some(r.mask(key, dims)?))
    } else {
        r.accept(&[key]);
        Ok(None)
    }
}

/// A required `[B]` or `[B × T]` f64 tensor.
fn seq_or_tokens(r: &CaseReader, key: &str) -> CaseResult<Tensor> {
    let (data, shape) = r
        .numbers(key)?
        .ok_or_else(|| CaseError::Missing(key.to_string()))?;
    if !(shape.len() == 1 || shape.len() == 2) || shape[0] == 0 {
        return Err(CaseError::Invalid {
            field: key.into(),
            msg: format!("expected [B] sums or [B × T] per-token log-probs, got shape {shape:?}"),
        });
    }
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
}

/// `[B]` as `[B × 1]`; `[B × T]` unchanged.
fn as_tokens(t: Tensor) -> CaseResult<Tensor> {
    Ok(if t.rank() == 1 { t.unsqueeze(1)? } else { t })
}
