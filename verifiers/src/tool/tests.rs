//! Tests of the `tool_call` verifier: SEED-MECHANISMS.md §11 worked examples, formats, garbage
//! and configuration errors.

use super::*;
use crate::{Group, Registry};
use calls::call_from_value;
use serde_json::json;

fn verifier(options: Value) -> ToolCallVerifier {
    ToolCallVerifier::from_options(options.as_object().unwrap(), &BuildContext::default()).unwrap()
}

fn example(reference: Value) -> VerifyExample {
    let mut e = VerifyExample::default();
    e.metadata.insert("tool_calls".into(), reference);
    e
}

fn tags(calls: &[Value]) -> String {
    let lines: Vec<String> = calls.iter().map(|c| c.to_string()).collect();
    format!(
        "<think>I should call a tool.</think>\n<tool_call>\n{}\n</tool_call>",
        lines.join("\n")
    )
}

fn search(n: i64) -> Value {
    json!({"name": "search", "parameters": {"q": "paris", "n": n}})
}

fn close(a: f32, b: f64) -> bool {
    (f64::from(a) - b).abs() < 1e-6
}

#[test]
fn seed_mechanisms_worked_examples() {
    let v = verifier(json!({}));
    let e = example(json!([search(3)]));
    // search(q="paris", n=5): S = 1 + (1 + 1) = 3, S_max = 4, R_correct = 1.5, R = 2.5.
    let s = v.score_one(&e, &tags(&[search(5)]));
    assert!(close(s.components["correctness"], 1.5), "{s:?}");
    assert_eq!(s.components["format"], 1.0);
    assert!(close(s.reward, 2.5), "{s:?}");
    assert_eq!(s.components["correct"], 0.0);
    // search(q="paris", n=3) + weather(city="paris"): name J = 0.5, S = 3.5, R_correct = 2.25.
    let s = v.score_one(
        &e,
        &tags(&[
            search(3),
            json!({"name": "weather", "parameters": {"city": "paris"}}),
        ]),
    );
    assert!(close(s.components["correctness"], 2.25), "{s:?}");
    // lookup(q="paris"): S = 0, R_correct = -3.
    let s = v.score_one(
        &e,
        &tags(&[json!({"name": "lookup", "parameters": {"q": "paris"}})]),
    );
    assert!(close(s.components["correctness"], -3.0), "{s:?}");
    assert!(close(s.reward, -2.0));
    // The exact call: +3, total 4 (the top of [-3, 4]).
    let s = v.score_one(&e, &tags(&[search(3)]));
    assert!(close(s.reward, 4.0), "{s:?}");
    assert_eq!(s.components["correct"], 1.0);
    assert_eq!(s.components["calls"], 1.0);
}

#[test]
fn jaccard_and_partial_match_by_hand() {
    assert_eq!(multiset_jaccard::<i32>(&[], &[]), 1.0);
    assert_eq!(multiset_jaccard(&[1], &[]), 0.0);
    // {a, a, b} vs {a, b, b}: ∩ = {a, b} (2), ∪ = 3 + 3 − 2 = 4.
    assert_eq!(multiset_jaccard(&["a", "a", "b"], &["a", "b", "b"]), 0.5);
    let gt = vec![
        call_from_value(&json!({"name": "f", "parameters": {"x": 1, "y": 2}})).unwrap(),
        call_from_value(&json!({"name": "f", "parameters": {"x": 5}})).unwrap(),
    ];
    let pd = vec![
        call_from_value(&json!({"name": "f", "parameters": {"x": 5}})).unwrap(),
        call_from_value(&json!({"name": "f", "parameters": {"x": 1, "y": 3}})).unwrap(),
    ];
    // Names J = 1. gt[0] best is pd[1]: keys J 1 + 1 value = 2 (pd[0]: J 0.5 + 0 = 0.5).
    // gt[1] takes pd[0]: 1 + 1 = 2. S = 5, S_max = 1 + 3 + 2 = 6.
    let (s, s_max) = partial_match(&gt, &pd, false);
    assert_eq!((s, s_max), (5.0, 6.0));
    // A reordered but otherwise equal list is not the exact match yet scores the maximum.
    let v = verifier(json!({}));
    let e = example(json!([{"name": "a"}, {"name": "b", "parameters": {"k": 1}}]));
    let s = v.score_one(
        &e,
        &tags(&[
            json!({"name": "b", "parameters": {"k": 1.0}}),
            json!({"name": "a"}),
        ]),
    );
    assert!(close(s.components["correctness"], 3.0), "{s:?}");
    assert_eq!(s.components["correct"], 0.0);
}

