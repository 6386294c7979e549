//! The `command` and `http` plugins against real plugins: the shipped Python example, a test
//! worker that misbehaves on request (hangs, crashes, garbage, wrong counts or ids, huge lines,
//! no handshake), a worker pool, and a small HTTP server run by the test (success, 500 then 200,
//! timeouts, 4xx without retry, refused connections). Every failure must be a recorded error on
//! the affected items, and the next call must work.

use oxrl_verifiers::{
    BuildContext, Group, Registry, Score, Verifier, VerifierError, VerifyExample,
};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A worker whose behaviour each completion picks:
/// `hang`, `crash`, `garbage`, `count` (one score too few), `wrongid`, `huge` (a 1 MiB line),
/// `error` (a request-level error answer), `twice` (two answer lines), `pid` (reward = its pid),
/// `child` (reward = pid of a child process it started); any other text scores `len(text) *
/// $BEHAVE_SCALE` (default 1) plus `example.id / 100` when the id is a number. With `$BEHAVE_SLEEP`
/// each request sleeps that many seconds first. Argument `nohello` never answers the hello,
/// `banner` prints a line before it, `v2` claims protocol version 2.
const BEHAVE: &str = r#"
import json, os, subprocess, sys, time
mode = sys.argv[1] if len(sys.argv) > 1 else ""
hello = sys.stdin.readline()
if mode == "nohello":
    time.sleep(60)
if mode == "banner":
    print("Loading model weights...", flush=True)
print("behave: starting", file=sys.stderr, flush=True)
version = 2 if mode == "v2" else json.loads(hello)["version"]
print(json.dumps({"type": "hello", "protocol": "oxrl-verifier", "version": version,
                  "name": "behave"}), flush=True)
scale = float(os.environ.get("BEHAVE_SCALE", "1"))
sleep = float(os.environ.get("BEHAVE_SLEEP", "0"))
children = []
for line in sys.stdin:
    req = json.loads(line)
    if sleep:
        time.sleep(sleep)
    texts = [c for g in req["groups"] for c in g["completions"]]
    rid = req["id"]
    if "hang" in texts:
        time.sleep(3600)
    if "crash" in texts:
        print("Traceback (most recent call last):", file=sys.stderr)
        print("RuntimeError: boom", file=sys.stderr, flush=True)
        sys.exit(1)
    if "garbage" in texts:
        print("this is not json", flush=True)
        continue
    if "huge" in texts:
        sys.stdout.write("[" + "1," * (1 << 19) + "1]\n")
        sys.stdout.flush()
        continue
    if "error" in texts:
        print(json.dumps({"id": rid, "error": "database unavailable"}), flush=True)
        continue
    if "wrongid" in texts:
        rid += 1000
    scores = []
    for g in req["groups"]:
        eid = g["example"]["id"]
        base = int(eid) / 100 if eid.isdigit() else 0.0
        row = []
        for c in g["completions"]:
            if c == "pid":
                row.append({"reward": os.getpid()})
            elif c == "child":
                p = subprocess.Popen(["sleep", "3600"])
                children.append(p)
                row.append({"reward": p.pid})
            else:
                row.append({"reward": len(c) * scale + base,
                            "components": {"len": len(c)}})
        scores.append(row)
    if "count" in texts:
        scores[0] = scores[0][:-1]
    out = json.dumps({"id": rid, "scores": scores})
    print(out, flush=True)
    if "twice" in texts:
        print(out, flush=True)
"#;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn opts(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn group(id: &str, metadata: Value, completions: &[&str]) -> Group {
    Group {
        example: VerifyExample {
            id: id.into(),
            prompt: "p".into(),
            answer: None,
            metadata: opts(metadata),
        },
        completions: completions.iter().map(|s| s.to_string()).collect(),
    }
}

fn one(completions: &[&str]) -> Vec<Group> {
    vec![group("x", json!({}), completions)]
}

/// A temporary folder holding `behave.py`, and a `command` verifier options table for it.
struct Behave {
    dir: tempfile::TempDir,
}

impl Behave {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("behave.py"), BEHAVE).unwrap();
        Self { dir }
    }

    fn ctx(&self) -> BuildContext {
        BuildContext::new(self.dir.path())
    }

    fn build(&self, extra: Value) -> Result<Box<dyn Verifier>, VerifierError> {
        let mut o = opts(json!({"command": ["python3", "behave.py"], "workers": 1}));
        o.extend(opts(extra));
        Registry::builtin().build("command", &o, &self.ctx())
    }
}

