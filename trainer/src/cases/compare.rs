//! Comparing computed results with reference results (the golden files): every number within
//! `rel · |expected| + abs`, field by field, with a report per kind.
//!
//! Reference-only fields (`agree…`, `formula…`, `patched`, `error` notes of the generator) are not
//! compared; a field the reference has and the result lacks is a failure. For the `adv` kind
//! advantages and returns are compared under `response_mask` only (FORMAT.md).

use std::collections::BTreeMap;

use serde_json::Value;

/// Fields of a reference result that describe how it was made, not what it is.
const NOT_COMPARED: [&str; 8] = [
    "id",
    "kind",
    "agree",
    "agree_grad",
    "agree_ref_losses_formula",
    "formula_by",
    "patched",
    "error",
];

/// Whether a reference field is compared.
fn compared(key: &str) -> bool {
    !NOT_COMPARED.contains(&key) && !key.starts_with("formula") && !key.starts_with("ref_losses")
}

/// The tolerance: |got − want| ≤ rel·|want| + abs.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Relative part.
    pub rel: f64,
    /// Absolute part.
    pub abs: f64,
}

impl Default for Tolerance {
    /// FORMAT.md's: 1e-6 relative plus 1e-9 absolute.
    fn default() -> Self {
        Self {
            rel: 1e-6,
            abs: 1e-9,
        }
    }
}

/// Compares one result with its reference; `Err` names the first field that differs.
pub fn compare_result(
    case: &Value,
    got: &Value,
    want: &Value,
    tol: Tolerance,
) -> Result<(), String> {
    if let Some(e) = got.get("error") {
        return Err(format!("evaluation failed: {e}"));
    }
    let want_obj = want
        .as_object()
        .ok_or("reference result is not an object")?;
    let mask = if case.get("kind").and_then(Value::as_str) == Some("adv") {
        case.get("response_mask")
    } else {
        None
    };
    for (key, w) in want_obj {
        if !compared(key) {
            continue;
        }
        let g = got
            .get(key)
            .ok_or_else(|| format!("`{key}` missing from the result"))?;
        let m = if key == "advantages" || key == "returns" {
            mask
        } else {
            None
        };
        compare_value(key, g, w, m, tol)?;
    }
    Ok(())
}

fn compare_value(
    path: &str,
    got: &Value,
    want: &Value,
    mask: Option<&Value>,
    tol: Tolerance,
) -> Result<(), String> {
    if let Some(m) = mask {
        if m.as_f64() == Some(0.0) {
            return Ok(());
        }
    }
    match (got, want) {
        (_, Value::Number(w)) => {
            let w = w.as_f64().unwrap_or(f64::NAN);
            let g = got
                .as_f64()
                .ok_or_else(|| format!("`{path}`: expected a number {w}, got {got}"))?;
            if (g - w).abs() <= tol.rel * w.abs() + tol.abs {
                Ok(())
            } else {
                Err(format!(
                    "`{path}`: got {g}, want {w} (|Δ| = {:.3e})",
                    (g - w).abs()
                ))
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            if g.len() != w.len() {
                return Err(format!("`{path}`: length {} vs {}", g.len(), w.len()));
            }
            for (i, (gi, wi)) in g.iter().zip(w).enumerate() {
                let mi = mask.and_then(|m| m.get(i));
                compare_value(&format!("{path}[{i}]"), gi, wi, mi, tol)?;
            }
            Ok(())
        }
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                let gv = g
                    .get(k)
                    .ok_or_else(|| format!("`{path}.{k}` missing from the result"))?;
                compare_value(&format!("{path}.{k}"), gv, wv, None, tol)?;
            }
            Ok(())
        }
        (_, Value::Null) if got.is_null() => Ok(()),
        (g, w) if g == w => Ok(()),
        (g, w) => Err(format!("`{path}`: got {g}, want {w}")),
    }
}

/// Per-kind tallies of a comparison run.
#[derive(Debug, Default)]
pub struct Report {
    /// kind → (passed, total).
    pub per_kind: BTreeMap<String, (usize, usize)>,
    /// (case id, first failing field) for every failure, in file order.
    pub failures: Vec<(String, String)>,
}

impl Report {
    /// Whether every case passed.
    pub fn all_passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// One line per kind, then the failures (at most `max_failures`).
    pub fn render(&self, max_failures: usize) -> String {
        let mut s = String::new();
        for (kind, (pass, total)) in &self.per_kind {
            s.push_str(&format!("{kind:>16}: {pass}/{total}\n"));
        }
        for (id, why) in self.failures.iter().take(max_failures) {
            s.push_str(&format!("FAIL {id}: {why}\n"));
        }
        if self.failures.len() > max_failures {
            s.push_str(&format!(
                "… and {} more\n",
                self.failures.len() - max_failures
            ));
        }
        s
    }
}

/// Compares `results` (the `results` array of an evaluation) with a golden document
/// (`{"cases", "results"}`), case by case.
pub fn compare_document(golden: &Value, results: &[Value], tol: Tolerance) -> Report {
    let mut report = Report::default();
    let empty = Vec::new();
    let cases = golden["cases"].as_array().unwrap_or(&empty);
    let wants = golden["results"].as_array().unwrap_or(&empty);
    for (i, (case, want)) in cases.iter().zip(wants).enumerate() {
        let kind = case["kind"].as_str().unwrap_or("?").to_string();
        let id = case["id"].as_str().unwrap_or("?").to_string();
        let entry = report.per_kind.entry(kind).or_default();
        entry.1 += 1;
        let outcome = match results.get(i) {
            None => Err("no result".to_string()),
            Some(got) => compare_result(case, got, want, tol),
        };
        match outcome {
            Ok(()) => entry.0 += 1,
            Err(why) => report.failures.push((id, why)),
        }
    }
    report
}
