//! The `command` verifier: a pool of long-lived worker processes, in any language, that speak
//! the JSON-lines protocol of [`super::protocol`] on stdin/stdout.
//!
//! Life of a worker: every worker of the pool is started when the verifier is built (so a
//! missing interpreter or a failed handshake is a build error, reported before any rollout);
//! each gets the hello line and must answer it within `startup_timeout_s`. A call to
//! [`Verifier::score`] splits the groups into requests of `batch_size` groups and hands them to
//! the workers in parallel (one thread per busy worker); answers are put back in input order.
//! Every request has a deadline (`timeout_s`), kept by a reader thread per worker that feeds a
//! channel; writes go through a writer thread, so a worker that stops reading cannot block oxrl.
//!
//! When a worker times out, exits, closes stdout, writes a line that is not a valid answer
//! (not JSON, wrong id, wrong counts, wrong types) or a line over `max_line_bytes`, it is killed
//! (with its process group) and the items of that request get `Score::failed` with the plugin's
//! name, what happened and the tail of its stderr; it is restarted on its next request. After
//! more than `restart_limit` failures in a row (a success resets the count) the worker is
//! disabled and its requests fail at once. Worker stderr is kept (last lines) for those
//! messages and forwarded to `tracing` at debug level. Dropping the verifier closes every
//! worker's stdin (the protocol's shutdown), waits briefly, then kills what is left.

use super::protocol::{self, excerpt, Answer, Hello, ScoreRequest};
use super::{config_error, fail_all, parse_options, seconds};
use crate::{BuildContext, Group, Score, Verifier, VerifierError};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const KIND: &str = "command";

/// Lines of stderr kept per worker for error messages.
const STDERR_LINES: usize = 12;
/// Characters kept of one stderr line.
const STDERR_LINE_CHARS: usize = 400;
/// How long a closing worker may take to exit after its stdin is closed.
const EXIT_GRACE: Duration = Duration::from_millis(1500);

/// Settings of a [`CommandVerifier`], as read from the task's verifier table.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandConfig {
    /// Program and arguments (`argv[0]` is looked up on `PATH` unless it contains a `/`).
    pub argv: Vec<String>,
    /// Working folder of the workers (default: the task file's folder).
    pub cwd: Option<PathBuf>,
    /// Worker processes in the pool.
    pub workers: usize,
    /// Deadline of one request (one line out, one line back).
    pub timeout: Duration,
    /// Deadline of the handshake after a worker starts.
    pub startup_timeout: Duration,
    /// Groups per request.
    pub batch_size: usize,
    /// Extra environment variables of the workers (on top of oxrl's own).
    pub env: BTreeMap<String, String>,
    /// Failures in a row after which a worker is not restarted any more.
    pub restart_limit: u32,
    /// Passed to the plugin untouched, in the hello.
    pub options: Map<String, Value>,
    /// Longest answer line accepted, in bytes.
    pub max_line_bytes: usize,
}

impl CommandConfig {
    /// Defaults around a program and its arguments.
    pub fn new(argv: Vec<String>) -> Self {
        Self {
            argv,
            cwd: None,
            workers: default_workers(),
            timeout: Duration::from_secs(30),
            startup_timeout: Duration::from_secs(30),
            batch_size: 16,
            env: BTreeMap::new(),
            restart_limit: 5,
            options: Map::new(),
            max_line_bytes: 16 << 20,
        }
    }