fn error_of(s: &Score) -> &str {
    s.error.as_deref().unwrap_or("")
}

fn pid_alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie's state is `Z`.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn wait_dead(pid: u32) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn the_python_example_scores_known_completions() {
    let ctx = BuildContext::new(repo_root().join("examples/tasks"));
    let v = Registry::builtin()
        .build(
            "command",
            &opts(
                json!({"command": ["python3", "../plugins/python_verifier.py"],
                "options": {"keyword_weight": 0.75, "length_weight": 0.25}}),
            ),
            &ctx,
        )
        .unwrap();
    let groups = vec![
        group(
            "k01",
            json!({"keywords": ["blue", "wave"], "max_words": 8}),
            &[
                "A blue wave rolls in.",
                "The BLUE sea.",
                "Blue waves, blue sky, and one tall wave far away today.",
                "",
            ],
        ),
        group("k02", json!({}), &["anything"]),
    ];
    let s = v.score(&groups);
    assert_eq!(s.len(), 2);
    let rewards: Vec<f32> = s[0].iter().map(|x| x.reward).collect();
    assert_eq!(rewards, [1.0, 0.375 + 0.25, 0.75, 0.25]);
    assert_eq!(s[0][1].components["keywords"], 0.5);
    assert_eq!(s[0][1].components["length"], 1.0);
    assert_eq!(s[0][1].components["words"], 3.0);
    assert_eq!(s[0][2].components["length"], 0.0);
    assert!(s[0].iter().all(|x| x.error.is_none()));
    assert_eq!(s[1][0].reward, 0.0);
    assert!(
        error_of(&s[1][0]).contains("no `keywords`"),
        "{:?}",
        s[1][0]
    );

    // A worker refusing its options is a build error with its reason.
    let err = Registry::builtin()
        .build(
            "command",
            &opts(
                json!({"command": ["python3", "../plugins/python_verifier.py"],
                "options": {"keyword_weigth": 1}}),
            ),
            &ctx,
        )
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("refused to start") && err.contains("unknown options ['keyword_weigth']"),
        "{err}"
    );
}

#[test]
fn a_hanging_worker_times_out_and_the_next_call_works() {
    let b = Behave::new();
    let v = b.build(json!({"timeout_s": 0.5})).unwrap();
    let start = Instant::now();
    let s = v.score(&one(&["hang", "ok"]));
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
    for x in &s[0] {
        assert_eq!(x.reward, 0.0);
        let e = error_of(x);
        assert!(
            e.contains("plugin `behave` (worker 0)")
                && e.contains("no answer within 0.500s (timeout_s)")
                && e.contains("restarts on its next request")
                && e.contains("behave: starting"),
            "{e}"
        );
    }
    let s = v.score(&one(&["abc"]));
    assert_eq!(s[0][0].reward, 3.0);
    assert_eq!(s[0][0].components["len"], 3.0);
    assert_eq!(s[0][0].error, None);
}

#[test]
fn a_crashing_worker_is_restarted_with_its_stderr_in_the_error() {
    let b = Behave::new();
    let v = b.build(json!({})).unwrap();
    let pid0 = v.score(&one(&["pid"]))[0][0].reward as u32;
    let s = v.score(&one(&["crash"]));
    let e = error_of(&s[0][0]);
    assert!(
        e.contains("exited (exit status: 1)") && e.contains("RuntimeError: boom"),
        "{e}"
    );
    assert!(wait_dead(pid0));
    let pid1 = v.score(&one(&["pid"]))[0][0].reward as u32;
    assert_ne!(pid0, pid1);
    assert_eq!(v.score(&one(&["ab"]))[0][0].reward, 2.0);
}

#[test]
fn protocol_violations_restart_the_worker() {
    let b = Behave::new();
    let v = b.build(json!({"max_line_bytes": 65536})).unwrap();
    for (text, want) in [
        ("garbage", "answer is not JSON"),
        ("garbage", "this is not json"),
        (
            "count",
            "answer has 1 scores for group 0, which has 2 completions",
        ),
        ("wrongid", "expected"),
        ("huge", "wrote a line of more than 65536 bytes"),
    ] {
        let pid = v.score(&one(&["pid"]))[0][0].reward as u32;
        let s = v.score(&one(&[text, "abcd"]));
        for x in &s[0] {
            assert_eq!(x.reward, 0.0);
            assert!(error_of(x).contains(want), "{text}: {x:?}");
            assert!(error_of(x).contains("killed"), "{text}: {x:?}");
        }
        assert!(wait_dead(pid), "{text}: worker {pid} still alive");
        assert_eq!(v.score(&one(&["abcd"]))[0][0].reward, 4.0, "{text}");
    }
    // A second answer line is caught by the id check of the next request.
    let s = v.score(&one(&["twice"]));
    assert_eq!(s[0][0].reward, 5.0);
    let s = v.score(&one(&["abc"]));
    assert!(
        error_of(&s[0][0]).contains("answer has id"),
        "{:?}",
        s[0][0]
    );
    assert_eq!(v.score(&one(&["abc"]))[0][0].reward, 3.0);
}

