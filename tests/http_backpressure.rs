//! Back-pressure of `oxrl serve`: with one running sequence and a queue of one, a third request
//! gets 429 `queue_full` (JSON error, `Retry-After`), and the server keeps serving once the
//! clients of the first two go away (their requests are aborted).

mod http_support;

use oxrl_models::init::{write_random_model, InitSpec};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::time::Duration;

#[test]
fn full_queue_answers_429_and_the_server_recovers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A longer context than the other tests' model, so that one request stays busy a while.
    let spec = InitSpec {
        max_position_embeddings: 4096,
        seed: 9,
        ..InitSpec::default()
    };
    write_random_model(tmp.path(), &spec).expect("model");
    let server =
        http_support::Server::start(tmp.path(), &["--max-queue", "1", "--max-running-seqs", "1"]);
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let long = json!({"prompt": [1, 2, 3], "max_tokens": 4000, "ignore_eos": true,
        "stream": true});
    // A: admitted and running (its first token arrived).
    let a = c
        .post(server.url("/v1/completions"))
        .json(&long)
        .send()
        .expect("A");
    assert_eq!(a.status().as_u16(), 200);
    let mut a_lines = BufReader::new(a).lines();
    assert!(a_lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.starts_with("data: {")));
    // B: accepted, waits in the queue (the one running slot is A's).
    let b = c
        .post(server.url("/v1/completions"))
        .json(&long)
        .send()
        .expect("B");
    assert_eq!(b.status().as_u16(), 200);
    // C: the queue is full.
    let resp = c
        .post(server.url("/v1/completions"))
        .json(&json!({"prompt": "hi", "max_tokens": 2}))
        .send()
        .expect("C");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let v: Value = resp.json().expect("JSON error");
    assert_eq!(v["error"]["code"], "queue_full");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    // The clients of A and B go away: their requests are aborted and the server serves again.
    drop(a_lines);
    drop(b);
    let mut ok = false;
    for _ in 0..200 {
        let r = c
            .post(server.url("/v1/completions"))
            .json(&json!({"prompt": "hi", "max_tokens": 2, "temperature": 0}))
            .send()
            .expect("D");
        if r.status().as_u16() == 200 {
            ok = true;
            break;
        }
        assert_eq!(r.status().as_u16(), 429);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ok, "the server did not recover after the clients left");
}
