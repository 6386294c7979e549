//! Unit tests of the tokenizer, chat template and tiny tokenizer.

use super::chat_template::strftime_at;
use super::tiny::{tiny_tokenizer, CHATML_TEMPLATE};
use super::*;
use std::collections::BTreeMap;

fn read_all(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn tiny_tokenizer_is_deterministic_and_sized() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    write_tiny_tokenizer(a.path(), 512).unwrap();
    write_tiny_tokenizer(b.path(), 512).unwrap();
    let fa = read_all(a.path());
    let fb = read_all(b.path());
    let names: Vec<&str> = fa.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "generation_config.json",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
    assert_eq!(fa, fb, "two runs wrote different files");
    if let Ok(out) = std::env::var("OXRL_TINY_TOKENIZER_OUT") {
        write_tiny_tokenizer(Path::new(&out), 512).unwrap();
    }

    let tok = Tokenizer::from_dir(a.path()).unwrap();
    assert_eq!(tok.vocab_size(), 512);
    assert_eq!(tok.token_to_id("<|endoftext|>"), Some(0));
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
    assert_eq!(tok.eos_token_ids(), &[2, 0]);
    assert_eq!(tok.pad_token_id(), Some(0));
    assert_eq!(tok.bos_token_id(), None);
    // Byte symbols follow in byte order (GPT-2's byte-to-unicode map).
    assert_eq!(tok.id_to_token(3).as_deref(), Some("\u{100}"));
    assert_eq!(tok.id_to_token(3 + u32::from(b'!')).as_deref(), Some("!"));

    let small = tiny_tokenizer(300).unwrap();
    assert_eq!(small.vocab_size(), 300);
    assert!(tiny_tokenizer(299).is_err());
}

#[test]
fn encode_decode_round_trip_and_specials() {
    let tok = tiny_tokenizer(512).unwrap();
    for text in [
        "The quick brown fox jumps over the lazy dog.",
        "  leading spaces, tabs\tand\nnew lines  ",
        "Ünïcödé: 世界 🙂 — done",
        "",
    ] {
        let ids = tok.encode(text, true).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
    }
    // Common English words got merged: fewer tokens than bytes.
    let ids = tok.encode("the answer is", false).unwrap();
    assert!(ids.len() < "the answer is".len(), "{ids:?}");
    // Special tokens are matched whole and can be skipped when decoding.
    let ids = tok.encode("<|im_start|>user\nhi<|im_end|>", false).unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(*ids.last().unwrap(), 2);
    assert_eq!(tok.decode(&ids, true).unwrap(), "user\nhi");
    assert!(tok.decode(&[100_000], false).is_err());
}

#[test]
fn decode_stream_emits_whole_characters() {
    let tok = tiny_tokenizer(400).unwrap();
    let text = "Héllo 世界! 🙂🙂 ok <|im_end|> ünd ✓";
    let ids = tok.encode(text, false).unwrap();
    // Multibyte characters are split across byte-level tokens here.
    assert!(ids.len() > text.chars().count() / 2);
    for skip in [false, true] {
        let mut stream = tok.decode_stream(skip);
        let mut deltas = Vec::new();
        for &id in &ids {
            if let Some(d) = stream.push(&tok, id).unwrap() {
                assert!(!d.contains('\u{FFFD}'), "partial character in {d:?}");
                deltas.push(d);
            }
        }
        if let Some(d) = stream.finish(&tok).unwrap() {
            deltas.push(d);
        }
        assert_eq!(deltas.concat(), tok.decode(&ids, skip).unwrap());
        assert!(deltas.len() > 5);
    }
    // A lone prefix of a multibyte character is held back, then flushed lossily.
    let emoji = tok.encode("🙂", false).unwrap();
    assert!(emoji.len() > 1);
    let mut s = DecodeStream::new(false);
    assert_eq!(s.push(&tok, emoji[0]).unwrap(), None);
    assert_eq!(s.finish(&tok).unwrap().as_deref(), Some("\u{FFFD}"));
}

#[test]
fn save_and_reload_is_unchanged() {
    let tok = tiny_tokenizer(400).unwrap();
    let d1 = tempfile::tempdir().unwrap();
    tok.save(d1.path()).unwrap();
    let re = Tokenizer::from_dir(d1.path()).unwrap();
    let text = "<|im_start|>user\nWhat is 12 plus 30?<|im_end|>\n";
    assert_eq!(
        tok.encode(text, true).unwrap(),
        re.encode(text, true).unwrap()
    );
    assert_eq!(re.eos_token_ids(), tok.eos_token_ids());
    assert_eq!(
        re.chat_template().unwrap().source(),
        CHATML_TEMPLATE,
        "chat template survives the round trip"
    );
    let d2 = tempfile::tempdir().unwrap();
    re.save(d2.path()).unwrap();
    assert_eq!(read_all(d1.path()), read_all(d2.path()));
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d1.path().join("tokenizer_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["eos_token"], "<|im_end|>");
    assert_eq!(cfg["tokenizer_class"], "PreTrainedTokenizerFast");
    assert_eq!(cfg["added_tokens_decoder"]["2"]["content"], "<|im_end|>");
    assert_eq!(cfg["added_tokens_decoder"]["2"]["special"], true);
    let gen: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d1.path().join("generation_config.json")).unwrap())
            .unwrap();
    assert_eq!(gen["eos_token_id"], serde_json::json!([2, 0]));
}

