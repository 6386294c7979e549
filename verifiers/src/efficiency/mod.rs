//! Efficiency rewards as combinators over another verifier's score: `otc` (OTC's tool-call
//! efficiency multiplier, [`otc`]) and `grpo_lambda` (GRPO-λ's correctness-gated length
//! penalty, [`grpo_lambda`]). Each wraps an `inner` verifier table (built through the same
//! registry), reads its reward and correctness per completion and reshapes the reward using the
//! whole group (OTC-GRPO) or the whole batch of groups (GRPO-λ).
//!
//! An inner verifier that fails an item, returns the wrong number of scores or panics costs
//! that item its correctness (it counts as wrong, inner reward 0) and records the error; the
//! combinator itself never fails a batch.

pub mod grpo_lambda;
pub mod otc;

pub use grpo_lambda::GrpoLambdaVerifier;
pub use otc::OtcVerifier;

use crate::{BuildContext, Group, Registry, Score, Verifier, VerifierError, VerifierSpec};
use serde_json::Value;
use std::panic::AssertUnwindSafe;

/// Registers `otc` and `grpo_lambda` in `registry`.
pub fn register(registry: &mut Registry) {
    registry.register("otc", |o, c| {
        Ok(Box::new(OtcVerifier::from_options(o, c)?) as Box<dyn Verifier>)
    });
    registry.register("grpo_lambda", |o, c| {
        Ok(Box::new(GrpoLambdaVerifier::from_options(o, c)?) as Box<dyn Verifier>)
    });
}

pub(crate) use crate::builtin::options::{config_error, string_enum, typed_options};

/// One completion as the inner verifier scored it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InnerScore {
    /// The inner reward (0 when it failed or was not finite).
    pub reward: f64,
    /// Whether the completion counts as correct (see [`Inner::correct`]).
    pub correct: bool,
    /// The inner score as returned (components, error).
    pub score: Score,
}

/// The verifier a combinator wraps.
pub(crate) struct Inner {
    /// Its name, the prefix of its components and errors.
    pub label: String,
    verifier: Box<dyn Verifier>,
    /// Reward at or above which an inner score without a `correct` component is correct.
    threshold: f64,
}

impl Inner {
    /// Builds the table `spec` (`{name, ...options}`, no `weight`: the combinator's own
    /// weight is the one that counts) with the registry of `ctx`.
    pub(crate) fn build(
        combinator: &str,
        spec: &Value,
        threshold: f64,
        ctx: &BuildContext,
    ) -> Result<Self, VerifierError> {
        let at = format!("{combinator}.inner");
        if spec.get("weight").is_some() {
            return Err(config_error(
                combinator,
                "`inner.weight` is not used: put the weight on the combinator's table",
            ));
        }
        let VerifierSpec { name, options, .. } = VerifierSpec::parse(spec, &at)?;
        let registry = ctx.registry().cloned().unwrap_or_else(Registry::builtin);
        let verifier = registry.build(&name, &options, ctx)?;
        if !threshold.is_finite() {
            return Err(config_error(
                combinator,
                "`threshold` must be a finite number",
            ));
        }
        Ok(Self {
            label: name,
            verifier,
            threshold,
        })
    }

    /// An inner verifier given directly (tests).
    #[cfg(test)]
    pub(crate) fn from_verifier(label: &str, verifier: Box<dyn Verifier>, threshold: f64) -> Self {
        Self {
            label: label.to_string(),
            verifier,
            threshold,
        }
    }

    /// Whether `score` counts as correct: its `correct` component ≥ 0.5 when it has one,
    /// else its reward ≥ the threshold; a failed score is never correct.
    fn correct(&self, score: &Score, reward: f64) -> bool {
        if score.error.is_some() {
            return false;
        }
        match score.components.get("correct") {
            Some(c) => *c >= 0.5,
            None => reward >= self.threshold,
        }
    }