    /// Reads the options of a `command` verifier table (see `VERIFIERS.md` for the keys).
    /// `argv[0]` containing a `/` and later arguments naming an existing file are resolved
    /// against the task's folder; `cwd` defaults to that folder.
    pub fn from_options(
        options: &Map<String, Value>,
        ctx: &BuildContext,
    ) -> Result<Self, VerifierError> {
        let raw: RawOptions = parse_options(KIND, options)?;
        let argv: Vec<String> = match raw.command {
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(config_error(
                        KIND,
                        format!("`command` entries must be strings, got {other}"),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
            other => {
                return Err(config_error(
                    KIND,
                    format!("`command` must be a list of strings (program, args..), got {other}"),
                ))
            }
        };
        if argv.first().is_none_or(|p| p.is_empty()) {
            return Err(config_error(KIND, "`command` is empty"));
        }
        let argv = resolve_argv(argv, ctx);
        let mut c = Self::new(argv);
        c.cwd = match raw.cwd {
            Some(d) => Some(ctx.resolve(&d)),
            None if ctx.base_dir.as_os_str().is_empty() => None,
            None => Some(ctx.base_dir.clone()),
        };
        if let Some(w) = raw.workers {
            if w == 0 || w > 256 {
                return Err(config_error(
                    KIND,
                    format!("`workers` must be in 1..=256, got {w}"),
                ));
            }
            c.workers = w;
        }
        c.timeout = seconds(KIND, "timeout_s", raw.timeout_s, c.timeout)?;
        c.startup_timeout = seconds(
            KIND,
            "startup_timeout_s",
            raw.startup_timeout_s,
            c.startup_timeout,
        )?;
        if let Some(b) = raw.batch_size {
            if b == 0 {
                return Err(config_error(KIND, "`batch_size` must be at least 1"));
            }
            c.batch_size = b;
        }
        c.env = raw.env;
        if let Some(r) = raw.restart_limit {
            c.restart_limit = r;
        }
        c.options = raw.options;
        if let Some(m) = raw.max_line_bytes {
            if m < 1024 {
                return Err(config_error(
                    KIND,
                    format!("`max_line_bytes` must be at least 1024, got {m}"),
                ));
            }
            c.max_line_bytes = m;
        }
        Ok(c)
    }
}

/// One worker per core, at most two (a plugin is usually light, and the trainer needs the rest).
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

/// `argv[0]` with a path separator, and later arguments that name an existing file relative to
/// the task folder, become paths under that folder; everything else is kept.
fn resolve_argv(argv: Vec<String>, ctx: &BuildContext) -> Vec<String> {
    argv.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let is_path = if i == 0 {
                a.contains('/') || a.contains(std::path::MAIN_SEPARATOR)
            } else {
                !a.starts_with('-') && ctx.resolve(&a).is_file()
            };
            if is_path && !ctx.base_dir.as_os_str().is_empty() {
                ctx.resolve(&a).to_string_lossy().into_owned()
            } else {
                a
            }
        })
        .collect()
}

/// The table as written in the task file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptions {
    command: Value,
    cwd: Option<String>,
    workers: Option<usize>,
    timeout_s: Option<f64>,
    startup_timeout_s: Option<f64>,
    batch_size: Option<usize>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    restart_limit: Option<u32>,
    #[serde(default)]
    options: Map<String, Value>,
    max_line_bytes: Option<usize>,
}

/// What the reader thread saw on a worker's stdout.
enum Event {
    Line(Vec<u8>),
    TooLong(usize),
    Eof,
    ReadError(String),
}

/// The last lines a worker wrote to stderr.
#[derive(Default)]
struct StderrTail {
    lines: Mutex<VecDeque<String>>,
}

impl StderrTail {
    fn push(&self, line: String) {
        let mut l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if l.len() == STDERR_LINES {
            l.pop_front();
        }
        l.push_back(line);
    }

    fn render(&self) -> String {
        let l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        l.iter().cloned().collect::<Vec<_>>().join(" | ")
    }
}

/// Reads one `\n`-terminated line of at most `max` bytes (without the terminator and a `\r`
/// before it). `Ok(None)` at end of file; a last line without a terminator still counts.
fn read_line_bounded(r: &mut impl BufRead, max: usize) -> Result<Option<Vec<u8>>, Event> {
    let mut line = Vec::new();
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Event::ReadError(e.to_string())),
        };
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some(line));
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(p) => (p, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max {
            return Err(Event::TooLong(line.len() + take));
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(take + usize::from(done));
        if done {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(line));
        }
    }
}

/// Feeds the stdout reader's events into `tx` until end of file, an error or a line too long.
fn read_stdout(stdout: impl Read, max: usize, tx: Sender<Event>) {
    let mut r = BufReader::with_capacity(1 << 16, stdout);
    loop {
        match read_line_bounded(&mut r, max) {
            Ok(Some(line)) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if tx.send(Event::Line(line)).is_err() {
                    return;
                }
            }
            Ok(None) => {
                let _ = tx.send(Event::Eof);
                return;
            }
            Err(e) => {
                let _ = tx.send(e);
                return;
            }
        }
    }
}

