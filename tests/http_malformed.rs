//! Malformed-input suite against a real `oxrl serve` on loopback: every bad request (bad JSON,
//! wrong types, out-of-range numbers, unknown fields, over-long prompts, bad token ids, invalid
//! UTF-8, oversized bodies, bad weight files, missing or wrong keys) gets a 4xx with an
//! OpenAI-style JSON error; after each one the server still answers, and after the bad weight
//! updates the greedy outputs and the policy version are unchanged. A good update then bumps the
//! version and changes the outputs, and restoring the original weights restores them.

mod http_support;

use candle_core::{DType, Device, Tensor};
use http_support::{write_model, Server, CONTEXT};
use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const API_KEY: &str = "test-api-key";
const ADMIN_KEY: &str = "test-admin-key";

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// One malformed request and the status it must get.
struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    key: Option<&'static str>,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
}

fn case(name: &'static str, path: &'static str, body: impl Into<Vec<u8>>, status: u16) -> Case {
    Case {
        name,
        method: "POST",
        path,
        key: Some(API_KEY),
        content_type: "application/json",
        body: body.into(),
        status,
    }
}

fn send(c: &Client, s: &Server, k: &Case) -> Response {
    let mut r = match k.method {
        "GET" => c.get(s.url(k.path)),
        _ => c.post(s.url(k.path)),
    }
    .header("content-type", k.content_type)
    .body(k.body.clone());
    if let Some(key) = k.key {
        r = r.bearer_auth(key);
    }
    r.send()
        .unwrap_or_else(|e| panic!("{}: request failed: {e}", k.name))
}

/// Asserts an error response: the status and an OpenAI error object.
fn assert_json_error(name: &str, resp: Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().unwrap_or_default();
    assert_eq!(got, status, "{name}: status {got}, body {text}");
    assert!(
        ct.starts_with("application/json"),
        "{name}: content-type {ct}"
    );
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {text}"));
    let err = &v["error"];
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{name}: no message in {text}"
    );
    assert!(err["type"].is_string(), "{name}: no type in {text}");
    assert!(
        err.get("param").is_some() && err.get("code").is_some(),
        "{name}: {text}"
    );
    v
}

/// Greedy token ids and logprobs of a fixed prompt, plus the versions reported.
fn probe(c: &Client, s: &Server) -> (Vec<u64>, Vec<f64>, u64) {
    let resp = c
        .post(s.url("/v1/rollouts"))
        .bearer_auth(API_KEY)
        .json(&json!({"prompts": [[10, 20, 30, 40, 50]],
            "params": {"max_tokens": 8, "temperature": 0, "ignore_eos": true}}))
        .send()
        .expect("probe request");
    assert_eq!(resp.status().as_u16(), 200, "the server stopped answering");
    let v: Value = resp.json().expect("probe JSON");
    let comp = &v["results"][0]["completions"][0];
    let ids = comp["token_ids"]
        .as_array()
        .expect("token_ids")
        .iter()
        .map(|x| x.as_u64().expect("id"))
        .collect::<Vec<_>>();
    let lps = comp["logprobs"]
        .as_array()
        .expect("logprobs")
        .iter()
        .map(|x| x.as_f64().expect("lp"))
        .collect::<Vec<_>>();
    assert_eq!(ids.len(), 8);
    let version = comp["policy_version"].as_u64().expect("version");
    assert_eq!(v["policy_version"].as_u64(), Some(version));
    (ids, lps, version)
}

fn health_version(c: &Client, s: &Server) -> u64 {
    let v: Value = c
        .get(s.url("/health"))
        .send()
        .expect("health")
        .json()
        .expect("health JSON");
    v["policy_version"].as_u64().expect("version")
}

fn safetensors_bytes(tensors: &HashMap<String, Tensor>, dir: &Path, name: &str) -> Vec<u8> {
    let p = dir.join(name);
    candle_core::safetensors::save(tensors, &p).expect("save safetensors");
    std::fs::read(&p).expect("read safetensors")
}

