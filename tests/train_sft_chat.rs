//! SFT on chat data (TRL's `messages` datasets) through the binary: `algorithm.sft.target =
//! "conversation"` trains every assistant turn of multi-turn conversations (the chat template's
//! `{% generation %}` spans), the held-out loss falls, and data without assistant turns is
//! refused before any work with an error naming the key.

mod train_support;

use std::path::Path;
use train_support::*;

/// Two-turn conversations: the assistant first echoes a number, then doubles it.
fn write_data(dir: &Path, n: usize) -> std::path::PathBuf {
    let mut lines = String::new();
    for i in 0..n {
        let x = i % 10;
        let row = serde_json::json!({
            "id": format!("c{i}"),
            "messages": [
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": format!("say {x}")},
                {"role": "assistant", "content": format!("{x}")},
                {"role": "user", "content": "double it"},
                {"role": "assistant", "content": format!("{}", 2 * x)},
            ]
        });
        lines.push_str(&row.to_string());
        lines.push('\n');
    }
    let p = dir.join("chat.jsonl");
    std::fs::write(&p, lines).unwrap();
    p
}

const CONFIG: &str = r#"
seed = 1
[model]
init = "tiny"
[task]
[task.dataset]
source = "DATA"
eval_count = 8
[algorithm]
name = "sft"
steps = 25
batch_size = 8
max_seq_len = 96
[algorithm.sft]
target = "conversation"
[optim]
lr = 3e-3
[checkpoint]
every = 0
[eval]
at_start = true
at_end = true
accuracy = false
max_examples = 8
[log]
progress = false
"#;

#[test]
fn sft_on_multi_turn_chat_lowers_the_held_out_loss() {
    let d = tempfile::tempdir().unwrap();
    let data = write_data(d.path(), 80);
    let cfg = d.path().join("chat.toml");
    std::fs::write(
        &cfg,
        CONFIG.replace("DATA", &data.display().to_string().replace('\\', "/")),
    )
    .unwrap();
    ok(&train(&cfg, &[out_dir(&d.path().join("out"))], &[]));
    let recs = records(&d.path().join("out"));
    let (before, after) = (
        f(&recs[0], "eval_loss"),
        f(recs.last().unwrap(), "eval_loss"),
    );
    eprintln!("chat SFT held-out loss {before:.3} -> {after:.3}");
    assert!(after < 0.7 * before, "held-out loss {before} -> {after}");
}

#[test]
fn conversation_target_without_assistant_turns_names_the_key() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("q.jsonl");
    std::fs::write(
        &p,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n".repeat(12),
    )
    .unwrap();
    let cfg = d.path().join("chat.toml");
    std::fs::write(&cfg, CONFIG.replace("DATA", &p.display().to_string())).unwrap();
    let out = train(&cfg, &[out_dir(&d.path().join("out"))], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("algorithm.sft.target"), "{err}");
    assert!(err.contains("conversation"), "{err}");
}
