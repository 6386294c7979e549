//! Graceful shutdown of `oxrl serve`: on SIGTERM a stream already in flight runs to its end
//! (`[DONE]`, every choice finished by `length`), then the process exits with status 0.

#![cfg(unix)]

mod http_support;

use http_support::{write_model, Server};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::time::Duration;

#[test]
fn sigterm_lets_in_flight_streams_finish_then_exits_cleanly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_model(tmp.path(), 21);
    let server = Server::start(tmp.path(), &["--shutdown-grace-secs", "60"]);
    let n = 64;
    let max_tokens = 240;
    let resp = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
        .post(server.url("/v1/completions"))
        .json(
            &json!({"prompt": [1, 2, 3], "n": n, "max_tokens": max_tokens,
            "ignore_eos": true, "stream": true, "temperature": 1.0, "seed": 3}),
        )
        .send()
        .expect("stream request");
    assert_eq!(resp.status().as_u16(), 200);
    let mut lines = BufReader::new(resp).lines();
    // The first token arrived: the request is in flight. Now ask the server to stop.
    let first = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with("data: "))
        .expect("a first chunk");
    assert!(first.contains("text_completion"), "{first}");
    let mut frames = vec![first];
    let stopper = std::thread::spawn(move || server.stop(Duration::from_secs(60)));
    for l in lines.map_while(Result::ok) {
        if let Some(d) = l.strip_prefix("data: ") {
            frames.push(d.to_string());
        }
    }
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
    let mut finished = vec![None; n];
    let mut tokens = 0;
    for f in &frames[1..frames.len() - 1] {
        let v: Value = serde_json::from_str(f).unwrap_or_else(|e| panic!("{e}: {f}"));
        assert!(v.get("error").is_none(), "error frame: {f}");
        for c in v["choices"].as_array().expect("choices") {
            tokens += 1;
            if let Some(r) = c["finish_reason"].as_str() {
                finished[c["index"].as_u64().expect("index") as usize] = Some(r.to_string());
            }
        }
    }
    assert!(tokens >= n * max_tokens / 2, "only {tokens} token chunks");
    assert!(
        finished.iter().all(|f| f.as_deref() == Some("length")),
        "{finished:?}"
    );
    let (ok, err) = stopper.join().expect("stopper");
    assert!(ok, "oxrl serve did not exit cleanly: {err}");
    assert!(err.contains("stopped"), "{err}");
}
