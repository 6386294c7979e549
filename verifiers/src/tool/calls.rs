//! Tool calls as data, read from completion text and from references: `<tool_call>` tag blocks
//! (ToolRL / Hermes / Qwen style, one JSON object per line or per block) and OpenAI-style
//! messages (`{"content", "tool_calls": [{"function": {"name", "arguments"}}]}`), plus the
//! value comparison ToolRL's parameter matching uses.

use serde_json::{Map, Value};

/// Longest completion text read; anything after it is ignored (a bounded cost per item).
pub(crate) const MAX_TEXT: usize = 256 * 1024;

/// One call of a tool: its name and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The tool's name.
    pub name: String,
    /// The parameters by name (empty when the call has none).
    pub params: Map<String, Value>,
}

/// The calls a completion makes, as read by one of the formats.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Parsed {
    /// The completion holds no tool call at all (no `<tool_call>` block / no `tool_calls`).
    NoCalls,
    /// Calls were found and every one parsed.
    Calls(Vec<ToolCall>),
    /// A tool-call block exists but something in it is not a well-formed call.
    Malformed(String),
}

impl Parsed {
    /// The parsed calls (none for `NoCalls` and `Malformed`).
    pub(crate) fn calls(&self) -> &[ToolCall] {
        match self {
            Parsed::Calls(c) => c,
            _ => &[],
        }
    }
}

/// `text` cut to at most [`MAX_TEXT`] bytes on a character boundary.
pub(crate) fn bounded(text: &str) -> &str {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A call from its JSON form: `{"name", "parameters" | "arguments"}` (arguments may be an
/// object or a string holding one) or OpenAI's `{"type": "function", "function": {...}}`.
pub(crate) fn call_from_value(v: &Value) -> Result<ToolCall, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("a tool call must be a JSON object, got {}", short(v)))?;
    if let Some(f) = obj.get("function").filter(|f| f.is_object()) {
        return call_from_value(f);
    }
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| format!("a tool call needs a string `name`: {}", short(v)))?;
    let raw = obj.get("parameters").or_else(|| obj.get("arguments"));
    let params = match raw {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(Value::String(s)) if s.trim().is_empty() => Map::new(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => m,
            _ => return Err(format!("the arguments of `{name}` are not a JSON object")),
        },
        Some(other) => {
            return Err(format!(
                "the parameters of `{name}` must be an object, got {}",
                short(other)
            ))
        }
    };
    Ok(ToolCall {
        name: name.trim().to_string(),
        params,
    })
}

/// Calls from a JSON list (or a single call object).
pub(crate) fn calls_from_value(v: &Value) -> Result<Vec<ToolCall>, String> {
    match v {
        Value::Array(items) => items.iter().map(call_from_value).collect(),
        other => Ok(vec![call_from_value(other)?]),
    }
}

/// The contents of every `<tag>…</tag>` block, in order; `Err` when a block is not closed.
pub(crate) fn tag_blocks<'a>(text: &'a str, tag: &str) -> Result<Vec<&'a str>, String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let end = after
            .find(&close)
            .ok_or_else(|| format!("a <{tag}> block is not closed"))?;
        blocks.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    Ok(blocks)
}

/// The calls of the `<tool_call>` blocks of `text`. Inside a block: a JSON list of calls, one
/// call object, or one call object per non-empty line (ToolRL's layout).
pub(crate) fn parse_tag_calls(text: &str) -> Parsed {
    let blocks = match tag_blocks(bounded(text), "tool_call") {
        Ok(b) => b,
        Err(e) => return Parsed::Malformed(e),
    };
    if blocks.is_empty() {
        return Parsed::NoCalls;
    }
    let mut calls = Vec::new();
    for block in blocks {
        let body = block.trim();
        if body.is_empty() {
            return Parsed::Malformed("an empty <tool_call> block".into());
        }
        if let Ok(v) = serde_json::from_str::<Value>(body) {
            match calls_from_value(&v) {
                Ok(c) => calls.extend(c),
                Err(e) => return Parsed::Malformed(e),
            }
            continue;
        }
        for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let parsed = serde_json::from_str::<Value>(line)
                .map_err(|e| format!("a <tool_call> line is not JSON ({e})"))
                .and_then(|v| call_from_value(&v));
            match parsed {
                Ok(c) => calls.push(c),
                Err(e) => return Parsed::Malformed(e),
            }
        }
    }
    Parsed::Calls(calls)
}

