//! One worker process of the pool: start and handshake, one request with its deadline, kill
//! (with its process group) and shutdown.

use super::pipe::{read_stderr, read_stdout, write_stdin, Event, StderrTail};
use super::CommandConfig;
use crate::plugin::protocol::{self, Hello};
use serde_json::Map;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a closing worker may take to exit after its stdin is closed.
pub(super) const EXIT_GRACE: Duration = Duration::from_millis(1500);

/// One running worker process and its three pipe threads.
pub(super) struct Worker {
    child: Child,
    exited: Option<std::process::ExitStatus>,
    killed: bool,
    stdin: Option<Sender<Vec<u8>>>,
    lines: Receiver<Event>,
    stderr: Arc<StderrTail>,
    stderr_done: Receiver<()>,
    max_line_bytes: usize,
}

/// Why a worker could not be started.
pub(super) enum StartError {
    Spawn(std::io::Error),
    Handshake(String),
}

impl Worker {
    /// Starts the program and completes the handshake.
    pub(super) fn start(
        cfg: &CommandConfig,
        label: &str,
    ) -> Result<(Worker, protocol::HelloReply), StartError> {
        let mut cmd = Command::new(&cfg.argv[0]);
        cmd.args(&cfg.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Python buffers piped stdout; plugins should flush anyway.
            .env("PYTHONUNBUFFERED", "1")
            .envs(&cfg.env);
        if let Some(d) = &cfg.cwd {
            cmd.current_dir(d);
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            // Its own process group, so that a kill reaches the children of a shell wrapper.
            cmd.process_group(0);
        }
        let mut child = cmd.spawn().map_err(StartError::Spawn)?;
        let (stdin, stdout, stderr) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => (i, o, e),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(StartError::Handshake(
                        "its pipes could not be opened".into(),
                    ));
                }
            };
        let (line_tx, lines) = mpsc::channel();
        let (stdin_tx, stdin_rx) = mpsc::channel::<Vec<u8>>();
        let (done_tx, stderr_done) = mpsc::channel::<()>();
        let tail = Arc::new(StderrTail::default());
        let max = cfg.max_line_bytes;
        let spawned = (|| -> std::io::Result<()> {
            std::thread::Builder::new()
                .name("oxrl-plugin-out".into())
                .spawn(move || read_stdout(stdout, max, line_tx))?;
            std::thread::Builder::new()
                .name("oxrl-plugin-in".into())
                .spawn(move || write_stdin(stdin, stdin_rx))?;
            let (t, l) = (tail.clone(), label.to_string());
            std::thread::Builder::new()
                .name("oxrl-plugin-err".into())
                .spawn(move || {
                    read_stderr(stderr, t, l);
                    drop(done_tx);
                })?;
            Ok(())
        })();
        let mut w = Worker {
            child,
            exited: None,
            killed: false,
            stdin: Some(stdin_tx),
            lines,
            stderr: tail,
            stderr_done,
            max_line_bytes: max,
        };
        if let Err(e) = spawned {
            w.kill();
            return Err(StartError::Spawn(e));
        }
        let empty = Map::new();
        let hello = Hello::new(if cfg.options.is_empty() {
            &empty
        } else {
            &cfg.options
        });
        let mut line = serde_json::to_vec(&hello).unwrap_or_default();
        line.push(b'\n');
        let reply = match w.request(line, cfg.startup_timeout, "startup_timeout_s") {
            Ok(r) => r,
            Err(what) => {
                let tail = w.fail();
                return Err(StartError::Handshake(format!(
                    "{what} during the handshake; {tail}"
                )));
            }
        };
        match protocol::parse_hello_reply(&reply) {
            Ok(Ok(h)) => Ok((w, h)),
            Ok(Err(refusal)) => {
                let tail = w.fail();
                Err(StartError::Handshake(format!(
                    "refused to start: {refusal}; {tail}"
                )))
            }
            Err(e) => {
                let tail = w.fail();
                Err(StartError::Handshake(format!(
                    "bad handshake ({e}); a plugin must first answer oxrl's hello line with \
                     {{\"type\":\"hello\",\"protocol\":\"{}\",\"version\":{}}} and write \
                     logs to stderr; {tail}",
                    protocol::PROTOCOL,
                    protocol::VERSION
                )))
            }
        }
    }

    /// Writes `line` and waits up to `timeout` for one line back. The error says what
    /// happened (the worker is then unusable: call [`Worker::fail`]).
    pub(super) fn request(
        &mut self,
        line: Vec<u8>,
        timeout: Duration,
        knob: &str,
    ) -> Result<Vec<u8>, String> {
        if let Some(tx) = &self.stdin {
            // A send error means the writer thread is gone (broken pipe): the reader will
            // report the exit.
            let _ = tx.send(line);
        }
        match self.lines.recv_timeout(timeout) {
            Ok(Event::Line(l)) => Ok(l),
            Ok(Event::TooLong(n)) => Err(format!(
                "wrote a line of more than {} bytes (at least {n}; max_line_bytes)",
                self.max_line_bytes
            )),
            Ok(Event::ReadError(e)) => Err(format!("reading its stdout failed: {e}")),
            Ok(Event::Eof) | Err(RecvTimeoutError::Disconnected) => {
                Err(match self.wait_exit(Duration::from_millis(500)) {
                    Some(status) => format!("exited ({status})"),
                    None => "closed its stdout".to_string(),
                })
            }
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "no answer within {:.3}s ({knob})",
                timeout.as_secs_f64()
            )),
        }
    }

    /// The exit status, waiting up to `grace` for it.
    pub(super) fn wait_exit(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + grace;
        loop {
            if self.exited.is_some() {
                return self.exited;
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                self.exited = Some(s);
                return self.exited;
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the worker (and its process group) and reaps it.
    pub(super) fn kill(&mut self) {
        self.stdin = None;
        if std::mem::replace(&mut self.killed, true) {
            return;
        }
        // The worker's own process group (created at spawn) outlives the leader while members
        // remain: killing the group takes its children too.
        #[cfg(unix)]
        if let Some(pid) = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// Kills the worker and returns `stderr: <its last lines>` for an error message.
    pub(super) fn fail(&mut self) -> String {
        self.kill();
        // The pipe closes with the process: wait briefly for the last stderr lines.
        let _ = self.stderr_done.recv_timeout(Duration::from_millis(500));
        let tail = self.stderr.render();
        if tail.is_empty() {
            "stderr: (empty)".to_string()
        } else {
            format!("stderr: {tail}")
        }
    }

    /// Closes stdin: the protocol's shutdown signal.
    pub(super) fn close(&mut self) {
        self.stdin = None;
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.close();
        self.wait_exit(EXIT_GRACE);
        self.kill();
    }
}
