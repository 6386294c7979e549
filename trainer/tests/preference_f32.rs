//! The preference losses in f32 under candle autograd, as the trainer runs them, against the
//! float64 golden results of TRL 1.16 (`tests/golden/trl_public.json`, kind `dpo`): the loss and
//! both gradients agree to 1e-5 relative on every case of every loss type.

use candle_core::{DType, Device, Tensor, Var};
use oxrl_trainer::preference::{preference_loss, PreferenceLossConfig, SideLogps};
use serde_json::Value;

fn flat(v: &Value, out: &mut Vec<f64>, shape: &mut Vec<usize>, depth: usize) {
    match v {
        Value::Array(items) => {
            if shape.len() == depth {
                shape.push(items.len());
            }
            for it in items {
                flat(it, out, shape, depth + 1);
            }
        }
        other => out.push(other.as_f64().expect("a number")),
    }
}

fn tensor(v: &Value, dtype: DType) -> Tensor {
    let (mut data, mut shape) = (Vec::new(), Vec::new());
    flat(v, &mut data, &mut shape, 0);
    Tensor::from_vec(data, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn numbers(v: &Value) -> Vec<f64> {
    let (mut data, mut shape) = (Vec::new(), Vec::new());
    flat(v, &mut data, &mut shape, 0);
    data
}

/// |got − want| ≤ 1e-5·|want| + 1e-6·max(max|want|, unit): relative, with a floor for entries
/// near 0 next to the size of the terms they are made of (`unit` = β/B for gradients: each pair's
/// term is O(β/B), and `apo_down`'s gradient is the difference of two such terms that cancel).
fn assert_close(id: &str, what: &str, got: &[f64], want: &[f64], unit: f64) {
    assert_eq!(got.len(), want.len(), "{id} {what}: length");
    // A lone number (the loss) is compared purely relatively.
    let scale = if want.len() > 1 {
        want.iter().fold(unit, |m, x| m.max(x.abs()))
    } else {
        0.0
    };
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-5 * w.abs() + 1e-6 * scale + 1e-12;
        assert!((g - w).abs() <= tol, "{id} {what}[{i}]: f32 {g} vs f64 {w}");
    }
}

#[test]
fn preference_losses_in_f32_match_the_f64_golden_results() {
    let path = format!(
        "{}/tests/golden/trl_public.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    let results = doc["results"].as_array().unwrap();
    let mut checked = std::collections::BTreeMap::<String, usize>::new();
    for (case, want) in cases.iter().zip(results) {
        if case["kind"] != "dpo" {
            continue;
        }
        let id = case["id"].as_str().unwrap();
        let f32_ = DType::F32;
        let mut chosen = tensor(&case["chosen_logps"], f32_);
        let mut rejected = tensor(&case["rejected_logps"], f32_);
        if chosen.rank() == 1 {
            chosen = chosen.unsqueeze(1).unwrap();
            rejected = rejected.unsqueeze(1).unwrap();
        }
        let mask = |key: &str| (!case[key].is_null()).then(|| tensor(&case[key], f32_));
        let (cm, rm) = (mask("chosen_mask"), mask("rejected_mask"));
        let ref_c = tensor(&case["ref_chosen_logps"], f32_);
        let ref_r = tensor(&case["ref_rejected_logps"], f32_);
        let cfg: PreferenceLossConfig = serde_json::from_value(case["config"].clone()).unwrap();
        let xc = Var::from_tensor(&chosen).unwrap();
        let xr = Var::from_tensor(&rejected).unwrap();
        let out = preference_loss(
            &SideLogps {
                logps: xc.as_tensor(),
                mask: cm.as_ref(),
            },
            &SideLogps {
                logps: xr.as_tensor(),
                mask: rm.as_ref(),
            },
            &ref_c,
            &ref_r,
            &cfg,
        )
        .unwrap();
        assert_eq!(out.loss.dtype(), DType::F32, "{id}: the loss stays f32");
        let grads = out.loss.backward().unwrap();
        let host = |t: &Tensor| {
            t.to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        };
        let loss = out
            .loss
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert_close(id, "loss", &[loss], &[want["loss"].as_f64().unwrap()], 0.0);
        let unit = cfg.beta / chosen.dims()[0] as f64;
        let gc = grads
            .get(&xc)
            .map(host)
            .unwrap_or(vec![0.0; chosen.elem_count()]);
        let gr = grads
            .get(&xr)
            .map(host)
            .unwrap_or(vec![0.0; rejected.elem_count()]);
        assert_close(
            id,
            "grad_chosen_logps",
            &gc,
            &numbers(&want["grad_chosen_logps"]),
            unit,
        );
        assert_close(
            id,
            "grad_rejected_logps",
            &gr,
            &numbers(&want["grad_rejected_logps"]),
            unit,
        );
        let lt = case["config"]["loss_type"].to_string();
        *checked.entry(lt).or_default() += 1;
    }
    eprintln!("f32 preference cases per loss_type: {checked:?}");
    assert!(
        checked.len() >= 15,
        "every loss type is covered: {checked:?}"
    );
}
