//! The JSON schemas of the OpenAI-compatible API (`/v1/completions`, `/v1/chat/completions`,
//! `/v1/models`). oxrl's native wire types (`/v1/rollouts`, `/v1/weights`) live in
//! [`crate::types`], where an HTTP client finds them without the server modules.
//!
//! Strictness: request objects reject unknown fields (400 naming the field), because a misspelt
//! sampling parameter (`temprature`) would otherwise silently change an RL run. OpenAI fields oxrl
//! does not implement are accepted only with their neutral value (`presence_penalty: 0`,
//! `logit_bias: {}`, `tools: []`, `response_format: {"type": "text"}`, ...); other values are a
//! 400 saying so. Chat *messages* are lenient: extra keys such as `name`, `refusal` or
//! `tool_calls: null` (what the OpenAI client echoes back) are ignored.

use crate::types::Usage;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `stop`: one string or a list of strings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum StopSpec {
    /// A single stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

impl StopSpec {
    /// The stop strings as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopSpec::One(s) => vec![s],
            StopSpec::Many(v) => v,
        }
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` (and `choices: []`) before `[DONE]`.
    #[serde(default)]
    pub include_usage: Option<bool>,
    /// Accepted for compatibility; usage is only reported at the end.
    #[serde(default)]
    pub continuous_usage_stats: Option<bool>,
}

/// Body of `POST /v1/completions`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionRequest {
    /// Model id (must be the served model's name, when given).
    pub model: Option<String>,
    /// A string, a list of strings, a list of token ids, or a list of token-id lists.
    pub prompt: Option<Value>,
    /// Unsupported (must be absent, null or empty).
    pub suffix: Option<String>,
    /// Tokens to generate per completion (default 16; 0 with `echo` scores the prompt).
    pub max_tokens: Option<i64>,
    /// Sampling temperature (default 1; 0 = greedy).
    pub temperature: Option<f32>,
    /// Nucleus sampling threshold.
    pub top_p: Option<f32>,
    /// Top-k truncation (0 or -1: off).
    pub top_k: Option<i64>,
    /// Min-p truncation.
    pub min_p: Option<f32>,
    /// Completions per prompt.
    pub n: Option<i64>,
    /// Must equal `n` when given.
    pub best_of: Option<i64>,
    /// Stream SSE chunks.
    pub stream: Option<bool>,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Return the logprobs of each token and this many top alternatives (legacy format).
    pub logprobs: Option<i64>,
    /// Prepend the prompt to the returned text (and its tokens to `logprobs`).
    pub echo: Option<bool>,
    /// Stop strings.
    pub stop: Option<StopSpec>,
    /// Sampling seed.
    pub seed: Option<i64>,
    /// Unsupported (must be 0).
    pub presence_penalty: Option<f32>,
    /// Unsupported (must be 0).
    pub frequency_penalty: Option<f32>,
    /// Unsupported (must be 1).
    pub repetition_penalty: Option<f32>,
    /// Unsupported (must be empty).
    pub logit_bias: Option<BTreeMap<String, f32>>,
    /// End-user id (ignored).
    pub user: Option<String>,
    /// Keep generating past EOS.
    pub ignore_eos: Option<bool>,
    /// Extra token ids that end a completion.
    pub stop_token_ids: Option<Vec<u32>>,
}

/// One chat message as sent by clients. `content` is a string, a list of `{"type": "text",
/// "text": ...}` parts, or null.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChatMessageIn {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The content.
    #[serde(default)]
    pub content: Option<Value>,
}

/// Body of `POST /v1/chat/completions`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatCompletionRequest {
    /// Model id (must be the served model's name, when given).
    pub model: Option<String>,
    /// The conversation, rendered with the model's chat template.
    pub messages: Option<Vec<ChatMessageIn>>,
    /// Tokens to generate (deprecated OpenAI name).
    pub max_tokens: Option<i64>,
    /// Tokens to generate (current OpenAI name; wins over `max_tokens`).
    pub max_completion_tokens: Option<i64>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Nucleus sampling threshold.
    pub top_p: Option<f32>,
    /// Top-k truncation (0 or -1: off).
    pub top_k: Option<i64>,
    /// Min-p truncation.
    pub min_p: Option<f32>,
    /// Completions.
    pub n: Option<i64>,
    /// Stream SSE chunks.
    pub stream: Option<bool>,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Return logprobs of the sampled tokens.
    pub logprobs: Option<bool>,
    /// Top alternatives per token (needs `logprobs: true`).
    pub top_logprobs: Option<i64>,
    /// Stop strings.
    pub stop: Option<StopSpec>,
    /// Sampling seed.
    pub seed: Option<i64>,
    /// Unsupported (must be 0).
    pub presence_penalty: Option<f32>,
    /// Unsupported (must be 0).
    pub frequency_penalty: Option<f32>,
    /// Unsupported (must be 1).
    pub repetition_penalty: Option<f32>,
    /// Unsupported (must be empty).
    pub logit_bias: Option<BTreeMap<String, f32>>,
    /// End-user id (ignored).
    pub user: Option<String>,
    /// Keep generating past EOS.
    pub ignore_eos: Option<bool>,
    /// Extra token ids that end a completion.
    pub stop_token_ids: Option<Vec<u32>>,
    /// Append the assistant prefix after the last message (default true).
    pub add_generation_prompt: Option<bool>,
    /// Unsupported (must be absent or empty).
    pub tools: Option<Vec<Value>>,
    /// Unsupported (must be absent, `"none"` or `"auto"` with no tools).
    pub tool_choice: Option<Value>,
    /// Ignored.
    pub parallel_tool_calls: Option<bool>,
    /// Only `{"type": "text"}`.
    pub response_format: Option<Value>,
    /// Ignored.
    pub metadata: Option<Value>,
    /// Ignored.
    pub store: Option<bool>,
    /// Ignored.
    pub service_tier: Option<String>,
}