fn weight_cases(model2: &Path, scratch: &Path) -> Vec<Case> {
    let good = std::fs::read(model2.join("model.safetensors")).expect("model 2 weights");
    let cpu = Device::Cpu;
    let t = |v: Vec<f32>, shape: &[usize]| Tensor::from_vec(v, shape, &cpu).expect("tensor");
    let mut wrong_shape = HashMap::new();
    wrong_shape.insert("model.norm.weight".to_string(), t(vec![1.0; 63], &[63]));
    let mut wrong_name = HashMap::new();
    wrong_name.insert(
        "model.layers.99.mlp.up_proj.weight".to_string(),
        t(vec![0.5; 64], &[64]),
    );
    let mut nan = HashMap::new();
    let mut vals = vec![1.0f32; 64];
    vals[17] = f32::NAN;
    nan.insert("model.norm.weight".to_string(), t(vals, &[64]));
    let mut inf = HashMap::new();
    let mut vals = vec![1.0f32; 64];
    vals[3] = f32::INFINITY;
    inf.insert("model.norm.weight".to_string(), t(vals, &[64]));
    let mut int = HashMap::new();
    int.insert(
        "model.norm.weight".to_string(),
        t(vec![1.0; 64], &[64]).to_dtype(DType::I64).expect("i64"),
    );
    let w = |name: &'static str, body: Vec<u8>, status: u16| Case {
        name,
        method: "POST",
        path: "/v1/weights",
        key: Some(ADMIN_KEY),
        content_type: "application/octet-stream",
        body,
        status,
    };
    let missing = scratch.join("does-not-exist.safetensors");
    vec![
        w(
            "weights: truncated file",
            good[..good.len() / 2].to_vec(),
            400,
        ),
        w("weights: header only", good[..16].to_vec(), 400),
        w(
            "weights: garbage",
            b"this is not a safetensors file".to_vec(),
            400,
        ),
        w("weights: empty body", Vec::new(), 400),
        w(
            "weights: wrong shape",
            safetensors_bytes(&wrong_shape, scratch, "shape.st"),
            400,
        ),
        w(
            "weights: wrong names",
            safetensors_bytes(&wrong_name, scratch, "names.st"),
            400,
        ),
        w(
            "weights: NaN",
            safetensors_bytes(&nan, scratch, "nan.st"),
            400,
        ),
        w(
            "weights: infinity",
            safetensors_bytes(&inf, scratch, "inf.st"),
            400,
        ),
        w(
            "weights: integer dtype",
            safetensors_bytes(&int, scratch, "int.st"),
            400,
        ),
        Case {
            content_type: "application/json",
            ..w(
                "weights: path does not exist",
                json!({"path": missing}).to_string().into_bytes(),
                404,
            )
        },
        Case {
            content_type: "application/json",
            ..w(
                "weights: JSON with unknown field",
                json!({"file": "x"}).to_string().into_bytes(),
                400,
            )
        },
        Case {
            key: None,
            ..w("weights: no admin key", good.clone(), 401)
        },
        Case {
            key: Some(API_KEY),
            ..w("weights: api key is not the admin key", good.clone(), 401)
        },
    ]
}

