//! The built-in non-math verifiers, registered by name in [`crate::Registry::builtin`]:
//! `exact`, `contains`, `regex`, `choice`, `format`, `json_schema`, `length` and `arith`
//! (arithmetic and countdown answers of the synthetic tasks). Each is built from its JSON
//! options with `from_options(options, ctx)`; unknown keys and wrong types are
//! [`crate::VerifierError::Config`] errors. `VERIFIERS.md` documents every option.

mod arith;
mod choice;
mod countdown;
mod exact;
mod format;
mod json_schema;
mod length;
pub(crate) mod options;
mod regex;

pub use arith::{final_integer, ArithVerifier};
pub use choice::{extract_choice, ChoiceVerifier};
pub use countdown::{
    check_countdown, countdown_equation, parse_expression, Countdown, ParsedExpression, Rational,
};
pub use exact::{ContainsVerifier, ExactVerifier};
pub use format::FormatVerifier;
pub use json_schema::JsonSchemaVerifier;
pub use length::LengthVerifier;
pub use regex::RegexVerifier;

/// Compiles a user's regular expression with bounded compiled size.
pub(crate) use options::compile as compile_pattern;

use crate::{Group, Registry, Score, Verifier, VerifyExample};
use serde_json::Value;

/// Registers every built-in verifier of this module in `registry`.
pub fn register(registry: &mut Registry) {
    registry.register("exact", |o, c| {
        Ok(Box::new(ExactVerifier::from_options(o, c)?) as Box<dyn Verifier>)
    });
    registry.register("contains", |o, c| {
        Ok(Box::new(ContainsVerifier::from_options(o, c)?) as Box<dyn Verifier>)
    });
    registry.register("regex", |o, c| {
        Ok(Box::new(RegexVerifier::from_options(o, c)?) as Box<dyn Verifier>)
    });
    registry.register("choice", |o, c| {
        Ok(Box::new(ChoiceVerifier::from_options(o, c)?) as Box<dyn Verifier>)
    });
    registry.register("format", |o, c| {
        Ok(Box::new(FormatVerifier::from_options(o, c)?) as Box<dyn Verifier>)
    });
    registry.register("json_schema", |o, c| {
        Ok(Box::new(JsonSchemaVerifier::from_options(o, c)?) as Box<dyn Verifier>)
    });
    registry.register("length", |o, c| {
        Ok(Box::new(LengthVerifier::from_options(o, c)?) as Box<dyn Verifier>)
    });
    registry.register("arith", |o, c| {
        Ok(Box::new(ArithVerifier::from_options(o, c)?) as Box<dyn Verifier>)
    });
}

/// 1.0 for true, 0.0 for false.
pub(crate) fn bin(b: bool) -> f32 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// A score with the given reward and components.
pub(crate) fn score_with(reward: f32, components: &[(&str, f32)]) -> Score {
    let mut s = Score::reward(reward);
    for (k, v) in components {
        s.components.insert((*k).to_string(), *v);
    }
    s
}

/// Scores every completion of every group with `f(example, completion)`.
pub(crate) fn score_each(
    groups: &[Group],
    f: impl Fn(&VerifyExample, &str) -> Score,
) -> Vec<Vec<Score>> {
    groups
        .iter()
        .map(|g| g.completions.iter().map(|c| f(&g.example, c)).collect())
        .collect()
}

/// The reference of an example: its `answer`, or `metadata[field]` when `field` is set (a
/// string, number or boolean). `Err` says what is missing.
pub(crate) fn reference(example: &VerifyExample, field: Option<&str>) -> Result<String, String> {
    match field {
        None => example
            .answer
            .clone()
            .ok_or_else(|| "the example has no reference answer".to_string()),
        Some(f) => match example.metadata.get(f) {
            None | Some(Value::Null) => Err(format!("the example has no metadata field `{f}`")),
            Some(v) => scalar_text(v).ok_or_else(|| {
                format!("metadata field `{f}` must be a string, number or boolean, got {v}")
            }),
        },
    }
}

/// The text of a JSON scalar (strings as they are, numbers and booleans printed).
pub(crate) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Text normalisation shared by `exact`, `contains` and `regex` comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Normalize {
    /// Compare case-sensitively.
    pub case_sensitive: bool,
    /// Trim surrounding whitespace.
    pub strip: bool,
    /// Collapse every run of whitespace to one space.
    pub whitespace: bool,
}

impl Normalize {
    /// `text` normalised.
    pub(crate) fn apply(&self, text: &str) -> String {
        let t = if self.strip { text.trim() } else { text };
        let t = if self.whitespace {
            let mut out = String::with_capacity(t.len());
            let mut in_space = false;
            for ch in t.chars() {
                if ch.is_whitespace() {
                    if !in_space {
                        out.push(' ');
                    }
                    in_space = true;
                } else {
                    out.push(ch);
                    in_space = false;
                }
            }
            out
        } else {
            t.to_string()
        };
        if self.case_sensitive {
            t
        } else {
            t.to_lowercase()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BuildContext;
    use serde_json::{json, Map};

    #[test]
    fn every_builtin_is_registered() {
        let r = Registry::builtin();
        for name in [
            "exact",
            "contains",
            "regex",
            "choice",
            "format",
            "json_schema",
            "length",
            "arith",
        ] {
            assert!(r.names().contains(&name), "{name} missing");
        }
        let ctx = BuildContext::default();
        // Verifiers whose options are all optional build from an empty table.
        for name in ["exact", "contains", "choice", "arith"] {
            assert!(r.build(name, &Map::new(), &ctx).is_ok(), "{name}");
        }
        // The others need something and say what.
        for name in ["regex", "format", "json_schema", "length"] {
            assert!(
                matches!(
                    r.build(name, &Map::new(), &ctx),
                    Err(crate::VerifierError::Config { .. })
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn reference_reads_answer_or_metadata() {
        let mut e = VerifyExample {
            answer: Some("x".into()),
            ..VerifyExample::default()
        };
        e.metadata.insert("n".into(), json!(5));
        e.metadata.insert("b".into(), json!(true));
        e.metadata.insert("l".into(), json!([1]));
        assert_eq!(reference(&e, None).unwrap(), "x");
        assert_eq!(reference(&e, Some("n")).unwrap(), "5");
        assert_eq!(reference(&e, Some("b")).unwrap(), "true");
        assert!(reference(&e, Some("l")).is_err());
        assert!(reference(&e, Some("zz")).unwrap_err().contains("`zz`"));
        e.answer = None;
        assert!(reference(&e, None).is_err());
    }

    #[test]
    fn normalize() {
        let n = Normalize {
            case_sensitive: false,
            strip: true,
            whitespace: true,
        };
        assert_eq!(n.apply("  Hello \n\t World  "), "hello world");
        let n = Normalize {
            case_sensitive: true,
            strip: false,
            whitespace: false,
        };
        assert_eq!(n.apply(" A "), " A ");
    }
}
