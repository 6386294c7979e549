//! The `tool_call` verifier: ToolRL's reward for tool calling ("ToolRL: Reward is All Tool
//! Learning Needs", github qiancheng0/ToolRL `verl/utils/reward_score/rlla.py`), reward =
//! `R_format + R_correct` in `[-3, 4]` with the paper's defaults.
//!
//! - `R_format ∈ {0, format_max}`: the completion has the layout the reference implies (tool
//!   calls iff the reference has some, a text response iff it expects one; in the `tags`
//!   format a `<think>` block first and every tag used once).
//! - `R_correct ∈ [-correct_max, correct_max]`: 0 when the reference has no call; `-max` when
//!   calls are missing or malformed; `+max` when the predicted list equals the reference;
//!   otherwise `2·max·S/S_max − max` with `S` = tool-name Jaccard + Σ over reference calls of
//!   the best unused same-name prediction's (parameter-name Jaccard + matching values) and
//!   `S_max = 1 + Σ (1 + |params|)`.
//!
//! The reference is `metadata[field]`, else `metadata.tool_calls`, else the example's
//! `answer`: a JSON list of calls, `{"tool_calls": [...], "response": ...}`, or ToolRL's own
//! `<tool_call>…</tool_call>` text.

mod calls;

pub use calls::ToolCall;
pub(crate) use calls::{bounded as bounded_text, parse_openai, parse_tag_calls, Parsed};

use crate::builtin::options::string_enum;
use crate::builtin::score_each;
use crate::{BuildContext, Score, Verifier, VerifierError, VerifyExample};
use calls::{bounded, calls_from_value, same_calls, values_equal};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// How a completion writes its tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CallFormat {
    /// `<think>…</think>` then `<tool_call>` blocks holding JSON `{name, parameters}` (one per
    /// line, one per block, or a list) and/or a `<response>…</response>` (ToolRL's template).
    #[default]
    Tags,
    /// One OpenAI-style assistant message as JSON: `{"content": ..., "tool_calls": [{"type":
    /// "function", "function": {"name", "arguments"}}]}` (or a bare list of calls).
    Openai,
}

impl CallFormat {
    /// The calls a completion makes in this format (`Malformed` when it is not valid).
    pub(crate) fn parse(self, text: &str) -> Parsed {
        match self {
            CallFormat::Tags => parse_tag_calls(text),
            CallFormat::Openai => match parse_openai(text) {
                Ok(m) => m.calls,
                Err(e) => Parsed::Malformed(e),
            },
        }
    }
}

/// The options table as written in the task file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolCallOptions {
    /// `tags` (default) or `openai`.
    #[serde(default, deserialize_with = "string_enum")]
    format: CallFormat,
    /// Metadata field holding the reference calls.
    field: Option<String>,
    /// `tags` only: whether a `<think>` block must open the completion (default true).
    require_think: Option<bool>,
    /// Format reward for a well-formed completion (default 1).
    format_max: Option<f64>,
    /// Correctness range `[-correct_max, correct_max]` (default 3; 1 is the paper's
    /// "scaled to [-1, 1]" ablation).
    correct_max: Option<f64>,
    /// Only `±correct_max` for an exact match or not (the paper's exact-match ablation).
    #[serde(default)]
    exact_match_only: bool,
    /// Compare string values case- and space-insensitively and numeric strings as numbers.
    #[serde(default)]
    lenient_values: bool,
}

/// What the reference says a completion should do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reference {
    /// The calls it should make, in order.
    pub calls: Vec<ToolCall>,
    /// Whether a text response is expected.
    pub expects_response: bool,
}

/// The reference read from its JSON or text form.
pub(crate) fn reference_from_value(v: &Value) -> Result<Reference, String> {
    match v {
        Value::Array(_) => {
            let calls = calls_from_value(v)?;
            Ok(Reference {
                expects_response: calls.is_empty(),
                calls,
            })
        }
        Value::Object(obj) if obj.contains_key("tool_calls") || obj.contains_key("response") => {
            let calls = match obj.get("tool_calls") {
                None | Some(Value::Null) => Vec::new(),
                Some(list) => calls_from_value(list)?,
            };
            let expects_response = match obj.get("response") {
                None => calls.is_empty(),
                Some(Value::Null | Value::Bool(false)) => false,
                Some(_) => true,
            };
            Ok(Reference {
                calls,
                expects_response,
            })
        }
        Value::Object(_) => Ok(Reference {
            calls: calls_from_value(v)?,
            expects_response: false,
        }),
        Value::String(s) => {
            let t = s.trim();
            if t.starts_with('[') || t.starts_with('{') {
                if let Ok(parsed) = serde_json::from_str::<Value>(t) {
                    return reference_from_value(&parsed);
                }
            }
            let calls = match parse_tag_calls(t) {
                Parsed::NoCalls => Vec::new(),
                Parsed::Calls(c) => c,
                Parsed::Malformed(e) => return Err(format!("the reference: {e}")),
            };
            Ok(Reference {
                expects_response: t.contains("<response>") || (calls.is_empty() && !t.is_empty()),
                calls,
            })
        }
        other => Err(format!(
            "the reference tool calls must be a list, an object or text, got {other}"
        )),
    }
}

