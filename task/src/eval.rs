//! Scoring completions against a task: joining a row of completions with the task's example
//! (by `id`, or by mapping and rendering the row's own fields), and aggregating rewards and
//! accuracy over scored completions.
//!
//! Accuracy rule: a completion is correct when its first `<label>.correct` component (in the
//! task's verifier order) is ≥ 0.5, or, when no verifier reports `correct`, when its reward is
//! ≥ the threshold.

use crate::config::TaskConfig;
use crate::error::{Result, TaskError};
use oxrl_datasets::{Example, PromptTemplate, RawRow, RecordKind, RowLocation};
use oxrl_verifiers::{Score, VerifyExample, WeightedVerifiers};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;

/// The example as a verifier sees it (prompt text, answer, metadata).
pub fn verify_example(example: &Example) -> VerifyExample {
    VerifyExample {
        id: example.id.clone(),
        prompt: example.prompt.text().to_owned(),
        answer: example.answer.clone(),
        metadata: example.metadata.clone(),
    }
}

/// The task's examples and an id → position index.
type JoinIndex = (Vec<Example>, HashMap<String, usize>);

/// Finds the example a row of completions belongs to: the task's dataset (loaded on first need;
/// rows that carry their fields never need it) and its compiled prompt template.
#[derive(Debug)]
pub struct Joiner<'a> {
    config: &'a TaskConfig,
    template: PromptTemplate,
    data: Option<std::result::Result<JoinIndex, String>>,
}

/// Why a row could not be joined with an example; the message is for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JoinError {
    /// The row's id, when it has one.
    pub id: Option<String>,
    /// What went wrong.
    pub message: String,
}

fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl<'a> Joiner<'a> {
    /// Compiles the task's template; the dataset is loaded on the first lookup by id.
    pub fn new(config: &'a TaskConfig) -> Result<Self> {
        let template = PromptTemplate::new(config.prompt.clone())?;
        Ok(Self {
            config,
            template,
            data: None,
        })
    }

    /// The example with this id in the task's dataset (train and eval; the first occurrence of
    /// a duplicate id wins). A failure to load the dataset is remembered and returned again.
    pub fn lookup(&mut self, id: &str) -> Result<Option<Example>> {
        let config = self.config;
        let loaded = self.data.get_or_insert_with(|| {
            let task = config.load().map_err(|e| e.to_string())?;
            let examples: Vec<Example> =
                task.data.train.into_iter().chain(task.data.eval).collect();
            let mut index = HashMap::with_capacity(examples.len());
            for (i, e) in examples.iter().enumerate() {
                index.entry(e.id.clone()).or_insert(i);
            }
            Ok((examples, index))
        });
        let (examples, index) = loaded
            .as_ref()
            .map_err(|e| TaskError::DatasetUnavailable(e.clone()))?;
        Ok(index.get(id).and_then(|&i| examples.get(i)).cloned())
    }

    /// Renders the prompt of an example with the task's template.
    pub fn prepare(&self, mut example: Example) -> Result<Example> {
        example.prompt = self.template.render(&example)?;
        Ok(example)
    }

    /// The id of an input row: its field named by the task's mapping (`id` by default), a
    /// string or a number.
    pub fn row_id(&self, fields: &Map<String, Value>) -> Option<String> {
        let id_field = self.config.dataset.fields.id.as_deref().unwrap_or("id");
        fields.get(id_field).and_then(id_string)
    }

    /// The example of one input row (its fields without the completions; `path` and `line`
    /// locate it in errors) and the row's id. A row holding only an id joins with the task's
    /// dataset; otherwise its fields are mapped with the task's field mapping and rendered with
    /// its template (the line number stands in for a missing id), and a row with an id whose
    /// fields do not map may still join.
    pub fn example_for(
        &mut self,
        fields: Map<String, Value>,
        path: &Path,
        line: usize,
    ) -> std::result::Result<(String, Example), JoinError> {
        let id_field = self.config.dataset.fields.id.as_deref().unwrap_or("id");
        let id = self.row_id(&fields);
        let bad = |id: Option<String>, message: String| JoinError { id, message };
        let only_id = fields.keys().all(|k| k == id_field);
        let example = if let (Some(id), true) = (&id, only_id) {
            match self.lookup(id) {
                Ok(Some(e)) => e,
                Ok(None) => {
                    return Err(bad(
                        Some(id.clone()),
                        format!(
                        "id `{id}` is not in the task's dataset and the row has no example fields"
                    ),
                    ))
                }
                Err(e) => {
                    return Err(bad(
                        Some(id.clone()),
                        format!("cannot join id `{id}`: loading the task's dataset failed: {e}"),
                    ))
                }
            }
        } else {
            let raw = RawRow {
                location: RowLocation {
                    file: path.to_path_buf(),
                    unit: "line",
                    index: line,
                },
                fields,
            };
            let mut mapping = self.config.dataset.fields.clone();
            if id.is_none() {
                mapping.id = None;
            }
            match mapping.map_row(raw, RecordKind::Prompt, line) {
                Ok(e) => self
                    .prepare(e)
                    .map_err(|e| bad(id.clone(), e.to_string()))?,
                Err(e) => match id.as_deref().map(|i| self.lookup(i)) {
                    Some(Ok(Some(e))) => e,
                    _ => return Err(bad(id, e.to_string())),
                },
            }
        };
        Ok((id.unwrap_or_else(|| example.id.clone()), example))
    }
}

