//! The versioned JSON-lines protocol spoken by verifier plugins (`command` workers and `http`
//! endpoints): the message types, and the checks applied to every answer (id, counts, finite
//! rewards, field types) with error messages a plugin author can act on.
//!
//! Session of a `command` worker (one JSON object per line, UTF-8, `\n`-terminated):
//!
//! 1. oxrl → worker: `{"type":"hello","protocol":"oxrl-verifier","version":1,"options":{..}}`
//! 2. worker → oxrl: `{"type":"hello","protocol":"oxrl-verifier","version":1,"name":".."}`
//!    (or `{"type":"hello","error":".."}` to refuse, e.g. on bad options)
//! 3. per call, oxrl → worker: `{"type":"score","id":7,"groups":[{"example":{..},"completions":[..]}]}`
//! 4. worker → oxrl: `{"id":7,"scores":[[{"reward":1.0,"components":{..},"error":null},..],..]}`
//!    or `{"id":7,"error":".."}`; a score may also be a bare number (the reward).
//! 5. shutdown: oxrl closes the worker's stdin; the worker exits.
//!
//! An `http` endpoint receives the request of step 3 as a POST body (with `options` added) and
//! answers with the body of step 4. The full specification is `docs/verifier-protocol.md`.
//!
//! The file runs past 600 lines because of its tests of every message and version rule; the
//! protocol itself is about 400 lines.

use crate::{Group, Score};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The protocol's name, sent and expected in the handshake.
pub const PROTOCOL: &str = "oxrl-verifier";

/// The protocol version this build speaks. Additive changes (new optional fields) keep the
/// version; anything a version-1 plugin could misread bumps it.
pub const VERSION: u64 = 1;

/// The first line oxrl writes to a worker.
#[derive(Debug, Clone, Serialize)]
pub struct Hello<'a> {
    /// Always `"hello"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Always [`PROTOCOL`].
    pub protocol: &'static str,
    /// The version oxrl speaks ([`VERSION`]).
    pub version: u64,
    /// The verifier's `options` table from the task file, passed through untouched.
    pub options: &'a Map<String, Value>,
}

impl<'a> Hello<'a> {
    /// The hello message carrying `options`.
    pub fn new(options: &'a Map<String, Value>) -> Self {
        Self {
            kind: "hello",
            protocol: PROTOCOL,
            version: VERSION,
            options,
        }
    }
}

/// The worker's answer to the hello, once checked.
#[derive(Debug, Clone, PartialEq)]
pub struct HelloReply {
    /// The plugin's self-reported name (used in error messages), if it gave one.
    pub name: Option<String>,
}

/// One scoring request (oxrl → worker line, or the body of an HTTP POST).
#[derive(Debug, Clone, Serialize)]
pub struct ScoreRequest<'a> {
    /// Always `"score"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Request id, echoed in the answer; unique per verifier instance.
    pub id: u64,
    /// The groups to score, in order.
    pub groups: &'a [Group],
    /// The verifier's `options` (HTTP only: a worker receives them once, in the hello).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<&'a Map<String, Value>>,
}

impl<'a> ScoreRequest<'a> {
    /// A request for `groups` with id `id`.
    pub fn new(id: u64, groups: &'a [Group], options: Option<&'a Map<String, Value>>) -> Self {
        Self {
            kind: "score",
            id,
            groups,
            options,
        }
    }