/// Multiset Jaccard index `|A∩B| / (|A| + |B| − |A∩B|)` with counts; 1 for two equal lists
/// (both empty included), 0 when exactly one is empty.
pub fn multiset_jaccard<T: Ord>(a: &[T], b: &[T]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let mut counts: BTreeMap<&T, (usize, usize)> = BTreeMap::new();
    for x in a {
        counts.entry(x).or_default().0 += 1;
    }
    for x in b {
        counts.entry(x).or_default().1 += 1;
    }
    let inter: usize = counts.values().map(|(x, y)| (*x).min(*y)).sum();
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// ToolRL's partial-credit sum `S` and its maximum `S_max` for predicted calls against the
/// reference (see the module doc). `lenient` relaxes value equality.
pub fn partial_match(gt: &[ToolCall], pd: &[ToolCall], lenient: bool) -> (f64, f64) {
    let gt_names: Vec<&str> = gt.iter().map(|c| c.name.as_str()).collect();
    let pd_names: Vec<&str> = pd.iter().map(|c| c.name.as_str()).collect();
    let mut s = multiset_jaccard(&gt_names, &pd_names);
    let s_max = 1.0 + gt.iter().map(|g| 1.0 + g.params.len() as f64).sum::<f64>();
    let mut used = vec![false; pd.len()];
    for g in gt {
        let g_keys: Vec<&String> = g.params.keys().collect();
        let mut best: Option<(usize, f64)> = None;
        for (j, p) in pd.iter().enumerate() {
            if used[j] || p.name != g.name {
                continue;
            }
            let p_keys: Vec<&String> = p.params.keys().collect();
            let values = g
                .params
                .iter()
                .filter(|(k, v)| {
                    p.params
                        .get(*k)
                        .is_some_and(|w| values_equal(v, w, lenient))
                })
                .count() as f64;
            let score = multiset_jaccard(&g_keys, &p_keys) + values;
            if score > 0.0 && best.is_none_or(|(_, b)| score > b) {
                best = Some((j, score));
            }
        }
        if let Some((j, score)) = best {
            used[j] = true;
            s += score;
        }
    }
    (s, s_max)
}

/// One layout check of the `tags` format: a pattern and the tag counts it needs.
#[derive(Debug)]
struct TagLayout {
    pattern: regex::Regex,
    think: usize,
    tool_call: usize,
    response: usize,
}

/// `tool_call` (see the module doc).
#[derive(Debug)]
pub struct ToolCallVerifier {
    format: CallFormat,
    field: Option<String>,
    require_think: bool,
    format_max: f64,
    correct_max: f64,
    exact_match_only: bool,
    lenient_values: bool,
    /// Indexed by `2·has_calls + expects_response`.
    layouts: Vec<TagLayout>,
}

/// A configuration error of `tool_call`.
fn config_err(message: impl Into<String>) -> VerifierError {
    crate::builtin::options::config_error("tool_call", message)
}

impl ToolCallVerifier {
    /// Builds the verifier from its options (`format`, `field`, `require_think`,
    /// `format_max`, `correct_max`, `exact_match_only`, `lenient_values`).
    pub fn from_options(
        options: &Map<String, Value>,
        _ctx: &BuildContext,
    ) -> Result<Self, VerifierError> {
        let o: ToolCallOptions = crate::builtin::options::typed_options("tool_call", options)?;
        if o.format == CallFormat::Openai && o.require_think.is_some() {
            return Err(config_err(
                "`require_think` applies only to format = \"tags\"",
            ));
        }
        let format_max = o.format_max.unwrap_or(1.0);
        if !(format_max.is_finite() && format_max >= 0.0) {
            return Err(config_err(format!(
                "`format_max` must be a finite number ≥ 0, got {format_max}"
            )));
        }
        let correct_max = o.correct_max.unwrap_or(3.0);
        if !(correct_max.is_finite() && correct_max > 0.0) {
            return Err(config_err(format!(
                "`correct_max` must be a finite number > 0, got {correct_max}"
            )));
        }
        if o.field.as_deref() == Some("") {
            return Err(config_err("`field` must not be empty"));
        }
        let require_think = o.require_think.unwrap_or(true);
        let mut layouts = Vec::with_capacity(4);
        for has_calls in [false, true] {
            for response in [false, true] {
                let mut p = String::from(if require_think {
                    r"(?s)\A<think>.*?</think>\s*"
                } else {
                    r"(?s)\A(?:<think>.*?</think>\s*)?"
                });
                if has_calls {
                    p.push_str(r"<tool_call>.*?</tool_call>\s*");
                }
                if response {
                    p.push_str(r"<response>.*?</response>");
                }
                p.push_str(r"\s*\z");
                let pattern = regex::Regex::new(&p).map_err(|e| config_err(e.to_string()))?;
                layouts.push(TagLayout {
                    pattern,
                    think: usize::from(require_think),
                    tool_call: usize::from(has_calls),
                    response: usize::from(response),
                });
            }
        }
        Ok(Self {
            format: o.format,
            field: o.field,
            require_think,
            format_max,
            correct_max,
            exact_match_only: o.exact_match_only,
            lenient_values: o.lenient_values,
            layouts,
        })
    }

    /// The reference of an example (see the module doc).
    fn reference(&self, example: &VerifyExample) -> Result<Reference, String> {
        let value = match &self.field {
            Some(f) => example
                .metadata
                .get(f)
                .filter(|v| !v.is_null())
                .cloned()
                .ok_or_else(|| format!("the example has no metadata field `{f}`"))?,
            None => match example.metadata.get("tool_calls").filter(|v| !v.is_null()) {
                Some(v) => v.clone(),
                None => Value::String(example.answer.clone().ok_or_else(|| {
                    "the example has no reference tool calls (metadata `tool_calls` or answer)"
                        .to_string()
                })?),
            },
        };
        reference_from_value(&value)
    }

    /// Whether `text` has the layout `reference` implies.
    fn format_ok(&self, text: &str, reference: &Reference) -> bool {
        let has_calls = !reference.calls.is_empty();
        match self.format {
            CallFormat::Tags => {
                let t = bounded(text).trim();
                let layout = &self.layouts
                    [2 * usize::from(has_calls) + usize::from(reference.expects_response)];
                let count = |tag: &str| t.matches(tag).count();
                let think_ok = if self.require_think {
                    count("<think>") == 1 && count("</think>") == 1
                } else {
                    count("<think>") == count("</think>") && count("<think>") <= 1
                };
                think_ok
                    && count("<think>") >= layout.think
                    && count("<tool_call>") == layout.tool_call
                    && count("</tool_call>") == layout.tool_call
                    && count("<response>") == layout.response
                    && count("</response>") == layout.response
                    && layout.pattern.is_match(t)
            }
            CallFormat::Openai => match parse_openai(text) {
                Err(_) => false,
                Ok(m) => {
                    let calls_ok = match &m.calls {
                        Parsed::NoCalls => !has_calls,
                        Parsed::Calls(_) => has_calls,
                        Parsed::Malformed(_) => false,
                    };
                    calls_ok && m.content.is_some() == reference.expects_response
                }
            },
        }
    }

    /// `R_correct` for the parsed prediction.
    fn correctness(&self, reference: &Reference, predicted: &Parsed) -> f64 {
        if reference.calls.is_empty() {
            return 0.0;
        }
        let pd = match predicted {
            Parsed::Calls(c) => c,
            Parsed::NoCalls | Parsed::Malformed(_) => return -self.correct_max,
        };
        if same_calls(&reference.calls, pd, self.lenient_values) {
            return self.correct_max;
        }
        if self.exact_match_only {
            return -self.correct_max;
        }
        let (s, s_max) = partial_match(&reference.calls, pd, self.lenient_values);
        2.0 * self.correct_max * s / s_max - self.correct_max
    }

    /// Scores one completion.
    fn score_one(&self, example: &VerifyExample, text: &str) -> Score {
        let reference = match self.reference(example) {
            Ok(r) => r,
            Err(e) => return Score::failed(e),
        };
        let predicted = self.format.parse(text);
        let format = if self.format_ok(text, &reference) {
            self.format_max
        } else {
            0.0
        };
        let correctness = self.correctness(&reference, &predicted);
        let exact = match &predicted {
            Parsed::Calls(c) => same_calls(&reference.calls, c, self.lenient_values),
            Parsed::NoCalls => reference.calls.is_empty(),
            Parsed::Malformed(_) => false,
        };
        let mut score = Score::reward((format + correctness) as f32);
        for (k, v) in [
            ("format", format),
            ("correctness", correctness),
            ("correct", if exact { 1.0 } else { 0.0 }),
            ("calls", predicted.calls().len() as f64),
            (
                "malformed",
                if matches!(predicted, Parsed::Malformed(_)) {
                    1.0
                } else {
                    0.0
                },
            ),
        ] {
            score.components.insert(k.to_string(), v as f32);
        }
        score
    }
}

impl Verifier for ToolCallVerifier {
    fn name(&self) -> &str {
        "tool_call"
    }

    fn score(&self, groups: &[crate::Group]) -> Vec<Vec<Score>> {
        score_each(groups, |e, c| self.score_one(e, c))
    }
}

#[cfg(test)]
mod tests;