#[test]
fn request_level_errors_keep_the_worker() {
    let b = Behave::new();
    let v = b.build(json!({})).unwrap();
    let pid = v.score(&one(&["pid"]))[0][0].reward;
    let s = v.score(&one(&["error", "x"]));
    for x in &s[0] {
        assert_eq!(
            error_of(x),
            "plugin `behave` (worker 0) reported an error: database unavailable"
        );
    }
    assert_eq!(v.score(&one(&["pid"]))[0][0].reward, pid);
}

#[test]
fn handshake_failures_are_build_errors() {
    let b = Behave::new();
    let t = Instant::now();
    let err = b
        .build(json!({"command": ["python3", "behave.py", "nohello"], "startup_timeout_s": 0.5}))
        .err()
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    let msg = err.to_string();
    assert!(matches!(err, VerifierError::Config { .. }), "{msg}");
    assert!(
        msg.contains("no answer within 0.500s (startup_timeout_s) during the handshake"),
        "{msg}"
    );
    let msg = b
        .build(json!({"command": ["python3", "behave.py", "banner"]}))
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("bad handshake")
            && msg.contains("Loading model weights...")
            && msg.contains("logs to stderr"),
        "{msg}"
    );
    let msg = b
        .build(json!({"command": ["python3", "behave.py", "v2"]}))
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("speaks protocol version 2"), "{msg}");
    let msg = b
        .build(json!({"command": ["python3", "-c", "import sys; sys.exit(3)"]}))
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("exited (exit status: 3)"), "{msg}");
    let err = b
        .build(json!({"command": ["oxrl-no-such-program"]}))
        .err()
        .unwrap();
    assert!(matches!(err, VerifierError::Io { .. }), "{err}");
}

#[test]
fn repeated_failures_disable_a_worker() {
    let b = Behave::new();
    let v = b.build(json!({"restart_limit": 1})).unwrap();
    let s = v.score(&one(&["crash"]));
    assert!(error_of(&s[0][0]).contains("restarts on its next request"));
    let s = v.score(&one(&["crash"]));
    assert!(
        error_of(&s[0][0]).contains("disabled after 2 failures in a row (restart_limit = 1)"),
        "{:?}",
        s[0][0]
    );
    let t = Instant::now();
    let s = v.score(&one(&["abc"]));
    assert!(t.elapsed() < Duration::from_millis(200));
    assert!(error_of(&s[0][0]).contains("disabled"), "{:?}", s[0][0]);
}

#[test]
fn a_pool_scores_in_parallel_and_in_order() {
    let b = Behave::new();
    let v = b
        .build(json!({"workers": 3, "batch_size": 2, "env": {"BEHAVE_SLEEP": "0.15", "BEHAVE_SCALE": "10"}}))
        .unwrap();
    let groups: Vec<Group> = (0..12)
        .map(|i| group(&i.to_string(), json!({}), &["a", "bb"]))
        .collect();
    let t = Instant::now();
    let s = v.score(&groups);
    let took = t.elapsed();
    // 6 requests of 0.15 s on 3 workers: ~0.3 s; one worker would need 0.9 s.
    assert!(took < Duration::from_millis(800), "{took:?}");
    assert_eq!(s.len(), 12);
    for (i, row) in s.iter().enumerate() {
        let want = [10.0 + i as f32 / 100.0, 20.0 + i as f32 / 100.0];
        assert_eq!(
            row.iter().map(|x| x.reward).collect::<Vec<_>>(),
            want,
            "{i}"
        );
    }
    // Each worker answered some requests.
    let pids: std::collections::BTreeSet<u32> = v
        .score(
            &(0..6)
                .map(|i| group(&i.to_string(), json!({}), &["pid"]))
                .collect::<Vec<_>>(),
        )
        .iter()
        .map(|r| r[0].reward as u32)
        .collect();
    assert!(pids.len() >= 2, "{pids:?}");
    assert!(v.score(&[]).is_empty());
}