#[test]
fn format_follows_the_reference() {
    let v = verifier(json!({}));
    let e = example(json!([search(3)]));
    let call = search(3).to_string();
    for (text, ok) in [
        (
            format!("<think>t</think>\n<tool_call>\n{call}\n</tool_call>"),
            true,
        ),
        (
            format!("<think>t</think><tool_call>{call}</tool_call>  "),
            true,
        ),
        // No think block, a second think, a response that was not asked for, a tag twice.
        (format!("<tool_call>\n{call}\n</tool_call>"), false),
        (
            format!("<think>a</think><think>b</think><tool_call>{call}</tool_call>"),
            false,
        ),
        (
            format!("<think>t</think><tool_call>{call}</tool_call><response>x</response>"),
            false,
        ),
        (
            format!("<think>t</think><tool_call>{call}</tool_call><tool_call>{call}</tool_call>"),
            false,
        ),
        (
            format!("text before <think>t</think><tool_call>{call}</tool_call>"),
            false,
        ),
    ] {
        assert_eq!(
            v.score_one(&e, &text).components["format"],
            if ok { 1.0 } else { 0.0 },
            "{text}"
        );
    }
    // Two blocks still count for correctness: both calls are read.
    let s = v.score_one(
        &e,
        &format!("<think>t</think><tool_call>{call}</tool_call><tool_call>{call}</tool_call>"),
    );
    assert_eq!(s.components["calls"], 2.0);
    // Text-only reference: correctness 0, the format wants a response and no call.
    let e = example(json!({"tool_calls": [], "response": "It is sunny."}));
    let s = v.score_one(&e, "<think>t</think>\n<response>It is sunny.</response>");
    assert_eq!((s.reward, s.components["correct"]), (1.0, 1.0));
    let s = v.score_one(
        &e,
        &format!("<think>t</think><tool_call>{call}</tool_call>"),
    );
    assert_eq!((s.reward, s.components["correct"]), (0.0, 0.0));
    // Both: a call then a response.
    let e = example(json!({"tool_calls": [search(3)], "response": true}));
    let s = v.score_one(
        &e,
        &format!(
            "<think>t</think>\n<tool_call>\n{call}\n</tool_call>\n<response>Looking.</response>"
        ),
    );
    assert_eq!(s.reward, 4.0);
    // Without require_think the think block is optional.
    let v = verifier(json!({"require_think": false}));
    let e = example(json!([search(3)]));
    assert_eq!(
        v.score_one(&e, &format!("<tool_call>{call}</tool_call>"))
            .reward,
        4.0
    );
}

#[test]
fn missing_and_malformed_calls_score_minus_max() {
    let v = verifier(json!({}));
    let e = example(json!([search(3)]));
    for text in [
        "<think>I know it.</think>\n<response>Paris</response>",
        "<think>t</think>\n<tool_call>\n{\"name\": \"search\", \"parameters\": {\"q\": \"paris\", \"n\": 3}}\nnot json\n</tool_call>",
        "<think>t</think>\n<tool_call>\n{\"name\": \"search\"",
        "",
    ] {
        let s = v.score_one(&e, text);
        assert_eq!(s.components["correctness"], -3.0, "{text}");
        assert!(s.error.is_none());
    }
}

