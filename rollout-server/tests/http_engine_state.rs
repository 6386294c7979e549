//! The HTTP server over a real loopback socket reports the engine's state: a panic on the
//! engine thread (injected through the engine's token decoder, a component a user supplies)
//! turns `/health` into a 503 naming the crash, and every later request into a 503, instead of
//! `/health` answering 200 while every request fails.

use candle_core::{DType, Device};
use oxrl_models::init::{write_random_model, InitSpec};
use oxrl_models::{Tokenizer, Transformer};
use oxrl_rollout::http::{serve, AppState, ServerConfig};
use oxrl_rollout::{EngineConfig, EngineHandle, EngineState, TokenDecoder};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The model's tokenizer, until `armed`: then every decode panics (on the engine thread).
struct Bomb {
    tokenizer: Arc<Tokenizer>,
    armed: Arc<AtomicBool>,
}

impl TokenDecoder for Bomb {
    fn decode(&self, ids: &[u32]) -> Result<String, oxrl_models::ModelError> {
        if self.armed.load(Ordering::Acquire) {
            panic!("injected panic in the token decoder");
        }
        TokenDecoder::decode(self.tokenizer.as_ref(), ids)
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, JSON body).
fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let status: u16 = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let (_, payload) = raw.split_once("\r\n\r\n").expect("headers end");
    let json = serde_json::from_str(payload)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {payload:?}"));
    (status, json)
}

#[test]
fn an_engine_panic_turns_health_and_requests_into_503() {
    let dir = tempfile::tempdir().unwrap();
    let spec = InitSpec {
        vocab_size: 512,
        hidden_size: 32,
        num_layers: 1,
        num_heads: 4,
        num_kv_heads: 2,
        intermediate_size: 64,
        max_position_embeddings: 128,
        seed: 5,
        ..InitSpec::default()
    };
    write_random_model(dir.path(), &spec).unwrap();
    let model = Arc::new(Transformer::load(dir.path(), DType::F32, &Device::Cpu).unwrap());
    let tokenizer = Arc::new(Tokenizer::from_dir(dir.path()).unwrap());
    let armed = Arc::new(AtomicBool::new(false));
    let decoder = Arc::new(Bomb {
        tokenizer: tokenizer.clone(),
        armed: armed.clone(),
    });
    let engine = EngineHandle::start(model, Some(decoder), EngineConfig::default()).unwrap();
    let state = AppState::new(engine.clone(), tokenizer, ServerConfig::default());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(serve(listener, state, async move {
        let _ = stop_rx.await;
    }));

    let req = serde_json::json!({"prompt": "hello there", "max_tokens": 4, "temperature": 0});
    let (status, body) = http(&addr, "GET", "/health", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["engine"], "running", "{body}");
    let (status, body) = http(&addr, "POST", "/v1/completions", Some(&req));
    assert_eq!(status, 200, "{body}");

    // The engine thread panics while serving this request: the request gets a 503 ...
    armed.store(true, Ordering::Release);
    let (status, body) = http(&addr, "POST", "/v1/completions", Some(&req));
    assert_eq!(status, 503, "{body}");
    assert_eq!(engine.state(), EngineState::Crashed);
    assert!(engine.is_shut_down());

    // ... and from then on health says so, and every request is refused with a 503.
    let (status, body) = http(&addr, "GET", "/health", None);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "engine_stopped", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("crashed")),
        "{body}"
    );
    for (path, body) in [
        ("/v1/completions", req.clone()),
        (
            "/v1/chat/completions",
            serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
        ),
        ("/v1/rollouts", serde_json::json!({"prompts": ["hi"]})),
    ] {
        let (status, resp) = http(&addr, "POST", path, Some(&body));
        assert_eq!(status, 503, "{path}: {resp}");
        assert_eq!(resp["error"]["code"], "engine_stopped", "{path}: {resp}");
    }
    assert!(matches!(
        engine.submit(oxrl_rollout::RolloutRequest::new(
            vec![5, 6],
            oxrl_rollout::SamplingParams::greedy(2)
        )),
        Err(oxrl_rollout::EngineError::ShutDown)
    ));

    let _ = stop_tx.send(());
    rt.block_on(server).unwrap().unwrap();
}
