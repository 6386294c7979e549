//! The `exact` and `contains` verifiers: string comparison of a completion with the reference
//! answer (or a metadata field, or fixed values), after optional extraction and normalisation.

use super::options::Options;
use super::{bin, reference, score_each, score_with, Normalize};
use crate::{BuildContext, Group, Score, Verifier, VerifierError, VerifyExample};
use serde_json::{Map, Value};

/// `exact`: reward 1 iff the (extracted, normalised) completion equals the normalised reference.
#[derive(Debug, Clone)]
pub struct ExactVerifier {
    normalize: Normalize,
    extract: Option<regex::Regex>,
    field: Option<String>,
}

impl ExactVerifier {
    /// Builds the verifier from its options (`case_sensitive`, `strip`, `normalize_whitespace`,
    /// `extract`, `field`).
    pub fn from_options(
        options: &Map<String, Value>,
        _ctx: &BuildContext,
    ) -> Result<Self, VerifierError> {
        let o = Options::new(
            "exact",
            options,
            &[
                "case_sensitive",
                "strip",
                "normalize_whitespace",
                "extract",
                "field",
            ],
        )?;
        let extract = o.regex("extract")?;
        if let Some(re) = &extract {
            if re.captures_len() < 2 {
                return Err(o.err("`extract` needs a capture group: the answer is group 1"));
            }
        }
        Ok(Self {
            normalize: Normalize {
                case_sensitive: o.bool("case_sensitive", false)?,
                strip: o.bool("strip", true)?,
                whitespace: o.bool("normalize_whitespace", false)?,
            },
            extract,
            field: o.non_empty_str("field")?.map(str::to_owned),
        })
    }

    /// Scores one completion against an example.
    pub fn score_one(&self, example: &VerifyExample, completion: &str) -> Score {
        let gold = match reference(example, self.field.as_deref()) {
            Ok(g) => g,
            Err(e) => return Score::failed(format!("exact: {e}")),
        };
        let candidate = match &self.extract {
            None => Some(completion),
            // The last match: a final answer follows the reasoning.
            Some(re) => re
                .captures_iter(completion)
                .filter_map(|c| c.get(1))
                .last()
                .map(|m| m.as_str()),
        };
        let correct =
            candidate.is_some_and(|c| self.normalize.apply(c) == self.normalize.apply(&gold));
        let mut s = score_with(bin(correct), &[("correct", bin(correct))]);
        if self.extract.is_some() {
            s.components
                .insert("extracted".into(), bin(candidate.is_some()));
        }
        s
    }
}

impl Verifier for ExactVerifier {
    fn name(&self) -> &str {
        "exact"
    }

    fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
        score_each(groups, |e, c| self.score_one(e, c))
    }
}

/// How several needles of `contains` combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    All,
    Any,
}

/// Where `contains` gets its needles.
#[derive(Debug, Clone)]
enum Needles {
    /// Fixed values from the options.
    Fixed(Vec<String>),
    /// The reference answer, or a metadata field (a string or a list of strings).
    Reference(Option<String>),
}

/// `contains`: reward 1 iff the completion contains the needle(s).
#[derive(Debug, Clone)]
pub struct ContainsVerifier {
    needles: Needles,
    mode: Mode,
    case_sensitive: bool,
    whole_word: bool,
}

impl ContainsVerifier {
    /// Builds the verifier from its options (`value` | `values` | `field`, `mode`,
    /// `case_sensitive`, `whole_word`).
    pub fn from_options(
        options: &Map<String, Value>,
        _ctx: &BuildContext,
    ) -> Result<Self, VerifierError> {
        let o = Options::new(
            "contains",
            options,
            &[
                "value",
                "values",
                "field",
                "mode",
                "case_sensitive",
                "whole_word",
            ],
        )?;
        let given = ["value", "values", "field"]
            .iter()
            .filter(|k| o.has(k))
            .count();
        if given > 1 {
            return Err(o.err("give at most one of `value`, `values` and `field`"));
        }
        let needles = if let Some(v) = o.non_empty_str("value")? {
            Needles::Fixed(vec![v.to_owned()])
        } else if let Some(vs) = o.str_list("values")? {
            if vs.is_empty() || vs.iter().any(String::is_empty) {
                return Err(o.err("`values` must be a non-empty list of non-empty strings"));
            }
            Needles::Fixed(vs)
        } else {
            Needles::Reference(o.non_empty_str("field")?.map(str::to_owned))
        };
        let mode = match o.choice("mode", &["all", "any"], "all")? {
            "any" => Mode::Any,
            _ => Mode::All,
        };
        Ok(Self {
            needles,
            mode,
            case_sensitive: o.bool("case_sensitive", false)?,
            whole_word: o.bool("whole_word", false)?,
        })
    }