/// An OpenAI-style assistant message read from a completion: its text content and calls.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OpenAiMessage {
    /// `content`, when it is a non-empty string.
    pub content: Option<String>,
    /// The `tool_calls`.
    pub calls: Parsed,
}

/// Reads a completion as one JSON assistant message (optionally inside a ```` ```json ````
/// fence): an object with `content` and/or `tool_calls`, or a bare list of calls. `Err` when
/// the text is not such a JSON value.
pub(crate) fn parse_openai(text: &str) -> Result<OpenAiMessage, String> {
    let body = strip_fence(bounded(text).trim());
    let v: Value =
        serde_json::from_str(body).map_err(|e| format!("the completion is not JSON ({e})"))?;
    match &v {
        Value::Array(_) => Ok(OpenAiMessage {
            content: None,
            calls: match calls_from_value(&v) {
                Ok(c) if c.is_empty() => Parsed::NoCalls,
                Ok(c) => Parsed::Calls(c),
                Err(e) => Parsed::Malformed(e),
            },
        }),
        Value::Object(obj) => {
            let content = match obj.get("content") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.trim().is_empty() => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => {
                    return Err(format!("`content` must be a string, got {}", short(other)))
                }
            };
            let calls = match obj.get("tool_calls") {
                None | Some(Value::Null) => Parsed::NoCalls,
                Some(Value::Array(a)) if a.is_empty() => Parsed::NoCalls,
                Some(list @ Value::Array(_)) => match calls_from_value(list) {
                    Ok(c) => Parsed::Calls(c),
                    Err(e) => Parsed::Malformed(e),
                },
                Some(other) => {
                    Parsed::Malformed(format!("`tool_calls` must be a list, got {}", short(other)))
                }
            };
            if content.is_none() && !obj.contains_key("tool_calls") && obj.contains_key("name") {
                // A bare call object is accepted as a one-call message.
                return Ok(OpenAiMessage {
                    content: None,
                    calls: match call_from_value(&v) {
                        Ok(c) => Parsed::Calls(vec![c]),
                        Err(e) => Parsed::Malformed(e),
                    },
                });
            }
            Ok(OpenAiMessage { content, calls })
        }
        other => Err(format!(
            "the completion is JSON but not a message: {}",
            short(other)
        )),
    }
}

/// `text` without a surrounding Markdown code fence (```` ```json … ``` ````).
fn strip_fence(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    let Some(body) = rest.strip_suffix("```") else {
        return text;
    };
    match body.find('\n') {
        Some(nl) if body[..nl].trim().chars().all(|c| c.is_ascii_alphanumeric()) => {
            body[nl + 1..].trim()
        }
        _ => body.trim(),
    }
}

/// A JSON value shortened for error messages.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() <= 80 {
        return s;
    }
    let mut end = 80;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Parameter values equal in ToolRL's sense (Python `==` on the decoded JSON): numbers compare
/// by value (`3` = `3.0`), lists element-wise, objects key by key. `lenient` also treats
/// strings case- and surrounding-space-insensitively and a numeric string as its number.
pub(crate) fn values_equal(a: &Value, b: &Value, lenient: bool) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::String(x), Value::String(y)) => {
            if lenient {
                x.trim().to_lowercase() == y.trim().to_lowercase()
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b, lenient))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w, lenient)))
        }
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) if lenient => {
            match (n.as_f64(), s.trim().parse::<f64>()) {
                (Some(x), Ok(y)) => x == y,
                _ => false,
            }
        }
        _ => a == b,
    }
}

