//! The records a dataset yields: [`Example`] (id, prompt, reference answer / completion /
//! preference pair, free metadata), the prompt as text or chat messages, and the record kinds.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One chat message, as in an OpenAI / HF `messages` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, ...
    pub role: String,
    /// The text of the message.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A prompt: plain text, or a list of chat messages. Applying the *model's* chat template to
/// messages is the models crate's job, not this crate's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// A plain text prompt, given to the model as is.
    Text(String),
    /// A conversation to be rendered with the model's chat template.
    Messages(Vec<ChatMessage>),
}

impl Default for Prompt {
    fn default() -> Self {
        Prompt::Text(String::new())
    }
}

impl Prompt {
    /// The text a verifier sees: the text itself, or the content of the last user message
    /// (the last message of any role when there is no user message).
    pub fn text(&self) -> &str {
        match self {
            Prompt::Text(t) => t,
            Prompt::Messages(m) => m
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .or_else(|| m.last())
                .map(|m| m.content.as_str())
                .unwrap_or(""),
        }
    }
}

/// What a record holds besides its prompt, i.e. which training algorithms can use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// Prompt only (plus optional reference answer): RL with verifiers (GRPO, PPO, ...).
    #[default]
    #[serde(alias = "rl")]
    Prompt,
    /// Prompt + completion: supervised fine-tuning.
    Sft,
    /// Prompt + chosen + rejected: DPO-style training and reward models.
    #[serde(alias = "dpo")]
    Preference,
}

/// One dataset record after field mapping.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Example {
    /// Stable id: the row's id field when it has one, else its position in the source (`"17"`).
    pub id: String,
    /// The prompt (after the task's template is applied, when the example comes from a task).
    pub prompt: Prompt,
    /// The reference answer, for verifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// The target completion (SFT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<String>,
    /// The preferred completion (preference data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<String>,
    /// The dispreferred completion (preference data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// Every field of the source row that the mapping did not consume.
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

impl Example {
    /// The kind of record this is, judged from which fields are present.
    pub fn kind(&self) -> RecordKind {
        if self.chosen.is_some() && self.rejected.is_some() {
            RecordKind::Preference
        } else if self.completion.is_some() {
            RecordKind::Sft
        } else {
            RecordKind::Prompt
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_text_picks_last_user_message() {
        let p = Prompt::Messages(vec![
            ChatMessage::new("system", "be brief"),
            ChatMessage::new("user", "2+2?"),
            ChatMessage::new("assistant", "4"),
        ]);
        assert_eq!(p.text(), "2+2?");
        assert_eq!(Prompt::Text("hi".into()).text(), "hi");
    }

    #[test]
    fn prompt_serialises_untagged() {
        let p = Prompt::Messages(vec![ChatMessage::new("user", "x")]);
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"[{"role":"user","content":"x"}]"#
        );
        assert_eq!(
            serde_json::to_string(&Prompt::Text("a".into())).unwrap(),
            r#""a""#
        );
    }

    #[test]
    fn kind_from_fields() {
        let mut e = Example::default();
        assert_eq!(e.kind(), RecordKind::Prompt);
        e.completion = Some("c".into());
        assert_eq!(e.kind(), RecordKind::Sft);
        e.chosen = Some("a".into());
        e.rejected = Some("b".into());
        assert_eq!(e.kind(), RecordKind::Preference);
    }
}
