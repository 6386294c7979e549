//! The sandbox that runs model-written code: [`Sandbox::run`] executes one program (argv, stdin,
//! files in a fresh work directory) under kernel-enforced limits and isolation, and returns what
//! happened as a [`SandboxOutcome`]. It never lets the program outlive the call.
//!
//! Mechanisms (details and fallbacks in `VERIFIERS.md`, section `code`):
//! * a fresh temporary work directory, removed afterwards; under a mount namespace it is a
//!   private size-limited tmpfs and the rest of the file system is read-only;
//! * a new session / process group; an environment with nothing of the parent's;
//! * rlimits: CPU seconds, address space, processes, file size, open files, no core dumps;
//! * as root: a dedicated unprivileged uid per concurrent run (so `RLIMIT_NPROC` holds, and every
//!   process of the run can be killed by uid); otherwise a user namespace;
//! * a network namespace without connectivity;
//! * a wall-clock limit, after which (and after the main process exits) every process of the run
//!   is killed;
//! * stdout/stderr captured concurrently, each capped.
//!
//! Which mechanisms the kernel allows is probed once per process ([`Sandbox::isolation`]) and
//! recorded in every outcome. A mechanism that was probed as working but fails in a later run
//! fails that run (fail closed), never silently runs it with less isolation.
//!
//! Linux only: on other systems the crate is empty. It is the one crate of the workspace with
//! `unsafe` code beside the model kernels (`oxrl-models`): raw syscalls between `fork` and
//! `exec` (`pre_exec`), where only async-signal-safe calls are allowed. Every `unsafe` block says
//! why it is sound.
#![cfg(target_os = "linux")]
#![allow(unsafe_code)]

mod error;
mod isolation;
mod limits;
mod output;
mod process;
mod reaper;
mod slots;
mod workdir;

pub use error::SandboxError;
pub use isolation::Isolation;
pub use limits::SandboxLimits;

use isolation::Plan;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// How the sandbox is set up on this host (shared by all runs).
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxConfig {
    /// `PATH` inside the sandbox; `argv[0]` without a `/` is looked up here first, then in the
    /// absolute folders of the parent's `PATH` (resolved to an absolute path before the run).
    pub path_env: String,
    /// First dedicated uid (= gid) used when the parent is root; run slots use
    /// `uid_base .. uid_base + uid_slots`. These ids must belong to nobody else on the host: the
    /// reaper kills every process of a slot's uid.
    pub uid_base: u32,
    /// Number of dedicated uids, i.e. runs at once (further runs wait for a free slot).
    pub uid_slots: u32,
    /// Folder of the cross-process slot lock files.
    pub lock_dir: PathBuf,
    /// Folder the work directories are created in.
    pub work_parent: PathBuf,
    /// Refuse to run (`SandboxError::IsolationUnavailable`) when no network namespace is possible.
    pub require_net_isolation: bool,
    /// Cover `/proc` with an empty tmpfs under the mount namespace (host processes, command lines
    /// and — when the run shares the parent's uid — the parent's environment stay invisible).
    /// Turn off for interpreters that need `/proc/self` (some JVMs).
    pub hide_proc: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            path_env: "/usr/local/bin:/usr/bin:/bin".into(),
            uid_base: 2_000_000_000,
            uid_slots: 64,
            lock_dir: PathBuf::from("/tmp/oxrl-sandbox-uids"),
            work_parent: std::env::temp_dir(),
            require_net_isolation: false,
            hide_proc: true,
        }
    }
}

/// A file placed in the work directory before the program starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxFile {
    /// A single path component (`main.py`).
    pub name: String,
    /// Its bytes.
    pub contents: Vec<u8>,
    /// Mode 0755 instead of 0644.
    #[serde(default)]
    pub executable: bool,
}

impl SandboxFile {
    /// A non-executable file.
    pub fn new(name: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            contents: contents.into(),
            executable: false,
        }
    }
}

/// One program to run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxRequest {
    /// Program and arguments; `argv[0]` is found on [`SandboxConfig::path_env`].
    pub argv: Vec<String>,
    /// Bytes written to the program's stdin (then closed).
    #[serde(default)]
    pub stdin: Vec<u8>,
    /// Files placed in the work directory (the program's cwd).
    #[serde(default)]
    pub files: Vec<SandboxFile>,
    /// Extra environment variables (on top of the minimal sandbox environment).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Limits of this run.
    #[serde(default)]
    pub limits: SandboxLimits,
}

