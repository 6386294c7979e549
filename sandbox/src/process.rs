//! One sandboxed run: stage the work directory, start the program with the isolation plan,
//! feed stdin, capture output, enforce the wall-clock limit, kill whatever is left, and report.

use super::isolation::{ChildSetup, Plan};
use super::limits::RlimitPlan;
use super::output::PipeReader;
use super::reaper::{self, Targets};
use super::workdir::Workdir;
use super::{slots, SandboxConfig, SandboxError, SandboxOutcome, SandboxRequest};
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/<pid>/stat` CPU times (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: u64 = 100;
/// How long output readers may take to reach end-of-file once every process is killed.
const READ_GRACE: Duration = Duration::from_millis(250);

/// This process's effective uid and gid, from `/proc/self/status`.
pub(super) fn identity() -> Option<(u32, u32)> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let field = |key: &str| -> Option<u32> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        // "Uid:\treal\teffective\tsaved\tfs"
        line.split_whitespace().nth(2)?.parse().ok()
    };
    Some((field("Uid:")?, field("Gid:")?))
}

/// Finds `program` on the colon-separated `path`: an executable regular file. A name with a `/`
/// is used as given (relative names resolve in the work directory).
pub(super) fn resolve_program(program: &str, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    use std::os::unix::fs::PermissionsExt;
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

fn cstring(bytes: &[u8], what: &str) -> Result<CString, SandboxError> {
    CString::new(bytes).map_err(|_| SandboxError::Nul { what: what.into() })
}

/// The environment of every run: nothing of the parent's, only what interpreters need.
fn base_env(cfg: &SandboxConfig, workdir: &Path) -> Vec<(String, String)> {
    let wd = workdir.to_string_lossy().into_owned();
    [
        ("PATH", cfg.path_env.as_str()),
        ("HOME", &wd),
        ("TMPDIR", &wd),
        ("LANG", "C.UTF-8"),
        ("LC_ALL", "C.UTF-8"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("PYTHONUNBUFFERED", "1"),
        ("PYTHONNOUSERSITE", "1"),
        ("PYTHONHASHSEED", "0"),
        ("PYTHONIOENCODING", "utf-8"),
        ("OMP_NUM_THREADS", "1"),
        ("OPENBLAS_NUM_THREADS", "1"),
        ("MKL_NUM_THREADS", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Runs `req` under `plan`.
pub(super) fn execute(
    cfg: &SandboxConfig,
    plan: Plan,
    req: &SandboxRequest,
) -> Result<SandboxOutcome, SandboxError> {
    let argv0 = req.argv.first().ok_or(SandboxError::EmptyArgv)?;
    // The sandbox PATH first; then the absolute folders of the parent's PATH (an interpreter
    // installed under /opt, say), resolved to an absolute path here.
    let parent_path = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| d.starts_with('/'))
        .collect::<Vec<_>>()
        .join(":");
    let program = resolve_program(argv0, &cfg.path_env)
        .or_else(|| resolve_program(argv0, &parent_path))
        .ok_or_else(|| SandboxError::ProgramNotFound {
            program: argv0.clone(),
            path: cfg.path_env.clone(),
        })?;
    for (i, a) in req.argv.iter().enumerate() {
        cstring(a.as_bytes(), &format!("argv[{i}]"))?;
    }
    let (euid, egid) = identity().unwrap_or((u32::MAX, u32::MAX));

    // A dedicated uid for this run: the uid it runs as (root parent), or its uid inside the user
    // namespace (unprivileged parent), which marks every process of the run. Leftovers of a
    // crashed owner of the slot are killed first.
    let slot = if plan.drop_uid || plan.user_ns {
        let lock_dir = if plan.drop_uid {
            cfg.lock_dir.clone()
        } else {
            PathBuf::from(format!("{}-{euid}", cfg.lock_dir.display()))
        };
        let (slot, stale) = slots::acquire(cfg.uid_base, cfg.uid_slots, &lock_dir)?;
        if stale {
            if plan.drop_uid {
                reaper::kill(&Targets {
                    uid: Some((slot.uid, slot.uid)),
                    ..Targets::default()
                });
            } else {
                let map = reaper::UidMap {
                    inner: slot.uid,
                    outer: euid,
                };
                reaper::kill(&Targets {
                    pids: reaper::scan(-1, Some(map)),
                    ..Targets::default()
                });
            }
        }
        Some(slot)
    } else {
        None
    };
    let ids = slot
        .as_ref()
        .filter(|_| plan.drop_uid)
        .map(|s| (s.uid, s.uid));
    let userns = slot
        .as_ref()
        .filter(|_| plan.user_ns)
        .map(|s| reaper::UidMap {
            inner: s.uid,
            outer: euid,
        });

    // Without a mount namespace the program works in the staging directory itself.
    let owner = if plan.mount_ns { None } else { ids };
    let workdir = Workdir::create(&cfg.work_parent, &req.files, owner)?;
    let who = RunIds { ids, userns, egid };
    let result = run_in(cfg, plan, req, &program, &workdir, &who);
    workdir.remove();
    drop(slot);
    result
}

/// Who a run is, besides its pid.
#[derive(Clone, Copy)]
struct RunIds {
    /// The dedicated uid/gid it runs as (root parent).
    ids: Option<(u32, u32)>,
    /// Its user-namespace mapping (unprivileged parent).
    userns: Option<reaper::UidMap>,
    /// The parent's effective gid (mapped in the user namespace).
    egid: u32,
}

/// The part of [`execute`] that runs with the work directory and slot held.
fn run_in(
    cfg: &SandboxConfig,
    plan: Plan,
    req: &SandboxRequest,
    program: &Path,
    workdir: &Workdir,
    who: &RunIds,
) -> Result<SandboxOutcome, SandboxError> {
    let RunIds { ids, userns, egid } = *who;
    let limits = &req.limits;
    let mut workdir_opts = format!(
        "size={},nr_inodes=16384,mode=0700",
        limits.max_disk_bytes.max(1 << 20)
    );
    if let Some((uid, gid)) = ids {
        workdir_opts.push_str(&format!(",uid={uid},gid={gid}"));
    }
    let setup = ChildSetup {
        plan,
        workdir: cstring(workdir.path().as_os_str().as_bytes(), "the work dir path")?,
        files: req
            .files
            .iter()
            .map(|f| {
                Ok((
                    cstring(f.name.as_bytes(), "a file name")?,
                    if f.executable { 0o755 } else { 0o644 },
                ))
            })
            .collect::<Result<_, SandboxError>>()?,
        // The run's own uid inside its namespace (and the same number as gid).
        uid_map: userns
            .map(|m| format!("{} {} 1", m.inner, m.outer))
            .unwrap_or_default()
            .into_bytes(),
        gid_map: userns
            .map(|m| format!("{} {egid} 1", m.inner))
            .unwrap_or_default()
            .into_bytes(),
        workdir_opts: cstring(workdir_opts.as_bytes(), "tmpfs options")?,
        shm_opts: cstring(b"size=16m,nr_inodes=1024,mode=1777", "tmpfs options")?,
        drop_to: ids,
        rlimits: RlimitPlan::new(limits),
        hide_proc: cfg.hide_proc,
    };

    let mut cmd = Command::new(program);
    cmd.args(&req.argv[1..])
        .env_clear()
        .envs(base_env(cfg, workdir.path()))
        .envs(req.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: `ChildSetup::apply` makes only async-signal-safe system calls on data prepared
    // above (moved into the closure), as required between fork and exec.
    unsafe {
        cmd.pre_exec(move || setup.apply());
    }
    let started = Instant::now();
    let deadline = started + limits.wall;
    let mut child = cmd.spawn().map_err(|source| SandboxError::Spawn {
        program: program.display().to_string(),
        source,
    })?;
    let pid = child.id() as i32;
    let cap = limits.max_output_bytes;
    let readers = (
        child.stdout.take().map(|p| PipeReader::spawn(p, cap)),
        child.stderr.take().map(|p| PipeReader::spawn(p, cap)),
    );
    if let Some(mut stdin) = child.stdin.take() {
        let data = req.stdin.clone();
        // Detached: ends when the data is written or the pipe breaks (the program exited).
        let _ = thread::Builder::new()
            .name("sandbox-stdin".into())
            .spawn(move || {
                let _ = stdin.write_all(&data);
            });
    }

    // Wait for the main process to exit (a zombie, not yet reaped, so its pid — the process
    // group id — cannot be reused before the group is killed), or for the deadline.
    let mut timed_out = false;
    let mut cpu_ticks = None;
    let mut early_status = None;
    let mut tick = Duration::from_millis(1);
    loop {
        match fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| reaper::stat_fields(&s))
        {
            Some(st) => {
                cpu_ticks = Some(st.cpu_ticks);
                if st.state == 'Z' || st.state == 'X' {
                    break;
                }
            }
            None => {
                if let Ok(Some(status)) = child.try_wait() {
                    early_status = Some(status);
                    break;
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break;
        }
        thread::sleep(tick.min(deadline - now));
        tick = (tick * 2).min(Duration::from_millis(10));
    }

    let kill_all = |sid_scan: bool| {
        let pids = if sid_scan {
            reaper::scan(pid, userns)
        } else {
            Vec::new()
        };
        reaper::kill(&Targets {
            pgid: Some(pid),
            pids,
            uid: ids,
        })
    };
    let scan = ids.is_none();
    if !kill_all(scan) {
        tracing::warn!(
            pid,
            "sandbox: the reaper helper could not run; processes may be left"
        );
    }
    let status = match early_status {
        Some(s) => Ok(s),
        None => child.wait(),
    };
    let wall_time = started.elapsed();
    if scan {
        // Processes forked between the scan and the kill.
        kill_all(true);
    }
    let status = status.map_err(|e| SandboxError::io("waiting for the program", e))?;

    let grace = Instant::now() + READ_GRACE;
    let out = readers.0.map(|r| r.map(|r| r.finish(grace)));
    let err = readers.1.map(|r| r.map(|r| r.finish(grace)));
    let (out, err) = match (out, err) {
        (Some(Ok(o)), Some(Ok(e))) => (o, e),
        _ => {
            return Err(SandboxError::io(
                "starting output readers",
                std::io::Error::other("pipe reader thread"),
            ))
        }
    };

    let signal = status.signal();
    let cpu_time = cpu_ticks.map(|t| Duration::from_millis(t * 1000 / USER_HZ));
    let cpu_limit_hit = signal == Some(libc::SIGXCPU)
        || (signal == Some(libc::SIGKILL)
            && !timed_out
            && cpu_time.is_some_and(|c| c.as_secs_f64() + 0.05 >= limits.cpu_s as f64));
    let stderr_text = String::from_utf8_lossy(&err.bytes);
    let memory_limit_hit = [
        "MemoryError",
        "Cannot allocate memory",
        "std::bad_alloc",
        "out of memory",
    ]
    .iter()
    .any(|m| stderr_text.contains(m));
    let file_size_limit_hit =
        signal == Some(libc::SIGXFSZ) || stderr_text.contains("File too large");
    Ok(SandboxOutcome {
        exit_code: status.code(),
        signal,
        timed_out,
        cpu_limit_hit,
        memory_limit_hit,
        file_size_limit_hit,
        stdout: out.bytes,
        stderr: err.bytes,
        stdout_truncated: out.truncated,
        stderr_truncated: err.truncated,
        output_complete: out.complete && err.complete,
        wall_time,
        cpu_time,
        isolation: plan.isolation(),
        uid: ids.map(|(u, _)| u),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_resolve_on_the_sandbox_path_only() {
        assert!(resolve_program("sh", "/usr/bin:/bin").is_some());
        assert!(resolve_program("definitely-not-a-program", "/usr/bin:/bin").is_none());
        assert!(resolve_program("sh", "").is_none());
        assert_eq!(
            resolve_program("./run", "").unwrap(),
            PathBuf::from("./run")
        );
    }

    #[test]
    fn identity_reads_the_effective_ids() {
        let (uid, _) = identity().unwrap();
        let owner = std::os::unix::fs::MetadataExt::uid(&fs::metadata("/proc/self").unwrap());
        assert_eq!(uid, owner);
    }
}
