//! Resource limits of one sandboxed run ([`SandboxLimits`]) and their translation into the
//! `setrlimit` calls the child makes before `exec` ([`RlimitPlan`]).

use serde::{Deserialize, Serialize};
use std::io;
use std::time::Duration;

/// The limits of one run. Every limit is enforced by the kernel except `wall`, which the parent
/// enforces by killing the run's processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxLimits {
    /// Wall-clock time before every process of the run is killed.
    pub wall: Duration,
    /// CPU seconds per process (`RLIMIT_CPU`; SIGXCPU at the limit, SIGKILL one second later).
    pub cpu_s: u64,
    /// Address-space bytes per process (`RLIMIT_AS`): allocations beyond it fail.
    pub memory_bytes: u64,
    /// Processes and threads of the run's uid (`RLIMIT_NPROC`); see `VERIFIERS.md` for when it
    /// counts only the run's own processes.
    pub max_processes: u64,
    /// Bytes kept of stdout and of stderr each; the rest is read and discarded.
    pub max_output_bytes: usize,
    /// Largest file a process may write (`RLIMIT_FSIZE`; SIGXFSZ beyond it).
    pub max_file_bytes: u64,
    /// Size of the work directory's tmpfs (all files together), when the mount namespace is active.
    pub max_disk_bytes: u64,
    /// Open file descriptors per process (`RLIMIT_NOFILE`).
    pub max_open_files: u64,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            wall: Duration::from_secs(10),
            cpu_s: 10,
            memory_bytes: 1024 << 20,
            max_processes: 16,
            max_output_bytes: 1 << 20,
            max_file_bytes: 16 << 20,
            max_disk_bytes: 64 << 20,
            max_open_files: 256,
        }
    }
}

/// The type of `setrlimit`'s resource argument (glibc uses an enum type, musl an int).
#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

/// One `setrlimit` call: resource, soft and hard limit.
#[derive(Debug, Clone, Copy)]
struct Rlimit {
    resource: Resource,
    soft: u64,
    hard: u64,
}

/// The rlimits of a run, computed in the parent and applied in the child.
#[derive(Debug, Clone)]
pub(super) struct RlimitPlan {
    limits: Vec<Rlimit>,
}

impl RlimitPlan {
    /// The rlimits enforcing `limits` (zero values are raised to the smallest useful limit).
    pub(super) fn new(limits: &SandboxLimits) -> Self {
        let cpu = limits.cpu_s.max(1);
        let one = |resource, value: u64| Rlimit {
            resource,
            soft: value,
            hard: value,
        };
        Self {
            limits: vec![
                // Soft limit: SIGXCPU (catchable); hard limit one second later: SIGKILL.
                Rlimit {
                    resource: libc::RLIMIT_CPU,
                    soft: cpu,
                    hard: cpu.saturating_add(1),
                },
                one(libc::RLIMIT_AS, limits.memory_bytes.max(16 << 20)),
                one(libc::RLIMIT_NPROC, limits.max_processes.max(1)),
                one(libc::RLIMIT_FSIZE, limits.max_file_bytes),
                one(libc::RLIMIT_NOFILE, limits.max_open_files.max(16)),
                one(libc::RLIMIT_CORE, 0),
                // No locked memory, no POSIX message queues: neither is needed by test programs.
                one(libc::RLIMIT_MEMLOCK, 0),
                one(libc::RLIMIT_MSGQUEUE, 0),
            ],
        }
    }

    /// Applies the limits to the calling process. Each limit is clamped to the current hard
    /// limit, since an unprivileged process may only lower it.
    ///
    /// # Safety
    /// Only for the forked child in `pre_exec`: it makes nothing but the async-signal-safe
    /// `getrlimit`/`setrlimit` system calls on data prepared before the fork.
    pub(super) unsafe fn apply(&self) -> io::Result<()> {
        for l in &self.limits {
            let mut cur = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: `cur` is a valid, writable rlimit struct; getrlimit is async-signal-safe.
            if unsafe { libc::getrlimit(l.resource, &mut cur) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let hard = l.hard.min(cur.rlim_max);
            let new = libc::rlimit {
                rlim_cur: l.soft.min(hard),
                rlim_max: hard,
            };
            // SAFETY: `new` is a valid rlimit struct; setrlimit is async-signal-safe.
            if unsafe { libc::setrlimit(l.resource, &new) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}
