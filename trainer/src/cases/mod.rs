//! Case files in the golden `FORMAT.md` schema (TRL and verl field names): reading, evaluating
//! each case with the trainer's own functions in f64, and comparing results against reference
//! values. `oxrl loss` is a thin wrapper around [`evaluate_document`].
//!
//! One case failing never hides the others: every result carries the case's `id` and `kind` and
//! either the computed fields or an `error` string.

use serde_json::{Map, Value};

pub mod compare;
pub mod reader;

mod trl_advantages;
mod trl_dpo;
mod trl_grpo;
mod verl_adv;
mod verl_agg;
mod verl_entropy;
mod verl_kl;
mod verl_kl_controller;
mod verl_policy;
mod verl_rewards;
mod verl_value;

pub use reader::{CaseError, CaseReader, CaseResult};

/// The case kinds `oxrl loss` evaluates.
pub const KINDS: [&str; 11] = [
    "grpo_advantages",
    "grpo",
    "dpo",
    "adv",
    "agg_loss",
    "kl_penalty",
    "policy_loss",
    "value_loss",
    "entropy_loss",
    "compute_rewards",
    "kl_controller",
];

/// A case file could not be read as a whole (the only failure that is not per case).
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// Not JSON.
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but neither `{"cases": [...]}` nor a list of cases.
    #[error("expected an object with a `cases` array, or an array of cases")]
    Shape,
}

/// Parses JSON that may hold Python's bare `NaN`, `Infinity` and `-Infinity` (as `json.dumps`
/// writes them): those become `null`, which the case reader rejects with a per-case error naming
/// the field instead of failing the whole file.
pub fn parse_lenient(text: &str) -> Result<Value, DocumentError> {
    Ok(serde_json::from_str(&rebuild(text))?)
}

/// Replaces bare NaN / Infinity tokens outside strings with `null`, copying everything else.
fn rebuild(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_str = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_str = true;
            out.push(c);
            rest = &rest[1..];
            continue;
        }
        if let Some(w) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|w| rest.starts_with(w))
        {
            out.push_str("null");
            rest = &rest[w.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The cases of a document: `{"cases": [...]}` (the golden files) or a bare array.
pub fn cases_of(doc: &Value) -> Result<&Vec<Value>, DocumentError> {
    match doc {
        Value::Array(cases) => Ok(cases),
        Value::Object(m) => m
            .get("cases")
            .and_then(Value::as_array)
            .ok_or(DocumentError::Shape),
        _ => Err(DocumentError::Shape),
    }
}

/// Evaluates every case of a document: `{"results": [...]}`, one result per case, in order.
pub fn evaluate_document(doc: &Value) -> Result<Value, DocumentError> {
    let results: Vec<Value> = cases_of(doc)?.iter().map(evaluate_case).collect();
    let mut out = Map::new();
    out.insert("results".into(), Value::Array(results));
    Ok(Value::Object(out))
}

/// Evaluates one case; never fails: a bad case yields `{"id", "kind", "error"}`.
pub fn evaluate_case(case: &Value) -> Value {
    let id = case.get("id").cloned().unwrap_or(Value::Null);
    let kind = case.get("kind").cloned().unwrap_or(Value::Null);
    let computed = match case {
        Value::Object(obj) => evaluate_object(obj),
        _ => Err(CaseError::Invalid {
            field: "(case)".into(),
            msg: "a case must be a JSON object".into(),
        }),
    };
    let mut out = Map::new();
    out.insert("id".into(), id);
    out.insert("kind".into(), kind);
    match computed {
        Ok(fields) => out.extend(fields),
        Err(e) => {
            out.insert("error".into(), Value::String(e.to_string()));
        }
    }
    Value::Object(out)
}

fn evaluate_object(obj: &Map<String, Value>) -> CaseResult<Map<String, Value>> {
    let r = CaseReader::new(obj, "");
    r.accept(&["id", "tags"]);
    let kind = r.str("kind")?;
    let fields = match kind {
        "grpo_advantages" => trl_advantages::evaluate(&r)?,
        "grpo" => trl_grpo::evaluate(&r)?,
        "dpo" => trl_dpo::evaluate(&r)?,
        "adv" => verl_adv::evaluate(&r)?,
        "agg_loss" => verl_agg::evaluate(&r)?,
        "kl_penalty" => verl_kl::evaluate(&r)?,
        "policy_loss" => verl_policy::evaluate(&r)?,
        "value_loss" => verl_value::evaluate(&r)?,
        "entropy_loss" => verl_entropy::evaluate(&r)?,
        "compute_rewards" => verl_rewards::evaluate(&r)?,
        "kl_controller" => verl_kl_controller::evaluate(&r)?,
        other => {
            return Err(CaseError::Math(crate::MathError::unknown(
                "case kind",
                other,
                &KINDS,
            )))
        }
    };
    r.finish(kind)?;
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_nan_becomes_null_outside_strings_only() {
        let v = parse_lenient(r#"{"a": [NaN, -Infinity, 1.5], "s": "NaN \" Infinity"}"#).unwrap();
        assert_eq!(v["a"], serde_json::json!([null, null, 1.5]));
        assert_eq!(v["s"], "NaN \" Infinity");
    }

    #[test]
    fn unknown_kind_and_non_object_are_per_case_errors() {
        let doc = serde_json::json!({"cases": [{"id": "x", "kind": "nope"}, 3]});
        let out = evaluate_document(&doc).unwrap();
        let res = out["results"].as_array().unwrap();
        assert!(res[0]["error"]
            .as_str()
            .unwrap()
            .contains("grpo_advantages"));
        assert!(res[1]["error"].is_string());
    }
}