    /// Scores `groups` with the inner verifier: exactly one [`InnerScore`] per completion,
    /// whatever the inner verifier does (a panic or a wrong count fails the affected items).
    pub(crate) fn score(&self, groups: &[Group]) -> Vec<Vec<InnerScore>> {
        let raw = std::panic::catch_unwind(AssertUnwindSafe(|| self.verifier.score(groups)));
        let raw = match raw {
            Ok(r) if r.len() == groups.len() => r,
            Ok(r) => fail_all(
                groups,
                &format!(
                    "returned scores for {} groups, expected {}",
                    r.len(),
                    groups.len()
                ),
            ),
            Err(_) => fail_all(groups, "panicked while scoring"),
        };
        groups
            .iter()
            .zip(raw)
            .map(|(g, scores)| {
                let n = g.completions.len();
                let scores = if scores.len() == n {
                    scores
                } else {
                    vec![
                        Score::failed(format!("returned {} scores, expected {n}", scores.len()));
                        n
                    ]
                };
                scores
                    .into_iter()
                    .map(|s| {
                        let reward = if s.reward.is_finite() && s.error.is_none() {
                            f64::from(s.reward)
                        } else {
                            0.0
                        };
                        let mut s = s;
                        if !s.reward.is_finite() {
                            s.error = Some(format!("non-finite reward {}", s.reward));
                        }
                        InnerScore {
                            correct: self.correct(&s, reward),
                            reward,
                            score: s,
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// The combinator's score for one item: `reward`, the inner reward and components under
    /// this label, `correct` (the inner verdict), the combinator's own `components`, and the
    /// inner error prefixed with the label.
    pub(crate) fn combine(
        &self,
        inner: &InnerScore,
        reward: f64,
        components: &[(&str, f64)],
    ) -> Score {
        let mut s = Score::reward(reward as f32);
        s.components.insert(self.label.clone(), inner.reward as f32);
        for (k, v) in &inner.score.components {
            s.components.insert(format!("{}.{k}", self.label), *v);
        }
        // The inner verdict, so that accuracy (`<label>.correct`) reads through a combinator.
        s.components
            .insert("correct".into(), if inner.correct { 1.0 } else { 0.0 });
        for (k, v) in components {
            s.components.insert((*k).to_string(), *v as f32);
        }
        if let Some(e) = &inner.score.error {
            s.error = Some(format!("{}: {e}", self.label));
        }
        s
    }
}

/// The same failed score for every completion of `groups`.
fn fail_all(groups: &[Group], error: &str) -> Vec<Vec<Score>> {
    groups
        .iter()
        .map(|g| vec![Score::failed(error); g.completions.len()])
        .collect()
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Inner verifiers with scripted behaviour for the combinator tests.

    use crate::{Group, Score, Verifier};

    /// A completion containing `RIGHT` scores 1 (`correct` 1), anything else 0.
    pub(crate) struct Keyword;
    impl Verifier for Keyword {
        fn name(&self) -> &str {
            "keyword"
        }
        fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
            groups
                .iter()
                .map(|g| {
                    g.completions
                        .iter()
                        .map(|c| {
                            let ok = c.contains("RIGHT");
                            let mut s = Score::reward(if ok { 1.0 } else { 0.0 });
                            s.components
                                .insert("correct".into(), if ok { 1.0 } else { 0.0 });
                            s
                        })
                        .collect()
                })
                .collect()
        }
    }

    /// Fails every item, panics when a completion says `PANIC`, and returns one score too few
    /// when one says `SHORT`.
    pub(crate) struct Misbehaving;
    impl Verifier for Misbehaving {
        fn name(&self) -> &str {
            "misbehaving"
        }
        fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
            if groups
                .iter()
                .flat_map(|g| &g.completions)
                .any(|c| c == "PANIC")
            {
                panic!("scripted panic");
            }
            groups
                .iter()
                .map(|g| {
                    let n = g.completions.len();
                    let n = if g.completions.iter().any(|c| c == "SHORT") {
                        n - 1
                    } else {
                        n
                    };
                    vec![Score::failed("boom"); n]
                })
                .collect()
        }
    }
}