/// Token accounting in OpenAI's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenAiUsage {
    /// Prompt tokens (summed over prompts).
    pub prompt_tokens: usize,
    /// Generated tokens (summed over completions).
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
}

impl OpenAiUsage {
    /// Adds one request's usage.
    pub fn add(&mut self, u: &Usage) {
        self.prompt_tokens += u.prompt_tokens;
        self.completion_tokens += u.completion_tokens;
        self.total_tokens = self.prompt_tokens + self.completion_tokens;
    }
}

/// Legacy (completions) logprobs of one choice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LegacyLogprobs {
    /// Token strings.
    pub tokens: Vec<String>,
    /// Logprob of each token (`null` for the first prompt token when echoing).
    pub token_logprobs: Vec<Option<f32>>,
    /// Top alternatives per token (token string → logprob; the chosen token is included).
    pub top_logprobs: Vec<Option<BTreeMap<String, f32>>>,
    /// Character offset of each token in the choice's text.
    pub text_offset: Vec<usize>,
}

/// One choice of a completions response (or stream chunk).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionChoice {
    /// `prompt index × n + sample index`.
    pub index: usize,
    /// The text (prompt + completion with `echo`).
    pub text: String,
    /// Legacy logprobs when requested.
    pub logprobs: Option<LegacyLogprobs>,
    /// `stop`, `length` or `abort` (`null` in stream chunks before the last).
    pub finish_reason: Option<String>,
}

/// Response of `/v1/completions` (and, with `object = text_completion`, its stream chunks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionResponse {
    /// Response id.
    pub id: String,
    /// Always `text_completion`.
    pub object: String,
    /// Unix time.
    pub created: u64,
    /// Served model name.
    pub model: String,
    /// Choices.
    pub choices: Vec<CompletionChoice>,
    /// Token accounting (stream chunks: only in the last, with `include_usage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<OpenAiUsage>,
    /// Policy version (oxrl extension): the newest policy that produced any token of the
    /// response (the largest `policy_version_end`; stream chunks: the version serving then).
    pub policy_version: u64,
}

/// One alternative in chat logprobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatTopLogprob {
    /// Token string.
    pub token: String,
    /// Its logprob.
    pub logprob: f32,
    /// UTF-8 bytes of the token string.
    pub bytes: Vec<u8>,
}

/// Logprob entry of one generated token in chat logprobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatTokenLogprob {
    /// Token string.
    pub token: String,
    /// Its logprob.
    pub logprob: f32,
    /// UTF-8 bytes of the token string.
    pub bytes: Vec<u8>,
    /// `top_logprobs` most likely tokens at this position.
    pub top_logprobs: Vec<ChatTopLogprob>,
}

/// `logprobs` of a chat choice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatLogprobs {
    /// One entry per generated token.
    pub content: Vec<ChatTokenLogprob>,
}

/// The assistant message of a chat choice (or a stream delta).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatMessageOut {
    /// `assistant` (in stream deltas: only in the first chunk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Generated text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One choice of a chat response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChoice {
    /// Sample index.
    pub index: usize,
    /// The assistant message.
    pub message: ChatMessageOut,
    /// Logprobs when requested.
    pub logprobs: Option<ChatLogprobs>,
    /// `stop`, `length` or `abort`.
    pub finish_reason: Option<String>,
}

/// Response of `/v1/chat/completions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionResponse {
    /// Response id.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix time.
    pub created: u64,
    /// Served model name.
    pub model: String,
    /// Choices.
    pub choices: Vec<ChatChoice>,
    /// Token accounting.
    pub usage: OpenAiUsage,
    /// Policy version (oxrl extension): the newest policy that produced any token of the
    /// response (the largest `policy_version_end`, as for completions).
    pub policy_version: u64,
}

