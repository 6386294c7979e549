//! The `length` verifier: a shaping reward for staying within a length budget in characters
//! and/or words. `binary` gives 1 inside the budget and 0 outside; `linear` (DAPO-style soft
//! overlong punishment) decays linearly from 1 at the limit to 0 at `buffer` units beyond it.

use super::options::{config_error, count, string_enum, typed_options};
use super::{bin, score_each};
use crate::{BuildContext, Group, Score, Verifier, VerifierError};
use serde::Deserialize;
use serde_json::{Map, Value};

/// How a length over (or under) a limit is rewarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    /// 0 outside the budget.
    #[default]
    Binary,
    /// Linear decay over `buffer` units.
    Linear,
}

/// The options table of `length`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LengthOptions {
    #[serde(default, deserialize_with = "count")]
    max_chars: Option<usize>,
    #[serde(default, deserialize_with = "count")]
    min_chars: Option<usize>,
    #[serde(default, deserialize_with = "count")]
    max_words: Option<usize>,
    #[serde(default, deserialize_with = "count")]
    min_words: Option<usize>,
    #[serde(default, deserialize_with = "string_enum")]
    mode: Mode,
    /// Linear decay width in characters.
    #[serde(default, deserialize_with = "count")]
    buffer: Option<usize>,
    /// Linear decay width in words.
    #[serde(default, deserialize_with = "count")]
    buffer_words: Option<usize>,
}

/// One bound on a length.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Limit {
    /// Component name (`max_chars`, `min_words`, ...).
    name: &'static str,
    /// Counts words (else characters).
    words: bool,
    /// An upper bound (else a lower bound).
    upper: bool,
    /// The bound.
    value: usize,
    /// Linear decay width in the same unit (`None` = binary).
    buffer: Option<usize>,
}

impl Limit {
    /// The factor in [0, 1] for a length `n`.
    fn factor(&self, n: usize) -> f32 {
        let over = if self.upper {
            n.saturating_sub(self.value)
        } else {
            self.value.saturating_sub(n)
        };
        if over == 0 {
            return 1.0;
        }
        match self.buffer {
            None => 0.0,
            Some(b) if over >= b => 0.0,
            Some(b) => (1.0 - over as f64 / b as f64) as f32,
        }
    }
}

/// `length`: reward = the smallest factor over the configured limits.
#[derive(Debug, Clone)]
pub struct LengthVerifier {
    limits: Vec<Limit>,
}

impl LengthVerifier {
    /// Builds the verifier from its options (`max_chars`, `min_chars`, `max_words`,
    /// `min_words`, `mode`, `buffer`, `buffer_words`).
    pub fn from_options(
        options: &Map<String, Value>,
        _ctx: &BuildContext,
    ) -> Result<Self, VerifierError> {
        let err = |m: String| config_error("length", m);
        let o: LengthOptions = typed_options("length", options)?;
        let linear = o.mode == Mode::Linear;
        let (buffer, buffer_words) = (o.buffer, o.buffer_words);
        let mut limits = Vec::new();
        for (name, given, words, upper) in [
            ("max_chars", o.max_chars, false, true),
            ("min_chars", o.min_chars, false, false),
            ("max_words", o.max_words, true, true),
            ("min_words", o.min_words, true, false),
        ] {
            if let Some(value) = given {
                limits.push(Limit {
                    name,
                    words,
                    upper,
                    value,
                    buffer: None,
                });
            }
        }
        if limits.is_empty() {
            return Err(err(
                "give at least one of max_chars, min_chars, max_words, min_words".into(),
            ));
        }
        for (unit_words, key, b) in [
            (false, "buffer", buffer),
            (true, "buffer_words", buffer_words),
        ] {
            let used = limits.iter().any(|l| l.words == unit_words);
            match (linear, b) {
                (false, Some(_)) => {
                    return Err(err(format!("`{key}` applies only to mode = \"linear\"")))
                }
                (true, Some(0)) => return Err(err(format!("`{key}` must be at least 1"))),
                (true, None) if used => {
                    return Err(err(format!(
                        "mode = \"linear\" needs `{key}` (the decay width in {})",
                        if unit_words { "words" } else { "characters" }
                    )))
                }
                (true, Some(_)) if !used => {
                    return Err(err(format!(
                        "`{key}` is given but no {} limit is",
                        if unit_words { "word" } else { "character" }
                    )))
                }
                _ => {}
            }
            for l in limits.iter_mut().filter(|l| l.words == unit_words) {
                l.buffer = b;
            }
        }
        for (words, unit) in [(false, "chars"), (true, "words")] {
            let max = limits.iter().find(|l| l.words == words && l.upper);
            let min = limits.iter().find(|l| l.words == words && !l.upper);
            if let (Some(max), Some(min)) = (max, min) {
                if min.value > max.value {
                    return Err(err(format!(
                        "min_{unit} ({}) is larger than max_{unit} ({})",
                        min.value, max.value
                    )));
                }
            }
        }
        Ok(Self { limits })
    }

