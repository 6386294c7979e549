//! Evaluates `kl_controller` cases: verl's `get_kl_controller(type, kl_coef, target_kl, horizon)`
//! fed `updates` `[[current_kl, n_steps], …]` → `values` (the coefficient after each update).

use serde_json::{Map, Value};

use super::reader::num;
use super::{CaseError, CaseReader, CaseResult};
use crate::kl::controller::KlController;

/// Evaluates one case.
pub(super) fn evaluate(r: &CaseReader) -> CaseResult<Map<String, Value>> {
    // verl's `algorithm.kl_ctrl` defaults.
    let kl_type = r.str_or("type", "fixed")?;
    let kl_coef = r.f64_or("kl_coef", 0.001)?;
    let target_kl = r.f64_or("target_kl", 0.1)?;
    let horizon = r.f64_or("horizon", 10000.0)?;
    let mut ctl = KlController::from_verl(kl_type, kl_coef, target_kl, horizon)?;
    let updates = match r.numbers("updates")? {
        None => Vec::new(),
        Some((flat, shape)) => {
            if flat.is_empty() {
                Vec::new()
            } else if shape.len() != 2 || shape[1] != 2 {
                return Err(invalid(format!(
                    "expected [[current_kl, n_steps], …], got shape {shape:?}"
                )));
            } else {
                flat.chunks(2).map(|p| (p[0], p[1])).collect()
            }
        }
    };
    let mut values = Vec::with_capacity(updates.len());
    for (i, (kl, n)) in updates.into_iter().enumerate() {
        if n < 0.0 || n.fract() != 0.0 {
            return Err(invalid(format!(
                "updates[{i}]: n_steps must be a non-negative integer, got {n}"
            )));
        }
        ctl.update(kl, n as usize)?;
        values.push(num(ctl.value()));
    }
    let mut out = Map::new();
    out.insert("values".into(), Value::Array(values));
    Ok(out)
}

fn invalid(msg: String) -> CaseError {
    CaseError::Invalid {
        field: "updates".into(),
        msg,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::cases::evaluate_case;

    #[test]
    fn controller_case_and_its_errors() {
        let ok = evaluate_case(&json!({
            "id": "a", "kind": "kl_controller", "type": "adaptive", "kl_coef": 0.1,
            "target_kl": 0.5, "horizon": 100, "updates": [[1.0, 10], [0.45, 50]]
        }));
        let v: Vec<f64> = ok["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert!(
            (v[0] - 0.102).abs() < 1e-15 && (v[1] - 0.0969).abs() < 1e-15,
            "{v:?}"
        );
        let bad = evaluate_case(&json!({"id": "b", "kind": "kl_controller", "type": "pid"}));
        assert!(bad["error"].as_str().unwrap().contains("adaptive"));
        let bad = evaluate_case(&json!({
            "id": "c", "kind": "kl_controller", "type": "fixed", "updates": [[0.1, 1.5]]
        }));
        assert!(bad["error"].as_str().unwrap().contains("n_steps"));
        let bad = evaluate_case(&json!({
            "id": "d", "kind": "kl_controller", "type": "fixed", "updates": [0.1, 2]
        }));
        assert!(bad["error"].as_str().unwrap().contains("updates"));
    }
}
