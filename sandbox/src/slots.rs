//! Dedicated sandbox uids, one per concurrent run ("slot"), so that `RLIMIT_NPROC` counts only
//! that run's processes and the reaper may kill *every* process of the uid.
//!
//! A slot is held in this process (a set behind a mutex) and across processes by a lock file
//! `uid-<uid>.lock` created with `O_EXCL` holding the owner's pid; a lock whose pid no longer
//! exists is stale and taken over.

use super::SandboxError;
use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// uids held by runs of this process.
static HELD: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());
/// Signalled when a slot of this process is released.
static RELEASED: Condvar = Condvar::new();

/// A held uid; released (lock file removed) on drop.
#[derive(Debug)]
pub(super) struct Slot {
    pub uid: u32,
    lock: PathBuf,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.lock);
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&self.uid);
        RELEASED.notify_all();
    }
}

/// Takes a free uid in `base .. base + count`, waiting while all are busy. `fresh` is true when
/// the slot was taken over from a dead owner (it may have left processes behind).
pub(super) fn acquire(
    base: u32,
    count: u32,
    lock_dir: &Path,
) -> Result<(Slot, bool), SandboxError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(lock_dir)
        .map_err(|e| SandboxError::io(format!("creating {}", lock_dir.display()), e))?;
    let count = count.max(1);
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        for uid in (0..count).filter_map(|i| base.checked_add(i)) {
            if held.contains(&uid) {
                continue;
            }
            let lock = lock_dir.join(format!("uid-{uid}.lock"));
            match try_lock(&lock)? {
                Some(stale) => {
                    held.insert(uid);
                    return Ok((Slot { uid, lock }, stale));
                }
                None => continue,
            }
        }
        // All busy (here or in other processes): wait for a release here, or poll the others.
        held = RELEASED
            .wait_timeout(held, Duration::from_millis(20))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// Creates the lock file. `Some(stale)` on success; `None` when another live process holds it.
fn try_lock(lock: &Path) -> Result<Option<bool>, SandboxError> {
    let mut stale = false;
    for _ in 0..3 {
        match OpenOptions::new().write(true).create_new(true).open(lock) {
            Ok(mut f) => {
                f.write_all(std::process::id().to_string().as_bytes())
                    .map_err(|e| SandboxError::io(format!("writing {}", lock.display()), e))?;
                return Ok(Some(stale));
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let owner = fs::read_to_string(lock).ok();
                let alive = owner
                    .as_deref()
                    .and_then(|s| s.trim().parse::<u32>().ok())
                    .is_some_and(|pid| {
                        pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()
                    });
                // An empty, young file may be a lock being written right now: treat as held.
                let being_written = owner.as_deref().is_some_and(str::is_empty)
                    && fs::metadata(lock)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age < Duration::from_secs(5));
                if alive || being_written {
                    return Ok(None);
                }
                // Our own pid in a lock we do not hold, or a dead pid: left by a crash.
                let _ = fs::remove_file(lock);
                stale = true;
            }
            Err(e) => return Err(SandboxError::io(format!("creating {}", lock.display()), e)),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_exclusive_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = acquire(4_000_000_000, 2, dir.path()).unwrap();
        let (b, _) = acquire(4_000_000_000, 2, dir.path()).unwrap();
        assert_ne!(a.uid, b.uid);
        assert!(dir.path().join(format!("uid-{}.lock", a.uid)).exists());
        let uid = a.uid;
        drop(a);
        assert!(!dir.path().join(format!("uid-{uid}.lock")).exists());
        let (c, _) = acquire(4_000_000_000, 2, dir.path()).unwrap();
        assert_eq!(c.uid, uid);
    }

    #[test]
    fn stale_locks_of_dead_processes_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // pid_max is at most 2^22: this pid cannot exist.
        fs::write(dir.path().join("uid-4000000100.lock"), "99999999").unwrap();
        let (s, stale) = acquire(4_000_000_100, 1, dir.path()).unwrap();
        assert_eq!(s.uid, 4_000_000_100);
        assert!(stale);
    }
}
