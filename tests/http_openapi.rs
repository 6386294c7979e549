//! `GET /openapi.json` against a live `oxrl serve`: every documented operation is answered (not
//! 404/405) with one of its documented statuses, its documented example request succeeds where
//! it can, and the JSON it answers has the documented top-level properties. The document itself
//! is built from the table the router is built from (`oxrl_rollout::http::ROUTES`); the unit tests
//! in `rollout-server/src/http/openapi.rs` check that it lists every route in that table.

mod http_support;

use http_support::{write_model, Server};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

fn schema<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        None => v,
    }
}

/// Checks the top-level keys of `body` against the object schema `s`.
fn check_keys(doc: &Value, s: &Value, body: &Value, what: &str) {
    let s = schema(doc, s);
    let props: BTreeSet<&str> = s["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: no properties in {s}"))
        .keys()
        .map(String::as_str)
        .collect();
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert!(
        keys.is_subset(&props),
        "{what}: undocumented keys {:?}",
        keys.difference(&props)
    );
    for r in s["required"].as_array().into_iter().flatten() {
        let r = r.as_str().unwrap();
        assert!(keys.contains(r), "{what}: required `{r}` missing in {body}");
    }
}

#[test]
fn openapi_document_matches_the_live_routes() {
    let tmp = tempfile::tempdir().unwrap();
    write_model(tmp.path(), 5);
    let server = Server::start(tmp.path(), &["--admin-key", "adm"]);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let resp = http.get(server.url("/openapi.json")).send().unwrap();
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    // Every route of the server's table is in the live document.
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_ascii_uppercase(), p.clone()))
        })
        .collect();
    let table: BTreeSet<(String, String)> = oxrl_rollout::http::ROUTES
        .iter()
        .map(|r| (r.method.as_str().to_string(), r.path.to_string()))
        .collect();
    assert_eq!(documented, table);
    for path in [
        "/v1/completions",
        "/v1/chat/completions",
        "/v1/models",
        "/v1/rollouts",
        "/v1/weights",
        "/health",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }

    let mut checked = 0;
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let what = format!("{} {path}", method.to_ascii_uppercase());
            let mut req = match method.as_str() {
                "get" => http.get(server.url(path)),
                "post" => http.post(server.url(path)),
                other => panic!("{what}: unexpected method {other}"),
            };
            if op["security"].to_string().contains("adminKey") {
                req = req.bearer_auth("adm");
            }
            let json_req = &op["requestBody"]["content"]["application/json"];
            if let Some(example) = json_req.get("example") {
                req = req.json(example);
            }
            let resp = req.send().unwrap();
            let status = resp.status().as_u16();
            let ctype = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let text = resp.text().unwrap();
            assert!(
                status != 404 || !text.contains("unknown_route"),
                "{what}: the router does not answer a documented route: {text}"
            );
            assert_ne!(status, 405, "{what}: {text}");
            let documented = op["responses"][status.to_string()].clone();
            assert!(
                documented.is_object(),
                "{what}: undocumented status {status}: {text}"
            );
            if ctype.starts_with("application/json") {
                let body: Value = serde_json::from_str(&text).unwrap();
                let s = &documented["content"]["application/json"]["schema"];
                if s.get("$ref").is_some() {
                    check_keys(&doc, s, &body, &what);
                }
            }
            if path != "/v1/weights" {
                assert_eq!(status, 200, "{what}: the documented example failed: {text}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, table.len());

    // The weights example names a path this machine lacks (a documented 404); a real one works.
    let resp = http
        .post(server.url("/v1/weights"))
        .bearer_auth("adm")
        .json(&json!({"path": tmp.path()}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().unwrap();
    let s =
        &paths["/v1/weights"]["post"]["responses"]["200"]["content"]["application/json"]["schema"];
    check_keys(&doc, s, &body, "POST /v1/weights");
    // Streaming chat answers SSE as documented.
    let resp = http
        .post(server.url("/v1/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": true}))
        .send()
        .unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    // What is not documented is not answered.
    let resp = http.get(server.url("/v1/embeddings")).send().unwrap();
    assert_eq!(resp.status(), 404);
    let resp = http.get(server.url("/v1/completions")).send().unwrap();
    assert_eq!(resp.status(), 405);
    let (ok, err) = server.stop(Duration::from_secs(20));
    assert!(ok, "{err}");
}
