//! The `format` verifier: the completion must have a required structure, given as a regular
//! expression that matches the whole text and/or a list of tags (`<think>…</think>`,
//! `<answer>…</answer>`) that must each appear exactly once, closed, in order. Reward 1/0, or
//! the fraction of requirements met (`partial`). Components: one per requirement.

use super::options::{compile, config_error, non_empty, typed_options};
use super::{bin, score_each};
use crate::{BuildContext, Group, Score, Verifier, VerifierError};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The options table of `format`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FormatOptions {
    /// A regular expression the whole completion must match.
    pattern: Option<String>,
    /// Tag names that must each appear once, closed.
    tags: Option<Vec<String>>,
    /// With `tags`: in the listed order (default true).
    ordered: Option<bool>,
    /// With `tags`: nothing but whitespace outside them (default false).
    strict: Option<bool>,
    /// Reward the fraction of requirements met.
    #[serde(default)]
    partial: bool,
    /// Text put before the completion before checking.
    #[serde(default)]
    prefix: String,
}

/// `format`: structural requirements on the whole completion.
#[derive(Debug, Clone)]
pub struct FormatVerifier {
    pattern: Option<regex::Regex>,
    tags: Vec<String>,
    ordered: bool,
    strict: bool,
    partial: bool,
    prefix: String,
}

impl FormatVerifier {
    /// Builds the verifier from its options (`pattern`, `tags`, `ordered`, `strict`, `partial`,
    /// `prefix`).
    pub fn from_options(
        options: &Map<String, Value>,
        _ctx: &BuildContext,
    ) -> Result<Self, VerifierError> {
        let err = |m: String| config_error("format", m);
        let o: FormatOptions = typed_options("format", options)?;
        let pattern =
            match non_empty("format", "pattern", o.pattern)? {
                None => None,
                Some(p) => Some(compile(&format!(r"\A(?:{p})\z")).map_err(|e| {
                    err(format!("`pattern` is not a valid regular expression: {e}"))
                })?),
            };
        let tags = o.tags.unwrap_or_default();
        for (i, t) in tags.iter().enumerate() {
            if t.is_empty() || t.chars().any(|c| c.is_whitespace() || "<>/".contains(c)) {
                return Err(err(format!(
                    "`tags`: `{t}` is not a tag name (no spaces, `<`, `>` or `/`)"
                )));
            }
            if tags[..i].contains(t) {
                return Err(err(format!("`tags`: `{t}` is listed twice")));
            }
        }
        if pattern.is_none() && tags.is_empty() {
            return Err(err("give `pattern` and/or `tags`".into()));
        }
        if tags.is_empty() && (o.strict.is_some() || o.ordered.is_some()) {
            return Err(err("`strict` and `ordered` apply only with `tags`".into()));
        }
        Ok(Self {
            pattern,
            tags,
            ordered: o.ordered.unwrap_or(true),
            strict: o.strict.unwrap_or(false),
            partial: o.partial,
            prefix: o.prefix,
        })
    }

    /// Each requirement with whether `completion` meets it, in a fixed order: `pattern`,
    /// `tag.<name>` per tag, `order` (two or more tags, `ordered`), `strict`.
    pub fn requirements(&self, completion: &str) -> Vec<(String, bool)> {
        let text = format!("{}{completion}", self.prefix);
        let mut out = Vec::new();
        if let Some(re) = &self.pattern {
            out.push(("pattern".to_string(), re.is_match(&text)));
        }
        if self.tags.is_empty() {
            return out;
        }
        let spans: Vec<Option<(usize, usize)>> =
            self.tags.iter().map(|t| tag_span(&text, t)).collect();
        for (t, s) in self.tags.iter().zip(&spans) {
            out.push((format!("tag.{t}"), s.is_some()));
        }
        let all: Option<Vec<(usize, usize)>> = spans.iter().copied().collect();
        if self.ordered && self.tags.len() > 1 {
            let in_order = all
                .as_ref()
                .is_some_and(|s| s.windows(2).all(|w| w[0].1 <= w[1].0));
            out.push(("order".to_string(), in_order));
        }
        if self.strict {
            let clean = all.as_ref().is_some_and(|s| only_space_outside(&text, s));
            out.push(("strict".to_string(), clean));
        }
        out
    }

    /// Scores one completion.
    pub fn score_one(&self, completion: &str) -> Score {
        let reqs = self.requirements(completion);
        let met = reqs.iter().filter(|(_, ok)| *ok).count();
        let reward = if self.partial {
            met as f32 / reqs.len().max(1) as f32
        } else {
            bin(met == reqs.len())
        };
        let mut s = Score::reward(reward);
        for (name, ok) in reqs {
            s.components.insert(name, bin(ok));
        }
        s
    }
}

