//! Killing every process a run left behind: its process group, and — when the run had a
//! dedicated uid — every process of that uid, including daemons that called `setsid` again and
//! so left the group. Without a dedicated uid, `/proc` is scanned for processes of the run's
//! session, process group or user namespace (recognised by its per-run uid mapping).
//!
//! The kills are made by a short-lived helper child (forked, never exec'd) so the parent itself
//! never changes its identity: the helper switches to the sandbox uid and calls
//! `kill(-1, SIGKILL)`, which reaches exactly the processes that uid may signal.

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// What to kill.
#[derive(Debug, Clone, Default)]
pub(super) struct Targets {
    /// The run's process group (= its session and the main process's pid).
    pub pgid: Option<i32>,
    /// Further single processes (found by [`scan`]).
    pub pids: Vec<i32>,
    /// The dedicated sandbox uid/gid whose every process is killed (never 0).
    pub uid: Option<(u32, u32)>,
}

impl Targets {
    fn is_empty(&self) -> bool {
        self.pgid.is_none() && self.pids.is_empty() && self.uid.is_none()
    }
}

/// Sends SIGKILL to the targets and waits for the helper. Returns false when the helper could
/// not run (then nothing was killed).
pub(super) fn kill(targets: &Targets) -> bool {
    if targets.is_empty() {
        return true;
    }
    let t = targets.clone();
    if t.uid.is_some_and(|(u, g)| u == 0 || g == 0) {
        // `kill(-1)` as root would hit the whole system.
        return false;
    }
    let mut cmd = Command::new("/bin/true");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure runs in the forked child and makes only async-signal-safe system calls
    // (kill, setgroups, setgid, setuid, getuid, nanosleep, _exit) on copied plain data; it never
    // returns, so the child never execs.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(pgid) = t.pgid.filter(|&p| p > 1) {
                libc::kill(-pgid, libc::SIGKILL);
            }
            for &pid in t.pids.iter().filter(|&&p| p > 1) {
                libc::kill(pid, libc::SIGKILL);
            }
            if let Some((uid, gid)) = t.uid {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                    || libc::getuid() != uid
                    || libc::geteuid() != uid
                {
                    libc::_exit(2);
                }
                // One pass reaches every process of the uid: the kernel walks the task list
                // under its lock, and a process that already has SIGKILL pending cannot fork.
                // Two more passes are belts and braces. Zombies still count as found (so the
                // loop cannot wait for ESRCH while the run's main process is unreaped).
                let pause = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 1_000_000,
                };
                for _ in 0..3 {
                    if libc::kill(-1, libc::SIGKILL) != 0 {
                        break;
                    }
                    libc::nanosleep(&pause, std::ptr::null_mut());
                }
            }
            libc::_exit(0)
        });
    }
    match cmd.spawn() {
        Ok(mut child) => child.wait().map(|s| s.success()).unwrap_or(false),
        Err(_) => false,
    }
}

/// A run's user namespace as every process in it shows it: the single line of
/// `/proc/<pid>/uid_map`, `inner outer 1`, with an `inner` uid unique to the run (its slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct UidMap {
    pub inner: u32,
    pub outer: u32,
}

impl UidMap {
    /// Whether `text` (a `uid_map` file) is exactly this mapping.
    fn matches(&self, text: &str) -> bool {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let first: Vec<u64> = match lines.next() {
            Some(l) => l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect(),
            None => return false,
        };
        lines.next().is_none() && first == [self.inner as u64, self.outer as u64, 1]
    }
}

/// The pids (other than this process) in session or process group `sid`, or in the user
/// namespace with mapping `userns`. A process cannot leave a user namespace, so the mapping finds
/// daemons that left the session with `setsid`.
pub(super) fn scan(sid: i32, userns: Option<UidMap>) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let me = std::process::id() as i32;
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let in_session = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| stat_fields(&s))
            .is_some_and(|f| f.pgrp == sid || f.session == sid);
        let in_userns = userns.is_some_and(|m| {
            // Only processes of the outer uid can be in the run's namespace.
            entry.metadata().is_ok_and(|md| md.uid() == m.outer)
                && fs::read_to_string(format!("/proc/{pid}/uid_map"))
                    .ok()
                    .is_some_and(|t| m.matches(&t))
        });
        if in_session || in_userns {
            out.push(pid);
        }
    }
    out
}

/// The fields of `/proc/<pid>/stat` the sandbox uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Stat {
    /// `R`, `S`, `D`, `Z`, ...
    pub state: char,
    pub pgrp: i32,
    pub session: i32,
    /// User + system CPU time in clock ticks.
    pub cpu_ticks: u64,
}

/// Parses `/proc/<pid>/stat` (the command name may contain spaces and parentheses: the fields
/// start after the last `)`).
pub(super) fn stat_fields(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) pgrp(2) session(3) ... utime(11) stime(12).
    Some(Stat {
        state: f.first()?.chars().next()?,
        pgrp: f.get(2)?.parse().ok()?,
        session: f.get(3)?.parse().ok()?,
        cpu_ticks: f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let s = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 0 0";
        let f = stat_fields(s).unwrap();
        assert_eq!(f.state, 'S');
        assert_eq!((f.pgrp, f.session), (4242, 4242));
        assert_eq!(f.cpu_ticks, 10);
        assert!(stat_fields("garbage").is_none());
    }

    #[test]
    fn scan_never_lists_this_process() {
        let me = std::process::id() as i32;
        let own = fs::read_to_string("/proc/self/stat").unwrap();
        let sid = stat_fields(&own).unwrap().session;
        assert!(!scan(sid, None).contains(&me));
    }

    #[test]
    fn uid_maps_match_exactly() {
        let m = UidMap {
            inner: 2_000_000_003,
            outer: 1000,
        };
        assert!(m.matches("2000000003       1000          1\n"));
        assert!(!m.matches("         0          0 4294967295\n"));
        assert!(!m.matches("2000000003 1000 1\n5 6 1\n"));
        assert!(!m.matches(""));
    }
}
