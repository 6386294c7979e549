//! Field mapping: which source columns hold the id, prompt (text or chat `messages`), answer,
//! completion and preference pair, and the conversion of a [`RawRow`] into an [`Example`].
//! Every column the mapping does not consume goes to `metadata`.
//!
//! Defaults (used when a name is not configured; a *configured* name must be present):
//! id ← `id`; prompt ← `prompt`, else `question`; messages ← `messages`; answer ← `answer`;
//! completion ← `completion`; chosen ← `chosen`; rejected ← `rejected`.
//! Conversational data in TRL's style is understood: a prompt may be a message list; a
//! completion / chosen / rejected may be a message list (its last assistant message is used);
//! an SFT row with only `messages` ending in an assistant turn is split into prompt + completion;
//! a preference row without a prompt whose `chosen` / `rejected` are full conversations takes
//! their shared leading messages as the prompt.

use crate::error::{DatasetError, Result};
use crate::example::{ChatMessage, Example, Prompt, RecordKind};
use crate::formats::{type_name, RawRow, RowLocation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Source column names for each example field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldMapping {
    /// Column of the row id.
    pub id: Option<String>,
    /// Column of a text (or message-list) prompt.
    pub prompt: Option<String>,
    /// Column of a chat message list used as the prompt.
    pub messages: Option<String>,
    /// Column of the reference answer.
    pub answer: Option<String>,
    /// Column of the SFT target completion.
    pub completion: Option<String>,
    /// Column of the preferred completion.
    pub chosen: Option<String>,
    /// Column of the dispreferred completion.
    pub rejected: Option<String>,
}

/// Takes a column out of the row: the configured name (which must exist) or the first default
/// name present.
fn take(
    fields: &mut Map<String, Value>,
    configured: &Option<String>,
    defaults: &[&str],
    location: &RowLocation,
) -> Result<Option<(String, Value)>> {
    match configured {
        Some(name) => match fields.remove(name) {
            Some(v) => Ok(Some((name.clone(), v))),
            None => Err(DatasetError::row(location, Some(name), "missing")),
        },
        None => Ok(defaults
            .iter()
            .find_map(|d| fields.remove(*d).map(|v| ((*d).to_owned(), v)))),
    }
}

/// A scalar as a string: strings as is, integers and other numbers in their JSON form, booleans
/// as `true` / `false`.
fn scalar_string(v: &Value, field: &str, location: &RowLocation) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(DatasetError::row(
            location,
            Some(field),
            format!("expected a string or a number, found {}", type_name(other)),
        )),
    }
}

