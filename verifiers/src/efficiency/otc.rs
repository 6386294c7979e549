//! `otc`: OTC's tool-call efficiency multiplier ("OTC: Optimal Tool Calls via Reinforcement
//! Learning", also "Acting Less is Reasoning More!"; SEED-MECHANISMS.md §12) over an inner
//! correctness verifier: `r = α · r_tool · r_φ` with `r_φ` the inner reward.
//!
//! With `m` the tool calls of a completion and `c` a smoothing constant:
//! - `mode = "ppo"`: `r_tool = cos(m·π / (2m + c))` (1 at m = 0).
//! - `mode = "grpo"` (default): `n` = the fewest calls among the group's correct completions
//!   (0 when none is correct); `f(m, n)` = 0 if m = n = 0, m if n = 0, `2nm/(m + n)`
//!   otherwise; `r_tool` = 1 if f = n = 0, `cos(m·π/(2m + c))` if n = 0, `sin(f·π/(2n))`
//!   otherwise.

use super::{config_error, string_enum, typed_options, Inner};
use crate::tool::CallFormat;
use crate::{BuildContext, Group, Score, Verifier, VerifierError};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::f64::consts::PI;

/// Which OTC variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OtcMode {
    /// Per completion, no group: `cos(mπ/(2m + c))`.
    Ppo,
    /// Relative to the fewest calls of the group's correct completions.
    #[default]
    Grpo,
}

/// The options table as written in the task file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtcOptions {
    /// The wrapped verifier's table (`name` and its options).
    inner: Value,
    #[serde(default, deserialize_with = "string_enum")]
    mode: OtcMode,
    /// Smoothing constant `c` (default 1; unconfirmed in the source).
    c: Option<f64>,
    /// Scale `α` (default 1; unconfirmed in the source).
    alpha: Option<f64>,
    /// How tool calls are written, to count them: `tags` (default) or `openai`.
    #[serde(default, deserialize_with = "string_enum")]
    calls: CallFormat,
    /// A regular expression whose matches are counted as calls instead.
    call_pattern: Option<String>,
    /// Inner reward at or above which a completion is correct when the inner score has no
    /// `correct` component (default 0.5).
    threshold: Option<f64>,
}

/// `r_tool` of OTC-PPO: `cos(m·π / (2m + c))`.
pub fn otc_ppo_factor(m: usize, c: f64) -> f64 {
    let m = m as f64;
    (m * PI / (2.0 * m + c)).cos()
}

/// `r_tool` of OTC-GRPO for `m` calls when the group's correct completions needed at least `n`.
pub fn otc_grpo_factor(m: usize, n: usize, c: f64) -> f64 {
    if n == 0 {
        return if m == 0 { 1.0 } else { otc_ppo_factor(m, c) };
    }
    let (mf, nf) = (m as f64, n as f64);
    let f = 2.0 * nf * mf / (mf + nf);
    (f * PI / (2.0 * nf)).sin()
}

/// `otc` (see the module doc).
pub struct OtcVerifier {
    inner: Inner,
    mode: OtcMode,
    c: f64,
    alpha: f64,
    calls: CallFormat,
    call_pattern: Option<regex::Regex>,
}

impl OtcVerifier {
    /// Builds the combinator from its options (`inner`, `mode`, `c`, `alpha`, `calls`,
    /// `call_pattern`, `threshold`).
    pub fn from_options(
        options: &Map<String, Value>,
        ctx: &BuildContext,
    ) -> Result<Self, VerifierError> {
        let o: OtcOptions = typed_options("otc", options)?;
        let c = o.c.unwrap_or(1.0);
        if !(c.is_finite() && c > 0.0) {
            return Err(config_error(
                "otc",
                format!("`c` must be a finite number > 0, got {c}"),
            ));
        }
        let alpha = o.alpha.unwrap_or(1.0);
        if !alpha.is_finite() {
            return Err(config_error("otc", "`alpha` must be a finite number"));
        }
        let call_pattern = match o.call_pattern.as_deref() {
            None => None,
            Some("") => return Err(config_error("otc", "`call_pattern` must not be empty")),
            Some(p) => Some(crate::builtin::compile_pattern(p).map_err(|e| {
                config_error(
                    "otc",
                    format!("`call_pattern` is not a valid regular expression: {e}"),
                )
            })?),
        };
        let inner = Inner::build("otc", &o.inner, o.threshold.unwrap_or(0.5), ctx)?;
        Ok(Self {
            inner,
            mode: o.mode,
            c,
            alpha,
            calls: o.calls,
            call_pattern,
        })
    }

    /// The number of tool calls in a completion.
    pub fn count_calls(&self, text: &str) -> usize {
        let text = crate::tool::bounded_text(text);
        if let Some(p) = &self.call_pattern {
            return p.find_iter(text).count();
        }
        match self.calls.parse(text) {
            crate::tool::Parsed::Calls(c) => c.len(),
            crate::tool::Parsed::NoCalls => 0,
            // A malformed call still cost a call.
            crate::tool::Parsed::Malformed(_) => match self.calls {
                CallFormat::Tags => text.matches("<tool_call>").count(),
                CallFormat::Openai => 0,
            },
        }
    }

