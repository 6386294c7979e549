//! Isolation mechanisms applied in the child between `fork` and `exec`: a new session, user /
//! mount / network namespaces, a read-only view of the host file system with a private tmpfs
//! work directory, rlimits, `no_new_privs`, and the drop to an unprivileged uid.
//!
//! Everything here runs in the forked child of a (possibly multi-threaded) parent, so it only
//! makes raw, async-signal-safe system calls on data prepared before the fork: no allocation,
//! no locks, no formatting.

use super::limits::RlimitPlan;
use serde::{Deserialize, Serialize};
use std::ffi::{CStr, CString};
use std::io;

/// Which isolation mechanisms a run had. Reported in every [`super::SandboxOutcome`] and by
/// [`super::Sandbox::isolation`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    /// The program ran under a dedicated unprivileged uid/gid (the parent is root): `RLIMIT_NPROC`
    /// counts only the run's processes, and the reaper can kill every process of that uid.
    pub uid_dropped: bool,
    /// A user namespace was created (the unprivileged path: it makes the other namespaces possible).
    pub user_ns: bool,
    /// A mount namespace: the host file system is read-only, the work directory is a private
    /// size-limited tmpfs, `/proc` is hidden and `/dev/shm` is a private tmpfs.
    pub mount_ns: bool,
    /// A network namespace with only a (down) loopback device: no connection can be made.
    pub net_ns: bool,
    /// `RLIMIT_NPROC` counts only this run's processes (a dedicated uid, or a user namespace of
    /// a non-root parent). False when the kernel exempts the parent's uid (uid 0 cannot be
    /// limited) or counts all of the user's processes.
    pub process_limit: bool,
}

impl Isolation {
    /// A one-line description, for logs and error messages.
    pub fn summary(&self) -> String {
        let on = |b: bool| if b { "on" } else { "OFF" };
        format!(
            "uid drop {}, user ns {}, mount ns (read-only host fs, tmpfs workdir) {}, network ns {}, \
             per-run process limit {}",
            on(self.uid_dropped),
            on(self.user_ns),
            on(self.mount_ns),
            on(self.net_ns),
            on(self.process_limit)
        )
    }
}

/// The mechanisms the child is asked to set up; a failure of any of them fails the spawn (fail
/// closed), so the probe decides once which plan the system supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan {
    pub drop_uid: bool,
    pub user_ns: bool,
    pub mount_ns: bool,
    pub net_ns: bool,
    /// The parent runs as uid 0 (whose processes `RLIMIT_NPROC` never limits).
    pub root_parent: bool,
}

impl Plan {
    /// What a run with this plan reports.
    pub(super) fn isolation(&self) -> Isolation {
        Isolation {
            uid_dropped: self.drop_uid,
            user_ns: self.user_ns,
            mount_ns: self.mount_ns,
            net_ns: self.net_ns,
            process_limit: self.drop_uid || (self.user_ns && !self.root_parent),
        }
    }
}

/// `struct mount_attr` of `mount_setattr(2)` (not in the libc crate).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
/// `close_range(2)` flag: mark the descriptors close-on-exec instead of closing them (std's own
/// exec-error pipe must stay open until `exec`).
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// Everything the child needs, prepared in the parent.
pub(super) struct ChildSetup {
    pub plan: Plan,
    /// The work directory: the host staging directory, and the tmpfs mount point under a mount
    /// namespace.
    pub workdir: CString,
    /// Files to copy from the staging directory into the tmpfs: name and mode.
    pub files: Vec<(CString, libc::mode_t)>,
    /// `/proc/self/uid_map` / `gid_map` contents for the user namespace ("id id 1").
    pub uid_map: Vec<u8>,
    pub gid_map: Vec<u8>,
    /// tmpfs options of the work directory and of `/dev/shm`.
    pub workdir_opts: CString,
    pub shm_opts: CString,
    /// The unprivileged uid/gid to switch to (root parent only).
    pub drop_to: Option<(libc::uid_t, libc::gid_t)>,
    pub rlimits: RlimitPlan,
    /// Cover `/proc` with an empty tmpfs (mount namespace only).
    pub hide_proc: bool,
}