/// Decides which completions are correct (see the module documentation).
#[derive(Debug, Clone)]
pub struct Judge {
    /// `<label>.correct` of each member, in the task's order.
    correct_keys: Vec<String>,
    threshold: f32,
}

impl Judge {
    /// The judge of a task's verifiers; `threshold` applies when no verifier reports `correct`.
    pub fn new(verifiers: &WeightedVerifiers, threshold: f32) -> Self {
        Self {
            correct_keys: verifiers
                .members()
                .iter()
                .map(|m| format!("{}.correct", m.label))
                .collect(),
            threshold,
        }
    }

    /// The reward threshold.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// The first `correct` component of a score, as a verdict, if a verifier reported one.
    pub fn correct_component(&self, score: &Score) -> Option<bool> {
        self.correct_keys
            .iter()
            .find_map(|k| score.components.get(k))
            .map(|v| *v >= 0.5)
    }

    /// Whether a scored completion counts as correct.
    pub fn is_correct(&self, score: &Score) -> bool {
        self.correct_component(score)
            .unwrap_or(score.reward >= self.threshold)
    }
}

/// Running totals over scored completions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Groups (input rows) scored.
    pub rows: usize,
    /// Completions scored.
    pub completions: usize,
    /// Sum of their rewards.
    pub reward_sum: f64,
    /// Completions judged correct.
    pub correct: usize,
    /// Whether any verdict came from a `correct` component.
    pub used_correct_component: bool,
    /// Completions whose score carries an error.
    pub errors: usize,
    /// Rows that could not be scored.
    pub bad_rows: usize,
}

impl Summary {
    /// Adds the scores of one group.
    pub fn add_group(&mut self, judge: &Judge, scores: &[Score]) {
        for score in scores {
            let component = judge.correct_component(score);
            self.completions += 1;
            self.reward_sum += f64::from(score.reward);
            if component.is_some() {
                self.used_correct_component = true;
            }
            if component.unwrap_or(score.reward >= judge.threshold) {
                self.correct += 1;
            }
            if score.error.is_some() {
                self.errors += 1;
            }
        }
        self.rows += 1;
    }

    /// Mean reward per completion (0 when none).
    pub fn mean_reward(&self) -> f64 {
        if self.completions > 0 {
            self.reward_sum / self.completions as f64
        } else {
            0.0
        }
    }

    /// Share of correct completions (0 when none).
    pub fn accuracy(&self) -> f64 {
        if self.completions > 0 {
            self.correct as f64 / self.completions as f64
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn score(reward: f32, components: &[(&str, f32)]) -> Score {
        Score {
            reward,
            components: components
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>(),
            error: None,
        }
    }

    #[test]
    fn accuracy_prefers_the_correct_component_then_the_threshold() {
        let judge = Judge {
            correct_keys: vec!["a.correct".into(), "b.correct".into()],
            threshold: 0.5,
        };
        let mut s = Summary::default();
        s.add_group(
            &judge,
            &[
                score(0.0, &[("b.correct", 1.0)]),
                score(1.0, &[("a.correct", 0.0), ("b.correct", 1.0)]),
            ],
        );
        assert_eq!((s.correct, s.used_correct_component), (1, true));
        let mut t = Summary::default();
        t.add_group(&judge, &[score(0.5, &[]), score(0.25, &[])]);
        assert_eq!((t.correct, t.used_correct_component), (1, false));
        assert_eq!(t.accuracy(), 0.5);
        assert_eq!(t.mean_reward(), 0.375);
        assert_eq!(Summary::default().accuracy(), 0.0);
    }
}
