//! The `regex` verifier: the completion must match a pattern (anywhere, or as a whole), and
//! optionally a captured group must equal the reference answer.

use super::options::{compile, Options};
use super::{bin, reference, score_each, score_with, Normalize};
use crate::{BuildContext, Group, Score, Verifier, VerifierError, VerifyExample};
use serde_json::{Map, Value};

/// Which group of a match is compared with the reference.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Capture {
    Index(usize),
    Name(String),
}

/// `regex`: reward = matched, or with `capture`, whether the captured text equals the reference.
#[derive(Debug, Clone)]
pub struct RegexVerifier {
    regex: regex::Regex,
    strip: bool,
    capture: Option<Capture>,
    normalize: Normalize,
    field: Option<String>,
}

impl RegexVerifier {
    /// Builds the verifier from its options (`pattern`, `mode`, `strip`, `capture`,
    /// `case_sensitive`, `field`).
    pub fn from_options(
        options: &Map<String, Value>,
        _ctx: &BuildContext,
    ) -> Result<Self, VerifierError> {
        let o = Options::new(
            "regex",
            options,
            &[
                "pattern",
                "mode",
                "strip",
                "capture",
                "case_sensitive",
                "field",
            ],
        )?;
        let pattern = o
            .non_empty_str("pattern")?
            .ok_or_else(|| o.err("`pattern` (a regular expression) is required"))?;
        let anchored = o.choice("mode", &["search", "match"], "search")? == "match";
        let full = if anchored {
            format!(r"\A(?:{pattern})\z")
        } else {
            pattern.to_string()
        };
        let regex = compile(&full)
            .map_err(|e| o.err(format!("`pattern` is not a valid regular expression: {e}")))?;
        let capture = match o.get("capture") {
            None => None,
            Some(Value::String(name)) => {
                if !regex.capture_names().flatten().any(|n| n == name) {
                    return Err(o.err(format!("`capture`: the pattern has no group `{name}`")));
                }
                Some(Capture::Name(name.clone()))
            }
            Some(v) => {
                let i = o
                    .usize("capture")?
                    .ok_or_else(|| o.err(format!("`capture` must be a group, got {v}")))?;
                if i >= regex.captures_len() {
                    return Err(o.err(format!(
                        "`capture`: the pattern has {} groups, asked for group {i}",
                        regex.captures_len() - 1
                    )));
                }
                Some(Capture::Index(i))
            }
        };
        let has_compare = o.has("case_sensitive") || o.has("field");
        if has_compare && capture.is_none() {
            return Err(o.err("`case_sensitive` and `field` apply only with `capture`"));
        }
        Ok(Self {
            regex,
            strip: o.bool("strip", true)?,
            capture,
            normalize: Normalize {
                case_sensitive: o.bool("case_sensitive", false)?,
                strip: true,
                whitespace: false,
            },
            field: o.non_empty_str("field")?.map(str::to_owned),
        })
    }

    /// Scores one completion against an example.
    pub fn score_one(&self, example: &VerifyExample, completion: &str) -> Score {
        let text = if self.strip {
            completion.trim()
        } else {
            completion
        };
        let Some(capture) = &self.capture else {
            let matched = self.regex.is_match(text);
            return score_with(bin(matched), &[("matched", bin(matched))]);
        };
        let gold = match reference(example, self.field.as_deref()) {
            Ok(g) => g,
            Err(e) => return Score::failed(format!("regex: {e}")),
        };
        // The last match whose group took part: a final answer follows the reasoning.
        let captured = self
            .regex
            .captures_iter(text)
            .filter_map(|c| match capture {
                Capture::Index(i) => c.get(*i),
                Capture::Name(n) => c.name(n),
            })
            .last();
        let matched = self.regex.is_match(text);
        let correct = captured
            .is_some_and(|m| self.normalize.apply(m.as_str()) == self.normalize.apply(&gold));
        score_with(
            bin(correct),
            &[("matched", bin(matched)), ("correct", bin(correct))],
        )
    }
}

impl Verifier for RegexVerifier {
    fn name(&self) -> &str {
        "regex"
    }

    fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
        score_each(groups, |e, c| self.score_one(e, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(v: Value) -> Result<RegexVerifier, VerifierError> {
        RegexVerifier::from_options(
            &v.as_object().cloned().unwrap_or_default(),
            &BuildContext::default(),
        )
    }

    fn ex(answer: &str) -> VerifyExample {
        VerifyExample {
            answer: Some(answer.into()),
            ..VerifyExample::default()
        }
    }

    #[test]
    fn search_and_match_modes() {
        let e = ex("");
        let search = build(json!({"pattern": r"\d{3}"})).unwrap();
        let whole = build(json!({"pattern": r"\d{3}", "mode": "match"})).unwrap();
        for (c, s, m) in [
            ("123", 1.0, 1.0),
            ("  123\n", 1.0, 1.0),
            ("abc 123 def", 1.0, 0.0),
            ("1234", 1.0, 0.0),
            ("12", 0.0, 0.0),
            ("", 0.0, 0.0),
        ] {
            assert_eq!(search.score_one(&e, c).reward, s, "search {c:?}");
            assert_eq!(whole.score_one(&e, c).reward, m, "match {c:?}");
            assert_eq!(whole.score_one(&e, c).components["matched"], m);
        }
        // An alternation is anchored as a whole.
        let alt = build(json!({"pattern": "yes|no", "mode": "match"})).unwrap();
        assert_eq!(alt.score_one(&e, "yes").reward, 1.0);
        assert_eq!(alt.score_one(&e, "yesno").reward, 0.0);
        assert_eq!(alt.score_one(&e, "no way").reward, 0.0);
        let raw = build(json!({"pattern": "x", "mode": "match", "strip": false})).unwrap();
        assert_eq!(raw.score_one(&e, "x\n").reward, 0.0);
        assert_eq!(raw.score_one(&e, "x").reward, 1.0);
    }

    #[test]
    fn capture_compares_with_the_reference() {
        let v = build(json!({"pattern": r"ANSWER:\s*(\w+)", "capture": 1})).unwrap();
        let e = ex("Seven");
        let s = v.score_one(&e, "ANSWER: six\nANSWER: seven");
        assert_eq!(s.reward, 1.0);
        assert_eq!(s.components["matched"], 1.0);
        let s = v.score_one(&e, "ANSWER: seven\nANSWER: six");
        assert_eq!(s.reward, 0.0);
        assert_eq!(s.components["matched"], 1.0);
        let s = v.score_one(&e, "seven");
        assert_eq!(s.components["matched"], 0.0);
        assert_eq!(s.reward, 0.0);
        let named = build(json!({
            "pattern": r"=\s*(?P<v>-?\d+)", "capture": "v", "case_sensitive": true
        }))
        .unwrap();
        assert_eq!(named.score_one(&ex("-4"), "x = -4").reward, 1.0);
        assert_eq!(named.score_one(&ex("-4"), "x = 4").reward, 0.0);
        let field = build(json!({"pattern": r"(\w+)$", "capture": 1, "field": "w"})).unwrap();
        let mut e = ex("no");
        e.metadata.insert("w".into(), json!("Yes"));
        assert_eq!(field.score_one(&e, "I say yes").reward, 1.0);
        let missing = field.score_one(&ex("x"), "x");
        assert!(missing.error.is_some());
        assert_eq!(missing.reward, 0.0);
    }

    #[test]
    fn config_errors() {
        for bad in [
            json!({}),
            json!({"pattern": ""}),
            json!({"pattern": "("}),
            json!({"pattern": "a", "mode": "full"}),
            json!({"pattern": "a", "capture": 1}),
            json!({"pattern": "(a)", "capture": 2}),
            json!({"pattern": "(a)", "capture": "name"}),
            json!({"pattern": "(a)", "capture": -1}),
            json!({"pattern": "(a)", "capture": true}),
            json!({"pattern": "a", "case_sensitive": true}),
            json!({"pattern": "a", "flags": "i"}),
            json!({"pattern": "a{1000}{1000}"}),
        ] {
            assert!(
                matches!(build(bad.clone()), Err(VerifierError::Config { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        let v = build(json!({"pattern": r"(\w+)\s*$", "capture": 1})).unwrap();
        let huge = "a".repeat(1_000_000);
        for s in ["", "\u{fffd}\u{0}", huge.as_str(), "\u{10ffff} é"] {
            let sc = v.score_one(&ex("é"), s);
            assert!(sc.reward == 0.0 || sc.reward == 1.0);
        }
        assert_eq!(v.score_one(&ex("é"), "\u{10ffff} é").reward, 1.0);
    }
}