    /// The request as one JSON line, `\n` included.
    pub fn to_line(&self) -> Vec<u8> {
        // Serialising strings, numbers and maps of JSON values cannot fail.
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// A checked answer to a [`ScoreRequest`].
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// One score per completion of every group, in order.
    Scores(Vec<Vec<Score>>),
    /// The plugin could not score this request and said why (`{"id":..,"error":".."}`).
    Error(String),
}

/// An answer that breaks the protocol. Every variant means the plugin cannot be trusted to be in
/// step with oxrl any more: a worker that sends one is restarted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    /// The line is not JSON at all (a stray `print`, a traceback on stdout, binary data).
    #[error("answer is not JSON ({detail}): {excerpt}")]
    NotJson {
        /// The JSON parser's message.
        detail: String,
        /// The start of the offending line.
        excerpt: String,
    },
    /// JSON, but not the expected shape.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The answer belongs to another request.
    #[error("answer has id {got}, expected {expected}")]
    WrongId {
        /// The id of the request just sent.
        expected: u64,
        /// The id the plugin answered with.
        got: u64,
    },
    /// `scores` has the wrong number of groups.
    #[error("answer has scores for {got} groups, the request had {expected}")]
    WrongGroupCount {
        /// Groups in the request.
        expected: usize,
        /// Groups in the answer.
        got: usize,
    },
    /// One group has the wrong number of scores.
    #[error("answer has {got} scores for group {group}, which has {expected} completions")]
    WrongScoreCount {
        /// Index of the group in the request.
        group: usize,
        /// Completions in that group.
        expected: usize,
        /// Scores in the answer.
        got: usize,
    },
}

/// At most `max` characters of `text`, with `…` when cut (for error messages).
pub fn excerpt(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

fn describe(v: &Value) -> String {
    excerpt(&v.to_string(), 80)
}

fn parse_object(line: &[u8]) -> Result<Map<String, Value>, ProtocolError> {
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ProtocolError::Malformed(format!(
            "expected a JSON object, got {}",
            describe(&other)
        ))),
        Err(e) => Err(ProtocolError::NotJson {
            detail: e.to_string(),
            excerpt: excerpt(&String::from_utf8_lossy(line), 200),
        }),
    }
}

/// Checks the worker's answer to the hello. `Ok(Err(msg))` is a worker that refused to start
/// and said why.
pub fn parse_hello_reply(line: &[u8]) -> Result<Result<HelloReply, String>, ProtocolError> {
    let m = parse_object(line)?;
    if let Some(kind) = m.get("type") {
        if kind != "hello" {
            return Err(ProtocolError::Malformed(format!(
                "expected the hello answer (`\"type\":\"hello\"`), got type {}",
                describe(kind)
            )));
        }
    }
    match m.get("error") {
        None | Some(Value::Null) => {}
        Some(Value::String(e)) => return Ok(Err(e.clone())),
        Some(other) => return Ok(Err(describe(other))),
    }
    match m.get("protocol") {
        Some(Value::String(p)) if p == PROTOCOL => {}
        Some(other) => {
            return Err(ProtocolError::Malformed(format!(
                "hello answer has protocol {}, expected \"{PROTOCOL}\"",
                describe(other)
            )))
        }
        None => {
            return Err(ProtocolError::Malformed(format!(
                "hello answer lacks `\"protocol\":\"{PROTOCOL}\"`"
            )))
        }
    }
    match m.get("version").and_then(Value::as_u64) {
        Some(VERSION) => {}
        Some(v) => {
            return Err(ProtocolError::Malformed(format!(
                "the plugin speaks protocol version {v}; this oxrl speaks version {VERSION}"
            )))
        }
        None => {
            return Err(ProtocolError::Malformed(
                "hello answer lacks an integer `version`".into(),
            ))
        }
    }
    let name = match m.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(ProtocolError::Malformed(format!(
                "hello answer `name` must be a string, got {}",
                describe(other)
            )))
        }
    };
    Ok(Ok(HelloReply { name }))
}