/// The byte span from `<tag>` to the end of `</tag>` when each occurs exactly once, the opening
/// first.
fn tag_span(text: &str, tag: &str) -> Option<(usize, usize)> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut opens = text.match_indices(&open);
    let mut closes = text.match_indices(&close);
    let (o, _) = opens.next()?;
    let (c, _) = closes.next()?;
    if opens.next().is_some() || closes.next().is_some() || o + open.len() > c {
        return None;
    }
    Some((o, c + close.len()))
}

/// Whether everything outside the spans is whitespace.
fn only_space_outside(text: &str, spans: &[(usize, usize)]) -> bool {
    let mut sorted = spans.to_vec();
    sorted.sort_unstable();
    let mut pos = 0;
    for (s, e) in sorted {
        if s > pos && !text[pos..s].trim().is_empty() {
            return false;
        }
        pos = pos.max(e);
    }
    text[pos..].trim().is_empty()
}

impl Verifier for FormatVerifier {
    fn name(&self) -> &str {
        "format"
    }

    fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
        score_each(groups, |_, c| self.score_one(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(v: Value) -> Result<FormatVerifier, VerifierError> {
        FormatVerifier::from_options(
            &v.as_object().cloned().unwrap_or_default(),
            &BuildContext::default(),
        )
    }

    const COUNTDOWN: &str = r"(?s)^.*</think>\s*<answer>.*</answer>\s*$";

    #[test]
    fn countdown_pattern() {
        let v = build(json!({"pattern": COUNTDOWN})).unwrap();
        for (c, want) in [
            ("reasoning</think>\n<answer>1+2</answer>", 1.0),
            (" a\nb </think><answer>x</answer>\n\n", 1.0),
            ("</think> <answer></answer>", 1.0),
            ("reasoning</think>\n<answer>1+2</answer> trailing", 0.0),
            ("reasoning\n<answer>1+2</answer>", 0.0),
            ("reasoning</think>\n<answer>1+2", 0.0),
            ("<answer>1+2</answer></think>", 0.0),
            ("", 0.0),
        ] {
            let s = v.score_one(c);
            assert_eq!(s.reward, want, "{c:?}");
            assert_eq!(s.components["pattern"], want);
            assert_eq!(s.components.len(), 1);
        }
    }

    #[test]
    fn pattern_is_anchored_as_a_whole() {
        let v = build(json!({"pattern": "a|b"})).unwrap();
        assert_eq!(v.score_one("a").reward, 1.0);
        assert_eq!(v.score_one("ab").reward, 0.0);
        assert_eq!(v.score_one("a\n").reward, 0.0);
    }

    #[test]
    fn tags_once_closed_in_order() {
        let v = build(json!({"tags": ["think", "answer"]})).unwrap();
        let cases = [
            ("<think>x</think><answer>4</answer>", [1.0, 1.0, 1.0]),
            (
                "intro <think>x</think>\n<answer>4</answer> outro",
                [1.0, 1.0, 1.0],
            ),
            ("<answer>4</answer><think>x</think>", [1.0, 1.0, 0.0]),
            ("<think>x <answer>4</answer></think>", [1.0, 1.0, 0.0]),
            (
                "<think>x</think><think>y</think><answer>4</answer>",
                [0.0, 1.0, 0.0],
            ),
            ("<think>x<answer>4</answer>", [0.0, 1.0, 0.0]),
            ("</think>x<think><answer>4</answer>", [0.0, 1.0, 0.0]),
            ("<think>x</think><answer>4", [1.0, 0.0, 0.0]),
            ("<THINK>x</THINK><answer>4</answer>", [0.0, 1.0, 0.0]),
            ("", [0.0, 0.0, 0.0]),
        ];
        for (c, [think, answer, order]) in cases {
            let s = v.score_one(c);
            assert_eq!(s.components["tag.think"], think, "{c:?}");
            assert_eq!(s.components["tag.answer"], answer, "{c:?}");
            assert_eq!(s.components["order"], order, "{c:?}");
            let all = think * answer * order;
            assert_eq!(s.reward, all, "{c:?}");
        }
        let unordered = build(json!({"tags": ["think", "answer"], "ordered": false})).unwrap();
        let s = unordered.score_one("<answer>4</answer><think>x</think>");
        assert_eq!(s.reward, 1.0);
        assert!(!s.components.contains_key("order"));
    }

    #[test]
    fn strict_partial_and_prefix() {
        let v = build(json!({"tags": ["think", "answer"], "strict": true})).unwrap();
        assert_eq!(
            v.score_one("\n<think>x</think>\n\n<answer>4</answer>\n")
                .reward,
            1.0
        );
        let s = v.score_one("Sure! <think>x</think><answer>4</answer>");
        assert_eq!(s.reward, 0.0);
        assert_eq!(s.components["strict"], 0.0);
        assert_eq!(s.components["order"], 1.0);
        let s = v.score_one("<think>x</think>between<answer>4</answer>");
        assert_eq!(s.components["strict"], 0.0);
        let p = build(json!({
            "tags": ["think", "answer"], "strict": true, "partial": true,
            "pattern": r"(?s).*\d</answer>\s*"
        }))
        .unwrap();
        let s = p.score_one("hi <think>x</think><answer>4</answer>");
        // pattern, tag.think, tag.answer, order met; strict not.
        assert_eq!(s.reward, 0.8);
        assert_eq!(s.components.len(), 5);
        let s = p.score_one("nothing");
        assert_eq!(s.reward, 0.0);
        let s = p.score_one("<think>x</think><answer>four</answer>");
        assert_eq!(s.reward, 0.8);
        assert_eq!(s.components["pattern"], 0.0);
        // The prompt opened <think>; the completion continues inside it.
        let pre = build(json!({"tags": ["think", "answer"], "prefix": "<think>"})).unwrap();
        assert_eq!(pre.score_one("x</think><answer>4</answer>").reward, 1.0);
        assert_eq!(
            pre.score_one("<think>x</think><answer>4</answer>").reward,
            0.0
        );
    }

    #[test]
    fn config_errors() {
        let not_a_tag = "is not a tag name (no spaces, `<`, `>` or `/`)";
        let nothing = "give `pattern` and/or `tags`";
        for (bad, want) in [
            (json!({}), nothing),
            (
                json!({"pattern": "("}),
                "`pattern` is not a valid regular expression",
            ),
            (json!({"pattern": ""}), "`pattern` must not be empty"),
            (json!({"tags": []}), nothing),
            (
                json!({"tags": "think"}),
                "`tags`: invalid type: string \"think\", expected a sequence",
            ),
            (json!({"tags": ["a b"]}), not_a_tag),
            (json!({"tags": ["<a>"]}), not_a_tag),
            (json!({"tags": ["a", "a"]}), "`tags`: `a` is listed twice"),
            (json!({"tags": [""]}), not_a_tag),
            (
                json!({"pattern": "x", "strict": true}),
                "`strict` and `ordered` apply only with `tags`",
            ),
            (
                json!({"tags": ["a"], "partial": "yes"}),
                "`partial`: invalid type: string \"yes\", expected a boolean",
            ),
            (
                json!({"tags": ["a"], "prefix": 1}),
                "`prefix`: invalid type: integer `1`, expected a string",
            ),
            (
                json!({"tag": ["a"]}),
                "unknown field `tag`, expected one of `pattern`, `tags`, `ordered`, `strict`, \
                 `partial`, `prefix`",
            ),
        ] {
            let e = build(bad.clone());
            assert!(matches!(e, Err(VerifierError::Config { .. })), "{bad}");
            let e = e.unwrap_err().to_string();
            assert!(
                e.contains("verifier `format`") && e.contains(want),
                "{bad}: {e}"
            );
        }
        // A null option is absent: `strict: null` does not need `tags`.
        let v = build(json!({"pattern": "x", "strict": null, "prefix": null})).unwrap();
        assert!(!v.strict && v.ordered && v.prefix.is_empty());
    }

    #[test]
    fn garbage_never_panics() {
        let v = build(json!({
            "tags": ["think", "answer"], "strict": true, "partial": true, "pattern": COUNTDOWN
        }))
        .unwrap();
        let huge = "<think>".repeat(100_000);
        let nested = format!("{}{}", "<answer>".repeat(1000), "</answer>".repeat(1000));
        for s in [
            "",
            "\u{0}<",
            "<think></think><answer></answer>\u{fffd}",
            huge.as_str(),
            nested.as_str(),
            "</answer></think>",
            "<think>é</think>ü<answer>\u{10ffff}</answer>",
        ] {
            let sc = v.score_one(s);
            assert!((0.0..=1.0).contains(&sc.reward), "{s:?}");
        }
    }
}