impl SandboxRequest {
    /// A request running `argv` with default limits, no stdin and no files.
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// What happened to one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxOutcome {
    /// Exit code, when the program exited normally.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did (SIGKILL after a timeout, SIGXCPU at the CPU limit).
    pub signal: Option<i32>,
    /// The wall-clock limit passed and the run was killed.
    pub timed_out: bool,
    /// The CPU limit ended it (SIGXCPU, or SIGKILL at the hard CPU limit).
    pub cpu_limit_hit: bool,
    /// Best effort: an allocation failure was reported on stderr (`MemoryError`, `bad_alloc`, ...).
    pub memory_limit_hit: bool,
    /// The file-size limit was hit (SIGXFSZ or `File too large`).
    pub file_size_limit_hit: bool,
    /// Captured stdout (at most `max_output_bytes`).
    pub stdout: Vec<u8>,
    /// Captured stderr (at most `max_output_bytes`).
    pub stderr: Vec<u8>,
    /// stdout was longer than the cap.
    pub stdout_truncated: bool,
    /// stderr was longer than the cap.
    pub stderr_truncated: bool,
    /// Both pipes reached end-of-file (false: a process escaped the reaper and still holds one).
    pub output_complete: bool,
    /// From start to the main process's exit (or the kill).
    pub wall_time: Duration,
    /// CPU time of the main process, when it could be read.
    pub cpu_time: Option<Duration>,
    /// The isolation the run had.
    pub isolation: Isolation,
    /// The dedicated uid it ran as, if any.
    pub uid: Option<u32>,
}

impl SandboxOutcome {
    /// Exited with code 0 within the time limit.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    /// stdout as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs programs under limits and isolation. Cheap to share (`&self` methods, `Sync`).
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    config: SandboxConfig,
}

/// The plan the probe found working, once per process.
static PLAN: OnceLock<Plan> = OnceLock::new();

impl Sandbox {
    /// A sandbox with the given host configuration.
    pub fn new(config: SandboxConfig) -> Self {
        Self { config }
    }

    /// Its configuration.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// The isolation runs get on this host (probed on first use).
    pub fn isolation(&self) -> Isolation {
        self.plan().isolation()
    }

    fn plan(&self) -> Plan {
        *PLAN.get_or_init(|| {
            let plan = probe(&self.config);
            let iso = plan.isolation();
            if iso.net_ns && iso.mount_ns && iso.process_limit {
                tracing::info!("sandbox isolation: {}", iso.summary());
            } else {
                tracing::warn!("sandbox isolation is degraded: {}", iso.summary());
            }
            plan
        })
    }

    /// Runs one program. `Err` only when the run could not be set up or started (program not
    /// found, a sandbox mechanism failed); every behaviour of the program itself — failure,
    /// crash, timeout, limit — is an `Ok` outcome.
    pub fn run(&self, req: &SandboxRequest) -> Result<SandboxOutcome, SandboxError> {
        let plan = self.plan();
        if self.config.require_net_isolation && !plan.net_ns {
            return Err(SandboxError::IsolationUnavailable);
        }
        process::execute(&self.config, plan, req)
    }
}

/// Finds the strongest plan this host allows by running `true` under each, strongest first.
fn probe(cfg: &SandboxConfig) -> Plan {
    let identity = process::identity();
    let root_parent = identity.is_none_or(|(euid, _)| euid == 0);
    let p = |drop_uid, user_ns, mount_ns, net_ns| Plan {
        drop_uid,
        user_ns,
        mount_ns,
        net_ns,
        root_parent,
    };
    let none = p(false, false, false, false);
    let Some((euid, _)) = identity else {
        return none;
    };
    // As root: a dedicated uid plus namespaces; if the uid cannot be changed (a container
    // without CAP_SETUID), a user namespace still gives the file-system and network isolation.
    // Unprivileged: a user namespace makes the others possible.
    let mut candidates = Vec::new();
    if euid == 0 {
        candidates.extend([p(true, false, true, true), p(true, false, false, true)]);
        candidates.push(p(true, false, false, false));
    }
    candidates.extend([p(false, true, true, true), p(false, true, false, true)]);
    candidates.push(none);
    let Some(prog) = ["true", "sh"]
        .into_iter()
        .find(|p| process::resolve_program(p, &cfg.path_env).is_some())
    else {
        // Nothing to probe with: claim the strongest plan; runs fail closed if it is wrong.
        return candidates[0];
    };
    let mut req = SandboxRequest::new([prog]);
    if prog == "sh" {
        req.argv.extend(["-c".to_string(), "exit 0".to_string()]);
    }
    req.limits.wall = Duration::from_secs(10);
    for plan in candidates {
        match process::execute(cfg, plan, &req) {
            Ok(o) if o.success() => return plan,
            Ok(o) => tracing::debug!(?plan, ?o, "sandbox probe: plan failed"),
            Err(e) => tracing::debug!(?plan, error = %e, "sandbox probe: plan failed"),
        }
    }
    none
}