/// Checks an answer to the request `id` for `groups`. With `require_id` false (HTTP, where
/// the exchange itself pairs request and answer) a missing `id` is accepted; a wrong one never.
pub fn parse_answer(
    line: &[u8],
    id: u64,
    groups: &[Group],
    require_id: bool,
) -> Result<Answer, ProtocolError> {
    let m = parse_object(line)?;
    match m.get("id") {
        Some(v) => match v.as_u64() {
            Some(got) if got == id => {}
            Some(got) => return Err(ProtocolError::WrongId { expected: id, got }),
            None => {
                return Err(ProtocolError::Malformed(format!(
                    "`id` must be the request's integer id {id}, got {}",
                    describe(v)
                )))
            }
        },
        None if require_id => {
            return Err(ProtocolError::Malformed(format!(
                "answer lacks `id` (expected {id})"
            )))
        }
        None => {}
    }
    let scores = m.get("scores").filter(|v| !v.is_null());
    let error = m.get("error").filter(|v| !v.is_null());
    let scores = match (scores, error) {
        (None, Some(Value::String(e))) => return Ok(Answer::Error(e.clone())),
        (None, Some(e)) => return Ok(Answer::Error(describe(e))),
        (None, None) => {
            return Err(ProtocolError::Malformed(
                "answer has neither `scores` nor `error`".into(),
            ))
        }
        (Some(Value::Array(s)), _) => s,
        (Some(other), _) => {
            return Err(ProtocolError::Malformed(format!(
                "`scores` must be a list (one list per group), got {}",
                describe(other)
            )))
        }
    };
    if scores.len() != groups.len() {
        return Err(ProtocolError::WrongGroupCount {
            expected: groups.len(),
            got: scores.len(),
        });
    }
    let mut out = Vec::with_capacity(groups.len());
    for (gi, (group, items)) in groups.iter().zip(scores).enumerate() {
        let items = items.as_array().ok_or_else(|| {
            ProtocolError::Malformed(format!(
                "`scores[{gi}]` must be a list of scores, got {}",
                describe(items)
            ))
        })?;
        if items.len() != group.completions.len() {
            return Err(ProtocolError::WrongScoreCount {
                group: gi,
                expected: group.completions.len(),
                got: items.len(),
            });
        }
        let mut row = Vec::with_capacity(items.len());
        for (ci, item) in items.iter().enumerate() {
            row.push(parse_score(item, gi, ci)?);
        }
        out.push(row);
    }
    Ok(Answer::Scores(out))
}

