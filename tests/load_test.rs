//! Bounded load test of `oxrl serve` (ignored by default; about 35 s):
//! `cargo test --test load_test -- --ignored load_test --nocapture`.
//!
//! 100 concurrent streaming clients (`OXRL_LOAD_CLIENTS`) hammer `/v1/completions` and
//! `/v1/chat/completions` with `stream: true` on loopback for 30 s (`OXRL_LOAD_SECS`) against the
//! tiny test model (or `OXRL_LOAD_MODEL`). It reports requests done, tokens streamed, 429s
//! (documented back-pressure: the client retries) and any other error (must be 0: non-2xx other
//! than 429, transport errors, error frames, streams without `[DONE]`), and the server's RSS
//! after warm-up, at its peak and at the end (must stay bounded). `OXRL_LOAD_MAX_QUEUE` sets
//! `--max-queue` (small values exercise the 429 path).

mod http_support;

use http_support::{write_model, Server};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

#[derive(Default)]
struct Counters {
    done: AtomicU64,
    chunks: AtomicU64,
    rejected_429: AtomicU64,
    errors: AtomicU64,
}

async fn one_request(c: &reqwest::Client, base: &str, i: u64, k: &Counters) {
    let (path, body) = if i.is_multiple_of(2) {
        (
            "/v1/completions",
            json!({"prompt": format!("request {i}: the quick brown fox"), "max_tokens": 24,
                "temperature": 0.8, "stream": true, "ignore_eos": true}),
        )
    } else {
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": format!("hello {i}")}],
                "max_tokens": 24, "temperature": 0.8, "stream": true, "ignore_eos": true}),
        )
    };
    let resp = match c.post(format!("{base}{path}")).json(&body).send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("transport error: {e}");
            k.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let status = resp.status().as_u16();
    if status == 429 {
        k.rejected_429.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
        return;
    }
    if status != 200 {
        eprintln!("status {status}: {}", resp.text().await.unwrap_or_default());
        k.errors.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut resp = resp;
    let mut buf = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(b)) => buf.extend_from_slice(&b),
            Ok(None) => break,
            Err(e) => {
                eprintln!("stream error: {e}");
                k.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let frames: Vec<&str> = text.split("\n\n").filter(|f| !f.is_empty()).collect();
    let ok = frames.last() == Some(&"data: [DONE]")
        && frames.iter().all(|f| f.starts_with("data: "))
        && !frames.iter().any(|f| f.starts_with("data: {\"error\""));
    if ok {
        k.done.fetch_add(1, Ordering::Relaxed);
        k.chunks.fetch_add(frames.len() as u64, Ordering::Relaxed);
    } else {
        eprintln!("bad stream: {}", &text[..text.len().min(400)]);
        k.errors.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
#[ignore = "30-second load test; run with --ignored load_test"]
fn load_test() {
    let clients: u64 = env_or("OXRL_LOAD_CLIENTS", 100);
    let secs: f64 = env_or("OXRL_LOAD_SECS", 30.0);
    let max_queue: usize = env_or("OXRL_LOAD_MAX_QUEUE", 1024);
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = match std::env::var("OXRL_LOAD_MODEL") {
        Ok(m) => std::path::PathBuf::from(m),
        Err(_) => {
            write_model(tmp.path(), 5);
            tmp.path().to_path_buf()
        }
    };
    let server = Server::start(&model, &["--max-queue", &max_queue.to_string()]);
    let base = server.base.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let k = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(clients as usize)
        .build()
        .expect("client");
    let warm = Duration::from_secs_f64((secs * 0.1).min(5.0));
    let (rss_warm, rss_peak, elapsed) = rt.block_on(async {
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..clients {
            let (c, base, k, stop) = (http.clone(), base.clone(), k.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    one_request(&c, &base, i, &k).await;
                    i += clients;
                }
            }));
        }
        tokio::time::sleep(warm).await;
        let rss_warm = server.rss_kib();
        let mut peak = rss_warm;
        while t0.elapsed().as_secs_f64() < secs {
            tokio::time::sleep(Duration::from_millis(500)).await;
            peak = peak.max(server.rss_kib());
        }
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        (rss_warm, peak, t0.elapsed().as_secs_f64())
    });
    let rss_end = server.rss_kib();
    let metrics = reqwest::blocking::get(server.url("/metrics"))
        .and_then(|r| r.text())
        .unwrap_or_default();
    let gen_tokens = metrics
        .lines()
        .find_map(|l| l.strip_prefix("oxrl_generated_tokens_total "))
        .unwrap_or("?")
        .to_string();
    let done = k.done.load(Ordering::Relaxed);
    let errors = k.errors.load(Ordering::Relaxed);
    let r429 = k.rejected_429.load(Ordering::Relaxed);
    println!(
        "load test: {clients} streaming clients for {elapsed:.1} s (max queue {max_queue}): \
         {done} requests done ({:.1}/s), {} SSE frames, {gen_tokens} tokens generated, \
         {r429} x 429, {errors} other errors; server RSS {:.1} MiB after warm-up, \
         {:.1} MiB peak, {:.1} MiB at the end",
        done as f64 / elapsed,
        k.chunks.load(Ordering::Relaxed),
        rss_warm as f64 / 1024.0,
        rss_peak as f64 / 1024.0,
        rss_end as f64 / 1024.0
    );
    assert_eq!(errors, 0, "errors beyond documented 429s");
    assert!(done > clients, "too few requests completed: {done}");
    if rss_warm > 0 {
        assert!(
            rss_peak < rss_warm * 2 + 256 * 1024,
            "server memory grew without bound: {rss_warm} KiB -> {rss_peak} KiB"
        );
    }
    let (ok, err) = server.stop(Duration::from_secs(30));
    assert!(ok, "unclean shutdown after load: {err}");
}
