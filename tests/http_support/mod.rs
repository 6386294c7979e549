//! Shared helpers of the HTTP end-to-end tests: a tiny random model written through the real
//! HF-layout path, and an `oxrl serve` child process on a free loopback port.

#![allow(dead_code)]

use oxrl_models::init::{write_random_model, InitSpec};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Context length of the test model.
pub const CONTEXT: usize = 256;

/// Writes a tiny random Llama with the tiny tokenizer into `dir`.
pub fn write_model(dir: &Path, seed: u64) {
    let spec = InitSpec {
        vocab_size: 512,
        hidden_size: 64,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        intermediate_size: 128,
        max_position_embeddings: CONTEXT,
        // Larger weights than HF's 0.02 so that greedy outputs depend visibly on them.
        init_std: 0.2,
        seed,
        ..InitSpec::default()
    };
    write_random_model(dir, &spec).expect("writing the test model");
}

/// A running `oxrl serve`, killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The model directory.
    pub model_dir: PathBuf,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Server {
    /// Starts `oxrl serve --model DIR --port 0 ARGS...` and waits for its address line.
    pub fn start(model_dir: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_oxrl"))
            .arg("serve")
            .arg("--model")
            .arg(model_dir)
            .args(["--port", "0", "--served-model-name", "tiny"])
            .args(args)
            .env_remove("OXRL_API_KEY")
            .env_remove("OXRL_ADMIN_KEY")
            .env("RAYON_NUM_THREADS", "2")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning oxrl serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let err = stderr.join().unwrap_or_default();
                panic!("oxrl serve printed no address; stderr:\n{err}");
            }
        };
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Server {
            child,
            base,
            model_dir: model_dir.to_path_buf(),
            stderr: Some(stderr),
        }
    }

    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends SIGTERM (or kills) and waits up to `timeout` for the exit; returns whether it
    /// exited successfully, and its stderr.
    pub fn stop(mut self, timeout: Duration) -> (bool, String) {
        #[cfg(unix)]
        {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
        #[cfg(not(unix))]
        let _ = self.child.kill();
        let t0 = Instant::now();
        let ok = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s.success(),
                Ok(None) if t0.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = self.child.kill();
                    break false;
                }
            }
        };
        let err = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        (ok, err)
    }

    /// Resident set size of the server process in KiB (Linux; 0 elsewhere).
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
