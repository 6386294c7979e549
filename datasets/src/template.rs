//! Prompt templates: a task's system prompt and user template (minijinja, `{{ question }}`),
//! rendered against each example into plain text or chat messages. Undefined variables are
//! errors, so a typo in a template fails on the first example instead of producing empty prompts.
//!
//! Variables: every metadata field of the example, plus `id`, `prompt` (the source prompt's text),
//! `question` (same as `prompt` unless the row has its own `question` column), `answer` and, when
//! the source prompt is a conversation, `messages`.

use crate::error::{DatasetError, Result};
use crate::example::{ChatMessage, Example, Prompt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Whether the rendered prompt is a conversation or plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptFormat {
    /// A list of messages (`system` when set, then `user`); the model's chat template applies.
    #[default]
    Chat,
    /// Plain text: the system prompt (when set), a blank line, then the user text.
    Text,
}

/// The `[task.prompt]` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PromptConfig {
    /// System prompt (a template too).
    pub system: Option<String>,
    /// User message template; without it the dataset's prompt is used as is.
    pub user: Option<String>,
    /// Chat messages or plain text.
    pub format: PromptFormat,
}

/// A compiled [`PromptConfig`].
#[derive(Debug)]
pub struct PromptTemplate {
    env: minijinja::Environment<'static>,
    config: PromptConfig,
}

impl PromptTemplate {
    /// Compiles the templates of `config`.
    pub fn new(config: PromptConfig) -> Result<Self> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, src) in [("system", &config.system), ("user", &config.user)] {
            if let Some(src) = src {
                env.add_template_owned(name, src.clone())
                    .map_err(|e| DatasetError::Template(format!("{name} template: {e}")))?;
            }
        }
        Ok(Self { env, config })
    }

    fn context(example: &Example) -> Map<String, Value> {
        let mut ctx = example.metadata.clone();
        let text = example.prompt.text().to_owned();
        ctx.insert("id".into(), Value::String(example.id.clone()));
        ctx.entry("question")
            .or_insert_with(|| Value::String(text.clone()));
        ctx.insert("prompt".into(), Value::String(text));
        if let Some(a) = &example.answer {
            ctx.insert("answer".into(), Value::String(a.clone()));
        }
        if let Prompt::Messages(m) = &example.prompt {
            ctx.insert(
                "messages".into(),
                serde_json::to_value(m).unwrap_or(Value::Null),
            );
        }
        ctx
    }

    fn render_one(&self, name: &str, ctx: &minijinja::Value, id: &str) -> Result<Option<String>> {
        let Ok(t) = self.env.get_template(name) else {
            return Ok(None);
        };
        t.render(ctx)
            .map(Some)
            .map_err(|e| DatasetError::Template(format!("{name} template, example `{id}`: {e}")))
    }

    /// The prompt of `example` after the template.
    pub fn render(&self, example: &Example) -> Result<Prompt> {
        let ctx = minijinja::Value::from_serialize(Self::context(example));
        let system = self.render_one("system", &ctx, &example.id)?;
        let user = self.render_one("user", &ctx, &example.id)?;
        Ok(match (self.config.format, user) {
            (PromptFormat::Chat, Some(user)) => {
                let mut m: Vec<ChatMessage> = system
                    .map(|s| ChatMessage::new("system", s))
                    .into_iter()
                    .collect();
                m.push(ChatMessage::new("user", user));
                Prompt::Messages(m)
            }
            (PromptFormat::Chat, None) => match &example.prompt {
                Prompt::Messages(m) => {
                    let mut out: Vec<ChatMessage> = Vec::with_capacity(m.len() + 1);
                    if let Some(s) = system {
                        if m.first().is_none_or(|x| x.role != "system") {
                            out.push(ChatMessage::new("system", s));
                        }
                    }
                    out.extend(m.iter().cloned());
                    Prompt::Messages(out)
                }
                Prompt::Text(t) => {
                    let mut m: Vec<ChatMessage> = system
                        .map(|s| ChatMessage::new("system", s))
                        .into_iter()
                        .collect();
                    m.push(ChatMessage::new("user", t.clone()));
                    Prompt::Messages(m)
                }
            },
            (PromptFormat::Text, user) => {
                let body = user.unwrap_or_else(|| example.prompt.text().to_owned());
                Prompt::Text(match system {
                    Some(s) => format!("{s}\n\n{body}"),
                    None => body,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn example() -> Example {
        Example {
            id: "e1".into(),
            prompt: Prompt::Text("What is 2+3?".into()),
            answer: Some("5".into()),
            metadata: json!({"level": 2}).as_object().cloned().unwrap(),
            ..Example::default()
        }
    }

    #[test]
    fn chat_with_system_and_fields() {
        let t = PromptTemplate::new(PromptConfig {
            system: Some("Be exact.".into()),
            user: Some("[L{{ level }}] {{ question }} Put the answer in \\boxed{}.".into()),
            format: PromptFormat::Chat,
        })
        .unwrap();
        assert_eq!(
            t.render(&example()).unwrap(),
            Prompt::Messages(vec![
                ChatMessage::new("system", "Be exact."),
                ChatMessage::new("user", "[L2] What is 2+3? Put the answer in \\boxed{}."),
            ])
        );
    }

    #[test]
    fn text_format_and_passthrough() {
        let t = PromptTemplate::new(PromptConfig {
            system: Some("S".into()),
            user: None,
            format: PromptFormat::Text,
        })
        .unwrap();
        assert_eq!(
            t.render(&example()).unwrap(),
            Prompt::Text("S\n\nWhat is 2+3?".into())
        );
        let t = PromptTemplate::new(PromptConfig::default()).unwrap();
        assert_eq!(
            t.render(&example()).unwrap(),
            Prompt::Messages(vec![ChatMessage::new("user", "What is 2+3?")])
        );
    }

    #[test]
    fn undefined_variable_is_an_error() {
        let t = PromptTemplate::new(PromptConfig {
            user: Some("{{ questoin }}".into()),
            ..Default::default()
        })
        .unwrap();
        let err = t.render(&example()).unwrap_err().to_string();
        assert!(
            err.contains("example `e1`") && err.contains("undefined"),
            "{err}"
        );
        let err = PromptTemplate::new(PromptConfig {
            user: Some("{{ x ".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("prompt template: user template"),
            "{err}"
        );
    }
}