fn inference_cases() -> Vec<Case> {
    let long_prompt = json!({"prompt": vec![5u32; CONTEXT + 10], "max_tokens": 1}).to_string();
    let fits_but_too_long =
        json!({"prompt": vec![5u32; CONTEXT - 4], "max_tokens": 10}).to_string();
    let mut invalid_utf8 = br#"{"prompt": "abc"#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xfd]);
    invalid_utf8.extend_from_slice(br#"", "max_tokens": 2}"#);
    let mut oversized = br#"{"prompt": ""#.to_vec();
    oversized.extend(std::iter::repeat_n(b'a', 2 << 20));
    oversized.extend_from_slice(br#""}"#);
    let c = "/v1/completions";
    let chat = "/v1/chat/completions";
    let r = "/v1/rollouts";
    vec![
        case("truncated JSON", c, r#"{"prompt": "hi""#, 400),
        case("not JSON", c, "hello", 400),
        case("empty body", c, "", 400),
        case("JSON array instead of object", c, "[1, 2]", 400),
        case("trailing garbage", c, r#"{"prompt": "hi"} x"#, 400),
        case("missing prompt", c, "{}", 400),
        case("prompt of wrong type", c, r#"{"prompt": 5}"#, 400),
        case("prompt: empty list", c, r#"{"prompt": []}"#, 400),
        case("prompt: mixed list", c, r#"{"prompt": ["a", 1]}"#, 400),
        case(
            "max_tokens: string",
            c,
            r#"{"prompt": "hi", "max_tokens": "5"}"#,
            400,
        ),
        case(
            "max_tokens: negative",
            c,
            r#"{"prompt": "hi", "max_tokens": -1}"#,
            400,
        ),
        case(
            "max_tokens: over the limit",
            c,
            r#"{"prompt": "hi", "max_tokens": 100000}"#,
            400,
        ),
        case(
            "max_tokens: float",
            c,
            r#"{"prompt": "hi", "max_tokens": 1e40}"#,
            400,
        ),
        case("n = 0", c, r#"{"prompt": "hi", "n": 0}"#, 400),
        case("n negative", c, r#"{"prompt": "hi", "n": -3}"#, 400),
        case("n huge", c, r#"{"prompt": "hi", "n": 1000000}"#, 400),
        case(
            "temperature negative",
            c,
            r#"{"prompt": "hi", "temperature": -1}"#,
            400,
        ),
        case(
            "temperature string",
            c,
            r#"{"prompt": "hi", "temperature": "hot"}"#,
            400,
        ),
        case("top_p = 0", c, r#"{"prompt": "hi", "top_p": 0}"#, 400),
        case("top_p > 1", c, r#"{"prompt": "hi", "top_p": 1.5}"#, 400),
        case("top_k < -1", c, r#"{"prompt": "hi", "top_k": -5}"#, 400),
        case(
            "unknown field (typo)",
            c,
            r#"{"prompt": "hi", "temprature": 0}"#,
            400,
        ),
        case("prompt longer than the context", c, long_prompt, 400),
        case(
            "prompt + max_tokens past the context",
            c,
            fits_but_too_long,
            400,
        ),
        case("token id out of range", c, r#"{"prompt": [1, 99999]}"#, 400),
        case("token id negative", c, r#"{"prompt": [1, -1]}"#, 400),
        case("token id not an integer", c, r#"{"prompt": [1, 2.5]}"#, 400),
        case("invalid UTF-8", c, invalid_utf8, 400),
        case("oversized body", c, oversized, 413),
        case(
            "logprobs too many",
            c,
            r#"{"prompt": "hi", "logprobs": 1000}"#,
            400,
        ),
        case(
            "logprobs negative",
            c,
            r#"{"prompt": "hi", "logprobs": -1}"#,
            400,
        ),
        case(
            "stop: empty string",
            c,
            r#"{"prompt": "hi", "stop": [""]}"#,
            400,
        ),
        case("stop: wrong type", c, r#"{"prompt": "hi", "stop": 5}"#, 400),
        case(
            "presence_penalty unsupported",
            c,
            r#"{"prompt": "hi", "presence_penalty": 1}"#,
            400,
        ),
        case(
            "logit_bias unsupported",
            c,
            r#"{"prompt": "hi", "logit_bias": {"5": 10}}"#,
            400,
        ),
        case("best_of != n", c, r#"{"prompt": "hi", "best_of": 3}"#, 400),
        case(
            "unknown model",
            c,
            r#"{"prompt": "hi", "model": "gpt-5"}"#,
            404,
        ),
        case("chat: missing messages", chat, r#"{"max_tokens": 2}"#, 400),
        case("chat: empty messages", chat, r#"{"messages": []}"#, 400),
        case(
            "chat: messages not a list",
            chat,
            r#"{"messages": "hi"}"#,
            400,
        ),
        case(
            "chat: unknown role",
            chat,
            r#"{"messages": [{"role": "wizard", "content": "x"}]}"#,
            400,
        ),
        case(
            "chat: content wrong type",
            chat,
            r#"{"messages": [{"role": "user", "content": 5}]}"#,
            400,
        ),
        case(
            "chat: image part",
            chat,
            r#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}"#,
            400,
        ),
        case(
            "chat: top_logprobs without logprobs",
            chat,
            r#"{"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}"#,
            400,
        ),
        case(
            "chat: negative max_completion_tokens",
            chat,
            r#"{"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": -5}"#,
            400,
        ),
        case(
            "chat: unknown field",
            chat,
            r#"{"messages": [{"role": "user", "content": "x"}], "max_tokenz": 5}"#,
            400,
        ),
        case(
            "chat: tools unsupported",
            chat,
            r#"{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}"#,
            400,
        ),
        case("rollouts: empty prompts", r, r#"{"prompts": []}"#, 400),
        case(
            "rollouts: unknown param",
            r,
            r#"{"prompts": ["x"], "params": {"temp": 1}}"#,
            400,
        ),
        case(
            "rollouts: n = 0",
            r,
            r#"{"prompts": ["x"], "params": {"n": 0}}"#,
            400,
        ),
        case(
            "rollouts: bad prompt object",
            r,
            r#"{"prompts": [{"text": "a", "token_ids": [1]}]}"#,
            400,
        ),
        case(
            "rollouts: token id out of range",
            r,
            r#"{"prompts": [[70000]]}"#,
            400,
        ),
        case(
            "rollouts: max_tokens over the limit",
            r,
            r#"{"prompts": ["x"], "params": {"max_tokens": 100000}}"#,
            400,
        ),
        Case {
            key: None,
            ..case("missing API key", c, r#"{"prompt": "hi"}"#, 401)
        },
        Case {
            key: Some("wrong"),
            ..case("wrong API key", c, r#"{"prompt": "hi"}"#, 401)
        },
        Case {
            key: None,
            method: "GET",
            ..case("models without API key", "/v1/models", "", 401)
        },
        Case {
            method: "GET",
            ..case("wrong method", c, "", 405)
        },
        case("unknown route", "/v1/nope", "{}", 404),
    ]
}

#[test]
fn malformed_requests_get_json_4xx_and_the_server_keeps_serving() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model1 = tmp.path().join("m1");
    let model2 = tmp.path().join("m2");
    write_model(&model1, 1);
    write_model(&model2, 2);
    let server = Server::start(
        &model1,
        &[
            "--api-key",
            API_KEY,
            "--admin-key",
            ADMIN_KEY,
            "--max-body-mb",
            "1",
            "--max-tokens-limit",
            "64",
        ],
    );
    let c = client();
    let (ids0, lps0, v0) = probe(&c, &server);
    assert_eq!(v0, 0);

    let cases = inference_cases();
    let weights = weight_cases(&model2, tmp.path());
    let total = cases.len() + weights.len();
    assert!(total >= 30, "only {total} cases");
    for k in cases.iter().chain(&weights) {
        let resp = send(&c, &server, k);
        assert_json_error(k.name, resp, k.status);
        // Still serving, same weights, same outputs.
        let (ids, lps, v) = probe(&c, &server);
        assert_eq!(v, 0, "{}: the version moved", k.name);
        assert_eq!(ids, ids0, "{}: outputs changed", k.name);
        for (a, b) in lps.iter().zip(&lps0) {
            assert!((a - b).abs() < 1e-5, "{}: logprobs changed", k.name);
        }
    }
    assert_eq!(health_version(&c, &server), 0);

    // A good update (the other model's full weights, as a request body) bumps the version and
    // changes the outputs.
    let good = std::fs::read(model2.join("model.safetensors")).expect("weights");
    let resp = c
        .post(server.url("/v1/weights"))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/octet-stream")
        .body(good)
        .send()
        .expect("update");
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().expect("update JSON");
    assert_eq!(v["policy_version"], 1);
    assert!(v["num_tensors"].as_u64().is_some_and(|n| n > 5), "{v}");
    let (ids1, lps1, v1) = probe(&c, &server);
    assert_eq!(v1, 1);
    assert_eq!(health_version(&c, &server), 1);
    let max_diff = lps1
        .iter()
        .zip(&lps0)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(ids1 != ids0 || max_diff > 1e-3, "outputs did not change");

    // Restoring the original weights by path restores the original outputs exactly.
    let resp = c
        .post(server.url("/v1/weights"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"path": model1}))
        .send()
        .expect("update by path");
    assert_eq!(resp.status().as_u16(), 200);
    let (ids2, lps2, v2) = probe(&c, &server);
    assert_eq!(v2, 2);
    assert_eq!(ids2, ids0);
    for (a, b) in lps2.iter().zip(&lps0) {
        assert!((a - b).abs() < 1e-5);
    }

    // Metrics counted the errors by route and status.
    let text = c
        .get(server.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("metrics text");
    assert!(text.contains("oxrl_http_requests_total{route=\"/v1/completions\",status=\"400\"}"));
    assert!(text.contains("oxrl_http_requests_total{route=\"/v1/weights\",status=\"200\"} 2"));
    assert!(text.lines().any(|l| l == "oxrl_policy_version 2"), "{text}");
    let (ok, err) = server.stop(Duration::from_secs(20));
    assert!(ok, "unclean shutdown: {err}");
}

#[test]
fn weights_route_refuses_without_an_admin_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_model(tmp.path(), 3);
    let server = Server::start(tmp.path(), &[]);
    let c = client();
    let good = std::fs::read(tmp.path().join("model.safetensors")).expect("weights");
    for key in [None, Some("anything")] {
        let mut r = c.post(server.url("/v1/weights")).body(good.clone());
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let v = assert_json_error("weights without admin key", r.send().expect("send"), 403);
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("--admin-key"), "{msg}");
    }
    // Inference is open without --api-key.
    let resp = c
        .post(server.url("/v1/completions"))
        .json(&json!({"prompt": "hello", "max_tokens": 2}))
        .send()
        .expect("completion");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(health_version(&c, &server), 0);
}