/// The last OS error as an `io::Error` (no allocation).
fn last() -> io::Error {
    io::Error::last_os_error()
}

/// Maps a `-1` return to the last OS error.
fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(last())
    } else {
        Ok(())
    }
}

impl ChildSetup {
    /// Applies the plan to the calling process.
    ///
    /// # Safety
    /// Only for the forked child in `pre_exec`: async-signal-safe system calls on the prepared
    /// data only.
    pub(super) unsafe fn apply(&self) -> io::Result<()> {
        // Every block below: plain system calls on NUL-terminated strings and buffers owned by
        // `self` (which outlives the calls), in the single-threaded forked child.
        // SAFETY: setsid takes no arguments.
        check(unsafe { libc::setsid() } as libc::c_int)?;

        let mut flags = 0;
        if self.plan.user_ns {
            flags |= libc::CLONE_NEWUSER;
        }
        if self.plan.mount_ns {
            flags |= libc::CLONE_NEWNS;
        }
        if self.plan.net_ns {
            flags |= libc::CLONE_NEWNET;
        }
        if flags != 0 {
            // SAFETY: unshare takes plain flags; the child is single-threaded (CLONE_NEWUSER
            // requires it).
            check(unsafe { libc::unshare(flags) })?;
        }
        if self.plan.user_ns {
            // An unprivileged process may map only its own ids, and only after giving up
            // setgroups.
            // SAFETY: static C strings and buffers owned by `self`; open/write/close only.
            unsafe {
                write_file(c"/proc/self/setgroups", b"deny")?;
                write_file(c"/proc/self/uid_map", &self.uid_map)?;
                write_file(c"/proc/self/gid_map", &self.gid_map)?;
            }
        }
        if self.plan.mount_ns {
            // SAFETY: see `mounts`; same context as this function.
            unsafe { self.mounts()? };
        }
        // SAFETY: `workdir` is a NUL-terminated string owned by `self`.
        check(unsafe { libc::chdir(self.workdir.as_ptr()) })?;
        // SAFETY: getrlimit/setrlimit on local structs only.
        unsafe { self.rlimits.apply()? };
        // No setuid/setcap binary can raise privileges again.
        // SAFETY: prctl with integer arguments only.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
        if let Some((uid, gid)) = self.drop_to {
            // SAFETY: an empty group list (null pointer with length 0 is allowed).
            check(unsafe { libc::setgroups(0, std::ptr::null()) })?;
            // SAFETY: integer arguments only.
            check(unsafe { libc::setgid(gid) })?;
            // SAFETY: integer arguments only.
            check(unsafe { libc::setuid(uid) })?;
            // SAFETY: the id getters take no arguments.
            let dropped = unsafe {
                libc::getuid() == uid
                    && libc::geteuid() == uid
                    && libc::getgid() == gid
                    && libc::getegid() == gid
            };
            if !dropped {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
        }
        // Descriptors some library leaked without CLOEXEC must not reach the program.
        // ENOSYS (kernel < 5.11) is tolerated: std opens everything close-on-exec.
        // SAFETY: close_range with integer arguments; CLOEXEC keeps std's exec-error pipe open.
        unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                CLOSE_RANGE_CLOEXEC,
            )
        };
        Ok(())
    }

    /// Opens the work directory (path as it stands now) for reading; async-signal-safe.
    fn open_workdir(&self) -> io::Result<libc::c_int> {
        // SAFETY: `workdir` is NUL-terminated and owned by `self`.
        let fd = unsafe {
            libc::open(
                self.workdir.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        check(fd)?;
        Ok(fd)
    }

    /// In the new mount namespace: host tree private and read-only, tmpfs work directory with
    /// the staged files copied in, private `/dev/shm`, empty `/proc` (unless disabled).
    ///
    /// # Safety
    /// As [`ChildSetup::apply`].
    unsafe fn mounts(&self) -> io::Result<()> {
        let null = std::ptr::null::<libc::c_char>();
        // Nothing we mount may propagate back to the host.
        // SAFETY: static NUL-terminated strings and null pointers where mount(2) allows them.
        check(unsafe {
            libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        })?;
        // The staged files, read after the tmpfs hides them.
        let old = self.open_workdir()?;
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        // SAFETY: `attr` is a live `struct mount_attr` and its size is passed along.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                c"/".as_ptr(),
                libc::AT_RECURSIVE as libc::c_uint,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if ret < 0 {
            return Err(last());
        }
        let tmpfs = c"tmpfs".as_ptr();
        // SAFETY: NUL-terminated strings owned by `self` or static.
        check(unsafe {
            libc::mount(
                tmpfs,
                self.workdir.as_ptr(),
                tmpfs,
                libc::MS_NOSUID | libc::MS_NODEV,
                self.workdir_opts.as_ptr().cast(),
            )
        })?;
        let new = self.open_workdir()?;
        for (name, mode) in &self.files {
            // SAFETY: descriptors opened above; `name` is NUL-terminated.
            unsafe { copy_file(old, new, name, *mode, self.drop_to)? };
        }
        // SAFETY: closing the two descriptors opened above.
        unsafe {
            libc::close(old);
            libc::close(new);
        }
        // A private /dev/shm (POSIX semaphores for multiprocessing); absent on some systems.
        // SAFETY: NUL-terminated strings owned by `self` or static.
        unsafe {
            libc::mount(
                tmpfs,
                c"/dev/shm".as_ptr(),
                tmpfs,
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                self.shm_opts.as_ptr().cast(),
            )
        };
        if !self.hide_proc {
            return Ok(());
        }
        // The host's process list, command lines and environments stay out of sight.
        // SAFETY: static NUL-terminated strings.
        check(unsafe {
            libc::mount(
                tmpfs,
                c"/proc".as_ptr(),
                tmpfs,
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                c"size=4k,nr_inodes=8,mode=0555".as_ptr().cast(),
            )
        })?;
        Ok(())
    }
}

/// Writes `data` to an existing file (the namespace id maps).
///
/// # Safety
/// Async-signal-safe system calls only; for `pre_exec`.
unsafe fn write_file(path: &CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated, `data` a valid buffer of its length.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    check(fd)?;
    // SAFETY: `fd` is open; `data` is a valid buffer.
    let r = unsafe { write_all(fd, data) };
    // SAFETY: `fd` was opened above.
    unsafe { libc::close(fd) };
    r
}

/// Writes the whole buffer to `fd`, retrying on EINTR and short writes.
///
/// # Safety
/// Async-signal-safe system calls only; for `pre_exec`.
unsafe fn write_all(fd: libc::c_int, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: `data` is a valid buffer of `data.len()` bytes.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = last();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        data = &data[n as usize..];
    }
    Ok(())
}