#[test]
fn openai_format() {
    let v = verifier(json!({"format": "openai"}));
    let e = example(json!([search(3)]));
    let msg = json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{\"q\": \"paris\", \"n\": 5}"}}
    ]});
    let s = v.score_one(&e, &msg.to_string());
    assert!(close(s.reward, 2.5), "{s:?}");
    let s = v.score_one(
        &e,
        "```json\n[{\"name\": \"search\", \"arguments\": {\"q\": \"paris\", \"n\": 3}}]\n```",
    );
    assert!(close(s.reward, 4.0), "{s:?}");
    // Prose is neither valid format nor a call.
    let s = v.score_one(&e, "I would call search.");
    assert_eq!(
        (s.components["format"], s.components["correctness"]),
        (0.0, -3.0)
    );
    // Text-only reference: content wanted, no calls.
    let e = example(json!({"tool_calls": null, "response": "hi"}));
    assert_eq!(v.score_one(&e, r#"{"content": "hello"}"#).reward, 1.0);
    assert_eq!(v.score_one(&e, r#"{"content": null}"#).reward, 0.0);
}

#[test]
fn references_in_answer_text_and_fields() {
    let v = verifier(json!({}));
    let text = tags(&[search(3)]);
    // ToolRL's own layout as the answer string.
    let e = VerifyExample {
        answer: Some(format!("<tool_call>\n{}\n</tool_call>", search(3))),
        ..VerifyExample::default()
    };
    assert_eq!(v.score_one(&e, &text).reward, 4.0);
    // A JSON string answer.
    let e = VerifyExample {
        answer: Some(json!([search(3)]).to_string()),
        ..VerifyExample::default()
    };
    assert_eq!(v.score_one(&e, &text).reward, 4.0);
    // A named field.
    let v = verifier(json!({"field": "gold"}));
    let mut e = VerifyExample::default();
    e.metadata.insert("gold".into(), json!([search(3)]));
    assert_eq!(v.score_one(&e, &text).reward, 4.0);
    let s = v.score_one(&VerifyExample::default(), &text);
    assert!(s.error.unwrap().contains("`gold`"));
    // A malformed reference is a recorded error, not a panic.
    let v = verifier(json!({}));
    let s = v.score_one(&example(json!([{"parameters": {}}])), &text);
    assert!(s.error.is_some());
    assert_eq!(s.reward, 0.0);
    let s = v.score_one(&example(json!(7)), &text);
    assert!(s.error.is_some());
}

#[test]
fn ablations_and_ranges() {
    let e = example(json!([search(3)]));
    let near = tags(&[search(5)]);
    let v = verifier(json!({"exact_match_only": true}));
    assert_eq!(v.score_one(&e, &near).components["correctness"], -3.0);
    let v = verifier(json!({"correct_max": 1.0, "format_max": 0.5}));
    let s = v.score_one(&e, &near);
    // 2·1·3/4 − 1 = 0.5, plus format 0.5.
    assert!(close(s.components["correctness"], 0.5));
    assert!(close(s.reward, 1.0));
    let v = verifier(json!({"lenient_values": true}));
    let loose = tags(&[json!({"name": "search", "parameters": {"q": " Paris", "n": "3"}})]);
    assert_eq!(v.score_one(&e, &loose).reward, 4.0);
    assert!(verifier(json!({})).score_one(&e, &loose).reward < 4.0);
}

#[test]
fn garbage_never_panics() {
    let v = verifier(json!({}));
    let o = verifier(json!({"format": "openai"}));
    let e = example(json!([search(3)]));
    let mut texts: Vec<String> = vec![
        "<tool_call>".into(),
        "</tool_call><tool_call>".into(),
        "<tool_call>{\"name\": \"search\", \"parameters\": {\"q\": ".into(),
        "<think><think></think>".into(),
        "[".repeat(10_000),
        "{\"tool_calls\": [".repeat(3000),
        format!("<tool_call>{}</tool_call>", "[".repeat(5000)),
        "\u{0}\u{ffff}é漢字".into(),
        "<tool_call>\u{0}</tool_call>".repeat(1000),
        "x".repeat(400_000) + "é",
    ];
    let mut seed = 0x9e3779b97f4a7c15u64;
    for _ in 0..200 {
        let bytes: Vec<u8> = (0..64)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let alphabet = b"<>/{}[]\":,tool_call namepars0123 \n";
                alphabet[(seed % alphabet.len() as u64) as usize]
            })
            .collect();
        texts.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    let groups = [Group {
        example: e,
        completions: texts,
    }];
    for verifier in [&v, &o] {
        let scores = verifier.score(&groups);
        assert_eq!(scores[0].len(), groups[0].completions.len());
        for s in &scores[0] {
            assert!(
                s.reward.is_finite() && (-3.0..=4.0).contains(&s.reward),
                "{s:?}"
            );
        }
    }
}

#[test]
fn config_errors_name_the_problem() {
    let r = Registry::builtin();
    let ctx = BuildContext::default();
    for (options, want) in [
        (json!({"bogus": 1}), "unknown field `bogus`"),
        (json!({"format": "xml"}), "unknown variant `xml`"),
        // A string choice, never serde's one-key-map form of an enum.
        (
            json!({"format": {"tags": null}}),
            "`format`: invalid type: map, expected a string",
        ),
        (json!({"format_max": -1}), "`format_max` must be"),
        (json!({"correct_max": 0}), "`correct_max` must be"),
        (
            json!({"format": "openai", "require_think": true}),
            "`require_think` applies only",
        ),
        (json!({"field": ""}), "`field` must not be empty"),
        (json!({"exact_match_only": "yes"}), "invalid type"),
    ] {
        let err = r
            .build("tool_call", options.as_object().unwrap(), &ctx)
            .err()
            .unwrap_or_else(|| panic!("{options} built"))
            .to_string();
        assert!(err.contains("verifier `tool_call`"), "{err}");
        assert!(err.contains(want), "{options}: {err}");
    }
}