    /// The combinator over already computed `(calls, inner)` for one group.
    fn score_group(&self, calls: &[usize], inner: &[super::InnerScore]) -> Vec<Score> {
        let n = inner
            .iter()
            .zip(calls)
            .filter(|(s, _)| s.correct)
            .map(|(_, m)| *m)
            .min()
            .unwrap_or(0);
        inner
            .iter()
            .zip(calls)
            .map(|(s, &m)| {
                let factor = match self.mode {
                    OtcMode::Ppo => otc_ppo_factor(m, self.c),
                    OtcMode::Grpo => otc_grpo_factor(m, n, self.c),
                };
                let reward = self.alpha * factor * s.reward;
                let mut own = vec![("tool_calls", m as f64), ("tool_factor", factor)];
                if self.mode == OtcMode::Grpo {
                    own.push(("min_calls", n as f64));
                }
                self.inner.combine(s, reward, &own)
            })
            .collect()
    }
}

impl Verifier for OtcVerifier {
    fn name(&self) -> &str {
        "otc"
    }

    fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
        let inner = self.inner.score(groups);
        groups
            .iter()
            .zip(inner)
            .map(|(g, inner)| {
                let calls: Vec<usize> = g.completions.iter().map(|c| self.count_calls(c)).collect();
                self.score_group(&calls, &inner)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::efficiency::test_support::{Keyword, Misbehaving};
    use crate::{Registry, VerifyExample};
    use serde_json::json;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    fn with_inner(inner: Box<dyn Verifier>, mode: OtcMode) -> OtcVerifier {
        OtcVerifier {
            inner: Inner::from_verifier("keyword", inner, 0.5),
            mode,
            c: 1.0,
            alpha: 1.0,
            calls: CallFormat::Tags,
            call_pattern: None,
        }
    }

    fn calls(m: usize) -> String {
        "<tool_call>{\"name\": \"search\"}</tool_call>".repeat(m)
    }

    // The worked example's figures are written as printed there (0.707107 is 1/√2).
    #[allow(clippy::approx_constant)]
    #[test]
    fn seed_mechanisms_worked_examples() {
        // OTC-PPO for m = 0..3 with c = 1.
        let want = [1.0, 0.5, 0.309017, 0.222521];
        for (m, w) in want.iter().enumerate() {
            assert!(close(otc_ppo_factor(m, 1.0), *w), "m={m}");
        }
        // Edge cases: n = m = 0 gives 1; n = 0, m = 2 gives 0.309017.
        assert_eq!(otc_grpo_factor(0, 0, 1.0), 1.0);
        assert!(close(otc_grpo_factor(2, 0, 1.0), 0.309017));
        // m = 3, n = 2: f = 2.4, sin(0.6π); m = 6: f = 3, sin(0.75π).
        assert!(close(otc_grpo_factor(3, 2, 1.0), (0.6 * PI).sin()));
        assert!(close(otc_grpo_factor(6, 2, 1.0), 0.707107));
        // The group (1, wrong), (2, right), (3, right), (6, right): n = 2, r = [0, 1, .951057, .707107].
        let v = with_inner(Box::new(Keyword), OtcMode::Grpo);
        let group = Group {
            example: VerifyExample::default(),
            completions: vec![
                calls(1) + "WRONG",
                calls(2) + "RIGHT",
                calls(3) + "RIGHT",
                calls(6) + "RIGHT",
            ],
        };
        let s = v.score(std::slice::from_ref(&group));
        let rewards: Vec<f64> = s[0].iter().map(|s| f64::from(s.reward)).collect();
        for (got, want) in rewards.iter().zip([0.0, 1.0, 0.951057, 0.707107]) {
            assert!(close(*got, want), "{rewards:?}");
        }
        assert_eq!(s[0][2].components["tool_calls"], 3.0);
        assert_eq!(s[0][2].components["min_calls"], 2.0);
        assert_eq!(s[0][2].components["keyword"], 1.0);
        assert_eq!(s[0][2].components["keyword.correct"], 1.0);
        // PPO mode on the same group: cos per completion, times correctness.
        let v = with_inner(Box::new(Keyword), OtcMode::Ppo);
        let s = v.score(&[group]);
        assert!(close(f64::from(s[0][1].reward), 0.309017));
        assert_eq!(s[0][0].reward, 0.0);
    }

    #[test]
    fn no_correct_completion_uses_n_zero_and_alpha_scales() {
        let mut v = with_inner(Box::new(Keyword), OtcMode::Grpo);
        v.alpha = 2.0;
        let g = Group {
            example: VerifyExample::default(),
            completions: vec![calls(0) + "RIGHT", calls(2) + "RIGHT"],
        };
        let s = v.score(&[g]);
        // n = 0 (the call-free completion is correct): m = 0 → 1, m = 2 → cos(2π/5).
        assert!(close(f64::from(s[0][0].reward), 2.0));
        assert!(close(f64::from(s[0][1].reward), 2.0 * 0.309017));
    }

    #[test]
    fn counting_calls() {
        let ctx = BuildContext::default();
        let build = |o: Value| OtcVerifier::from_options(o.as_object().unwrap(), &ctx).unwrap();
        let v = build(json!({"inner": {"name": "math"}}));
        assert_eq!(v.count_calls(&calls(3)), 3);
        assert_eq!(
            v.count_calls("<tool_call>[{\"name\": \"a\"}, {\"name\": \"b\"}]</tool_call>"),
            2
        );
        assert_eq!(v.count_calls("<tool_call>junk</tool_call><tool_call>x"), 2);
        assert_eq!(v.count_calls("no calls"), 0);
        let v = build(json!({"inner": {"name": "math"}, "calls": "openai"}));
        assert_eq!(
            v.count_calls(r#"{"tool_calls": [{"function": {"name": "a", "arguments": "{}"}}]}"#),
            1
        );
        let v = build(json!({"inner": {"name": "math"}, "call_pattern": "<search>"}));
        assert_eq!(v.count_calls("<search>a</search> <search>b</search>"), 2);
    }

    #[test]
    fn wraps_math_from_a_task_table() {
        let r = Registry::builtin();
        let v = r
            .build(
                "otc",
                json!({"inner": {"name": "math", "allow_last_number": false}})
                    .as_object()
                    .unwrap(),
                &BuildContext::default(),
            )
            .unwrap();
        let g = Group {
            example: VerifyExample {
                answer: Some("12".into()),
                ..VerifyExample::default()
            },
            completions: vec![
                format!("{}\\boxed{{12}}", calls(1)),
                format!("{}\\boxed{{12}}", calls(2)),
                format!("{}\\boxed{{13}}", calls(0)),
            ],
        };
        let s = v.score(&[g]);
        // n = 1: m = 1 → sin(π/2) = 1; m = 2 → f = 4/3, sin(π/3); the wrong one 0.
        assert!(close(f64::from(s[0][0].reward), 1.0));
        assert!(close(f64::from(s[0][1].reward), (PI / 3.0).sin()));
        assert_eq!(s[0][2].reward, 0.0);
        assert_eq!(s[0][0].components["math.correct"], 1.0);
    }

    #[test]
    fn failing_inner_is_recorded_not_fatal() {
        let v = with_inner(Box::new(Misbehaving), OtcMode::Grpo);
        let g = |c: &[&str]| Group {
            example: VerifyExample::default(),
            completions: c.iter().map(|s| s.to_string()).collect(),
        };
        let s = v.score(&[g(&["a", "b"])]);
        assert!(s[0].iter().all(|s| s.reward == 0.0));
        assert_eq!(s[0][0].error.as_deref(), Some("keyword: boom"));
        let s = v.score(&[g(&["a", "SHORT"])]);
        assert_eq!(s[0].len(), 2);
        assert!(s[0][1]
            .error
            .as_deref()
            .unwrap()
            .contains("returned 1 scores, expected 2"));
        let s = v.score(&[g(&["PANIC"]), g(&["x", "y"])]);
        assert_eq!((s.len(), s[1].len()), (2, 2));
        assert!(s[0][0].error.as_deref().unwrap().contains("panicked"));
    }

    #[test]
    fn config_errors() {
        let r = Registry::builtin();
        let ctx = BuildContext::default();
        for (o, want) in [
            (json!({}), "missing field `inner`"),
            (
                json!({"inner": {"name": "math"}, "bogus": 1}),
                "unknown field `bogus`",
            ),
            (
                json!({"inner": {"name": "math"}, "mode": "ppo2"}),
                "unknown variant `ppo2`",
            ),
            (
                json!({"inner": {"name": "math"}, "mode": {"ppo": null}}),
                "`mode`: invalid type: map, expected a string",
            ),
            (
                json!({"inner": {"name": "math"}, "calls": {"openai": null}}),
                "`calls`: invalid type: map, expected a string",
            ),
            (json!({"inner": {"name": "math"}, "c": 0}), "`c` must be"),
            (
                json!({"inner": {"name": "math"}, "call_pattern": "("}),
                "`call_pattern` is not",
            ),
            (
                json!({"inner": {"name": "math", "weight": 2}}),
                "`inner.weight` is not used",
            ),
            (
                json!({"inner": {"name": "nope"}}),
                "unknown verifier `nope`",
            ),
            (
                json!({"inner": {"name": "math", "bogus": 1}}),
                "unknown field `bogus`, expected one of `extract`",
            ),
            (json!({"inner": 3}), "otc.inner: expected a table"),
        ] {
            let err = r
                .build("otc", o.as_object().unwrap(), &ctx)
                .err()
                .unwrap_or_else(|| panic!("{o} built"))
                .to_string();
            assert!(err.contains(want), "{o}: {err}");
        }
    }
}
