//! The `exact` and `contains` verifiers: string comparison of a completion with the reference
//! answer (or a metadata field, or fixed values), after optional extraction and normalisation.

use super::options::{config_error, non_empty, regex_option, string_enum, typed_options};
use super::{bin, reference, score_each, score_with, Normalize};
use crate::{BuildContext, Group, Score, Verifier, VerifierError, VerifyExample};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The options table of `exact`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExactOptions {
    #[serde(default)]
    case_sensitive: bool,
    /// Trim both sides (default true).
    strip: Option<bool>,
    #[serde(default)]
    normalize_whitespace: bool,
    /// A regular expression whose group 1 (last match) is the answer.
    extract: Option<String>,
    /// Metadata field holding the reference (default: the answer).
    field: Option<String>,
}

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
        let o: ExactOptions = typed_options("exact", options)?;
        let extract = regex_option("exact", "extract", o.extract)?;
        if let Some(re) = &extract {
            if re.captures_len() < 2 {
                return Err(config_error(
                    "exact",
                    "`extract` needs a capture group: the answer is group 1",
                ));
            }
        }
        Ok(Self {
            normalize: Normalize {
                case_sensitive: o.case_sensitive,
                strip: o.strip.unwrap_or(true),
                whitespace: o.normalize_whitespace,
            },
            extract,
            field: non_empty("exact", "field", o.field)?,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    #[default]
    All,
    Any,
}

/// The options table of `contains`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainsOptions {
    /// One fixed needle.
    value: Option<String>,
    /// Several fixed needles.
    values: Option<Vec<String>>,
    /// Metadata field holding the needle(s) (default: the answer).
    field: Option<String>,
    #[serde(default, deserialize_with = "string_enum")]
    mode: Mode,
    #[serde(default)]
    case_sensitive: bool,
    #[serde(default)]
    whole_word: bool,
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
        let o: ContainsOptions = typed_options("contains", options)?;
        let given = [o.value.is_some(), o.values.is_some(), o.field.is_some()]
            .iter()
            .filter(|g| **g)
            .count();
        if given > 1 {
            return Err(config_error(
                "contains",
                "give at most one of `value`, `values` and `field`",
            ));
        }
        let needles = if let Some(v) = non_empty("contains", "value", o.value)? {
            Needles::Fixed(vec![v])
        } else if let Some(vs) = o.values {
            if vs.is_empty() || vs.iter().any(String::is_empty) {
                return Err(config_error(
                    "contains",
                    "`values` must be a non-empty list of non-empty strings",
                ));
            }
            Needles::Fixed(vs)
        } else {
            Needles::Reference(non_empty("contains", "field", o.field)?)
        };
        Ok(Self {
            needles,
            mode: o.mode,
            case_sensitive: o.case_sensitive,
            whole_word: o.whole_word,
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
        for (bad, want) in [
            (
                json!({"case_sensitive": "yes"}),
                "`case_sensitive`: invalid type: string \"yes\", expected a boolean",
            ),
            (
                json!({"strip": 1}),
                "`strip`: invalid type: integer `1`, expected a boolean",
            ),
            (
                json!({"extract": "("}),
                "`extract` is not a valid regular expression",
            ),
            (
                json!({"extract": "no group"}),
                "`extract` needs a capture group",
            ),
            (
                json!({"extract": 5}),
                "`extract`: invalid type: integer `5`, expected a string",
            ),
            (json!({"field": ""}), "`field` must not be empty"),
            (
                json!({"bogus": true}),
                "unknown field `bogus`, expected one of `case_sensitive`, `strip`, \
                 `normalize_whitespace`, `extract`, `field`",
            ),
        ] {
            let e = ExactVerifier::from_options(&opts(bad.clone()), &BuildContext::default());
            assert!(matches!(e, Err(VerifierError::Config { .. })), "{bad}");
            let e = e.unwrap_err().to_string();
            assert!(
                e.contains("verifier `exact`") && e.contains(want),
                "{bad}: {e}"
            );
        }
        // A null option is absent: the default.
        let v = exact(json!({"strip": null, "case_sensitive": null, "extract": null}));
        assert!(v.normalize.strip && !v.normalize.case_sensitive && v.extract.is_none());
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
        let at_most_one = "give at most one of `value`, `values` and `field`";
        let non_empty_list = "`values` must be a non-empty list of non-empty strings";
        for (bad, want) in [
            (json!({"value": "a", "values": ["b"]}), at_most_one),
            (json!({"value": "a", "field": "f"}), at_most_one),
            (json!({"value": ""}), "`value` must not be empty"),
            (json!({"values": []}), non_empty_list),
            (json!({"values": ["a", ""]}), non_empty_list),
            (
                json!({"values": "a"}),
                "`values`: invalid type: string \"a\", expected a sequence",
            ),
            (
                json!({"mode": "some"}),
                "`mode`: unknown variant `some`, expected `all` or `any`",
            ),
            (
                json!({"mode": {"any": null}}),
                "`mode`: invalid type: map, expected a string",
            ),
            (
                json!({"case_sensitive": 0}),
                "`case_sensitive`: invalid type: integer `0`, expected a boolean",
            ),
            (
                json!({"needle": "x"}),
                "unknown field `needle`, expected one of `value`, `values`, `field`, `mode`, \
                 `case_sensitive`, `whole_word`",
            ),
        ] {
            let e = ContainsVerifier::from_options(&opts(bad.clone()), &BuildContext::default());
            assert!(matches!(e, Err(VerifierError::Config { .. })), "{bad}");
            let e = e.unwrap_err().to_string();
            assert!(
                e.contains("verifier `contains`") && e.contains(want),
                "{bad}: {e}"
            );
        }
        // A null option is absent: it neither counts as given nor replaces the default.
        let v = contains_v(json!({"value": null, "values": null, "field": "f", "mode": null}));
        assert_eq!(v.mode, Mode::All);
        assert!(matches!(v.needles, Needles::Reference(Some(ref f)) if f == "f"));
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
