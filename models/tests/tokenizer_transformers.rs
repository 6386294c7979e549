//! The tiny tokenizer, written by oxrl and loaded by HF transformers 5.24.0
//! (`AutoTokenizer.from_pretrained(dir)`, tokenizers 0.23.3), encodes, renders and masks exactly
//! as oxrl does. Expected ids below were produced by transformers from `write_tiny_tokenizer(dir, 512)`
//! (regenerated when the tiny tokenizer began splitting digits one per token).

use oxrl_models::tokenizer::{write_tiny_tokenizer, ChatMessage, Tokenizer};

fn tiny() -> (tempfile::TempDir, Tokenizer) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_tokenizer(dir.path(), 512).unwrap();
    let tok = Tokenizer::from_dir(dir.path()).unwrap();
    (dir, tok)
}

#[test]
fn encodes_like_transformers() {
    let (_d, tok) = tiny();
    assert_eq!(
        tok.encode("The quick brown fox jumps over the lazy dog.", true)
            .unwrap(),
        [
            284, 35, 414, 108, 478, 287, 117, 318, 113, 275, 114, 123, 35, 109, 120, 112, 115, 118,
            276, 310, 262, 380, 100, 125, 124, 440, 106, 49
        ]
    );
    assert_eq!(
        tok.decode(
            &tok.encode("The quick brown fox jumps over the lazy dog.", true)
                .unwrap(),
            false
        )
        .unwrap(),
        "The quick brown fox jumps over the lazy dog."
    );
    assert_eq!(
        tok.encode("Ünïcödé: 世界 🙂 — done", true).unwrap(),
        [
            198, 159, 113, 198, 178, 102, 198, 185, 103, 198, 172, 61, 35, 231, 187, 153, 234, 152,
            143, 35, 243, 162, 156, 133, 35, 229, 131, 151, 300, 268, 104
        ]
    );
    assert_eq!(
        tok.decode(&tok.encode("Ünïcödé: 世界 🙂 — done", true).unwrap(), false)
            .unwrap(),
        "Ünïcödé: 世界 🙂 — done"
    );
    assert_eq!(
        tok.encode("<|im_start|>user\nWhat is 12 plus 30?<|im_end|>\n", true)
            .unwrap(),
        [1, 320, 263, 13, 90, 493, 306, 35, 52, 53, 289, 506, 35, 54, 51, 66, 2, 13]
    );
    assert_eq!(
        tok.decode(
            &tok.encode("<|im_start|>user\nWhat is 12 plus 30?<|im_end|>\n", true)
                .unwrap(),
            false
        )
        .unwrap(),
        "<|im_start|>user\nWhat is 12 plus 30?<|im_end|>\n"
    );
    assert_eq!(
        tok.encode("  12345 spaces\t\tand\n\nnewlines  ", true)
            .unwrap(),
        [
            290, 52, 53, 54, 55, 56, 266, 115, 325, 270, 12, 12, 465, 13, 13, 113, 104, 122, 111,
            267, 270, 290
        ]
    );
    assert_eq!(
        tok.decode(
            &tok.encode("  12345 spaces\t\tand\n\nnewlines  ", true)
                .unwrap(),
            false
        )
        .unwrap(),
        "  12345 spaces\t\tand\n\nnewlines  "
    );
    assert_eq!(
        tok.encode("def f(x):\n    return x * 2\n", true).unwrap(),
        [482, 275, 43, 123, 388, 378, 446, 35, 123, 35, 45, 35, 53, 13]
    );
    assert_eq!(
        tok.decode(
            &tok.encode("def f(x):\n    return x * 2\n", true).unwrap(),
            false
        )
        .unwrap(),
        "def f(x):\n    return x * 2\n"
    );
}

#[test]
fn chat_template_and_assistant_mask_like_transformers() {
    let (_d, tok) = tiny();
    let msgs = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "What is 2+2?"),
        ChatMessage::new("assistant", "The answer is 4."),
        ChatMessage::new("user", "and 3+3?"),
        ChatMessage::new("assistant", "6 🙂"),
    ];
    let (ids, mask) = tok.encode_chat_with_assistant_mask(&msgs).unwrap();
    assert_eq!(
        ids,
        [
            1, 118, 124, 418, 104, 112, 13, 69, 104, 287, 376, 104, 105, 49, 2, 13, 1, 320, 263,
            13, 90, 493, 306, 35, 53, 46, 53, 66, 2, 13, 1, 344, 350, 13, 284, 323, 306, 35, 55,
            49, 2, 13, 1, 320, 263, 13, 465, 35, 54, 46, 54, 66, 2, 13, 1, 344, 350, 13, 57, 35,
            243, 162, 156, 133, 2, 13
        ]
    );
    let hf_mask: Vec<u8> = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1,
        1, 1, 1, 1, 1, 0,
    ]
    .to_vec();
    assert_eq!(mask.iter().map(|&m| m as u8).collect::<Vec<u8>>(), hf_mask);
    assert_eq!(tok.apply_chat_template(&msgs[..2], true).unwrap(), "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
}