/// Keeps the tail of a worker's stderr and forwards every line to `tracing`. `\r` counts as a
/// line break (progress bars); long lines are cut.
fn read_stderr(stderr: impl Read, tail: Arc<StderrTail>, label: String) {
    let mut r = BufReader::new(stderr);
    let mut line: Vec<u8> = Vec::new();
    let flush = |line: &mut Vec<u8>| {
        if !line.iter().all(u8::is_ascii_whitespace) {
            let text = excerpt(&String::from_utf8_lossy(line), STDERR_LINE_CHARS);
            tracing::debug!(target: "oxrl_verifiers::plugin", "{label}: {text}");
            tail.push(text);
        }
        line.clear();
    };
    loop {
        let buf = match r.fill_buf() {
            Ok([]) | Err(_) => break,
            Ok(b) => b,
        };
        let n = buf.len();
        for &b in buf {
            if b == b'\n' || b == b'\r' {
                flush(&mut line);
            } else if line.len() < STDERR_LINE_CHARS * 4 {
                line.push(b);
            }
        }
        r.consume(n);
    }
    flush(&mut line);
}

/// One running worker process and its three pipe threads.
struct Worker {
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
enum StartError {
    Spawn(std::io::Error),
    Handshake(String),
}

impl Worker {
    /// Starts the program and completes the handshake.
    fn start(
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
    fn request(&mut self, line: Vec<u8>, timeout: Duration, knob: &str) -> Result<Vec<u8>, String> {
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
    fn wait_exit(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
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
    fn kill(&mut self) {
        self.stdin = None;
        if std::mem::replace(&mut self.killed, true) {
            return;
        }
        #[cfg(unix)]
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) has no memory effects; a negative pid names the worker's own
            // process group (created at spawn), which outlives the leader while members remain.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// Kills the worker and returns `stderr: <its last lines>` for an error message.
    fn fail(&mut self) -> String {
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
    fn close(&mut self) {
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

/// Writes request lines to a worker until the channel closes (then stdin is closed) or a write
/// fails.
fn write_stdin(mut stdin: ChildStdin, rx: Receiver<Vec<u8>>) {
    for line in rx {
        if stdin.write_all(&line).and_then(|()| stdin.flush()).is_err() {
            return;
        }
    }
}

/// One place in the pool: a worker (absent after a failure, until its next request) and its
/// failure count.
struct Slot {
    index: usize,
    worker: Option<Worker>,
    failures: u32,
    disabled_because: Option<String>,
}

/// A slot and a lock-free copy of whether it is disabled.
struct PoolSlot {
    state: Mutex<Slot>,
    disabled: AtomicBool,
}

/// The `command` verifier: see the module documentation.
pub struct CommandVerifier {
    config: CommandConfig,
    name: String,
    slots: Vec<PoolSlot>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for CommandVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandVerifier")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish()
    }
}

fn lock(m: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CommandVerifier {
    /// Builds the verifier from a task's verifier table.
    pub fn from_options(
        options: &Map<String, Value>,
        ctx: &BuildContext,
    ) -> Result<Self, VerifierError> {
        Self::new(CommandConfig::from_options(options, ctx)?)
    }

    /// Starts every worker of the pool and completes their handshakes (in parallel).
    pub fn new(config: CommandConfig) -> Result<Self, VerifierError> {
        if config.argv.is_empty() || config.workers == 0 || config.batch_size == 0 {
            return Err(config_error(
                KIND,
                "needs a program, at least one worker and a batch size of at least 1",
            ));
        }
        let program = config.argv.join(" ");
        let started: Vec<Result<(Worker, protocol::HelloReply), StartError>> =
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..config.workers)
                    .map(|i| {
                        let (cfg, label) = (&config, format!("`{program}` worker {i}"));
                        s.spawn(move || Worker::start(cfg, &label))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(StartError::Handshake("the start thread panicked".into()))
                        })
                    })
                    .collect()
            });
        let mut workers = Vec::with_capacity(started.len());
        let mut name = None;
        for r in started {
            match r {
                Ok((w, hello)) => {
                    name = name.or(hello.name);
                    workers.push(w);
                }
                // The workers already started are dropped (closed and killed) here.
                Err(StartError::Spawn(source)) => {
                    return Err(VerifierError::Io {
                        verifier: format!("command (starting {program})"),
                        source,
                    })
                }
                Err(StartError::Handshake(message)) => {
                    return Err(config_error(
                        KIND,
                        format!("plugin `{program}` did not start: {message}"),
                    ))
                }
            }
        }
        let slots = workers
            .into_iter()
            .enumerate()
            .map(|(index, w)| PoolSlot {
                state: Mutex::new(Slot {
                    index,
                    worker: Some(w),
                    failures: 0,
                    disabled_because: None,
                }),
                disabled: AtomicBool::new(false),
            })
            .collect();
        Ok(Self {
            name: name.unwrap_or(program),
            config,
            slots,
            next_id: AtomicU64::new(1),
        })
    }

    /// The plugin's name: the one it gave in its handshake, else its command line.
    pub fn plugin_name(&self) -> &str {
        &self.name
    }

    /// The settings the pool runs with.
    pub fn config(&self) -> &CommandConfig {
        &self.config
    }

    /// Scores one request on one slot; never fails: problems become failed scores.
    fn run_request(&self, slot: &mut Slot, groups: &[Group]) -> Vec<Vec<Score>> {
        let who = format!("plugin `{}` (worker {})", self.name, slot.index);
        if slot.worker.is_none() {
            let label = format!("`{}` worker {}", self.name, slot.index);
            match Worker::start(&self.config, &label) {
                Ok((w, _)) => slot.worker = Some(w),
                Err(e) => {
                    let what = match e {
                        StartError::Spawn(e) => format!("could not be restarted: {e}"),
                        StartError::Handshake(m) => format!("could not be restarted: {m}"),
                    };
                    return self.record_failure(slot, groups, &who, &what, "");
                }
            }
        }
        let Some(worker) = slot.worker.as_mut() else {
            return fail_all(groups, &format!("{who}: no worker"));
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let line = ScoreRequest::new(id, groups, None).to_line();
        let result = worker
            .request(line, self.config.timeout, "timeout_s")
            .and_then(|answer| {
                protocol::parse_answer(&answer, id, groups, true).map_err(|e| e.to_string())
            });
        match result {
            Ok(Answer::Scores(s)) => {
                slot.failures = 0;
                s
            }
            Ok(Answer::Error(e)) => {
                slot.failures = 0;
                fail_all(groups, &format!("{who} reported an error: {e}"))
            }
            Err(what) => {
                let tail = worker.fail();
                slot.worker = None;
                self.record_failure(slot, groups, &who, &what, &tail)
            }
        }
    }

    /// Counts a failure of the slot's worker (disabling it past `restart_limit`) and fails the
    /// request's items with the story.
    fn record_failure(
        &self,
        slot: &mut Slot,
        groups: &[Group],
        who: &str,
        what: &str,
        stderr: &str,
    ) -> Vec<Vec<Score>> {
        slot.failures += 1;
        let tail = if stderr.is_empty() {
            String::new()
        } else {
            format!("; {stderr}")
        };
        if slot.failures <= self.config.restart_limit {
            return fail_all(
                groups,
                &format!(
                    "{who}: {what}; the worker was killed and restarts on its next request{tail}"
                ),
            );
        }
        let msg = format!(
            "{who}: disabled after {} failures in a row (restart_limit = {}); last: {what}{tail}",
            slot.failures, self.config.restart_limit
        );
        slot.disabled_because = Some(msg.clone());
        if let Some(p) = self.slots.get(slot.index) {
            p.disabled.store(true, Ordering::Relaxed);
        }
        fail_all(groups, &msg)
    }
}

impl Verifier for CommandVerifier {
    fn name(&self) -> &str {
        KIND
    }

    fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
        let requests: Vec<&[Group]> = groups.chunks(self.config.batch_size).collect();
        if requests.is_empty() {
            return Vec::new();
        }
        let live: Vec<&PoolSlot> = self
            .slots
            .iter()
            .filter(|s| !s.disabled.load(Ordering::Relaxed))
            .collect();
        let results: Vec<OnceLock<Vec<Vec<Score>>>> =
            requests.iter().map(|_| OnceLock::new()).collect();
        let next = AtomicUsize::new(0);
        let work = |slot: &PoolSlot| {
            let mut s = lock(&slot.state);
            while s.disabled_because.is_none() {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(req) = requests.get(i) else { break };
                let _ = results[i].set(self.run_request(&mut s, req));
            }
        };
        let threads = live.len().min(requests.len());
        if threads == 1 {
            // One request or one live worker: no thread; take a free worker if there is one.
            let free = live.iter().find(|s| s.state.try_lock().is_ok());
            work(free.copied().unwrap_or(live[0]));
        } else if threads > 1 {
            std::thread::scope(|sc| {
                for slot in &live[..threads] {
                    sc.spawn(|| work(slot));
                }
            });
        }
        let reason = || {
            self.slots
                .iter()
                .find_map(|s| s.state.try_lock().ok()?.disabled_because.clone())
                .unwrap_or_else(|| format!("plugin `{}`: no worker available", self.name))
        };
        results
            .into_iter()
            .zip(&requests)
            .map(|(r, req)| r.into_inner().unwrap_or_else(|| fail_all(req, &reason())))
            .flat_map(|r| r.into_iter())
            .collect()
    }
}

impl Drop for CommandVerifier {
    fn drop(&mut self) {
        // Close every stdin first so the workers exit together, then reap (or kill) each.
        let mut workers: Vec<Worker> = self
            .slots
            .iter()
            .filter_map(|s| lock(&s.state).worker.take())
            .collect();
        for w in &mut workers {
            w.close();
        }
        let until = Instant::now() + EXIT_GRACE;
        for w in &mut workers {
            w.wait_exit(until.saturating_duration_since(Instant::now()));
            w.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn options_parse_with_defaults_and_paths() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("plugin.py"), "").unwrap();
        let ctx = BuildContext::new(d.path());
        let c = CommandConfig::from_options(
            &opts(
                json!({"command": ["python3", "plugin.py", "--flag", "missing.py"],
                "timeout_s": 2.5, "workers": 3, "env": {"A": "1"}, "options": {"k": [1]}}),
            ),
            &ctx,
        )
        .unwrap();
        assert_eq!(
            c.argv,
            [
                "python3".to_string(),
                d.path().join("plugin.py").to_string_lossy().into_owned(),
                "--flag".into(),
                "missing.py".into()
            ]
        );
        assert_eq!(c.cwd.as_deref(), Some(d.path()));
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.workers, 3);
        assert_eq!(c.batch_size, 16);
        assert_eq!(c.env["A"], "1");
        assert_eq!(c.options["k"], json!([1]));
        let c = CommandConfig::from_options(
            &opts(json!({"command": "./run.sh --x", "cwd": "sub"})),
            &ctx,
        )
        .unwrap();
        assert_eq!(
            c.argv[0],
            d.path().join("./run.sh").to_string_lossy().into_owned()
        );
        assert_eq!(c.argv[1], "--x");
        assert_eq!(c.cwd, Some(d.path().join("sub")));
    }