/// One score: a number (the reward) or `{"reward", "components"?, "error"?}`.
fn parse_score(item: &Value, gi: usize, ci: usize) -> Result<Score, ProtocolError> {
    let at = format!("scores[{gi}][{ci}]");
    let (reward, components, error) = match item {
        Value::Number(n) => (n.as_f64(), None, None),
        Value::Object(o) => {
            let error = match o.get("error") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => {
                    return Err(ProtocolError::Malformed(format!(
                        "`{at}.error` must be a string or null, got {}",
                        describe(other)
                    )))
                }
            };
            let reward = match o.get("reward") {
                Some(Value::Number(n)) => n.as_f64(),
                // A failed item may leave the reward out: it is then 0.
                None | Some(Value::Null) if error.is_some() => Some(0.0),
                Some(other) => {
                    return Err(ProtocolError::Malformed(format!(
                        "`{at}.reward` must be a number, got {}",
                        describe(other)
                    )))
                }
                None => {
                    return Err(ProtocolError::Malformed(format!(
                        "`{at}` lacks a numeric `reward`"
                    )))
                }
            };
            (reward, o.get("components"), error)
        }
        other => {
            return Err(ProtocolError::Malformed(format!(
                "`{at}` must be a number or an object with `reward`, got {}",
                describe(other)
            )))
        }
    };
    let mut score = Score {
        reward: 0.0,
        components: BTreeMap::new(),
        error,
    };
    let mut problems = Vec::new();
    match components {
        None | Some(Value::Null) => {}
        Some(Value::Object(c)) => {
            for (k, v) in c {
                match v.as_f64().map(|x| x as f32) {
                    Some(x) if x.is_finite() => {
                        score.components.insert(k.clone(), x);
                    }
                    Some(_) => problems.push(format!("component `{k}` is not finite")),
                    None => {
                        return Err(ProtocolError::Malformed(format!(
                            "`{at}.components.{k}` must be a number, got {}",
                            describe(v)
                        )))
                    }
                }
            }
        }
        Some(other) => {
            return Err(ProtocolError::Malformed(format!(
                "`{at}.components` must be an object of numbers, got {}",
                describe(other)
            )))
        }
    }
    // JSON has no NaN or infinity, but a finite f64 can overflow f32.
    match reward.map(|r| r as f32) {
        Some(r) if r.is_finite() => score.reward = r,
        _ => problems.push(format!("reward {} is not a finite f32", describe(item))),
    }
    if !problems.is_empty() {
        score.reward = 0.0;
        let mut msg = problems.join("; ");
        if let Some(e) = score.error.take() {
            msg = format!("{e}; {msg}");
        }
        score.error = Some(msg);
    }
    Ok(score)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VerifyExample;
    use serde_json::json;

    fn groups(sizes: &[usize]) -> Vec<Group> {
        sizes
            .iter()
            .map(|&n| Group {
                example: VerifyExample {
                    id: "e".into(),
                    prompt: "p".into(),
                    answer: Some("a".into()),
                    metadata: Map::new(),
                },
                completions: (0..n).map(|i| format!("c{i}")).collect(),
            })
            .collect()
    }

    fn answer(v: Value, id: u64, g: &[Group]) -> Result<Answer, ProtocolError> {
        parse_answer(v.to_string().as_bytes(), id, g, true)
    }

    #[test]
    fn request_and_hello_lines_are_single_json_lines() {
        let g = vec![Group {
            example: VerifyExample {
                id: "x".into(),
                prompt: "line one\nline two".into(),
                answer: None,
                metadata: Map::new(),
            },
            completions: vec!["a\nb".into()],
        }];
        let line = ScoreRequest::new(3, &g, None).to_line();
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            v,
            json!({"type": "score", "id": 3, "groups": [{"example": {"id": "x",
                "prompt": "line one\nline two", "answer": null, "metadata": {}},
                "completions": ["a\nb"]}]})
        );
        let opts = json!({"k": 1}).as_object().unwrap().clone();
        let with = ScoreRequest::new(4, &g, Some(&opts)).to_line();
        let v: Value = serde_json::from_slice(&with).unwrap();
        assert_eq!(v["options"], json!({"k": 1}));
        let hello = serde_json::to_value(Hello::new(&opts)).unwrap();
        assert_eq!(
            hello,
            json!({"type": "hello", "protocol": "oxrl-verifier", "version": 1, "options": {"k": 1}})
        );
    }

    #[test]
    fn hello_replies_are_checked() {
        let ok = |v: Value| parse_hello_reply(v.to_string().as_bytes());
        assert_eq!(
            ok(json!({"type": "hello", "protocol": "oxrl-verifier", "version": 1, "name": "kw"})),
            Ok(Ok(HelloReply {
                name: Some("kw".into())
            }))
        );
        assert_eq!(
            ok(json!({"protocol": "oxrl-verifier", "version": 1})),
            Ok(Ok(HelloReply { name: None }))
        );
        assert_eq!(
            ok(json!({"type": "hello", "error": "bad option `x`"})),
            Ok(Err("bad option `x`".into()))
        );
        let v2 = ok(json!({"protocol": "oxrl-verifier", "version": 2}))
            .unwrap_err()
            .to_string();
        assert!(v2.contains("protocol version 2"), "{v2}");
        let other = ok(json!({"protocol": "lsp", "version": 1}))
            .unwrap_err()
            .to_string();
        assert!(other.contains("expected \"oxrl-verifier\""), "{other}");
        let junk = parse_hello_reply(b"Loading model...").unwrap_err();
        assert!(matches!(junk, ProtocolError::NotJson { .. }), "{junk}");
        assert!(junk.to_string().contains("Loading model..."));
    }

    #[test]
    fn full_and_bare_scores_parse() {
        let g = groups(&[2, 1]);
        let a = answer(
            json!({"id": 5, "scores": [
                [{"reward": 0.5, "components": {"kw": 1, "len": 0.0}, "error": null}, 1],
                [{"error": "no answer tag"}]
            ]}),
            5,
            &g,
        )
        .unwrap();
        let Answer::Scores(s) = a else {
            panic!("{a:?}")
        };
        assert_eq!(s[0][0].reward, 0.5);
        assert_eq!(s[0][0].components["kw"], 1.0);
        assert_eq!(s[0][0].components["len"], 0.0);
        assert_eq!(s[0][0].error, None);
        assert_eq!(s[0][1], Score::reward(1.0));
        assert_eq!(s[1][0], Score::failed("no answer tag"));
    }

    #[test]
    fn request_level_errors_are_answers() {
        let g = groups(&[1]);
        assert_eq!(
            answer(json!({"id": 1, "error": "db down"}), 1, &g),
            Ok(Answer::Error("db down".into()))
        );
    }

    #[test]
    fn protocol_violations_are_typed() {
        let g = groups(&[2, 1]);
        assert_eq!(
            answer(json!({"id": 9, "scores": [[1, 1], [1]]}), 8, &g),
            Err(ProtocolError::WrongId {
                expected: 8,
                got: 9
            })
        );
        assert_eq!(
            answer(json!({"id": 8, "scores": [[1, 1]]}), 8, &g),
            Err(ProtocolError::WrongGroupCount {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            answer(json!({"id": 8, "scores": [[1], [1]]}), 8, &g),
            Err(ProtocolError::WrongScoreCount {
                group: 0,
                expected: 2,
                got: 1
            })
        );
        for (bad, want) in [
            (json!({"scores": [[1, 1], [1]]}), "lacks `id`"),
            (json!({"id": "8", "scores": [[1, 1], [1]]}), "`id` must be"),
            (json!({"id": 8}), "neither `scores` nor `error`"),
            (json!({"id": 8, "scores": {}}), "`scores` must be a list"),
            (
                json!({"id": 8, "scores": [[1, "x"], [1]]}),
                "`scores[0][1]`",
            ),
            (
                json!({"id": 8, "scores": [[1, {"reward": "1"}], [1]]}),
                "`scores[0][1].reward` must be a number",
            ),
            (
                json!({"id": 8, "scores": [[1, {"components": {}}], [1]]}),
                "lacks a numeric `reward`",
            ),
            (
                json!({"id": 8, "scores": [[1, 1], [{"reward": 1, "components": {"a": "b"}}]]}),
                "`scores[1][0].components.a` must be a number",
            ),
            (json!([1, 2]), "expected a JSON object"),
        ] {
            let err = answer(bad.clone(), 8, &g).unwrap_err().to_string();
            assert!(err.contains(want), "{bad}: {err}");
        }
        // HTTP answers may leave the id out.
        let no_id = json!({"scores": [[1, 1], [0]]}).to_string();
        assert!(matches!(
            parse_answer(no_id.as_bytes(), 8, &g, false),
            Ok(Answer::Scores(_))
        ));
    }

    #[test]
    fn overflowing_rewards_fail_the_item_only() {
        let g = groups(&[2]);
        let Answer::Scores(s) = answer(
            json!({"id": 1, "scores": [[1e300, {"reward": 1, "components": {"x": 1e300}}]]}),
            1,
            &g,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(s[0][0].reward, 0.0);
        assert!(s[0][0].error.as_deref().unwrap().contains("not a finite"));
        assert_eq!(s[0][1].reward, 0.0);
        assert!(s[0][1]
            .error
            .as_deref()
            .unwrap()
            .contains("component `x` is not finite"));
    }

    #[test]
    fn excerpts_cut_long_text() {
        assert_eq!(excerpt("abc", 5), "abc");
        assert_eq!(excerpt("abcdef", 3), "abc…");
    }
}