#[test]
fn from_dir_reads_hf_special_token_forms() {
    let tok = tiny_tokenizer(400).unwrap();
    let dir = tempfile::tempdir().unwrap();
    tok.inner()
        .save(dir.path().join("tokenizer.json"), false)
        .unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"bos_token": {"content": "<|im_start|>", "special": true}, "eos_token": "<|endoftext|>",
            "add_bos_token": true,
            "chat_template": [{"name": "tool_use", "template": "TOOLS"},
                              {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}"}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"eos_token_id": 2, "bos_token_id": 1}"#,
    )
    .unwrap();
    let t = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(t.bos_token_id(), Some(1));
    // generation_config's id first, then the tokenizer's eos token.
    assert_eq!(t.eos_token_ids(), &[2, 0]);
    assert!(t.is_eos(0) && t.is_eos(2) && !t.is_eos(1));
    // add_bos_token prepends BOS once.
    let ids = t.encode("hi", true).unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(t.encode("<|im_start|>hi", true).unwrap(), ids);
    assert_ne!(t.encode("hi", false).unwrap()[0], 1);
    let msgs = [ChatMessage::new("user", "yo")];
    assert_eq!(
        t.apply_chat_template(&msgs, false).unwrap(),
        "<|im_start|>yo"
    );
    // chat_template.jinja wins over tokenizer_config.json.
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "[{{ messages[0].content }}]\n",
    )
    .unwrap();
    let t = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(t.apply_chat_template(&msgs, false).unwrap(), "[yo]");

    // Several templates and no default: a clear error.
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"chat_template": [{"name": "a", "template": "x"}]}"#,
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("chat_template.jinja")).unwrap();
    let err = Tokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("none named `default`"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let err = Tokenizer::from_dir(empty.path()).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
}

#[test]
fn assistant_mask_marks_reply_tokens() {
    let tok = tiny_tokenizer(512).unwrap();
    let msgs = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "What is 2+2?"),
        ChatMessage::new("assistant", "The answer is 4."),
        ChatMessage::new("user", "Thanks"),
        ChatMessage::new("assistant", "You are welcome 🙂"),
    ];
    let (ids, mask) = tok.encode_chat_with_assistant_mask(&msgs).unwrap();
    assert_eq!(ids.len(), mask.len());
    let text = tok.apply_chat_template(&msgs, false).unwrap();
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
    let masked: Vec<u32> = ids
        .iter()
        .zip(&mask)
        .filter(|(_, &m)| m)
        .map(|(&i, _)| i)
        .collect();
    assert_eq!(
        tok.decode(&masked, false).unwrap(),
        "The answer is 4.<|im_end|>You are welcome 🙂<|im_end|>"
    );
    // Zero-width tokens are never in the mask; overlap decides otherwise.
    assert_eq!(
        spans_to_token_mask(&[(0, 0), (0, 3), (3, 5), (5, 9)], &[(4, 6)]),
        [false, false, true, true]
    );
}

#[test]
fn template_helpers_behave_like_python() {
    // 2024-07-26 13:05:09 UTC, a Friday.
    let t = 1_721_999_109;
    assert_eq!(strftime_at("%d %b %Y", t), "26 Jul 2024");
    assert_eq!(
        strftime_at("%A %B %-d, %y %H:%M:%S %j %p %I %%", t),
        "Friday July 26, 24 13:05:09 208 PM 01 %"
    );
    assert_eq!(strftime_at("%Y-%m-%d", 0), "1970-01-01");
    assert_eq!(strftime_at("%Y-%m-%d %j", 951_782_400), "2000-02-29 060");

    let tmpl = ChatTemplate::new(
        "{% if messages|length == 0 %}{{ raise_exception('need messages') }}{% endif %}ok {{ strftime_now('%Y')|length }}",
        BTreeMap::new(),
    )
    .unwrap();
    let err = tmpl.render(&[], false).unwrap_err();
    assert!(matches!(err, ModelError::ChatTemplate(_)));
    assert!(err.to_string().contains("need messages"), "{err}");
    assert_eq!(
        tmpl.render(&[ChatMessage::new("user", "x")], false)
            .unwrap(),
        "ok 4"
    );
    // tools is defined and none, as in transformers.
    let t = ChatTemplate::new(
        "{{ tools is none }} {{ tools is defined }} {{ foo is defined }}",
        BTreeMap::new(),
    )
    .unwrap();
    assert_eq!(t.render(&[], false).unwrap(), "True True False");
    // Broken templates fail at load with ChatTemplate errors.
    assert!(matches!(
        ChatTemplate::new("{% for x in %}", BTreeMap::new()),
        Err(ModelError::ChatTemplate(_))
    ));
    // Reserved marker characters in content are refused, not silently mis-masked.
    let t = ChatTemplate::new(CHATML_TEMPLATE, BTreeMap::new()).unwrap();
    assert!(t.has_generation_blocks());
    assert!(t
        .render(&[ChatMessage::new("user", "a\u{FDD0}b")], false)
        .is_err());
}