    #[test]
    fn bad_options_are_config_errors() {
        let ctx = BuildContext::default();
        for (v, want) in [
            (json!({}), "missing field `command`"),
            (json!({"command": []}), "`command` is empty"),
            (json!({"command": [1]}), "entries must be strings"),
            (
                json!({"command": ["x"], "timeout_s": 0}),
                "`timeout_s` must be",
            ),
            (json!({"command": ["x"], "workers": 0}), "`workers` must be"),
            (json!({"command": ["x"], "batch_size": 0}), "`batch_size`"),
            (
                json!({"command": ["x"], "bogus": 1}),
                "unknown field `bogus`",
            ),
            (json!({"command": ["x"], "env": {"A": 1}}), "invalid type"),
        ] {
            let err = CommandConfig::from_options(&opts(v.clone()), &ctx)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{v}: {err}");
        }
    }

    #[test]
    fn bounded_lines() {
        let mut r = BufReader::new(&b"ab\r\ncd\nlong-line\ntail"[..]);
        assert_eq!(
            read_line_bounded(&mut r, 8).ok().flatten(),
            Some(b"ab".to_vec())
        );
        assert_eq!(
            read_line_bounded(&mut r, 8).ok().flatten(),
            Some(b"cd".to_vec())
        );
        assert!(matches!(
            read_line_bounded(&mut r, 8),
            Err(Event::TooLong(9))
        ));
        let mut r = BufReader::new(&b"tail"[..]);
        assert_eq!(
            read_line_bounded(&mut r, 8).ok().flatten(),
            Some(b"tail".to_vec())
        );
        assert!(matches!(read_line_bounded(&mut r, 8), Ok(None)));
    }

    #[test]
    fn missing_programs_fail_at_build() {
        let err = CommandVerifier::new(CommandConfig::new(vec!["/nonexistent/oxrl-plugin".into()]))
            .unwrap_err();
        assert!(matches!(err, VerifierError::Io { .. }), "{err}");
        assert!(
            err.to_string().contains("/nonexistent/oxrl-plugin"),
            "{err}"
        );
    }
}