    /// The needles for one example.
    fn needles_for(&self, example: &VerifyExample) -> Result<Vec<String>, String> {
        match &self.needles {
            Needles::Fixed(v) => Ok(v.clone()),
            Needles::Reference(field) => {
                let list = field
                    .as_deref()
                    .and_then(|f| example.metadata.get(f))
                    .and_then(Value::as_array);
                let needles = match list {
                    Some(items) => items
                        .iter()
                        .map(|i| super::scalar_text(i).map(|t| t.trim().to_string()))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| {
                            format!(
                                "metadata field `{}` must hold strings",
                                field.as_deref().unwrap_or_default()
                            )
                        })?,
                    None => vec![reference(example, field.as_deref())?.trim().to_string()],
                };
                if needles.is_empty() || needles.iter().any(String::is_empty) {
                    return Err("the reference to look for is empty".into());
                }
                Ok(needles)
            }
        }
    }

    /// Scores one completion against an example.
    pub fn score_one(&self, example: &VerifyExample, completion: &str) -> Score {
        let needles = match self.needles_for(example) {
            Ok(n) => n,
            Err(e) => return Score::failed(format!("contains: {e}")),
        };
        let (hay, needles) = if self.case_sensitive {
            (completion.to_string(), needles)
        } else {
            (
                completion.to_lowercase(),
                needles.iter().map(|n| n.to_lowercase()).collect(),
            )
        };
        let found = needles
            .iter()
            .filter(|n| contains(&hay, n, self.whole_word))
            .count();
        let correct = match self.mode {
            Mode::All => found == needles.len(),
            Mode::Any => found > 0,
        };
        score_with(
            bin(correct),
            &[
                ("correct", bin(correct)),
                ("found", found as f32 / needles.len().max(1) as f32),
            ],
        )
    }
}

/// Whether `needle` occurs in `hay`; with `whole_word`, only where it is not glued to a letter
/// or digit on either side.
fn contains(hay: &str, needle: &str, whole_word: bool) -> bool {
    if !whole_word {
        return hay.contains(needle);
    }
    hay.match_indices(needle).any(|(i, m)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + m.len()..].chars().next();
        let glued = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !glued(before) && !glued(after)
    })
}

impl Verifier for ContainsVerifier {
    fn name(&self) -> &str {
        "contains"
    }

    fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
        score_each(groups, |e, c| self.score_one(e, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn exact(v: Value) -> ExactVerifier {
        ExactVerifier::from_options(&opts(v), &BuildContext::default()).unwrap()
    }

    fn contains_v(v: Value) -> ContainsVerifier {
        ContainsVerifier::from_options(&opts(v), &BuildContext::default()).unwrap()
    }

    fn ex(answer: Option<&str>, metadata: Value) -> VerifyExample {
        VerifyExample {
            answer: answer.map(str::to_owned),
            metadata: opts(metadata),
            ..VerifyExample::default()
        }
    }

    #[test]
    fn exact_defaults_trim_and_ignore_case() {
        let v = exact(json!({}));
        let e = ex(Some(" Paris "), json!({}));
        for (c, want) in [
            ("Paris", 1.0),
            ("paris", 1.0),
            ("  PARIS\n", 1.0),
            ("Paris.", 0.0),
            ("Paris France", 0.0),
            ("Pa ris", 0.0),
            ("", 0.0),
            ("The answer is Paris", 0.0),
        ] {
            let s = v.score_one(&e, c);
            assert_eq!(s.reward, want, "{c:?}");
            assert_eq!(s.components["correct"], want);
            assert!(s.error.is_none());
            assert!(!s.components.contains_key("extracted"));
        }
    }

    #[test]
    fn exact_options() {
        let e = ex(Some("New York"), json!({"city": "Oslo", "n": 42}));
        let cs = exact(json!({"case_sensitive": true}));
        assert_eq!(cs.score_one(&e, "New York").reward, 1.0);
        assert_eq!(cs.score_one(&e, "new york").reward, 0.0);
        let nostrip = exact(json!({"strip": false}));
        assert_eq!(nostrip.score_one(&e, "New York").reward, 1.0);
        assert_eq!(nostrip.score_one(&e, "New York ").reward, 0.0);
        let ws = exact(json!({"normalize_whitespace": true}));
        assert_eq!(ws.score_one(&e, "New \n  York").reward, 1.0);
        assert_eq!(exact(json!({})).score_one(&e, "New \n  York").reward, 0.0);
        let field = exact(json!({"field": "city"}));
        assert_eq!(field.score_one(&e, "oslo").reward, 1.0);
        assert_eq!(field.score_one(&e, "New York").reward, 0.0);
        let num = exact(json!({"field": "n"}));
        assert_eq!(num.score_one(&e, "42").reward, 1.0);
        let missing = exact(json!({"field": "country"})).score_one(&e, "x");
        assert_eq!(missing.reward, 0.0);
        assert!(missing.error.unwrap().contains("`country`"));
        let none = exact(json!({})).score_one(&ex(None, json!({})), "x");
        assert!(none.error.unwrap().contains("no reference answer"));
    }

    #[test]
    fn exact_extract_uses_the_last_match() {
        let v = exact(json!({"extract": r"(?i)answer:\s*(\S+)"}));
        let e = ex(Some("42"), json!({}));
        let s = v.score_one(&e, "Answer: 41? no wait.\nAnswer: 42");
        assert_eq!(s.reward, 1.0);
        assert_eq!(s.components["extracted"], 1.0);
        let s = v.score_one(&e, "Answer: 42\nAnswer: 41");
        assert_eq!(s.reward, 0.0);
        assert_eq!(s.components["extracted"], 1.0);
        let s = v.score_one(&e, "42");
        assert_eq!(s.reward, 0.0);
        assert_eq!(s.components["extracted"], 0.0);
        // An optional group that did not take part counts as no extraction.
        let v = exact(json!({"extract": r"x(\d)?"}));
        let s = v.score_one(&e, "x");
        assert_eq!(s.components["extracted"], 0.0);
    }

    #[test]
    fn exact_config_errors() {
        for bad in [
            json!({"case_sensitive": "yes"}),
            json!({"strip": 1}),
            json!({"extract": "("}),
            json!({"extract": "no group"}),
            json!({"extract": 5}),
            json!({"field": ""}),
            json!({"bogus": true}),
        ] {
            assert!(
                matches!(
                    ExactVerifier::from_options(&opts(bad.clone()), &BuildContext::default()),
                    Err(VerifierError::Config { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn contains_reference_and_values() {
        let e = ex(
            Some("Blue"),
            json!({"keys": ["alpha", "beta"], "one": "gamma"}),
        );
        let v = contains_v(json!({}));
        for (c, want) in [
            ("the sky is blue", 1.0),
            ("BLUEBERRY", 1.0),
            ("the sky is bl ue", 0.0),
            ("", 0.0),
        ] {
            assert_eq!(v.score_one(&e, c).reward, want, "{c:?}");
        }
        let cs = contains_v(json!({"case_sensitive": true}));
        assert_eq!(cs.score_one(&e, "Blue sky").reward, 1.0);
        assert_eq!(cs.score_one(&e, "blue sky").reward, 0.0);
        let word = contains_v(json!({"whole_word": true}));
        assert_eq!(word.score_one(&e, "blue.").reward, 1.0);
        assert_eq!(word.score_one(&e, "(Blue)").reward, 1.0);
        assert_eq!(word.score_one(&e, "blueberry").reward, 0.0);
        assert_eq!(word.score_one(&e, "a blueberry, then blue").reward, 1.0);
        let all = contains_v(json!({"values": ["alpha", "beta"]}));
        let s = all.score_one(&e, "Alpha only");
        assert_eq!(s.reward, 0.0);
        assert_eq!(s.components["found"], 0.5);
        assert_eq!(all.score_one(&e, "beta and alpha").reward, 1.0);
        let any = contains_v(json!({"values": ["alpha", "beta"], "mode": "any"}));
        assert_eq!(any.score_one(&e, "Alpha only").reward, 1.0);
        assert_eq!(any.score_one(&e, "gamma").reward, 0.0);
        let fixed = contains_v(json!({"value": "DONE"}));
        assert_eq!(
            fixed.score_one(&ex(None, json!({})), "all done").reward,
            1.0
        );
        let list_field = contains_v(json!({"field": "keys"}));
        assert_eq!(list_field.score_one(&e, "alpha beta").reward, 1.0);
        assert_eq!(list_field.score_one(&e, "alpha").reward, 0.0);
        let one_field = contains_v(json!({"field": "one"}));
        assert_eq!(one_field.score_one(&e, "Gamma!").reward, 1.0);
        let empty = contains_v(json!({})).score_one(&ex(Some("  "), json!({})), "x");
        assert!(empty.error.unwrap().contains("empty"));
        let none = contains_v(json!({})).score_one(&ex(None, json!({})), "x");
        assert!(none.error.is_some());
    }

    #[test]
    fn contains_config_errors() {
        for bad in [
            json!({"value": "a", "values": ["b"]}),
            json!({"value": "a", "field": "f"}),
            json!({"value": ""}),
            json!({"values": []}),
            json!({"values": ["a", ""]}),
            json!({"values": "a"}),
            json!({"mode": "some"}),
            json!({"case_sensitive": 0}),
            json!({"needle": "x"}),
        ] {
            assert!(
                matches!(
                    ContainsVerifier::from_options(&opts(bad.clone()), &BuildContext::default()),
                    Err(VerifierError::Config { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        let e = ex(Some("ß"), json!({}));
        let v = exact(json!({"extract": r"(.)$", "normalize_whitespace": true}));
        let c = contains_v(json!({"whole_word": true}));
        let huge = "ẞ".repeat(200_000);
        for s in [
            "",
            "\u{0}\u{fffd}\u{10ffff}",
            huge.as_str(),
            "İ̇ß\u{301}",
            "\r\n\t",
        ] {
            let a = v.score_one(&e, s);
            let b = c.score_one(&e, s);
            assert!(a.reward == 0.0 || a.reward == 1.0);
            assert!(b.reward == 0.0 || b.reward == 1.0);
        }
        // Case folding that changes byte lengths (ẞ → ß) stays correct.
        assert_eq!(c.score_one(&e, "ẞ").reward, 1.0);
    }
}
