//! Turning a task's rendered prompts into the token ids the model sees: chat messages through the
//! model's chat template (with the generation prompt), plain text as is (with BOS when the
//! tokenizer adds one). Rollouts and SFT use the same rendering, so a policy is trained on
//! exactly the prompts it is sampled on.

use crate::train_error::{TrainError, TrainResult};
use oxrl_datasets::{ChatMessage, Prompt};
use oxrl_models::Tokenizer;

/// The model's chat messages for a task's messages.
pub fn chat_messages(messages: &[ChatMessage]) -> Vec<oxrl_models::ChatMessage> {
    messages
        .iter()
        .map(|m| oxrl_models::ChatMessage::new(m.role.clone(), m.content.clone()))
        .collect()
}

/// Token ids of a prompt ready for generation (at least one token).
pub fn prompt_ids(tok: &Tokenizer, prompt: &Prompt) -> TrainResult<Vec<u32>> {
    let ids = match prompt {
        Prompt::Text(t) => tok.encode(t, true)?,
        Prompt::Messages(m) => {
            let text = tok.apply_chat_template(&chat_messages(m), true)?;
            tok.encode(&text, false)?
        }
    };
    if ids.is_empty() {
        return Err(TrainError::Invariant(
            "a prompt encodes to no tokens".into(),
        ));
    }
    Ok(ids)
}
