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
//!
//! The code is split by job: [`config`] reads the settings, `pipe` moves bytes to and from a
//! worker, `worker` runs one process, and this file is the pool.

mod config;
mod pipe;
mod worker;

pub use config::CommandConfig;

use super::protocol::{self, Answer, ScoreRequest};
use super::{config_error, fail_all};
use crate::{BuildContext, Group, Score, Verifier, VerifierError};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;
use worker::{StartError, Worker, EXIT_GRACE};

const KIND: &str = "command";

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