/// Two call lists equal in order, names and parameter values.
pub(crate) fn same_calls(a: &[ToolCall], b: &[ToolCall], lenient: bool) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && values_equal(
                    &Value::Object(x.params.clone()),
                    &Value::Object(y.params.clone()),
                    lenient,
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tag_blocks_line_and_list_layouts() {
        let t = "<think>x</think>\n<tool_call>\n{\"name\": \"a\", \"parameters\": {\"q\": 1}}\n{\"name\": \"b\", \"arguments\": \"{\\\"k\\\": \\\"v\\\"}\"}\n</tool_call>";
        let Parsed::Calls(c) = parse_tag_calls(t) else {
            panic!("{:?}", parse_tag_calls(t))
        };
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].name, "a");
        assert_eq!(c[0].params["q"], json!(1));
        assert_eq!(c[1].params["k"], json!("v"));
        let t = "<tool_call>[{\"name\": \"a\"}, {\"name\": \"b\", \"parameters\": {}}]</tool_call> <tool_call>{\"name\": \"c\"}</tool_call>";
        let names: Vec<String> = parse_tag_calls(t)
            .calls()
            .iter()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(parse_tag_calls("no calls here"), Parsed::NoCalls);
        for bad in [
            "<tool_call>{\"name\": \"a\"",
            "<tool_call>not json</tool_call>",
            "<tool_call></tool_call>",
            "<tool_call>{\"parameters\": {}}</tool_call>",
            "<tool_call>{\"name\": \"a\", \"parameters\": [1]}</tool_call>",
            "<tool_call>{\"name\": \"a\", \"arguments\": \"[1]\"}</tool_call>",
        ] {
            assert!(
                matches!(parse_tag_calls(bad), Parsed::Malformed(_)),
                "{bad}"
            );
        }
    }

    #[test]
    fn openai_messages() {
        let m = parse_openai(
            r#"{"content": null, "tool_calls": [{"id": "1", "type": "function", "function": {"name": "search", "arguments": "{\"q\": \"paris\"}"}}]}"#,
        )
        .unwrap();
        assert_eq!(m.content, None);
        assert_eq!(m.calls.calls()[0].name, "search");
        assert_eq!(m.calls.calls()[0].params["q"], json!("paris"));
        let m = parse_openai("```json\n{\"content\": \"hi\"}\n```").unwrap();
        assert_eq!(m.content.as_deref(), Some("hi"));
        assert_eq!(m.calls, Parsed::NoCalls);
        let m = parse_openai(r#"[{"name": "a", "arguments": {}}]"#).unwrap();
        assert_eq!(m.calls.calls().len(), 1);
        let m = parse_openai(r#"{"name": "a", "arguments": {"x": 1}}"#).unwrap();
        assert_eq!(m.calls.calls()[0].params["x"], json!(1));
        assert!(parse_openai("hello").is_err());
        assert!(parse_openai("42").is_err());
        assert!(parse_openai(r#"{"content": 3}"#).is_err());
        let m = parse_openai(r#"{"tool_calls": [{"function": {"arguments": "{}"}}]}"#).unwrap();
        assert!(matches!(m.calls, Parsed::Malformed(_)));
    }

    #[test]
    fn value_equality() {
        assert!(values_equal(&json!(3), &json!(3.0), false));
        assert!(!values_equal(&json!("3"), &json!(3), false));
        assert!(values_equal(&json!("3"), &json!(3), true));
        assert!(!values_equal(&json!("Paris"), &json!("paris"), false));
        assert!(values_equal(&json!(" Paris"), &json!("paris"), true));
        assert!(values_equal(
            &json!({"a": [1, 2.0]}),
            &json!({"a": [1.0, 2]}),
            false
        ));
        assert!(!values_equal(&json!([1, 2]), &json!([2, 1]), false));
        assert!(!values_equal(
            &json!({"a": 1}),
            &json!({"a": 1, "b": 2}),
            false
        ));
        assert!(values_equal(&json!(null), &json!(null), false));
        assert!(!values_equal(&json!(true), &json!(1), true));
    }
}