/// Copies `name` from directory `from` to a new file in directory `to`.
///
/// # Safety
/// Async-signal-safe system calls only; for `pre_exec`.
unsafe fn copy_file(
    from: libc::c_int,
    to: libc::c_int,
    name: &CStr,
    mode: libc::mode_t,
    owner: Option<(libc::uid_t, libc::gid_t)>,
) -> io::Result<()> {
    // SAFETY: `from` is an open directory, `name` NUL-terminated.
    let src = unsafe {
        libc::openat(
            from,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    check(src)?;
    // SAFETY: `to` is an open directory, `name` NUL-terminated.
    let dst = unsafe {
        libc::openat(
            to,
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode as libc::c_uint,
        )
    };
    check(dst)?;
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: `buf` is a writable stack buffer of `buf.len()` bytes.
        let n = unsafe { libc::read(src, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = last();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        // SAFETY: `dst` is open; the slice is within `buf`.
        unsafe { write_all(dst, &buf[..n as usize])? };
    }
    if let Some((uid, gid)) = owner {
        // SAFETY: `dst` is open; integer ids.
        check(unsafe { libc::fchown(dst, uid, gid) })?;
    }
    // SAFETY: closing the two descriptors opened above.
    unsafe {
        libc::close(src);
        libc::close(dst);
    }
    Ok(())
}
