//! The `regex` verifier: the completion must match a pattern (anywhere, or as a whole), and
//! optionally a captured group must equal the reference answer.

use super::options::{compile, config_error, non_empty, string_enum, typed_options};
use super::{bin, reference, score_each, score_with, Normalize};
use crate::{BuildContext, Group, Score, Verifier, VerifierError, VerifyExample};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Which group of a match is compared with the reference.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Capture {
    Index(usize),
    Name(String),
}

impl<'de> Deserialize<'de> for Capture {
    /// A group number (a non-negative integer) or a group name (a string).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Reads either spelling of [`Capture`].
        struct CaptureVisitor;
        impl serde::de::Visitor<'_> for CaptureVisitor {
            type Value = Capture;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a group number (a non-negative integer) or a group name")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Capture, E> {
                usize::try_from(v)
                    .map(Capture::Index)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Capture, E> {
                u64::try_from(v)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Capture, E> {
                Ok(Capture::Name(v.to_owned()))
            }
        }
        deserializer.deserialize_any(CaptureVisitor)
    }
}

/// Where a match must be: anywhere, or the whole (stripped) completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    #[default]
    Search,
    Match,
}

/// The options table of `regex`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegexOptions {
    /// The regular expression (required).
    pattern: Option<String>,
    #[serde(default, deserialize_with = "string_enum")]
    mode: Mode,
    /// Trim the completion first (default true).
    strip: Option<bool>,
    /// The group compared with the reference.
    capture: Option<Capture>,
    /// With `capture`: compare case-sensitively.
    case_sensitive: Option<bool>,
    /// With `capture`: metadata field holding the reference (default: the answer).
    field: Option<String>,
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
        let err = |m: String| config_error("regex", m);
        let o: RegexOptions = typed_options("regex", options)?;
        let pattern = non_empty("regex", "pattern", o.pattern)?
            .ok_or_else(|| err("`pattern` (a regular expression) is required".into()))?;
        let full = match o.mode {
            Mode::Match => format!(r"\A(?:{pattern})\z"),
            Mode::Search => pattern,
        };
        let regex = compile(&full)
            .map_err(|e| err(format!("`pattern` is not a valid regular expression: {e}")))?;
        match &o.capture {
            Some(Capture::Name(name)) if !regex.capture_names().flatten().any(|n| n == name) => {
                return Err(err(format!("`capture`: the pattern has no group `{name}`")));
            }
            Some(Capture::Index(i)) if *i >= regex.captures_len() => {
                return Err(err(format!(
                    "`capture`: the pattern has {} groups, asked for group {i}",
                    regex.captures_len() - 1
                )));
            }
            _ => {}
        }
        let has_compare = o.case_sensitive.is_some() || o.field.is_some();
        if has_compare && o.capture.is_none() {
            return Err(err(
                "`case_sensitive` and `field` apply only with `capture`".into(),
            ));
        }
        Ok(Self {
            regex,
            strip: o.strip.unwrap_or(true),
            capture: o.capture,
            normalize: Normalize {
                case_sensitive: o.case_sensitive.unwrap_or(false),
                strip: true,
                whitespace: false,
            },
            field: non_empty("regex", "field", o.field)?,
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
        let bad_pattern = "`pattern` is not a valid regular expression";
        let bad_capture = "expected a group number (a non-negative integer) or a group name";
        for (bad, want) in [
            (json!({}), "`pattern` (a regular expression) is required"),
            (json!({"pattern": ""}), "`pattern` must not be empty"),
            (json!({"pattern": "("}), bad_pattern),
            (
                json!({"pattern": "a", "mode": "full"}),
                "`mode`: unknown variant `full`, expected `search` or `match`",
            ),
            (
                json!({"pattern": "a", "capture": 1}),
                "`capture`: the pattern has 0 groups, asked for group 1",
            ),
            (
                json!({"pattern": "(a)", "capture": 2}),
                "`capture`: the pattern has 1 groups, asked for group 2",
            ),
            (
                json!({"pattern": "(a)", "capture": "name"}),
                "`capture`: the pattern has no group `name`",
            ),
            (
                json!({"pattern": "(a)", "capture": -1}),
                "`capture`: invalid value: integer `-1`, expected a group number",
            ),
            (
                json!({"pattern": "(a)", "capture": true}),
                "`capture`: invalid type: boolean `true`, expected a group number",
            ),
            (json!({"pattern": "(a)", "capture": 1.0}), bad_capture),
            (
                json!({"pattern": "a", "case_sensitive": true}),
                "`case_sensitive` and `field` apply only with `capture`",
            ),
            (
                json!({"pattern": "a", "flags": "i"}),
                "unknown field `flags`, expected one of `pattern`, `mode`, `strip`, `capture`, \
                 `case_sensitive`, `field`",
            ),
            (json!({"pattern": "a{1000}{1000}"}), bad_pattern),
        ] {
            let e = build(bad.clone());
            assert!(matches!(e, Err(VerifierError::Config { .. })), "{bad}");
            let e = e.unwrap_err().to_string();
            assert!(
                e.contains("verifier `regex`") && e.contains(want),
                "{bad}: {e}"
            );
        }
        // A signed integer (other sources than JSON) is a group number when non-negative.
        type I64 = serde::de::value::I64Deserializer<serde::de::value::Error>;
        assert_eq!(
            Capture::deserialize(I64::new(2)).unwrap(),
            Capture::Index(2)
        );
        assert!(Capture::deserialize(I64::new(-2)).is_err());
        // A null option is absent: `case_sensitive: null` does not need `capture`.
        let v = build(json!({"pattern": "a", "capture": null, "case_sensitive": null})).unwrap();
        assert!(v.capture.is_none() && v.strip);
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
