//! `grpo_lambda`: GRPO-λ's correctness-gated length penalty ("Stable Reinforcement Learning
//! for Efficient Reasoning"; SEED-MECHANISMS.md §10) over an inner correctness verifier.
//!
//! Over the batch (the groups of one `score` call: one training step, one `oxrl verify` file):
//! each group's correctness ratio `c_q = #correct / G`; the `k = ⌈λ·B⌉` groups with the highest
//! `c_q` (ties broken by batch position) are length-penalised, the others keep the inner reward.
//! In a penalised group, with lengths `len_i`: `λ_i = 0.5 − (len_i − min)/(max − min)` (0 for
//! all when `max = min`), `len_reward_i = λ_i` if correct else `min(0, λ_i)`, and
//! `r_i = inner_i + len_reward_i` (Kimi-1.5-style length reward; the form and the sum are
//! unconfirmed in the source).

use super::{config_error, string_enum, typed_options, Inner, InnerScore};
use crate::{BuildContext, Group, Score, Verifier, VerifierError};
use serde::Deserialize;
use serde_json::{Map, Value};

/// What a completion's length is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LengthUnit {
    /// Unicode scalar values.
    #[default]
    Chars,
    /// Whitespace-separated words.
    Words,
}

impl LengthUnit {
    /// The length of `text` in this unit.
    pub fn measure(self, text: &str) -> usize {
        match self {
            LengthUnit::Chars => text.chars().count(),
            LengthUnit::Words => text.split_whitespace().count(),
        }
    }
}

/// The options table as written in the task file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrpoLambdaOptions {
    /// The wrapped verifier's table (`name` and its options).
    inner: Value,
    /// Fraction of the batch's groups that are penalised (default 0.5; unconfirmed).
    lambda: Option<f64>,
    #[serde(default, deserialize_with = "string_enum")]
    length_unit: LengthUnit,
    /// Inner reward at or above which a completion is correct when the inner score has no
    /// `correct` component (default 0.5).
    threshold: Option<f64>,
}

/// The Kimi-style length rewards of one penalised group: `λ_i` for correct completions,
/// `min(0, λ_i)` for the others.
pub fn length_rewards(lengths: &[usize], correct: &[bool]) -> Vec<f64> {
    let (Some(&min), Some(&max)) = (lengths.iter().min(), lengths.iter().max()) else {
        return Vec::new();
    };
    lengths
        .iter()
        .zip(correct)
        .map(|(&len, &ok)| {
            let lambda = if max == min {
                0.0
            } else {
                0.5 - (len - min) as f64 / (max - min) as f64
            };
            if ok {
                lambda
            } else {
                lambda.min(0.0)
            }
        })
        .collect()
}

/// Which groups of a batch are penalised: the `⌈λ·B⌉` highest correctness ratios, ties by
/// position.
pub fn penalised_groups(ratios: &[f64], lambda: f64) -> Vec<bool> {
    let k = ((lambda * ratios.len() as f64).ceil() as usize).min(ratios.len());
    let mut order: Vec<usize> = (0..ratios.len()).collect();
    order.sort_by(|&a, &b| ratios[b].total_cmp(&ratios[a]).then(a.cmp(&b)));
    let mut out = vec![false; ratios.len()];
    for &i in &order[..k] {
        out[i] = true;
    }
    out
}

/// `grpo_lambda` (see the module doc).
pub struct GrpoLambdaVerifier {
    inner: Inner,
    lambda: f64,
    unit: LengthUnit,
}

impl GrpoLambdaVerifier {
    /// Builds the combinator from its options (`inner`, `lambda`, `length_unit`, `threshold`).
    pub fn from_options(
        options: &Map<String, Value>,
        ctx: &BuildContext,
    ) -> Result<Self, VerifierError> {
        let o: GrpoLambdaOptions = typed_options("grpo_lambda", options)?;
        let lambda = o.lambda.unwrap_or(0.5);
        if !(0.0..=1.0).contains(&lambda) {
            return Err(config_error(
                "grpo_lambda",
                format!("`lambda` must be in [0, 1], got {lambda}"),
            ));
        }
        let inner = Inner::build("grpo_lambda", &o.inner, o.threshold.unwrap_or(0.5), ctx)?;
        Ok(Self {
            inner,
            lambda,
            unit: o.length_unit,
        })
    }