fn messages(v: &Value, field: &str, location: &RowLocation) -> Result<Vec<ChatMessage>> {
    let Value::Array(items) = v else {
        return Err(DatasetError::row(
            location,
            Some(field),
            format!("expected a list of messages, found {}", type_name(v)),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let get = |k: &str| m.get(k).and_then(Value::as_str);
            match (get("role"), get("content")) {
                (Some(role), Some(content)) => Ok(ChatMessage::new(role, content)),
                _ => Err(DatasetError::row(
                    location,
                    Some(field),
                    format!("message {i} needs string `role` and `content`"),
                )),
            }
        })
        .collect()
}

/// A completion-like column: a string, or a message list whose last assistant message is used.
/// Returns the text and, for a message list, the messages before it.
fn completion_like(
    v: &Value,
    field: &str,
    location: &RowLocation,
) -> Result<(String, Option<Vec<ChatMessage>>)> {
    match v {
        Value::String(s) => Ok((s.clone(), None)),
        Value::Array(_) => {
            let mut msgs = messages(v, field, location)?;
            match msgs.last() {
                Some(m) if m.role == "assistant" => {
                    let last = msgs.pop().map(|m| m.content).unwrap_or_default();
                    Ok((last, Some(msgs)))
                }
                _ => Err(DatasetError::row(
                    location,
                    Some(field),
                    "a message-list completion must end with an assistant message",
                )),
            }
        }
        other => Err(DatasetError::row(
            location,
            Some(field),
            format!(
                "expected a string or a list of messages, found {}",
                type_name(other)
            ),
        )),
    }
}

impl FieldMapping {
    /// Maps one row to an example of `kind`. `index` is the row's position in the dataset,
    /// used as the id when the row has none.
    pub fn map_row(&self, row: RawRow, kind: RecordKind, index: usize) -> Result<Example> {
        let RawRow {
            location,
            mut fields,
        } = row;
        let id = match take(&mut fields, &self.id, &["id"], &location)? {
            Some((name, v)) => scalar_string(&v, &name, &location)?,
            None => index.to_string(),
        };
        let prompt_col = take(
            &mut fields,
            &self.prompt,
            &["prompt", "question"],
            &location,
        )?;
        let messages_col = if prompt_col.is_none() || self.messages.is_some() {
            take(&mut fields, &self.messages, &["messages"], &location)?
        } else {
            None
        };
        let answer = take(&mut fields, &self.answer, &["answer"], &location)?
            .map(|(name, v)| match v {
                Value::Null => Ok(None),
                v => scalar_string(&v, &name, &location).map(Some),
            })
            .transpose()?
            .flatten();
        let completion_col = take(&mut fields, &self.completion, &["completion"], &location)?;
        let chosen_col = take(&mut fields, &self.chosen, &["chosen"], &location)?;
        let rejected_col = take(&mut fields, &self.rejected, &["rejected"], &location)?;

        let mut prompt: Option<Prompt> = match &prompt_col {
            Some((_, Value::String(s))) => Some(Prompt::Text(s.clone())),
            Some((name, v @ Value::Array(_))) => {
                Some(Prompt::Messages(messages(v, name, &location)?))
            }
            Some((name, v)) => {
                return Err(DatasetError::row(
                    &location,
                    Some(name),
                    format!(
                        "expected a string or a list of messages, found {}",
                        type_name(v)
                    ),
                ))
            }
            None => None,
        };
        let mut completion = None;
        if let Some((name, v)) = &completion_col {
            let (text, _) = completion_like(v, name, &location)?;
            completion = Some(text);
        }
        if let Some((name, v)) = &messages_col {
            let mut msgs = messages(v, name, &location)?;
            // SFT from a single conversation: the last assistant turn is the target.
            if kind == RecordKind::Sft
                && completion.is_none()
                && msgs.last().is_some_and(|m| m.role == "assistant")
            {
                completion = msgs.pop().map(|m| m.content);
            }
            if prompt.is_none() {
                prompt = Some(Prompt::Messages(msgs));
            }
        }
        let pair =
            |col: &Option<(String, Value)>| -> Result<Option<(String, Option<Vec<ChatMessage>>)>> {
                col.as_ref()
                    .map(|(name, v)| completion_like(v, name, &location))
                    .transpose()
            };
        let chosen = pair(&chosen_col)?;
        let rejected = pair(&rejected_col)?;
        if prompt.is_none() {
            // Preference rows holding whole conversations: the shared prefix is the prompt.
            if let (Some((_, Some(a))), Some((_, Some(b)))) = (&chosen, &rejected) {
                let shared: Vec<ChatMessage> = a
                    .iter()
                    .zip(b.iter())
                    .take_while(|(x, y)| x == y)
                    .map(|(x, _)| x.clone())
                    .collect();
                if !shared.is_empty() {
                    prompt = Some(Prompt::Messages(shared));
                }
            }
        }

        let Some(prompt) = prompt else {
            let field = self
                .prompt
                .clone()
                .or_else(|| self.messages.clone())
                .unwrap_or_else(|| "prompt".to_owned());
            return Err(DatasetError::row(
                &location,
                Some(&field),
                "missing (no `prompt`, `question` or `messages` column; set `fields.prompt`)",
            ));
        };
        let need = |present: bool, field: &Option<String>, default: &str| -> Result<()> {
            if present {
                Ok(())
            } else {
                let f = field.clone().unwrap_or_else(|| default.to_owned());
                Err(DatasetError::row(
                    &location,
                    Some(&f),
                    format!("missing (required for {kind:?} records)"),
                ))
            }
        };
        match kind {
            RecordKind::Prompt => {}
            RecordKind::Sft => need(completion.is_some(), &self.completion, "completion")?,
            RecordKind::Preference => {
                need(chosen.is_some(), &self.chosen, "chosen")?;
                need(rejected.is_some(), &self.rejected, "rejected")?;
            }
        }
        Ok(Example {
            id,
            prompt,
            answer,
            completion,
            chosen: chosen.map(|c| c.0),
            rejected: rejected.map(|c| c.0),
            metadata: fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> RawRow {
        RawRow {
            location: RowLocation {
                file: "d.jsonl".into(),
                unit: "line",
                index: 3,
            },
            fields: v.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn defaults_and_metadata() {
        let m = FieldMapping::default();
        let e = m
            .map_row(
                row(json!({"question": "1+1?", "answer": 2, "level": "easy"})),
                RecordKind::Prompt,
                7,
            )
            .unwrap();
        assert_eq!(e.id, "7");
        assert_eq!(e.prompt, Prompt::Text("1+1?".into()));
        assert_eq!(e.answer.as_deref(), Some("2"));
        assert_eq!(
            e.metadata,
            json!({"level": "easy"}).as_object().cloned().unwrap()
        );
    }

    #[test]
    fn configured_names() {
        let m = FieldMapping {
            id: Some("uid".into()),
            prompt: Some("problem".into()),
            answer: Some("solution".into()),
            ..Default::default()
        };
        let e = m
            .map_row(
                row(json!({"uid": "a1", "problem": "p", "solution": "s", "prompt": "other"})),
                RecordKind::Prompt,
                0,
            )
            .unwrap();
        assert_eq!(e.id, "a1");
        assert_eq!(e.prompt.text(), "p");
        assert_eq!(e.answer.as_deref(), Some("s"));
        // An unconsumed column named like a default stays in metadata.
        assert_eq!(e.metadata.get("prompt"), Some(&json!("other")));
    }

    #[test]
    fn missing_configured_field_names_file_line_and_field() {
        let m = FieldMapping {
            answer: Some("solution".into()),
            ..Default::default()
        };
        let err = m
            .map_row(row(json!({"prompt": "p"})), RecordKind::Prompt, 0)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "d.jsonl line 3: field `solution`: missing");
    }

    #[test]
    fn wrong_type_is_reported() {
        let err = FieldMapping::default()
            .map_row(row(json!({"prompt": {"x": 1}})), RecordKind::Prompt, 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("d.jsonl line 3: field `prompt`: expected a string"),
            "{err}"
        );
    }

    #[test]
    fn messages_prompt_and_sft_split() {
        let r = json!({"messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": "a"}
        ]});
        let e = FieldMapping::default()
            .map_row(row(r.clone()), RecordKind::Sft, 0)
            .unwrap();
        assert_eq!(e.completion.as_deref(), Some("a"));
        assert_eq!(
            e.prompt,
            Prompt::Messages(vec![
                ChatMessage::new("system", "s"),
                ChatMessage::new("user", "u")
            ])
        );
        // As a prompt-only record the whole conversation is the prompt.
        let e = FieldMapping::default()
            .map_row(row(r), RecordKind::Prompt, 0)
            .unwrap();
        assert!(matches!(&e.prompt, Prompt::Messages(m) if m.len() == 3));
        assert_eq!(e.completion, None);
    }

    #[test]
    fn sft_requires_completion() {
        let err = FieldMapping::default()
            .map_row(row(json!({"prompt": "p"})), RecordKind::Sft, 0)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "d.jsonl line 3: field `completion`: missing (required for Sft records)"
        );
        let e = FieldMapping::default()
            .map_row(
                row(json!({"prompt": "p", "completion": "c"})),
                RecordKind::Sft,
                0,
            )
            .unwrap();
        assert_eq!(e.completion.as_deref(), Some("c"));
    }

    #[test]
    fn preference_plain_and_conversational() {
        let e = FieldMapping::default()
            .map_row(
                row(json!({"prompt": "p", "chosen": "good", "rejected": "bad"})),
                RecordKind::Preference,
                0,
            )
            .unwrap();
        assert_eq!(
            (e.chosen.as_deref(), e.rejected.as_deref()),
            (Some("good"), Some("bad"))
        );
        let e = FieldMapping::default()
            .map_row(
                row(json!({
                    "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
                    "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}]
                })),
                RecordKind::Preference,
                0,
            )
            .unwrap();
        assert_eq!(
            e.prompt,
            Prompt::Messages(vec![ChatMessage::new("user", "q")])
        );
        assert_eq!(
            (e.chosen.as_deref(), e.rejected.as_deref()),
            (Some("good"), Some("bad"))
        );
        let err = FieldMapping::default()
            .map_row(
                row(json!({"prompt": "p", "chosen": "x"})),
                RecordKind::Preference,
                0,
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `rejected`: missing"), "{err}");
    }
}