#[test]
fn workers_and_their_children_die_with_the_verifier() {
    let b = Behave::new();
    // A shell wrapper: the kill must reach the grandchild through the process group.
    let v = b
        .build(json!({"command": ["sh", "-c", "exec python3 behave.py"], "timeout_s": 0.5}))
        .unwrap();
    let pid = v.score(&one(&["pid"]))[0][0].reward as u32;
    let child = v.score(&one(&["child"]))[0][0].reward as u32;
    assert!(pid_alive(pid) && pid_alive(child));
    let s = v.score(&one(&["hang"]));
    assert!(error_of(&s[0][0]).contains("timeout_s"));
    assert!(wait_dead(pid) && wait_dead(child));
    let pid = v.score(&one(&["pid"]))[0][0].reward as u32;
    assert!(pid_alive(pid));
    drop(v);
    assert!(wait_dead(pid));
}

// ---------------------------------------------------------------------------------------------
// http

/// What the test server answers: (status, body, delay before answering).
type Handler = dyn Fn(usize, &Value, &[(String, String)]) -> (u16, String, Duration) + Send + Sync;

/// A one-request-per-connection HTTP/1.1 server on a free local port.
struct Server {
    url: String,
    hits: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<Value>>>,
}

/// Request headers (lower-case names) and body.
type Request = (Vec<(String, String)>, Vec<u8>);

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut r = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((headers, body))
}

fn serve(handler: Box<Handler>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/score", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let handler: Arc<Handler> = Arc::from(handler);
    let (h, bs) = (hits.clone(), bodies.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (h, bs, handler) = (h.clone(), bs.clone(), handler.clone());
            std::thread::spawn(move || {
                let Some((headers, body)) = read_request(&mut stream) else {
                    return;
                };
                let n = h.fetch_add(1, Ordering::SeqCst);
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                bs.lock().unwrap().push(body.clone());
                let (status, text, delay) = handler(n, &body, &headers);
                std::thread::sleep(delay);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = stream.flush();
            });
        }
    });
    Server { url, hits, bodies }
}

/// The protocol answer an echoing plugin gives: reward = completion length.
fn lengths(body: &Value) -> String {
    let scores: Vec<Vec<Value>> = body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            g["completions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| json!({"reward": c.as_str().unwrap().len(), "components": {"n": 1}}))
                .collect()
        })
        .collect();
    json!({"id": body["id"], "scores": scores}).to_string()
}

fn http(server: &Server, extra: Value) -> Box<dyn Verifier> {
    let mut o = opts(json!({"url": server.url, "backoff_s": 0.05}));
    o.extend(opts(extra));
    Registry::builtin()
        .build("http", &o, &BuildContext::default())
        .unwrap()
}

#[test]
fn http_scores_with_headers_options_batches_and_order() {
    std::env::set_var("OXRL_PLUGIN_TEST_TOKEN", "tok123");
    let seen_auth = Arc::new(Mutex::new(Vec::new()));
    let sa = seen_auth.clone();
    let server = serve(Box::new(move |_, body, headers| {
        let auth = headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.clone());
        sa.lock().unwrap().push(auth);
        (200, lengths(body), Duration::ZERO)
    }));
    let v = http(
        &server,
        json!({"bearer_env": "OXRL_PLUGIN_TEST_TOKEN", "batch_size": 3, "concurrency": 2,
            "options": {"strict": true}}),
    );
    let groups: Vec<Group> = (0..10)
        .map(|i| group(&i.to_string(), json!({}), &[&"x".repeat(i), "yy"]))
        .collect();
    let s = v.score(&groups);
    assert_eq!(server.hits.load(Ordering::SeqCst), 4);
    for (i, row) in s.iter().enumerate() {
        assert_eq!(row[0].reward, i as f32);
        assert_eq!(row[1].reward, 2.0);
        assert_eq!(row[0].components["n"], 1.0);
        assert_eq!(row[0].error, None);
    }
    assert!(seen_auth
        .lock()
        .unwrap()
        .iter()
        .all(|a| a.as_deref() == Some("Bearer tok123")));
    let bodies = server.bodies.lock().unwrap();
    assert!(bodies.iter().all(|b| b["type"] == "score"
        && b["options"] == json!({"strict": true})
        && b["groups"]
            .as_array()
            .is_some_and(|g| (1..=3).contains(&g.len()))));
}