/// One choice of a chat stream chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunkChoice {
    /// Sample index.
    pub index: usize,
    /// New role / content.
    pub delta: ChatMessageOut,
    /// Logprobs of the chunk's tokens when requested.
    pub logprobs: Option<ChatLogprobs>,
    /// Set on the choice's last chunk.
    pub finish_reason: Option<String>,
}

/// A chat stream chunk (`chat.completion.chunk`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    /// Response id (the same in every chunk).
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix time.
    pub created: u64,
    /// Served model name.
    pub model: String,
    /// Choices updated by this chunk (empty in the usage chunk).
    pub choices: Vec<ChatChunkChoice>,
    /// Usage, in the last chunk with `include_usage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<OpenAiUsage>,
}

/// An entry of `/v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// Model id.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix time the server started.
    pub created: u64,
    /// Always `oxrl`.
    pub owned_by: String,
    /// Where the model was loaded from.
    pub root: String,
    /// Context length.
    pub max_model_len: usize,
    /// Policy version serving now.
    pub policy_version: u64,
}

/// Response of `/v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The served model.
    pub data: Vec<ModelCard>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::extract::parse_json;

    #[test]
    fn parses_openai_completion_request() {
        // As sent by `openai.OpenAI().completions.create(...)` and by lm-eval's local-completions.
        let r: CompletionRequest = parse_json(
            br#"{"model":"gpt-3.5-turbo-instruct","prompt":"Say this is a test","max_tokens":7,
                "temperature":0,"top_p":1,"n":1,"stream":false,"logprobs":null,"stop":"\n",
                "echo":false,"seed":1234,"presence_penalty":0,"frequency_penalty":0,
                "logit_bias":{},"user":"u1"}"#,
        )
        .unwrap();
        assert_eq!(r.max_tokens, Some(7));
        assert_eq!(r.stop, Some(StopSpec::One("\n".into())));
        assert_eq!(r.logprobs, None);
        let r: CompletionRequest = parse_json(
            br#"{"model":"m","prompt":[[1,2,3],[4,5]],"max_tokens":0,"echo":true,"logprobs":2,
                "stop":["a","b"]}"#,
        )
        .unwrap();
        assert_eq!(r.stop.unwrap().into_vec(), vec!["a", "b"]);
        assert_eq!(r.echo, Some(true));
        let e = parse_json::<CompletionRequest>(br#"{"prompt":"x","temprature":0}"#).unwrap_err();
        assert!(e.message.contains("temprature"), "{}", e.message);
        let e = parse_json::<CompletionRequest>(br#"{"prompt":"x","max_tokens":"5"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
    }

    #[test]
    fn parses_openai_chat_request() {
        // The OpenAI API reference example, plus a message echoed back from a response.
        let r: ChatCompletionRequest = parse_json(
            br#"{"model":"gpt-4o","messages":[{"role":"developer","content":"You are a helpful assistant."},
                {"role":"user","content":[{"type":"text","text":"Hello!"}]},
                {"role":"assistant","content":"Hi","refusal":null,"tool_calls":null,"audio":null}],
                "logprobs":true,"top_logprobs":2,"stream":true,"stream_options":{"include_usage":true},
                "max_completion_tokens":5,"n":2}"#,
        )
        .unwrap();
        let msgs = r.messages.unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[1].role, "user");
        assert_eq!(r.top_logprobs, Some(2));
        assert_eq!(r.stream_options.unwrap().include_usage, Some(true));
    }

    #[test]
    fn serialises_openai_shapes() {
        let resp = ChatCompletionResponse {
            id: "chatcmpl-1".into(),
            object: "chat.completion".into(),
            created: 1,
            model: "m".into(),
            choices: vec![ChatChoice {
                index: 0,
                message: ChatMessageOut {
                    role: Some("assistant".into()),
                    content: Some("hi".into()),
                },
                logprobs: None,
                finish_reason: Some("stop".into()),
            }],
            usage: OpenAiUsage {
                prompt_tokens: 3,
                completion_tokens: 1,
                total_tokens: 4,
            },
            policy_version: 0,
        };
        let v = serde_json::to_value(&resp).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "hi");
        assert_eq!(v["choices"][0]["logprobs"], Value::Null);
        assert_eq!(v["usage"]["total_tokens"], 4);
        let chunk = ChatCompletionChunk {
            id: "c".into(),
            object: "chat.completion.chunk".into(),
            created: 1,
            model: "m".into(),
            choices: vec![ChatChunkChoice {
                index: 1,
                delta: ChatMessageOut {
                    role: None,
                    content: Some("x".into()),
                },
                logprobs: None,
                finish_reason: None,
            }],
            usage: None,
        };
        let v = serde_json::to_value(&chunk).unwrap();
        assert_eq!(
            v["choices"][0]["delta"],
            serde_json::json!({"content": "x"})
        );
        assert!(v.get("usage").is_none());
    }
}