    /// Scores one completion.
    pub fn score_one(&self, completion: &str) -> Score {
        let mut s = Score::default();
        let need_chars = self.limits.iter().any(|l| !l.words);
        let need_words = self.limits.iter().any(|l| l.words);
        let chars = if need_chars {
            completion.chars().count()
        } else {
            0
        };
        let words = if need_words {
            completion.split_whitespace().count()
        } else {
            0
        };
        let mut reward = 1.0f32;
        let mut within = true;
        for l in &self.limits {
            let n = if l.words { words } else { chars };
            let f = l.factor(n);
            within &= if l.upper { n <= l.value } else { n >= l.value };
            reward = reward.min(f);
            s.components.insert(l.name.to_string(), f);
        }
        if need_chars {
            s.components.insert("chars".into(), chars as f32);
        }
        if need_words {
            s.components.insert("words".into(), words as f32);
        }
        s.components.insert("within".into(), bin(within));
        s.reward = reward;
        s
    }
}

impl Verifier for LengthVerifier {
    fn name(&self) -> &str {
        "length"
    }

    fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
        score_each(groups, |_, c| self.score_one(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(v: Value) -> Result<LengthVerifier, VerifierError> {
        LengthVerifier::from_options(
            &v.as_object().cloned().unwrap_or_default(),
            &BuildContext::default(),
        )
    }

    #[test]
    fn binary_budget() {
        let v = build(json!({"max_chars": 2000})).unwrap();
        for (n, want) in [
            (0, 1.0),
            (1999, 1.0),
            (2000, 1.0),
            (2001, 0.0),
            (50_000, 0.0),
        ] {
            let s = v.score_one(&"x".repeat(n));
            assert_eq!(s.reward, want, "{n}");
            assert_eq!(s.components["within"], want);
            assert_eq!(s.components["chars"], n as f32);
            assert!(!s.components.contains_key("words"));
        }
        // Characters, not bytes.
        assert_eq!(v.score_one(&"é".repeat(2000)).reward, 1.0);
        let v = build(json!({"min_chars": 3, "max_chars": 5})).unwrap();
        let r: Vec<f32> = ["ab", "abc", "abcde", "abcdef"]
            .iter()
            .map(|c| v.score_one(c).reward)
            .collect();
        assert_eq!(r, [0.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn linear_decay() {
        let v = build(json!({"max_chars": 100, "mode": "linear", "buffer": 50})).unwrap();
        for (n, want) in [
            (0, 1.0),
            (100, 1.0),
            (101, 0.98),
            (110, 0.8),
            (125, 0.5),
            (149, 0.02),
            (150, 0.0),
            (10_000, 0.0),
        ] {
            let s = v.score_one(&"x".repeat(n));
            assert!((s.reward - want).abs() < 1e-6, "{n}: {}", s.reward);
            assert_eq!(s.components["within"], if n <= 100 { 1.0 } else { 0.0 });
        }
        let v = build(json!({"min_chars": 10, "mode": "linear", "buffer": 5})).unwrap();
        for (n, want) in [(10, 1.0), (9, 0.8), (6, 0.2), (5, 0.0), (0, 0.0)] {
            assert!(
                (v.score_one(&"x".repeat(n)).reward - want).abs() < 1e-6,
                "{n}"
            );
        }
    }

    #[test]
    fn words_and_several_limits() {
        let v = build(json!({"max_words": 3})).unwrap();
        assert_eq!(v.score_one("one two  three\n").reward, 1.0);
        let s = v.score_one("one two three four");
        assert_eq!(s.reward, 0.0);
        assert_eq!(s.components["words"], 4.0);
        let v = build(json!({
            "max_words": 4, "max_chars": 20, "mode": "linear", "buffer": 10, "buffer_words": 2
        }))
        .unwrap();
        // 5 words (factor 0.5) in 24 chars (factor 0.6): the worst counts.
        let s = v.score_one("aaaa bbbb cccc dddd eee");
        assert_eq!(s.components["chars"], 23.0);
        assert!((s.components["max_chars"] - 0.7).abs() < 1e-6);
        assert!((s.components["max_words"] - 0.5).abs() < 1e-6);
        assert!((s.reward - 0.5).abs() < 1e-6);
        assert_eq!(s.components["within"], 0.0);
        let v = build(json!({"min_words": 2, "max_words": 2})).unwrap();
        assert_eq!(v.score_one("a b").reward, 1.0);
        assert_eq!(v.score_one("a").reward, 0.0);
    }

    #[test]
    fn config_errors() {
        let count = "expected a non-negative integer";
        for (bad, want) in [
            (
                json!({}),
                "give at least one of max_chars, min_chars, max_words, min_words",
            ),
            (
                json!({"max_chars": -1}),
                "`max_chars`: invalid value: integer `-1`",
            ),
            (json!({"max_chars": 1.5}), count),
            (
                json!({"max_chars": "10"}),
                "`max_chars`: invalid type: string \"10\", expected a non-negative integer",
            ),
            (
                json!({"max_chars": 10, "mode": "soft"}),
                "`mode`: unknown variant `soft`, expected `binary` or `linear`",
            ),
            (
                json!({"max_chars": 10, "buffer": 5}),
                "`buffer` applies only to mode = \"linear\"",
            ),
            (
                json!({"max_chars": 10, "mode": "linear"}),
                "mode = \"linear\" needs `buffer` (the decay width in characters)",
            ),
            (
                json!({"max_chars": 10, "mode": "linear", "buffer": 0}),
                "`buffer` must be at least 1",
            ),
            (
                json!({"max_chars": 10, "mode": "linear", "buffer": 5, "buffer_words": 3}),
                "`buffer_words` is given but no word limit is",
            ),
            (
                json!({"max_words": 10, "mode": "linear", "buffer": 5}),
                "`buffer` is given but no character limit is",
            ),
            (
                json!({"max_chars": 10, "min_chars": 11}),
                "min_chars (11) is larger than max_chars (10)",
            ),
            (
                json!({"max_tokens": 10}),
                "unknown field `max_tokens`, expected one of `max_chars`, `min_chars`, \
                 `max_words`, `min_words`, `mode`, `buffer`, `buffer_words`",
            ),
        ] {
            let e = build(bad.clone());
            assert!(matches!(e, Err(VerifierError::Config { .. })), "{bad}");
            let e = e.unwrap_err().to_string();
            assert!(
                e.contains("verifier `length`") && e.contains(want),
                "{bad}: {e}"
            );
        }
        // A null option is absent: `buffer: null` is not a buffer without `linear`.
        let v = build(json!({"max_chars": 10, "min_chars": null, "buffer": null})).unwrap();
        assert_eq!(v.limits.len(), 1);
        assert_eq!(v.limits[0].buffer, None);
    }

    #[test]
    fn garbage_never_panics() {
        let v = build(json!({
            "max_chars": usize::MAX, "min_words": 0, "mode": "linear", "buffer": usize::MAX,
            "buffer_words": 1
        }))
        .unwrap();
        let huge = "\u{10ffff} ".repeat(500_000);
        for s in ["", "\u{0}", huge.as_str(), "\u{3000}\u{a0}"] {
            assert_eq!(v.score_one(s).reward, 1.0);
        }
    }
}