    /// The combinator over already computed inner scores.
    fn shape(&self, groups: &[Group], inner: &[Vec<InnerScore>]) -> Vec<Vec<Score>> {
        let ratios: Vec<f64> = inner
            .iter()
            .map(|g| {
                if g.is_empty() {
                    0.0
                } else {
                    g.iter().filter(|s| s.correct).count() as f64 / g.len() as f64
                }
            })
            .collect();
        let penalised = penalised_groups(&ratios, self.lambda);
        groups
            .iter()
            .zip(inner)
            .enumerate()
            .map(|(gi, (g, scores))| {
                let lengths: Vec<usize> =
                    g.completions.iter().map(|c| self.unit.measure(c)).collect();
                let correct: Vec<bool> = scores.iter().map(|s| s.correct).collect();
                let bonus = if penalised[gi] {
                    length_rewards(&lengths, &correct)
                } else {
                    vec![0.0; scores.len()]
                };
                scores
                    .iter()
                    .zip(&bonus)
                    .zip(&lengths)
                    .map(|((s, &b), &len)| {
                        self.inner.combine(
                            s,
                            s.reward + b,
                            &[
                                ("penalised", if penalised[gi] { 1.0 } else { 0.0 }),
                                ("length", len as f64),
                                ("length_reward", b),
                                ("group_correct_ratio", ratios[gi]),
                            ],
                        )
                    })
                    .collect()
            })
            .collect()
    }
}

impl Verifier for GrpoLambdaVerifier {
    fn name(&self) -> &str {
        "grpo_lambda"
    }

    fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
        let inner = self.inner.score(groups);
        self.shape(groups, &inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::efficiency::test_support::{Keyword, Misbehaving};
    use crate::{Registry, VerifyExample};
    use serde_json::json;

    fn close(a: f32, b: f64) -> bool {
        (f64::from(a) - b).abs() < 1e-6
    }

    fn group(texts: &[String]) -> Group {
        Group {
            example: VerifyExample::default(),
            completions: texts.to_vec(),
        }
    }

    /// A completion of exactly `len` characters, correct or not for [`Keyword`].
    fn text(len: usize, right: bool) -> String {
        let mark = if right { "RIGHT" } else { "WRONG" };
        format!("{mark}{}", "x".repeat(len - mark.len()))
    }

    fn with_keyword(lambda: f64) -> GrpoLambdaVerifier {
        GrpoLambdaVerifier {
            inner: Inner::from_verifier("keyword", Box::new(Keyword), 0.5),
            lambda,
            unit: LengthUnit::Chars,
        }
    }

    #[test]
    fn seed_mechanisms_worked_examples() {
        // c = [1.0, 0.75, 0.25, 0.0], λ = 0.5: groups 1-2 penalised, 3-4 keep 0/1.
        assert_eq!(
            penalised_groups(&[1.0, 0.75, 0.25, 0.0], 0.5),
            [true, true, false, false]
        );
        // Lengths [100, 200, 300, 400], correctness [1, 1, 1, 0]:
        // λ_i = [0.5, 0.166667, −0.166667, −0.5], r = [1.5, 1.166667, 0.833333, −0.5].
        let lr = length_rewards(&[100, 200, 300, 400], &[true, true, true, false]);
        for (got, want) in lr.iter().zip([0.5, 0.166667, -0.166667, -0.5]) {
            assert!((got - want).abs() < 1e-6, "{lr:?}");
        }
        let v = with_keyword(0.5);
        let penalised = group(&[
            text(100, true),
            text(200, true),
            text(300, true),
            text(400, false),
        ]);
        let all_right = group(&[
            text(10, true),
            text(20, true),
            text(30, true),
            text(40, true),
        ]);
        let one_right = group(&[
            text(10, true),
            text(20, false),
            text(30, false),
            text(40, false),
        ]);
        let none = group(&[
            text(10, false),
            text(20, false),
            text(30, false),
            text(40, false),
        ]);
        let s = v.score(&[penalised, one_right, all_right, none]);
        for (got, want) in s[0].iter().zip([1.5, 1.166667, 0.833333, -0.5]) {
            assert!(close(got.reward, want), "{:?}", s[0]);
        }
        assert_eq!(s[0][0].components["penalised"], 1.0);
        assert_eq!(s[0][0].components["group_correct_ratio"], 0.75);
        assert_eq!(s[0][3].components["length"], 400.0);
        // The all-correct group is the other penalised one: λ_i = 0.5, 1/6, −1/6, −0.5.
        assert!(close(s[2][1].reward, 1.0 + 1.0 / 6.0));
        // The 0.25 and 0.0 groups keep plain 0/1 correctness.
        let plain: Vec<f32> = s[1].iter().chain(&s[3]).map(|s| s.reward).collect();
        assert_eq!(plain, [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(s[1][0].components["penalised"], 0.0);
    }

    #[test]
    fn ties_equal_lengths_and_lambda_edges() {
        assert_eq!(penalised_groups(&[0.5, 1.0, 0.5], 0.5), [true, true, false]);
        assert_eq!(penalised_groups(&[0.5, 1.0], 0.0), [false, false]);
        assert_eq!(penalised_groups(&[0.5, 1.0], 1.0), [true, true]);
        assert_eq!(penalised_groups(&[], 0.5), Vec::<bool>::new());
        assert_eq!(length_rewards(&[5, 5], &[true, false]), [0.0, 0.0]);
        assert!(length_rewards(&[], &[]).is_empty());
        // A wrong but shortest completion gains nothing (min(0, 0.5) = 0).
        assert_eq!(length_rewards(&[1, 9], &[false, true]), [0.0, -0.5]);
        let v = GrpoLambdaVerifier {
            unit: LengthUnit::Words,
            ..with_keyword(1.0)
        };
        let s = v.score(&[group(&["RIGHT a".into(), "RIGHT a b c".into()])]);
        assert_eq!((s[0][0].reward, s[0][1].reward), (1.5, 0.5));
        assert_eq!(s[0][1].components["length"], 4.0);
        // An empty group is fine.
        assert!(v.score(&[group(&[])])[0].is_empty());
    }

    #[test]
    fn wraps_math_from_a_task_table() {
        let r = Registry::builtin();
        let v = r
            .build(
                "grpo_lambda",
                json!({"inner": {"name": "math"}, "lambda": 1.0})
                    .as_object()
                    .unwrap(),
                &BuildContext::default(),
            )
            .unwrap();
        let g = Group {
            example: VerifyExample {
                answer: Some("4".into()),
                ..VerifyExample::default()
            },
            completions: vec![
                "\\boxed{4}".into(),
                "2 + 2 = 4, so \\boxed{4}".into(),
                "\\boxed{5}".into(),
            ],
        };
        let s = v.score(&[g]);
        // Lengths 9, 23, 9: the short right one +0.5, the long one −0.5, the short wrong one 0.
        assert_eq!(s[0][0].reward, 1.5);
        assert_eq!(s[0][1].reward, 0.5);
        assert_eq!(s[0][2].reward, 0.0);
        assert_eq!(s[0][1].components["math.correct"], 1.0);
    }

    #[test]
    fn failing_inner_is_recorded_not_fatal() {
        let v = GrpoLambdaVerifier {
            inner: Inner::from_verifier("bad", Box::new(Misbehaving), 0.5),
            lambda: 1.0,
            unit: LengthUnit::Chars,
        };
        let s = v.score(&[group(&["a".into(), "bbbb".into()])]);
        // Every item failed: wrong, reward 0 plus min(0, λ_i).
        assert_eq!((s[0][0].reward, s[0][1].reward), (0.0, -0.5));
        assert_eq!(s[0][0].error.as_deref(), Some("bad: boom"));
        let s = v.score(&[
            group(&["PANIC".into()]),
            group(&["SHORT".into(), "x".into()]),
        ]);
        assert!(s[0][0].error.as_deref().unwrap().contains("panicked"));
        assert_eq!(s[1].len(), 2);
    }

    #[test]
    fn config_errors() {
        let r = Registry::builtin();
        let ctx = BuildContext::default();
        for (o, want) in [
            (json!({"lambda": 0.5}), "missing field `inner`"),
            (
                json!({"inner": {"name": "math"}, "lambda": 1.5}),
                "`lambda` must be in [0, 1]",
            ),
            (
                json!({"inner": {"name": "math"}, "length_unit": "tokens"}),
                "unknown variant `tokens`",
            ),
            (
                json!({"inner": {"name": "math"}, "length_unit": {"words": null}}),
                "`length_unit`: invalid type: map, expected a string",
            ),
            (
                json!({"inner": {"name": "math"}, "lamda": 0.5}),
                "unknown field `lamda`",
            ),
            (
                json!({"inner": {}}),
                "grpo_lambda.inner needs a string `name`",
            ),
            (
                json!({"inner": {"name": "math"}, "threshold": "x"}),
                "invalid type",
            ),
        ] {
            let err = r
                .build("grpo_lambda", o.as_object().unwrap(), &ctx)
                .err()
                .unwrap_or_else(|| panic!("{o} built"))
                .to_string();
            assert!(err.contains(want), "{o}: {err}");
        }
    }
}