#[test]
fn http_retries_a_500_then_succeeds() {
    let server = serve(Box::new(|n, body, _| {
        if n == 0 {
            (500, "{\"error\":\"warming up\"}".into(), Duration::ZERO)
        } else {
            (200, lengths(body), Duration::ZERO)
        }
    }));
    let v = http(&server, json!({"retries": 2}));
    let s = v.score(&one(&["abc", ""]));
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    assert_eq!(s[0][0].reward, 3.0);
    assert_eq!(s[0][1].reward, 0.0);
    assert!(s[0].iter().all(|x| x.error.is_none()));
    // Both attempts carried the same request.
    let bodies = server.bodies.lock().unwrap();
    assert_eq!(bodies[0], bodies[1]);
}

#[test]
fn http_gives_up_after_retries_on_5xx() {
    let server = serve(Box::new(|_, _, _| {
        (503, "overloaded".into(), Duration::ZERO)
    }));
    let v = http(&server, json!({"retries": 2}));
    let s = v.score(&one(&["a"]));
    assert_eq!(server.hits.load(Ordering::SeqCst), 3);
    let e = error_of(&s[0][0]);
    assert!(
        e.contains("HTTP 503: overloaded after 3 attempts") && e.contains(&server.url),
        "{e}"
    );
}

#[test]
fn http_times_out_and_retries() {
    let server = serve(Box::new(|_, body, _| {
        (200, lengths(body), Duration::from_secs(3))
    }));
    let v = http(&server, json!({"timeout_s": 0.3, "retries": 1}));
    let t = Instant::now();
    let s = v.score(&one(&["a"]));
    let took = t.elapsed();
    assert!(took < Duration::from_millis(2000), "{took:?}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    let e = error_of(&s[0][0]);
    assert!(
        e.contains("timed out after 0.300s") && e.contains("2 attempts"),
        "{e}"
    );
    assert_eq!(s[0][0].reward, 0.0);
}

#[test]
fn http_does_not_retry_4xx_or_bad_answers() {
    let server = serve(Box::new(|_, _, _| {
        (
            400,
            "{\"error\":\"missing field groups\"}".into(),
            Duration::ZERO,
        )
    }));
    let v = http(&server, json!({"retries": 3}));
    let s = v.score(&one(&["a", "b"]));
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    for x in &s[0] {
        let e = error_of(x);
        assert!(
            e.contains(
                "HTTP 400: {\"error\":\"missing field groups\"} after 1 attempt (not retried)"
            ),
            "{e}"
        );
    }
    // A 200 whose body breaks the protocol is not retried either.
    let server = serve(Box::new(|_, body, _| {
        (
            200,
            json!({"id": body["id"], "scores": [[1.0]]}).to_string(),
            Duration::ZERO,
        )
    }));
    let v = http(&server, json!({"retries": 3}));
    let s = v.score(&one(&["a", "b"]));
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    assert!(
        error_of(&s[0][0]).contains("answer has 1 scores for group 0, which has 2 completions"),
        "{:?}",
        s[0][0]
    );
    // A request-level error answer.
    let server = serve(Box::new(|_, body, _| {
        (
            200,
            json!({"id": body["id"], "error": "quota exceeded"}).to_string(),
            Duration::ZERO,
        )
    }));
    let s = http(&server, json!({})).score(&one(&["a"]));
    assert!(error_of(&s[0][0]).ends_with("reported an error: quota exceeded"));
}

#[test]
fn http_reports_refused_connections_after_retries() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = opts(
        json!({"url": format!("http://127.0.0.1:{port}/score"), "retries": 1,
        "backoff_s": 0.01}),
    );
    let v = Registry::builtin()
        .build("http", &o, &BuildContext::default())
        .unwrap();
    let s = v.score(&one(&["a"]));
    let e = error_of(&s[0][0]);
    assert!(e.contains("after 2 attempts"), "{e}");
    assert_eq!(s[0][0].reward, 0.0);
}

#[test]
fn http_verifier_is_shared_by_concurrent_callers() {
    // Many callers at once share one verifier (it is Sync).
    let server = serve(Box::new(|_, body, _| (200, lengths(body), Duration::ZERO)));
    let v: Arc<dyn Verifier> = Arc::from(http(&server, json!({})));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let v = v.clone();
            std::thread::spawn(move || v.score(&one(&[&"z".repeat(i + 1)]))[0][0].reward)
        })
        .collect();
    let got: Vec<f32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(got, [1.0, 2.0, 3.0, 4.0]);
}
